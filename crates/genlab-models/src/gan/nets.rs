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
//! - Class conditioning (`gan.num_classes > 0`): the generator concatenates a learned
//!   embedding of the label to z (the conditional GAN of Mirza & Osindero 2014,
//!   arXiv:1411.1784, with an embedding in place of the one-hot code); the critic is the
//!   projection discriminator of Miyato & Koyama 2018 (arXiv:1802.05637, Eq. 3):
//!   f(x, y) = psi(phi(x)) + <embed(y), phi(x)>, with phi(x) the features the linear score
//!   psi reads (the last hidden layer of the MLP, the flattened last feature map of the
//!   DCGAN critic) and one learned vector embed(y) per class.
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

/// The generator: its network and, for class-conditional GANs, the label embedding that is
/// concatenated to z.
pub struct Generator {
    net: GenNet,
    label_emb: Option<candle_nn::Embedding>,
}

// One per model, built once: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum GenNet {
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
        // The label embedding is as wide as z (a class gets as many inputs as the noise).
        let input = cfg.latent + if cfg.num_classes > 0 { cfg.latent } else { 0 };
        let net = match &cfg.net {
            GanNet::Mlp { hidden } => {
                let mut sizes = vec![input];
                sizes.extend(hidden);
                sizes.push(d);
                GenNet::Mlp {
                    net: Mlp::new(&sizes, Act::Relu, vb.pp("mlp"))?,
                    shape: cfg.data.shape.clone(),
                    tanh: cfg.data.images,
                }
            }
            GanNet::Dcgan { channels: c, .. } => {
                let (ch, h, w) = (cfg.data.shape[0], cfg.data.shape[1], cfg.data.shape[2]);
                let start = [2 * c, h / 4, w / 4];
                GenNet::Dcgan {
                    fc: Linear::new(input, start.iter().product(), vb.pp("fc"))?,
                    gn0: GroupNorm::new(GN_GROUPS, 2 * c, 1e-5, true, vb.pp("gn0"))?,
                    up1: ConvTranspose::new(2 * c, *c, 4, 2, 1, vb.pp("up1"))?,
                    gn1: GroupNorm::new(GN_GROUPS, *c, 1e-5, true, vb.pp("gn1"))?,
                    up2: ConvTranspose::new(*c, ch, 4, 2, 1, vb.pp("up2"))?,
                    start,
                }
            }
        };
        // Created after the network, so that an unconditional generator's weights are those
        // of a store that never had it. N(0, 1) entries, like z.
        let label_emb = if cfg.num_classes > 0 {
            Some(candle_nn::embedding(
                cfg.num_classes,
                cfg.latent,
                vb.pp("label_emb"),
            )?)
        } else {
            None
        };
        Ok(Self { net, label_emb })
    }

    /// `[B, latent]` (and, for a class-conditional generator, labels `[B]` u32 in
    /// 0..num_classes, checked by the caller) -> `[B, ...data shape]` in model space.
    pub fn forward(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let b = z.dim(0)?;
        let z = match (&self.label_emb, labels) {
            (Some(emb), Some(y)) => {
                // [B, latent] ++ [B, latent] -> [B, 2 latent]
                Tensor::cat(&[z, &candle_nn::Module::forward(emb, y)?], 1)?
            }
            (None, None) => z.clone(),
            (Some(_), None) => {
                return Err(genlab_core::Error::InvalidInput(
                    "this generator is class-conditional; it needs a label per example".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(genlab_core::Error::InvalidInput(
                    "this generator was built without class conditioning; it takes no label".into(),
                ))
            }
        };
        let z = &z;
        Ok(match &self.net {
            GenNet::Mlp { net, shape, tanh } => {
                let mut s = vec![b];
                s.extend(shape);
                let x = net.forward(z)?.reshape(s)?;
                if *tanh {
                    x.tanh()?
                } else {
                    x
                }
            }
            GenNet::Dcgan {
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

/// A discriminator (logit) or critic (score): one number per example; for class-conditional
/// GANs a projection discriminator (Miyato & Koyama 2018, Eq. 3).
pub struct Critic {
    net: CriticNet,
    /// The class embeddings of the projection term, `[num_classes, F]` (F = the size of
    /// phi(x)); `None` for unconditional critics.
    proj: Option<Tensor>,
}

enum CriticNet {
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
    /// embed(y) of every example, `[B, F]` (class-conditional critics).
    proj: Option<Tensor>,
}

/// The projection term <e_i, phi_i> per example: `phi` and `e` `[B, F]` -> `[B, 1]`.
pub fn projection(phi: &Tensor, e: &Tensor) -> Result<Tensor> {
    Ok((phi * e)?.sum_keepdim(1)?)
}

impl Critic {
    fn new(cfg: &GanConfig, vb: VarBuilder) -> Result<Self> {
        let d: usize = cfg.data.shape.iter().product();
        let (net, features) = match &cfg.net {
            GanNet::Mlp { hidden } => {
                let mut sizes = vec![d];
                sizes.extend(hidden);
                sizes.push(1);
                let f = *hidden.last().expect("validated: hidden is non-empty");
                (
                    CriticNet::Mlp(Mlp::new(&sizes, Act::LeakyRelu, vb.pp("mlp"))?),
                    f,
                )
            }
            GanNet::Dcgan {
                channels: c,
                minibatch_std,
            } => {
                let (ch, h, w) = (cfg.data.shape[0], cfg.data.shape[1], cfg.data.shape[2]);
                let feats = (2 * c + usize::from(*minibatch_std)) * (h / 4) * (w / 4);
                (
                    CriticNet::Dcgan {
                        c1: Conv::new(ch, *c, 4, 2, 1, vb.pp("c1"))?,
                        c2: Conv::new(*c, 2 * c, 4, 2, 1, vb.pp("c2"))?,
                        fc: Linear::new(feats, 1, vb.pp("fc"))?,
                        minibatch_std: *minibatch_std,
                    },
                    feats,
                )
            }
        };
        // After the network (an unconditional critic's weights stay those of a store that
        // never had it); N(0, 1/F): the scale of psi's weights, so that neither term
        // dominates the score at the start.
        let proj = if cfg.num_classes > 0 {
            Some(vb.get_with_hints(
                (cfg.num_classes, features),
                "proj.weight",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0 / (features as f64).sqrt(),
                },
            )?)
        } else {
            None
        };
        Ok(Self { net, proj })
    }

    /// Whether the critic takes class labels (a projection discriminator).
    pub fn is_conditional(&self) -> bool {
        self.proj.is_some()
    }

    /// embed(y) `[B, F]` for labels `[B]` u32 (checked by the caller); `None` for an
    /// unconditional critic.
    fn embed(&self, labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        match (&self.proj, labels) {
            (Some(p), Some(y)) => Ok(Some(p.index_select(y, 0)?)),
            (None, None) => Ok(None),
            (Some(_), None) => Err(genlab_core::Error::InvalidInput(
                "this discriminator is class-conditional; it needs a label per example".into(),
            )),
            (None, Some(_)) => Err(genlab_core::Error::InvalidInput(
                "this discriminator was built without class conditioning; it takes no label".into(),
            )),
        }
    }

    /// Scores `[B]` of examples `x` (with labels `[B]` for a class-conditional critic) and
    /// the trace for [`Critic::input_grad`].
    pub fn forward_trace(
        &self,
        x: &Tensor,
        labels: Option<&Tensor>,
    ) -> Result<(Tensor, CriticTrace)> {
        let b = x.dim(0)?;
        let in_shape = x.dims().to_vec();
        let e = self.embed(labels)?;
        let (out, pre) = match &self.net {
            CriticNet::Mlp(m) => {
                let (mut o, pre) = m.forward_trace(&x.reshape((b, ()))?)?;
                if let Some(e) = &e {
                    // phi(x): the last hidden layer's activations, [B, F].
                    let phi = Act::LeakyRelu
                        .apply(pre.last().expect("an MLP critic has hidden layers"))?;
                    o = (o + projection(&phi, e)?)?;
                }
                (o, pre)
            }
            CriticNet::Dcgan {
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
                // phi(x): [B, C', H/4, W/4] -> [B, F]
                let phi = h2.reshape((b, ()))?;
                let mut o = fc.forward(&phi)?;
                if let Some(e) = &e {
                    o = (o + projection(&phi, e)?)?;
                }
                (o, vec![p1, p2])
            }
        };
        Ok((
            out.reshape(b)?,
            CriticTrace {
                pre,
                in_shape,
                proj: e,
            },
        ))
    }

    pub fn forward(&self, x: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.forward_trace(x, labels)?.0)
    }

    /// d(score_i)/d(x_i) for every example, `[B, ...]` like the input, as a graph that is
    /// differentiable in the weights (and in the class embeddings).
    pub fn input_grad(&self, t: &CriticTrace) -> Result<Tensor> {
        let b = t.in_shape[0];
        let g = match (&self.net, &t.proj) {
            (CriticNet::Mlp(m), None) => {
                let dev = t.pre[0].device();
                let ones = Tensor::ones((b, 1), DType::F32, dev)?;
                m.input_grad(&ones, &t.pre)?
            }
            (CriticNet::Mlp(m), Some(e)) => {
                // d score / d phi = psi's weight row + embed(y), per example: [B, F].
                let layers = m.layers();
                let n = layers.len();
                let mut g = layers[n - 1].weight().broadcast_add(e)?;
                for i in (0..n - 1).rev() {
                    g = (g * Act::LeakyRelu.grad(&t.pre[i])?)?;
                    g = g.matmul(layers[i].weight())?; // [B, out] x [out, in]
                }
                g
            }
            (
                CriticNet::Dcgan {
                    minibatch_std: true,
                    ..
                },
                _,
            ) => {
                return Err(genlab_core::Error::Config(
                    "the input gradient of a critic with the minibatch std feature is not \
                     per-example; use it without the gradient penalty"
                        .into(),
                ))
            }
            (CriticNet::Dcgan { c1, c2, fc, .. }, e) => {
                let (p1, p2) = (&t.pre[0], &t.pre[1]);
                // d score / d h2 = the dense layer's weight row, the same for every example,
                // plus embed(y) for a projection discriminator.
                let dims = (p2.dim(1)?, p2.dim(2)?, p2.dim(3)?);
                let g2 = fc
                    .weight()
                    .reshape((1, dims.0, dims.1, dims.2))?
                    .broadcast_as(p2.dims())?;
                let g2 = match e {
                    // [B, F] -> [B, C', H/4, W/4]
                    Some(e) => (g2 + e.reshape((b, dims.0, dims.1, dims.2))?)?,
                    None => g2,
                };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataSpace;
    use candle_core::Device;
    use genlab_core::{ParamStore, Rng};

    /// f32 sums of a few hundred products against the f64 brute force.
    const PROJ_TOL: f64 = 1e-4;

    fn conditional_cfg(images: bool, classes: usize) -> GanConfig {
        let data = if images {
            DataSpace {
                shape: vec![1, 8, 8],
                images: true,
            }
        } else {
            DataSpace {
                shape: vec![3],
                images: false,
            }
        };
        let mut c = GanConfig::for_data(&data);
        c.net = if images {
            GanNet::Dcgan {
                channels: 8,
                minibatch_std: false,
            }
        } else {
            GanNet::Mlp {
                hidden: vec![16, 8],
            }
        };
        c.num_classes = classes;
        c.validate().unwrap();
        c
    }

    fn vec2(t: &Tensor) -> Vec<Vec<f64>> {
        t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn projection_discriminator_equals_psi_of_phi_plus_the_brute_force_inner_product() {
        for images in [false, true] {
            let cfg = conditional_cfg(images, 3);
            let ps = ParamStore::new(4, &Device::Cpu);
            let Discriminator::Critic(critic) = Discriminator::new(&cfg, ps.vb()).unwrap() else {
                panic!("non-saturating builds a logit discriminator")
            };
            let mut shape = vec![4];
            shape.extend(&cfg.data.shape);
            let x = Rng::new(1).normal_tensor(&shape, &Device::Cpu).unwrap();
            let labels = Tensor::new(&[2u32, 0, 1, 2], &Device::Cpu).unwrap();
            let out: Vec<f32> = critic
                .forward(&x, Some(&labels))
                .unwrap()
                .to_vec1()
                .unwrap();
            // phi(x) and psi's weights, read off the network; the score assembled in f64.
            let (phi, w, bias) = match &critic.net {
                CriticNet::Mlp(m) => {
                    let (_, pre) = m.forward_trace(&x).unwrap();
                    let last = m.layers().last().unwrap();
                    let phi: Vec<Vec<f64>> = vec2(pre.last().unwrap())
                        .into_iter()
                        .map(|r| {
                            r.into_iter()
                                .map(|v| if v > 0.0 { v } else { 0.2 * v })
                                .collect()
                        })
                        .collect();
                    (
                        phi,
                        vec2(last.weight()),
                        last.bias().to_vec1::<f32>().unwrap()[0],
                    )
                }
                CriticNet::Dcgan { c1, c2, fc, .. } => {
                    let h = lrelu(
                        &c2.forward(&lrelu(&c1.forward(&x).unwrap()).unwrap())
                            .unwrap(),
                    )
                    .unwrap();
                    let phi = vec2(&h.reshape((4, ())).unwrap());
                    (
                        phi,
                        vec2(fc.weight()),
                        fc.bias().to_vec1::<f32>().unwrap()[0],
                    )
                }
            };
            let emb = vec2(critic.proj.as_ref().unwrap());
            for (i, y) in [2usize, 0, 1, 2].into_iter().enumerate() {
                let mut want = bias as f64;
                for f in 0..phi[i].len() {
                    want += w[0][f] * phi[i][f] + emb[y][f] * phi[i][f];
                }
                let got = out[i] as f64;
                assert!(
                    (got - want).abs() < PROJ_TOL * (1.0 + want.abs()),
                    "images={images} example {i}: {got} vs {want}"
                );
            }
            // The same examples as another class differ by exactly the projection term.
            let other = Tensor::new(&[0u32, 0, 0, 0], &Device::Cpu).unwrap();
            let out0: Vec<f32> = critic.forward(&x, Some(&other)).unwrap().to_vec1().unwrap();
            for (i, y) in [2usize, 0, 1, 2].into_iter().enumerate() {
                let d: f64 = (0..phi[i].len())
                    .map(|f| (emb[y][f] - emb[0][f]) * phi[i][f])
                    .sum();
                let got = (out[i] - out0[i]) as f64;
                assert!((got - d).abs() < PROJ_TOL * (1.0 + d.abs()), "{got} vs {d}");
            }
            // A conditional critic needs labels; an unconditional one refuses them.
            assert!(critic.forward(&x, None).is_err());
            let mut plain = cfg.clone();
            plain.num_classes = 0;
            let Discriminator::Critic(u) =
                Discriminator::new(&plain, ParamStore::new(4, &Device::Cpu).vb()).unwrap()
            else {
                panic!()
            };
            assert!(!u.is_conditional() && critic.is_conditional());
            assert!(u.forward(&x, Some(&labels)).is_err());
        }
    }

    #[test]
    fn conditional_generator_reads_its_label_and_keeps_the_unconditional_weights_apart() {
        for images in [false, true] {
            let cfg = conditional_cfg(images, 4);
            let ps = ParamStore::new(2, &Device::Cpu);
            let g = Generator::new(&cfg, ps.vb()).unwrap();
            let z = Rng::new(3)
                .normal_tensor(&[2, cfg.latent], &Device::Cpu)
                .unwrap();
            let a = g
                .forward(&z, Some(&Tensor::new(&[0u32, 1], &Device::Cpu).unwrap()))
                .unwrap();
            let b = g
                .forward(&z, Some(&Tensor::new(&[3u32, 1], &Device::Cpu).unwrap()))
                .unwrap();
            let row = |t: &Tensor, i| -> Vec<f32> {
                t.get(i).unwrap().flatten_all().unwrap().to_vec1().unwrap()
            };
            assert_ne!(row(&a, 0), row(&b, 0), "the label changes the sample");
            assert_eq!(
                row(&a, 1),
                row(&b, 1),
                "the same label and z give the same sample"
            );
            assert!(g.forward(&z, None).is_err());
            let names: Vec<String> = ps.vars().into_iter().map(|(n, _)| n).collect();
            assert!(names.iter().any(|n| n == "label_emb.weight"), "{names:?}");
        }
    }
}
