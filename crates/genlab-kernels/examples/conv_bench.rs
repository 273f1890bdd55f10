//! Benchmark (not a test): genlab-kernels' `conv2d` and `conv_transpose2d` against candle's
//! own `Tensor::conv2d` / `Tensor::conv_transpose2d` (each with a bias), forward and
//! forward+backward, on the U-Net's shapes, at one thread.
//!
//! Run: `cargo run --release -p genlab-kernels --example conv_bench [reps]`
//!
//! The thread count is `RAYON_NUM_THREADS` when set, else 1 (set here before any work).
//! Each time is the best of `reps` runs (default 10) after one warm-up: the machine may be
//! shared, and the best run is the least disturbed one. GFLOP/s counts `2·B·O·Ho·Wo·C·k·k`
//! per forward and three times that per forward+backward (input and weight gradients).

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};
use genlab_core::Rng;

/// Timed repetitions after one warm-up, unless given on the command line.
const DEFAULT_REPS: usize = 10;

/// The operation benchmarked.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Conv,
    ConvTranspose,
}

/// One benchmark case: input `[b, c, hw, hw]`, `o` output channels, kernel `k`, stride `s`,
/// padding `p`.
#[derive(Debug, Clone, Copy)]
struct Case {
    op: Op,
    b: usize,
    c: usize,
    hw: usize,
    o: usize,
    k: usize,
    s: usize,
    p: usize,
}

impl Case {
    /// Output side length.
    fn out_hw(&self) -> usize {
        match self.op {
            Op::Conv => (self.hw + 2 * self.p - self.k) / self.s + 1,
            Op::ConvTranspose => (self.hw - 1) * self.s + self.k - 2 * self.p,
        }
    }

    /// FLOPs of one forward: the underlying convolution's `2·B·O·Ho·Wo·C·k·k` (for the
    /// transposed one, the convolution it is the adjoint of: input = its output).
    fn flops(&self) -> f64 {
        let kk = (self.k * self.k) as f64;
        let positions = match self.op {
            Op::Conv => self.out_hw() * self.out_hw(),
            Op::ConvTranspose => self.hw * self.hw,
        };
        2.0 * (self.b * self.o * self.c * positions) as f64 * kk
    }
}

/// Forward through ours (`genlab`) or candle's op, with the bias.
fn forward(case: &Case, genlab: bool, x: &Var, w: &Var, b: &Var) -> Result<Tensor> {
    let (x, w, b) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
    let (s, p) = (case.s, case.p);
    match (case.op, genlab) {
        (Op::Conv, true) => genlab_kernels::conv2d(x, w, Some(b), s, p),
        (Op::ConvTranspose, true) => genlab_kernels::conv_transpose2d(x, w, Some(b), s, p),
        // [O] -> [1, O, 1, 1]
        (Op::Conv, false) => {
            x.conv2d(w, p, s, 1, 1)?
                .broadcast_add(&b.reshape((1, b.dims1()?, 1, 1))?)
        }
        (Op::ConvTranspose, false) => x
            .conv_transpose2d(w, p, 0, s, 1)?
            .broadcast_add(&b.reshape((1, b.dims1()?, 1, 1))?),
    }
}

/// One forward + backward of `sum(y * r)`; returns the loss so nothing is optimised away.
fn fwd_bwd(case: &Case, genlab: bool, x: &Var, w: &Var, b: &Var, r: &Tensor) -> Result<f32> {
    let loss = (forward(case, genlab, x, w, b)? * r)?.sum_all()?;
    let grads = loss.backward()?;
    for v in [x, w, b] {
        grads.get(v.as_tensor()).expect("missing gradient");
    }
    loss.to_scalar::<f32>()
}

/// Best milliseconds of `f` over `reps` runs after one warm-up.
fn best_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

fn bench(case: Case, reps: usize) -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let Case {
        b,
        c,
        hw,
        o,
        k,
        s,
        p,
        ..
    } = case;
    let x = Var::from_tensor(&rng.normal_tensor(&[b, c, hw, hw], &dev)?)?;
    let w_shape = match case.op {
        Op::Conv => [o, c, k, k],
        Op::ConvTranspose => [c, o, k, k],
    };
    let w = Var::from_tensor(&rng.normal_tensor(&w_shape, &dev)?)?;
    let bias = Var::from_tensor(&rng.normal_tensor(&[o], &dev)?)?;
    let ho = case.out_hw();
    let r = rng.normal_tensor(&[b, o, ho, ho], &dev)?;
    let flops = case.flops();
    let name = match case.op {
        Op::Conv => "conv2d",
        Op::ConvTranspose => "conv_transpose2d",
    };
    println!(
        "{name} {b}x{c}x{hw}x{hw} -> {o}x{ho}x{ho}, k{k} s{s} p{p} ({:.2} GFLOP forward)",
        flops / 1e9
    );
    let mut times = Vec::new();
    for genlab in [true, false] {
        let f = best_ms(reps, || {
            forward(&case, genlab, &x, &w, &bias)?;
            Ok(())
        })?;
        let fb = best_ms(reps, || {
            fwd_bwd(&case, genlab, &x, &w, &bias, &r)?;
            Ok(())
        })?;
        times.push((f, fb));
        println!(
            "  {:7}: fwd {f:7.2} ms ({:5.1} GFLOP/s)   fwd+bwd {fb:7.2} ms ({:5.1} GFLOP/s)",
            if genlab { "genlab" } else { "candle" },
            flops / f / 1e6,
            3.0 * flops / fb / 1e6,
        );
    }
    let ((gf, gfb), (cf, cfb)) = (times[0], times[1]);
    println!(
        "  speedup vs candle: fwd {:.1}x, fwd+bwd {:.1}x",
        cf / gf,
        cfb / gfb
    );
    Ok(())
}

fn main() -> Result<()> {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Before any kernel, rayon or candle reads it.
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let reps = match std::env::args().nth(1) {
        Some(a) => a.parse().expect("reps: a positive integer"),
        None => DEFAULT_REPS,
    };
    println!(
        "threads: {} (RAYON_NUM_THREADS), best of {reps} runs after 1 warm-up",
        genlab_kernels::num_threads()
    );
    let conv = |b, c, hw, o, s| Case {
        op: Op::Conv,
        b,
        c,
        hw,
        o,
        k: 3,
        s,
        p: 1,
    };
    for case in [
        conv(64, 32, 28, 32, 1),
        conv(64, 32, 28, 64, 2),
        conv(32, 16, 28, 16, 1),
        conv(32, 32, 14, 32, 1),
        Case {
            op: Op::ConvTranspose,
            b: 64,
            c: 64,
            hw: 14,
            o: 32,
            k: 4,
            s: 2,
            p: 1,
        },
    ] {
        bench(case, reps)?;
    }
    Ok(())
}
