//! Benchmark (not a test): forward+backward of one 3x3 convolution — genlab-kernels'
//! fused `conv2d`, its whole-batch `conv2d_im2col`, and candle's own `Tensor::conv2d`.
//!
//! Run: `cargo run --release -p genlab-kernels --example conv_bench`

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};
use genlab_core::Rng;

/// Timed repetitions after one warm-up.
const REPS: usize = 5;

/// The implementations compared.
#[derive(Debug, Clone, Copy)]
enum Impl {
    Fused,
    Im2Col,
    Candle,
}

/// Forward of `x` through `which` (k3 s1 p1, with bias).
fn forward(which: Impl, x: &Var, w: &Var, b: &Var) -> Result<Tensor> {
    let (x, w, b) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
    match which {
        Impl::Fused => genlab_kernels::conv2d(x, w, Some(b), 1, 1),
        Impl::Im2Col => genlab_kernels::conv2d_im2col(x, w, Some(b), 1, 1),
        // [O] -> [1, O, 1, 1]
        Impl::Candle => {
            x.conv2d(w, 1, 1, 1, 1)?
                .broadcast_add(&b.reshape((1, b.dims1()?, 1, 1))?)
        }
    }
}

/// One forward + backward; returns the loss so nothing is optimised away.
fn fwd_bwd(which: Impl, x: &Var, w: &Var, b: &Var, r: &Tensor) -> Result<f32> {
    let loss = (forward(which, x, w, b)? * r)?.sum_all()?;
    let grads = loss.backward()?;
    // Touch each gradient so the whole backward is accounted for.
    for v in [x, w, b] {
        grads
            .get(v.as_tensor())
            .expect("missing gradient")
            .sum_all()?;
    }
    loss.to_scalar::<f32>()
}

/// Mean milliseconds of forward only and of forward+backward.
fn time(which: Impl, x: &Var, w: &Var, b: &Var, r: &Tensor) -> Result<(f64, f64)> {
    fwd_bwd(which, x, w, b, r)?; // warm-up
    let t = Instant::now();
    for _ in 0..REPS {
        forward(which, x, w, b)?.sum_all()?.to_scalar::<f32>()?;
    }
    let f = t.elapsed().as_secs_f64() * 1e3 / REPS as f64;
    let t = Instant::now();
    for _ in 0..REPS {
        fwd_bwd(which, x, w, b, r)?;
    }
    let fb = t.elapsed().as_secs_f64() * 1e3 / REPS as f64;
    Ok((f, fb))
}

fn bench(b: usize, c: usize, hw: usize, o: usize) -> Result<()> {
    let k = 3;
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let x = Var::from_tensor(&rng.normal_tensor(&[b, c, hw, hw], &dev)?)?;
    let w = Var::from_tensor(&rng.normal_tensor(&[o, c, k, k], &dev)?)?;
    let bias = Var::from_tensor(&rng.normal_tensor(&[o], &dev)?)?;
    // k3 s1 p1 keeps the spatial size: Ho = Wo = hw.
    let r = rng.normal_tensor(&[b, o, hw, hw], &dev)?;
    let flops = 2.0 * (b * o * hw * hw * c * k * k) as f64;
    println!(
        "{b}x{c}x{hw}x{hw} -> {o} ch, k3 s1 p1 (forward {:.2} GFLOP)",
        flops / 1e9
    );
    let (_, fb_candle) = time(Impl::Candle, &x, &w, &bias, &r)?;
    for which in [Impl::Fused, Impl::Im2Col, Impl::Candle] {
        let (f, fb) = time(which, &x, &w, &bias, &r)?;
        println!(
            "  {:7}: fwd {f:7.1} ms ({:5.1} GFLOP/s)  fwd+bwd {fb:7.1} ms  speedup vs candle {:4.1}x",
            format!("{which:?}"),
            flops / f / 1e6,
            fb_candle / fb
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    println!(
        "threads: {}, {REPS} reps after 1 warm-up",
        candle_core::utils::get_num_threads()
    );
    bench(64, 32, 28, 32)?;
    bench(64, 64, 14, 64)?;
    bench(64, 1, 28, 32)?;
    Ok(())
}
