//! The work of each kind of job: the same library calls as the `genlab` command
//! (`resolve_run` + `train_run` as `genlab train`; `load_model` + `Sample::sample` +
//! `save_samples` as `genlab sample` and `genlab compare`; `evaluate_nll` as `genlab eval
//! --metrics nll`), reporting through a [`JobCtx`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use candle_core::{Device, Tensor};
use serde_json::{json, Value};

use genlab_core::Rng;
use genlab_models::{LikelihoodKind, SampleRequest};
use genlab_train::nll::{default_nll_data, evaluate_nll, NllOptions};
use genlab_train::outputs::save_samples;
use genlab_train::session::mode_coverage_line;
use genlab_train::{RunOptions, RunRequest};

use crate::error::{Result, ServeError};
use crate::jobs::{JobCtx, JobEnd, Work};
use crate::params::Plan;
use crate::paths::RunsRoot;
use crate::runs::{NLL_FILE, SAMPLES_DIR};

/// What every job needs from the server.
pub struct Env {
    pub root: RunsRoot,
    /// Where models train and sample.
    pub device: Device,
    /// A private folder for pictures not yet saved anywhere (removed with the server).
    pub scratch: PathBuf,
}

impl Env {
    /// A picture file of a job in the scratch folder.
    pub fn scratch_png(&self, job: u64, part: &str) -> PathBuf {
        self.scratch.join(format!("job-{job}-{part}.png"))
    }
}

/// `data:image/png;base64,...` of a PNG file.
pub fn data_url(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| ServeError::io("read", path, e))?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// Samples drawn by [`sample_streamed`].
pub struct Drawn {
    pub x: Tensor,
    pub nfe: usize,
    pub seconds: f64,
}

/// Draws `plan`'s samples batch by batch with one generator seeded as `genlab sample`
/// seeds it, which gives the same samples as the command with the same batch size. Each
/// finished batch's picture goes out as an `image` event (`tag` names the cell it belongs
/// to); the stop flag is checked between batches (`None`: stopped).
pub fn sample_streamed(
    ctx: &JobCtx,
    env: &Env,
    model: &dyn genlab_models::Sample,
    plan: &Plan,
    tag: &Value,
) -> Result<Option<Drawn>> {
    let req = &plan.request;
    let images = model.data_space().images;
    let batch = req.batch_size.max(1);
    let batches = req.n.div_ceil(batch);
    let mut rng = Rng::derive(plan.seed, "sample");
    let mut parts = Vec::with_capacity(batches);
    let mut nfe = 0;
    let t0 = Instant::now();
    for b in 0..batches {
        if ctx.stop_requested() {
            return Ok(None);
        }
        let nb = batch.min(req.n - b * batch);
        let one = SampleRequest {
            n: nb,
            batch_size: nb,
            ..req.clone()
        };
        let out = model.sample(&one, &mut rng, &mut |done, total| {
            let (done, total) = (done as u64, total as u64);
            ctx.progress(
                b as u64 * total + done,
                batches as u64 * total,
                "network evaluations",
            )
        })?;
        nfe = out.nfe;
        let png = env.scratch_png(ctx.id(), &format!("batch-{b}"));
        save_samples(&out.x, images, &png, None)?;
        ctx.event(
            "image",
            json!({ "cell": tag, "batch": b, "batches": batches, "png": data_url(&png)? }),
        );
        let _ = std::fs::remove_file(&png);
        parts.push(out.x);
    }
    Ok(Some(Drawn {
        x: Tensor::cat(&parts, 0).map_err(genlab_core::Error::from)?,
        nfe,
        seconds: t0.elapsed().as_secs_f64(),
    }))
}

/// The playground's job: `plan` from the run `id` in `dir`.
pub fn sample_work(env: Arc<Env>, id: String, dir: PathBuf, plan: Plan) -> Work {
    Box::new(move |ctx| {
        let loaded = genlab_train::load_model(&dir, plan.ema, &env.device)?;
        let images = loaded.model.data_space().images;
        let Some(d) = sample_streamed(ctx, &env, loaded.model.as_ref(), &plan, &Value::Null)?
        else {
            return Ok(JobEnd::Cancelled);
        };
        let png = env.scratch_png(ctx.id(), "result");
        save_samples(&d.x, images, &png, None)?;
        ctx.keep_file(png.clone());
        let coverage = mode_coverage_line(&loaded.run.data, &d.x)?.map(|(line, _)| line);
        let command = plan.command(&dir, "samples.png");
        ctx.event(
            "result",
            json!({ "png": data_url(&png)?, "nfe": d.nfe, "seconds": d.seconds,
                    "command": command, "coverage": coverage }),
        );
        Ok(JobEnd::Done(json!({
            "run": id,
            "checkpoint_step": loaded.step,
            "settings": plan.settings(),
            "nfe": d.nfe,
            "seconds": d.seconds,
            "shape": d.x.dims(),
            "command": command,
            "coverage": coverage,
        })))
    })
}

