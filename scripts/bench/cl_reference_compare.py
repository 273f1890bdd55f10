"""Wall-clock of `genlab cl run` against the reference PyTorch code of van de Ven & Tolias 2019
("Three scenarios for continual learning", GMvandeVen/continual-learning), same cells, same
seed, same thread count, on this machine.

Usage:
  git clone https://github.com/GMvandeVen/continual-learning REF
  git -C REF checkout a02db26          # the last version of the paper's code (2021-07-15)
  .venv/bin/python scripts/bench/cl_reference_compare.py --ref REF \
      --mnist ~/.cache/genlab/mnist --cells ewc-class,dgr-class,icarl-class --seed 0 \
      [--benchmark split-mnist] [--threads 1] [--genlab target/release/genlab] [--out cl_compare.json]

A cell is METHOD-SCENARIO with genlab's method names (finetune, joint, ewc, online-ewc, si, lwf,
replay, agem, dgr, dgr-distill, icarl) and scenario task | domain | class. For each cell the
reference's main.py runs once (with the hyperparameters its param_values.py picks, plus the
flags below that select the method) and `genlab cl run` once, both with --threads intra-op
threads and on the CPU. The MNIST IDX files are linked into the layout torchvision reads, so
nothing is downloaded. Reported per cell: the whole process's wall-clock for each (data
loading and the final evaluation included), the reference's own training time (its --time
file), genlab's `seconds`, each side's average accuracy, and the ratio reference / genlab
(> 1: genlab faster).

The reference code runs unchanged from a copy of REF (REF itself is never touched) with
PyTorch 2.15; the one addition, made by `patch_reference`, is a stub for its unused visdom
import (visdom no longer installs from PyPI). Its other imports are pinned in
scripts/requirements.txt.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# genlab method -> the reference's main.py flags (its README's list).
METHOD_FLAGS = {
    "finetune": [],
    "joint": ["--replay=offline"],
    "ewc": ["--ewc"],
    "online-ewc": ["--ewc", "--online"],
    "si": ["--si"],
    "lwf": ["--replay=current", "--distill"],
    "replay": ["--replay=exemplars", "--budget=2000"],
    "agem": ["--replay=exemplars", "--agem", "--budget=2000"],
    "dgr": ["--replay=generative"],
    "dgr-distill": ["--replay=generative", "--distill"],
    "icarl": ["--icarl", "--budget=2000", "--herding", "--norm-exemplars"],
}

# Online EWC's strength: main.py takes it through --lambda; compare_all.py's o_lambda values.
ONLINE_LAMBDA = {
    ("split-mnist", "task"): 1e8,
    ("split-mnist", "domain"): 1e8,
    ("split-mnist", "class"): 1e9,
    ("permuted-mnist", "task"): 500.0,
    ("permuted-mnist", "domain"): 1000.0,
    ("permuted-mnist", "class"): 5.0,
}

EXPERIMENT = {"split-mnist": "splitMNIST", "permuted-mnist": "permMNIST"}

IDX = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def patch_reference(src: Path, dst: Path) -> None:
    """Copy the reference checkout and apply the fixes a current PyTorch needs."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git"))
    # visdom (on-the-fly plots, never used here) no longer builds from PyPI; evaluate.py
    # imports it unconditionally, so a stub stands in that refuses to be used.
    (dst / "visdom.py").write_text(
        "class Visdom:\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        raise RuntimeError('visdom is stubbed out by cl_reference_compare.py')\n"
    )


