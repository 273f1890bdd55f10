"""Reference fixture for genlab's FID Inception-v3 (crates/genlab-metrics/src/features/inception.rs).

Builds pytorch-fid's network (`pytorch_fid.inception.InceptionV3` with the
`fid_inception_v3()` body: FIDInceptionA/C/E_1/E_2, resize_input=True,
normalize_input=True, output block 3) with deterministic pseudo-random weights given by a
formula that the Rust test recomputes without any file, runs it on a few deterministic
images and writes the pool3 features (2048-d) and the softmax of the 1008-way logits
(pool3 @ fc.weight^T without fc.bias, the Inception Score's convention) to

    crates/genlab-metrics/tests/fixtures/inception/formula_weights.json
    crates/genlab-metrics/tests/fixtures/inception/conv1a_only.pth   (Conv2d_1a_3x3.* only)

The real weights (pt_inception-2015-12-05-6726825d.pth) cannot be downloaded here, so the
network is never loaded from them: `fid_inception_v3` is replaced by a function returning the
same architecture with formula weights, and pytorch-fid's own `InceptionV3` wrapper does the
resize/normalisation and the forward pass.

Formula (all integer arithmetic is on u64 and wraps):

    seed(key)   = FNV-1a 64 of the UTF-8 bytes of the state_dict key
    h(key, i)   = splitmix64_mix(seed(key) + (i + 1) * 0x9E3779B97F4A7C15), i = flat index
    u           = (h >> 40) / 2^24                      in [0, 1), exact in f32
    s           = 2u - 1                                in [-1, 1)
    *.conv.weight         s * sqrt(6 / fan_in)          (He-uniform; fan_in = in*kh*kw)
    *.bn.weight           1 + 0.1 s
    *.bn.bias             0.1 s
    *.bn.running_mean     0.1 s
    *.bn.running_var      1 + 0.1 s                     (in [0.9, 1.1))
    fc.weight             s * sqrt(75 / 2048)           (logits std ~3: a peaked softmax)
    fc.bias               0.1 s
    *.num_batches_tracked 0 (unused at inference)
  computed in f64, then rounded to f32.
  splitmix64_mix(z): z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB;
                     z ^ z>>31
  Input image `name` (NCHW, values in [0, 1)): u(key = "image:" + name, i) over the flat index.

Usage:
    .venv/bin/python scripts/reference/inception_fixture.py [--pth /tmp/inception_formula.pth]

--pth also writes the formula weights as a zip-format torch state_dict (for testing the .pth
loader locally: GENLAB_INCEPTION_PTH=/tmp/inception_formula.pth cargo test --release
-p genlab-metrics --test inception -- --ignored). Never commit that file (~95 MB).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

import pytorch_fid
import pytorch_fid.inception as pfi

MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)

# (name, shape N x C x H x W): batches passed to the network one at a time.
CASES = [
    ("rgb32", (2, 3, 32, 32)),  # upsampling 32 -> 299
    ("grey40", (1, 1, 40, 40)),  # grey, repeated to 3 channels, upsampling
    ("rgb320x304", (1, 3, 320, 304)),  # downsampling, not square
]

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "crates",
    "genlab-metrics",
    "tests",
    "fixtures",
    "inception",
    "formula_weights.json",
)


def fnv1a64(s: str) -> np.uint64:
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(h)


def uniform(key: str, n: int) -> np.ndarray:
    """u in [0, 1), float64, n values."""
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = fnv1a64(key) + i * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def formula_value(key: str, shape) -> np.ndarray:
    n = int(np.prod(shape)) if len(shape) else 1
    u = uniform(key, n)
    s = 2.0 * u - 1.0
    if key.endswith("num_batches_tracked"):
        return None
    if key.endswith(".conv.weight"):
        fan_in = int(np.prod(shape[1:]))
        v = s * math.sqrt(6.0 / fan_in)
    elif key.endswith(".bn.weight"):
        v = 1.0 + 0.1 * s
    elif key.endswith(".bn.bias") or key.endswith(".bn.running_mean"):
        v = 0.1 * s
    elif key.endswith(".bn.running_var"):
        v = 1.0 + 0.1 * s
    elif key == "fc.weight":
        v = s * math.sqrt(75.0 / shape[1])
    elif key == "fc.bias":
        v = 0.1 * s
    else:
        raise KeyError(f"no formula for {key}")
    return v.astype(np.float32).reshape(shape)


def build_fid_inception():
    """pytorch_fid.inception.fid_inception_v3() without the download, formula weights."""
    inception = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inception.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = pfi.FIDInceptionE_1(1280)
    inception.Mixed_7c = pfi.FIDInceptionE_2(2048)
    sd = inception.state_dict()
    new = {}
    for k, t in sd.items():
        v = formula_value(k, tuple(t.shape))
        new[k] = torch.zeros_like(t) if v is None else torch.from_numpy(v)
    inception.load_state_dict(new)
    return inception.eval()


def image(name, shape):
    return uniform("image:" + name, int(np.prod(shape))).astype(np.float32).reshape(shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pth", help="also write the formula weights as a zip-format .pth here")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()

    torch.manual_seed(0)  # nothing random is used; set anyway
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, pytorch-fid {pytorch_fid.__version__}, "
          f"numpy {np.__version__}")
    print(__doc__.split("Formula")[1].split("Usage")[0])

    inception = build_fid_inception()
    # pytorch-fid's own wrapper (resize to 299 bilinear align_corners=False, 2x-1, blocks 0..3)
    pfi.fid_inception_v3 = lambda: inception
    model = pfi.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    assert model.blocks[0][0] is inception.Conv2d_1a_3x3

    # Activation scale per block, to show the formula keeps the network O(1).
    hooks = []
    for name in ["Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]:
        mod = getattr(inception, name)
        hooks.append(mod.register_forward_hook(
            lambda m, i, o, name=name: print(f"  {name:14s} rms {o.pow(2).mean().sqrt():.4f}")))

    cases = []
    with torch.no_grad():
        for name, shape in CASES:
            x = torch.from_numpy(image(name, shape))
            print(f"case {name} {list(shape)}")
            if x.shape[1] == 1:
                # pytorch-fid's ImagePathDataset opens files with PIL .convert("RGB"), which
                # repeats a grey channel; the wrapper itself needs 3 channels.
                x = x.repeat(1, 3, 1, 1)
            pool3 = model(x)[0]  # N x 2048 x 1 x 1
            feats = pool3.flatten(1)
            # Inception Score logits: pool3 @ fc.weight^T without the bias, as the original
            # IS code (openai/improved-gan) and torch-fidelity's "logits_unbiased" compute them.
            logits = feats @ inception.fc.weight.T  # N x 1008
            probs = F.softmax(logits, dim=1)
            print(f"  pool3 mean {feats.mean():.4f} max {feats.max():.4f}; "
                  f"logits std {logits.std():.4f}; max prob {probs.max():.4f}")
            cases.append({
                "name": name,
                "shape": list(shape),
                "features": [[float(v) for v in row] for row in feats.numpy()],
                "probs": [[float(v) for v in row] for row in probs.numpy()],
            })
    for h in hooks:
        h.remove()

    doc = {
        "about": "pytorch-fid InceptionV3 (FID variant, block 3 = pool3) with formula weights; "
                 "written by scripts/reference/inception_fixture.py",
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "pytorch_fid": pytorch_fid.__version__, "numpy": np.__version__},
        # pytorch-fid's fid_inception_v3() state_dict layout, in order: the Rust test makes
        # its formula weights for exactly these keys.
        "state_dict": [[k, list(t.shape), str(t.dtype).replace("torch.", "")]
                       for k, t in inception.state_dict().items()],
        "cases": cases,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"wrote {os.path.normpath(args.out)} ({os.path.getsize(args.out)} bytes)")

    # A small zip-format .pth with only Conv2d_1a_3x3's tensors: the Rust test loads it
    # through the .pth reader and expects the error for the first key it lacks.
    small = {k: v for k, v in inception.state_dict().items() if k.startswith("Conv2d_1a_3x3.")}
    small_path = os.path.join(os.path.dirname(args.out), "conv1a_only.pth")
    torch.save(small, small_path)
    print(f"wrote {os.path.normpath(small_path)} ({os.path.getsize(small_path)} bytes, "
          f"keys {sorted(small)})")

    if args.pth:
        torch.save(inception.state_dict(), args.pth)
        print(f"wrote {args.pth} (zip-format torch state_dict; do not commit)")


if __name__ == "__main__":
    main()
