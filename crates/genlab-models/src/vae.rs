//! Variational autoencoder, with the importance-weighted likelihood bound.
//!
//! Kingma & Welling 2014, "Auto-Encoding Variational Bayes", arXiv:1312.6114:
//! - encoder q(z|x) = N(mu(x), diag(sigma^2(x))), prior p(z) = N(0, I);
//! - reparameterisation (Sec. 2.4): z = mu + sigma * eps, eps ~ N(0, I);
//! - ELBO (Eq. 3 and 10): L(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)), with the closed-form
//!   Gaussian KL of Appendix B: KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2);
//! - decoders (App. C): Bernoulli (logits l: log p(x|z) = sum x l - softplus(l)) or Gaussian
//!   (mean and log-variance per dimension).
//!
//! The loss is -E_q[log p(x|z)] + beta KL (beta-VAE, Higgins et al. 2017; beta = 1 is the
//! ELBO), one reparameterised sample per example.
//!
//! Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders", arXiv:1509.00519,
//! Eq. 8: L_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x), with
//! ELBO = L_1 <= L_k <= log p(x): the test log-likelihood genlab reports (k = 5000 as in
//! their Table 1), always labelled a lower bound.
//!
//! A class-conditional variant (Kingma et al. 2014, "Semi-Supervised Learning with Deep
//! Generative Models", arXiv:1406.5298, model M2 with observed labels) feeds a one-hot label
//! to both the encoder and the decoder.

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};
use genlab_nn::{relu, softplus, Act, Conv, ConvTranspose, Mlp};

use crate::likelihood::LogLikelihoodResult;
use crate::likelihood::{log_mean_exp, LikelihoodKind, LikelihoodOptions, LogLikelihood};
use crate::sample::{DataSpace, Sample, SampleRequest, SampleResult};
use crate::Figure;

const LN_2PI: f64 = 1.837_877_066_409_345_5;
/// The encoder's and the MLP decoder's last layers start with weights of std
/// HEAD_GAIN / sqrt(fan_in): q(z|x) starts near the prior and p(x|z) near a unit Gaussian.
/// With the usual ReLU-gain init, the first encoder log-variances reached 18 (sigma ~ 8000)
/// and the first ELBO on eight gaussians was -inf.
const HEAD_GAIN: f64 = 0.1;

/// Encoder and decoder networks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum VaeNet {
    /// MLPs with these hidden widths (the decoder mirrors them), ReLU between layers.
    Mlp { hidden: Vec<usize> },
    /// Stride-2 4x4 convolutions with these channels, then a dense layer of `hidden` units;
    /// the decoder mirrors it with transposed convolutions. Images only, sides divisible by
    /// 2^(number of convolutions).
    Conv { channels: Vec<usize>, hidden: usize },
}

/// The decoder's distribution p(x|z).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Likelihood {
    /// Independent Bernoulli pixels (data in [0, 1], binarised by `binarize`).
    Bernoulli,
    /// Independent Gaussians with a predicted mean and log-variance per dimension.
    Gaussian,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    /// Dimension of z.
    pub latent: usize,
    pub net: VaeNet,
    pub likelihood: Likelihood,
    /// Weight of the KL term (1 = the ELBO; beta-VAE otherwise).
    pub beta: f64,
    /// Number of classes for the class-conditional variant; 0 = unconditional.
    pub num_classes: usize,
    /// Inputs are binarised at this threshold (x > t) before the Bernoulli likelihood;
    /// `null` uses them as they are (they must then be in [0, 1]).
    pub binarize: Option<f64>,
    pub data: DataSpace,
}

