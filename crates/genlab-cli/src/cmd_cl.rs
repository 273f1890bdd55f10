//! `genlab cl`: continual learning (genlab-continual): one run, the table over seeds, the
//! list of benchmarks and methods.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use indicatif::ProgressBar;

use genlab_continual::benchmark::{parse_groups, BENCHMARKS};
use genlab_continual::methods::METHODS;
use genlab_continual::report::{cells, table_text, write_run};
use genlab_continual::train::{Observer, RunConfig, RunResult};
use genlab_continual::Scenario;

#[derive(Args)]
pub struct ClArgs {
    #[command(subcommand)]
    cmd: ClCmd,
}

#[derive(Subcommand)]
enum ClCmd {
    /// Train one method on a benchmark's task sequence in one scenario. Writes
    /// result.json (config, accuracy matrix R[i][j] = accuracy on task j after task i,
    /// average accuracy, backward/forward transfer, forgetting, curves, memory) and
    /// index.html (with matrix.svg and curves.svg) into --out.
    Run(RunArgs),
    /// Run the grid of methods x scenarios x seeds (each run in DIR/METHOD-SCENARIO-sSEED,
    /// reused when already there with the same config) and print the table of average
    /// accuracies, mean ± standard deviation over seeds; table.json and table.md go to --out.
    Table(TableArgs),
    /// List the benchmarks and methods (with the scenarios each applies to).
    List {
        /// Machine-readable.
        #[arg(long)]
        json: bool,
    },
}

