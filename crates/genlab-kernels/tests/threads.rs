//! With one thread set (`RAYON_NUM_THREADS=1`, what `genlab --threads 1` sets), the
//! convolution, transposed convolution, GroupNorm and upsampling kernels run forward and
//! backward without starting a single thread. (Its own test binary: the setting must come
//! before anything reads it, and no other test may start threads meanwhile.)

use candle_core::{Device, Var};
use genlab_core::Rng;

/// Threads of this process (Linux: the entries of /proc/self/task).
#[cfg(target_os = "linux")]
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[cfg(target_os = "linux")]
#[test]
fn one_thread_spawns_none() {
    // Before any kernel (or candle) reads it; this binary has no other test.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    std::env::set_var("CANDLE_NUM_THREADS", "1");
    assert_eq!(genlab_kernels::num_threads(), 1);
    let dev = Device::Cpu;
    let mut rng = Rng::new(1);
    // Batch 8 with 64x28x28 inputs: well past every "small data" threshold.
    let x = Var::from_tensor(&rng.normal_tensor(&[8, 16, 28, 28], &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&rng.normal_tensor(&[16, 16, 3, 3], &dev).unwrap()).unwrap();
    let wt = Var::from_tensor(&rng.normal_tensor(&[16, 8, 4, 4], &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&rng.normal_tensor(&[16], &dev).unwrap()).unwrap();
    let before = thread_count();

    let y =
        genlab_kernels::conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), 2, 1).unwrap();
    let y = genlab_kernels::group_norm(&y, b.as_tensor(), b.as_tensor(), 4, 1e-5, true).unwrap();
    let y = genlab_kernels::upsample_nearest2x(&y, 27, 28).unwrap();
    let y = genlab_kernels::conv_transpose2d(&y, wt.as_tensor(), None, 2, 1).unwrap();
    assert_eq!(y.dims(), &[8, 8, 54, 56]);
    let grads = y.sum_all().unwrap().backward().unwrap();
    for v in [&x, &w, &wt, &b] {
        assert!(grads.get(v.as_tensor()).is_some());
    }

    assert_eq!(thread_count(), before, "a kernel started threads");
}
