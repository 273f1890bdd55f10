//! Denoising autoencoder (Vincent, Larochelle, Bengio & Manzagol 2008, "Extracting and
//! Composing Robust Features with Denoising Autoencoders", ICML; Vincent et al. 2010,
//! JMLR 11): the encoder sees a corrupted image and a decoder ([`super::reconstruct`])
//! must give back the clean one. Corruption is the paper's masking noise (section 2.3: a
//! fraction `drop` of the pixels, chosen at random per image, set to 0), optionally with
//! additive Gaussian noise (Vincent et al. 2010, section 4.2) clamped to [0, 1]; the loss is
//! the Bernoulli cross-entropy over every pixel.

use candle_core::Tensor;
use genlab_core::{Error, Result, Rng};
use genlab_nn::Classifier;
use serde::{Deserialize, Serialize};

use super::reconstruct::{decoder_for, reconstruction_loss, Decoder};
use super::{parse_config, Method, MethodEntry, Spec};

pub const ENTRY: MethodEntry = MethodEntry {
    name: "dae",
    paper: "Vincent, Larochelle, Bengio & Manzagol 2008 (ICML)",
    description:
        "reconstruct each clean image from a copy with pixels dropped (denoising autoencoder)",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build,
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Fraction of pixels set to 0 (0.25: within the 10-40% of the paper's figures).
    pub drop: f64,
    /// Standard deviation of additive Gaussian noise (0: masking noise alone).
    pub gaussian: f64,
    /// Width of the decoder's hidden layer.
    pub decoder_hidden: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            drop: 0.25,
            gaussian: 0.0,
            decoder_hidden: 512,
        }
    }
}

/// Corrupts one image in place: each pixel dropped with probability `drop`, then Gaussian
/// noise of std `gaussian` added and the result clamped to [0, 1].
pub fn corrupt(x: &mut [f32], drop: f64, gaussian: f64, rng: &mut Rng) {
    for v in x.iter_mut() {
        if rng.uniform() < drop {
            *v = 0.0;
        }
        if gaussian > 0.0 {
            *v = (*v + (gaussian * rng.normal()) as f32).clamp(0.0, 1.0);
        }
    }
}

struct Dae<'a> {
    enc: &'a Classifier,
    dec: Decoder,
    cfg: Config,
    shape: [usize; 3],
    device: candle_core::Device,
}

fn build<'a>(s: &Spec<'a>) -> Result<Box<dyn Method + 'a>> {
    let cfg: Config = parse_config(s.config)?;
    if !((0.0..1.0).contains(&cfg.drop) && cfg.gaussian >= 0.0 && cfg.gaussian.is_finite()) {
        return Err(Error::setting(
            "method.drop",
            format!(
                "drop must be in [0, 1) and gaussian >= 0, got {} and {}",
                cfg.drop, cfg.gaussian
            ),
        ));
    }
    if cfg.drop == 0.0 && cfg.gaussian == 0.0 {
        return Err(Error::setting(
            "method.drop",
            "with neither dropped pixels nor Gaussian noise there is nothing to denoise",
        ));
    }
    let dec = decoder_for(s, cfg.decoder_hidden)?;
    Ok(Box::new(Dae {
        enc: s.encoder,
        dec,
        cfg,
        shape: s.shape,
        device: s.device.clone(),
    }))
}

impl Method for Dae<'_> {
    fn loss(&self, x: &[f32], b: usize, rng: &mut Rng) -> Result<Tensor> {
        let d: usize = self.shape.iter().product();
        let mut noisy = x.to_vec();
        for ex in noisy.chunks_exact_mut(d) {
            corrupt(ex, self.cfg.drop, self.cfg.gaussian, rng);
        }
        reconstruction_loss(
            self.enc,
            &self.dec,
            noisy,
            x,
            None,
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
    fn corruption_drops_about_the_asked_fraction_and_stays_in_range() {
        let mut rng = Rng::new(3);
        let mut x = vec![0.5f32; 20_000];
        corrupt(&mut x, 0.25, 0.0, &mut rng);
        let dropped = x.iter().filter(|&&v| v == 0.0).count() as f64 / x.len() as f64;
        // Binomial(20000, 0.25): std 0.0031; 5 std.
        assert!((dropped - 0.25).abs() < 0.016, "{dropped}");
        assert!(x.iter().all(|&v| v == 0.0 || v == 0.5));
        let mut y = vec![0.5f32; 20_000];
        corrupt(&mut y, 0.0, 0.3, &mut rng);
        assert!(y.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
        // Symmetric noise clamped symmetrically around 0.5 keeps the mean.
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
