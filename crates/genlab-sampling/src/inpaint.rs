//! Inpainting with an unconditional (or any) diffusion model: generate the unknown part of
//! an image so that it agrees with the known part.
//!
//! - Replacement (Song et al. 2021, "Score-Based Generative Modeling through Stochastic
//!   Differential Equations", arXiv:2011.13456, App. I.2; Lugmayr et al. 2022, Eq. 8-9):
//!   every ancestral step denoises the whole image, then the known region is replaced by the
//!   known image noised to the same level, x_{t-1} = m * q(x_{t-1} | x_0) + (1 - m) *
//!   p(x_{t-1} | x_t).
//! - RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion
//!   Probabilistic Models", arXiv:2201.09865, Algorithm 1 with the jump schedule of
//!   Sec. 4.3): after every `jump_length` denoising steps the image is noised back up by
//!   `jump_length` steps (x_t ~ q(x_t | x_{t-1}), Eq. 1) and denoised again, `resample`
//!   times in all, so the generated part harmonises with the known part.
//!
//! Steps run on a respaced grid of the model's timesteps (any [`Spacing`]); a denoising
//! step is DDIM with eta = 1, DDPM's ancestral posterior on that grid. The known region's
//! noise is drawn from its own generator, forked from `rng` without advancing it, so with an
//! empty mask the run is exactly DDIM(eta = 1) from the same generator, and with a full mask
//! it returns the known image.

use candle_core::Tensor;

use genlab_core::{Error, Result, Rng};

use crate::registry::{check_finite, noise_like, step_pairs, SampleOutput, StepPair};
use crate::{Denoiser, NoiseSchedule, Spacing};

/// How to inpaint.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InpaintOptions {
    /// Denoising steps on the respaced grid.
    pub steps: usize,
    /// RePaint: denoising steps between two jumps back up (1 with `resample` 1: no jumps).
    pub jump_length: usize,
    /// RePaint: how often each stretch of `jump_length` steps is denoised (1: replacement).
    pub resample: usize,
    pub spacing: Spacing,
    /// Clamp the predicted x0 into this range (images: [-1, 1]).
    pub clip_x0: Option<(f64, f64)>,
}

impl Default for InpaintOptions {
    fn default() -> Self {
        Self::replacement(250)
    }
}

impl InpaintOptions {
    /// The replacement method over `steps` steps.
    pub fn replacement(steps: usize) -> Self {
        Self {
            steps,
            jump_length: 1,
            resample: 1, // no jumps back: plain replacement
            spacing: Spacing::Linspace,
            clip_x0: None,
        }
    }

    /// RePaint over `steps` steps with Lugmayr et al.'s jump length 10 and 10 resamplings
    /// (Sec. 4.3, for 250 steps).
    pub fn repaint(steps: usize) -> Self {
        Self {
            jump_length: 10,
            resample: 10,
            ..Self::replacement(steps)
        }
    }

    fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::setting("steps", "must be at least 1, got 0"));
        }
        if self.jump_length == 0 || self.resample == 0 {
            return Err(Error::InvalidInput(format!(
                "RePaint's jump length and resample count must be at least 1, got {} and {}",
                self.jump_length, self.resample
            )));
        }
        Ok(())
    }
}

/// The levels a RePaint run visits, as indices into the step grid's noise levels (0 the
/// clean data, `k` the noisiest): Lugmayr et al.'s `get_schedule_jump` with their timestep t
/// as level t + 1. Jump points sit at levels 1, 1 + jump, ... below k - jump + 1; after
/// reaching one, the run goes back up `jump_length` levels and down again, `resample - 1`
/// times.
pub fn jump_schedule(k: usize, jump_length: usize, resample: usize) -> Vec<usize> {
    let mut jumps: Vec<usize> = vec![0; k + 1];
    if resample > 1 {
        let mut j = 0;
        while j + jump_length < k {
            jumps[j + 1] = resample - 1;
            j += jump_length;
        }
    }
    let mut levels = vec![k];
    let mut t = k;
    while t > 1 {
        t -= 1;
        levels.push(t);
        if jumps[t] > 0 {
            jumps[t] -= 1;
            for _ in 0..jump_length {
                t += 1;
                levels.push(t);
            }
        }
    }
    levels.push(0);
    levels
}

/// The known image and where it is known.
pub struct Known<'a> {
    /// The image in the model's space, `[B, ...]` (or `[1, ...]`, broadcast).
    pub x0: &'a Tensor,
    /// 1 where known, 0 where generated; broadcasts over `x0` (e.g. `[B, 1, H, W]`).
    pub mask: &'a Tensor,
}