def reference_commit(ref: Path) -> str:
    """REF's commit, or "unknown" where REF is not a git checkout."""
    p = subprocess.run(["git", "-C", str(ref), "rev-parse", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "unknown"


def link_mnist(mnist: Path, data_dir: Path) -> None:
    raw = data_dir / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX:
        f = mnist / name
        if not f.exists():
            sys.exit(f"missing {f}: run `genlab data fetch mnist` first (or pass --mnist DIR)")
        target = raw / name
        if not target.exists():
            target.symlink_to(f.resolve())


def run_reference(work: Path, args, method: str, scenario: str) -> dict:
    flags = list(METHOD_FLAGS[method])
    if method == "online-ewc":
        flags.append(f"--lambda={ONLINE_LAMBDA[(args.benchmark, scenario)]}")
    results = work / f"results-{method}-{scenario}"
    results.mkdir(exist_ok=True)
    argv = [
        "main.py",
        f"--experiment={EXPERIMENT[args.benchmark]}",
        f"--scenario={scenario}",
        f"--seed={args.seed}",
        "--no-gpus",
        "--time",
        f"--data-dir={work / 'datasets'}",
        f"--results-dir={results}",
        f"--plot-dir={work / 'plots'}",
        *flags,
    ]
    code = (
        "import runpy, sys, torch\n"
        f"torch.set_num_threads({args.threads})\n"
        f"sys.argv = {argv!r}\n"
        "runpy.run_path('main.py', run_name='__main__')\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], cwd=work / "ref", env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"reference {method}-{scenario} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    accs = re.findall(r"=> Average precision over all \d+ tasks: ([0-9.]+)", p.stdout)
    if not accs:
        sys.exit(f"reference {method}-{scenario} printed no average precision (is REF the "
                 f"a02db26 version?):\n{p.stdout[-2000:]}")
    times = list(results.glob("time-*.txt"))
    train_s = float(times[0].read_text().split()[0]) if times else None
    # iCaRL prints the softmax result first and the exemplar (nearest-mean) one after it.
    return {"wall_s": wall, "train_s": train_s, "accuracy": 100 * float(accs[-1])}


def run_genlab(work: Path, args, method: str, scenario: str) -> dict:
    out = work / f"genlab-{method}-{scenario}"
    cmd = [args.genlab, "--threads", str(args.threads), "cl", "run", "--benchmark", args.benchmark,
           "--scenario", scenario, "--method", method, "--seed", str(args.seed), "--out", str(out),
           "--quiet"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"genlab {method}-{scenario} failed:\n{p.stderr[-3000:]}")
    r = json.loads((out / "result.json").read_text())
    return {"wall_s": wall, "train_s": r.get("seconds"),
            "accuracy": 100 * r["measures"]["average_accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", required=True, type=Path, help="checkout of GMvandeVen/continual-learning")
    ap.add_argument("--mnist", type=Path, default=Path.home() / ".cache/genlab/mnist")
    ap.add_argument("--cells", required=True, help="comma-separated METHOD-SCENARIO")
    ap.add_argument("--benchmark", default="split-mnist", choices=sorted(EXPERIMENT))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--genlab", default="target/release/genlab")
    ap.add_argument("--out", type=Path, default=Path("cl_compare.json"))
    ap.add_argument("--keep", type=Path, help="keep the runs in this folder (default: a temporary one)")
    args = ap.parse_args()

    if not (args.ref / "main.py").is_file():
        sys.exit(f"--ref {args.ref}: no main.py there; expected a checkout of "
                 "GMvandeVen/continual-learning at a02db26 (see the usage above)")
    cells = []
    for c in args.cells.split(","):
        method, _, scenario = c.rpartition("-")
        if method not in METHOD_FLAGS or scenario not in ("task", "domain", "class"):
            sys.exit(f"bad cell {c!r}: expected METHOD-SCENARIO, METHOD one of "
                     f"{', '.join(METHOD_FLAGS)}, SCENARIO task | domain | class")
        cells.append((method, scenario))

    import torch

    work = (args.keep or Path(tempfile.mkdtemp(prefix="cl-compare-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "ref").exists():
        patch_reference(args.ref, work / "ref")
    link_mnist(args.mnist, work / "datasets")

    rows = []
    for method, scenario in cells:
        ref = run_reference(work, args, method, scenario)
        ours = run_genlab(work, args, method, scenario)
        row = {"cell": f"{method}-{scenario}", "reference": ref, "genlab": ours,
               "ratio_wall": ref["wall_s"] / ours["wall_s"]}
        rows.append(row)
        print(f"{row['cell']:>20}  reference {ref['wall_s']:7.1f} s ({ref['accuracy']:.2f}%)  "
              f"genlab {ours['wall_s']:7.1f} s ({ours['accuracy']:.2f}%)  "
              f"ratio {row['ratio_wall']:.2f}x", flush=True)
    meta = {"benchmark": args.benchmark, "seed": args.seed, "threads": args.threads,
            "torch": torch.__version__, "reference_commit": reference_commit(args.ref),
            "rows": rows}
    args.out.write_text(json.dumps(meta, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
