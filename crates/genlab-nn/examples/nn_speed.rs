//! Forward and forward+backward time per batch of the default U-Net and cheaper variants,
//! and of the MLP denoiser; parameter counts. Not a test: a measurement to read.
//!
//! `cargo run --release -p genlab-nn --example nn_speed [batch] [reps]`
//!
//! Each time is the best of `reps` runs after one warm-up (the machine is shared: the best
//! run is the least disturbed one). The loss is the mean square of the output.

use std::time::Instant;

use candle_core::{Device, Tensor};
use genlab_core::{ParamStore, Rng};
use genlab_nn::{MlpDenoiser, MlpDenoiserConfig, UNet, UNetConfig};

/// Batch size of the measurement (the training batch size the brief asks about).
const DEFAULT_BATCH: usize = 64;
/// Timed repetitions after the warm-up (enough to catch one undisturbed run).
const DEFAULT_REPS: usize = 3;
/// Batch of the MLP measurement (a typical 2-D toy batch).
const MLP_BATCH: usize = 256;

/// Best forward and forward+backward seconds of `f` over `reps` runs after a warm-up.
fn best_of(
    reps: usize,
    f: impl Fn() -> candle_core::Result<Tensor>,
) -> candle_core::Result<(f64, f64)> {
    let step = || -> candle_core::Result<(f64, f64)> {
        let t0 = Instant::now();
        let loss = f()?.sqr()?.mean_all()?;
        let fwd = t0.elapsed().as_secs_f64();
        let _grads = loss.backward()?;
        Ok((fwd, t0.elapsed().as_secs_f64()))
    };
    step()?;
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..reps {
        let (f, t) = step()?;
        best = (best.0.min(f), best.1.min(t));
    }
    Ok(best)
}

fn time_unet(
    name: &str,
    cfg: &UNetConfig,
    size: usize,
    batch: usize,
    reps: usize,
) -> candle_core::Result<()> {
    let store = ParamStore::new(0, &Device::Cpu);
    let net = UNet::new(cfg, 1, 1, store.vb())?;
    let mut rng = Rng::new(1);
    let x = rng.normal_tensor(&[batch, 1, size, size], &Device::Cpu)?;
    let t = rng.uniform_tensor(0.0, 999.0, &[batch], &Device::Cpu)?;
    let (fwd, tot) = best_of(reps, || net.forward(&x, &t))?;
    println!(
        "{name:<34} {size:>2}x{size:<2} batch {batch}: {:>9} params, forward {fwd:.3} s, forward+backward {tot:.3} s",
        store.num_params()
    );
    Ok(())
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let batch = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_BATCH);
    let reps = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_REPS);
    let default = UNetConfig::default();
    let variants = [
        ("default (32, [1,2,2], 2 res)", default.clone()),
        (
            "32, [1,2,2], 1 res",
            UNetConfig {
                num_res_blocks: 1,
                ..default.clone()
            },
        ),
        (
            "16, [1,2,2], 2 res",
            UNetConfig {
                base_channels: 16,
                ..default.clone()
            },
        ),
        (
            "16, [1,2,2], 1 res",
            UNetConfig {
                base_channels: 16,
                num_res_blocks: 1,
                ..default.clone()
            },
        ),
    ];
    for size in [28, 8] {
        for (name, cfg) in &variants {
            time_unet(name, cfg, size, batch, reps)?;
        }
    }

    let store = ParamStore::new(0, &Device::Cpu);
    let mlp = MlpDenoiser::new(&MlpDenoiserConfig::default(), 2, store.vb())?;
    let mut rng = Rng::new(1);
    let x = rng.normal_tensor(&[MLP_BATCH, 2], &Device::Cpu)?;
    let t = rng.uniform_tensor(0.0, 999.0, &[MLP_BATCH], &Device::Cpu)?;
    let (fwd, tot) = best_of(reps.max(10), || mlp.forward(&x, &t))?;
    println!(
        "mlp default, 2-D, batch {MLP_BATCH}: {} params, forward {fwd:.4} s, forward+backward {tot:.4} s",
        store.num_params()
    );
    Ok(())
}
