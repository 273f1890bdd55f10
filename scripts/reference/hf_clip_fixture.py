"""Tiny random CLIP models in transformers' layout, a tiny CLIP tokenizer, and their outputs,
for crates/genlab-models/src/pretrained/hf_clip.rs and crates/genlab-data/src/tokenize/clip_bpe.rs
(test: crates/genlab-models/tests/hf_clip.rs).

Writes crates/genlab-models/tests/fixtures/hf_clip/:
  tokenizer/      CLIPTokenizer.save_pretrained of a vocabulary made from the first MERGES
                  merges of CLIP's real one (bpe_simple_vocab_16e6.txt.gz, embedded in
                  genlab-data): 256 bytes, 256 bytes + "</w>", the merges, <|startoftext|>,
                  <|endoftext|>; pad "<|endoftext|>" as in Stable Diffusion 1.x
  tokenizer_sd2/  the same vocabulary with pad "!" as in Stable Diffusion 2.x
  clip_quick/     CLIPModel, float32, quick_gelu, eos_token_id = <|endoftext|> (new rule:
                  pooled at the first end-of-text token), intermediate size not a multiple
                  of the width
  clip_gelu_f16/  CLIPModel saved in float16, gelu, layer_norm_eps 1e-6, eos_token_id = 2
                  (the legacy rule: pooled at the argmax of the ids)
  text_encoder/   CLIPTextModel in the layout of Stable Diffusion's text_encoder/ as
                  transformers 4.x wrote it (keys under "text_model."), float16, gelu
  text_encoder_bin/  the same weights as pytorch_model.bin (torch.save), with the
                  position_ids buffer old files carry
  reference.json  token ids of PROMPTS from both tokenizers (padding="max_length",
                  truncation=True, max_length=77) and the inputs fed to the models
  reference.safetensors  float32 outputs: "<model>.<output>" (see below)

Every model runs in float32 on the weights as saved (the float16 ones are read back, so the
reference sees the rounded weights genlab loads). Outputs per model: last_hidden_state
[3, 77, D] of the SD1 ids of PROMPTS[:3], pooler_output (text, [3, D]), hidden_1 (hidden
state after layer 1, before final_layer_norm: "clip skip"), raw_last_hidden_state /
raw_pooler_output for RAW_IDS (no end-of-text token: the two pooling rules differ), and for
the CLIPModels text_embeds, image_pooler_output (vision_model's, before the projection),
image_embeds, logits_per_image on IMAGES (torch.manual_seed(0) normal [2, 3, 16, 16]);
text_embeds and image_embeds are CLIPModel's outputs, i.e. unit-normalised.

Usage:  .venv/bin/python scripts/reference/hf_clip_fixture.py
Pinned: transformers==5.25.0, tokenizers==0.23.3, torch==2.15.0, safetensors (requirements.txt).
"""
import gzip
import json
import pathlib

import safetensors.torch as st
import tokenizers
import torch
import transformers
from transformers import (CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel,
                          CLIPTokenizer)

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/genlab-models/tests/fixtures/hf_clip"
VOCAB_GZ = ROOT / "crates/genlab-data/assets/bpe_simple_vocab_16e6.txt.gz"
MERGES = 300
CONTEXT = 77

