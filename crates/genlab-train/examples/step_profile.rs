//! Where the time of one DDPM training step goes (forward+loss, backward, grad norm, AdamW,
//! EMA) for the 2-D preset, or the digits preset with the argument `digits`.
//! `cargo run --release -p genlab-train --example step_profile [digits]`
use std::time::Instant;

use candle_core::Device;
use genlab_core::{ParamStore, Rng};
use genlab_data::{make_batch, Toy2d, Toy2dKind};
use genlab_models::diffusion::{Ddpm, DdpmConfig};
use genlab_models::DataSpace;
use genlab_train::ema::Ema;
use genlab_train::optim::{AdamW, AdamWConfig};

fn main() -> genlab_core::Result<()> {
    let images = std::env::args().nth(1).as_deref() == Some("digits");
    let space = if images {
        DataSpace {
            shape: vec![1, 8, 8],
            images: true,
        }
    } else {
        DataSpace {
            shape: vec![2],
            images: false,
        }
    };
    let cfg = DdpmConfig::for_data(&space);
    let ps = ParamStore::new(0, &Device::Cpu);
    let m = Ddpm::new(&cfg, ps.vb())?;
    let es = ParamStore::new(0, &Device::Cpu);
    let _em = Ddpm::new(&cfg, es.vb())?;
    let ema = Ema::new(&es, &ps, 0.99)?;
    let mut opt = AdamW::new(ps.vars(), AdamWConfig::default())?;
    let data: Box<dyn genlab_data::Dataset> = if images {
        Box::new(genlab_data::Digits::load()?)
    } else {
        Box::new(Toy2d::new(Toy2dKind::EightGaussians, 100_000, 0))
    };
    let idx: Vec<usize> = (0..if images { 64 } else { 512 }).collect();
    let mut rng = Rng::new(0);
    let mut t = [0f64; 6];
    let n = if images { 10 } else { 100 };
    for _ in 0..n {
        let a = Instant::now();
        let b = make_batch(data.as_ref(), &idx, &Device::Cpu)?;
        let b0 = Instant::now();
        let loss = m.loss(&b.x, &mut rng)?;
        let _ = loss.to_scalar::<f32>()?;
        let b1 = Instant::now();
        let g = loss.backward()?;
        let b2 = Instant::now();
        let _ = opt.grad_norm(&g)?;
        let b3 = Instant::now();
        opt.step(&g, 1e-3, 1.0)?;
        let b4 = Instant::now();
        ema.update(opt.t)?;
        let b5 = Instant::now();
        for (i, d) in [b0 - a, b1 - b0, b2 - b1, b3 - b2, b4 - b3, b5 - b4]
            .iter()
            .enumerate()
        {
            t[i] += d.as_secs_f64() * 1000.0 / n as f64;
        }
    }
    println!(
        "ms per step: batch {:.2} fwd {:.2} bwd {:.2} norm {:.2} adamw {:.2} ema {:.2} total {:.2}",
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
        t[5],
        t.iter().sum::<f64>()
    );
    Ok(())
}
