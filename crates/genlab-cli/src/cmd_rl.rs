//! `genlab rl`: train, evaluate and roll out reinforcement-learning agents (genlab-rl).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use indicatif::ProgressBar;

#[derive(Args)]
pub struct RlArgs {
    #[command(subcommand)]
    cmd: RlCmd,
}

#[derive(Subcommand)]
enum RlCmd {
    /// Train an agent on an environment; checkpoints, log.jsonl (episode returns) and
    /// returns.svg (the learning curve) go to --out.
    Train(TrainArgs),
    /// Evaluate a run's deterministic policy: mean, std, min and max return.
    Eval(EvalArgs),
    /// Play a run's deterministic policy: one JSON record per step (episode, t, obs, action,
    /// reward, next_obs, terminated, truncated), and with --gif the rendered frames.
    Rollout(RolloutArgs),
    /// Learning curves across runs (seeds): mean with a band of one standard deviation per
    /// algorithm and environment, and the mean and spread of the final returns.
    Report(ReportArgs),
    /// List the environments and algorithms (with what each supports).
    List {
        /// Machine-readable.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// Algorithm (`genlab rl list`).
    #[arg(long)]
    algo: String,
    /// Environment (`genlab rl list`).
    #[arg(long)]
    env: String,
    /// Environment steps to train for (on --resume: the new total).
    #[arg(long)]
    steps: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue the checkpoint in --out up to --steps.
    #[arg(long)]
    resume: bool,
    /// A setting of the algorithm's config, e.g. `--set lr=1e-3 --set hidden=[64,64]`
    /// (repeatable; the run's config.json lists them all).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Environment steps between checkpoints (default: a tenth of --steps, at least 1000).
    #[arg(long)]
    ckpt_every: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Run directory.
    #[arg(long, required_unless_present = "random")]
    ckpt: Option<PathBuf>,
    /// Evaluate a uniformly random policy on this environment instead (a baseline).
    #[arg(long, conflicts_with = "ckpt", value_name = "ENV")]
    random: Option<String>,
    #[arg(long, default_value_t = 100)]
    episodes: usize,
    /// Seed of the evaluation episodes' start states.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the result (with every episode's return) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct RolloutArgs {
    /// Run directory.
    #[arg(long)]
    ckpt: PathBuf,
    #[arg(long, default_value_t = 3)]
    episodes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// JSONL file, one record per step.
    #[arg(long)]
    out: PathBuf,
    /// Also write the rendered frames as an animated GIF (classic-control tasks).
    #[arg(long)]
    gif: Option<PathBuf>,
}

#[derive(Args)]
struct ReportArgs {
    /// Run directories (grouped by algorithm and environment).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// The chart (SVG).
    #[arg(long)]
    out: PathBuf,
    /// Also write the summaries as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Progress bar with the running return.
struct Bar {
    pb: ProgressBar,
}

impl genlab_rl::train::Observer for Bar {
    fn start(&mut self, from: u64, to: u64) {
        self.pb.set_length(to);
        self.pb.set_position(from);
        self.pb.set_prefix("rl train");
    }
    fn progress(&mut self, step: u64, running: Option<f64>) {
        self.pb.set_position(step);
        if let Some(r) = running {
            self.pb.set_message(format!("return {r:.1}"));
        }
    }
}

pub fn run(a: RlArgs) -> anyhow::Result<()> {
    match a.cmd {
        RlCmd::Train(t) => {
            let req = genlab_rl::train::TrainRequest {
                algo: t.algo,
                env: t.env,
                steps: t.steps,
                seed: t.seed,
                overrides: t.set,
                out: t.out.clone(),
                resume: t.resume,
                ckpt_every: t.ckpt_every,
            };
            let pb = if t.quiet {
                ProgressBar::hidden()
            } else {
                crate::progress::bar(0, "{prefix} [{bar:30}] {pos}/{len} steps {msg} ETA {eta}")
            };
            let mut bar = Bar { pb };
            let stop = crate::progress::stop_flag();
            let out = genlab_rl::train::train(&req, &mut bar, &stop)?;
            bar.pb.finish_and_clear();
            let ret = out
                .running_return
                .map_or("no episode finished".to_string(), |r| {
                    format!(
                        "mean return of the last {} episodes {r:.2}",
                        genlab_rl::train::RUNNING_EPISODES
                    )
                });
            println!(
                "{} {} environment steps, {} episodes, {ret}, {:.1} s; run in {}",
                if out.interrupted {
                    "interrupted after"
                } else {
                    "trained"
                },
                out.steps,
                out.episodes,
                out.seconds,
                t.out.display()
            );
            Ok(())
        }
        RlCmd::Eval(e) => {
            let r = match (&e.ckpt, &e.random) {
                (Some(c), _) => genlab_rl::train::evaluate(c, e.episodes, e.seed)?,
                (None, Some(env)) => genlab_rl::train::evaluate_random(env, e.episodes, e.seed)?,
                (None, None) => unreachable!("clap requires one"),
            };
            println!(
                "{} on {}: {} episodes, return {:.2} +- {:.2} (min {:.2}, max {:.2}), mean length {:.1}",
                r.algo, r.env, r.episodes, r.mean, r.std, r.min, r.max, r.mean_length
            );
            if let Some(p) = e.json {
                genlab_core::io::write_json(&p, &r)?;
            }
            Ok(())
        }
        RlCmd::Rollout(r) => {
            let res =
                genlab_rl::train::rollout(&r.ckpt, r.episodes, r.seed, &r.out, r.gif.as_deref())?;
            let rets: Vec<String> = res.returns.iter().map(|x| format!("{x:.2}")).collect();
            println!(
                "{} steps in {} episodes (returns {}) written to {}",
                res.steps,
                res.returns.len(),
                rets.join(", "),
                r.out.display()
            );
            if let Some(g) = r.gif {
                println!("{} frames written to {}", res.frames, g.display());
            }
            Ok(())
        }
        RlCmd::Report(r) => {
            let groups = genlab_rl::report::seeds_report(&r.runs, &r.out, 50)?;
            for g in &groups {
                let v: Vec<String> = g.final_running.iter().map(|x| format!("{x:.1}")).collect();
                println!(
                    "{}: {} runs, final return {:.2} +- {:.2} (min {:.2}, max {:.2}; {})",
                    g.label,
                    g.runs.len(),
                    g.mean,
                    g.std,
                    g.min,
                    g.max,
                    v.join(", ")
                );
            }
            if let Some(p) = r.json {
                genlab_core::io::write_json(&p, &groups)?;
            }
            println!("chart written to {}", r.out.display());
            Ok(())
        }
        RlCmd::List { json } => {
            let envs: Vec<_> = genlab_rl::ENVS.iter().map(|e| e.info()).collect();
            let algos: Vec<_> = genlab_rl::agents::ALGOS.iter().map(|a| a.info()).collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "envs": envs, "algos": algos })
                    )?
                );
                return Ok(());
            }
            println!("environments:");
            for e in &envs {
                println!(
                    "  {:<24} {:<38} obs {:<18} actions {:<12} {}",
                    e.name, e.upstream, e.observation, e.action, e.description
                );
            }
            println!("algorithms:");
            for a in &algos {
                let s = a.supports;
                let mut can = Vec::new();
                if s.discrete_actions {
                    can.push("discrete");
                }
                if s.continuous_actions {
                    can.push("continuous");
                }
                if s.tabular {
                    can.push("tabular");
                }
                if s.multi_agent {
                    can.push("multi-agent");
                }
                println!("  {:<12} [{}] {}", a.name, can.join(", "), a.description);
            }
            Ok(())
        }
    }
}
