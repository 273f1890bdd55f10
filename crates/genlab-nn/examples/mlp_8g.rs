//! Sanity run of [`MlpDenoiser`] on the 8-gaussians toy: DDPM training (Ho et al. 2020,
//! arXiv:2006.11239, ε-prediction, linear β from 1e-4 to 0.02 over 1000 steps) then
//! ancestral sampling; prints the loss curve, the share of samples within 0.5 of a mode and
//! the per-mode counts.
//!
//! `cargo run --release -p genlab-nn --example mlp_8g [steps]`

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use genlab_core::{ParamStore, Rng};
use genlab_nn::{MlpDenoiser, MlpDenoiserConfig};

/// Diffusion steps of the DDPM schedule (Ho et al. 2020).
const T: usize = 1000;
/// Training batch (large enough for a smooth loss on 2-D data).
const BATCH: usize = 256;
/// Adam learning rate (a common choice for small MLP denoisers).
const LR: f64 = 2e-3;
/// Default number of training steps (the brief asks for quick learning).
const DEFAULT_STEPS: usize = 3000;
/// Samples drawn at the end.
const N_SAMPLES: usize = 2000;
/// Radius of the ring of modes and standard deviation of each mode.
const RADIUS: f64 = 2.0;
const MODE_STD: f64 = 0.1;

fn data(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let k = rng.below(8) as f64;
        let a = k * std::f64::consts::PI / 4.0;
        v.push((RADIUS * a.cos() + MODE_STD * rng.normal()) as f32);
        v.push((RADIUS * a.sin() + MODE_STD * rng.normal()) as f32);
    }
    v
}

fn main() -> candle_core::Result<()> {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_STEPS);
    let dev = Device::Cpu;
    let betas: Vec<f64> = (0..T)
        .map(|i| 1e-4 + (0.02 - 1e-4) * i as f64 / (T - 1) as f64)
        .collect();
    let mut abar = Vec::with_capacity(T);
    let mut p = 1.0;
    for b in &betas {
        p *= 1.0 - b;
        abar.push(p);
    }
    let store = ParamStore::new(0, &dev);
    let net = MlpDenoiser::new(&MlpDenoiserConfig::default(), 2, store.vb())?;
    let vars = store.vars().into_iter().map(|(_, v)| v).collect();
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: LR,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = Rng::new(1);
    let t0 = Instant::now();
    let mut running = 0.0;
    for step in 1..=steps {
        let x0 = Tensor::from_vec(data(&mut rng, BATCH), (BATCH, 2), &dev)?;
        let ts: Vec<usize> = (0..BATCH).map(|_| rng.below(T as u64) as usize).collect();
        let a: Vec<f32> = ts.iter().map(|&t| abar[t].sqrt() as f32).collect();
        let s: Vec<f32> = ts.iter().map(|&t| (1.0 - abar[t]).sqrt() as f32).collect();
        let a = Tensor::from_vec(a, (BATCH, 1), &dev)?;
        let s = Tensor::from_vec(s, (BATCH, 1), &dev)?;
        let eps = rng.normal_tensor(&[BATCH, 2], &dev)?;
        let xt = (x0.broadcast_mul(&a)? + eps.broadcast_mul(&s)?)?;
        let tt = Tensor::from_vec(
            ts.iter().map(|&t| t as f32).collect::<Vec<_>>(),
            BATCH,
            &dev,
        )?;
        let loss = (net.forward(&xt, &tt)? - &eps)?.sqr()?.mean_all()?;
        opt.backward_step(&loss)?;
        running += loss.to_scalar::<f32>()? as f64;
        if step % 500 == 0 {
            println!(
                "step {step:>5}: mean loss (last 500) {:.4}  ({:.1} s)",
                running / 500.0,
                t0.elapsed().as_secs_f64()
            );
            running = 0.0;
        }
    }
    // Ancestral sampling with σ_t² = β_t. The weights are variables, so every output tracks
    // its graph: detach each step, or 1000 steps of intermediates stay alive (tens of GB).
    let mut x = rng.normal_tensor(&[N_SAMPLES, 2], &dev)?;
    for t in (0..T).rev() {
        let tt = Tensor::from_vec(vec![t as f32; N_SAMPLES], N_SAMPLES, &dev)?;
        let eps = net.forward(&x, &tt)?;
        let coef = betas[t] / (1.0 - abar[t]).sqrt();
        let mean = ((&x - (eps * coef)?)? * (1.0 / (1.0 - betas[t]).sqrt()))?;
        x = if t > 0 {
            (mean + (rng.normal_tensor(&[N_SAMPLES, 2], &dev)? * betas[t].sqrt())?)?
        } else {
            mean
        }
        .detach();
    }
    let xs: Vec<Vec<f32>> = x.to_vec2()?;
    let mut counts = [0usize; 8];
    let mut near = 0;
    for p in &xs {
        let (px, py) = (p[0] as f64, p[1] as f64);
        let (k, d) = (0..8)
            .map(|k| {
                let a = k as f64 * std::f64::consts::PI / 4.0;
                (
                    k,
                    ((px - RADIUS * a.cos()).powi(2) + (py - RADIUS * a.sin()).powi(2)).sqrt(),
                )
            })
            .fold((0, f64::INFINITY), |m, c| if c.1 < m.1 { c } else { m });
        if d < 0.5 {
            near += 1;
            counts[k] += 1;
        }
    }
    println!(
        "{} params; {steps} steps in {:.1} s; {:.1}% of {N_SAMPLES} samples within 0.5 of a mode; per mode {counts:?}",
        store.num_params(),
        t0.elapsed().as_secs_f64(),
        100.0 * near as f64 / N_SAMPLES as f64
    );
    Ok(())
}
