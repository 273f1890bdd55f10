//! `simclr-step`: one SimCLR training step exactly as `genlab ssl train --method simclr
//! --data mnist --batch 256` takes it (Chen et al. 2020, arXiv:2002.05709; the method is
//! [`crate::ssl::simclr`], run here through the same code): two independently augmented
//! views of each of 256 1x28x28 images made by genlab's own augmentation
//! ([`crate::augment::simclr`]: random resized crop, bilinear, brightness/contrast jitter)
//! inside the timed step, the digit encoder (genlab-nn's `Classifier` without its head,
//! with the ssl trainer's defaults and seed-0 store) and the 128-128-64 projection head on
//! each view, NT-Xent at temperature 0.5 over the 2 x 256 projections, backward, and the
//! trainer's Adam (weight decay 0, learning rate 1e-3). The images are a fixed batch of
//! uniform noise (speed does not depend on the pixels).

use candle_core::Device;

use genlab_core::{Result, Rng};
use genlab_nn::flops::{conv_flops, linear_flops};
use genlab_train::bench::Workload;
use genlab_train::optim::AdamW;

use crate::ssl::simclr::{Config, SimClr};
use crate::ssl::{encoder, parse_config, Method, Spec, SslConfig};

/// Images per step (the ssl trainer's default batch).
pub const BATCH: usize = 256;
/// MNIST's image shape.
const SHAPE: [usize; 3] = [1, 28, 28];

pub fn build() -> Result<Workload> {
    let dev = Device::Cpu;
    let cfg = SslConfig::default();
    let (ps, enc) = encoder(&cfg, SHAPE, &dev)?;
    let method_cfg = (crate::ssl::simclr::ENTRY.defaults)();
    let simclr = SimClr::new(&Spec {
        encoder: &enc,
        shape: SHAPE,
        params: &ps,
        config: &method_cfg,
        device: &dev,
    })?;
    let mut data_rng = Rng::new(0);
    let d: usize = SHAPE.iter().product();
    let x: Vec<f32> = (0..BATCH * d).map(|_| data_rng.uniform() as f32).collect();
    let mut rng = Rng::derive(cfg.seed, "ssl/train");
    let mut opt = AdamW::new(ps.vars(), Default::default())?;
    let flop = 3.0 * forward_flops(&cfg, &parse_config(&method_cfg)?);
    let lr = cfg.lr;
    Ok(Workload {
        params: ps.num_params(),
        flop_per_iter: flop,
        iter: Box::new(move || {
            let loss = simclr.loss(&x, BATCH, &mut rng)?;
            opt.step(&loss.backward()?, lr, 1.0)?;
            Ok(())
        }),
    })
}

/// Forward FLOPs of a step from the shapes: the four convolutions, the feature layer and the
/// head on both views (2 x 256 images), and the 512 x 512 similarity matrix.
fn forward_flops(cfg: &SslConfig, head: &Config) -> f64 {
    let n = 2 * BATCH;
    let [c, h, w] = SHAPE;
    let [c0, c1] = cfg.encoder.channels;
    let down = |s: usize| (s - 1) / 2 + 1; // a 3x3 convolution of stride 2, padding 1
    let (h1, w1) = (down(h), down(w));
    let (h2, w2) = (down(h1), down(w1));
    let [p0, p1] = head.projection;
    conv_flops(n, c, c0, 3, h * w)
        + conv_flops(n, c0, c0, 3, h1 * w1)
        + conv_flops(n, c0, c1, 3, h1 * w1)
        + conv_flops(n, c1, c1, 3, h2 * w2)
        + linear_flops(
            n,
            &[
                (c1 * h2 * w2, cfg.encoder.features),
                (cfg.encoder.features, p0),
                (p0, p1),
            ],
        )
        + 2.0 * (n * n * p1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_flops_match_hand_products() {
        // 512 images: convs 2·512·(784·1·32 + 196·32·32 + 196·32·64 + 49·64·64)·9
        // = 7,629,963,264; dense 2·512·(3136·128 + 128·128 + 128·64) = 436,207,616;
        // similarities 2·512·512·64 = 33,554,432.
        let f = forward_flops(&SslConfig::default(), &Config::default());
        assert_eq!(f, 7_629_963_264.0 + 436_207_616.0 + 33_554_432.0);
    }
}
