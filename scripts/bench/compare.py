"""Benchmark: genlab vs PyTorch on the same CPU workloads; prints one markdown table.

For each thread count N, runs (one after the other, never concurrently)
    GENLAB --threads N bench --workload W --min-time S --json
    .venv/bin/python scripts/bench/torch_bench.py --threads N --workload W --min-time S --json
(both print one JSON object per workload and line: impl, workload, threads, unit, rate,
median_s, iters, params, peak_rss_mib, rss_before_mib; genlab adds gflop_per_iter, gflops,
peak_gflops), then prints: workload | threads | genlab rate | PyTorch rate | ratio
(genlab / PyTorch, > 1: genlab faster) | genlab GFLOP/s (% of its measured GEMM peak) |
genlab peak MiB | PyTorch peak MiB | memory ratio (genlab / PyTorch, < 1: genlab smaller).
Peak MiB is each process's peak RSS; the increment over rss_before_mib is shown in brackets.

Run from the repository root (after `cargo build --release` and `bash scripts/setup-python.sh`,
on an otherwise idle machine):
    .venv/bin/python scripts/bench/compare.py [--threads 1,2] [--workload all]
        [--min-time 5] [--genlab target/release/genlab] [--json-out FILE]
    .venv/bin/python scripts/bench/compare.py --from-json FILE   (re-print a saved run)
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORKLOADS = ["mlp", "conv", "unet-train", "ddim50", "attention", "flow-train", "cfg-step",
             "clip-step", "xattn-unet-train", "dit-train", "video-dit-train", "simclr-step",
             "sd15-unet-step", "sd-vae-decode-512", "sd15-txt2img"]
# Minutes per run: left out of `all`, run by name or as the group `sd` (as genlab bench).
SD_WORKLOADS = ["sd15-unet-step", "sd-vae-decode-512", "sd15-txt2img"]
# peak_rss_mib must be present but may be null (genlab prints null where /proc is missing).
REQUIRED = ("workload", "threads", "unit", "rate", "peak_rss_mib")


def fail(msg, code=1):
    print(f"compare: {msg}", file=sys.stderr)
    sys.exit(code)


def parse_records(text, source):
    """JSON objects, one per line; other lines (progress, logs) are ignored."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            fail(f"{source} printed a line that is not valid JSON ({e}): {line[:200]}")
        if isinstance(rec, dict):
            out.append(rec)
    return out


def run(cmd, source):
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        fail(f"could not run {source}: {e}")
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        fail(f"{source} exited with status {proc.returncode}:\n{tail}")
    recs = parse_records(proc.stdout, source)
    if not recs:
        fail(f"{source} printed no JSON records (stdout: {proc.stdout.strip()[:300]!r})")
    return recs


def fmt_rate(r):
    v = r["rate"]
    s = f"{v:.3g}" if v < 100 else f"{v:.0f}"
    return f"{s} {r['unit']}"


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fmt_mem(r):
    if not num(r.get("peak_rss_mib")):
        return "n/a"
    s = f"{r['peak_rss_mib']:.0f}"
    before = r.get("rss_before_mib")
    if num(before):
        s += f" (+{r['peak_rss_mib'] - before:.0f})"
    return s


def fmt_gflops(g):
    gf = g.get("gflops")
    if not num(gf) and num(g.get("gflop_per_iter")):
        gf = g["gflop_per_iter"] * g["rate"]
    if not num(gf):
        return "n/a"
    pk = g.get("peak_gflops")
    if num(pk) and pk > 0:
        return f"{gf:.1f} ({100 * gf / pk:.0f}% of {pk:.0f})"
    return f"{gf:.1f}"


