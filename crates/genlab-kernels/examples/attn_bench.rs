//! Benchmark (not a test): forward and forward+backward of genlab-kernels' `attention`
//! against the plain candle composition (matmul + `candle_nn::ops::softmax` + matmul), and
//! of `layer_norm` against its composition of candle ops.
//!
//! Run: `RAYON_NUM_THREADS=1 cargo run --release -p genlab-kernels --example attn_bench`

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var, D};
use genlab_core::Rng;

/// Timed repetitions after one warm-up.
const REPS: usize = 10;

/// Mean milliseconds of `f` over [`REPS`] runs, after one warm-up.
fn time(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let t = Instant::now();
    for _ in 0..REPS {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e3 / REPS as f64)
}

/// candle's own composition: `softmax(scale q k^T) v`.
fn candle_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let s = (q.matmul(&k.t()?)? * scale)?;
    candle_nn::ops::softmax(&s, D::Minus1)?.matmul(v)
}

type Attn = fn(&Tensor, &Tensor, &Tensor, f64) -> Result<Tensor>;

/// (forward ms, forward+backward ms).
fn bench_attention(f: Attn, vars: &[Var; 3], r: &Tensor, scale: f64) -> Result<(f64, f64)> {
    let [q, k, v] = vars;
    let (q, k, v) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
    let fwd = time(|| {
        f(q, k, v, scale)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let fb = time(|| {
        let loss = (f(q, k, v, scale)? * r)?.sum_all()?;
        let grads = loss.backward()?;
        for t in [q, k, v] {
            grads.get(t).expect("missing gradient").sum_all()?;
        }
        Ok(())
    })?;
    Ok((fwd, fb))
}

type Ln = fn(&Tensor, &Tensor, &Tensor, f64) -> Result<Tensor>;

fn bench_layer_norm(f: Ln, vars: &[Var; 3], r: &Tensor) -> Result<(f64, f64)> {
    let [x, w, b] = vars;
    let (x, w, b) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
    let fwd = time(|| {
        f(x, w, b, 1e-5)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let fb = time(|| {
        let loss = (f(x, w, b, 1e-5)? * r)?.sum_all()?;
        let grads = loss.backward()?;
        for t in [x, w, b] {
            grads.get(t).expect("missing gradient").sum_all()?;
        }
        Ok(())
    })?;
    Ok((fwd, fb))
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    println!(
        "kernel threads: {} (set RAYON_NUM_THREADS=1 for single-core numbers)",
        genlab_kernels::num_threads()
    );
    for (bh, n, d) in [(64, 196, 64), (32, 49, 32)] {
        let mk = |rng: &mut Rng, s: &[usize]| Var::from_tensor(&rng.normal_tensor(s, &dev)?);
        let vars = [
            mk(&mut rng, &[bh, n, d])?,
            mk(&mut rng, &[bh, n, d])?,
            mk(&mut rng, &[bh, n, d])?,
        ];
        let r = rng.normal_tensor(&[bh, n, d], &dev)?;
        let scale = 1.0 / (d as f64).sqrt();
        // 2 GEMMs forward, 5 in backward (the recompute included), 2*BH*N*N*d flops each.
        let gflop = 2.0 * (bh * n * n * d) as f64 / 1e9;
        for (name, f) in [
            ("genlab attention", genlab_kernels::attention as Attn),
            ("candle matmul+softmax+matmul", candle_attention as Attn),
        ] {
            let (fwd, fb) = bench_attention(f, &vars, &r, scale)?;
            println!(
                "attention BH={bh} N={n} d={d}  {name:<30} fwd {fwd:8.3} ms   fwd+bwd {fb:8.3} ms   \
                 ({:.0} / {:.0} GFLOP/s of GEMM work)",
                2.0 * gflop / (fwd / 1e3),
                7.0 * gflop / (fb / 1e3),
            );
        }
    }
    let (rows, d) = (4096, 256);
    let vars = [
        Var::from_tensor(&rng.normal_tensor(&[rows, d], &dev)?)?,
        Var::from_tensor(&(rng.normal_tensor(&[d], &dev)? + 1.0)?)?,
        Var::from_tensor(&rng.normal_tensor(&[d], &dev)?)?,
    ];
    let r = rng.normal_tensor(&[rows, d], &dev)?;
    for (name, f) in [
        ("genlab layer_norm", genlab_kernels::layer_norm as Ln),
        (
            "candle composition",
            genlab_kernels::layer_norm_composed as Ln,
        ),
    ] {
        let (fwd, fb) = bench_layer_norm(f, &vars, &r)?;
        println!("layer_norm [{rows}, {d}]  {name:<30} fwd {fwd:8.3} ms   fwd+bwd {fb:8.3} ms");
    }
    Ok(())
}
