//! Generative adversarial networks: a generator, a discriminator or critic, and the losses
//! that set them against each other.
//!
//! - [`nets`]: MLP generators and discriminators for vectors, DCGAN-style convolutional ones
//!   for images (Radford, Metz & Chintala 2016, arXiv:1511.06434), and EBGAN's autoencoder
//!   discriminator; critics expose their input gradient as a differentiable graph.
//! - [`loss`]: the minimax and non-saturating losses (Goodfellow et al. 2014), LSGAN (Mao et
//!   al. 2017), WGAN with clipping (Arjovsky et al. 2017), WGAN-GP (Gulrajani et al. 2017)
//!   and EBGAN (Zhao et al. 2017).
//!
//! - Class conditioning (`num_classes > 0`): the label's learned embedding is concatenated to
//!   the generator's z (Mirza & Osindero 2014, arXiv:1411.1784), and the discriminator is the
//!   projection discriminator of Miyato & Koyama 2018 (arXiv:1802.05637, Eq. 3),
//!   f(x, y) = psi(phi(x)) + <embed(y), phi(x)>. Fakes are generated for the labels of the
//!   real batch they are set against, so both players see the data's class frequencies.
//!
//! Images are mapped from [0, 1] to [-1, 1] for the networks (the generator ends in tanh).

pub mod loss;
pub mod nets;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

use crate::sample::{DataSpace, Sample, SampleRequest, SampleResult};
pub use nets::{Discriminator, Generator};

/// Which game the two players play.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// Goodfellow et al. 2014, Eq. 1, with the generator minimising log(1 - D(G(z))).
    Minimax,
    /// Goodfellow et al. 2014, Sec. 3: the generator maximises log D(G(z)) instead.
    NonSaturating,
    /// Mao et al. 2017, Eq. 2: least squares with targets a (fake), b (real), c (generator).
    Lsgan,
    /// Arjovsky, Chintala & Bottou 2017, Alg. 1: a weight-clipped critic.
    Wgan,
    /// Gulrajani et al. 2017, Alg. 1: a critic with a gradient penalty.
    WganGp,
    /// Zhao, Mathieu & LeCun 2017: an autoencoder discriminator with a margin loss.
    Ebgan,
}

impl GanLoss {
    /// The losses whose discriminator is a critic (an unbounded score, no sigmoid).
    pub fn has_critic(self) -> bool {
        matches!(self, GanLoss::Wgan | GanLoss::WganGp)
    }
}

