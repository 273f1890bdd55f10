//! Progressive distillation of a diffusion model into a few-step sampler.
//!
//! Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models",
//! arXiv:2202.00512, Algorithm 2. A student, initialised from the teacher, learns to take
//! in one deterministic DDIM step what the teacher takes in two. For a student of N steps:
//!   t = i/N with i ~ U{1..N}, eps ~ N(0, I), z_t = alpha_t x + sigma_t eps,
//!   z_t'  = one teacher DDIM step from t  to t' = t - 0.5/N,
//!   z_t'' = one teacher DDIM step from t' to t'' = t - 1/N,
//!   x~    = (z_t'' - (sigma_t''/sigma_t) z_t) / (alpha_t'' - (sigma_t''/sigma_t) alpha_t),
//! and the student regresses x~ in its own parametrisation: x~ itself for x0-prediction,
//! (alpha_t z_t - x~) / sigma_t for v, (z_t - alpha_t x~) / sigma_t for epsilon. These are
//! the targets that make the student's own DDIM step from t land exactly on z_t''. The mean
//! squared error on v equals the paper's "SNR+1" weighting of the error on x (Sec. 4), which
//! is why a v-predicting teacher (and so student) is recommended; an epsilon student
//! amplifies its x0 error by 1/alpha_t, about 157 at t = T-1 on the linear schedule.
//!
//! genlab's models have T discrete timesteps, so continuous time t in [0, 1] maps to the
//! timestep T t - 1 (t = 0 is the clean data, timestep -1): the trailing grid of
//! `genlab_sampling::Spacing::Trailing`, on which an N-step grid lies inside the 2N-step
//! one. Between integer timesteps alpha_bar is interpolated (`NoiseSchedule::alpha_bar_at`)
//! and the network is given the fractional timestep. A student samples with DDIM (eta 0) on
//! the trailing N-step grid: [`DistilledDdpm`] fixes that spacing and prefers N steps.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};
use genlab_sampling::denoiser::to_eps_x0_per_example;
use genlab_sampling::schedule::trailing_timestep;
use genlab_sampling::{Prediction, Spacing};

use super::ddpm::{per_example, Ddpm, DdpmConfig};
use crate::likelihood::LogLikelihood;
use crate::sample::{DataSpace, Sample, SampleRequest, SampleResult};

/// One round of progressive distillation: the student's steps, its teacher, and the
/// network (the teacher's config, since the student starts as a copy of it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// The teacher's run directory or checkpoint file (a `ddpm` run or a `distill` round).
    pub teacher: String,
    /// Steps the student takes; the teacher takes twice as many.
    pub student_steps: usize,
    /// The network, schedule and parametrisation (copied from the teacher).
    pub ddpm: DdpmConfig,
}

impl DistillConfig {
    /// Steps of the teacher's grid (2 N).
    pub fn teacher_steps(&self) -> usize {
        2 * self.student_steps
    }

    pub fn validate(&self) -> Result<()> {
        self.ddpm.validate()?;
        let t = self.ddpm.timesteps;
        if self.student_steps == 0 || self.teacher_steps() > t {
            return Err(Error::Config(format!(
                "a distilled student needs 1 <= steps and twice its steps at most the model's \
                 {t} timesteps, got {} student steps (teacher {})",
                self.student_steps,
                self.teacher_steps()
            )));
        }
        Ok(())
    }
}

