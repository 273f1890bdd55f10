//! The classifier of the active- and semi-supervised experiments: the CNN of Gal, Islam &
//! Ghahramani 2017 ("Deep Bayesian Active Learning with Image Data", arXiv:1703.02910,
//! section 5.1, following Keras's MNIST example):
//!
//! ```text
//! x [B, C, H, W]
//! -> relu(conv 4x4, 32, valid) -> relu(conv 4x4, 32, valid)     [B, 32, H-6, W-6]
//! -> max-pool 2                                                 [B, 32, (H-6)/2, (W-6)/2]
//!    (the deterministic "trunk", flattened)                     [B, T]
//! -> dropout(0.25) -> relu(dense 128) -> dropout(0.5)           features [B, 128]
//! -> dense K                                                    logits [B, K]
//! ```
//!
//! The dropout layers all follow the convolutions, so Monte Carlo dropout runs the trunk
//! once per image and only the dense layers once per sample ([`Net::trunk`],
//! [`Net::head`]): the same distribution as T full passes, at a fraction of the cost.
//! Max-pooling is genlab-nn's [`genlab_nn::max_pool2`] (candle's `max_pool2d` backward is
//! wrong). With both dropout rates 0 the network has no dropout, and the strategies that
//! need it refuse it ([`Net::has_dropout`]).

use candle_core::{Device, Tensor};
use genlab_core::{Error, ParamStore, Result, Rng};
use genlab_nn::{dropout, max_pool2, relu, Conv, Linear};
use serde::{Deserialize, Serialize};

/// Sizes and dropout rates of [`Net`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// Filters of both convolutions (32: Gal et al.).
    pub channels: usize,
    /// Side of both convolution kernels (4: Gal et al.).
    pub kernel: usize,
    /// Width of the dense layer (128: Gal et al.).
    pub hidden: usize,
    /// Dropout after the pooling (0.25: Gal et al.).
    pub dropout_conv: f64,
    /// Dropout after the dense layer (0.5: Gal et al.).
    pub dropout_fc: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            channels: 32,
            kernel: 4,
            hidden: 128,
            dropout_conv: 0.25,
            dropout_fc: 0.5,
        }
    }
}

/// See the module documentation. Parameters `conv.0`, `conv.1`, `fc`, `head`.
pub struct Net {
    pub cfg: NetConfig,
    pub params: ParamStore,
    convs: [Conv; 2],
    fc: Linear,
    head: Linear,
    classes: usize,
}

