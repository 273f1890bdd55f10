//! The MLP denoiser learns the 8-gaussians toy quickly (DDPM ε-prediction, Ho et al. 2020).
//! The full check (sampling, mode coverage) is `examples/mlp_8g.rs`; this is its first
//! few hundred steps, asserting that the held-out denoising loss falls well below the
//! loss of predicting zero noise (1.0).

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use genlab_core::{ParamStore, Rng};
use genlab_nn::{MlpDenoiser, MlpDenoiserConfig};

/// Diffusion steps of the linear-β DDPM schedule (β from 1e-4 to 0.02).
const T: usize = 1000;
/// Training batch and steps: small enough to run in a few seconds on 2 cores.
const BATCH: usize = 128;
const STEPS: usize = 300;
/// Adam learning rate (the one `examples/mlp_8g.rs` uses).
const LR: f64 = 2e-3;
/// Held-out points for the loss.
const EVAL: usize = 2048;
/// The held-out loss must end below this (predicting zero noise scores 1.0; a trained
/// model reaches about 0.23, these 300 steps about 0.30).
const MAX_FINAL_LOSS: f32 = 0.45;

struct Batch {
    xt: Tensor,
    t: Tensor,
    eps: Tensor,
}

fn batch(rng: &mut Rng, abar: &[f64], n: usize) -> Batch {
    let dev = Device::Cpu;
    let (mut xt, mut ts, mut eps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let a = rng.below(8) as f64 * std::f64::consts::PI / 4.0;
        let t = rng.below(T as u64) as usize;
        let (sa, sn) = (abar[t].sqrt(), (1.0 - abar[t]).sqrt());
        for centre in [2.0 * a.cos(), 2.0 * a.sin()] {
            let x0 = centre + 0.1 * rng.normal();
            let e = rng.normal();
            xt.push((sa * x0 + sn * e) as f32);
            eps.push(e as f32);
        }
        ts.push(t as f32);
    }
    Batch {
        xt: Tensor::from_vec(xt, (n, 2), &dev).unwrap(),
        t: Tensor::from_vec(ts, n, &dev).unwrap(),
        eps: Tensor::from_vec(eps, (n, 2), &dev).unwrap(),
    }
}

fn loss(net: &MlpDenoiser, b: &Batch) -> Tensor {
    (net.forward(&b.xt, &b.t).unwrap() - &b.eps)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
}

#[test]
fn mlp_learns_eight_gaussians() {
    let mut abar = Vec::with_capacity(T);
    let mut p = 1.0;
    for i in 0..T {
        p *= 1.0 - (1e-4 + (0.02 - 1e-4) * i as f64 / (T - 1) as f64);
        abar.push(p);
    }
    let store = ParamStore::new(0, &Device::Cpu);
    let net = MlpDenoiser::new(&MlpDenoiserConfig::default(), 2, store.vb()).unwrap();
    let mut opt = AdamW::new(
        store.vars().into_iter().map(|(_, v)| v).collect(),
        ParamsAdamW {
            lr: LR,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let held_out = batch(&mut Rng::new(99), &abar, EVAL);
    let before = loss(&net, &held_out).to_scalar::<f32>().unwrap();
    let mut rng = Rng::new(1);
    for _ in 0..STEPS {
        opt.backward_step(&loss(&net, &batch(&mut rng, &abar, BATCH)))
            .unwrap();
    }
    let after = loss(&net, &held_out).to_scalar::<f32>().unwrap();
    println!("held-out loss: {before:.4} before, {after:.4} after {STEPS} steps");
    assert!(
        after < MAX_FINAL_LOSS,
        "held-out loss {after} after {STEPS} steps (before: {before})"
    );
}