/// One deterministic DDIM step (Song et al. 2021, Eq. 12 with sigma = 0) of the model from
/// per-example timesteps `t` to `t_next` (-1: the clean data), in model space, without
/// gradients; for images x0 is clipped to [-1, 1] and eps recomputed from it, as in
/// `genlab_sampling::ddim::step`.
pub fn ddim_step_per_example(
    model: &Ddpm,
    z: &Tensor,
    t: &[f64],
    t_next: &[f64],
) -> Result<Tensor> {
    let tt = Tensor::from_vec(
        t.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        t.len(),
        z.device(),
    )?;
    let out = model.forward_t(z, &tt)?.detach();
    let (sa, s1a) = model.signal_noise(t, z)?;
    let (mut eps, mut x0) = to_eps_x0_per_example(model.config().prediction, &out, z, &sa, &s1a)?;
    if model.config().data.images {
        // Clip x0 and recompute eps from it, so that the pair still reconstructs z (as the
        // sampler's DDIM step does; t >= 0 keeps 1 - alpha_bar > 0).
        x0 = x0.clamp(-1f32, 1f32)?;
        eps = (z - x0.broadcast_mul(&sa)?)?.broadcast_div(&s1a)?;
    }
    let (sa_n, s1a_n) = model.signal_noise(t_next, z)?;
    Ok((x0.broadcast_mul(&sa_n)? + eps.broadcast_mul(&s1a_n)?)?)
}

/// The x~ of Algorithm 2 whose deterministic DDIM step from `z` (at alpha_bar `a_t`) lands
/// on `z_next` (at alpha_bar `a_next`), per example:
/// x~ = (z'' - (s''/s) z) / (a'' - (s''/s) a), with a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar).
pub fn two_step_target(z: &Tensor, z_next: &Tensor, a_t: &[f64], a_next: &[f64]) -> Result<Tensor> {
    let ratio: Vec<f64> = a_t
        .iter()
        .zip(a_next)
        .map(|(a, an)| ((1.0 - an) / (1.0 - a)).sqrt())
        .collect();
    let denom: Vec<f64> = a_t
        .iter()
        .zip(a_next)
        .zip(&ratio)
        .map(|((a, an), r)| an.sqrt() - r * a.sqrt())
        .collect();
    Ok((z_next - z.broadcast_mul(&per_example(&ratio, z)?)?)?
        .broadcast_div(&per_example(&denom, z)?)?)
}

/// The distillation loss of Algorithm 2 on a batch `x` in data space: the student (`student`,
/// taking `n` steps) regresses the teacher's two-step target. Returns the scalar loss with
/// its graph to the student's weights.
pub fn distillation_loss(
    student: &Ddpm,
    teacher: &Ddpm,
    n: usize,
    x: &Tensor,
    rng: &mut Rng,
) -> Result<Tensor> {
    if student.config() != teacher.config() {
        return Err(Error::Config(
            "the student must have the teacher's network, schedule and parametrisation".into(),
        ));
    }
    student.config().data.check_batch(x, "the distilled DDPM")?;
    let t_total = student.config().timesteps;
    if n == 0 || 2 * n > t_total {
        return Err(Error::InvalidInput(format!(
            "a distilled student needs 1 <= steps and 2 steps <= {t_total}, got {n}"
        )));
    }
    let x = student.to_model_space(&x.to_dtype(DType::F32)?)?;
    let b = x.dim(0)?;
    // i ~ U{1..N}: the student's step from grid point i to i-1, the teacher's 2i -> 2i-1 -> 2i-2.
    let idx: Vec<usize> = (0..b).map(|_| 1 + rng.below(n as u64) as usize).collect();
    let t: Vec<f64> = idx
        .iter()
        .map(|&i| trailing_timestep(t_total, 2 * i, 2 * n))
        .collect();
    let t_mid: Vec<f64> = idx
        .iter()
        .map(|&i| trailing_timestep(t_total, 2 * i - 1, 2 * n))
        .collect();
    let t_next: Vec<f64> = idx
        .iter()
        .map(|&i| trailing_timestep(t_total, 2 * i - 2, 2 * n))
        .collect();
    let eps = rng.normal_tensor(x.dims(), x.device())?;
    let (sa, s1a) = student.signal_noise(&t, &x)?;
    let z = (x.broadcast_mul(&sa)? + eps.broadcast_mul(&s1a)?)?;
    let z_mid = ddim_step_per_example(teacher, &z, &t, &t_mid)?;
    let z_next = ddim_step_per_example(teacher, &z_mid, &t_mid, &t_next)?;
    let a_t: Vec<f64> = t
        .iter()
        .map(|&v| student.schedule().alpha_bar_at(v))
        .collect();
    let a_next: Vec<f64> = t_next
        .iter()
        .map(|&v| student.schedule().alpha_bar_at(v))
        .collect();
    let x_tilde = two_step_target(&z, &z_next, &a_t, &a_next)?.detach();
    let target = match student.config().prediction {
        Prediction::X0 => x_tilde,
        Prediction::V => (z.broadcast_mul(&sa)? - x_tilde)?.broadcast_div(&s1a)?,
        Prediction::Epsilon => (&z - x_tilde.broadcast_mul(&sa)?)?.broadcast_div(&s1a)?,
    };
    let tt = Tensor::from_vec(
        t.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        b,
        x.device(),
    )?;
    let pred = student.forward_t(&z, &tt)?;
    Ok((pred - target.detach())?.sqr()?.mean_all()?)
}

