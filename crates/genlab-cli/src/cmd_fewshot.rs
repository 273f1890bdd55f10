//! `genlab fewshot`: meta-train and evaluate few-shot learners (genlab-fewshot).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use genlab_fewshot::train::{EvalConfig, TrainConfig};

#[derive(Args)]
pub struct FewshotArgs {
    #[command(subcommand)]
    cmd: FewshotCmd,
}

#[derive(Subcommand)]
enum FewshotCmd {
    /// Meta-train a method on episodes of the meta-train classes; config.json,
    /// checkpoint.safetensors, state.json and log.jsonl (loss, training accuracy,
    /// meta-validation accuracy with its 95% interval) go to --out.
    Train(TrainArgs),
    /// Score a run on meta-test episodes: mean accuracy with its 95% confidence interval
    /// (for sinusoids: the query MSE after adapting to the K shots).
    Eval(EvalArgs),
    /// List the methods (paper, task kind, default config) and the data sources.
    List {
        /// Machine-readable.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// Method (`genlab fewshot list`): protonet, maml, pretrain.
    #[arg(long)]
    method: String,
    /// Data: glyphs (genlab data make glyphs), mnist (genlab data fetch mnist), digits,
    /// synthetic, sinusoid.
    #[arg(long)]
    data: String,
    /// N: classes per training episode.
    #[arg(long, default_value_t = 5)]
    ways: usize,
    /// K: examples per class in the support set (sinusoid: support points).
    #[arg(long, default_value_t = 1)]
    shots: usize,
    /// Q: queries per class (sinusoid: query points).
    #[arg(long, default_value_t = 15)]
    queries: usize,
    /// Meta-steps in total (on --resume: the new total).
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Tasks per meta-step.
    #[arg(long, default_value_t = 1)]
    meta_batch: usize,
    /// Adam's learning rate (the outer loop's).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Halve the learning rate every this many steps (0: never).
    #[arg(long, default_value_t = 0)]
    lr_halve_every: u64,
    /// Add each meta-train class turned by 90/180/270 degrees as new classes (training
    /// augmentation; test classes stay as they are).
    #[arg(long)]
    rotations: bool,
    /// Steps between meta-validations (each a log line).
    #[arg(long, default_value_t = 200)]
    val_every: u64,
    /// Episodes per meta-validation.
    #[arg(long, default_value_t = 100)]
    val_episodes: usize,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 500)]
    ckpt_every: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out up to --steps.
    #[arg(long)]
    resume: bool,
    /// A setting of the method's config, e.g. `--set inner_lr=0.01 --set first_order=true`
    /// or `--set embedding.channels=32` (repeatable; `genlab fewshot list` shows the keys).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args)]
struct EvalArgs {
    /// Run directory.
    #[arg(long)]
    ckpt: PathBuf,
    /// Score on this data's meta-test classes instead of the run's (cross-domain, e.g. a
    /// glyph-trained run on `mnist`; same image shape needed).
    #[arg(long)]
    data: Option<String>,
    /// N (default: the training episodes').
    #[arg(long)]
    ways: Option<usize>,
    /// K (default: the training episodes').
    #[arg(long)]
    shots: Option<usize>,
    /// Q per class (sinusoid: query points).
    #[arg(long, default_value_t = 15)]
    queries: usize,
    /// Test episodes (600: the standard protocol).
    #[arg(long, default_value_t = 600)]
    episodes: usize,
    /// Seed of the test episodes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the result (with both configs) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(a: FewshotArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    match a.cmd {
        FewshotCmd::Train(t) => {
            let overrides = t
                .set
                .iter()
                .map(|s| genlab_core::config::parse_override(s))
                .collect::<Result<Vec<_>, _>>()?;
            let cfg = TrainConfig {
                method: t.method,
                data: t.data,
                rotations: t.rotations,
                ways: t.ways,
                shots: t.shots,
                queries: t.queries,
                steps: t.steps,
                meta_batch: t.meta_batch,
                lr: t.lr,
                lr_halve_every: t.lr_halve_every,
                val_every: t.val_every,
                val_episodes: t.val_episodes,
                ckpt_every: t.ckpt_every,
                seed: t.seed,
                method_config: serde_json::Value::Null,
            };
            let total = cfg.steps;
            let mut on_log = |l: &genlab_fewshot::train::LogLine| {
                let acc = l
                    .train_accuracy
                    .map(|a| format!(", train acc {:.1}%", 100.0 * a))
                    .unwrap_or_default();
                let val = if l.train_accuracy.is_some() {
                    format!(
                        "val acc {:.1} +- {:.1}%",
                        100.0 * l.val.mean,
                        100.0 * l.val.ci95
                    )
                } else {
                    format!("val mse {:.3} +- {:.3}", l.val.mean, l.val.ci95)
                };
                eprintln!(
                    "step {}/{total}: loss {:.4}{acc}, {val} ({:.0} s)",
                    l.step, l.loss, l.seconds
                );
            };
            let cfg = genlab_fewshot::train::train(
                cfg,
                &overrides,
                &t.out,
                t.resume,
                device,
                &mut on_log,
            )?;
            println!(
                "trained {} on {} to step {}; run in {}",
                cfg.method,
                cfg.data,
                cfg.steps,
                t.out.display()
            );
            Ok(())
        }
        FewshotCmd::Eval(e) => {
            let ec = EvalConfig {
                data: e.data,
                ways: e.ways,
                shots: e.shots,
                queries: e.queries,
                episodes: e.episodes,
                seed: e.seed,
            };
            let r = genlab_fewshot::train::evaluate(&e.ckpt, &ec, device)?;
            if r.metric == "mse" {
                println!(
                    "{} on {}: {}-shot MSE {:.3} +- {:.3} (95% CI, {} tasks)",
                    r.method, r.data, r.shots, r.result.mean, r.result.ci95, r.episodes
                );
            } else {
                println!(
                    "{} on {}: {}-way {}-shot accuracy {:.2} +- {:.2}% (95% CI, {} episodes)",
                    r.method,
                    r.data,
                    r.ways,
                    r.shots,
                    100.0 * r.result.mean,
                    100.0 * r.result.ci95,
                    r.episodes
                );
            }
            if let Some(p) = e.json {
                genlab_core::io::write_json(&p, &r)?;
            }
            Ok(())
        }
        FewshotCmd::List { json } => {
            let methods: Vec<_> = genlab_fewshot::methods::METHODS
                .iter()
                .map(|m| m.info())
                .collect();
            if json {
                let sources: Vec<_> = genlab_fewshot::sources::SOURCES
                    .iter()
                    .map(|(n, d)| serde_json::json!({"name": n, "description": d}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"methods": methods, "data": sources})
                    )?
                );
            } else {
                println!("methods:");
                for m in &methods {
                    println!(
                        "  {:<10} {:?}: {}\n             {}",
                        m.name, m.kind, m.description, m.paper
                    );
                }
                println!("data:");
                for (n, d) in genlab_fewshot::sources::SOURCES {
                    println!("  {n:<10} {d}");
                }
            }
            Ok(())
        }
    }
}
