//! `genlab semi`: semi-supervised learning (genlab-labels).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use genlab_labels::semi::{SemiConfig, METHODS};

#[derive(Args)]
pub struct SemiArgs {
    #[command(subcommand)]
    cmd: SemiCmd,
}

#[derive(Subcommand)]
enum SemiCmd {
    /// Draw --labels class-balanced labelled examples, treat the rest of the pool as
    /// unlabelled, train with --method and write config.json and result.json (test
    /// accuracy) to --out.
    Run(RunArgs),
    /// List the methods (paper, default settings) and the data.
    List {
        /// Machine-readable.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// supervised, self-training, co-training or fixmatch.
    #[arg(long)]
    method: String,
    /// mnist (genlab data fetch mnist), digits or synthetic.
    #[arg(long)]
    data: String,
    /// Labelled examples (class-balanced).
    #[arg(long, default_value_t = 100)]
    labels: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Another setting, e.g. `--set method.steps=500`, `--set fit.min_steps=200`
    /// (repeatable; `genlab semi list --json` shows them).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Parses repeated `--set KEY=VALUE`.
pub fn parse_sets(sets: &[String]) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    Ok(sets
        .iter()
        .map(|s| genlab_core::config::parse_override(s))
        .collect::<Result<Vec<_>, _>>()?)
}

pub fn run(a: SemiArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    match a.cmd {
        SemiCmd::Run(r) => {
            let base = SemiConfig {
                method: r.method,
                data: r.data,
                labels: r.labels,
                seed: r.seed,
                ..SemiConfig::default()
            };
            let cfg = genlab_labels::semi::resolve(&base, &parse_sets(&r.set)?)?;
            let res = genlab_labels::semi::run(&cfg, &r.out, device, &mut |l| eprintln!("{l}"))?;
            println!(
                "{} on {} with {} labels: test accuracy {:.2}% (error {:.2}%, {:.0} s)",
                res.method,
                res.data,
                res.labels,
                100.0 * res.test_accuracy,
                100.0 * (1.0 - res.test_accuracy),
                res.seconds
            );
            Ok(())
        }
        SemiCmd::List { json } => {
            let methods: Vec<_> = METHODS.iter().map(|m| m.info()).collect();
            crate::cmd_list::print_methods(
                &methods,
                serde_json::to_value(SemiConfig::default())?,
                json,
            )
        }
    }
}
