"""Reference WordPiece encodings for crates/genlab-data/src/tokenize/wordpiece.rs.

Builds two small BERT-style tokenizers with HuggingFace `tokenizers` (the library that
reads tokenizer.json files; its Python package wraps the same Rust code), saves them as
tokenizer.json files, and records their encodings of varied strings:
  crates/genlab-data/tests/fixtures/tokenize/wordpiece_uncased.tokenizer.json
      BertNormalizer(lowercase, strip_accents=None -> strip, CJK spacing), truncation 24
  crates/genlab-data/tests/fixtures/tokenize/wordpiece_cased.tokenizer.json
      BertNormalizer(lowercase=False, strip_accents=False, handle_chinese_chars=False),
      max_input_chars_per_word 10, BertProcessing post-processor, no truncation
  crates/genlab-data/tests/fixtures/tokenize/wordpiece.json
      {"versions", "cases": [{"tokenizer": file, "text", "ids", "type_ids", "attention_mask"}]}
The vocabulary is a hand-made one of ~300 pieces (letters, '##' letters, common words and
sub-words, punctuation, a few CJK characters), so the files are small and the cases
exercise greedy longest-match, continuations, [UNK] and truncation.

Usage:  .venv/bin/python scripts/reference/wordpiece_fixture.py
Pinned: tokenizers==0.23.3 (requirements.txt).
"""
import json
import pathlib
import string

import tokenizers
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

DIR = pathlib.Path(__file__).resolve().parents[2] / "crates/genlab-data/tests/fixtures/tokenize"

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = """the a an of digit number written with thick thin strokes leaning right left small
large hand ##writ ##ten seven eight two zero photo dog cat cafe caf ##e ##s ##ed ##ing
##er ##ly un ##believ ##able run ##ning quick brown fox jump ##s over lazy , . ! ? ' " -
( ) : ; & $ % # @ / [ ] { } * + = < > 0 1 2 3 4 5 6 7 8 9 ##0 ##1 ##2 ##3 ##4 ##5 ##6
##7 ##8 ##9 12 ##34 don t it s wasn ##n Cafe The Seven DOG""".split()
CJK = ["\u6771", "\u4eac", "\u4e2d", "\u6587", "\u91ce", "\u53e3"]


def vocab():
    pieces = list(SPECIAL)
    for c in string.ascii_lowercase + string.ascii_uppercase + "\u00e9\u00fc\u00df":
        pieces += [c, "##" + c]
    pieces += WORDS + CJK
    out = {}
    for p in pieces:
        out.setdefault(p, len(out))
    return out


def build(uncased):
    v = vocab()
    tok = Tokenizer(WordPiece(v, unk_token="[UNK]", max_input_chars_per_word=100 if uncased else 10))
    if uncased:
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=None, lowercase=True)
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", v["[CLS]"]), ("[SEP]", v["[SEP]"])])
        tok.enable_truncation(max_length=24)
    else:
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                                    strip_accents=False, lowercase=False)
        tok.post_processor = processors.BertProcessing(("[SEP]", v["[SEP]"]), ("[CLS]", v["[CLS]"]))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(SPECIAL)
    return tok


TEXTS = [
    "",
    "   ",
    "a handwritten seven, leaning right",
    "The digit 7 written with THICK strokes, leaning left.",
    "Caf\u00e9 caf\u00e9s cafe\u0301",
    "unbelievable running quickly jumped",
    "the quick brown fox jumps over the lazy dog!",
    "don't it's wasn't",
    "12345 007 3.14",
    "\u6771\u4eac and \u4e2d\u6587\u91ce\u53e3 text",
    "zero\u200bwidth\tand\u00a0spaces\r\nnew line\u0000nul\ufffdrep",
    "xyzzyplughfoobarbazquuxcorgegraultgarply",
    "\u00fcber \u00dcBER stra\u00dfe",
    "[CLS] literal [MASK] tokens[SEP]",
    "emoji \U0001f436 and \u03a3\u03b9\u03b3\u03bc\u03b1",
    "(a) [b] {c} <d> e:f;g & $h %i #j @k /l *m +n =o",
    " ".join(["seven"] * 30),
]


def main():
    DIR.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, uncased in [("wordpiece_uncased.tokenizer.json", True),
                          ("wordpiece_cased.tokenizer.json", False)]:
        tok = build(uncased)
        tok.save(str(DIR / name))
        tok = Tokenizer.from_file(str(DIR / name))
        for text in TEXTS:
            e = tok.encode(text)
            cases.append({"tokenizer": name, "text": text, "ids": e.ids, "type_ids": e.type_ids,
                          "attention_mask": e.attention_mask})
    out = {"versions": {"tokenizers": tokenizers.__version__}, "cases": cases}
    (DIR / "wordpiece.json").write_text(json.dumps(out, ensure_ascii=True) + "\n")
    print(f"wrote {len(cases)} cases under {DIR}")


if __name__ == "__main__":
    main()
