//! Masked image modelling with a convolutional encoder: the image is cut into `patch` x
//! `patch` squares, a fraction `ratio` of them chosen at random per image is blanked (set
//! to 0), and a decoder ([`super::reconstruct`]) must give back the hidden pixels, the loss
//! counting the masked pixels only. The task of He et al. 2022 ("Masked Autoencoders Are
//! Scalable Vision Learners", arXiv:2111.06377: random patch masking, loss on the masked
//! patches, a light decoder) for an encoder that cannot drop tokens, so blanked patches stay
//! in its input as in Xie et al. 2022's SimMIM (arXiv:2111.09886) and Pathak et al. 2016's
//! context encoders (arXiv:1604.07379). Defaults for 28x28 digits: 4x4 patches (a 7x7 grid)
//! and half of them masked (MAE's 75% is for 196 patches of natural images; on digits it
//! leaves too little to infer the stroke from).

use candle_core::Tensor;
use genlab_core::{Error, Result, Rng};
use genlab_nn::Classifier;
use serde::{Deserialize, Serialize};

use super::reconstruct::{decoder_for, reconstruction_loss, Decoder};
use super::{parse_config, Method, MethodEntry, Spec};

pub const ENTRY: MethodEntry = MethodEntry {
    name: "masked",
    paper: "He et al. 2022, arXiv:2111.06377 (MAE); Xie et al. 2022, arXiv:2111.09886 (SimMIM)",
    description: "reconstruct randomly blanked patches of each image (masked autoencoder)",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build,
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Side of the square patches (the last row and column of patches may be narrower).
    pub patch: usize,
    /// Fraction of the patches masked (rounded, at least one, never all).
    pub ratio: f64,
    /// Width of the decoder's hidden layer.
    pub decoder_hidden: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            patch: 4,
            ratio: 0.5,
            decoder_hidden: 512,
        }
    }
}

/// The pixel mask `[H * W]` (1 = hidden) of `k` patches of side `p` chosen at random from
/// the `ceil(h/p) x ceil(w/p)` grid.
pub fn patch_mask(h: usize, w: usize, p: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let (gh, gw) = (h.div_ceil(p), w.div_ceil(p));
    let mut cells: Vec<usize> = (0..gh * gw).collect();
    rng.shuffle(&mut cells);
    let mut mask = vec![0f32; h * w];
    for &cell in &cells[..k.min(cells.len())] {
        let (r0, c0) = ((cell / gw) * p, (cell % gw) * p);
        for r in r0..(r0 + p).min(h) {
            for c in c0..(c0 + p).min(w) {
                mask[r * w + c] = 1.0;
            }
        }
    }
    mask
}

struct Masked<'a> {
    enc: &'a Classifier,
    dec: Decoder,
    patch: usize,
    /// Patches masked per image.
    k: usize,
    shape: [usize; 3],
    device: candle_core::Device,
}

fn build<'a>(s: &Spec<'a>) -> Result<Box<dyn Method + 'a>> {
    let cfg: Config = parse_config(s.config)?;
    let [_, h, w] = s.shape;
    if cfg.patch == 0 || cfg.patch > h.min(w) {
        return Err(Error::setting(
            "method.patch",
            format!(
                "must be between 1 and the image side {}, got {}",
                h.min(w),
                cfg.patch
            ),
        ));
    }
    if !(cfg.ratio > 0.0 && cfg.ratio < 1.0) {
        return Err(Error::setting(
            "method.ratio",
            format!("the masked fraction must be in (0, 1), got {}", cfg.ratio),
        ));
    }
    let cells = h.div_ceil(cfg.patch) * w.div_ceil(cfg.patch);
    if cells < 2 {
        return Err(Error::setting(
            "method.patch",
            "one patch covers the whole image: nothing would stay visible",
        ));
    }
    let k = ((cfg.ratio * cells as f64).round() as usize).clamp(1, cells - 1);
    let dec = decoder_for(s, cfg.decoder_hidden)?;
    Ok(Box::new(Masked {
        enc: s.encoder,
        dec,
        patch: cfg.patch,
        k,
        shape: s.shape,
        device: s.device.clone(),
    }))
}

impl Method for Masked<'_> {
    fn loss(&self, x: &[f32], b: usize, rng: &mut Rng) -> Result<Tensor> {
        let [c, h, w] = self.shape;
        let d = c * h * w;
        let mut input = x.to_vec();
        let mut weight = vec![0f32; b * d];
        for (ex, wt) in input.chunks_exact_mut(d).zip(weight.chunks_exact_mut(d)) {
            // One spatial mask for all channels of an image.
            let m = patch_mask(h, w, self.patch, self.k, rng);
            for ch in 0..c {
                for (j, &hidden) in m.iter().enumerate() {
                    if hidden > 0.0 {
                        ex[ch * h * w + j] = 0.0;
                        wt[ch * h * w + j] = 1.0;
                    }
                }
            }
        }
        reconstruction_loss(
            self.enc,
            &self.dec,
            input,
            x,
            Some(weight),
            b,
            self.shape,
            &self.device,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_covers_whole_patches_and_the_edge_patches_are_clipped() {
        let mut rng = Rng::new(1);
        // 28x28 with 4x4 patches: 49 cells of 16 pixels.
        for k in [1, 24, 48] {
            let m = patch_mask(28, 28, 4, k, &mut rng);
            assert_eq!(m.iter().filter(|&&v| v > 0.0).count(), 16 * k);
            // Every 4x4 cell is all masked or all visible.
            for r in 0..7 {
                for c in 0..7 {
                    let s: f32 = (0..16)
                        .map(|i| m[(4 * r + i / 4) * 28 + 4 * c + i % 4])
                        .sum();
                    assert!(s == 0.0 || s == 16.0);
                }
            }
        }
        // 8x8 with 3x3 patches: a 3x3 grid whose last row and column are 2 wide; all 9
        // cells cover the image exactly once.
        let m = patch_mask(8, 8, 3, 9, &mut rng);
        assert!(m.iter().all(|&v| v == 1.0));
    }
}
