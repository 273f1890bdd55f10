//! `clip-step`: one CLIP training step with genlab's MNIST preset (ViT image tower: 7x7
//! patches of a 28x28 image, width 96, 4 layers, 4 heads; causal text tower over CLIP's
//! 49,408-token vocabulary: width 64, 3 layers, 4 heads; 64-d joint space), batch 256 of
//! 16-token captions: symmetric InfoNCE, backward, Adam.

use candle_core::{Device, Tensor};

use genlab_core::{ParamStore, Result, Rng};
use genlab_models::clip::{Clip, ClipConfig};

use super::{adam, Workload, LR};

/// Pairs per step (the `clip` preset's batch).
pub const BATCH: usize = 256;
/// Tokens per caption, start and end tokens included (a typical digit caption).
pub const TOKENS: usize = 16;

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let cfg = ClipConfig::default();
    let ps = ParamStore::new(0, &dev);
    let clip = Clip::new(&cfg, ps.vb())?;
    let x = rng.uniform_tensor(0.0, 1.0, &[BATCH, 1, 28, 28], &dev)?;
    // Token ids: SOT, 14 ids drawn below 49,406, EOT (the end token is the last one).
    let mut ids = Vec::with_capacity(BATCH * TOKENS);
    for _ in 0..BATCH {
        ids.push(49406u32);
        for _ in 0..TOKENS - 2 {
            ids.push(rng.below(49406) as u32);
        }
        ids.push(49407);
    }
    let ids = Tensor::from_vec(ids, (BATCH, TOKENS), &dev)?;
    let eot = vec![TOKENS - 1; BATCH];
    let mut opt = adam(&ps)?;
    let flop = 3.0 * (BATCH as f64) * clip.flops(TOKENS) as f64;
    Ok(Workload {
        params: ps.num_params(),
        flop_per_iter: flop,
        iter: Box::new(move || {
            let (loss, _) = clip.loss(&x, &ids, &eot)?;
            opt.step(&loss.backward()?, LR, 1.0)?;
            Ok(())
        }),
    })
}
