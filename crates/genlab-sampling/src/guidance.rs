//! Conditional denoisers and guidance, as wrappers that are themselves [`Denoiser`]s, so every
//! sampler of the zoo runs them unchanged.
//!
//! - [`Conditioned`]: a [`ConditionalDenoiser`] with its condition fixed.
//! - [`ClassifierFree`]: classifier-free guidance (Ho & Salimans 2022, "Classifier-Free
//!   Diffusion Guidance", arXiv:2207.12598, Eq. 6 written with w' = 1 + w):
//!   `pred = pred(x, null) + w (pred(x, c) - pred(x, null))`, so w = 0 is the unconditional
//!   model and w = 1 the conditional one. Both halves run as one batched network call. The
//!   combination is applied to whatever the network predicts: eps, x0 and v are affine in the
//!   prediction for a fixed x_t and t (`to_eps_x0`), so guiding any of them is guiding eps.
//! - [`ClassifierGuided`]: classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models
//!   Beat GANs on Image Synthesis", arXiv:2105.05233, Algorithm 2 / Eq. 14):
//!   `eps_hat = eps - s sqrt(1 - alpha_bar_t) grad_x log p_phi(y | x_t, t)`, returned as eps.

use candle_core::Tensor;

use genlab_core::{Condition, Error, Result};

use crate::denoiser::to_eps_x0;
use crate::{Denoiser, NoiseSchedule, Prediction};

/// A denoiser that takes a condition with each call.
pub trait ConditionalDenoiser {
    /// The prediction for the batch `x` at timestep `t` given the per-example `cond`.
    fn predict_cond(&self, x: &Tensor, t: f64, cond: &Condition) -> Result<Tensor>;
    /// What the prediction is.
    fn prediction(&self) -> Prediction;
    /// The "no condition" counterpart of `cond` (same batch size): what the network was
    /// trained to see when the condition was dropped. Errors when the model was trained
    /// without condition dropout, so that it has no unconditional mode to guide from.
    fn null_condition(&self, cond: &Condition) -> Result<Condition>;
}

/// A conditional denoiser with its condition fixed: a plain [`Denoiser`].
pub struct Conditioned<'a> {
    pub model: &'a dyn ConditionalDenoiser,
    pub cond: &'a Condition,
}

impl Denoiser for Conditioned<'_> {
    fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        self.model.predict_cond(x, t, self.cond)
    }
    fn prediction(&self) -> Prediction {
        self.model.prediction()
    }
}

/// Classifier-free guidance at scale `scale` (0: unconditional, 1: conditional, above 1:
/// guided) of a conditional denoiser towards `cond`.
pub struct ClassifierFree<'a> {
    pub model: &'a dyn ConditionalDenoiser,
    pub cond: &'a Condition,
    /// The condition's null counterpart (computed once: [`ClassifierFree::new`]).
    null: Condition,
    /// Both halves stacked along the batch, for the one network call per step.
    both: Condition,
    pub scale: f64,
}

impl<'a> ClassifierFree<'a> {
    pub fn new(
        model: &'a dyn ConditionalDenoiser,
        cond: &'a Condition,
        scale: f64,
    ) -> Result<Self> {
        if !scale.is_finite() {
            return Err(Error::setting(
                "guidance",
                format!("must be a finite number, got {scale}"),
            ));
        }
        let null = model.null_condition(cond)?;
        let both = cond.cat(&null)?;
        Ok(Self {
            model,
            cond,
            null,
            both,
            scale,
        })
    }
}

impl Denoiser for ClassifierFree<'_> {
    fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        // The two ends are the model itself, exactly.
        if self.scale == 1.0 {
            return self.model.predict_cond(x, t, self.cond);
        }
        if self.scale == 0.0 {
            return self.model.predict_cond(x, t, &self.null);
        }
        let b = x.dim(0)?;
        // [B, ...] ++ [B, ...] -> [2B, ...]: conditional then unconditional, one call.
        let out = self
            .model
            .predict_cond(&Tensor::cat(&[x, x], 0)?, t, &self.both)?;
        let (c, u) = (out.narrow(0, 0, b)?, out.narrow(0, b, b)?);
        Ok((&u + ((c - &u)? * self.scale)?)?)
    }
    fn prediction(&self) -> Prediction {
        self.model.prediction()
    }
}

