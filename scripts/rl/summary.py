"""Summarises the runs of scripts/rl/seeds.sh: per task, each seed's evaluation mean return
(deterministic policy) and training time, their mean and population std over seeds.

Usage: python3 scripts/rl/summary.py OUT_DIR   (standard library only)
"""

import json
import statistics
import sys
from pathlib import Path


def main():
    out = Path(sys.argv[1])
    print("| task | seeds | eval return per seed | mean +- std | train s (mean) |")
    print("|---|---:|---|---:|---:|")
    for task in sorted(p for p in out.iterdir() if p.is_dir()):
        evals = sorted(task.glob("seed*.eval.json"))
        if not evals:
            continue
        means = [json.loads(p.read_text())["mean"] for p in evals]
        times = [json.loads(p.with_name(p.name.replace(".eval.json", ".time.json")).read_text())["train_seconds"]
                 for p in evals if p.with_name(p.name.replace(".eval.json", ".time.json")).exists()]
        sd = statistics.pstdev(means) if len(means) > 1 else 0.0
        t = f"{statistics.mean(times):.1f}" if times else "?"
        print(f"| {task.name} | {len(means)} | {', '.join(f'{m:.2f}' for m in means)} | "
              f"{statistics.mean(means):.2f} +- {sd:.2f} | {t} |")


if __name__ == "__main__":
    main()
