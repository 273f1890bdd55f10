//! The noisy classifier of classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models
//! Beat GANs on Image Synthesis", arXiv:2105.05233, Sec. 4): p_phi(y | x_t, t) trained with
//! cross-entropy on x_t ~ q(x_t | x_0) = N(sqrt(a_t) x_0, (1 - a_t) I) at t ~ U{0..T-1}, on
//! the same schedule as the diffusion model it will guide. At sampling time its gradient
//! grad_x log p_phi(y | x_t, t) is added to the score (`genlab_sampling::guidance`).
//!
//! Images are mapped to [-1, 1] as the DDPM maps them, so the classifier sees exactly the
//! x_t the sampler holds. Only VP schedules (the beta schedules and the VP SDE): the others
//! feed their networks a rescaled x_t.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};
use genlab_nn::classifier::{cross_entropy, log_softmax};
use genlab_nn::{TimeClassifier, TimeClassifierConfig};
use genlab_sampling::guidance::NoisyClassifier;
use genlab_sampling::{BetaSchedule, NoiseSchedule};

use crate::sample::DataSpace;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NoisyClassifierConfig {
    /// Diffusion steps T of the schedule (the guided model's).
    pub timesteps: usize,
    /// The guided model's noise schedule.
    pub schedule: BetaSchedule,
    pub net: TimeClassifierConfig,
    /// The number of classes (set from the data).
    pub num_classes: usize,
    pub data: DataSpace,
}

