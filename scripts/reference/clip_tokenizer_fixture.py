"""Reference token ids of CLIP's tokenizer for crates/genlab-data/src/tokenize/clip_bpe.rs.

Runs open_clip 3.3.0's `tokenize` (its `SimpleTokenizer`, copied from OpenAI CLIP, with the
vocabulary `bpe_simple_vocab_16e6.txt.gz` that the Rust crate embeds) on varied strings at
context 77 and writes crates/genlab-data/tests/fixtures/tokenize/clip_tokenizer.json:
  {"versions": {...}, "context": 77, "vocab_sha256": ...,
   "cases": [{"text": str, "tokens": [SOT, ..., EOT] (the row without its zero padding),
              "encode": [...] (SimpleTokenizer.encode: no SOT/EOT, no truncation)}]}

genlab does not run ftfy (open_clip's first cleaning step); it applies ftfy's character
tables (ligatures, widths, quotes, control characters) and NFC only. This script asserts
that on every case open_clip's cleaning (with ftfy) gives the same text as that, so the
fixture tests exactly the documented behaviour.

Usage:  .venv/bin/python scripts/reference/clip_tokenizer_fixture.py
        .venv/bin/python scripts/reference/clip_tokenizer_fixture.py --random 3000 --out /tmp/clip_random.json
The second form writes N seeded random strings instead (words, entities and runs of
characters from 23 Unicode blocks; strings on which ftfy changes more than genlab's cleaning
are skipped and counted); `GENLAB_CLIP_EXTRA_FIXTURE=/tmp/clip_random.json cargo test
--release --workspace --test tokenize` then compares those too (not committed: large).
Pinned: open-clip-torch==3.3.0, ftfy==6.3.1, regex==2026.12.2, torch==2.15.0 (requirements.txt).
"""
import argparse
import hashlib
import random
import html
import json
import pathlib
import unicodedata

import ftfy
from ftfy import chardata
import open_clip
import regex
import torch
from open_clip import tokenizer as oct

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/genlab-data/tests/fixtures/tokenize/clip_tokenizer.json"
CONTEXT = 77

LONG = ("a very long caption about a handwritten digit that keeps going and going, describing "
        "the thickness of every stroke, the slant of the whole figure, the size of its bounding "
        "box, the paper, the ink, the lighting of the scan, the writer's mood and many other "
        "details that no CLIP model will ever see because the context window is only seventy "
        "seven tokens long, so everything after that point is simply cut off by the tokenizer")

CASES = [
    "a handwritten seven, leaning right",
    "the digit 7 written with thick strokes, leaning right",
    "a small handwritten two",
    "the number eight drawn with thin strokes, leaning left",
    "zero-shot: a photo of the number 0.",
    "A photo of a DOG.",
    "UPPER lower MiXeD CamelCaseWords",
    "",
    "   ",
    "\t\n  spaced   out \r\n text  ",
    "tab\tseparated\tvalues\u2028line\u00a0sep",
    "Hello, world!!! How's it going?",
    "don't stop; we're here, they've gone & I'll see; she'd go, I'm",
    "'s 't 're 've 'm 'll 'd",
    "''quoted'' `backticks` \"double\"",
    "it\u2019s a \u201cquoted\u201d caption",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade",
    "e\u0301te\u0301 (decomposed accents)",
    "\u00dcmlaut \u00c4\u00d6\u00dc \u00df stra\u00dfe",
    "\u0130stanbul",
    "\u6771\u4eac\u30bf\u30ef\u30fc\u306e\u5199\u771f",
    "mixed \u4e2d\u6587 and English 123",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440",
    "\u03a3\u039f\u03a6\u039f\u03a3 \u039f\u0394\u039f\u03a3",
    "emoji \U0001f436\U0001f431 party \U0001f389\U0001f389",
    "\U0001f44d\U0001f3fd thumbs up",
    "numbers 1234567890 3.14159 -42 1e10 2,000,000",
    "x\u00b2 \u00bd \u2153 \u216b \u0661\u0662\u0663",
    "&amp; &lt;b&gt;bold&lt;/b&gt; &quot;q&quot; &#39;s &#x263A;",
    "a<b>c</b> &amp;amp; &eacute &notit;",
    "<start_of_text>literal special<end_of_text>",
    "hyphen-ated words\u2014em dash \u2013 en dash",
    "email@example.com https://example.com/path?q=1&x=2",
    "#hashtag @mention $100 50% (parens) [brackets] {braces}",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "zero\u200bwidth and soft\u00adhyphen",
    "\ufb01ne \ufb02ow \u0132ssel, \uff21\uff22\uff23\uff01 \u3000\u5168\u89d2\uff0c\u534a\u89d2\uff8a\uff9d\uff76\uff78",
    "\ufeffbom\u0007bell\u000bvtab\u001funit\u206acontrols",
    "case folding: it'\u017f x\u0345y 5\u212a \u212b",
    "a " * 75,
    "a " * 76,
    LONG,
    " ".join(["the digit %d written with thick strokes, leaning right." % i for i in range(10)]),
]


