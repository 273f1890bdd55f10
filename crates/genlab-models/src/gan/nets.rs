//! The two players' networks.
//!
//! - Generators: an MLP (ReLU) for vectors; for images the DCGAN generator of Radford, Metz
//!   & Chintala 2016 (arXiv:1511.06434, Sec. 3 and Fig. 1) at MNIST scale: a projection of z
//!   to 2c x H/4 x W/4, two stride-2 transposed convolutions, tanh output. GroupNorm stands
//!   in for BatchNorm so that a sample does not depend on the rest of its batch.
//! - Critics/discriminators: an MLP or two stride-2 convolutions, leaky ReLU (slope 0.2),
//!   no normalisation (Gulrajani et al. 2017, Sec. 4: no batch norm in a penalised critic),
//!   and a linear score.
//! - EBGAN's discriminator (Zhao, Mathieu & LeCun 2017, arXiv:1609.03126, Sec. 2.3): an
//!   autoencoder whose energy is the mean squared reconstruction error.
//!
//! Critics return their input gradient as an explicit graph (a vector-Jacobian product
//! written with forward ops: transposed weights for dense layers, transposed convolutions
//! for convolutions). The gradient penalty is then an ordinary function of the weights and
//! needs only first-order backpropagation: genlab never depends on candle's
//! `CANDLE_GRAD_DO_NOT_DETACH` switch, which is read once per thread and would make every
//! other backward pass in the process keep its graph.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use genlab_core::Result;
use genlab_nn::{relu, Act, Conv, ConvTranspose, GroupNorm, Linear, Mlp};

use super::{GanConfig, GanLoss, GanNet};

/// GroupNorm groups in the DCGAN generator.
const GN_GROUPS: usize = 8;
/// Size of the EBGAN autoencoder's code for images.
const EBGAN_CODE: usize = 64;

fn conv_t(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    Ok(if x.device().is_cpu() && x.dtype() == DType::F32 {
        genlab_kernels::conv_transpose2d(x, w, None, stride, pad)?
    } else {
        x.conv_transpose2d(&w.contiguous()?, pad, 0, stride, 1)?
    })
}

fn lrelu(x: &Tensor) -> Result<Tensor> {
    Ok(Act::LeakyRelu.apply(x)?)
}

// One per model, built once: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Generator {
    Mlp {
        net: Mlp,
        shape: Vec<usize>,
        tanh: bool,
    },
    Dcgan {
        fc: Linear,
        gn0: GroupNorm,
        up1: ConvTranspose,
        gn1: GroupNorm,
        up2: ConvTranspose,
        start: [usize; 3],
    },
}

impl Generator {
    pub fn new(cfg: &GanConfig, vb: VarBuilder) -> Result<Self> {
        let d: usize = cfg.data.shape.iter().product();
        Ok(match &cfg.net {
            GanNet::Mlp { hidden } => {
                let mut sizes = vec![cfg.latent];
                sizes.extend(hidden);
                sizes.push(d);
                Generator::Mlp {
                    net: Mlp::new(&sizes, Act::Relu, vb.pp("mlp"))?,
                    shape: cfg.data.shape.clone(),
                    tanh: cfg.data.images,
                }
            }
            GanNet::Dcgan { channels: c, .. } => {
                let (ch, h, w) = (cfg.data.shape[0], cfg.data.shape[1], cfg.data.shape[2]);
                let start = [2 * c, h / 4, w / 4];
                Generator::Dcgan {
                    fc: Linear::new(cfg.latent, start.iter().product(), vb.pp("fc"))?,
                    gn0: GroupNorm::new(GN_GROUPS, 2 * c, 1e-5, true, vb.pp("gn0"))?,
                    up1: ConvTranspose::new(2 * c, *c, 4, 2, 1, vb.pp("up1"))?,
                    gn1: GroupNorm::new(GN_GROUPS, *c, 1e-5, true, vb.pp("gn1"))?,
                    up2: ConvTranspose::new(*c, ch, 4, 2, 1, vb.pp("up2"))?,
                    start,
                }
            }
        })
    }

    /// `[B, latent]` -> `[B, ...data shape]` in model space.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dim(0)?;
        Ok(match self {
            Generator::Mlp { net, shape, tanh } => {
                let mut s = vec![b];
                s.extend(shape);
                let x = net.forward(z)?.reshape(s)?;
                if *tanh {
                    x.tanh()?
                } else {
                    x
                }
            }
            Generator::Dcgan {
                fc,
                gn0,
                up1,
                gn1,
                up2,
                start,
            } => {
                let h = fc.forward(z)?.reshape((b, start[0], start[1], start[2]))?;
                let h = gn1.forward(&up1.forward(&gn0.forward(&h)?)?)?;
                up2.forward(&h)?.tanh()?
            }
        })
    }
}