impl Net {
    /// A freshly initialised network (weights from `seed`) for inputs `[C, H, W]`.
    pub fn new(
        cfg: &NetConfig,
        input: &[usize],
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let [c, h, w] = input[..] else {
            return Err(Error::InvalidInput(format!(
                "the CNN needs [C, H, W] images, got {input:?}"
            )));
        };
        for (name, p) in [
            ("dropout_conv", cfg.dropout_conv),
            ("dropout_fc", cfg.dropout_fc),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::setting(
                    format!("model.{name}"),
                    format!("must be in [0, 1), got {p}"),
                ));
            }
        }
        let k = cfg.kernel;
        if k == 0 || cfg.channels == 0 || cfg.hidden == 0 || h < 2 * k || w < 2 * k {
            return Err(Error::setting(
                "model",
                format!(
                    "two {k}x{k} convolutions and a 2x2 pool need images of at least {s}x{s} \
                     and non-zero widths; got {h}x{w}, channels {}, hidden {}",
                    cfg.channels,
                    cfg.hidden,
                    s = 2 * k
                ),
            ));
        }
        let params = ParamStore::new(seed, device);
        let vb = params.vb();
        let ch = cfg.channels;
        let convs = [
            Conv::new(c, ch, k, 1, 0, vb.pp("conv.0"))?,
            Conv::new(ch, ch, k, 1, 0, vb.pp("conv.1"))?,
        ];
        let side = |s: usize| (s - 2 * (k - 1)) / 2;
        let trunk = ch * side(h) * side(w);
        let fc = Linear::new(trunk, cfg.hidden, vb.pp("fc"))?;
        let head = Linear::new(cfg.hidden, classes, vb.pp("head"))?;
        Ok(Self {
            cfg: cfg.clone(),
            params,
            convs,
            fc,
            head,
            classes,
        })
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Whether any dropout layer is active (MC dropout needs one).
    pub fn has_dropout(&self) -> bool {
        self.cfg.dropout_conv > 0.0 || self.cfg.dropout_fc > 0.0
    }

    /// Images in [0, 1] `[B, C, H, W]` -> the flattened pooled convolutions `[B, T]`.
    pub fn trunk(&self, x: &Tensor) -> Result<Tensor> {
        let h = relu(&self.convs[0].forward(x)?)?;
        let h = max_pool2(&relu(&self.convs[1].forward(&h)?)?)?;
        let b = h.dim(0)?;
        Ok(h.reshape((b, ()))?) // [B, C, H', W'] -> [B, T]
    }

    /// Trunk `[B, T]` -> (features `[B, hidden]`, logits `[B, K]`); dropout is applied when
    /// `rng` is given (training, or one Monte Carlo sample).
    pub fn head(&self, t: &Tensor, mut rng: Option<&mut Rng>) -> Result<(Tensor, Tensor)> {
        let mut h = t.clone();
        if let Some(r) = rng.as_deref_mut() {
            h = dropout(&h, self.cfg.dropout_conv, r)?;
        }
        let mut f = relu(&self.fc.forward(&h)?)?;
        if let Some(r) = rng {
            f = dropout(&f, self.cfg.dropout_fc, r)?;
        }
        let logits = self.head.forward(&f)?;
        Ok((f, logits))
    }

    /// Logits, with dropout when `rng` is given.
    pub fn forward(&self, x: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        Ok(self.head(&self.trunk(x)?, rng)?.1)
    }

    /// The deterministic dense-layer features `[B, hidden]` (core-set distances).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.head(&self.trunk(x)?, None)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gal_cnn_shapes_on_mnist_and_the_8x8_digits() {
        let dev = Device::Cpu;
        let net = Net::new(&NetConfig::default(), &[1, 28, 28], 10, 0, &dev).unwrap();
        let x = Rng::new(1)
            .uniform_tensor(0.0, 1.0, &[2, 1, 28, 28], &dev)
            .unwrap();
        // 28 -> 25 -> 22 -> pool 11: 32 * 11 * 11 = 3872 (Keras's MNIST CNN).
        assert_eq!(net.trunk(&x).unwrap().dims(), &[2, 3872]);
        assert_eq!(net.forward(&x, None).unwrap().dims(), &[2, 10]);
        let small = Net::new(&NetConfig::default(), &[1, 8, 8], 10, 0, &dev).unwrap();
        let x = Rng::new(1)
            .uniform_tensor(0.0, 1.0, &[3, 1, 8, 8], &dev)
            .unwrap();
        assert_eq!(small.trunk(&x).unwrap().dims(), &[3, 32]);
        assert!(Net::new(&NetConfig::default(), &[1, 6, 6], 10, 0, &dev).is_err());
    }

    #[test]
    fn without_rng_the_network_is_deterministic_and_with_it_mc_samples_differ() {
        let dev = Device::Cpu;
        let net = Net::new(&NetConfig::default(), &[1, 8, 8], 10, 0, &dev).unwrap();
        let x = Rng::new(1)
            .uniform_tensor(0.0, 1.0, &[3, 1, 8, 8], &dev)
            .unwrap();
        let v = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(
            v(net.forward(&x, None).unwrap()),
            v(net.forward(&x, None).unwrap())
        );
        let mut r = Rng::new(3);
        let a = v(net.forward(&x, Some(&mut r)).unwrap());
        let b = v(net.forward(&x, Some(&mut r)).unwrap());
        assert_ne!(a, b);
        assert!(net.has_dropout());
        let cfg = NetConfig {
            dropout_conv: 0.0,
            dropout_fc: 0.0,
            ..NetConfig::default()
        };
        assert!(!Net::new(&cfg, &[1, 8, 8], 10, 0, &dev)
            .unwrap()
            .has_dropout());
    }
}
