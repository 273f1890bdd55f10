//! `genlab da`: unsupervised domain adaptation (genlab-labels).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use genlab_labels::da::{DaConfig, METHODS};

use crate::cmd_semi::parse_sets;

#[derive(Args)]
pub struct DaArgs {
    #[command(subcommand)]
    cmd: DaCmd,
}

#[derive(Subcommand)]
enum DaCmd {
    /// Train on --source's labels and --target's unlabelled images with --method; write
    /// config.json, log.jsonl and result.json (target and source test accuracy) to --out.
    Run(RunArgs),
    /// List the methods (paper, default settings).
    List {
        /// Machine-readable.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// source-only, target-only (the upper bound), dann or mmd.
    #[arg(long)]
    method: String,
    /// The labelled domain: mnist (genlab data fetch mnist), digits, digits28, synthetic.
    #[arg(long, default_value = "mnist")]
    source: String,
    /// The unlabelled domain, of the source's image shape and classes.
    #[arg(long, default_value = "digits28")]
    target: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Optimizer steps (default: 1500).
    #[arg(long)]
    steps: Option<usize>,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Another setting, e.g. `--set method.lambda=0.5`, `--set batch=32` (repeatable;
    /// `genlab da list --json` shows them).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub fn run(a: DaArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    match a.cmd {
        DaCmd::Run(r) => {
            let d = DaConfig::default();
            let base = DaConfig {
                method: r.method,
                source: r.source,
                target: r.target,
                seed: r.seed,
                steps: r.steps.unwrap_or(d.steps),
                ..d
            };
            let cfg = genlab_labels::da::resolve(&base, &parse_sets(&r.set)?)?;
            let res = genlab_labels::da::run(&cfg, &r.out, device, &mut |l| eprintln!("{l}"))?;
            println!(
                "{} {} -> {}: target test accuracy {:.2}%, source test accuracy {:.2}% ({:.0} s)",
                res.method,
                res.source,
                res.target,
                100.0 * res.target_accuracy,
                100.0 * res.source_accuracy,
                res.seconds
            );
            Ok(())
        }
        DaCmd::List { json } => {
            let methods: Vec<_> = METHODS.iter().map(|m| m.info()).collect();
            crate::cmd_list::print_methods(
                &methods,
                serde_json::to_value(DaConfig::default())?,
                json,
            )
        }
    }
}