impl VaeConfig {
    /// Presets: a Gaussian decoder for points, a Bernoulli MLP VAE on binarised images.
    pub fn for_data(data: &DataSpace) -> Self {
        if data.images {
            Self {
                latent: 32, // Burda et al. use 50; 32 reaches the same NLL range on MNIST
                net: VaeNet::Mlp {
                    hidden: vec![512, 256],
                },
                likelihood: Likelihood::Bernoulli,
                beta: 1.0,
                num_classes: 0,
                binarize: Some(0.5), // the binarised MNIST (threshold at 0.5)
                data: data.clone(),
            }
        } else {
            Self {
                latent: 2,
                net: VaeNet::Mlp {
                    hidden: vec![256, 256, 256],
                },
                likelihood: Likelihood::Gaussian,
                beta: 1.0,
                num_classes: 0,
                binarize: None,
                data: data.clone(),
            }
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.latent == 0 {
            return bad("vae.latent must be at least 1 (the size of z), got 0".into());
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return bad(format!(
                "vae.beta must be finite and >= 0, got {}",
                self.beta
            ));
        }
        if self.data.shape.is_empty() || self.data.shape.contains(&0) {
            return bad(format!("vae: empty data shape {:?}", self.data.shape));
        }
        if self.likelihood == Likelihood::Bernoulli && !self.data.images && self.binarize.is_none()
        {
            return bad(
                "vae.likelihood = bernoulli needs data in [0, 1] (images) or vae.binarize set; \
                 use likelihood = gaussian for points"
                    .into(),
            );
        }
        if let Some(t) = self.binarize {
            if !(0.0..1.0).contains(&t) {
                return bad(format!("vae.binarize must be in [0, 1), got {t}"));
            }
        }
        match &self.net {
            VaeNet::Mlp { hidden } => {
                if hidden.contains(&0) {
                    return bad(format!(
                        "vae.net.mlp.hidden sizes must be positive, got {hidden:?}"
                    ));
                }
            }
            VaeNet::Conv { channels, hidden } => {
                if !self.data.images || self.data.shape.len() != 3 {
                    return bad(format!(
                        "the conv VAE is for images [C, H, W], the data have shape {:?}; use net = mlp",
                        self.data.shape
                    ));
                }
                let f = 1usize << channels.len();
                let (h, w) = (self.data.shape[1], self.data.shape[2]);
                if channels.is_empty() || channels.contains(&0) || *hidden == 0 {
                    return bad(format!(
                        "vae.net.conv needs positive channels and hidden size, got {channels:?}, {hidden}"
                    ));
                }
                if h % f != 0 || w % f != 0 {
                    return bad(format!(
                        "{} stride-2 convolutions need image sides divisible by {f}, got {h}x{w}",
                        channels.len()
                    ));
                }
            }
        }
        Ok(())
    }

    fn dim(&self) -> usize {
        self.data.shape.iter().product()
    }

    /// Decoder outputs per data dimension (logit, or mean and log-variance).
    fn outs(&self) -> usize {
        match self.likelihood {
            Likelihood::Bernoulli => 1,
            Likelihood::Gaussian => 2,
        }
    }
}

enum Encoder {
    Mlp(Mlp),
    Conv { convs: Vec<Conv>, fc: Mlp },
}

enum Decoder {
    Mlp(Mlp),
    Conv {
        fc: Mlp,
        deconvs: Vec<ConvTranspose>,
        start: [usize; 3],
    },
}

pub struct Vae {
    cfg: VaeConfig,
    enc: Encoder,
    dec: Decoder,
    device: Device,
}

/// Per-example terms of the ELBO on a batch (nats).
pub struct ElboTerms {
    /// The training loss: mean of -log p(x|z) + beta KL.
    pub loss: Tensor,
    /// Mean ELBO (log p(x|z) - KL), mean reconstruction log-likelihood and mean KL.
    pub elbo: f64,
    pub rec: f64,
    pub kl: f64,
}

impl Vae {
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let device = vb.device().clone();
        let (l, nc, d, outs) = (cfg.latent, cfg.num_classes, cfg.dim(), cfg.outs());
        let (enc, dec) = match &cfg.net {
            VaeNet::Mlp { hidden } => {
                let mut e = vec![d + nc];
                e.extend(hidden);
                e.push(2 * l);
                let mut g = vec![l + nc];
                g.extend(hidden.iter().rev());
                g.push(outs * d);
                (
                    Encoder::Mlp(Mlp::with_small_head(
                        &e,
                        Act::Relu,
                        HEAD_GAIN,
                        vb.pp("enc"),
                    )?),
                    Decoder::Mlp(Mlp::with_small_head(
                        &g,
                        Act::Relu,
                        HEAD_GAIN,
                        vb.pp("dec"),
                    )?),
                )
            }
            VaeNet::Conv { channels, hidden } => {
                let c = cfg.data.shape[0];
                let f = 1 << channels.len();
                let (h, w) = (cfg.data.shape[1] / f, cfg.data.shape[2] / f);
                let last = *channels.last().expect("validated non-empty");
                let mut convs = Vec::new();
                let mut c_in = c;
                for (i, &ch) in channels.iter().enumerate() {
                    convs.push(Conv::new(c_in, ch, 4, 2, 1, vb.pp(format!("enc.conv{i}")))?);
                    c_in = ch;
                }
                let fc = Mlp::with_small_head(
                    &[last * h * w + nc, *hidden, 2 * l],
                    Act::Relu,
                    HEAD_GAIN,
                    vb.pp("enc.fc"),
                )?;
                let dfc = Mlp::new(&[l + nc, *hidden, last * h * w], Act::Relu, vb.pp("dec.fc"))?;
                let mut deconvs = Vec::new();
                let n = channels.len();
                for i in (0..n).rev() {
                    let c_out = if i == 0 { outs * c } else { channels[i - 1] };
                    deconvs.push(ConvTranspose::new(
                        channels[i],
                        c_out,
                        4,
                        2,
                        1,
                        vb.pp(format!("dec.deconv{}", n - 1 - i)),
                    )?);
                }
                (
                    Encoder::Conv { convs, fc },
                    Decoder::Conv {
                        fc: dfc,
                        deconvs,
                        start: [last, h, w],
                    },
                )
            }
        };
        Ok(Self {
            cfg: cfg.clone(),
            enc,
            dec,
            device,
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// The data as the likelihood sees them: binarised if configured, shape checked.
    pub fn prepare(&self, x: &Tensor) -> Result<Tensor> {
        self.cfg.data.check_batch(x, "the VAE")?;
        Ok(match self.cfg.binarize {
            Some(t) => x.gt(t)?.to_dtype(DType::F32)?,
            None => x.clone(),
        })
    }

    fn one_hot(&self, labels: Option<&Tensor>, n: usize) -> Result<Option<Tensor>> {
        let nc = self.cfg.num_classes;
        if nc == 0 {
            return Ok(None);
        }
        let labels = labels.ok_or_else(|| {
            Error::InvalidInput(format!(
                "this VAE is class-conditional ({nc} classes) but the data have no labels"
            ))
        })?;
        let y: Vec<u32> = labels.to_dtype(DType::U32)?.to_vec1()?;
        if y.len() != n {
            return Err(Error::InvalidInput(format!(
                "{} labels for {n} examples",
                y.len()
            )));
        }
        let mut v = vec![0f32; n * nc];
        for (i, &c) in y.iter().enumerate() {
            if c as usize >= nc {
                return Err(Error::InvalidInput(format!(
                    "label {c} is outside the model's {nc} classes"
                )));
            }
            v[i * nc + c as usize] = 1.0;
        }
        Ok(Some(Tensor::from_vec(v, (n, nc), &self.device)?))
    }

    fn cat_label(h: Tensor, y: &Option<Tensor>) -> Result<Tensor> {
        Ok(match y {
            Some(y) => Tensor::cat(&[&h, y], 1)?,
            None => h,
        })
    }

    /// q(z|x): `(mu, log sigma^2)`, each `[B, latent]`; `x` already prepared.
    pub fn encode(&self, x: &Tensor, y: &Option<Tensor>) -> Result<(Tensor, Tensor)> {
        let b = x.dim(0)?;
        let out = match &self.enc {
            Encoder::Mlp(m) => m.forward(&Self::cat_label(x.reshape((b, ()))?, y)?)?,
            Encoder::Conv { convs, fc } => {
                let mut h = x.clone();
                for c in convs {
                    h = relu(&c.forward(&h)?)?;
                }
                fc.forward(&Self::cat_label(h.reshape((b, ()))?, y)?)?
            }
        };
        let l = self.cfg.latent;
        Ok((out.narrow(1, 0, l)?, out.narrow(1, l, l)?))
    }

    /// p(x|z) parameters as `[B, outs, D]` (logits, or mean and log-variance).
    pub fn decode(&self, z: &Tensor, y: &Option<Tensor>) -> Result<Tensor> {
        let b = z.dim(0)?;
        let zin = Self::cat_label(z.clone(), y)?;
        let out = match &self.dec {
            Decoder::Mlp(m) => m.forward(&zin)?,
            Decoder::Conv { fc, deconvs, start } => {
                let mut h = relu(&fc.forward(&zin)?)?.reshape((b, start[0], start[1], start[2]))?;
                for (i, d) in deconvs.iter().enumerate() {
                    h = d.forward(&h)?;
                    if i + 1 < deconvs.len() {
                        h = relu(&h)?;
                    }
                }
                h
            }
        };
        Ok(out.reshape((b, self.cfg.outs(), self.cfg.dim()))?)
    }

    /// log p(x|z) per example `[B]`: `x` prepared `[B, ...]`, `params` from [`Vae::decode`]
    /// (its rows may be a multiple of x's: each x row then repeats over consecutive rows).
    pub fn log_px(&self, x: &Tensor, params: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let x = x.reshape((b, 1, self.cfg.dim()))?;
        let rows = params.dim(0)?;
        let k = rows / b;
        let p = params.reshape((b, k, self.cfg.outs(), self.cfg.dim()))?;
        let first = p.narrow(2, 0, 1)?.squeeze(2)?; // [B, k, D]
        let lp = match self.cfg.likelihood {
            Likelihood::Bernoulli => (first.broadcast_mul(&x)? - softplus(&first)?)?,
            Likelihood::Gaussian => {
                let lv = p.narrow(2, 1, 1)?.squeeze(2)?;
                let r2 = first.broadcast_sub(&x)?.sqr()?;
                ((lv.clone() + LN_2PI)? + (r2 * lv.neg()?.exp()?)?)? * -0.5
            }?,
        };
        Ok(lp.sum(D::Minus1)?.reshape(rows)?)
    }

    /// The ELBO terms on a batch with one reparameterised sample per example.
    pub fn elbo(&self, x: &Tensor, labels: Option<&Tensor>, rng: &mut Rng) -> Result<ElboTerms> {
        let x = self.prepare(x)?;
        let b = x.dim(0)?;
        let y = self.one_hot(labels, b)?;
        let (mu, lv) = self.encode(&x, &y)?;
        let eps = rng.normal_tensor(&[b, self.cfg.latent], &self.device)?;
        let z = (&mu + (lv.affine(0.5, 0.0)?.exp()? * eps)?)?;
        let rec = self.log_px(&x, &self.decode(&z, &y)?)?;
        let kl = ((mu.sqr()? + lv.exp()?)? - (lv + 1.0)?)?.sum(1)? * 0.5;
        let kl = kl?;
        let loss = (kl.affine(self.cfg.beta, 0.0)? - &rec)?.mean_all()?;
        let rec_m = rec.mean_all()?.to_scalar::<f32>()? as f64;
        let kl_m = kl.mean_all()?.to_scalar::<f32>()? as f64;
        Ok(ElboTerms {
            loss,
            elbo: rec_m - kl_m,
            rec: rec_m,
            kl: kl_m,
        })
    }

    /// Log importance weights log p(x, z_i) - log q(z_i|x) for `k` draws per example of the
    /// prepared `x` `[B, ...]`: a `[B, k]` host matrix (row-major).
    pub fn log_weights(
        &self,
        x: &Tensor,
        y: &Option<Tensor>,
        k: usize,
        rng: &mut Rng,
    ) -> Result<Vec<f64>> {
        let b = x.dim(0)?;
        let l = self.cfg.latent;
        let (mu, lv) = self.encode(x, y)?;
        let (mu, lv) = (mu.detach(), lv.detach());
        let eps = rng.normal_tensor(&[b, k, l], &self.device)?;
        let sigma = lv.affine(0.5, 0.0)?.exp()?.unsqueeze(1)?;
        let z = mu
            .unsqueeze(1)?
            .broadcast_add(&eps.broadcast_mul(&sigma)?)?; // [B, k, L]
        let zf = z.reshape((b * k, l))?;
        let yk = match y {
            Some(y) => Some(
                y.unsqueeze(1)?
                    .broadcast_as((b, k, self.cfg.num_classes))?
                    .reshape((b * k, self.cfg.num_classes))?,
            ),
            None => None,
        };
        let lpx = self.log_px(x, &self.decode(&zf, &yk)?.detach())?; // [B*k]
                                                                     // log N(z; 0, I) - log N(z; mu, sigma^2) = -1/2 sum (z^2 - eps^2 - log sigma^2)
        let lv_sum = lv.sum(1)?.unsqueeze(1)?; // [B, 1]
        let diff = ((z.sqr()? - eps.sqr()?)?.sum(2)?.broadcast_sub(&lv_sum)? * -0.5)?; // [B, k]
        let lw = (lpx.reshape((b, k))? + diff)?.detach();
        Ok(lw
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|v| v as f64)
            .collect())
    }

    /// `n` samples; class-conditional models draw `labels` (`[n]`), or the classes in turn
    /// from `offset` when none are given.
    fn sample_batch(
        &self,
        n: usize,
        offset: usize,
        labels: Option<&Tensor>,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let z = rng.normal_tensor(&[n, self.cfg.latent], &self.device)?;
        let y = match labels {
            Some(l) => {
                self.check_labels(l)?;
                self.one_hot(Some(&l.to_device(&self.device)?), n)?
            }
            None => self.cycle_labels(n, offset)?,
        };
        let p = self.decode(&z, &y)?.detach();
        let first = p.narrow(1, 0, 1)?.squeeze(1)?;
        let x = match self.cfg.likelihood {
            // The Bernoulli mean: the usual picture of a binary VAE's samples.
            Likelihood::Bernoulli => candle_nn::ops::sigmoid(&first)?,
            Likelihood::Gaussian if self.cfg.data.images => first.clamp(0f32, 1f32)?,
            Likelihood::Gaussian => {
                // Points: a draw from p(x|z), the model's actual distribution.
                let lv = p.narrow(1, 1, 1)?.squeeze(1)?;
                let e = rng.normal_tensor(first.dims(), &self.device)?;
                (first + (lv.affine(0.5, 0.0)?.exp()? * e)?)?
            }
        };
        let mut shape = vec![n];
        shape.extend(&self.cfg.data.shape);
        Ok(x.reshape(shape)?)
    }

    /// Errors unless every label names one of the model's classes.
    fn check_labels(&self, labels: &Tensor) -> Result<()> {
        let nc = self.cfg.num_classes as u32;
        let v: Vec<u32> = labels.to_dtype(candle_core::DType::U32)?.to_vec1()?;
        match v.iter().find(|&&l| l >= nc) {
            Some(bad) => Err(Error::setting(
                "class",
                format!(
                    "{bad} is outside the model's classes 0..{}",
                    nc.saturating_sub(1)
                ),
            )),
            None => Ok(()),
        }
    }

    /// Labels 0, 1, ..., C-1, 0, ... starting at `offset` (class-conditional sampling).
    fn cycle_labels(&self, n: usize, offset: usize) -> Result<Option<Tensor>> {
        let nc = self.cfg.num_classes;
        if nc == 0 {
            return Ok(None);
        }
        let l: Vec<u32> = (0..n).map(|i| ((offset + i) % nc) as u32).collect();
        self.one_hot(Some(&Tensor::new(l, &self.device)?), n)
    }

    /// Reconstructions next to inputs, a latent interpolation strip, and (for a 2-D latent
    /// with labels) the latent means coloured by class, from real examples `x`.
    pub fn figures(&self, x: &Tensor, labels: Option<&Tensor>) -> Result<Vec<Figure>> {
        let mut figs = Vec::new();
        let n = x.dim(0)?;
        let xp = self.prepare(x)?;
        let y = self.one_hot(labels, n)?;
        let (mu, _) = self.encode(&xp, &y)?;
        let mu = mu.detach();
        let mean_image = |p: Tensor| -> Result<Tensor> {
            let first = p.narrow(1, 0, 1)?.squeeze(1)?;
            let img = match self.cfg.likelihood {
                Likelihood::Bernoulli => candle_nn::ops::sigmoid(&first)?,
                Likelihood::Gaussian => first.clamp(0f32, 1f32)?,
            };
            let mut shape = vec![p.dim(0)?];
            shape.extend(&self.cfg.data.shape);
            Ok(img.reshape(shape)?.to_device(&Device::Cpu)?)
        };
        if self.cfg.data.images && n >= 16 {
            let m = n.min(32) / 8 * 8;
            let rec = mean_image(
                self.decode(&mu.narrow(0, 0, m)?, &slice(&y, 0, m)?)?
                    .detach(),
            )?;
            let inp = xp.narrow(0, 0, m)?.to_device(&Device::Cpu)?;
            let mut rows = Vec::new();
            for r in 0..m / 8 {
                rows.push(inp.narrow(0, 8 * r, 8)?);
                rows.push(rec.narrow(0, 8 * r, 8)?);
            }
            figs.push(Figure::Images {
                name: "reconstructions".into(),
                x: Tensor::cat(&rows, 0)?,
                ncol: 8,
                caption: "odd rows: inputs (as the likelihood sees them); even rows: \
                          reconstructions from the posterior mean"
                    .into(),
            });
            let pairs = (n / 2).min(8);
            let steps = 10;
            let mut strip = Vec::new();
            for p in 0..pairs {
                let (a, b) = (mu.get(2 * p)?, mu.get(2 * p + 1)?);
                let ts: Vec<f32> = (0..steps).map(|i| i as f32 / (steps - 1) as f32).collect();
                let t = Tensor::new(ts, &self.device)?.unsqueeze(1)?;
                let z = (a.unsqueeze(0)?.broadcast_mul(&(1.0 - &t)?)?
                    + b.unsqueeze(0)?.broadcast_mul(&t)?)?;
                let yy = match &y {
                    Some(y) => Some(y.get(2 * p)?.unsqueeze(0)?.repeat((steps, 1))?),
                    None => None,
                };
                strip.push(mean_image(self.decode(&z, &yy)?.detach())?);
            }
            figs.push(Figure::Images {
                name: "interpolation".into(),
                x: Tensor::cat(&strip, 0)?,
                ncol: steps,
                caption: "each row: decoder means along the straight line between the \
                          posterior means of two test images"
                    .into(),
            });
        }
        if self.cfg.latent == 2 {
            if let Some(l) = labels {
                let pts: Vec<Vec<f32>> = mu.to_device(&Device::Cpu)?.to_vec2()?;
                figs.push(Figure::Scatter {
                    name: "latent".into(),
                    points: pts.iter().map(|p| [p[0], p[1]]).collect(),
                    labels: l.to_dtype(DType::U32)?.to_vec1()?,
                    caption: "posterior means of held-out examples, coloured by class".into(),
                });
            }
        }
        Ok(figs)
    }
}

fn slice(y: &Option<Tensor>, start: usize, len: usize) -> Result<Option<Tensor>> {
    Ok(match y {
        Some(y) => Some(y.narrow(0, start, len)?),
        None => None,
    })
}

impl Sample for Vae {
    fn sample(
        &self,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult> {
        crate::sample::require_unit_temperature(req, "VAE")?;
        if req.guidance.is_some() {
            return Err(Error::setting(
                "guidance",
                "applies to conditional diffusion models; a VAE samples its class as it is",
            ));
        }
        if req.classifier.is_some() {
            return Err(Error::setting(
                "classifier",
                "guidance applies to diffusion models; a VAE samples its class as it is",
            ));
        }
        req.condition.check_batch(req.n)?;
        if req.condition.class.is_some() && self.cfg.num_classes == 0 {
            return Err(Error::InvalidInput(
                "this VAE was trained without class conditioning; it takes no class".into(),
            ));
        }
        let x = crate::sample::sample_in_batches(req, rng, progress, |nb, done, rng| {
            let labels = match &req.condition.class {
                Some(l) => Some(l.narrow(0, done, nb)?),
                None => None,
            };
            self.sample_batch(nb, done, labels.as_ref(), rng)
        })?;
        Ok(SampleResult { x, nfe: 1 })
    }

    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }

