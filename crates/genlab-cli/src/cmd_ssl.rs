//! `genlab ssl`: self-supervised representation learning (genlab-labels).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use genlab_labels::ssl::{SslConfig, METHODS};

#[derive(Args)]
pub struct SslArgs {
    #[command(subcommand)]
    cmd: SslCmd,
}

#[derive(Subcommand)]
enum SslCmd {
    /// Train an encoder without labels; writes config.json, log.jsonl,
    /// checkpoint.safetensors and eval.json (linear-probe and k-NN test accuracy) to --out.
    Train(TrainArgs),
    /// Linear-probe and k-NN test accuracy of a trained encoder's frozen features.
    Eval {
        /// Run directory.
        #[arg(long)]
        ckpt: PathBuf,
        /// Evaluate on this data instead of the run's (same image shape).
        #[arg(long)]
        data: Option<String>,
        /// Change how the features are read, e.g. `--set probe.epochs=300`, `--set
        /// probe.lr_decay=constant`, `--set knn_k=10`, `--set probe_labels=1000`
        /// (repeatable; only probe.*, probe_labels and knn_k).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// List the methods (paper, default settings).
    List {
        /// Machine-readable.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// simclr, moco, byol, rotation, dae or masked (`genlab ssl list`).
    #[arg(long)]
    method: String,
    /// mnist (genlab data fetch mnist), digits or synthetic.
    #[arg(long)]
    data: String,
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Images per step.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Another setting, e.g. `--set method.temperature=0.2`, `--set probe_labels=1000`,
    /// `--set lr_decay=cosine`, `--set encoder.group_norm=8` (repeatable; `genlab ssl list
    /// --json` shows them).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn print_eval(e: &genlab_labels::ssl::SslEval) {
    println!(
        "{}: linear probe {:.2}%, {}-NN {:.2}% (test accuracy; probe trained on {} labels)",
        e.data,
        100.0 * e.linear_probe,
        e.knn_k,
        100.0 * e.knn,
        e.probe_labels
    );
}

pub fn run(a: SslArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    match a.cmd {
        SslCmd::Train(t) => {
            let base = SslConfig {
                method: t.method,
                data: t.data,
                steps: t.steps,
                batch: t.batch,
                seed: t.seed,
                ..SslConfig::default()
            };
            let cfg = genlab_labels::ssl::resolve(&base, &crate::cmd_semi::parse_sets(&t.set)?)?;
            let e = genlab_labels::ssl::train(&cfg, &t.out, device, &mut |l| eprintln!("{l}"))?;
            print_eval(&e);
            Ok(())
        }
        SslCmd::Eval { ckpt, data, set } => {
            print_eval(&genlab_labels::ssl::evaluate(
                &ckpt,
                data.as_deref(),
                &crate::cmd_semi::parse_sets(&set)?,
                device,
            )?);
            Ok(())
        }
        SslCmd::List { json } => {
            let methods: Vec<_> = METHODS.iter().map(|m| m.info()).collect();
            crate::cmd_list::print_methods(
                &methods,
                serde_json::to_value(SslConfig::default())?,
                json,
            )
        }
    }
}
