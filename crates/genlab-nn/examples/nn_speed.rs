//! Forward+backward time per batch of the default and cheaper U-Nets and the MLP denoiser.
//!
//! `cargo run --release -p genlab-nn --example nn_speed [batch] [reps]`

use std::time::Instant;

use candle_core::{Device, Tensor};
use genlab_core::{ParamStore, Rng};
use genlab_nn::{MlpDenoiser, MlpDenoiserConfig, UNet, UNetConfig};

/// Batch size of the measurement (the training batch size the brief asks about).
const DEFAULT_BATCH: usize = 64;
/// Timed repetitions after one warm-up step (enough for a stable mean on 2 cores).
const DEFAULT_REPS: usize = 3;

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
    let step = || -> candle_core::Result<(f64, f64)> {
        let t0 = Instant::now();
        let loss = net.forward(&x, &t)?.sqr()?.mean_all()?;
        let _ = loss.to_scalar::<f32>()?;
        let fwd = t0.elapsed().as_secs_f64();
        let _grads = loss.backward()?;
        Ok((fwd, t0.elapsed().as_secs_f64()))
    };
    step()?;
    let (mut fwd, mut tot) = (0.0, 0.0);
    for _ in 0..reps {
        let (f, a) = step()?;
        fwd += f;
        tot += a;
    }
    println!(
        "{name:<28} {size:>2}x{size:<2} batch {batch}: {:>9} params, forward {:.3} s, forward+backward {:.3} s",
        store.num_params(),
        fwd / reps as f64,
        tot / reps as f64
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
    let cheap = UNetConfig {
        num_res_blocks: 1,
        ..UNetConfig::default()
    };
    for size in [28, 8] {
        time_unet("default", &default, size, batch, reps)?;
        time_unet("num_res_blocks = 1", &cheap, size, batch, reps)?;
    }

    let store = ParamStore::new(0, &Device::Cpu);
    let mlp = MlpDenoiser::new(&MlpDenoiserConfig::default(), 2, store.vb())?;
    let mut rng = Rng::new(1);
    let x = rng.normal_tensor(&[256, 2], &Device::Cpu)?;
    let t = rng.uniform_tensor(0.0, 999.0, &[256], &Device::Cpu)?;
    let t0 = Instant::now();
    for _ in 0..10 {
        let loss = mlp.forward(&x, &t)?.sqr()?.mean_all()?;
        let _g = loss.backward()?;
    }
    println!(
        "mlp default 2-D batch 256: {} params, forward+backward {:.4} s",
        store.num_params(),
        t0.elapsed().as_secs_f64() / 10.0
    );
    let _ = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?;
    Ok(())
}
