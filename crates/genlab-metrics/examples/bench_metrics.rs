//! Benchmark: FID and the 1-NN test on two 10,000 x 2,048 feature sets written by
//! `scripts/bench/metrics_scipy.py` (which times scipy / scikit-learn on the same data).
//! Thread count: RAYON_NUM_THREADS. Prints values (to cross-check the Python side) and
//! seconds; asserts nothing.
//!
//! cargo run --release -p genlab-metrics --example bench_metrics -- /tmp/genlab-bench

use genlab_metrics::{fid, nn1, FeatureMatrix};
use std::path::PathBuf;
use std::time::Instant;

fn load(dir: &std::path::Path, name: &str) -> FeatureMatrix {
    let a = genlab_core::io::read_npy_f64(&dir.join(name))
        .expect("run scripts/bench/metrics_scipy.py first");
    FeatureMatrix::new(a.shape[0], a.shape[1], a.data, name).expect("finite features")
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/tmp/genlab-bench".into()),
    );
    let (real, fake) = (load(&dir, "real.npy"), load(&dir, "fake.npy"));
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let t = Instant::now();
    let f = fid::fid(&real, &fake).expect("fid");
    let fid_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let n = nn1::one_nn(&real, &fake).expect("1nn");
    let nn_s = t.elapsed().as_secs_f64();
    let py: Option<serde_json::Value> = std::fs::read_to_string(dir.join("scipy.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    println!(
        "threads {threads}, {} + {} x {}",
        real.rows(),
        fake.rows(),
        real.cols()
    );
    println!("fid   {:.6}  {fid_s:.2} s", f.fid);
    println!("1-nn  {:.6}  {nn_s:.2} s", n.accuracy);
    if let Some(p) = py {
        let ps = |k: &str| p[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "scipy fid {:.6} in {:.2} s -> genlab is {:.2}x faster; sklearn 1-nn {:.6} in {:.2} s -> {:.2}x",
            ps("fid"),
            ps("fid_seconds"),
            ps("fid_seconds") / fid_s,
            ps("one_nn_accuracy"),
            ps("one_nn_seconds"),
            ps("one_nn_seconds") / nn_s
        );
    }
}
