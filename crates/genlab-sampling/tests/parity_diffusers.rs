//! Step-by-step parity with Hugging Face diffusers' schedulers.
//!
//! The fixture tests/fixtures/sampler_parity.json comes from
//! scripts/reference/sampler_parity_fixtures.py (diffusers 0.42.1, torch 2.15 CPU): for
//! DDPM, DDIM (eta 0 and 1), Euler, Euler-ancestral, Heun and DPM-Solver++(2M) on genlab's
//! default schedule (linear betas 1e-4..0.02, T = 1000) it holds, per step, the sample going
//! in, the injected noise and the sample coming out, for the fake network
//! eps(x, t) = 0.5 x t / T + 0.1 that both sides compute exactly. Each genlab step function
//! is run on the fixture's input and must reproduce the output. genlab's sigmas are its own
//! f64 values at the fixture's timesteps, checked against diffusers' float32 ones.
//!
//! Spacing conventions (see also the script): for 10 steps genlab's evenly spaced timesteps
//! (999, 888, ..., 0) equal diffusers' "linspace" spacing of Euler, Euler-ancestral and Heun
//! (checked below); DDPM and DPM-Solver++ were given them as custom timesteps. Differences
//! that remain, replayed on diffusers' own timesteps: DDIM's default "leading" spacing
//! (900, ..., 0) and DPM-Solver++'s default "linspace" spacing (999, 899, ..., 100, then
//! sigma = 0, dropping t = 0). Euler-family pipelines in diffusers scale x_T by sigma_max
//! ("linspace" init_noise_sigma), genlab by the exact sqrt(1 + sigma_max^2): a 2e-5 relative
//! difference at the start only.

mod common;

use candle_core::{Device, Tensor};
use genlab_core::Result;
use genlab_sampling::sigmas::{alpha_bar_from_sigma, sigma_at, sigma_grid, Level};
use genlab_sampling::{
    ddim, ddpm, dpmpp_2m, euler, euler_ancestral, heun, Denoiser, NoiseSchedule, StepPair,
};
use serde_json::Value;

/// Per-step agreement, relative to the step output's largest magnitude (at least 1).
/// diffusers computes in float32 from a float32 cumulative product of 1000 factors
/// (relative error up to ~1e-5 at t = 999, see `SIGMA_F32_TOL`), genlab in f64 schedules
/// and f32 tensors. Measured worst cases: 3e-7 per step, 2e-6 over whole runs.
const PARITY_REL_TOL: f64 = 2e-5;
/// diffusers' float32 sigmas against genlab's f64 ones at the same timestep, compared as
/// alpha_bar = 1 / (1 + sigma^2): float32 holds alpha_bar to ~6e-8 absolute per rounding
/// and the cumulative product adds up to a few of those; sigma itself is ill-conditioned
/// near t = 0 (1 - alpha_bar = 1e-4 loses 3 of float32's 7 digits), so it is not compared
/// relatively.
const ALPHA_BAR_F32_TOL: f64 = 1e-6;

const FIXTURE: &str = include_str!("fixtures/sampler_parity.json");

/// The fixture's fake network: eps = 0.5 x t / T + 0.1.
struct FakeModel {
    t_train: f64,
}

impl Denoiser for FakeModel {
    fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        Ok(((x * (0.5 * t / self.t_train))? + 0.1)?)
    }
}

struct Step {
    t: f64,
    t_prev: isize,
    sigma: f64,
    sigma_next: f64,
    x_in: Tensor,
    noise: Option<Tensor>,
    x_out: Tensor,
}