/// A classifier of noisy inputs: the gradient of its log-probability of the given labels.
pub trait NoisyClassifier {
    /// grad_x log p(labels | x, t), per example (same shape as `x`, model space).
    fn log_prob_grad(&self, x: &Tensor, t: f64, labels: &Tensor) -> Result<Tensor>;
    /// The alpha_bar of each timestep it was trained on (checked against the model it
    /// guides: the same t must mean the same noise).
    fn alphas_cumprod(&self) -> &[f64];
    /// The shape of one example it classifies.
    fn example_shape(&self) -> &[usize];
    /// Its number of classes.
    fn num_classes(&self) -> usize;
}

/// Classifier guidance as a sampling request carries it.
#[derive(Clone)]
pub struct ClassifierGuidance {
    pub classifier: std::sync::Arc<dyn NoisyClassifier + Send + Sync>,
    /// The gradient scale s (Dhariwal & Nichol's Eq. 14; they use 1-10).
    pub scale: f64,
}

impl std::fmt::Debug for ClassifierGuidance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClassifierGuidance {{ {} classes, scale {} }}",
            self.classifier.num_classes(),
            self.scale
        )
    }
}

impl ClassifierGuidance {
    /// Errors unless the classifier was trained on `schedule` (the same alpha_bar at every
    /// timestep, to 1e-9) and on examples of `shape`.
    pub fn check_against(&self, schedule: &NoiseSchedule, shape: &[usize]) -> Result<()> {
        let c = self.classifier.alphas_cumprod();
        let same = c.len() == schedule.len()
            && c.iter()
                .zip(&schedule.alphas_cumprod)
                .all(|(a, b)| (a - b).abs() <= SCHEDULE_MATCH_TOL);
        if !same {
            return Err(Error::setting(
                "classifier",
                format!(
                    "was trained on another noise schedule ({} timesteps) than the model's ({}); \
                     train it on the model's schedule",
                    c.len(),
                    schedule.len()
                ),
            ));
        }
        if self.classifier.example_shape() != shape {
            return Err(Error::setting(
                "classifier",
                format!(
                    "classifies examples of shape {:?}, the model makes {shape:?}",
                    self.classifier.example_shape()
                ),
            ));
        }
        if !(self.scale.is_finite() && self.scale >= 0.0) {
            return Err(Error::setting(
                "classifier_scale",
                format!("must be a number >= 0, got {}", self.scale),
            ));
        }
        Ok(())
    }
}

/// Two schedules are the same when their alpha_bar agree to this at every timestep.
const SCHEDULE_MATCH_TOL: f64 = 1e-9;

/// Classifier guidance of `model` by `classifier` towards `labels` at scale `scale`: an
/// epsilon predictor.
pub struct ClassifierGuided<'a> {
    pub model: &'a dyn Denoiser,
    pub classifier: &'a dyn NoisyClassifier,
    pub labels: &'a Tensor,
    pub schedule: &'a NoiseSchedule,
    pub scale: f64,
}