/// Saves a finished playground job's picture into its run, as `samples/NAME.png` with a
/// `NAME.json` beside it (the settings, the command that reproduces it, NFE, timing).
pub fn save_result(env: &Env, job: u64, result: &Value) -> Result<Value> {
    let png = env.scratch_png(job, "result");
    if !png.exists() {
        return Err(ServeError::NotFound(format!(
            "job {job} has no picture to save (it did not finish, or it was saved already)"
        )));
    }
    let id = result["run"].as_str().unwrap_or_default();
    let dir = env.root.resolve(id)?.join(SAMPLES_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| ServeError::io("create", &dir, e))?;
    let seed = result["settings"]["seed"].as_u64().unwrap_or_default();
    let mut k = 0;
    let stem = loop {
        let stem = match k {
            0 => format!("playground-job{job}-seed{seed}"),
            _ => format!("playground-job{job}-seed{seed}-{k}"),
        };
        if !dir.join(format!("{stem}.png")).exists() {
            break stem;
        }
        k += 1;
    };
    let target = dir.join(format!("{stem}.png"));
    let bytes = std::fs::read(&png).map_err(|e| ServeError::io("read", &png, e))?;
    genlab_core::io::write_atomic(&target, &bytes)?;
    genlab_core::io::write_json(&target.with_extension("json"), result)?;
    let _ = std::fs::remove_file(&png);
    let rel = format!("{id}/{SAMPLES_DIR}/{stem}.png");
    Ok(json!({ "saved": rel }))
}

/// One run of a comparison.
pub struct CompareRun {
    pub id: String,
    pub dir: PathBuf,
}

/// The compare page's job: the same seed through every (run, sampler, steps) cell.
pub struct CompareSpec {
    pub runs: Vec<CompareRun>,
    pub samplers: Vec<String>,
    pub steps: Vec<usize>,
    pub n: usize,
    pub seed: u64,
}

pub fn compare_work(env: Arc<Env>, spec: CompareSpec) -> Work {
    Box::new(move |ctx| {
        let cells = spec.runs.len() * spec.samplers.len() * spec.steps.len();
        let mut done = 0;
        let mut rows = Vec::new();
        for run in &spec.runs {
            let loaded = genlab_train::load_model(&run.dir, true, &env.device)?;
            for sampler in &spec.samplers {
                for &steps in &spec.steps {
                    if ctx.stop_requested() {
                        return Ok(JobEnd::Cancelled);
                    }
                    ctx.message(format!(
                        "cell {} of {cells}: {} {sampler} {steps} steps",
                        done + 1,
                        run.id
                    ));
                    let plan = Plan {
                        request: SampleRequest {
                            n: spec.n,
                            sampler: sampler.clone(),
                            options: genlab_sampling::SamplerOptions {
                                steps,
                                ..Default::default()
                            },
                            batch_size: spec.n,
                            ..Default::default()
                        },
                        seed: spec.seed,
                        ema: true,
                        values: vec![],
                    };
                    let tag = json!({ "run": run.id, "sampler": sampler, "steps": steps });
                    let mut cell = tag.clone();
                    match sample_streamed(ctx, &env, loaded.model.as_ref(), &plan, &tag) {
                        Ok(Some(d)) => {
                            cell["nfe"] = d.nfe.into();
                            cell["seconds"] = d.seconds.into();
                            if let Some((line, _)) = mode_coverage_line(&loaded.run.data, &d.x)? {
                                cell["coverage"] = line.into();
                            }
                        }
                        Ok(None) => return Ok(JobEnd::Cancelled),
                        // One sampler failing (a diverged solver) leaves the rest to run.
                        Err(e) => cell["error"] = e.to_string().into(),
                    }
                    ctx.event("cell", cell.clone());
                    rows.push(cell);
                    done += 1;
                }
            }
        }
        Ok(JobEnd::Done(
            json!({ "cells": rows, "n": spec.n, "seed": spec.seed }),
        ))
    })
}

/// Reports training to a job.
struct TrainObserver<'a> {
    ctx: &'a JobCtx,
    to: u64,
    last: Instant,
}

