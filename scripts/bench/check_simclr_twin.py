"""Checks that torch_bench.py's batched SimCLR augmentation (`simclr_views`, the twin of the
views inside genlab's simclr-step workload) computes genlab's augment::simclr: the crop box
and jitter are drawn from the same uniforms, and each view is compared with a float64
transcription of crates/genlab-labels/src/augment.rs (`crop_resize`: bilinear, pixel centres
aligned, indices clamped to the border; `jitter`). Also checks that the twin network has
genlab's parameter count.

Usage:  .venv/bin/python scripts/bench/check_simclr_twin.py
"""
import math
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import torch_bench  # noqa: E402

# f32 grid_sample against the f64 formula: coordinates of size ~28 rounded in f32.
TOL = 1e-4


def crop_resize(x, top, left, ch, cw):
    """augment.rs crop_resize on one [H, W] image, in f64."""
    h, w = x.shape
    at = lambda i, j: x[min(max(i, 0), h - 1), min(max(j, 0), w - 1)]  # noqa: E731
    out = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            y = top + (i + 0.5) * ch / h - 0.5
            xx = left + (j + 0.5) * cw / w - 0.5
            y0, x0 = math.floor(y), math.floor(xx)
            fy, fx = y - y0, xx - x0
            out[i, j] = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) \
                + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1))
    return out


def main():
    torch.manual_seed(3)
    b, h, w = 16, 28, 28
    x = torch.rand(b, 1, h, w)
    state = torch.get_rng_state()
    views = torch_bench.simclr_views(torch, x)
    torch.set_rng_state(state)
    u = torch.rand(b, 7).double().numpy()  # the uniforms simclr_views drew
    worst = 0.0
    for k in range(b):
        area = (0.3 + 0.7 * u[k, 0]) * h * w
        ratio = math.exp(math.log(0.75) + u[k, 1] * (math.log(4 / 3) - math.log(0.75)))
        ch, cw = min(math.sqrt(area / ratio), h), min(math.sqrt(area * ratio), w)
        top, left = u[k, 2] * (h - ch), u[k, 3] * (w - cw)
        want = crop_resize(x[k, 0].double().numpy(), top, left, ch, cw)
        if u[k, 4] < 0.8:
            a, bright = 0.6 + 0.8 * u[k, 5], 0.8 * u[k, 6] - 0.4
            want = np.clip(a * (want - 0.5) + 0.5 + bright, 0.0, 1.0)
        worst = max(worst, float(np.abs(views[k, 0].double().numpy() - want).max()))
    print(f"batched views vs augment.rs's formula: max |diff| {worst:.2e} (tolerance {TOL})")
    M = torch_bench.build_modules(torch)
    count = torch_bench.n_params(M["SimClr"]())
    print(f"twin parameters {count}, genlab's {torch_bench.SIMCLR_PARAMS}")
    if worst > TOL or count != torch_bench.SIMCLR_PARAMS:
        sys.exit(1)


if __name__ == "__main__":
    main()