def table(records, workloads, threads):
    """Markdown table; returns (text, list of problems)."""
    index, problems = {}, []
    for r in records:
        missing = [k for k in REQUIRED if k not in r]
        missing += [k for k in ("rate", "threads") if k in r and not num(r[k])]
        if missing:
            problems.append(f"a {r.get('impl', '?')} record lacks (or has a non-numeric) {', '.join(missing)}: {r}")
            continue
        key = (r.get("impl"), r["workload"], int(r["threads"]))
        if key in index:
            problems.append(f"duplicate record for {key}")
        index[key] = r
    lines = [
        "| workload | threads | genlab rate | PyTorch rate | ratio | genlab GFLOP/s (% peak) "
        "| genlab peak MiB | PyTorch peak MiB | memory ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in workloads:
        for n in threads:
            g, p = index.get(("genlab", w, n)), index.get(("pytorch", w, n))
            for impl, r in (("genlab", g), ("pytorch", p)):
                if r is None:
                    problems.append(f"missing {impl} record for workload {w}, threads {n}")
            if g is not None and p is not None and g["unit"] != p["unit"]:
                problems.append(f"{w}/{n}: units differ (genlab {g['unit']}, PyTorch {p['unit']})")
            if g is not None and p is not None and g.get("params") != p.get("params"):
                problems.append(f"{w}/{n}: parameter counts differ "
                                f"(genlab {g.get('params')}, PyTorch {p.get('params')})")
            cells = [
                w, str(n),
                fmt_rate(g) if g else "MISSING",
                fmt_rate(p) if p else "MISSING",
                f"{g['rate'] / p['rate']:.2f}x" if g and p and p["rate"] > 0 else "-",
                fmt_gflops(g) if g else "-",
                fmt_mem(g) if g else "-",
                fmt_mem(p) if p else "-",
                f"{g['peak_rss_mib'] / p['peak_rss_mib']:.2f}"
                if g and p and num(g["peak_rss_mib"]) and num(p["peak_rss_mib"])
                and p["peak_rss_mib"] > 0 else "-",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), problems


def versions(records):
    seen = {}
    for r in records:
        if "version" in r:
            seen.setdefault(r.get("impl", "?"), str(r["version"]))
    return ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", help="comma-separated thread counts (default 1,2; with "
                    "--from-json: those in the file)")
    ap.add_argument("--workload", help=f"all (default), or a comma-separated list of "
                    f"{', '.join(WORKLOADS)} (with --from-json: those in the file)")
    ap.add_argument("--min-time", type=float, default=5.0)
    ap.add_argument("--genlab", default=os.path.join(ROOT, "target", "release", "genlab"),
                    help="the genlab binary (default: target/release/genlab of this checkout)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for torch_bench.py")
    ap.add_argument("--json-out", metavar="FILE", help="save all raw records (JSON list)")
    ap.add_argument("--from-json", metavar="FILE",
                    help="print the table from records saved by --json-out; runs nothing")
    args = ap.parse_args()

    saved = None
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        if not isinstance(saved, list):
            fail(f"{args.from_json} does not hold a JSON list of records")
        if args.threads is None:
            args.threads = ",".join(str(t) for t in sorted(
                {int(r["threads"]) for r in saved if isinstance(r, dict) and "threads" in r}))
        if args.workload is None:
            seen = {r.get("workload") for r in saved if isinstance(r, dict)}
            args.workload = ",".join(w for w in WORKLOADS if w in seen) or "all"
    args.threads = args.threads or "1,2"
    args.workload = args.workload or "all"

    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        fail(f"--threads must be a comma-separated list of integers, got {args.threads!r}")
    if not threads or min(threads) < 1:
        fail("--threads needs at least one positive thread count")
    workloads = {"all": [w for w in WORKLOADS if w not in SD_WORKLOADS],
                 "sd": SD_WORKLOADS}.get(args.workload) or args.workload.split(",")
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        fail(f"unknown workload(s) {', '.join(unknown)}; expected {', '.join(WORKLOADS)} or all")

    if saved is not None:
        records = saved
    else:
        if not (os.path.isfile(args.genlab) and os.access(args.genlab, os.X_OK)):
            fail(f"genlab binary not found at {args.genlab}: run `cargo build --release` first "
                 "(or pass --genlab PATH)", code=2)
        torch_bench = os.path.join(HERE, "torch_bench.py")
        records = []
        for n in threads:
            common = ["--workload", args.workload, "--min-time", str(args.min_time), "--json"]
            g = run([args.genlab, "--threads", str(n), "bench"] + common, "genlab bench")
            records += [dict(r, impl=r.get("impl", "genlab")) for r in g]
            records += run([args.python, torch_bench, "--threads", str(n)] + common,
                           "torch_bench.py")
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(records, f, indent=1)
            print(f"raw records written to {args.json_out}", file=sys.stderr)

    text, problems = table(records, workloads, threads)
    print(text)
    print()
    print("ratio = genlab rate / PyTorch rate (> 1: genlab faster); memory ratio = genlab peak "
          "RSS / PyTorch peak RSS (< 1: genlab smaller); (+N) = peak minus RSS before the first "
          "iteration. Rates are 1 / median iteration time.")
    v = versions(records)
    if v:
        print(f"Versions: {v}.")
    if problems:
        for p in problems:
            print(f"compare: {p}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
