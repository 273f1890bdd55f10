"""POT side of the Wasserstein benchmark: times ot.emd2 / ot.sinkhorn2 / sliced on the
inputs written by `cargo run --release -p genlab-metrics --example bench_wasserstein`.

Usage (one thread, as the Rust side):
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        .venv/bin/python scripts/bench/wasserstein_pot.py target/bench-wasserstein [--skip-sinkhorn]

Prints values (to compare with the Rust output) and seconds; asserts nothing.
"""

import os
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402
import ot  # noqa: E402
import scipy  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "target/bench-wasserstein"
    sinkhorn = "--skip-sinkhorn" not in sys.argv
    print(f"numpy {np.__version__}, scipy {scipy.__version__}, POT {ot.__version__}")
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    x5 = np.load(os.path.join(folder, "x.npy")).astype(np.float64)
    y5 = np.load(os.path.join(folder, "y.npy")).astype(np.float64)
    print("case                               value          seconds  note")
    for n, m, p in [(1000, 1000, 2), (3000, 3000, 2), (3000, 2000, 2)]:
        x, y = x5[:n], y5[:m]
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
        t = time.perf_counter()
        M = cdist(x, y, "sqeuclidean") if p == 2 else cdist(x, y)
        t_cost = time.perf_counter() - t
        t = time.perf_counter()
        cost, log = ot.emd2(a, b, M, numItermax=10_000_000, log=True)
        t_emd = time.perf_counter() - t
        print(f"ot.emd2 {n}+{m} p={p}                {cost ** (1 / p):<14.10f} "
              f"{t_emd:>7.3f}  +{t_cost:.3f} s cdist; {log['warning']}")
    if sinkhorn:
        n = m = 5000
        reg = 0.05
        t = time.perf_counter()
        M = cdist(x5, y5, "sqeuclidean")
        eps = reg * M.mean()
        t_cost = time.perf_counter() - t
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
        t = time.perf_counter()
        cost, log = ot.sinkhorn2(a, b, M, eps, method="sinkhorn_log", numItermax=10_000,
                                 stopThr=1e-9, log=True)
        t_s = time.perf_counter() - t
        print(f"ot.sinkhorn2 log 5000+5000 p=2     {float(cost) ** 0.5:<14.10f} {t_s:>7.3f}  "
              f"+{t_cost:.3f} s cdist; eps {eps:.6f}, {log['niter']} iterations, "
              f"{1e3 * t_s / (log['niter'] + 1):.1f} ms/iteration")
        t = time.perf_counter()
        cost, log = ot.sinkhorn2(a, b, M, eps, method="sinkhorn", numItermax=10_000,
                                 stopThr=1e-9, log=True)
        t_s = time.perf_counter() - t
        print(f"ot.sinkhorn2 plain 5000+5000 p=2   {float(cost) ** 0.5:<14.10f} {t_s:>7.3f}  "
              f"{log['niter']} iterations")
    t = time.perf_counter()
    sw = ot.sliced_wasserstein_distance(x5, y5, n_projections=128, p=2, seed=0)
    print(f"ot sliced 5000+5000 p=2 (own dirs) {sw:<14.10f} {time.perf_counter() - t:>7.3f}")


if __name__ == "__main__":
    main()