    fn data_space(&self) -> &DataSpace {
        &self.cfg.data
    }

    fn as_likelihood(&self) -> Option<&dyn LogLikelihood> {
        Some(self)
    }
}

impl LogLikelihood for Vae {
    fn log_likelihood(
        &self,
        x: &Tensor,
        labels: Option<&Tensor>,
        opts: &LikelihoodOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<LogLikelihoodResult> {
        let k = opts.samples;
        if k == 0 {
            return Err(Error::InvalidInput(
                "the IWAE bound needs at least 1 importance sample, got 0".into(),
            ));
        }
        let x = self.prepare(&x.to_device(&self.device)?)?;
        let n = x.dim(0)?;
        let y = self.one_hot(labels, n)?;
        let chunk = opts.batch_size.max(1).min(k);
        let mut nats = Vec::with_capacity(n);
        // Several examples per network call when k is small, one example in k/chunk calls
        // when it is large.
        let per_call = (opts.batch_size.max(1) / k).max(1);
        let mut i = 0;
        while i < n {
            let m = per_call.min(n - i);
            let xi = x.narrow(0, i, m)?;
            let yi = slice(&y, i, m)?;
            let mut lw = vec![Vec::with_capacity(k); m];
            let mut left = k;
            while left > 0 {
                let c = chunk.min(left);
                let w = self.log_weights(&xi, &yi, c, rng)?;
                for (j, row) in lw.iter_mut().enumerate() {
                    row.extend_from_slice(&w[j * c..(j + 1) * c]);
                }
                left -= c;
            }
            for row in &lw {
                let v = log_mean_exp(row);
                if !v.is_finite() {
                    return Err(Error::Numeric(format!(
                        "the IWAE bound of example {} is {v}",
                        nats.len()
                    )));
                }
                nats.push(v);
            }
            i += m;
            progress(i, n);
        }
        Ok(LogLikelihoodResult {
            nats,
            kind: LikelihoodKind::LowerBound,
            method: format!("IWAE bound (Burda et al. 2016), k = {k}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_core::ParamStore;

    fn tiny(likelihood: Likelihood, latent: usize, d: usize, nc: usize) -> (ParamStore, Vae) {
        let ps = ParamStore::new(5, &Device::Cpu);
        let cfg = VaeConfig {
            latent,
            net: VaeNet::Mlp { hidden: vec![6] },
            likelihood,
            beta: 1.0,
            num_classes: nc,
            binarize: None,
            data: DataSpace {
                shape: vec![d],
                images: likelihood == Likelihood::Bernoulli,
            },
        };
        let m = Vae::new(&cfg, ps.vb()).unwrap();
        (ps, m)
    }

    fn v1(t: &Tensor) -> Vec<f64> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect()
    }

    /// log p(x|params) for one example, by the textbook formulas in f64.
    fn log_px_by_hand(lik: Likelihood, x: &[f64], p: &[f64]) -> f64 {
        let d = x.len();
        (0..d)
            .map(|j| match lik {
                Likelihood::Bernoulli => {
                    let q = 1.0 / (1.0 + (-p[j]).exp());
                    x[j] * q.ln() + (1.0 - x[j]) * (1.0 - q).ln()
                }
                Likelihood::Gaussian => {
                    let (m, lv) = (p[j], p[d + j]);
                    -0.5 * ((2.0 * std::f64::consts::PI).ln() + lv + (x[j] - m).powi(2) / lv.exp())
                }
            })
            .sum()
    }

    /// f32 network outputs summed over a few dimensions.
    const ELBO_TOL: f64 = 1e-4;

    #[test]
    fn elbo_equals_brute_force_for_the_same_draws() {
        for lik in [Likelihood::Gaussian, Likelihood::Bernoulli] {
            let (_, m) = tiny(lik, 2, 3, 0);
            let x = Tensor::new(&[[1.0f32, 0.0, 1.0], [0.0, 0.0, 1.0]], &Device::Cpu).unwrap();
            let t = m.elbo(&x, None, &mut Rng::new(4)).unwrap();
            // Replay: the same encoder outputs and noise, everything else by hand.
            let (mu, lv) = m.encode(&x, &None).unwrap();
            let eps = v1(&Rng::new(4).normal_tensor(&[2, 2], &Device::Cpu).unwrap());
            let (mu, lv) = (v1(&mu), v1(&lv));
            let xs = v1(&x);
            let mut elbo = 0.0;
            for i in 0..2 {
                let z: Vec<f32> = (0..2)
                    .map(|j| (mu[2 * i + j] + (0.5 * lv[2 * i + j]).exp() * eps[2 * i + j]) as f32)
                    .collect();
                let zt = Tensor::from_vec(z, (1, 2), &Device::Cpu).unwrap();
                let p = v1(&m.decode(&zt, &None).unwrap());
                let rec = log_px_by_hand(lik, &xs[3 * i..3 * i + 3], &p);
                let kl: f64 = (0..2)
                    .map(|j| {
                        let (a, b) = (mu[2 * i + j], lv[2 * i + j]);
                        0.5 * (a * a + b.exp() - 1.0 - b)
                    })
                    .sum();
                elbo += (rec - kl) / 2.0;
            }
            let loss = t.loss.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (t.elbo - elbo).abs() < ELBO_TOL,
                "{lik:?}: {} vs {elbo}",
                t.elbo
            );
            assert!((loss + elbo).abs() < ELBO_TOL, "{lik:?}: loss {loss}");
        }
    }

    /// log-mean-exp of f32 log-weights over thousands of draws, against a quadrature.
    const IWAE_TOL: f64 = 0.02;

    #[test]
    fn iwae_bound_lies_between_the_elbo_and_the_exact_likelihood_and_approaches_it() {
        // A 1-D latent: log p(x) = log integral p(x|z) N(z; 0, 1) dz by quadrature.
        for lik in [Likelihood::Gaussian, Likelihood::Bernoulli] {
            let (_, m) = tiny(lik, 1, 3, 0);
            let x = Tensor::new(&[[1.0f32, 0.0, 1.0]], &Device::Cpu).unwrap();
            let xs = v1(&x);
            let (lo, hi, n) = (-10.0f64, 10.0f64, 8001usize);
            let h = (hi - lo) / (n - 1) as f64;
            let zs: Vec<f32> = (0..n).map(|i| (lo + h * i as f64) as f32).collect();
            let p = v1(&m
                .decode(
                    &Tensor::from_vec(zs.clone(), (n, 1), &Device::Cpu).unwrap(),
                    &None,
                )
                .unwrap());
            let outs = if lik == Likelihood::Gaussian { 2 } else { 1 };
            let logs: Vec<f64> = (0..n)
                .map(|i| {
                    let z = zs[i] as f64;
                    log_px_by_hand(lik, &xs, &p[i * 3 * outs..(i + 1) * 3 * outs])
                        - 0.5 * (z * z + LN_2PI)
                })
                .collect();
            let exact = log_mean_exp(&logs) + (hi - lo).ln();
            let opts = |k| LikelihoodOptions {
                samples: k,
                batch_size: 1000,
            };
            let mut rng = Rng::new(1);
            let iwae = |k, rng: &mut Rng| {
                m.log_likelihood(&x, None, &opts(k), rng, &mut |_, _| {})
                    .unwrap()
                    .nats[0]
            };
            let elbo_mean: f64 = (0..2000).map(|_| iwae(1, &mut rng)).sum::<f64>() / 2000.0;
            let l100 = iwae(100, &mut rng);
            let l5000 = iwae(5000, &mut rng);
            assert!(
                elbo_mean <= l100 + IWAE_TOL,
                "{lik:?}: ELBO {elbo_mean} > L_100 {l100}"
            );
            assert!(
                l5000 <= exact + IWAE_TOL,
                "{lik:?}: L_5000 {l5000} > log p {exact}"
            );
            assert!(
                (l5000 - exact).abs() < 0.1,
                "{lik:?}: L_5000 {l5000} far from log p {exact}"
            );
        }
    }

    #[test]
    fn class_conditional_needs_labels_in_range_and_bad_configs_are_errors() {
        let (_, m) = tiny(Likelihood::Bernoulli, 2, 3, 4);
        let x = Tensor::new(&[[1.0f32, 0.0, 1.0]], &Device::Cpu).unwrap();
        let mut rng = Rng::new(0);
        assert!(m.elbo(&x, None, &mut rng).is_err());
        let bad = Tensor::new(&[7u32], &Device::Cpu).unwrap();
        assert!(m.elbo(&x, Some(&bad), &mut rng).is_err());
        let ok = Tensor::new(&[3u32], &Device::Cpu).unwrap();
        assert!(m.elbo(&x, Some(&ok), &mut rng).is_ok());
        let mut cfg = m.config().clone();
        cfg.latent = 0;
        assert!(cfg.validate().unwrap_err().to_string().contains("latent"));
        cfg.latent = 2;
        cfg.net = VaeNet::Conv {
            channels: vec![8],
            hidden: 16,
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("conv VAE is for images"), "{e}");
        cfg.data = DataSpace {
            shape: vec![1, 6, 6],
            images: true,
        };
        cfg.net = VaeNet::Conv {
            channels: vec![8, 8],
            hidden: 16,
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("divisible by 4"), "{e}");
    }

    #[test]
    fn conv_vae_runs_on_images_and_samples_in_range() {
        let ps = ParamStore::new(2, &Device::Cpu);
        let data = DataSpace {
            shape: vec![1, 8, 8],
            images: true,
        };
        let mut cfg = VaeConfig::for_data(&data);
        cfg.net = VaeNet::Conv {
            channels: vec![4, 8],
            hidden: 16,
        };
        let m = Vae::new(&cfg, ps.vb()).unwrap();
        let x = Rng::new(3)
            .uniform_tensor(0.0, 1.0, &[5, 1, 8, 8], &Device::Cpu)
            .unwrap();
        let t = m.elbo(&x, None, &mut Rng::new(1)).unwrap();
        assert!(t.elbo.is_finite() && t.kl >= 0.0);
        let names: Vec<String> = ps.vars().into_iter().map(|(n, _)| n).collect();
        assert!(
            names.iter().any(|n| n.starts_with("dec.deconv1")),
            "{names:?}"
        );
        let req = SampleRequest {
            n: 3,
            sampler: String::new(),
            options: Default::default(),
            batch_size: 2,
            ..Default::default()
        };
        let s = m.sample(&req, &mut Rng::new(0), &mut |_, _| {}).unwrap().x;
        assert_eq!(s.dims(), &[3, 1, 8, 8]);
        let (lo, hi) = (
            s.min_all().unwrap().to_scalar::<f32>().unwrap(),
            s.max_all().unwrap().to_scalar::<f32>().unwrap(),
        );
        assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
    }
}