/// A distilled student: a DDPM that samples on the trailing grid it was trained on, with
/// its own number of steps unless asked for another.
pub struct DistilledDdpm {
    pub model: Ddpm,
    pub steps: usize,
}

impl Sample for DistilledDdpm {
    fn sample(
        &self,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult> {
        let mut req = req.clone();
        // The student only learnt the timesteps of its trailing grid.
        if let Some(spacing) = self.fixed_spacing() {
            req.options.spacing = spacing;
        }
        self.model.sample(&req, rng, progress)
    }

    fn as_editor(&self) -> Option<&dyn crate::Edit> {
        Some(&self.model)
    }

    fn num_classes(&self) -> usize {
        self.model.num_classes()
    }

    fn data_space(&self) -> &DataSpace {
        self.model.data_space()
    }

    fn as_likelihood(&self) -> Option<&dyn LogLikelihood> {
        Some(&self.model)
    }

    fn preferred_steps(&self) -> Option<usize> {
        Some(self.steps)
    }

    fn fixed_spacing(&self) -> Option<Spacing> {
        Some(Spacing::Trailing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::ddpm::NetConfig;
    use candle_core::Device;
    use genlab_core::ParamStore;
    use genlab_nn::MlpDenoiserConfig;
    use genlab_sampling::{Denoiser, SamplerOptions};

    /// f32 network passes and f64 coefficients: the same quantity computed two ways agrees
    /// to this relative error.
    const F32_TOL: f64 = 2e-4;

    fn model(seed: u64, prediction: Prediction) -> (ParamStore, Ddpm) {
        let ps = ParamStore::new(seed, &Device::Cpu);
        let cfg = DdpmConfig {
            timesteps: 40,
            prediction,
            net: NetConfig::Mlp(MlpDenoiserConfig::default()),
            ..DdpmConfig::for_data(&DataSpace {
                shape: vec![2],
                images: false,
            })
        };
        let m = Ddpm::new(&cfg, ps.vb()).unwrap();
        (ps, m)
    }

    /// Brute force: the loss of Algorithm 2 for one example, with every step written out in
    /// f64 through the Denoiser interface (scalar timesteps, genlab's DDIM sampler step).
    fn loss_by_hand(student: &Ddpm, teacher: &Ddpm, n: usize, x: &[[f32; 2]], seed: u64) -> f64 {
        let mut rng = Rng::new(seed);
        let b = x.len();
        let t_total = student.config().timesteps;
        let idx: Vec<usize> = (0..b).map(|_| 1 + rng.below(n as u64) as usize).collect();
        let eps: Vec<Vec<f32>> = rng
            .normal_tensor(&[b, 2], &Device::Cpu)
            .unwrap()
            .to_vec2()
            .unwrap();
        let s = student.schedule();
        let mut total = 0.0;
        for (k, &i) in idx.iter().enumerate() {
            let tau = |j: usize| trailing_timestep(t_total, j, 2 * n);
            let (t, tm, tn) = (tau(2 * i), tau(2 * i - 1), tau(2 * i - 2));
            let (a, an) = (s.alpha_bar_at(t), s.alpha_bar_at(tn));
            let z: Vec<f64> = (0..2)
                .map(|j| a.sqrt() * x[k][j] as f64 + (1.0 - a).sqrt() * eps[k][j] as f64)
                .collect();
            let row = |v: &[f64]| Tensor::new(&[[v[0] as f32, v[1] as f32]], &Device::Cpu).unwrap();
            let ddim = |zv: &[f64], from: f64, to: f64| -> Vec<f64> {
                let (af, at) = (s.alpha_bar_at(from), s.alpha_bar_at(to));
                let out = teacher.predict(&row(zv), from).unwrap();
                let (e, x0) =
                    genlab_sampling::denoiser::to_eps_x0(teacher.prediction(), &out, &row(zv), af)
                        .unwrap();
                let (e, x0): (Vec<f32>, Vec<f32>) = (
                    e.squeeze(0).unwrap().to_vec1().unwrap(),
                    x0.squeeze(0).unwrap().to_vec1().unwrap(),
                );
                (0..2)
                    .map(|j| at.sqrt() * x0[j] as f64 + (1.0 - at).sqrt() * e[j] as f64)
                    .collect()
            };
            let zm = ddim(&z, t, tm);
            let zn = ddim(&zm, tm, tn);
            let r = ((1.0 - an) / (1.0 - a)).sqrt();
            let xt: Vec<f64> = (0..2)
                .map(|j| (zn[j] - r * z[j]) / (an.sqrt() - r * a.sqrt()))
                .collect();
            let pred: Vec<f32> = student
                .predict(&row(&z), t)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1()
                .unwrap();
            for j in 0..2 {
                let target = match student.prediction() {
                    Prediction::X0 => xt[j],
                    Prediction::V => (a.sqrt() * z[j] - xt[j]) / (1.0 - a).sqrt(),
                    Prediction::Epsilon => (z[j] - a.sqrt() * xt[j]) / (1.0 - a).sqrt(),
                };
                total += (pred[j] as f64 - target).powi(2);
            }
        }
        total / (2 * b) as f64
    }

    #[test]
    fn the_loss_equals_algorithm_2_written_out_by_hand() {
        let x = [[1.0f32, -0.5], [0.3, 2.0], [-1.5, 0.0], [0.0, 0.7]];
        for kind in [Prediction::Epsilon, Prediction::X0, Prediction::V] {
            let (_, teacher) = model(1, kind);
            let (_, student) = model(2, kind); // different weights: a non-zero loss
            for n in [1usize, 2, 5] {
                let xt = Tensor::new(&x, &Device::Cpu).unwrap();
                let got: f32 = distillation_loss(&student, &teacher, n, &xt, &mut Rng::new(7))
                    .unwrap()
                    .to_scalar()
                    .unwrap();
                let want = loss_by_hand(&student, &teacher, n, &x, 7);
                assert!(
                    (got as f64 - want).abs() < F32_TOL * want.max(1.0),
                    "{kind:?} n={n}: {got} vs {want}"
                );
            }
        }
    }

    /// A denoiser that predicts a fixed x0, whatever its input.
    struct FixedX0(Tensor);
    impl Denoiser for FixedX0 {
        fn predict(&self, _x: &Tensor, _t: f64) -> Result<Tensor> {
            Ok(self.0.clone())
        }
        fn prediction(&self) -> Prediction {
            Prediction::X0
        }
    }

    #[test]
    fn one_ddim_step_with_the_target_lands_on_the_teachers_two_step_result() {
        // The defining property of x~ (Salimans & Ho, Alg. 2), checked with the sampler's own
        // DDIM step: predicting x~ at t and stepping to t'' reproduces z''.
        let dev = Device::Cpu;
        let z = Tensor::new(&[[0.8f32, -1.2, 0.1]], &dev).unwrap();
        let z_next = Tensor::new(&[[0.5f32, -0.4, 0.9]], &dev).unwrap();
        for (a, an) in [(0.01, 0.3), (0.5, 0.9), (0.97, 1.0)] {
            let xt = two_step_target(&z, &z_next, &[a], &[an]).unwrap();
            let p = genlab_sampling::StepPair {
                t: 10.0,
                a_t: a,
                a_prev: an,
            };
            let stepped =
                genlab_sampling::ddim::step(&FixedX0(xt), &z, &p, 0.0, None, None).unwrap();
            let d: f32 = (stepped - &z_next)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!((d as f64) < F32_TOL, "alpha_bar {a} -> {an}: {d}");
        }
    }

    #[test]
    fn the_teachers_image_step_clips_like_the_samplers_ddim_step() {
        // Large inputs push the predicted x0 out of [-1, 1], so the clip is active.
        let ps = ParamStore::new(3, &Device::Cpu);
        let cfg = DdpmConfig {
            timesteps: 40,
            ..DdpmConfig::for_data(&DataSpace {
                shape: vec![1, 8, 8],
                images: true,
            })
        };
        let m = Ddpm::new(&cfg, ps.vb()).unwrap();
        let z = Rng::new(4)
            .normal_tensor(&[3, 1, 8, 8], &Device::Cpu)
            .unwrap()
            .affine(3.0, 0.0)
            .unwrap();
        let (t, tn) = (30.0, 12.0);
        let got = ddim_step_per_example(&m, &z, &[t; 3], &[tn; 3]).unwrap();
        let s = m.schedule();
        let p = genlab_sampling::StepPair {
            t,
            a_t: s.alpha_bar_at(t),
            a_prev: s.alpha_bar_at(tn),
        };
        let want = genlab_sampling::ddim::step(&m, &z, &p, 0.0, None, Some((-1.0, 1.0))).unwrap();
        let d: f32 = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!((d as f64) < F32_TOL, "{d}");
    }

    #[test]
    fn bad_step_counts_and_mismatched_models_are_errors() {
        let (_, a) = model(5, Prediction::V);
        let (_, e) = model(5, Prediction::Epsilon);
        let x = Tensor::new(&[[0.5f32, -1.0]], &Device::Cpu).unwrap();
        assert!(distillation_loss(&a, &a, 0, &x, &mut Rng::new(0)).is_err());
        let err = distillation_loss(&a, &a, 21, &x, &mut Rng::new(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("40"), "{err}");
        assert!(distillation_loss(&a, &e, 2, &x, &mut Rng::new(0)).is_err());
        let cfg = DistillConfig {
            teacher: "runs/t".into(),
            student_steps: 25,
            ddpm: a.config().clone(),
        };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn the_student_samples_on_the_trailing_grid_with_its_own_steps() {
        let (_, m) = model(6, Prediction::V);
        let s = DistilledDdpm { model: m, steps: 4 };
        assert_eq!(s.preferred_steps(), Some(4));
        let req = SampleRequest {
            n: 3,
            sampler: "ddim".into(),
            options: SamplerOptions {
                steps: 4,
                ..Default::default()
            },
            batch_size: 8,
            ..Default::default()
        };
        let got = s.sample(&req, &mut Rng::new(2), &mut |_, _| {}).unwrap();
        let mut trailing = req.clone();
        trailing.options.spacing = Spacing::Trailing;
        let want = s
            .model
            .sample(&trailing, &mut Rng::new(2), &mut |_, _| {})
            .unwrap();
        let linspace = s
            .model
            .sample(&req, &mut Rng::new(2), &mut |_, _| {})
            .unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&got.x), v(&want.x));
        assert_ne!(
            v(&got.x),
            v(&linspace.x),
            "the grids differ, so must the samples"
        );
        assert_eq!(got.nfe, 4);
    }
}