/// Inpaints from the noise `x_t` (shape `[B, ...]`): returns the image in the model's space
/// and the network evaluations used.
pub fn inpaint(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    mut x: Tensor,
    known: &Known,
    opts: &InpaintOptions,
    rng: &mut Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SampleOutput> {
    opts.validate()?;
    let pairs = step_pairs(
        schedule,
        &crate::SamplerOptions {
            steps: opts.steps,
            spacing: opts.spacing,
            ..Default::default()
        },
    )?;
    let k = pairs.len();
    // levels[i]: (timestep, alpha_bar) of noise level i; level 0 is the clean data.
    let mut levels = vec![(-1.0, 1.0)];
    for p in pairs.iter().rev() {
        levels.push((p.t, p.a_t));
    }
    let mask = known.mask.broadcast_as(x.dims())?.to_dtype(x.dtype())?;
    let unknown = mask.affine(-1.0, 1.0)?;
    let x0 = known.x0.broadcast_as(x.dims())?.to_dtype(x.dtype())?;
    // The known region's noise: its own stream, forked without advancing `rng`.
    let s = rng.state();
    let mut known_rng = Rng::new(s[0] ^ s[2].rotate_left(17) ^ KNOWN_STREAM);
    let path = jump_schedule(k, opts.jump_length, opts.resample);
    let total = path.windows(2).filter(|w| w[1] < w[0]).count();
    let mut nfe = 0;
    for w in path.windows(2) {
        let (from, to) = (w[0], w[1]);
        let (t_from, a_from) = levels[from];
        let (_, a_to) = levels[to];
        if to < from {
            // Denoise the whole image one level (DDIM, eta = 1), then put back the known part
            // at the new level.
            let p = StepPair {
                t: t_from,
                a_t: a_from,
                a_prev: a_to,
            };
            let z = if to > 0 {
                Some(noise_like(rng, &x)?)
            } else {
                None
            };
            let gen = crate::ddim::step(model, &x, &p, 1.0, z.as_ref(), opts.clip_x0)?;
            let kn = if to == 0 {
                x0.clone()
            } else {
                ((&x0 * a_to.sqrt())? + (noise_like(&mut known_rng, &x)? * (1.0 - a_to).sqrt())?)?
            };
            x = ((kn * &mask)? + (gen * &unknown)?)?;
            nfe += 1;
            check_finite(&x, "inpaint", nfe, t_from)?;
            progress(nfe, total);
        } else {
            // Noise back up one level: x_to ~ q(x_to | x_from) (Lugmayr et al. Eq. 1 on the
            // respaced grid).
            let r = a_to / a_from;
            x = ((&x * r.sqrt())? + (noise_like(rng, &x)? * (1.0 - r).sqrt())?)?;
        }
    }
    Ok(SampleOutput { x, nfe })
}

/// Mixed into the known region's generator seed, so its stream differs from `rng`'s.
const KNOWN_STREAM: u64 = 0x6b6e_6f77_6e5f_7267; // "known_rg"

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_support::GaussianDenoiser;
    use crate::{build_sampler, BetaSchedule, SamplerOptions};
    use candle_core::Device;

    #[test]
    fn the_jump_schedule_matches_repaints() {
        // Plain replacement: straight down.
        assert_eq!(jump_schedule(4, 1, 1), vec![4, 3, 2, 1, 0]);
        // k = 6, jump 2, resample 2: RePaint's t in {0, 2} (range(0, 6 - 2, 2)) are levels
        // 1 and 3; each is followed by one trip back up 2 levels.
        assert_eq!(
            jump_schedule(6, 2, 2),
            vec![6, 5, 4, 3, 4, 5, 4, 3, 2, 1, 2, 3, 2, 1, 0]
        );
        assert_eq!(jump_schedule(1, 10, 10), vec![1, 0]);
        // Lugmayr et al.'s 250 steps, jump 10, 10 resamplings: 24 jump points (t = 0, 10,
        // ..., 230), each adding 9 trips of 10 denoising steps.
        let path = jump_schedule(250, 10, 10);
        let down = path.windows(2).filter(|w| w[1] < w[0]).count();
        assert_eq!(down, 250 + 24 * 9 * 10);
        assert_eq!((path[0], *path.last().unwrap()), (250, 0));
    }

    fn setup() -> (NoiseSchedule, Tensor, Tensor) {
        let sched = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        let x = Rng::new(5).normal_tensor(&[16, 3], &Device::Cpu).unwrap();
        let x0 = Tensor::new(&[0.3f32, -0.7, 0.9], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        (sched, x, x0)
    }

    #[test]
    fn an_empty_mask_is_plain_ancestral_sampling_and_a_full_mask_the_known_image() {
        let (sched, x, x0) = setup();
        let model = GaussianDenoiser {
            mu: 0.2,
            std: 0.5,
            schedule: &sched,
        };
        let opts = InpaintOptions::replacement(40);
        let empty = Tensor::zeros((1, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let known = Known {
            x0: &x0,
            mask: &empty,
        };
        let got = inpaint(
            &model,
            &sched,
            x.clone(),
            &known,
            &opts,
            &mut Rng::new(8),
            &mut |_, _| {},
        )
        .unwrap();
        let ddim = build_sampler(
            "ddim",
            &SamplerOptions {
                steps: 40,
                eta: 1.0,
                ..Default::default()
            },
        )
        .unwrap();
        let want = ddim
            .sample(&model, &sched, x.clone(), &mut Rng::new(8), &mut |_, _| {})
            .unwrap();
        let d: f32 = (got.x - want.x)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0);
        assert_eq!(got.nfe, 40);
        let full = empty.ones_like().unwrap();
        let known = Known {
            x0: &x0,
            mask: &full,
        };
        let got = inpaint(
            &model,
            &sched,
            x,
            &known,
            &InpaintOptions::repaint(40),
            &mut Rng::new(8),
            &mut |_, _| {},
        )
        .unwrap();
        let d: f32 = (got.x - x0.broadcast_as((16, 3)).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0);
    }

    #[test]
    fn known_coordinates_pull_the_generated_ones_towards_their_conditional() {
        // Data: x = (a, a + 0.05 e) with a ~ N(0, 1): the second coordinate is the first plus
        // a little noise, so given the first (1.5) the second is 1.5 too. An exact denoiser
        // for this 2-D Gaussian (covariance [[1, 1], [1, 1.0025]]) is closed-form.
        // Replacement is known to fall short of the exact conditional (Lugmayr et al. Sec.
        // 4.2: the known part only enters through its noised copy); RePaint's resampling
        // must get closer.
        struct Correlated<'a>(&'a NoiseSchedule);
        impl Denoiser for Correlated<'_> {
            fn predict(&self, x: &Tensor, t: f64) -> Result<Tensor> {
                // eps = sqrt(1-a) * Sigma_t^-1 x_t, Sigma_t = a C + (1 - a) I.
                let a = self.0.alpha_bar_at(t);
                let (c11, c12, c22) = (a + 1.0 - a, a, a * 1.0025 + 1.0 - a);
                let det = c11 * c22 - c12 * c12;
                let inv = [c22 / det, -c12 / det, -c12 / det, c11 / det];
                let w = Tensor::new(
                    &[
                        [inv[0] as f32, inv[1] as f32],
                        [inv[2] as f32, inv[3] as f32],
                    ],
                    x.device(),
                )?;
                Ok((x.matmul(&w)? * (1.0 - a).sqrt())?)
            }
        }
        let sched = NoiseSchedule::new(&BetaSchedule::default(), 1000).unwrap();
        let x = Rng::new(2).normal_tensor(&[400, 2], &Device::Cpu).unwrap();
        let x0 = Tensor::new(&[[1.5f32, 0.0]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1f32, 0.0]], &Device::Cpu).unwrap();
        let known = Known {
            x0: &x0,
            mask: &mask,
        };
        let mut errors = vec![];
        for opts in [
            InpaintOptions::replacement(100),
            InpaintOptions::repaint(100),
        ] {
            let out = inpaint(
                &Correlated(&sched),
                &sched,
                x.clone(),
                &known,
                &opts,
                &mut Rng::new(3),
                &mut |_, _| {},
            )
            .unwrap();
            let v: Vec<Vec<f32>> = out.x.to_vec2().unwrap();
            let mean2 = v.iter().map(|r| r[1] as f64).sum::<f64>() / v.len() as f64;
            assert!(v.iter().all(|r| r[0] == 1.5));
            errors.push((mean2 - 1.5).abs());
        }
        // Unconditional samples would average 0 (error 1.5).
        assert!(errors[0] < 0.3, "replacement: {errors:?}");
        assert!(errors[1] < 0.5 * errors[0], "repaint: {errors:?}");
    }

    #[test]
    fn bad_options_are_clear_errors() {
        let (sched, x, x0) = setup();
        let model = GaussianDenoiser {
            mu: 0.0,
            std: 1.0,
            schedule: &sched,
        };
        let m = x0.ones_like().unwrap();
        let known = Known { x0: &x0, mask: &m };
        let mut bad = InpaintOptions::repaint(10);
        bad.jump_length = 0;
        assert!(inpaint(
            &model,
            &sched,
            x.clone(),
            &known,
            &bad,
            &mut Rng::new(0),
            &mut |_, _| {}
        )
        .is_err());
        let e = inpaint(
            &model,
            &sched,
            x,
            &known,
            &InpaintOptions::replacement(0),
            &mut Rng::new(0),
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("steps"), "{e}");
    }
}