fn tensor(v: &Value, shape: &[usize]) -> Tensor {
    let v: Vec<f32> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn load() -> (Value, NoiseSchedule, FakeModel, Vec<usize>) {
    let f: Value = serde_json::from_str(FIXTURE).unwrap();
    let t = f["num_train_timesteps"].as_u64().unwrap() as usize;
    let sched = NoiseSchedule::new(
        &genlab_sampling::BetaSchedule::Linear {
            beta_start: f["beta_start"].as_f64().unwrap(),
            beta_end: f["beta_end"].as_f64().unwrap(),
        },
        t,
    )
    .unwrap();
    let shape = f["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    (f, sched, FakeModel { t_train: t as f64 }, shape)
}

fn steps(f: &Value, name: &str, shape: &[usize]) -> Vec<Step> {
    let num = |s: &Value, k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    f["schedulers"][name]
        .as_array()
        .unwrap_or_else(|| panic!("fixture has no `{name}`"))
        .iter()
        .map(|s| Step {
            t: num(s, "t"),
            t_prev: s["t_prev"].as_i64().unwrap_or(i64::MIN) as isize,
            sigma: num(s, "sigma"),
            sigma_next: num(s, "sigma_next"),
            x_in: tensor(&s["x_in"], shape),
            noise: (!s["noise"].is_null()).then(|| tensor(&s["noise"], shape)),
            x_out: tensor(&s["x_out"], shape),
        })
        .collect()
}

/// max |a - b| / max(1, max |b|).
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let scale = common::to_f64_vec(b)
        .iter()
        .fold(1.0f64, |m, v| m.max(v.abs()));
    common::max_abs_diff(a, b) / scale
}

/// Checks every step of one scheduler with `replay(step, index) -> genlab output`.
fn check(name: &str, steps: &[Step], mut replay: impl FnMut(&Step, usize) -> Tensor) -> f64 {
    assert!(!steps.is_empty());
    let mut worst = 0.0f64;
    for (i, s) in steps.iter().enumerate() {
        let e = rel_err(&replay(s, i), &s.x_out);
        assert!(
            e < PARITY_REL_TOL,
            "{name} step {i} (t = {}): relative error {e:e}",
            s.t
        );
        worst = worst.max(e);
    }
    println!(
        "{name}: {} steps, worst relative error {worst:.2e}",
        steps.len()
    );
    worst
}

/// genlab's sigma at the fixture's timestep (0 for the final sigma), checked against
/// diffusers' float32 value.
fn genlab_sigma(sched: &NoiseSchedule, t: Option<f64>, diffusers: f64) -> f64 {
    let s = t.map_or(0.0, |t| sigma_at(sched, t));
    let d = (alpha_bar_from_sigma(s) - alpha_bar_from_sigma(diffusers)).abs();
    assert!(
        d < ALPHA_BAR_F32_TOL,
        "sigma at t = {t:?}: genlab {s}, diffusers {diffusers}"
    );
    s
}

/// (sigma, sigma_next) for step i in genlab's f64 values.
fn sigma_pair(sched: &NoiseSchedule, steps: &[Step], i: usize) -> (f64, f64) {
    let s = &steps[i];
    let next_t = (s.sigma_next > 0.0).then(|| steps[i + 1].t);
    (
        genlab_sigma(sched, Some(s.t), s.sigma),
        genlab_sigma(sched, next_t, s.sigma_next),
    )
}

/// The two levels of step i: genlab's sigmas at the fixture's timesteps.
fn level_pair(sched: &NoiseSchedule, steps: &[Step], i: usize) -> (Level, Level) {
    let (a, b) = sigma_pair(sched, steps, i);
    let next_t = if b > 0.0 { steps[i + 1].t } else { -1.0 };
    (
        Level {
            sigma: a,
            t: steps[i].t,
        },
        Level {
            sigma: b,
            t: next_t,
        },
    )
}

#[test]
fn ddpm_steps_match_diffusers() {
    let (f, sched, model, shape) = load();
    check("ddpm", &steps(&f, "ddpm", &shape), |s, _| {
        let p = StepPair::new(&sched, s.t as usize, s.t_prev).unwrap();
        ddpm::step(&model, &s.x_in, &p, s.noise.as_ref(), None).unwrap()
    });
}

#[test]
fn ddim_steps_match_diffusers() {
    let (f, sched, model, shape) = load();
    for (name, eta) in [("ddim_eta0", 0.0), ("ddim_eta1", 1.0)] {
        check(name, &steps(&f, name, &shape), |s, _| {
            let p = StepPair::new(&sched, s.t as usize, s.t_prev).unwrap();
            ddim::step(&model, &s.x_in, &p, eta, s.noise.as_ref(), None).unwrap()
        });
    }
}

#[test]
fn euler_family_steps_match_diffusers_on_the_same_timesteps() {
    let (f, sched, model, shape) = load();
    let n = f["steps"].as_u64().unwrap() as usize;
    // genlab's default grid for 10 steps is diffusers' "linspace" grid.
    let grid = sigma_grid(&sched, n, false, genlab_sampling::Spacing::Linspace).unwrap();
    for name in ["euler", "euler_ancestral", "heun"] {
        let st = steps(&f, name, &shape);
        let ts: Vec<usize> = st.iter().map(|s| s.t as usize).collect();
        assert_eq!(ts, sched.spaced_timesteps(n).unwrap(), "{name} timesteps");
        for (i, s) in st.iter().enumerate() {
            assert_eq!(
                sigma_pair(&sched, &st, i),
                (grid[i], grid[i + 1]),
                "{name} sigma {i} ({})",
                s.sigma
            );
        }
    }
    let st = steps(&f, "euler", &shape);
    check("euler", &st, |s, i| {
        let (a, b) = level_pair(&sched, &st, i);
        euler::step(&model, &s.x_in, a, b, None).unwrap()
    });
    let st = steps(&f, "euler_ancestral", &shape);
    check("euler_ancestral", &st, |s, i| {
        let (a, b) = level_pair(&sched, &st, i);
        euler_ancestral::step(&model, &s.x_in, a, b, s.noise.as_ref(), None).unwrap()
    });
    let st = steps(&f, "heun", &shape);
    check("heun", &st, |s, i| {
        let (a, b) = level_pair(&sched, &st, i);
        heun::step(&model, &s.x_in, a, b, None).unwrap()
    });
}

#[test]
fn dpmpp_2m_steps_match_diffusers() {
    let (f, sched, model, shape) = load();
    // diffusers' DPMSolverMultistepScheduler works on the VP sample; genlab's step on
    // x_vp * sqrt(1 + sigma^2).
    let scale = |x: &Tensor, s: f64| (x * (1.0 + s * s).sqrt()).unwrap();
    for name in ["dpmpp_2m", "dpmpp_2m_genlab_grid"] {
        let st = steps(&f, name, &shape);
        let mut prev: Option<(Tensor, f64)> = None;
        check(name, &st, |s, i| {
            let (a, b) = level_pair(&sched, &st, i);
            let hist = prev.as_ref().map(|(x0, sp)| (x0, *sp));
            let (next, x0) =
                dpmpp_2m::step(&model, &scale(&s.x_in, a.sigma), a, b, hist, None).unwrap();
            prev = Some((x0, a.sigma));
            (next / (1.0 + b.sigma * b.sigma).sqrt()).unwrap()
        });
    }
}

#[test]
fn whole_deterministic_runs_match_diffusers() {
    // genlab's own loops (grid, scaling, history) from the fixture's x_T to the end.
    let (f, sched, model, shape) = load();
    let n = f["steps"].as_u64().unwrap() as usize;
    let x_t = tensor(&f["x_t"], &shape);
    // diffusers' Euler family starts from x_T * sigma_max, genlab from the exact
    // x_T * sqrt(1 + sigma_max^2): feed genlab the x_T that lands on diffusers' start.
    let s_max = sigma_at(&sched, f64::MAX);
    let x_t_euler = (&x_t * (s_max / (1.0 + s_max * s_max).sqrt())).unwrap();
    for (sampler, fixture, x_t) in [
        ("euler", "euler", &x_t_euler),
        ("heun", "heun", &x_t_euler),
        ("dpm++2m", "dpmpp_2m_genlab_grid", &x_t),
    ] {
        let opts = genlab_sampling::SamplerOptions {
            steps: n,
            ..Default::default()
        };
        let out = genlab_sampling::build_sampler(sampler, &opts)
            .unwrap()
            .sample(
                &model,
                &sched,
                x_t.clone(),
                &mut genlab_core::Rng::new(0),
                &mut |_, _| {},
            )
            .unwrap();
        let last = steps(&f, fixture, &shape).pop().unwrap();
        assert_eq!(out.nfe, if sampler == "heun" { 2 * n - 1 } else { n });
        let e = rel_err(&out.x, &last.x_out);
        println!("{sampler} whole run: relative error {e:.2e}");
        assert!(
            e < PARITY_REL_TOL,
            "{sampler} whole run: relative error {e:e}"
        );
    }
}
