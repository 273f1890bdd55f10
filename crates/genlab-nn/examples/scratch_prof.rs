use candle_core::{Device, Tensor};
use genlab_core::{ParamStore, Rng};
use genlab_nn::{Conv, GroupNorm};
use std::time::Instant;
fn maxdiff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
fn main() -> candle_core::Result<()> {
    let store = ParamStore::new(0, &Device::Cpu);
    let vb = store.vb();
    let conv = Conv::new(32, 32, 3, 1, 1, vb.pp("c"))?;
    let gn = GroupNorm::new(8, 32, 1e-5, true, vb.pp("g"))?;
    let mut rng = Rng::new(1);
    let x = candle_core::Var::from_tensor(&rng.normal_tensor(&[64, 32, 28, 28], &Device::Cpu)?)?;
    for _ in 0..2 {
        for fast in [true, false] {
            let t0 = Instant::now();
            let y = if fast {
                conv.forward(&x)?
            } else {
                conv.forward_reference(&x)?
            };
            let f = t0.elapsed().as_secs_f64();
            let _g = y.sqr()?.sum_all()?.backward()?;
            println!(
                "conv fast={fast} fwd {f:.3} total {:.3}",
                t0.elapsed().as_secs_f64()
            );
            let t0 = Instant::now();
            let y = if fast {
                gn.forward(&x)?
            } else {
                gn.forward_reference(&x)?
            };
            let f = t0.elapsed().as_secs_f64();
            let _g = y.sqr()?.sum_all()?.backward()?;
            println!(
                "gn+silu fast={fast} fwd {f:.3} total {:.3}",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let y1 = conv.forward(&x)?;
    let y2 = conv.forward_reference(&x)?;
    println!("conv diff {}", maxdiff(&y1, &y2));
    let y1 = gn.forward(&x)?;
    let y2 = gn.forward_reference(&x)?;
    println!("gn diff {}", maxdiff(&y1, &y2));
    Ok(())
}
