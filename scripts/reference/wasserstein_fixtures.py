"""Reference fixtures for genlab-metrics' Wasserstein distances (exact, Sinkhorn, sliced, 1-D).

Writes small float32 .npy inputs and one JSON file of reference values, computed in float64
on exactly those float32 values, into crates/genlab-metrics/tests/fixtures/wasserstein/.

    .venv/bin/python scripts/reference/wasserstein_fixtures.py

References (POT = Python Optimal Transport):
- exact:    ot.emd2(a, b, M) with a = 1/n, b = 1/m, M = cdist(x, y)**p   -> W_p = cost**(1/p)
- sinkhorn: ot.sinkhorn2(a, b, M, reg * M.mean(), method="sinkhorn_log", stopThr=1e-9)
            -> the transport cost <pi, M> of the entropic plan; value = cost**(1/p)
- sliced:   ot.sliced_wasserstein_distance(x, y, projections=D.T, p=p) with the stored unit
            directions D (K x d)
- 1-D:      scipy.stats.wasserstein_distance(u, v) (p = 1), ot.wasserstein_1d(u, v, p=2)**0.5
"""

import json
import os
import sys

import numpy as np
import ot
import scipy
import scipy.stats
from scipy.spatial.distance import cdist

SEED = 20240603
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "..", "crates", "genlab-metrics", "tests", "fixtures", "wasserstein",
)
STOP_THR = 1e-9  # POT's default; genlab's sinkhorn::MARGINAL_TOL


def f32(a):
    """Round to float32 (what the .npy stores) and compute on those values in float64."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def save(name, arr):
    np.save(os.path.join(OUT, name), np.asarray(arr, dtype=np.float32))
    return name


def cost_matrix(x, y, p):
    d = cdist(x, y, "euclidean")
    return d if p == 1 else cdist(x, y, "sqeuclidean")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    versions = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pot": ot.__version__,
    }
    print("versions:", versions, "seed:", SEED)
    out = {"versions": versions, "seed": SEED, "stop_thr": STOP_THR,
           "exact": [], "sinkhorn": [], "sliced": [], "one_d": []}

    # Exact: n == m and n != m, 2-D, 8-D and 64-D, plus integer grid points (many ties).
    exact_cases = [
        ("e2_eq", 40, 40, 2, "gauss"),
        ("e2_neq", 50, 35, 2, "gauss"),
        ("e64_eq", 30, 30, 64, "gauss"),
        ("e64_neq", 45, 32, 64, "gauss"),
        ("e8_big", 200, 150, 8, "gauss"),
        ("e2_grid", 30, 20, 2, "grid"),
    ]
    for name, n, m, d, kind in exact_cases:
        if kind == "gauss":
            x = f32(rng.normal(0.0, 1.0, (n, d)))
            y = f32(rng.normal(0.5, 1.5, (m, d)))
        else:
            x = f32(rng.integers(0, 4, (n, d)))
            y = f32(rng.integers(0, 4, (m, d)))
        fx, fy = save(f"{name}_x.npy", x), save(f"{name}_y.npy", y)
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
        for p in (1, 2):
            M = cost_matrix(x, y, p)
            cost, log = ot.emd2(a, b, M, numItermax=10_000_000, log=True)
            assert log["warning"] is None, log["warning"]
            out["exact"].append({"name": name, "x": fx, "y": fy, "p": p,
                                 "cost": float(cost), "value": float(cost) ** (1.0 / p)})
            print(f"exact {name} p={p}: W = {float(cost) ** (1.0 / p):.12g}")

    # Sinkhorn (log domain), reg relative to the mean cost.
    sinkhorn_cases = [
        ("s2", 60, 40, 2, 2, 0.05),
        ("s16", 50, 50, 16, 1, 0.1),
        ("s64", 80, 70, 64, 2, 0.01),
    ]
    for name, n, m, d, p, reg in sinkhorn_cases:
        x = f32(rng.normal(0.0, 1.0, (n, d)))
        y = f32(rng.normal(0.3, 1.2, (m, d)))
        fx, fy = save(f"{name}_x.npy", x), save(f"{name}_y.npy", y)
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
        M = cost_matrix(x, y, p)
        eps = reg * M.mean()
        cost, log = ot.sinkhorn2(a, b, M, eps, method="sinkhorn_log", numItermax=100_000,
                                 stopThr=STOP_THR, log=True)
        plan = ot.sinkhorn(a, b, M, eps, method="sinkhorn_log", numItermax=100_000,
                           stopThr=STOP_THR)
        err = float(np.linalg.norm(plan.sum(0) - b))
        converged = err < STOP_THR
        assert converged, (name, err)
        out["sinkhorn"].append({"name": name, "x": fx, "y": fy, "p": p, "reg": reg,
                                "eps": float(eps), "cost": float(cost),
                                "value": float(cost) ** (1.0 / p),
                                "niter": int(log["niter"]), "marginal_error": err,
                                "converged": bool(converged)})
        print(f"sinkhorn {name} p={p} reg={reg}: value = {float(cost) ** (1.0 / p):.12g}, "
              f"{log['niter']} iterations, error {err:.2e}")

    # Sliced, with stored unit directions (float32: used as stored, not re-normalised).
    for name, n, m, d, k in [("sl10", 70, 45, 10, 20), ("sl3", 25, 60, 3, 7)]:
        x = f32(rng.normal(0.0, 1.0, (n, d)))
        y = f32(rng.normal(0.2, 0.8, (m, d)))
        theta = rng.normal(size=(k, d))
        dirs = f32(theta / np.linalg.norm(theta, axis=1, keepdims=True))
        fx, fy, fd = save(f"{name}_x.npy", x), save(f"{name}_y.npy", y), save(f"{name}_dirs.npy", dirs)
        for p in (1, 2):
            sw = ot.sliced_wasserstein_distance(x, y, projections=dirs.T, p=p)
            out["sliced"].append({"name": name, "x": fx, "y": fy, "dirs": fd, "p": p,
                                  "value": float(sw)})
            print(f"sliced {name} p={p}: {float(sw):.12g}")

    # 1-D, unequal sizes, with ties (values rounded to 0.1).
    u = f32(np.round(rng.normal(0.0, 1.0, 37), 1))
    v = f32(np.round(rng.normal(0.4, 2.0, 53), 1))
    fu, fv = save("d1_u.npy", u), save("d1_v.npy", v)
    w1 = scipy.stats.wasserstein_distance(u, v)
    w2 = float(ot.wasserstein_1d(u, v, p=2)) ** 0.5
    out["one_d"].append({"name": "d1", "u": fu, "v": fv, "p": 1, "value": float(w1),
                         "reference": "scipy.stats.wasserstein_distance"})
    out["one_d"].append({"name": "d1", "u": fu, "v": fv, "p": 2, "value": w2,
                         "reference": "ot.wasserstein_1d(p=2) ** 0.5"})
    print(f"1-D: W1 = {w1:.12g}, W2 = {w2:.12g}")

    with open(os.path.join(OUT, "wasserstein.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