/// The two networks' architecture.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum GanNet {
    /// MLPs with these hidden widths for both players (vector data).
    Mlp { hidden: Vec<usize> },
    /// DCGAN-style: the generator projects z to 2c x H/4 x W/4 and doubles the size twice
    /// with transposed convolutions (GroupNorm + SiLU between); the discriminator mirrors it
    /// with stride-2 convolutions and leaky ReLU. `channels` = c, a multiple of 8.
    /// `minibatch_std` appends the minibatch standard deviation feature of Karras et al.
    /// 2018 (arXiv:1710.10196, Sec. 3) to the discriminator's last feature map, so that it
    /// can see a batch's lack of variety (against partial mode dropping); not with WGAN-GP,
    /// whose penalty needs per-example input gradients.
    Dcgan {
        channels: usize,
        #[serde(default)]
        minibatch_std: bool,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GanConfig {
    pub loss: GanLoss,
    /// Dimension of the generator's noise z ~ N(0, I).
    pub latent: usize,
    pub net: GanNet,
    /// Discriminator updates per generator update; `null` = 5 for WGAN losses (Arjovsky et
    /// al. and Gulrajani et al.), 1 otherwise.
    pub n_critic: Option<usize>,
    /// The discriminator's learning rate; `null` = the trainer's `train.lr`.
    pub d_lr: Option<f64>,
    /// LSGAN targets [a, b, c]: fake, real, and what the generator wants the discriminator
    /// to say (Mao et al. 2017, Eq. 2). [0, 1, 1] (the default) is their Eq. 9 choice, c = b:
    /// fakes should look real; [-1, 1, 0] their Pearson chi^2 choice (Eq. 8).
    pub lsgan_targets: [f64; 3],
    /// WGAN weight clipping to [-clip, clip]; `null` = 0.01 (Arjovsky et al., Alg. 1).
    pub clip: Option<f64>,
    /// Gradient-penalty weight lambda; `null` = 10 for WGAN-GP on images (Gulrajani et al.,
    /// Alg. 1) and 0.1 on points (their toy script's value). On eight gaussians lambda 10
    /// leaves the samples a diffuse cloud over the ring after 10k steps, in genlab and in a
    /// PyTorch replica alike (`scripts/reference/wgan_gp_toy.py`): 20% within 3 std against
    /// 88% for lambda 0.1.
    pub gp_weight: Option<f64>,
    /// R1 weight gamma (Mescheder et al. 2018, Eq. 9): adds gamma/2 E||grad_x d(x)||^2 on
    /// real data to the discriminator's loss; for minimax, non-saturating and LSGAN;
    /// `null` = off. Not with the minibatch std feature (the penalty is per example).
    /// Saved configs without the key load as off.
    #[serde(default)]
    pub r1_weight: Option<f64>,
    /// EBGAN margin m on the energy of fakes; `null` = 1.0 (energies are mean squared
    /// reconstruction errors).
    pub margin: Option<f64>,
    /// EBGAN pull-away term weight; `null` = 0.1 (Zhao et al., Sec. 2.4).
    pub pt_weight: Option<f64>,
    /// Number of classes for a class-conditional GAN (label embedding in the generator,
    /// projection discriminator); 0 = unconditional. Saved configs without the key load as 0.
    #[serde(default)]
    pub num_classes: usize,
    pub data: DataSpace,
}

impl GanConfig {
    pub fn for_data(data: &DataSpace) -> Self {
        let net = if data.images {
            GanNet::Dcgan {
                channels: 64,
                minibatch_std: false,
            }
        } else {
            GanNet::Mlp {
                hidden: vec![256, 256, 256],
            }
        };
        Self {
            loss: GanLoss::NonSaturating,
            latent: if data.images { 100 } else { 16 }, // DCGAN's z is 100-d
            net,
            n_critic: None,
            d_lr: None,
            lsgan_targets: [0.0, 1.0, 1.0],
            clip: None,
            gp_weight: None,
            r1_weight: None,
            margin: None,
            pt_weight: None,
            num_classes: 0, // unconditional; `--class-conditional` sets it from the data
            data: data.clone(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.latent == 0 {
            return bad("gan.latent must be at least 1 (the size of z), got 0".into());
        }
        if self.n_critic == Some(0) {
            return bad("gan.n_critic must be at least 1 (discriminator updates per generator update), got 0".into());
        }
        if let Some(lr) = self.d_lr {
            if !(lr > 0.0 && lr.is_finite()) {
                return bad(format!("gan.d_lr must be positive, got {lr}"));
            }
        }
        match (self.loss, self.clip) {
            (GanLoss::Wgan, Some(c)) if !(c > 0.0 && c.is_finite()) => {
                return bad(format!("gan.clip must be positive, got {c}"));
            }
            (l, Some(_)) if l != GanLoss::Wgan => {
                return bad(format!("gan.clip applies to loss = wgan only, not {l:?}"));
            }
            _ => {}
        }
        match (self.loss, self.gp_weight) {
            (l, Some(_)) if !l.has_critic() => {
                return bad(format!(
                    "gan.gp_weight is a gradient penalty on a critic, but loss = {l:?} has no critic \
                     (use loss = wgan-gp)"
                ));
            }
            (_, Some(w)) if !(w > 0.0 && w.is_finite()) => {
                return bad(format!("gan.gp_weight must be positive, got {w}"));
            }
            _ => {}
        }
        if let Some(w) = self.r1_weight {
            if !matches!(
                self.loss,
                GanLoss::Minimax | GanLoss::NonSaturating | GanLoss::Lsgan
            ) {
                return bad(format!(
                    "gan.r1_weight is a penalty on a logit discriminator (minimax, \
                     non-saturating, lsgan), not on loss = {:?}; WGAN-GP has gp_weight",
                    self.loss
                ));
            }
            if !(w > 0.0 && w.is_finite()) {
                return bad(format!("gan.r1_weight must be positive, got {w}"));
            }
            if matches!(
                self.net,
                GanNet::Dcgan {
                    minibatch_std: true,
                    ..
                }
            ) {
                return bad(
                    "gan.r1_weight does not combine with gan.net.dcgan.minibatch_std: the \
                     penalty needs each score's gradient with respect to its own input"
                        .into(),
                );
            }
        }
        for (name, v) in [("margin", self.margin), ("pt_weight", self.pt_weight)] {
            if let Some(v) = v {
                if self.loss != GanLoss::Ebgan {
                    return bad(format!("gan.{name} applies to loss = ebgan only"));
                }
                if !(v >= 0.0 && v.is_finite()) || (name == "margin" && v == 0.0) {
                    return bad(format!("gan.{name} must be positive, got {v}"));
                }
            }
        }
        if self.num_classes > 0 && self.loss == GanLoss::Ebgan {
            return bad(
                "gan.num_classes (a class-conditional GAN) needs a projection discriminator, \
                 which EBGAN's autoencoder discriminator is not; use another gan.loss"
                    .into(),
            );
        }
        if self.data.shape.is_empty() || self.data.shape.contains(&0) {
            return bad(format!("gan: empty data shape {:?}", self.data.shape));
        }
        match &self.net {
            GanNet::Mlp { hidden } if hidden.is_empty() || hidden.contains(&0) => bad(format!(
                "gan.net.mlp.hidden must be non-empty positive sizes, got {hidden:?}"
            )),
            GanNet::Mlp { .. } => Ok(()),
            GanNet::Dcgan {
                channels,
                minibatch_std,
            } => {
                if *minibatch_std && self.loss == GanLoss::WganGp {
                    return bad(
                        "gan.net.dcgan.minibatch_std does not combine with loss = wgan-gp: the \
                         gradient penalty needs each score's gradient with respect to its own \
                         input, and the batch statistic ties the scores together"
                            .into(),
                    );
                }
                if !self.data.images || self.data.shape.len() != 3 {
                    return bad(format!(
                        "the DCGAN nets are for images [C, H, W], the data have shape {:?}; use net = mlp",
                        self.data.shape
                    ));
                }
                let (h, w) = (self.data.shape[1], self.data.shape[2]);
                if h % 4 != 0 || w % 4 != 0 {
                    return bad(format!(
                        "the DCGAN nets need image sides divisible by 4, got {h}x{w}"
                    ));
                }
                if *channels == 0 || channels % 8 != 0 {
                    return bad(format!(
                        "gan.net.dcgan.channels must be a positive multiple of 8 (GroupNorm groups), got {channels}"
                    ));
                }
                Ok(())
            }
        }
    }

    pub fn n_critic(&self) -> usize {
        self.n_critic
            .unwrap_or(if self.loss.has_critic() { 5 } else { 1 })
    }

    pub fn clip(&self) -> Option<f64> {
        (self.loss == GanLoss::Wgan).then(|| self.clip.unwrap_or(0.01))
    }

    pub fn gp_weight(&self) -> f64 {
        match self.loss {
            GanLoss::WganGp => self
                .gp_weight
                .unwrap_or(if self.data.images { 10.0 } else { 0.1 }),
            GanLoss::Wgan => self.gp_weight.unwrap_or(0.0),
            _ => 0.0,
        }
    }

    pub fn margin(&self) -> f64 {
        self.margin.unwrap_or(1.0)
    }

    pub fn pt_weight(&self) -> f64 {
        self.pt_weight.unwrap_or(0.1)
    }
}

/// A trained generator, ready to sample.
pub struct Gan {
    cfg: GanConfig,
    gen: Generator,
    device: Device,
}

impl Gan {
    /// The generator's variables live under `gen` in `vb`.
    pub fn new(cfg: &GanConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cfg: cfg.clone(),
            gen: Generator::new(cfg, vb.pp("gen"))?,
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &GanConfig {
        &self.cfg
    }

    /// G(z, y) in model space (`[-1, 1]` for images); `labels` (`[B]` u32, checked with
    /// [`Gan::labels`]) for a class-conditional GAN, `None` otherwise.
    pub fn generate(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        self.gen.forward(z, labels)
    }

    /// Noise for `n` samples.
    pub fn noise(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Ok(rng.normal_tensor(&[n, self.cfg.latent], &self.device)?)
    }

    /// Whether the GAN is class-conditional.
    pub fn is_conditional(&self) -> bool {
        self.cfg.num_classes > 0
    }

    /// The labels a training batch of `n` examples gives the two players: `None` for an
    /// unconditional GAN (whatever the data carry); for a class-conditional one the data's
    /// labels `[n]` u32 on the model's device, each checked to be one of its classes.
    pub fn labels(&self, labels: Option<&Tensor>, n: usize) -> Result<Option<Tensor>> {
        let nc = self.cfg.num_classes;
        if nc == 0 {
            return Ok(None);
        }
        let labels = labels.ok_or_else(|| {
            Error::InvalidInput(format!(
                "this GAN is class-conditional ({nc} classes) but the data have no labels"
            ))
        })?;
        let y = labels.to_dtype(DType::U32)?;
        let v: Vec<u32> = y.to_vec1()?;
        if v.len() != n {
            return Err(Error::InvalidInput(format!(
                "{} labels for {n} examples",
                v.len()
            )));
        }
        if let Some(bad) = v.iter().find(|&&c| c as usize >= nc) {
            return Err(Error::InvalidInput(format!(
                "label {bad} is outside the model's {nc} classes"
            )));
        }
        Ok(Some(y.to_device(&self.device)?))
    }

    /// Checks a request's condition against this GAN: a class (of one of its classes) for a
    /// class-conditional GAN, or nothing; never guidance.
    fn check_request(&self, req: &SampleRequest) -> Result<()> {
        if req.guidance.is_some() {
            return Err(Error::setting(
                "guidance",
                "applies to conditional diffusion models; a GAN samples its class as it is",
            ));
        }
        let c = &req.condition;
        c.check_batch(req.n)?;
        if c.tokens.is_some() || c.token_mask.is_some() || c.image.is_some() || c.mask.is_some() {
            return Err(Error::InvalidInput(format!(
                "a GAN takes a class label only, got {}",
                c.describe()
            )));
        }
        if let Some(labels) = c.class_labels()? {
            let nc = self.cfg.num_classes;
            if nc == 0 {
                return Err(Error::InvalidInput(
                    "this GAN was trained without class conditioning; it takes no class".into(),
                ));
            }
            if let Some(bad) = labels.iter().find(|&&l| l as usize >= nc) {
                return Err(Error::setting(
                    "class",
                    format!("{bad} is outside the model's classes 0..{}", nc - 1),
                ));
            }
        }
        Ok(())
    }

    /// The labels of samples `offset..offset + n` of a request: the request's own, or for a
    /// class-conditional GAN asked for no class the classes in turn (0, 1, ..., K-1, 0, ...
    /// counted from the request's first sample, as the VAE does); `None` when unconditional.
    fn request_labels(
        &self,
        req: &SampleRequest,
        offset: usize,
        n: usize,
    ) -> Result<Option<Tensor>> {
        let nc = self.cfg.num_classes;
        if nc == 0 {
            return Ok(None);
        }
        let y = match &req.condition.class {
            Some(l) => l.narrow(0, offset, n)?.to_dtype(DType::U32)?,
            None => {
                let l: Vec<u32> = (0..n).map(|i| ((offset + i) % nc) as u32).collect();
                Tensor::new(l, &Device::Cpu)?
            }
        };
        Ok(Some(y.to_device(&self.device)?))
    }

    /// Data space -> model space.
    pub fn to_model_space(&self, x: &Tensor) -> Result<Tensor> {
        self.cfg.data.check_batch(x, "the GAN")?;
        Ok(if self.cfg.data.images {
            x.affine(2.0, -1.0)?
        } else {
            x.clone()
        })
    }
}

impl Sample for Gan {
    fn sample(
        &self,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult> {
        crate::sample::require_unit_temperature(req, "GAN")?;
        self.check_request(req)?;
        let x = crate::sample::sample_in_batches(req, rng, progress, |nb, done, rng| {
            let labels = self.request_labels(req, done, nb)?;
            let x = self
                .generate(&self.noise(nb, rng)?, labels.as_ref())?
                .detach();
            Ok(if self.cfg.data.images {
                x.affine(0.5, 0.5)?.clamp(0f32, 1f32)?
            } else {
                x
            })
        })?;
        Ok(SampleResult { x, nfe: 1 })
    }

    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }

    fn data_space(&self) -> &DataSpace {
        &self.cfg.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_core::{Condition, ParamStore};

    fn gan(classes: usize) -> Gan {
        let data = DataSpace {
            shape: vec![2],
            images: false,
        };
        let mut cfg = GanConfig::for_data(&data);
        cfg.net = GanNet::Mlp { hidden: vec![8] };
        cfg.num_classes = classes;
        Gan::new(&cfg, ParamStore::new(0, &Device::Cpu).vb()).unwrap()
    }

    fn req(n: usize, condition: Condition) -> SampleRequest {
        SampleRequest {
            n,
            condition,
            batch_size: 2,
            ..Default::default()
        }
    }

    fn draw(g: &Gan, r: &SampleRequest) -> Result<Vec<Vec<f32>>> {
        Ok(g.sample(r, &mut Rng::new(4), &mut |_, _| {})?.x.to_vec2()?)
    }

    fn labels(v: &[u32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn class_labels_are_checked_for_training_and_sampling() {
        let g = gan(3);
        // Training batches: labels must be there, one per example, each of the 3 classes.
        let e = g.labels(None, 2).unwrap_err().to_string();
        assert!(
            e.contains("class-conditional (3 classes)") && e.contains("no labels"),
            "{e}"
        );
        let e = g.labels(Some(&labels(&[0, 3])), 2).unwrap_err().to_string();
        assert!(e.contains("label 3") && e.contains("3 classes"), "{e}");
        assert!(g.labels(Some(&labels(&[0])), 2).is_err());
        assert_eq!(
            g.labels(Some(&labels(&[2, 0])), 2)
                .unwrap()
                .unwrap()
                .to_vec1::<u32>()
                .unwrap(),
            [2, 0]
        );
        // An unconditional GAN ignores the data's labels.
        assert!(gan(0).labels(Some(&labels(&[7])), 1).unwrap().is_none());

        // Sampling: a class outside the label set, a class for an unconditional GAN,
        // guidance, and conditions a GAN cannot take are one clear error each.
        let e = draw(&g, &req(2, Condition::class(labels(&[1, 3])))).unwrap_err();
        assert!(
            matches!(&e, Error::Setting { setting, problem } if setting == "class" && problem.contains("3 is outside the model's classes 0..2")),
            "{e}"
        );
        let e = draw(&gan(0), &req(1, Condition::class(labels(&[0]))))
            .unwrap_err()
            .to_string();
        assert!(e.contains("without class conditioning"), "{e}");
        let mut r = req(2, Condition::class(labels(&[1, 1])));
        r.guidance = Some(2.0);
        let e = draw(&g, &r).unwrap_err();
        assert!(
            matches!(&e, Error::Setting { setting, .. } if setting == "guidance"),
            "{e}"
        );
        let img = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        let e = draw(&g, &req(2, Condition::image(img, None)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("class label only"), "{e}");
        assert!(draw(&g, &req(3, Condition::class(labels(&[1, 1])))).is_err());
    }

    #[test]
    fn without_a_class_a_conditional_gan_cycles_the_classes_like_the_vae() {
        let g = gan(3);
        // 5 samples in batches of 2: classes 0 1 2 0 1, the same draws as asking for them.
        let cycled = draw(&g, &req(5, Condition::none())).unwrap();
        let asked = draw(&g, &req(5, Condition::class(labels(&[0, 1, 2, 0, 1])))).unwrap();
        assert_eq!(cycled, asked);
        let other = draw(&g, &req(5, Condition::class(labels(&[1, 1, 1, 1, 1])))).unwrap();
        assert_ne!(cycled[0], other[0]);
        assert_eq!(cycled[1], other[1]);
        assert_eq!(g.num_classes(), 3);
        assert_eq!(gan(0).num_classes(), 0);
    }

    #[test]
    fn ebgan_cannot_be_class_conditional() {
        let mut cfg = gan(2).config().clone();
        cfg.loss = GanLoss::Ebgan;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("num_classes") && e.contains("EBGAN"), "{e}");
        cfg.num_classes = 0;
        cfg.validate().unwrap();
    }
}
