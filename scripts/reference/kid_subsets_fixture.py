"""Reference for genlab-metrics' KID over many random subsets (crates/genlab-metrics/src/
kernel.rs, `kid_on_subsets`): torchmetrics' `KernelInceptionDistance` on fixed features.

Features: the committed 16-D matrices of scripts/reference/metrics_fixtures.py (real16.npy,
300 x 16; fake16.npy, 250 x 16), read back, not regenerated. torchmetrics' `compute()` draws,
per subset, `torch.randperm(n_real)[:m]` then `torch.randperm(n_fake)[:m]`, takes the
unbiased MMD^2 of that pair with the polynomial kernel (x.y / d + 1)^3 (`poly_mmd`), and
returns the mean and `std(unbiased=False)` (the population std) over subsets. This script
replays that loop under a fixed torch seed, writing the drawn index lists with the per-subset
values, so the Rust test evaluates exactly the same subsets; it then runs the metric class
itself (an identity feature extractor, the same seed) and checks it returns the same mean and
std, so the fixture is torchmetrics' own output, not a restatement of it.

Writes crates/genlab-metrics/tests/fixtures/metrics/kid_subsets.json.

Usage (from the repository root, after `bash scripts/setup-python.sh`):
    .venv/bin/python scripts/reference/kid_subsets_fixture.py
"""
import json
import os
import sys

import numpy as np
import torch
import torchmetrics
from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd

SEED = 20261219
SUBSETS = 100
SUBSET_SIZE = 50
DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates",
                   "genlab-metrics", "tests", "fixtures", "metrics")


class Identity(torch.nn.Module):
    def forward(self, x):
        return x


def main():
    real = torch.from_numpy(np.load(os.path.join(DIR, "real16.npy")))
    fake = torch.from_numpy(np.load(os.path.join(DIR, "fake16.npy")))
    assert real.dtype == torch.float64 and fake.dtype == torch.float64

    # torchmetrics' compute() loop, recording the draws.
    torch.manual_seed(SEED)
    subsets, values = [], []
    for _ in range(SUBSETS):
        ir = torch.randperm(real.shape[0])[:SUBSET_SIZE]
        fr = torch.randperm(fake.shape[0])[:SUBSET_SIZE]
        subsets.append({"real": ir.tolist(), "fake": fr.tolist()})
        values.append(poly_mmd(real[ir], fake[fr]))
    values = torch.stack(values)
    mean, std = values.mean(), values.std(unbiased=False)

    # The metric class on the same seed must give the same numbers.
    metric = KernelInceptionDistance(feature=Identity(), subsets=SUBSETS, subset_size=SUBSET_SIZE)
    metric.set_dtype(torch.float64)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(SEED)
    m_mean, m_std = metric.compute()
    assert m_mean.dtype == torch.float64, m_mean.dtype
    if not (torch.equal(m_mean, mean) and torch.equal(m_std, std)):
        sys.exit(f"replayed loop ({mean}, {std}) differs from the metric ({m_mean}, {m_std})")

    out = {
        "about": "torchmetrics KernelInceptionDistance on real16.npy / fake16.npy, the subsets "
                 "it drew; written by scripts/reference/kid_subsets_fixture.py",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "torchmetrics": torchmetrics.__version__, "numpy": np.__version__},
        "seed": SEED,
        "real": "real16.npy",
        "fake": "fake16.npy",
        "subset_size": SUBSET_SIZE,
        "subsets": subsets,
        "values": values.tolist(),
        "kid_mean": float(mean),
        "kid_std": float(std),
        "kid_std_unbiased": float(values.std(unbiased=True)),
    }
    path = os.path.join(DIR, "kid_subsets.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(path)}: KID {float(mean):.9e} +- {float(std):.9e} "
          f"(population std; unbiased {out['kid_std_unbiased']:.9e}) over {SUBSETS} subsets "
          f"of {SUBSET_SIZE}")


if __name__ == "__main__":
    main()