impl Denoiser for ClassifierGuided<'_> {
    fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        let a = self.schedule.alpha_bar_at(t);
        let (eps, _) = to_eps_x0(self.model.prediction(), &self.model.predict(x, t)?, x, a)?;
        if self.scale == 0.0 {
            return Ok(eps);
        }
        let grad = self.classifier.log_prob_grad(x, t, self.labels)?;
        // Eq. 14: eps - sqrt(1 - alpha_bar) s grad log p(y | x_t).
        Ok((eps - (grad * (self.scale * (1.0 - a).sqrt()))?)?)
    }
    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// eps = x * k[label] (label K = null uses k[K]); a stand-in whose predictions are easy
    /// to compute by hand.
    struct Scaled {
        k: Vec<f32>,
        prediction: Prediction,
    }

    impl ConditionalDenoiser for Scaled {
        fn predict_cond(&self, x: &Tensor, _t: f64, cond: &Condition) -> Result<Tensor> {
            let labels = cond.class_labels()?.expect("class labels");
            let k: Vec<f32> = labels.iter().map(|&l| self.k[l as usize]).collect();
            let n = k.len();
            let k = Tensor::from_vec(k, (n, 1), x.device())?;
            Ok(x.broadcast_mul(&k)?)
        }
        fn prediction(&self) -> Prediction {
            self.prediction
        }
        fn null_condition(&self, cond: &Condition) -> Result<Condition> {
            let n = cond.batch_size()?.unwrap_or(0);
            Condition::class_repeated((self.k.len() - 1) as u32, n, &Device::Cpu)
        }
    }

    fn vals(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn scale_zero_is_unconditional_one_is_conditional_and_between_is_linear() {
        let m = Scaled {
            k: vec![2.0, 3.0, 0.5], // classes 0 and 1, null = 2
            prediction: Prediction::Epsilon,
        };
        let x = Tensor::new(&[[1.0f32, -2.0], [4.0, 0.5]], &Device::Cpu).unwrap();
        let cond = Condition::class(Tensor::new(&[0u32, 1], &Device::Cpu).unwrap());
        let at = |w: f64| {
            vals(
                &ClassifierFree::new(&m, &cond, w)
                    .unwrap()
                    .predict(&x, 3.0)
                    .unwrap(),
            )
        };
        assert_eq!(at(0.0), vec![0.5, -1.0, 2.0, 0.25]);
        assert_eq!(at(1.0), vec![2.0, -4.0, 12.0, 1.5]);
        // w = 3: u + 3 (c - u) with c = k x, u = 0.5 x: (0.5 + 3 (k - 0.5)) x, k = 2 then 3.
        let want = [5.0f32, -10.0, 32.0, 4.0];
        for (g, w) in at(3.0).iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{g} {w}");
        }
    }

    #[test]
    fn guiding_x0_or_v_predictions_is_guiding_eps() {
        // For fixed x_t and t, eps, x0 and v are affine in each other: combining two
        // networks' x0 (or v) outputs and converting gives the combination of their eps.
        let dev = Device::Cpu;
        let a = 0.3;
        let x = Tensor::new(&[[0.7f32, -1.2]], &dev).unwrap();
        let cond = Condition::class(Tensor::new(&[0u32], &dev).unwrap());
        let w = 2.5;
        for kind in [Prediction::X0, Prediction::V] {
            let m = Scaled {
                k: vec![1.7, 0.4],
                prediction: kind,
            };
            let g = ClassifierFree::new(&m, &cond, w).unwrap();
            let (eps_g, _) = to_eps_x0(kind, &g.predict(&x, 1.0).unwrap(), &x, a).unwrap();
            let eps_of = |c: &Condition| {
                to_eps_x0(kind, &m.predict_cond(&x, 1.0, c).unwrap(), &x, a)
                    .unwrap()
                    .0
            };
            let null = m.null_condition(&cond).unwrap();
            let (ec, eu) = (vals(&eps_of(&cond)), vals(&eps_of(&null)));
            for ((g, c), u) in vals(&eps_g).iter().zip(ec).zip(eu) {
                let want = u + w as f32 * (c - u);
                assert!((g - want).abs() < 1e-5, "{kind:?}: {g} vs {want}");
            }
        }
    }

    struct Linear {
        // log p(y | x) = sum(x) * y: gradient = y per element.
    }

    impl NoisyClassifier for Linear {
        fn log_prob_grad(&self, x: &Tensor, _t: f64, labels: &Tensor) -> Result<Tensor> {
            let y = labels.to_dtype(DType::F32)?.unsqueeze(1)?;
            Ok(x.ones_like()?.broadcast_mul(&y)?)
        }
        fn alphas_cumprod(&self) -> &[f64] {
            &[]
        }
        fn example_shape(&self) -> &[usize] {
            &[2]
        }
        fn num_classes(&self) -> usize {
            3
        }
    }

    #[test]
    fn classifier_guidance_shifts_eps_by_the_scaled_gradient() {
        let dev = Device::Cpu;
        let schedule = NoiseSchedule::new(&Default::default(), 100).unwrap();
        let m = Scaled {
            k: vec![1.0, 1.0],
            prediction: Prediction::Epsilon,
        };
        let cond = Condition::class(Tensor::new(&[0u32], &dev).unwrap());
        let inner = Conditioned {
            model: &m,
            cond: &cond,
        };
        let labels = Tensor::new(&[2u32], &dev).unwrap();
        let x = Tensor::new(&[[0.5f32, 1.0]], &dev).unwrap();
        let t = 40.0;
        let g = ClassifierGuided {
            model: &inner,
            classifier: &Linear {},
            labels: &labels,
            schedule: &schedule,
            scale: 1.5,
        };
        let s = (1.0 - schedule.alpha_bar_at(t)).sqrt() as f32;
        let got = vals(&g.predict(&x, t).unwrap());
        let want = [0.5 - 1.5 * s * 2.0, 1.0 - 1.5 * s * 2.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} {w}");
        }
    }
}