/// A discriminator (logit) or critic (score): one number per example.
pub enum Critic {
    Mlp(Mlp),
    Dcgan {
        c1: Conv,
        c2: Conv,
        fc: Linear,
        minibatch_std: bool,
    },
}

/// Karras et al. 2018 (Sec. 3): the standard deviation of every feature over the batch,
/// averaged over features and positions, appended to `h` ([B, C, H, W]) as one more
/// constant channel: [B, C + 1, H, W]. (1e-8 under the square root keeps its gradient finite
/// for identical examples.)
pub fn append_minibatch_std(h: &Tensor) -> Result<Tensor> {
    let (b, _, hh, ww) = h.dims4()?;
    let centred = h.broadcast_sub(&h.mean_keepdim(0)?)?;
    let std = (centred.sqr()?.mean_keepdim(0)? + 1e-8)?.sqrt()?;
    let s = std.mean_all()?;
    let map = s
        .reshape((1, 1, 1, 1))?
        .broadcast_as((b, 1, hh, ww))?
        .contiguous()?;
    Ok(Tensor::cat(&[h, &map], 1)?)
}

/// What [`Critic::forward_trace`] keeps for [`Critic::input_grad`].
pub struct CriticTrace {
    pre: Vec<Tensor>,
    in_shape: Vec<usize>,
}

impl Critic {
    fn new(cfg: &GanConfig, vb: VarBuilder) -> Result<Self> {
        let d: usize = cfg.data.shape.iter().product();
        Ok(match &cfg.net {
            GanNet::Mlp { hidden } => {
                let mut sizes = vec![d];
                sizes.extend(hidden);
                sizes.push(1);
                Critic::Mlp(Mlp::new(&sizes, Act::LeakyRelu, vb.pp("mlp"))?)
            }
            GanNet::Dcgan {
                channels: c,
                minibatch_std,
            } => {
                let (ch, h, w) = (cfg.data.shape[0], cfg.data.shape[1], cfg.data.shape[2]);
                let feats = 2 * c + usize::from(*minibatch_std);
                Critic::Dcgan {
                    c1: Conv::new(ch, *c, 4, 2, 1, vb.pp("c1"))?,
                    c2: Conv::new(*c, 2 * c, 4, 2, 1, vb.pp("c2"))?,
                    fc: Linear::new(feats * (h / 4) * (w / 4), 1, vb.pp("fc"))?,
                    minibatch_std: *minibatch_std,
                }
            }
        })
    }

    /// Scores `[B]` and the trace for [`Critic::input_grad`].
    pub fn forward_trace(&self, x: &Tensor) -> Result<(Tensor, CriticTrace)> {
        let b = x.dim(0)?;
        let in_shape = x.dims().to_vec();
        let (out, pre) = match self {
            Critic::Mlp(m) => {
                let (o, pre) = m.forward_trace(&x.reshape((b, ()))?)?;
                (o, pre)
            }
            Critic::Dcgan {
                c1,
                c2,
                fc,
                minibatch_std,
            } => {
                let p1 = c1.forward(x)?;
                let p2 = c2.forward(&lrelu(&p1)?)?;
                let mut h2 = lrelu(&p2)?;
                if *minibatch_std {
                    h2 = append_minibatch_std(&h2)?;
                }
                let o = fc.forward(&h2.reshape((b, ()))?)?;
                (o, vec![p1, p2])
            }
        };
        Ok((out.reshape(b)?, CriticTrace { pre, in_shape }))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_trace(x)?.0)
    }

    /// d(score_i)/d(x_i) for every example, `[B, ...]` like the input, as a graph that is
    /// differentiable in the weights.
    pub fn input_grad(&self, t: &CriticTrace) -> Result<Tensor> {
        let b = t.in_shape[0];
        let g = match self {
            Critic::Mlp(m) => {
                let dev = t.pre[0].device();
                let ones = Tensor::ones((b, 1), DType::F32, dev)?;
                m.input_grad(&ones, &t.pre)?
            }
            Critic::Dcgan {
                minibatch_std: true,
                ..
            } => {
                return Err(genlab_core::Error::Config(
                    "the input gradient of a critic with the minibatch std feature is not \
                     per-example; use it without the gradient penalty"
                        .into(),
                ))
            }
            Critic::Dcgan { c1, c2, fc, .. } => {
                let (p1, p2) = (&t.pre[0], &t.pre[1]);
                // d score / d h2 = the dense layer's weight row, the same for every example.
                let g2 = fc
                    .weight()
                    .reshape((1, p2.dim(1)?, p2.dim(2)?, p2.dim(3)?))?
                    .broadcast_as(p2.dims())?;
                let g2 = (g2 * Act::LeakyRelu.grad(p2)?)?;
                let (s2, q2) = c2.stride_pad();
                let g1 = (conv_t(&g2, c2.weight(), s2, q2)? * Act::LeakyRelu.grad(p1)?)?;
                let (s1, q1) = c1.stride_pad();
                conv_t(&g1, c1.weight(), s1, q1)?
            }
        };
        Ok(g.reshape(t.in_shape.as_slice())?)
    }
}