PROMPTS = [
    "a photo of a cat",
    "A handwritten SEVEN,   leaning right! it's 42",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, \u6771\u4eac \U0001f436 \ufb01ne \u03a3\u039f\u03a3",
    "",
    "hello!!! <|endoftext|> after",
    " ".join("the digit %d written with thin strokes, leaning left." % (i % 10) for i in range(12)),
]
RAW_IDS = [[5, 300, 17, 811, 40, 2, 9, 100, 33], [811, 1, 2, 3, 4, 5, 6, 7, 8]]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizers():
    lines = gzip.open(VOCAB_GZ, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(l.split()) for l in lines[1:MERGES + 1]]
    chars = bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    enc = {v: i for i, v in enumerate(vocab)}
    assert len(enc) == len(vocab), "repeated vocabulary entry"
    toks = {}
    for name, pad in [("tokenizer", "<|endoftext|>"), ("tokenizer_sd2", "!")]:
        # The files of Stable Diffusion's tokenizer/ folder, written as transformers 4.x wrote
        # them (transformers 5 saves tokenizer.json only, which genlab does not read):
        # special tokens as AddedToken objects, the pad token as a plain string.
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "vocab.json").write_text(json.dumps(enc, ensure_ascii=False))
        (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
        added = lambda c: {"content": c, "lstrip": False, "normalized": True, "rstrip": False,
                           "single_word": False}
        special = {"bos_token": added("<|startoftext|>"), "eos_token": added("<|endoftext|>"),
                   "pad_token": pad, "unk_token": added("<|endoftext|>")}
        (d / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
        config = dict(special, add_prefix_space=False, do_lower_case=True, errors="replace",
                      model_max_length=CONTEXT, tokenizer_class="CLIPTokenizer")
        for k in ("bos_token", "eos_token", "unk_token"):
            config[k] = dict(config[k], __type="AddedToken")
        (d / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        t = CLIPTokenizer.from_pretrained(d)
        assert t.pad_token == pad, (t.pad_token, pad)
        assert len(t) == len(vocab), (len(t), len(vocab))
        toks[name] = t
    return toks, len(vocab)


def text_config(vocab, **kw):
    base = dict(vocab_size=vocab, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=CONTEXT, projection_dim=16,
                bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    base.update(kw)
    return base


def vision_config(**kw):
    base = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                image_size=16, patch_size=4, num_channels=3, projection_dim=16)
    base.update(kw)
    return base


def randomize(model, seed):
    """transformers' init leaves LayerNorms at (1, 0) and biases at 0: random values everywhere
    make the parity test see every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(2.6592)
            elif "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def text_outputs(model, ids, prefix, out):
    o = model(input_ids=ids, output_hidden_states=True)
    out[prefix + "last_hidden_state"] = o.last_hidden_state
    out[prefix + "pooler_output"] = o.pooler_output
    if prefix == "":
        out["hidden_1"] = o.hidden_states[1]


def main():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 16, 16)
    OUT.mkdir(parents=True, exist_ok=True)
    toks, vocab = write_tokenizers()
    ref = {
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "torch": torch.__version__},
        "prompts": PROMPTS,
        "raw_ids": RAW_IDS,
        "tokens": {},
    }
    for name, t in toks.items():
        enc = t(PROMPTS, padding="max_length", truncation=True, max_length=CONTEXT)
        ref["tokens"][name] = enc["input_ids"]
        assert all(len(x) == CONTEXT for x in enc["input_ids"])
    ids = torch.tensor(ref["tokens"]["tokenizer"][:3])
    raw = torch.tensor(RAW_IDS)
    tensors = {"images": images}

    cases = [
        ("clip_quick", torch.float32, dict(hidden_act="quick_gelu"), 1),
        ("clip_gelu_f16", torch.float16, dict(hidden_act="gelu", layer_norm_eps=1e-6, eos_token_id=2), 2),
    ]
    for name, dtype, kw, seed in cases:
        cfg = CLIPConfig(text_config=text_config(vocab, **kw),
                         vision_config=vision_config(hidden_act=kw["hidden_act"],
                                                     layer_norm_eps=kw.get("layer_norm_eps", 1e-5)),
                         projection_dim=16)
        m = CLIPModel(cfg)
        randomize(m, seed)
        m.to(dtype).save_pretrained(OUT / name)
        m = CLIPModel.from_pretrained(OUT / name, dtype=torch.float32).eval()
        out = {}
        with torch.no_grad():
            text_outputs(m.text_model, ids, "", out)
            text_outputs(m.text_model, raw, "raw_", out)
            o = m(input_ids=ids, pixel_values=images)
            out["text_embeds"] = o.text_embeds
            out["image_embeds"] = o.image_embeds
            out["image_pooler_output"] = m.vision_model(pixel_values=images).pooler_output
            out["logits_per_image"] = o.logits_per_image
        tensors.update({f"{name}.{k}": v.float().contiguous() for k, v in out.items()})

    # Stable Diffusion's text_encoder/: a CLIPTextModel with the "text_model." prefix that
    # transformers 4.x wrote (and every SD download has), float16.
    name = "text_encoder"
    m = CLIPTextModel(CLIPTextConfig(**text_config(vocab, hidden_act="gelu")))
    randomize(m, 3)
    m.to(torch.float16).save_pretrained(OUT / name)
    f = OUT / name / "model.safetensors"
    sd = st.load_file(f)
    st.save_file({"text_model." + k: v for k, v in sd.items()}, f, metadata={"format": "pt"})
    m2 = CLIPTextModel.from_pretrained(OUT / name, dtype=torch.float32).eval()
    with torch.no_grad():
        for k, v in m.state_dict().items():
            assert torch.equal(v.float(), m2.state_dict()[k]), k
        out = {}
        text_outputs(m2, ids, "", out)
        text_outputs(m2, raw, "raw_", out)
    tensors.update({f"{name}.{k}": v.float().contiguous() for k, v in out.items()})

    # The same weights as an older repository has them: pytorch_model.bin (a torch.save zip
    # pickle, float16) with the int64 position_ids buffer that transformers 4.x saved.
    legacy = {"text_model." + k: v.clone() for k, v in m.state_dict().items()}
    legacy["text_model.embeddings.position_ids"] = torch.arange(CONTEXT).unsqueeze(0)
    (OUT / "text_encoder_bin").mkdir(exist_ok=True)
    (OUT / "text_encoder_bin" / "config.json").write_text((OUT / name / "config.json").read_text())
    torch.save(legacy, OUT / "text_encoder_bin" / "pytorch_model.bin")
    m3 = CLIPTextModel.from_pretrained(OUT / "text_encoder_bin", dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(m3(input_ids=ids).last_hidden_state, out["last_hidden_state"])

    st.save_file(tensors, OUT / "reference.safetensors")
    (OUT / "reference.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes)")
    assert total < 1_000_000


if __name__ == "__main__":
    main()
