//! `genlab bench`: fixed training and sampling workloads, timed, with achieved GFLOP/s next
//! to the machine's measured matrix-multiply peak and each workload's peak memory.
//!
//! The workloads and their timing are `genlab_train::bench`, with the workloads of the
//! crates above it chained in ([`REGISTRIES`]: genlab-labels' SimCLR step); this command
//! runs every
//! workload in its own child process (this binary re-executed with the hidden `--single`
//! flag) so that its peak resident memory is its own, and prints the table. The PyTorch
//! twins of the workloads are in `scripts/bench/torch_bench.py`;
//! `scripts/bench/compare.py` runs both and prints the ratios.

use std::process::Command;

use anyhow::Context;
use clap::Args;

use genlab_train::bench::{
    find_workload_in, measured_peak_gflops, select_workloads_in, time_workload, Record,
    WorkloadEntry,
};

/// Every workload registry `genlab bench` and `genlab list` see, in the order `all` runs
/// them: genlab-train's, then genlab-labels' (whose models genlab-train cannot reach).
pub const REGISTRIES: &[&[WorkloadEntry]] = &[
    genlab_train::bench::WORKLOADS,
    genlab_labels::bench::WORKLOADS,
];

/// The registered workloads, all registries chained.
pub fn workloads() -> impl Iterator<Item = &'static WorkloadEntry> {
    REGISTRIES.iter().flat_map(|r| r.iter())
}

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

/// The thread count `main` resolved (it sets RAYON_NUM_THREADS before any tensor work).
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(candle_core::utils::get_num_threads)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !(args.min_time.is_finite() && args.min_time >= 0.0) {
        anyhow::bail!(
            "--min-time must be a non-negative number of seconds, got {}",
            args.min_time
        );
    }
    if let Some(name) = &args.single {
        let rec = time_workload(
            find_workload_in(REGISTRIES, name)?,
            args.min_time,
            threads(),
        )?;
        println!("{}", serde_json::to_string(&rec)?);
        return Ok(());
    }
    let names: Vec<&str> = select_workloads_in(REGISTRIES, &args.workload)?
        .iter()
        .map(|w| w.name)
        .collect();
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
