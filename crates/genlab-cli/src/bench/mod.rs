//! `genlab bench`: fixed training and sampling workloads, timed, with achieved GFLOP/s next
//! to the machine's measured matrix-multiply peak and each workload's peak memory.
//!
//! Every workload runs in its own child process (this binary re-executed with the hidden
//! `--single` flag) so that its peak resident memory is its own. The PyTorch twins of the
//! workloads are in `scripts/bench/torch_bench.py`; `scripts/bench/compare.py` runs both
//! and prints the ratios.
//!
//! Timing: warm-up iterations, then single iterations until `--min-time` seconds and a
//! minimum count have passed; the reported time is the median iteration (robust to a
//! shared machine's hiccups), and the rate its inverse.

mod workloads;

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor};
use clap::Args;
use serde::{Deserialize, Serialize};

pub use workloads::WORKLOADS;

/// Options of `genlab bench` (its long help is on the subcommand, in main.rs).
#[derive(Args)]
pub struct BenchArgs {
    /// Workloads to run: `all` or a comma-separated list (see `genlab list`).
    #[arg(long, default_value = "all")]
    workload: String,
    /// Time each workload for at least this many seconds (after warm-up).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    min_time: f64,
    /// One JSON object per workload on stdout (the schema compare.py reads).
    #[arg(long)]
    json: bool,
    /// Internal: run one workload in this process and print its JSON record.
    #[arg(long, hide = true, value_name = "WORKLOAD")]
    single: Option<String>,
}

/// One workload's result (the schema shared with scripts/bench/torch_bench.py).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Record {
    #[serde(rename = "impl")]
    pub implementation: String,
    pub version: String,
    pub workload: String,
    pub threads: usize,
    pub unit: String,
    pub rate: f64,
    pub median_s: f64,
    pub iters: usize,
    pub params: usize,
    pub gflop_per_iter: f64,
    pub gflops: f64,
    pub peak_gflops: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub rss_before_mib: Option<f64>,
}

/// Warm-up iterations and the minimum number of timed ones for a workload.
fn iteration_counts(name: &str) -> (usize, usize) {
    // ddim50: one iteration is 50 U-Net passes (seconds); a single warm-up run suffices.
    if name == "ddim50" {
        (1, 3)
    } else {
        (3, 5)
    }
}

/// The thread count `main` resolved (it sets RAYON_NUM_THREADS before any tensor work).
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(candle_core::utils::get_num_threads)
}

/// A field of /proc/self/status in MiB (`VmHWM`: peak resident set; `VmRSS`: current).
fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs one workload in this process and returns its record.
fn run_single(name: &str, min_time: f64) -> anyhow::Result<Record> {
    let unit = WORKLOADS
        .iter()
        .find(|w| w.0 == name)
        .map(|w| w.1)
        .with_context(|| format!("unknown workload `{name}`"))?;
    let mut w = workloads::build(name)?;
    let rss_before = proc_status_mib("VmRSS");
    let (warm, min_iters) = iteration_counts(name);
    for _ in 0..warm {
        (w.iter)()?;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_iters || start.elapsed().as_secs_f64() < min_time {
        let t = Instant::now();
        (w.iter)()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(Record {
        implementation: "genlab".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        workload: name.into(),
        threads: threads(),
        unit: unit.into(),
        rate: 1.0 / median,
        median_s: median,
        iters: times.len(),
        params: w.params,
        gflop_per_iter: w.flop_per_iter / 1e9,
        gflops: w.flop_per_iter / median / 1e9,
        peak_gflops: None,
        peak_rss_mib: proc_status_mib("VmHWM"),
        rss_before_mib: rss_before,
    })
}

/// This machine's sgemm throughput at the current thread count: the best of a few
/// 2048x2048x2048 products through candle's matmul (the GEMM every kernel here uses).
fn measured_peak_gflops() -> anyhow::Result<f64> {
    const N: usize = 2048;
    let a = Tensor::ones((N, N), candle_core::DType::F32, &Device::Cpu)?;
    let b = a.clone();
    a.matmul(&b)?; // warm-up: thread pools, page faults
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        a.matmul(&b)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (N * N * N) as f64 / best / 1e9)
}

/// Resolves `--workload` into names.
fn selected(spec: &str) -> anyhow::Result<Vec<&'static str>> {
    let names: Vec<&'static str> = WORKLOADS.iter().map(|w| w.0).collect();
    if spec == "all" {
        return Ok(names);
    }
    spec.split(',')
        .map(|s| {
            let s = s.trim();
            names.iter().copied().find(|n| *n == s).with_context(|| {
                format!(
                    "unknown workload `{s}`; expected `all` or a comma-separated list of: {}",
                    names.join(", ")
                )
            })
        })
        .collect()
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !(args.min_time.is_finite() && args.min_time >= 0.0) {
        anyhow::bail!(
            "--min-time must be a non-negative number of seconds, got {}",
            args.min_time
        );
    }
    if let Some(name) = &args.single {
        let rec = run_single(name, args.min_time)?;
        println!("{}", serde_json::to_string(&rec)?);
        return Ok(());
    }
    let names = selected(&args.workload)?;
    let n_threads = threads();
    eprintln!("measuring the sgemm peak at {n_threads} thread(s)...");
    let peak = measured_peak_gflops()?;
    let exe = std::env::current_exe().context("cannot locate the genlab executable")?;
    let mut records = Vec::new();
    for name in names {
        eprintln!("running {name} (at least {} s)...", args.min_time);
        let out = Command::new(&exe)
            .args([
                "--threads",
                &n_threads.to_string(),
                "bench",
                "--single",
                name,
            ])
            .args(["--min-time", &args.min_time.to_string()])
            .output()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !out.status.success() {
            anyhow::bail!(
                "workload {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let line = String::from_utf8_lossy(&out.stdout);
        let mut rec: Record = serde_json::from_str(line.trim())
            .with_context(|| format!("workload {name} printed no record: {line}"))?;
        rec.peak_gflops = Some(peak);
        if args.json {
            println!("{}", serde_json::to_string(&rec)?);
        }
        records.push(rec);
    }
    if !args.json {
        print_table(&records, peak);
    }
    Ok(())
}

fn print_table(records: &[Record], peak: f64) {
    let threads = records.first().map_or(0, |r| r.threads);
    println!(
        "genlab {} bench, {threads} thread(s), measured sgemm peak {peak:.0} GFLOP/s",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "{:<11} {:>9} {:<8} {:>9} {:>10} {:>8} {:>7} {:>9}",
        "workload", "rate", "unit", "ms/iter", "GFLOP/iter", "GFLOP/s", "% peak", "peak MiB"
    );
    for r in records {
        println!(
            "{:<11} {:>9.2} {:<8} {:>9.1} {:>10.3} {:>8.1} {:>6.0}% {:>9}",
            r.workload,
            r.rate,
            r.unit,
            r.median_s * 1e3,
            r.gflop_per_iter,
            r.gflops,
            100.0 * r.gflops / peak,
            r.peak_rss_mib.map_or("n/a".into(), |m| format!("{m:.0}")),
        );
    }
}