/// EBGAN's autoencoder discriminator.
pub struct EnergyNet {
    enc: EnergyPart,
    dec: EnergyPart,
}

enum EnergyPart {
    Mlp(Mlp),
    ConvEnc {
        c1: Conv,
        c2: Conv,
        fc: Linear,
    },
    ConvDec {
        fc: Linear,
        up1: ConvTranspose,
        up2: ConvTranspose,
        start: [usize; 3],
    },
}

impl EnergyNet {
    fn new(cfg: &GanConfig, vb: VarBuilder) -> Result<Self> {
        let d: usize = cfg.data.shape.iter().product();
        Ok(match &cfg.net {
            GanNet::Mlp { hidden } => {
                let mut e = vec![d];
                e.extend(hidden);
                let mut g: Vec<usize> = hidden.iter().rev().cloned().collect();
                g.push(d);
                Self {
                    enc: EnergyPart::Mlp(Mlp::new(&e, Act::LeakyRelu, vb.pp("enc"))?),
                    dec: EnergyPart::Mlp(Mlp::new(&g, Act::LeakyRelu, vb.pp("dec"))?),
                }
            }
            GanNet::Dcgan { channels: c, .. } => {
                let (ch, h, w) = (cfg.data.shape[0], cfg.data.shape[1], cfg.data.shape[2]);
                let start = [2 * c, h / 4, w / 4];
                let flat: usize = start.iter().product();
                Self {
                    enc: EnergyPart::ConvEnc {
                        c1: Conv::new(ch, *c, 4, 2, 1, vb.pp("enc.c1"))?,
                        c2: Conv::new(*c, 2 * c, 4, 2, 1, vb.pp("enc.c2"))?,
                        fc: Linear::new(flat, EBGAN_CODE, vb.pp("enc.fc"))?,
                    },
                    dec: EnergyPart::ConvDec {
                        fc: Linear::new(EBGAN_CODE, flat, vb.pp("dec.fc"))?,
                        up1: ConvTranspose::new(2 * c, *c, 4, 2, 1, vb.pp("dec.up1"))?,
                        up2: ConvTranspose::new(*c, ch, 4, 2, 1, vb.pp("dec.up2"))?,
                        start,
                    },
                }
            }
        })
    }

    /// Energies `[B]` (mean squared reconstruction error per example) and codes `[B, k]`.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let b = x.dim(0)?;
        let code = match &self.enc {
            EnergyPart::Mlp(m) => m.forward(&x.reshape((b, ()))?)?,
            EnergyPart::ConvEnc { c1, c2, fc } => {
                let h = lrelu(&c2.forward(&lrelu(&c1.forward(x)?)?)?)?;
                fc.forward(&h.reshape((b, ()))?)?
            }
            _ => unreachable!("the encoder is built as an encoder"),
        };
        let h = lrelu(&code)?;
        let rec = match &self.dec {
            EnergyPart::Mlp(m) => m.forward(&h)?,
            EnergyPart::ConvDec {
                fc,
                up1,
                up2,
                start,
            } => {
                let h = relu(&fc.forward(&h)?)?.reshape((b, start[0], start[1], start[2]))?;
                up2.forward(&relu(&up1.forward(&h)?)?)?
            }
            _ => unreachable!("the decoder is built as a decoder"),
        };
        let diff = (rec.reshape((b, ()))? - x.reshape((b, ()))?)?;
        Ok((diff.sqr()?.mean(1)?, code))
    }
}

/// The second player.
#[allow(clippy::large_enum_variant)]
pub enum Discriminator {
    Critic(Critic),
    Energy(EnergyNet),
}

impl Discriminator {
    /// Variables under `disc` in `vb`.
    pub fn new(cfg: &GanConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let vb = vb.pp("disc");
        Ok(if cfg.loss == GanLoss::Ebgan {
            Discriminator::Energy(EnergyNet::new(cfg, vb)?)
        } else {
            Discriminator::Critic(Critic::new(cfg, vb)?)
        })
    }
}
