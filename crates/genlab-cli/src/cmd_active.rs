//! `genlab active`: pool-based active learning (genlab-labels).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use genlab_labels::active::run::ActiveConfig;
use genlab_labels::active::STRATEGIES;
use genlab_labels::Curve;

#[derive(Args)]
pub struct ActiveArgs {
    #[command(subcommand)]
    cmd: ActiveCmd,
}

#[derive(Subcommand)]
enum ActiveCmd {
    /// Start from --initial class-balanced labels, train, acquire --per-round labels with
    /// --strategy, retrain, until --budget labels; writes config.json, rounds.jsonl,
    /// curve.json (test accuracy against labels), curve.svg and labelled.json to --out.
    Run(RunArgs),
    /// Several runs' learning curves on one chart (test error against labels), and the
    /// labels each needed to reach 10% and 5% test error.
    Plot {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The SVG to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// List the strategies (paper, what they score with) and the data.
    List {
        /// Machine-readable.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Acquisition strategy (`genlab active list`).
    #[arg(long)]
    strategy: String,
    /// mnist (genlab data fetch mnist), digits or synthetic.
    #[arg(long)]
    data: String,
    /// Labels to start with (class-balanced).
    #[arg(long, default_value_t = 20)]
    initial: usize,
    /// Labels acquired per round.
    #[arg(long, default_value_t = 10)]
    per_round: usize,
    /// Total labels: the run stops there.
    #[arg(long, default_value_t = 1000)]
    budget: usize,
    /// Random unlabelled candidates scored per round (0: the whole pool).
    #[arg(long, default_value_t = 2000)]
    pool_subset: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Another setting, e.g. `--set mc_samples=10`, `--set fit.epochs=20`,
    /// `--set model.dropout_fc=0` (repeatable; `genlab active list --json` shows them).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub fn run(a: ActiveArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    match a.cmd {
        ActiveCmd::Run(r) => {
            let overrides = crate::cmd_semi::parse_sets(&r.set)?;
            let base = ActiveConfig {
                strategy: r.strategy,
                data: r.data,
                initial: r.initial,
                per_round: r.per_round,
                budget: r.budget,
                pool_subset: r.pool_subset,
                seed: r.seed,
                ..ActiveConfig::default()
            };
            let cfg: ActiveConfig = genlab_core::config::resolve(&base, None, &overrides)?;
            let curve = genlab_labels::active::run::run(&cfg, &r.out, device, &mut |l| {
                eprintln!(
                    "round {}: {} labels, test accuracy {:.2}% (loss {:.3}, {:.0} s)",
                    l.round,
                    l.labels,
                    100.0 * l.test_accuracy,
                    l.train_loss,
                    l.seconds
                )
            })?;
            print_summary(&curve);
            println!("curve in {}", r.out.join("curve.json").display());
            Ok(())
        }
        ActiveCmd::Plot { runs, out } => {
            let curves = runs
                .iter()
                .map(|r| Curve::read(r))
                .collect::<Result<Vec<_>, _>>()?;
            for c in &curves {
                print_summary(c);
            }
            let svg = genlab_labels::curve::curves_svg(&curves)?;
            genlab_core::io::write_atomic(&out, svg.as_bytes())?;
            println!("chart in {}", out.display());
            Ok(())
        }
        ActiveCmd::List { json } => {
            let strategies: Vec<_> = STRATEGIES.iter().map(|s| s.info()).collect();
            let data: Vec<_> = genlab_labels::data::SOURCES
                .iter()
                .map(|(n, d)| serde_json::json!({"name": n, "description": d}))
                .collect();
            if json {
                let v = serde_json::json!({
                    "strategies": strategies,
                    "data": data,
                    "defaults": ActiveConfig::default(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("strategies:");
                for s in &strategies {
                    println!(
                        "  {:<17} {}\n                    {}",
                        s.name, s.description, s.paper
                    );
                }
                println!("data:");
                for (n, d) in genlab_labels::data::SOURCES {
                    println!("  {n:<10} {d}");
                }
            }
            Ok(())
        }
    }
}

/// One line per curve: final error and the labels needed to reach 10% / 5% error.
pub fn print_summary(c: &Curve) {
    let reach = |e: f64| {
        c.labels_to_reach(e)
            .map(|l| l.to_string())
            .unwrap_or_else(|| "not reached".into())
    };
    if let (Some(p), Some(err)) = (c.points.last(), c.final_error()) {
        println!(
            "{}: test error {:.2}% at {} labels; labels to 10% error: {}, to 5%: {}",
            c.name,
            100.0 * err,
            p.labels,
            reach(0.10),
            reach(0.05)
        );
    }
}
