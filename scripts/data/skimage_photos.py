"""Makes a folder of small colour photos from the scikit-image wheel, for `folder:` inputs
(TAEF2 reconstructions, docs/pretrained.md).

The scikit-image wheel (BSD-3; the photos are CC0 / public domain, see skimage/data/README
in the wheel) is fetched with `pip download --no-deps` (nothing is installed) unless --wheel
gives it, checked against its sha256, and its colour photos under skimage/data/ are read
from the zip:

  - every colour photo, centre-cropped to a square and resized to SIZE x SIZE
    (`<name>.png`; logo.png keeps its alpha channel: genlab composites it on white);
  - from the photos at least 4*SIZE pixels on their shorter side, four square crops of a
    third of that side (top-left, top-right, bottom-left, bottom-right thirds' centres),
    resized to SIZE x SIZE (`<name>-crop<k>.png`).

Resizing: PIL LANCZOS (antialiased). Usage:
    .venv/bin/python scripts/data/skimage_photos.py --out photos64 [--size 64] [--wheel W]
"""

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile

from PIL import Image

WHEEL = "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"
PIP_SPEC = "scikit-image==0.26.0"

# The colour photos of skimage/data (the others are grey, binary or synthetic).
PHOTOS = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "color.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "logo.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def get_wheel(path):
    if path is None:
        tmp = tempfile.mkdtemp(prefix="skimage-wheel-")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
             "-d", tmp, PIP_SPEC],
            check=True,
        )
        path = os.path.join(tmp, WHEEL)
    got = sha256(path)
    if got != WHEEL_SHA256:
        sys.exit(f"{path}: sha256 {got}, expected {WHEEL_SHA256} ({PIP_SPEC})")
    return path


def square(img, box=None):
    """The centred square of `img` (or of the region `box`)."""
    if box is not None:
        img = img.crop(box)
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--wheel", default=None, help="the scikit-image 0.26.0 wheel, if already here")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    z = zipfile.ZipFile(get_wheel(a.wheel))
    n = 0
    for name in PHOTOS:
        img = Image.open(io.BytesIO(z.read("skimage/data/" + name)))
        img = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") and name == "logo.png" else "RGB")
        stem = name.rsplit(".", 1)[0]
        square(img).resize((a.size, a.size), Image.LANCZOS).save(os.path.join(a.out, stem + ".png"))
        n += 1
        w, h = img.size
        if min(w, h) >= 4 * a.size:
            t = min(w, h) // 3
            for k, (cx, cy) in enumerate([(w // 4, h // 4), (3 * w // 4, h // 4),
                                          (w // 4, 3 * h // 4), (3 * w // 4, 3 * h // 4)]):
                box = (cx - t // 2, cy - t // 2, cx - t // 2 + t, cy - t // 2 + t)
                crop = img.crop(box).resize((a.size, a.size), Image.LANCZOS)
                crop.save(os.path.join(a.out, f"{stem}-crop{k}.png"))
                n += 1
    print(f"{n} images of {a.size}x{a.size} in {a.out}")


if __name__ == "__main__":
    main()