impl genlab_train::Observer for TrainObserver<'_> {
    fn start(&mut self, from: u64, to: u64, num_params: usize) {
        self.to = to;
        self.ctx.progress(from, to, "steps");
        self.ctx
            .message(format!("{num_params} parameters, steps {from} -> {to}"));
    }
    fn log(&mut self, step: u64, metrics: &[(String, f64)], sps: f64) {
        let parts: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        self.ctx.progress(step, self.to, "steps");
        self.ctx
            .message(format!("{}, {sps:.1} steps/s", parts.join(", ")));
    }
    fn tick(&mut self, step: u64) {
        // Every step would wake every watcher thousands of times a second.
        if self.last.elapsed().as_millis() >= 100 {
            self.last = Instant::now();
            self.ctx.progress(step, self.to, "steps");
        }
    }
    fn checkpoint(&mut self, step: u64, _path: &Path) {
        self.ctx.message(format!("checkpoint saved at step {step}"));
    }
}

/// A training job: `request` resolved and trained as `genlab train` does it (with the
/// preview pictures); stopping saves a checkpoint and ends the job as `stopped`.
pub fn train_work(env: Arc<Env>, id: String, request: RunRequest) -> Work {
    Box::new(move |ctx| {
        let resolved = genlab_train::resolve_run(&request)?;
        let opts = RunOptions {
            resume: request.resume,
            preview: true,
        };
        let mut observer = TrainObserver {
            ctx,
            to: resolved.run.train.steps,
            last: Instant::now(),
        };
        let stop = ctx.stop_flag();
        let t = genlab_train::train_run(
            &request.out,
            resolved.run,
            resolved.data.as_ref(),
            &env.device,
            &opts,
            &mut observer,
            &stop,
        )?;
        let result = json!({
            "run": id,
            "step": t.outcome.step,
            "last_loss": t.outcome.last_loss,
            "seconds": t.outcome.seconds,
            "preview": t.preview.as_ref().map(|p| p.summary.clone()),
            "evaluation": t.evaluation.as_ref().map(|e| json!({
                "data": e.data,
                "metrics": e.metrics.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect::<Vec<_>>(),
            })),
        });
        ctx.progress(t.outcome.step, t.run.train.steps, "steps");
        if t.outcome.interrupted {
            ctx.message(format!(
                "stopped; checkpoint saved at step {}",
                t.outcome.step
            ));
            Ok(JobEnd::Stopped(result))
        } else {
            ctx.message(format!("finished at step {}", t.outcome.step));
            Ok(JobEnd::Done(result))
        }
    })
}

/// A likelihood evaluation of a run.
pub struct EvalSpec {
    pub id: String,
    pub dir: PathBuf,
    /// The dataset (default: the run's held-out split, else its training data).
    pub data: Option<String>,
    pub n: Option<usize>,
    /// Importance samples per example (IWAE bound; exact models ignore it).
    pub k: usize,
    pub seed: u64,
}

/// `genlab eval --metrics nll` as a job; the result is written to the run's `nll.json`.
pub fn eval_work(env: Arc<Env>, spec: EvalSpec) -> Work {
    Box::new(move |ctx| {
        let loaded = genlab_train::load_model(&spec.dir, true, &env.device)?;
        if loaded.model.as_likelihood().is_none() {
            return Err(genlab_core::Error::InvalidInput(format!(
                "`{}` models have no likelihood to evaluate",
                loaded.run.model
            ))
            .into());
        }
        let data = match &spec.data {
            Some(d) => d.clone(),
            None => default_nll_data(&loaded.run.data)?,
        };
        let ds =
            genlab_train::open_data(&data, spec.seed, loaded.run.image_size, loaded.run.channels)?;
        let opts = NllOptions {
            n: spec.n,
            samples: spec.k,
            batch_size: 2500,
            seed: spec.seed,
        };
        let s = evaluate_nll(
            loaded.model.as_ref(),
            &data,
            ds.as_ref(),
            &opts,
            &mut |d, n| ctx.progress(d as u64, n as u64, "examples"),
        )?;
        let mut j = json!({
            "checkpoint": spec.dir.display().to_string(),
            "model": loaded.run.model,
            "step": loaded.step,
            "data": data,
            "n": s.n,
            "estimator": s.method,
            "exact": s.kind == LikelihoodKind::Exact,
            "kind": s.kind.to_string(),
            "nll_nats": s.nll_nats,
            "nll_nats_stderr": s.nll_nats_stderr,
            "bits_per_dim": s.bits_per_dim,
            "dims": s.dims,
            "seed": spec.seed,
            "seconds": s.seconds,
        });
        if let Some(r) = &s.reference {
            j["true_nll_nats"] = r.true_nll_nats.into();
            j["gap_nats"] = r.gap_nats.into();
            j["gap_nats_stderr"] = r.gap_nats_stderr.into();
        }
        genlab_core::io::write_json(&spec.dir.join(NLL_FILE), &j)?;
        ctx.message(format!(
            "nll {:.3} nats ({:.4} bits/dim) on {} examples of {data}",
            s.nll_nats, s.bits_per_dim, s.n
        ));
        j["run"] = spec.id.clone().into();
        Ok(JobEnd::Done(j))
    })
}
