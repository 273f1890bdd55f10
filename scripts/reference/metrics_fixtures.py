"""Reference values for genlab-metrics' FID, KID, MMD, IS, Mode Score and 1-NN tests.

Each value comes from an implementation independent of genlab's:
- FID: pytorch-fid's `calculate_frechet_distance` formula (scipy.linalg.sqrtm of S1 S2),
  restated here so the script needs no torch.
- KID: torchmetrics' `poly_kernel` + `maximum_mean_discrepancy` formula on the full sets.
- MMD (RBF): scikit-learn's `rbf_kernel`, bandwidth = numpy median of scipy `pdist`.
- IS / Mode Score: the original split formula with `scipy.stats.entropy` as the KL.
- 1-NN: scikit-learn `NearestNeighbors(n_neighbors=1).kneighbors()` (excludes each point).

Run: .venv/bin/python scripts/reference/metrics_fixtures.py  (writes crates/genlab-metrics/tests/fixtures/metrics/)
"""
import json
import os

import numpy as np
import scipy
import scipy.linalg
import scipy.spatial.distance
import scipy.stats
import sklearn
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.neighbors import NearestNeighbors

SEED = 20261128
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "genlab-metrics", "tests",
                   "fixtures", "metrics")


def frechet_distance(mu1, s1, mu2, s2, eps=1e-6):
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid(x, y):
    return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def torchmetrics_kid_full(x, y):
    gamma = 1.0 / x.shape[1]
    kxx = (x @ x.T * gamma + 1.0) ** 3
    kyy = (y @ y.T * gamma + 1.0) ** 3
    kxy = (x @ y.T * gamma + 1.0) ** 3
    m = kxx.shape[0]
    kt_xx = (kxx.sum(-1) - np.diag(kxx)).sum()
    kt_yy = (kyy.sum(-1) - np.diag(kyy)).sum()
    value = (kt_xx + kt_yy) / (m * (m - 1))
    value -= 2 * kxy.sum() / (m ** 2)
    return float(value)


def mmd_rbf_median(x, y):
    pooled = np.concatenate([x, y])
    sigma = float(np.median(scipy.spatial.distance.pdist(pooled)))
    g = 1.0 / (2 * sigma * sigma)
    kxx, kyy, kxy = rbf_kernel(x, x, gamma=g), rbf_kernel(y, y, gamma=g), rbf_kernel(x, y, gamma=g)
    n, m = len(x), len(y)
    v = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
         - 2 * kxy.mean())
    return float(v), sigma


def inception_score(p, splits):
    scores = []
    n = len(p)
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        py = part.mean(0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(row, py) for row in part])))
    return float(np.mean(scores)), float(np.std(scores))


def mode_score(p, p_real, splits):
    p_star = p_real.mean(0)
    scores = []
    n = len(p)
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        py = part.mean(0)
        e = np.mean([scipy.stats.entropy(row, py) for row in part])
        scores.append(np.exp(e - scipy.stats.entropy(py, p_star)))
    return float(np.mean(scores)), float(np.std(scores))


def one_nn(x, y):
    z = np.concatenate([x, y])
    label = np.r_[np.ones(len(x)), np.zeros(len(y))]
    nn = NearestNeighbors(n_neighbors=1).fit(z).kneighbors(return_distance=False)[:, 0]
    ok = label[nn] == label
    return float(ok.mean()), float(ok[: len(x)].mean()), float(ok[len(x):].mean())


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def main():
    rng = np.random.default_rng(SEED)
    os.makedirs(OUT, exist_ok=True)
    # 16-D: correlated Gaussians, fake slightly shifted and rescaled; different sizes.
    a = rng.normal(size=(16, 16)) / 4
    real = rng.normal(size=(300, 16)) @ a + 1.0
    fake = rng.normal(size=(250, 16)) @ (a * 1.2) + 1.1
    # 64-D, equal sizes (KID's setting), N > D so scipy's sqrtm is well conditioned.
    b = rng.normal(size=(64, 64)) / 8
    real64 = rng.normal(size=(200, 64)) @ b
    fake64 = rng.normal(size=(200, 64)) @ b + 0.05 * rng.normal(size=64)
    probs_fake = softmax(rng.normal(size=(500, 10)) * 3)
    probs_real = softmax(rng.normal(size=(400, 10)) * 3 + np.linspace(0, 1, 10))

    for name, arr in [("real16", real), ("fake16", fake), ("real64", real64), ("fake64", fake64),
                      ("probs_fake", probs_fake), ("probs_real", probs_real)]:
        np.save(os.path.join(OUT, name + ".npy"), arr.astype(np.float64))

    mmd16, sigma16 = mmd_rbf_median(real, fake)
    is_m, is_s = inception_score(probs_fake, 10)
    ms_m, ms_s = mode_score(probs_fake, probs_real, 10)
    nn_acc, nn_real, nn_fake = one_nn(real, fake)
    nn64 = one_nn(real64, fake64)
    expected = {
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__,
                     "sklearn": sklearn.__version__, "seed": SEED},
        "fid16": fid(real, fake),
        "fid64": fid(real64, fake64),
        "kid64_full": torchmetrics_kid_full(real64, fake64),
        "kid16_equal": torchmetrics_kid_full(real[:250], fake),
        "mmd_rbf16": mmd16,
        "sigma16": sigma16,
        "is10": [is_m, is_s],
        "mode10": [ms_m, ms_s],
        "is1": list(inception_score(probs_fake, 1)),
        "nn16": [nn_acc, nn_real, nn_fake],
        "nn64": list(nn64),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