def genlab_clean(text):
    """genlab's cleaning: ftfy's ligature, width, quote and control-character tables and NFC
    instead of ftfy.fix_text, then open_clip's html unescaping, whitespace cleaning and
    lower-casing."""
    t = text.translate(chardata.LIGATURES).translate(chardata.WIDTH_MAP)
    t = regex.sub("[\u02bc\u2018-\u201b]", "'", t)
    t = regex.sub("[\u201c-\u201f]", '"', t)
    t = t.translate(chardata.CONTROL_CHARS)
    t = unicodedata.normalize("NFC", t)
    t = html.unescape(html.unescape(t)).strip()
    return " ".join(t.split()).strip().lower()


BLOCKS = [(0x20, 0x7E)] * 6 + [
    (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
    (0xE00, 0xE7F), (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2100, 0x218F), (0x2190, 0x23FF),
    (0x2460, 0x24FF), (0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xACFF), (0xFF00, 0xFFEF),
    (0x1F300, 0x1F6FF)]
WORDS = ("a the handwritten seven digit leaning right thick thin don't it's we're &amp; &lt; "
         "&#39; 123 4.5 photo dog").split()


def random_cases(n, seed=0):
    rng = random.Random(seed)

    def one():
        parts = []
        for _ in range(rng.randint(0, 12)):
            if rng.random() < 0.5:
                parts.append(rng.choice(WORDS))
            else:
                lo, hi = rng.choice(BLOCKS)
                parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))))
        return rng.choice([" ", "", "  ", "\t"]).join(parts)

    cases, skipped = [], 0
    while len(cases) < n:
        text = one()
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            continue
        if oct._clean_lower(text) != genlab_clean(text):
            skipped += 1
            continue
        row = open_clip.tokenize([text], context_length=CONTEXT)[0].tolist()
        while row and row[-1] == 0:
            row.pop()
        cases.append({"text": text, "tokens": row, "encode": oct._tokenizer.encode(text)})
    return cases, skipped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--random", type=int, default=0, help="N random strings instead of the fixture")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if args.random:
        cases, skipped = random_cases(args.random)
        pathlib.Path(args.out).write_text(json.dumps({"context": CONTEXT, "cases": cases}) + "\n")
        print(f"wrote {args.out}: {len(cases)} random cases ({skipped} skipped: ftfy changes more)")
        return
    vocab = pathlib.Path(oct.default_bpe()).read_bytes()
    cases = []
    for text in CASES:
        assert oct._clean_lower(text) == genlab_clean(text), f"ftfy matters for {text!r}"
        row = open_clip.tokenize([text], context_length=CONTEXT)[0].tolist()
        while row and row[-1] == 0:
            row.pop()
        cases.append({"text": text, "tokens": row, "encode": oct._tokenizer.encode(text)})
    out = {
        "versions": {"open_clip": open_clip.__version__, "ftfy": ftfy.__version__,
                     "regex": regex.__version__, "torch": torch.__version__},
        "context": CONTEXT,
        "vocab_sha256": hashlib.sha256(vocab).hexdigest(),
        "cases": cases,
    }
    out_path = pathlib.Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, ensure_ascii=True) + "\n")
    print(f"wrote {out_path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