impl NoisyClassifierConfig {
    /// The preset for `data`: the DDPM preset's schedule (linear, T = 1000); a narrower
    /// network for points.
    pub fn for_data(data: &DataSpace) -> Self {
        let net = if data.images {
            TimeClassifierConfig::default()
        } else {
            TimeClassifierConfig {
                base_channels: 128, // 2-D points: a small MLP is plenty
                ..TimeClassifierConfig::default()
            }
        };
        Self {
            timesteps: 1000,                   // the DDPM preset's T
            schedule: BetaSchedule::default(), // the DDPM preset's schedule
            net,
            num_classes: 0, // filled from the data's labels
            data: data.clone(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.num_classes < 2 {
            return Err(Error::Config(format!(
                "a noisy classifier needs labelled data with at least 2 classes, got {}",
                self.num_classes
            )));
        }
        let s = NoiseSchedule::new(&self.schedule, self.timesteps)?;
        if !s.is_vp() {
            return Err(Error::Config(
                "classifier guidance supports VP schedules (the beta schedules and the VP SDE)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The classifier and its schedule.
pub struct NoisyClassifierModel {
    cfg: NoisyClassifierConfig,
    net: TimeClassifier,
    schedule: NoiseSchedule,
    device: Device,
}

impl NoisyClassifierModel {
    pub fn new(cfg: &NoisyClassifierConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let device = vb.device().clone();
        let net = TimeClassifier::new(&cfg.net, &cfg.data.shape, cfg.num_classes, vb.pp("net"))?;
        Ok(Self {
            cfg: cfg.clone(),
            net,
            schedule: NoiseSchedule::new(&cfg.schedule, cfg.timesteps)?,
            device,
        })
    }

    pub fn config(&self) -> &NoisyClassifierConfig {
        &self.cfg
    }

    /// Data space -> model space ([0, 1] images become [-1, 1], as the DDPM maps them).
    fn to_model_space(&self, x: &Tensor) -> Result<Tensor> {
        Ok(if self.cfg.data.images {
            x.affine(2.0, -1.0)?
        } else {
            x.clone()
        })
    }

    /// Logits `[B, K]` of model-space `x` at per-example timesteps `t` (`[B]`).
    pub fn logits(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(x, t)?)
    }

    /// `x0` (data space) noised to a timestep drawn per example, and those timesteps.
    fn noised(&self, x0: &Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let b = x0.dim(0)?;
        let ts: Vec<f64> = (0..b)
            .map(|_| rng.below(self.cfg.timesteps as u64) as f64)
            .collect();
        let x0 = self.to_model_space(x0)?;
        let a: Vec<f64> = ts
            .iter()
            .map(|&t| self.schedule.alpha_bar(t as isize))
            .collect();
        let sa = crate::diffusion::ddpm::per_example(
            &a.iter().map(|a| a.sqrt()).collect::<Vec<_>>(),
            &x0,
        )?;
        let s1a = crate::diffusion::ddpm::per_example(
            &a.iter().map(|a| (1.0 - a).sqrt()).collect::<Vec<_>>(),
            &x0,
        )?;
        let eps = rng.normal_tensor(x0.dims(), x0.device())?;
        let xt = (x0.broadcast_mul(&sa)? + eps.broadcast_mul(&s1a)?)?;
        let t = Tensor::from_vec(
            ts.iter().map(|&t| t as f32).collect::<Vec<_>>(),
            b,
            x0.device(),
        )?;
        Ok((xt, t))
    }

    /// Cross-entropy on `x0` (data space) noised to a random timestep per example.
    pub fn loss(&self, x0: &Tensor, labels: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        self.cfg.data.check_batch(x0, "the noisy classifier")?;
        self.check_labels(labels)?;
        let (xt, t) = self.noised(x0, rng)?;
        Ok(cross_entropy(
            &self.logits(&xt, &t)?,
            &labels.to_device(&self.device)?,
        )?)
    }

    /// Accuracy on `x0` (data space) noised to timestep `t` (a fixed one for all).
    pub fn accuracy_at(
        &self,
        x0: &Tensor,
        labels: &Tensor,
        t: usize,
        rng: &mut Rng,
    ) -> Result<f64> {
        let b = x0.dim(0)?;
        let a = self.schedule.alpha_bar(t as isize);
        let x0 = self.to_model_space(&x0.to_device(&self.device)?)?;
        let eps = rng.normal_tensor(x0.dims(), &self.device)?;
        let xt = ((x0 * a.sqrt())? + (eps * (1.0 - a).sqrt())?)?;
        let tt = Tensor::full(t as f32, b, &self.device)?;
        let pred = self.logits(&xt, &tt)?.argmax(1)?.to_dtype(DType::U32)?;
        let right = pred
            .eq(&labels.to_dtype(DType::U32)?.to_device(&self.device)?)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        Ok(right as f64 / b as f64)
    }

    fn check_labels(&self, labels: &Tensor) -> Result<()> {
        let k = self.cfg.num_classes as u32;
        let v: Vec<u32> = labels.to_dtype(DType::U32)?.to_vec1()?;
        match v.iter().find(|&&l| l >= k) {
            Some(bad) => Err(Error::setting(
                "class",
                format!("{bad} is outside the classifier's classes 0..{}", k - 1),
            )),
            None => Ok(()),
        }
    }
}

impl NoisyClassifier for NoisyClassifierModel {
    fn log_prob_grad(&self, x: &Tensor, t: f64, labels: &Tensor) -> Result<Tensor> {
        self.check_labels(labels)?;
        let b = x.dim(0)?;
        // Differentiate w.r.t. the input only: a fresh variable holding x.
        let xv = Var::from_tensor(&x.detach().to_dtype(DType::F32)?)?;
        let tt = Tensor::full(t as f32, b, x.device())?;
        let lp = log_softmax(&self.logits(xv.as_tensor(), &tt)?)?;
        let labels = labels.to_dtype(DType::U32)?.to_device(x.device())?;
        // sum_i log p(y_i | x_i): each example's gradient is its own term's.
        let picked = lp.gather(&labels.unsqueeze(1)?, 1)?.sum_all()?;
        let grads = picked.backward()?;
        let g = grads.get(xv.as_tensor()).ok_or_else(|| {
            Error::Numeric("the classifier's log-probability has no gradient in x".into())
        })?;
        Ok(g.to_dtype(x.dtype())?)
    }

    fn alphas_cumprod(&self) -> &[f64] {
        &self.schedule.alphas_cumprod
    }

    fn example_shape(&self) -> &[usize] {
        &self.cfg.data.shape
    }

    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_core::ParamStore;

    /// Central differences of f32 log-probabilities with step 1e-2 agree with the autograd
    /// gradient to this (relative to the gradient's largest entry).
    const FD_REL_TOL: f64 = 2e-2;

    fn model(images: bool) -> (ParamStore, NoisyClassifierModel) {
        let ps = ParamStore::new(4, &Device::Cpu);
        let data = if images {
            DataSpace {
                shape: vec![1, 8, 8],
                images: true,
            }
        } else {
            DataSpace {
                shape: vec![2],
                images: false,
            }
        };
        let mut cfg = NoisyClassifierConfig::for_data(&data);
        cfg.num_classes = 3;
        cfg.timesteps = 50;
        cfg.net.base_channels = 8;
        cfg.net.groups = 4;
        cfg.net.channel_mult = vec![1, 2];
        let m = NoisyClassifierModel::new(&cfg, ps.vb()).unwrap();
        (ps, m)
    }

    #[test]
    fn the_guidance_gradient_matches_finite_differences() {
        for images in [false, true] {
            let (_, m) = model(images);
            let shape: Vec<usize> = std::iter::once(2).chain(m.cfg.data.shape.clone()).collect();
            let x = Rng::new(1).normal_tensor(&shape, &Device::Cpu).unwrap();
            let labels = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
            let t = 20.0;
            let g: Vec<f32> = m
                .log_prob_grad(&x, t, &labels)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let logp = |x: &Tensor| -> f64 {
                let tt = Tensor::full(t as f32, 2, &Device::Cpu).unwrap();
                let lp = log_softmax(&m.logits(x, &tt).unwrap()).unwrap();
                let v: Vec<Vec<f32>> = lp.to_vec2().unwrap();
                (v[0][2] + v[1][0]) as f64
            };
            let flat: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let scale = g.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let h = 1e-2f32;
            for i in (0..flat.len()).step_by(flat.len().div_ceil(12)) {
                let mut p = flat.clone();
                p[i] += h;
                let mut q = flat.clone();
                q[i] -= h;
                let fd = (logp(&Tensor::from_vec(p, x.dims(), &Device::Cpu).unwrap())
                    - logp(&Tensor::from_vec(q, x.dims(), &Device::Cpu).unwrap()))
                    / (2.0 * h as f64);
                assert!(
                    (fd - g[i] as f64).abs() <= FD_REL_TOL * scale,
                    "images {images}, element {i}: autograd {} vs finite difference {fd}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn training_noises_with_the_schedule_and_labels_are_checked() {
        let (_, m) = model(false);
        let x = Rng::new(2).normal_tensor(&[4, 2], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32, 1, 2, 1], &Device::Cpu).unwrap();
        let l: f32 = m
            .loss(&x, &labels, &mut Rng::new(3))
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(l.is_finite() && l > 0.0);
        let bad = Tensor::new(&[0u32, 1, 3, 1], &Device::Cpu).unwrap();
        let e = m.loss(&x, &bad, &mut Rng::new(3)).unwrap_err().to_string();
        assert!(e.contains("0..2"), "{e}");
        let mut cfg = m.cfg.clone();
        cfg.num_classes = 0;
        assert!(cfg.validate().is_err());
        cfg.num_classes = 3;
        cfg.schedule = BetaSchedule::VeSde {
            sigma_min: 0.01,
            sigma_max: 10.0,
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("VP"));
    }
}
