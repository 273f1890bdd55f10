"""Benchmark: FID and 1-NN with scipy / scikit-learn, the side genlab's metrics are compared to.

Generates two 10,000 x 2,048 feature sets (correlated Gaussians, seed fixed), writes them as
.npy (so genlab's `bench_metrics` example times the same data), then times
- FID: numpy mean/cov + scipy.linalg.sqrtm(S1 S2) (pytorch-fid's formula),
- 1-NN: sklearn NearestNeighbors(n_neighbors=1).kneighbors() on the 20,000-point union
  (leave-one-out), accuracy as in genlab's 1nn,
at the thread count of $THREADS (default 1) for BLAS/OpenMP.

Run:  THREADS=1 .venv/bin/python scripts/bench/metrics_scipy.py /tmp/genlab-bench
then: RAYON_NUM_THREADS=1 cargo run --release -p genlab-metrics --example bench_metrics -- /tmp/genlab-bench
"""
import json
import os
import sys
import time

THREADS = os.environ.get("THREADS", "1")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = THREADS

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.linalg  # noqa: E402
import sklearn  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

N, D = 10_000, 2_048


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/genlab-bench"
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(D, D)) / np.sqrt(D)
    real = rng.normal(size=(N, D)) @ a
    fake = rng.normal(size=(N, D)) @ (a * 1.05) + 0.01
    np.save(os.path.join(out, "real.npy"), real)
    np.save(os.path.join(out, "fake.npy"), fake)
    res = {"threads": int(THREADS), "numpy": np.__version__, "scipy": scipy.__version__,
           "sklearn": sklearn.__version__}
    with threadpool_limits(int(THREADS)):
        t = time.perf_counter()
        mu1, mu2 = real.mean(0), fake.mean(0)
        s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
        covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
        covmean = covmean.real
        diff = mu1 - mu2
        fid = diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
        res["fid"] = float(fid)
        res["fid_seconds"] = time.perf_counter() - t

        t = time.perf_counter()
        z = np.concatenate([real, fake])
        label = np.r_[np.ones(N), np.zeros(N)]
        nn = NearestNeighbors(n_neighbors=1).fit(z).kneighbors(return_distance=False)[:, 0]
        res["one_nn_accuracy"] = float((label[nn] == label).mean())
        res["one_nn_seconds"] = time.perf_counter() - t
    print(json.dumps(res, indent=1))
    with open(os.path.join(out, "scipy.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
