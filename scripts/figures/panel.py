"""Paste genlab's sample pictures side by side, each with a caption, into one PNG.

Usage: .venv/bin/python scripts/figures/panel.py OUT.png A.png "caption A" B.png "caption B" ...
Used for docs/img/distill-eight-gaussians.png (commands in docs/diffusion.md).
"""
import sys

from PIL import Image, ImageDraw

SIDE = 320  # each panel is resized to SIDE x SIDE
CAPTION = 25  # pixels above each panel for its caption


def main(argv):
    if len(argv) < 3 or len(argv) % 2 == 0:
        sys.exit("usage: panel.py OUT.png IMG CAPTION [IMG CAPTION ...]")
    out_path, pairs = argv[0], list(zip(argv[1::2], argv[2::2]))
    out = Image.new("RGB", (SIDE * len(pairs), SIDE + CAPTION), "white")
    draw = ImageDraw.Draw(out)
    for i, (path, caption) in enumerate(pairs):
        out.paste(Image.open(path).convert("RGB").resize((SIDE, SIDE)), (i * SIDE, CAPTION))
        draw.text((i * SIDE + 10, 6), caption, fill="black")
    out.save(out_path, optimize=True)


if __name__ == "__main__":
    main(sys.argv[1:])
