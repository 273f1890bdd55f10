"""Parity fixture for genlab's TAEF2 (crates/genlab-models/src/autoencoder/taef2.rs).

The networks are built here in PyTorch, independently of genlab, from the layout the two
state dicts have (../shared/weights/taef2/README.md; `nn.Sequential` indices are the key
prefixes), loaded with `load_state_dict(strict=True)` from the published float16 files and
run in float32:

  conv(i, o)  = Conv2d(i, o, 3, padding=1)
  Block(64)   = x <- x + pool(x) (blocks with pool.* keys only; pool = Conv2d(64, 256, 1,
                bias=False), GroupNorm(4, 256), ReLU, Conv2d(256, 64, 1, bias=False));
                ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x)
  encoder     = conv(3, 64), Block, 3 x [Conv2d(64, 64, 3, stride 2, padding 1, bias=False),
                Block, Block, Block] (pool in the last three), conv(64, 32)
  decoder     = tanh(x / 3) * 3, conv(32, 64), ReLU, 3 x [Block x3 (pool in the first
                three), Upsample(x2, nearest), Conv2d(64, 64, 3, padding 1, bias=False)],
                Block, conv(64, 3)        (with the last stage holding one Block)

Inputs: photos from the folder that scripts/data/skimage_photos.py makes (64x64 PNGs from
the scikit-image 0.26.0 wheel): `chelsea` and `coffee` as a batch of two 64x64 images, and
a 32x48 crop (rows 16:48, columns 8:56) of `astronaut`; RGB / 255 in float32.

Writes, under crates/genlab-models/tests/fixtures/taef2/ (float32 .npy):
  in64.npy      (2, 3, 64, 64)   inputs
  lat64.npy     (2, 32, 8, 8)    encoder(in64)
  dec64.npy     (2, 3, 64, 64)   decoder(lat64), not clamped
  in32x48.npy   (1, 3, 32, 48)
  lat32x48.npy  (1, 32, 4, 6)
  dec32x48.npy  (1, 3, 32, 48)
  meta.json     versions, the weights' sha256, PSNR of the clamped reconstructions

Usage:
  .venv/bin/python scripts/data/skimage_photos.py --out /tmp/photos64
  .venv/bin/python scripts/reference/taef2_fixture.py --photos /tmp/photos64 \
      [--weights ../shared/weights/taef2]
With --psnr-only it writes nothing and prints the mean per-image PSNR (peak 1) and the
seconds PyTorch took on every PNG of --photos (alpha composited on white, as genlab's
image folders do; the images must all have one size, a multiple of 8), to check
`genlab reconstruct --autoencoder taef2` on the same folder (docs/pretrained.md).
"""

import argparse
import hashlib
import json
import os

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "genlab-models", "tests", "fixtures", "taef2")
SHA256 = {
    "taef2_encoder.pth": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    "taef2_decoder.pth": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
}


def conv(i, o, **kw):
    return nn.Conv2d(i, o, 3, padding=1, **kw)


class Block(nn.Module):
    def __init__(self, pool):
        super().__init__()
        self.conv = nn.Sequential(conv(64, 64), nn.ReLU(), conv(64, 64), nn.ReLU(), conv(64, 64))
        self.pool = (
            nn.Sequential(
                nn.Conv2d(64, 256, 1, bias=False),
                nn.GroupNorm(4, 256),
                nn.ReLU(),
                nn.Conv2d(256, 64, 1, bias=False),
            )
            if pool
            else None
        )

    def forward(self, x):
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


def encoder():
    down = lambda: nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
    return nn.Sequential(
        conv(3, 64), Block(False),
        down(), Block(False), Block(False), Block(False),
        down(), Block(False), Block(False), Block(False),
        down(), Block(True), Block(True), Block(True),
        conv(64, 32),
    )


def decoder():
    up = lambda: [nn.Upsample(scale_factor=2, mode="nearest"), conv(64, 64, bias=False)]
    return nn.Sequential(
        Clamp(), conv(32, 64), nn.ReLU(),
        Block(True), Block(True), Block(True), *up(),
        Block(False), Block(False), Block(False), *up(),
        Block(False), Block(False), Block(False), *up(),
        Block(False), conv(64, 3),
    )


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load(net, path):
    assert sha256(path) == SHA256[os.path.basename(path)], path
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in sd.values())
    net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return net.eval()


def photo(folder, name):
    a = np.asarray(Image.open(os.path.join(folder, name + ".png")).convert("RGB"), dtype=np.float32)
    return (a / 255.0).transpose(2, 0, 1)


def on_white(path):
    """RGB in [0, 1], alpha composited on white (c' = a c + 1 - a)."""
    a = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float32) / 255.0
    rgb = a[..., :3] * a[..., 3:] + (1.0 - a[..., 3:])
    return rgb.transpose(2, 0, 1)


def psnr_only(enc, dec, folder):
    import time
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(".png"))
    x = torch.from_numpy(np.stack([on_white(os.path.join(folder, f)) for f in names]))
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with torch.no_grad():
        y = dec(enc(x)).clamp(0, 1)
    secs = time.perf_counter() - t0
    print(f"{len(names)} images {tuple(x.shape[1:])}: PSNR {psnr(x.numpy(), y.numpy()):.2f} dB; "
          f"{secs:.1f} s on 1 thread (torch {torch.__version__})")


def psnr(x, y):
    mse = ((x - y) ** 2).reshape(x.shape[0], -1).mean(axis=1)
    return float(np.mean(10 * np.log10(1.0 / mse)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True, help="folder made by scripts/data/skimage_photos.py")
    ap.add_argument("--weights", default=os.path.join(ROOT, "..", "shared", "weights", "taef2"))
    ap.add_argument("--psnr-only", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    enc = load(encoder(), os.path.join(a.weights, "taef2_encoder.pth"))
    dec = load(decoder(), os.path.join(a.weights, "taef2_decoder.pth"))
    if a.psnr_only:
        return psnr_only(enc, dec, a.photos)
    os.makedirs(OUT, exist_ok=True)
    cases = {
        "64": np.stack([photo(a.photos, "chelsea"), photo(a.photos, "coffee")]),
        "32x48": photo(a.photos, "astronaut")[None, :, 16:48, 8:56].copy(),
    }
    meta = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "weights_sha256": SHA256,
        "psnr_clamped": {},
    }
    with torch.no_grad():
        for tag, x in cases.items():
            x = np.ascontiguousarray(x, dtype=np.float32)
            z = enc(torch.from_numpy(x))
            y = dec(z).numpy().astype(np.float32)
            np.save(os.path.join(OUT, f"in{tag}.npy"), x)
            np.save(os.path.join(OUT, f"lat{tag}.npy"), z.numpy().astype(np.float32))
            np.save(os.path.join(OUT, f"dec{tag}.npy"), y)
            meta["psnr_clamped"][tag] = psnr(x, np.clip(y, 0, 1))
            print(tag, x.shape, tuple(z.shape), "latent std %.3f" % float(z.std()),
                  "PSNR %.2f dB" % meta["psnr_clamped"][tag])
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
