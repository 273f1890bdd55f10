use candle_core::{Device, Tensor};
use genlab_core::Rng;
use std::time::Instant;
fn bench(name: &str, f: impl Fn() -> candle_core::Result<Tensor>) -> candle_core::Result<()> {
    f()?;
    let t0 = Instant::now();
    for _ in 0..5 {
        f()?;
    }
    println!("{name}: {:.4} s", t0.elapsed().as_secs_f64() / 5.0);
    Ok(())
}
fn main() -> candle_core::Result<()> {
    let mut rng = Rng::new(1);
    let d = Device::Cpu;
    let w = rng.normal_tensor(&[32, 288], &d)?;
    let cols = rng.normal_tensor(&[288, 50176], &d)?;
    let g = rng.normal_tensor(&[32, 50176], &d)?;
    bench("fwd W@cols", || w.matmul(&cols))?;
    bench("dW g@cols^T", || g.matmul(&cols.t()?))?;
    bench("dW cols@g^T (alt)", || cols.matmul(&g.t()?))?;
    bench("dcols W^T@g", || w.t()?.matmul(&g))?;
    bench("transpose copy", || {
        g.reshape((32, 64, 784))?.transpose(0, 1)?.contiguous()
    })?;
    bench("sum last dim", || g.sum_keepdim(1))?;
    let colst = rng.normal_tensor(&[50176, 288], &d)?;
    let gt = rng.normal_tensor(&[50176, 32], &d)?;
    let wt2 = rng.normal_tensor(&[288, 32], &d)?;
    bench("A colsT@Wt", || colst.matmul(&wt2))?;
    bench("A' colsT@W.t()", || colst.matmul(&w.t()?))?;
    bench("B gT@W", || gt.matmul(&w))?;
    bench("C colsT^T@gT", || colst.t()?.matmul(&gt))?;
    bench("C' gT^T@colsT", || gt.t()?.matmul(&colst))?;
    bench("perm [64,784,32]->[64,32,784]", || {
        gt.reshape((64, 784, 32))?.transpose(1, 2)?.contiguous()
    })?;
    let a = rng.normal_tensor(&[1024, 1024], &d)?;
    bench("1024^3 (2.1 GFLOP)", || a.matmul(&a))?;
    let wt = w.t()?.contiguous()?;
    bench("dcols contiguous W^T", || wt.matmul(&g))?;
    Ok(())
}
#[allow(dead_code)]
fn unused() {}
