"""Reference fixtures for genlab's own PyTorch `.pth` reader (crates/genlab-core/src/pth).

Needs torch (any 2.x; `pip install torch numpy` in a virtual environment outside the repo).

Writes, under crates/genlab-core/tests/fixtures/pth/:
  tiny_zip.pth     a few small tensors saved with torch.save (zip format, torch >= 1.6):
                   views (a transpose, an offset slice), every dtype the reader handles,
                   a 0-d tensor, an empty tensor, a nested dict
  tiny_legacy.pth  the same dict saved with _use_new_zipfile_serialization=False
  tiny.json        for each tensor of that dict, in order: name, dtype, shape, and its
                   values as float64 (bools 0/1, ints exactly)
  taef2.json       when the TAEF2 weights are present (default: ../shared/weights/taef2,
                   or --taef2 DIR): for taef2_encoder.pth and taef2_decoder.pth, the sha256,
                   the number of tensors, the ordered key list, and for a few keys the
                   shape, dtype, first 8 values (float16 -> float32 exactly, as float64),
                   and the float64 sum of all values

Run from the repository root:
  python scripts/reference/pth_fixture.py [--taef2 DIR]
"""

import argparse
import collections
import hashlib
import json
import os

import torch

OUT = os.path.join("crates", "genlab-core", "tests", "fixtures", "pth")
TAEF2_KEYS = {
    "taef2_encoder.pth": ["0.weight", "0.bias", "2.weight", "1.conv.4.weight", "14.weight"],
    "taef2_decoder.pth": ["1.weight", "1.bias", "19.weight", "19.bias"],
}


def tiny_dict():
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8
    sd = collections.OrderedDict()
    sd["a"] = a
    sd["a_t"] = a.t()  # same storage, strides (1, 4)
    sd["a_sub"] = a[1:, 1:3]  # same storage, offset 5, strides (4, 1)
    sd["idx"] = torch.tensor([-2, 0, 7, 1 << 40], dtype=torch.int64)
    sd["i32"] = torch.tensor([-70000, 3], dtype=torch.int32)
    sd["i16"] = torch.tensor([-300, 5], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    sd["scalar"] = torch.tensor(2.5, dtype=torch.float64)
    sd["half"] = torch.tensor([0.5, -1.0, 65504.0], dtype=torch.float16)
    sd["half_2d"] = torch.tensor([[0.1, 0.2, 0.3], [-4.0, 1e-4, 6e4]], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.5, -3.0], dtype=torch.bfloat16)
    sd["flags"] = torch.tensor([True, False, True])
    sd["empty"] = torch.zeros(0, 3)
    sd["nested"] = {"w": torch.full((2, 1), 3.0), "deeper": {"b": torch.ones(2)}}
    return sd


def flat(prefix, d):
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from flat(name + ".", v)
        else:
            yield name, v


def describe(t):
    return {
        "dtype": str(t.dtype).replace("torch.", ""),
        "shape": list(t.shape),
        "values": t.contiguous().reshape(-1).to(torch.float64).tolist(),
    }


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def taef2(folder):
    out = {}
    for file, keys in TAEF2_KEYS.items():
        path = os.path.join(folder, file)
        sd = torch.load(path, map_location="cpu", weights_only=True)
        entry = {
            "sha256": sha256(path),
            "count": len(sd),
            "keys": list(sd.keys()),
            "tensors": {},
        }
        pools = [k for k in sd if ".pool." in k][:1]  # a GroupNorm weight or 1x1 conv, if any
        for k in keys + pools:
            t = sd[k]
            entry["tensors"][k] = {
                "dtype": str(t.dtype).replace("torch.", ""),
                "shape": list(t.shape),
                "first": t.reshape(-1)[:8].to(torch.float32).to(torch.float64).tolist(),
                "sum": float(t.to(torch.float64).sum()),
            }
        out[file] = entry
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--taef2", default=os.path.join("..", "shared", "weights", "taef2"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    sd = tiny_dict()
    torch.save(sd, os.path.join(OUT, "tiny_zip.pth"))
    torch.save(sd, os.path.join(OUT, "tiny_legacy.pth"), _use_new_zipfile_serialization=False)
    tiny = {"torch": torch.__version__, "tensors": [dict(name=n, **describe(t)) for n, t in flat("", sd)]}
    with open(os.path.join(OUT, "tiny.json"), "w") as f:
        json.dump(tiny, f, indent=1)
    if os.path.isdir(args.taef2):
        ref = {"torch": torch.__version__, "files": taef2(args.taef2)}
        with open(os.path.join(OUT, "taef2.json"), "w") as f:
            json.dump(ref, f, indent=1)
    else:
        print(f"no TAEF2 weights at {args.taef2}: taef2.json not written")


if __name__ == "__main__":
    main()
