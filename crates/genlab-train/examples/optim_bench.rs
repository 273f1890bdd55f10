//! Optimizer-side cost of one training step, before and after fusion: global gradient
//! norm, AdamW step and EMA update, as `TrainedWeights::apply` runs them (clip at 1).
//!
//! "old" is the tensor-op implementation (`AdamW::new_reference`, `Ema::update_reference`,
//! the norm as per-gradient candle sums); "fused" is the in-place one. Parameter sets: the
//! MNIST U-Net (base 16, mult [1, 2, 2], 1 res block, attention, 280177 parameters) and an
//! MLP 2-256-256-2. The gradients come from one real forward + backward and are reused.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p genlab-train --example optim_bench`
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{Device, Module, Tensor};
use genlab_core::{ParamStore, Result, Rng};
use genlab_nn::{UNet, UNetConfig};
use genlab_train::ema::Ema;
use genlab_train::optim::{AdamW, AdamWConfig};

const LR: f64 = 1e-3;
const CLIP: f64 = 1.0;
const EMA_DECAY: f64 = 0.999;
/// Timed steps per repeat, and repeats (the fastest repeat is reported: on a shared
/// machine the slower ones measure the neighbours).
const STEPS: usize = 50;
const REPEATS: usize = 7;

/// A live store, its EMA store (built twice with `build`) and gradients of a real loss.
struct ParamSet {
    name: &'static str,
    live: ParamStore,
    shadow: ParamStore,
    grads: GradStore,
}

fn unet() -> Result<ParamSet> {
    let cfg = UNetConfig {
        base_channels: 16,
        channel_mult: vec![1, 2, 2],
        num_res_blocks: 1,
        attention_at_lowest: true,
        heads: 1,
        groups: 8,
    };
    let dev = Device::Cpu;
    let live = ParamStore::new(0, &dev);
    let net = UNet::new(&cfg, 1, 1, live.vb())?;
    let shadow = ParamStore::new(0, &dev);
    UNet::new(&cfg, 1, 1, shadow.vb())?;
    let mut rng = Rng::new(0);
    let x = rng.normal_tensor(&[4, 1, 28, 28], &dev)?;
    let eps = rng.normal_tensor(&[4, 1, 28, 28], &dev)?;
    let t = Tensor::new(&[3f32, 250., 500., 999.], &dev)?;
    let loss = (net.forward(&x, &t)? - eps)?.sqr()?.mean_all()?;
    Ok(ParamSet {
        name: "MNIST U-Net",
        live,
        shadow,
        grads: loss.backward()?,
    })
}

fn mlp() -> Result<ParamSet> {
    let dev = Device::Cpu;
    let build = |ps: &ParamStore| -> Result<Vec<candle_nn::Linear>> {
        let vb = ps.vb();
        Ok(vec![
            candle_nn::linear(2, 256, vb.pp("l1"))?,
            candle_nn::linear(256, 256, vb.pp("l2"))?,
            candle_nn::linear(256, 2, vb.pp("l3"))?,
        ])
    };
    let live = ParamStore::new(0, &dev);
    let layers = build(&live)?;
    let shadow = ParamStore::new(0, &dev);
    build(&shadow)?;
    let mut rng = Rng::new(0);
    let x = rng.normal_tensor(&[512, 2], &dev)?;
    let y = rng.normal_tensor(&[512, 2], &dev)?;
    let h = layers[0].forward(&x)?.silu()?;
    let h = layers[1].forward(&h)?.silu()?;
    let loss = (layers[2].forward(&h)? - y)?.sqr()?.mean_all()?;
    Ok(ParamSet {
        name: "MLP 2-256-256-2",
        live,
        shadow,
        grads: loss.backward()?,
    })
}

/// The gradient norm as computed before fusion: candle sums per gradient.
fn grad_norm_old(ps: &ParamStore, grads: &GradStore) -> Result<f64> {
    let mut sq = 0f64;
    for (_, var) in ps.vars() {
        if let Some(g) = grads.get(&var) {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    Ok(sq.sqrt())
}

/// Milliseconds per step for (norm, AdamW, EMA) in the fastest repeat.
fn time(set: &ParamSet, fused: bool) -> Result<[f64; 3]> {
    let vars = set.live.vars();
    let mut opt = if fused {
        AdamW::new(vars, AdamWConfig::default())?
    } else {
        AdamW::new_reference(vars, AdamWConfig::default())?
    };
    let ema = Ema::new(&set.shadow, &set.live, EMA_DECAY)?;
    let mut step = |acc: &mut [f64; 3]| -> Result<()> {
        let a = Instant::now();
        let norm = if fused {
            opt.grad_norm(&set.grads)?
        } else {
            grad_norm_old(&set.live, &set.grads)?
        };
        let scale = if norm > CLIP { CLIP / norm } else { 1.0 };
        let b = Instant::now();
        let n = opt.t;
        opt.step(&set.grads, LR, scale)?;
        let c = Instant::now();
        if fused {
            ema.update(n)?;
        } else {
            ema.update_reference(n)?;
        }
        let d = Instant::now();
        for (x, dt) in acc.iter_mut().zip([b - a, c - b, d - c]) {
            *x += dt.as_secs_f64() * 1e3;
        }
        Ok(())
    };
    let mut warm = [0.0; 3];
    for _ in 0..5 {
        step(&mut warm)?;
    }
    let mut runs: Vec<[f64; 3]> = Vec::new();
    for _ in 0..REPEATS {
        let mut acc = [0.0; 3];
        for _ in 0..STEPS {
            step(&mut acc)?;
        }
        runs.push(acc.map(|x| x / STEPS as f64));
    }
    runs.sort_by(|a, b| a.iter().sum::<f64>().total_cmp(&b.iter().sum::<f64>()));
    Ok(runs[0])
}

fn main() -> Result<()> {
    println!(
        "rayon threads: {} (set RAYON_NUM_THREADS to change)",
        rayon::current_num_threads()
    );
    for set in [unet()?, mlp()?] {
        println!(
            "{}: {} parameters in {} tensors",
            set.name,
            set.live.num_params(),
            set.live.len()
        );
        let old = time(&set, false)?;
        let new = time(&set, true)?;
        for (label, t) in [("old  ", old), ("fused", new)] {
            println!(
                "  {label} ms/step: norm {:.3}  adamw {:.3}  ema {:.3}  total {:.3}",
                t[0],
                t[1],
                t[2],
                t.iter().sum::<f64>()
            );
        }
        println!(
            "  speed-up: adamw {:.1}x  ema {:.1}x  total {:.1}x",
            old[1] / new[1],
            old[2] / new[2],
            old.iter().sum::<f64>() / new.iter().sum::<f64>()
        );
    }
    Ok(())
}
