//! Where the time of one `clip-step` goes: each tower forward and forward+backward, the
//! full loss backward, AdamW. `RAYON_NUM_THREADS=T cargo run --release --example clip_profile`
use std::time::Instant;

use candle_core::{Device, Tensor};
use genlab_core::{ParamStore, Rng};
use genlab_models::clip::{Clip, ClipConfig};
use genlab_train::optim::{AdamW, AdamWConfig};

fn time<F: FnMut() -> genlab_core::Result<()>>(
    name: &str,
    reps: usize,
    mut f: F,
) -> genlab_core::Result<()> {
    if let Some(only) = std::env::args().nth(1) {
        if only != name {
            return Ok(());
        }
    }
    f()?;
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    println!(
        "{name:>28}: {:8.2} ms",
        1e3 * t.elapsed().as_secs_f64() / reps as f64
    );
    Ok(())
}

fn main() -> genlab_core::Result<()> {
    let dev = Device::Cpu;
    let (b, n) = (256, 16);
    let mut rng = Rng::new(0);
    let cfg = ClipConfig::default();
    let ps = ParamStore::new(0, &dev);
    let clip = Clip::new(&cfg, ps.vb())?;
    let x = rng.uniform_tensor(0.0, 1.0, &[b, 1, 28, 28], &dev)?;
    let mut ids = Vec::new();
    for _ in 0..b {
        ids.push(49406u32);
        for _ in 0..n - 2 {
            ids.push(rng.below(49406) as u32);
        }
        ids.push(49407);
    }
    let ids = Tensor::from_vec(ids, (b, n), &dev)?;
    let eot = vec![n - 1; b];
    let mut opt = AdamW::new(ps.vars(), AdamWConfig::default())?;
    let reps = 10;
    time("image fwd", reps, || {
        clip.encode_image(&x)?;
        Ok(())
    })?;
    time("image fwd+bwd", reps, || {
        clip.encode_image(&x)?.sum_all()?.backward()?;
        Ok(())
    })?;
    time("text fwd", reps, || {
        clip.encode_text(&ids, &eot)?;
        Ok(())
    })?;
    time("text fwd+bwd", reps, || {
        clip.encode_text(&ids, &eot)?.sum_all()?.backward()?;
        Ok(())
    })?;
    time("loss fwd", reps, || {
        clip.loss(&x, &ids, &eot)?;
        Ok(())
    })?;
    time("loss fwd+bwd", reps, || {
        clip.loss(&x, &ids, &eot)?.0.backward()?;
        Ok(())
    })?;
    let (loss, _) = clip.loss(&x, &ids, &eot)?;
    let g = loss.backward()?;
    time("adamw step", reps, || {
        opt.step(&g, 1e-4, 1.0)?;
        Ok(())
    })?;
    time("full step", reps, || {
        let (loss, _) = clip.loss(&x, &ids, &eot)?;
        opt.step(&loss.backward()?, 1e-4, 1.0)?;
        Ok(())
    })?;
    Ok(())
}
