//! `genlab transfer`: a trained representation reused on other data with few labels
//! (genlab-labels' `transfer`): linear probe, fine-tuning the last layers or all of them,
//! and training from scratch, over label counts and seeds.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use genlab_labels::transfer::{TransferConfig, MODES};

use crate::cmd_semi::parse_sets;

#[derive(Args)]
pub struct TransferArgs {
    #[command(subcommand)]
    cmd: TransferCmd,
}

#[derive(Subcommand)]
enum TransferCmd {
    /// Train every (mode, labels, seed) cell on --data from the representation of --from;
    /// writes config.json, results.jsonl (a rerun resumes from it), transfer.json (mean and
    /// range over seeds) and transfer.svg (accuracy against labels, bands over seeds).
    Run(RunArgs),
    /// List the modes and the default settings.
    List {
        /// Machine-readable.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// The source run: `genlab ssl train` (an encoder), `genlab train --model classifier`
    /// (a supervised classifier) or `genlab train --model vae` (probe only).
    #[arg(long)]
    from: PathBuf,
    /// Target data of the same image shape: digits28 (the 8x8 digits at 28x28), mnist,
    /// digits, synthetic.
    #[arg(long, default_value = "digits28")]
    data: String,
    /// Comma-separated modes: probe, finetune-last, finetune, scratch (default: all).
    #[arg(long, value_delimiter = ',')]
    modes: Option<Vec<String>>,
    /// Comma-separated labelled target examples per cell, class-balanced (default
    /// 10,20,50,100,200,500).
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<usize>>,
    /// Comma-separated seeds (default 0,1,2): each draws its own labelled subset and
    /// initialisation; the chart's bands span them.
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Another setting, e.g. `--set fit.min_steps=500`, `--set backbone_lr=1e-3`
    /// (repeatable; `genlab transfer list --json` shows them).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub fn run(a: TransferArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    match a.cmd {
        TransferCmd::Run(r) => {
            let d = TransferConfig::default();
            let base = TransferConfig {
                from: r.from.display().to_string(),
                data: r.data,
                modes: r.modes.unwrap_or(d.modes.clone()),
                labels: r.labels.unwrap_or(d.labels.clone()),
                seeds: r.seeds.unwrap_or(d.seeds.clone()),
                ..d
            };
            let cfg = genlab_labels::transfer::resolve(&base, &parse_sets(&r.set)?)?;
            let report =
                genlab_labels::transfer::run(&cfg, &r.out, device, &mut |l| eprintln!("{l}"))
                    .with_context(|| format!("transfer from {}", cfg.from))?;
            println!("source: {}", report.source);
            println!(
                "target: {} (test accuracy %, mean [min, max] over seeds)",
                report.data
            );
            print!("{:>8}", "labels");
            for m in &cfg.modes {
                print!(" {m:>22}");
            }
            println!();
            for &n in &cfg.labels {
                print!("{n:>8}");
                for m in &cfg.modes {
                    match report
                        .summary
                        .iter()
                        .find(|s| &s.mode == m && s.labels == n)
                    {
                        Some(s) => print!(
                            " {:>22}",
                            format!(
                                "{:.2} [{:.2}, {:.2}]",
                                100.0 * s.mean,
                                100.0 * s.min,
                                100.0 * s.max
                            )
                        ),
                        None => print!(" {:>22}", "-"),
                    }
                }
                println!();
            }
            println!("wrote {}", r.out.join("transfer.svg").display());
            Ok(())
        }
        TransferCmd::List { json } => {
            if json {
                let v = serde_json::json!({
                    "modes": MODES.iter().map(|m| serde_json::json!({"name": m.0, "description": m.1})).collect::<Vec<_>>(),
                    "defaults": TransferConfig::default(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (name, what) in MODES {
                    println!("  {name:<14} {what}");
                }
                println!(
                    "  Yosinski et al. 2014, arXiv:1411.1792; Kornblith, Shlens & Le 2019, arXiv:1805.08974"
                );
            }
            Ok(())
        }
    }
}
