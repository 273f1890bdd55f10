//! Benchmark of the Wasserstein solvers (prints timings; asserts nothing).
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release -p genlab-metrics --example bench_wasserstein -- \
//!     [--out target/bench-wasserstein] [--skip-sinkhorn]
//! OMP_NUM_THREADS=1 .venv/bin/python scripts/bench/wasserstein_pot.py target/bench-wasserstein
//! ```
//!
//! The data (64-D Gaussians: real N(0, I), fake N(0.25, 1.1^2 I), from `Rng::new(0)`) are
//! written as `.npy` files into the output folder so that the POT script times the same
//! problems and prints its values next to ours.

use genlab_core::{io::write_npy, Rng};
use genlab_metrics::wasserstein::{cost_matrix, exact, wasserstein, Method, WassersteinOptions};
use genlab_metrics::FeatureMatrix;
use std::path::PathBuf;
use std::time::Instant;

const DIM: usize = 64;

fn gaussian(rng: &mut Rng, n: usize, shift: f64, scale: f64) -> FeatureMatrix {
    // Values rounded to f32 so that the .npy inputs of the POT script are these exactly.
    let data: Vec<f64> = (0..n * DIM)
        .map(|_| (shift + scale * rng.normal()) as f32 as f64)
        .collect();
    FeatureMatrix::new(n, DIM, data, "bench").expect("finite")
}

fn save(dir: &std::path::Path, name: &str, x: &FeatureMatrix) {
    let v: Vec<f32> = x.data().iter().map(|&v| v as f32).collect();
    write_npy(&dir.join(name), &[x.rows(), x.cols()], &v).expect("write npy");
}

fn main() {
    let mut out = PathBuf::from("target/bench-wasserstein");
    let mut sinkhorn = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(args.next().expect("--out DIR")),
            "--skip-sinkhorn" => sinkhorn = false,
            other => panic!("unknown argument {other}"),
        }
    }
    std::fs::create_dir_all(&out).expect("create output folder");
    let mut rng = Rng::new(0);
    let x5 = gaussian(&mut rng, 5000, 0.0, 1.0);
    let y5 = gaussian(&mut rng, 5000, 0.25, 1.1);
    save(&out, "x.npy", &x5);
    save(&out, "y.npy", &y5);
    println!(
        "inputs: {} (x 5000 x {DIM}, y 5000 x {DIM}; the cases use their first rows)",
        out.display()
    );
    println!("case                               value          seconds  note");

    for &(n, m, p) in &[(1000, 1000, 2), (3000, 3000, 2), (3000, 2000, 2)] {
        let (x, y) = (x5.head(n), y5.head(m));
        let opts = WassersteinOptions {
            method: Method::Exact,
            p,
            ..Default::default()
        };
        let t = Instant::now();
        let r = wasserstein(&x, &y, &opts).expect("exact");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "exact {n}+{m} p={p} (total)          {:<14.10} {secs:>7.3}  {}",
            r.value, r.method
        );
        let t = Instant::now();
        let c = cost_matrix(&x, &y, p).expect("cost");
        let t_cost = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let plan = exact::network_simplex(&c, n, m).expect("network simplex");
        let t_ns = t.elapsed().as_secs_f64();
        println!("  cost matrix {n}x{m}                              {t_cost:>7.3}",);
        println!(
            "  network simplex only               {:<14.10} {t_ns:>7.3}  {} pivots",
            plan.cost.sqrt(),
            plan.pivots
        );
        if n == m {
            let t = Instant::now();
            let a = exact::assignment(&c, n).expect("assignment");
            println!(
                "  assignment only                    {:<14.10} {:>7.3}",
                a.cost.sqrt(),
                t.elapsed().as_secs_f64()
            );
        }
    }

    if sinkhorn {
        let reg = 0.05;
        let opts = WassersteinOptions {
            method: Method::Sinkhorn { reg },
            p: 2,
            ..Default::default()
        };
        let t = Instant::now();
        let r = wasserstein(&x5, &y5, &opts).expect("sinkhorn");
        println!(
            "sinkhorn 5000+5000 p=2 (total)      {:<14.10} {:>7.3}  {}, converged {}",
            r.value,
            t.elapsed().as_secs_f64(),
            r.method,
            r.converged
        );
        let c = cost_matrix(&x5, &y5, 2).expect("cost");
        let eps = reg * c.iter().sum::<f64>() / c.len() as f64;
        let t = Instant::now();
        let s = genlab_metrics::wasserstein::sinkhorn::sinkhorn_log(
            &c,
            5000,
            5000,
            eps,
            genlab_metrics::wasserstein::sinkhorn::MAX_ITER,
            genlab_metrics::wasserstein::sinkhorn::MARGINAL_TOL,
        )
        .expect("sinkhorn");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "  sinkhorn only (eps {eps:.6})     {:<14.10} {secs:>7.3}  {} iterations, {:.1} ms/iteration",
            s.cost.sqrt(),
            s.iterations,
            1e3 * secs / (s.iterations + 1) as f64
        );
    }

    let opts = WassersteinOptions {
        method: Method::Sliced {
            projections: 128,
            seed: 0,
        },
        p: 2,
        ..Default::default()
    };
    let t = Instant::now();
    let r = wasserstein(&x5, &y5, &opts).expect("sliced");
    println!(
        "sliced 5000+5000 p=2                {:<14.10} {:>7.3}  {}",
        r.value,
        t.elapsed().as_secs_f64(),
        r.method
    );
}