/// Settings shared by `run` and `table`.
#[derive(Args, Clone)]
struct Common {
    /// Benchmark (`genlab cl list`): split-mnist, permuted-mnist, split-digits, permuted-digits.
    #[arg(long)]
    benchmark: String,
    /// Iterations per task (default: the paper's, 2000 on split MNIST).
    #[arg(long)]
    iters: Option<usize>,
    /// Batch size (default: the paper's 128).
    #[arg(long)]
    batch: Option<usize>,
    /// Adam learning rate (default: the paper's, 1e-3 on split MNIST).
    #[arg(long)]
    lr: Option<f64>,
    /// Hidden widths of the MLP, comma-separated (default: the paper's, 400,400 on split MNIST).
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Number of tasks (e.g. 3), or for split benchmarks the digits of each task (0,1/2,3/4,5).
    #[arg(long)]
    tasks: Option<String>,
    /// Task-free stream: one pass over the tasks' data in order, no task boundaries given to
    /// the method (task-free methods only: finetune, replay).
    #[arg(long)]
    stream: bool,
    /// With --stream: the fraction of each boundary's neighbourhood blurred (the last
    /// overlap/2 of a task shuffled with the first overlap/2 of the next).
    #[arg(long, requires = "stream")]
    overlap: Option<f64>,
    /// A setting of the run or the method, e.g. `--set method.lambda=1e6 --set eval_every=50`
    /// (repeatable; result.json lists them all).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// task (task label given, one head per task), domain or class.
    #[arg(long)]
    scenario: String,
    /// Method (`genlab cl list`).
    #[arg(long)]
    method: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct TableArgs {
    #[command(flatten)]
    common: Common,
    /// Seeds per cell (seeds first-seed .. first-seed + N).
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Methods, comma-separated (default: every method).
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// Scenarios, comma-separated (default: task,domain,class).
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Directory of the runs and the table.
    #[arg(long)]
    out: PathBuf,
}

/// The overrides of the common flags, before the user's `--set`s.
fn overrides(c: &Common) -> anyhow::Result<Vec<String>> {
    let mut o = Vec::new();
    if let Some(v) = c.iters {
        o.push(format!("iters={v}"));
    }
    if let Some(v) = c.batch {
        o.push(format!("batch={v}"));
    }
    if let Some(v) = c.lr {
        o.push(format!("lr={v}"));
    }
    if let Some(h) = &c.hidden {
        let h: Vec<String> = h.iter().map(|v| v.to_string()).collect();
        o.push(format!("hidden=[{}]", h.join(",")));
    }
    if let Some(t) = &c.tasks {
        if let Ok(n) = t.trim().parse::<usize>() {
            o.push(format!("tasks={n}"));
        } else {
            let g = parse_groups(t)?;
            o.push(format!("groups={}", serde_json::to_string(&g)?));
        }
    }
    if c.stream {
        o.push("stream=true".into());
    }
    if let Some(v) = c.overlap {
        o.push(format!("overlap={v}"));
    }
    o.extend(c.set.iter().cloned());
    Ok(o)
}

/// Progress: a bar over all iterations of the run.
struct Bar {
    pb: ProgressBar,
    iters: usize,
    quiet: bool,
}

impl Observer for Bar {
    fn start_task(&mut self, task: usize, tasks: usize, iters: usize) {
        self.iters = iters;
        self.pb.set_length((tasks * iters) as u64);
        self.pb.set_prefix(format!("task {}/{tasks}", task + 1));
    }
    fn iteration(&mut self, task: usize, iter: usize, loss: f64) {
        if iter.is_multiple_of(20) {
            self.pb.set_position((task * self.iters + iter) as u64);
            self.pb.set_message(format!("loss {loss:.4}"));
        }
    }
    fn end_task(&mut self, task: usize, row: &[f64]) {
        let seen: Vec<String> = row[..=task]
            .iter()
            .map(|a| format!("{:.1}", 100.0 * a))
            .collect();
        if !self.quiet {
            // On stderr even without a terminal (where the bar is hidden): a log of the run.
            let line = format!("after task {}: accuracy {}", task + 1, seen.join(" "));
            self.pb.suspend(|| eprintln!("{line}"));
        }
    }
}

fn bar(quiet: bool) -> Bar {
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        crate::progress::bar(0, "{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
    };
    Bar {
        pb,
        iters: 1,
        quiet,
    }
}

fn summary(r: &RunResult) -> String {
    let m = &r.measures;
    format!(
        "{} {} {} seed {}: average accuracy {:.2}%, BWT {:.2}, FWT {:.2}, forgetting {:.2} ({:.1} s)",
        r.config.method,
        r.config.benchmark,
        r.config.scenario.title(),
        r.config.seed,
        100.0 * m.average_accuracy,
        100.0 * m.backward_transfer,
        100.0 * m.forward_transfer,
        100.0 * m.forgetting,
        r.seconds
    )
}

fn run_one(cfg: &RunConfig, out: &Path, quiet: bool) -> anyhow::Result<RunResult> {
    let mut b = bar(quiet);
    let res = genlab_continual::run(cfg, &mut b)?;
    b.pb.finish_and_clear();
    write_run(out, &res)?;
    Ok(res)
}

pub fn run(a: ClArgs) -> anyhow::Result<()> {
    match a.cmd {
        ClCmd::Run(r) => {
            let scenario = Scenario::parse(&r.scenario)?;
            let cfg = RunConfig::resolve(
                &r.common.benchmark,
                scenario,
                &r.method,
                r.seed,
                &overrides(&r.common)?,
            )?;
            let res = run_one(&cfg, &r.out, r.common.quiet)?;
            println!("{}", summary(&res));
            println!("written to {}", r.out.join("index.html").display());
            Ok(())
        }
        ClCmd::Table(t) => {
            if t.seeds == 0 {
                anyhow::bail!("--seeds must be at least 1, got 0");
            }
            let scenarios: Vec<Scenario> = match &t.scenarios {
                Some(s) => s
                    .iter()
                    .map(|x| Scenario::parse(x))
                    .collect::<Result<_, _>>()?,
                None => Scenario::ALL.to_vec(),
            };
            let methods: Vec<&str> = match &t.methods {
                Some(m) => m.iter().map(String::as_str).collect(),
                None => METHODS.iter().map(|m| m.name).collect(),
            };
            let ov = overrides(&t.common)?;
            // Resolve every cell first: bad names and settings fail before any training.
            let mut plan = Vec::new();
            for m in &methods {
                let entry = genlab_continual::methods::find(m)?;
                for &s in &scenarios {
                    if entry.check_scenario(s).is_err() {
                        if t.methods.is_some() && t.scenarios.is_some() {
                            entry.check_scenario(s)?;
                        }
                        eprintln!("skipping {m} in {}: it does not apply", s.title());
                        continue;
                    }
                    for seed in t.first_seed..t.first_seed + t.seeds {
                        let cfg = RunConfig::resolve(&t.common.benchmark, s, m, seed, &ov)?;
                        plan.push(cfg);
                    }
                }
            }
            let mut results = Vec::new();
            let total = plan.len();
            for (k, cfg) in plan.into_iter().enumerate() {
                let dir = t.out.join(format!(
                    "{}-{}-s{}",
                    cfg.method,
                    cfg.scenario.name(),
                    cfg.seed
                ));
                let done = std::fs::read_to_string(dir.join("result.json"))
                    .ok()
                    .and_then(|s| serde_json::from_str::<RunResult>(&s).ok())
                    .filter(|r| r.config == cfg);
                let res = match done {
                    Some(r) => r,
                    None => run_one(&cfg, &dir, t.common.quiet)?,
                };
                println!("[{}/{total}] {}", k + 1, summary(&res));
                results.push(res);
            }
            let cells = cells(&results);
            let text = table_text(&cells);
            println!(
                "\naverage accuracy (%) on {}, mean ± std over seeds (seeds):\n{text}",
                t.common.benchmark
            );
            std::fs::create_dir_all(&t.out)?;
            genlab_core::io::write_json(&t.out.join("table.json"), &cells)?;
            std::fs::write(t.out.join("table.md"), format!("```\n{text}```\n"))?;
            Ok(())
        }
        ClCmd::List { json } => {
            if json {
                let b: Vec<serde_json::Value> = BENCHMARKS
                    .iter()
                    .map(|b| {
                        serde_json::json!({"name": b.name, "description": b.description,
                            "tasks": b.tasks, "iters": b.iters, "batch": b.batch, "lr": b.lr,
                            "hidden": b.hidden})
                    })
                    .collect();
                let m: Vec<_> = METHODS.iter().map(|m| m.info()).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"benchmarks": b, "methods": m})
                    )?
                );
            } else {
                println!("benchmarks:");
                for b in BENCHMARKS {
                    println!("  {:<16} {}", b.name, b.description);
                }
                println!("methods:");
                for m in METHODS {
                    let s: Vec<&str> = m.scenarios.iter().map(|s| s.name()).collect();
                    println!(
                        "  {:<12} [{}] {} ({})",
                        m.name,
                        s.join(","),
                        m.description,
                        m.paper
                    );
                }
            }
            Ok(())
        }
    }
}
