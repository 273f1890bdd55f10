//! Adaptive Runge-Kutta 4(5) (Dormand-Prince) on the probability-flow ODE.
//!
//! Dormand & Prince 1980, "A family of embedded Runge-Kutta formulae", J. Comp. Appl. Math.
//! 6(1) (the RK5(4)7M tableau, FSAL), with the step-size control of Hairer, Norsett &
//! Wanner, "Solving ODEs I", Sec. II.4 (Eqs. 4.10-4.13: RMS error norm scaled by
//! atol + rtol max(|y|, |y_new|); h_new = h min(5, max(0.2, 0.9 err^(-1/5)))).
//! Applied as in Song et al. 2021 (arXiv:2011.13456, Sec. 4.3, Eq. 13; App. D.4 used scipy's
//! RK45 with rtol = atol = 1e-5) to the probability-flow ODE in the sigma-space form of
//! Karras et al. 2022 (arXiv:2206.00364, Eq. 1 with Eq. 3), integrated in u = ln sigma:
//!   dx/du = sigma (x - D(x; sigma)),  u from ln sigma(T-1) down to ln sigma(0),
//! then one Euler step from sigma(0) to 0 (x0 = D(x; sigma(0)), as every sigma sampler
//! here ends). `steps` is not used: the solver picks its own and reports its true NFE.

use candle_core::{DType, Tensor};

use genlab_core::{Error, Result, Rng};

use crate::options::require_positive;
use crate::registry::{SampleOutput, Sampler, SamplerOptions};
use crate::sigmas::{denoise, lincomb, sigma_at, to_sigma_space};
use crate::{Denoiser, NoiseSchedule, SolverOptions};

/// Attempted steps before giving up: far above the few hundred that rtol = 1e-10 needs on
/// smooth data, so only a stiff or broken model reaches it.
pub const MAX_RK45_STEPS: usize = 100_000;
/// First trial step as a fraction of the ln-sigma span; the controller adapts it at once.
const INITIAL_STEP_FRACTION: f64 = 0.05;

// Dormand-Prince RK5(4)7M: nodes c, stage matrix a, 5th-order weights b (= last row of a,
// so the 7th stage is the next step's first), and e = b - b* for the error estimate.
const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [&[f64]; 7] = [
    &[],
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

pub struct Rk45Sampler {
    opts: SamplerOptions,
    rtol: f64,
    atol: f64,
}

impl Rk45Sampler {
    pub fn new(opts: &SamplerOptions, solver: &SolverOptions) -> Result<Self> {
        require_positive("the RK45 relative tolerance rtol", solver.rtol)?;
        require_positive("the RK45 absolute tolerance atol", solver.atol)?;
        Ok(Self {
            opts: opts.clone(),
            rtol: solver.rtol,
            atol: solver.atol,
        })
    }
}

fn to_f64(x: Tensor) -> Result<f64> {
    Ok(x.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Integrates dx/du = f(x, u) from `u0` to `u_end` (either direction) with Dormand-Prince
/// RK5(4) and the step-size control of the module header. Returns the solution at `u_end`,
/// the slope f there (the FSAL stage), and the number of attempted steps; `what` names the
/// caller in errors, `progress(permille, 1000)` reports the share of the span covered.
#[allow(clippy::too_many_arguments)]
pub fn dormand_prince(
    f: &mut dyn FnMut(&Tensor, f64) -> Result<Tensor>,
    x: Tensor,
    u0: f64,
    u_end: f64,
    rtol: f64,
    atol: f64,
    what: &str,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Tensor, Tensor, usize)> {
    let span = u_end - u0;
    let dir = span.signum();
    let mut x = x;
    let (mut u, mut h) = (u0, span * INITIAL_STEP_FRACTION);
    let mut k1 = f(&x, u)?;
    let mut attempts = 0;
    while (u_end - u) * dir > 0.0 {
        attempts += 1;
        if attempts > MAX_RK45_STEPS {
            return Err(Error::Numeric(format!(
                "{what} took more than {MAX_RK45_STEPS} steps at sigma {:.6} (rtol {rtol}, atol \
                 {atol}): the ODE is too stiff for these tolerances",
                u.exp(),
            )));
        }
        let to_end = (u + h - u_end) * dir >= 0.0;
        if to_end {
            h = u_end - u;
        }
        // Stages k[0..7]; the 7th is evaluated at the 5th-order solution (FSAL).
        let mut k = vec![k1.clone()];
        let mut y_new = x.clone();
        for i in 1..7 {
            let terms: Vec<(f64, &Tensor)> = A[i].iter().map(|&a| a * h).zip(&k).collect();
            let xi = lincomb(&x, &terms)?;
            k.push(f(&xi, u + C[i] * h)?);
            y_new = xi;
        }
        let err_terms: Vec<(f64, &Tensor)> = E.iter().map(|&e| e * h).zip(&k).collect();
        let err_vec = lincomb(&x.zeros_like()?, &err_terms)?;
        let scale = ((x.abs()?.maximum(&y_new.abs()?)? * rtol)? + atol)?;
        let err = to_f64((err_vec / scale)?.sqr()?.mean_all()?)?.sqrt();
        if !err.is_finite() {
            return Err(Error::Numeric(format!(
                "{what} produced NaN or infinity at step {attempts} (sigma {:.6})",
                u.exp()
            )));
        }
        if err <= 1.0 {
            u = if to_end { u_end } else { u + h };
            x = y_new;
            k1 = k.swap_remove(6);
            if !to_f64(x.sum_all()?)?.is_finite() {
                return Err(Error::Numeric(format!(
                    "{what} produced NaN or infinity at step {attempts} (sigma {:.6})",
                    u.exp()
                )));
            }
            progress(((u - u0) / span * 1000.0).round() as usize, 1000);
        }
        let factor = if err == 0.0 {
            5.0
        } else {
            0.9 * err.powf(-0.2)
        };
        h *= factor
            .clamp(0.2, 5.0)
            .min(if err <= 1.0 { 5.0 } else { 1.0 });
        if h.abs() < span.abs() * 1e-14 {
            return Err(Error::Numeric(format!(
                "{what}: step size underflow at sigma {:.6}",
                u.exp()
            )));
        }
    }
    Ok((x, k1, attempts))
}

impl Sampler for Rk45Sampler {
    fn sample(
        &self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        x_t: Tensor,
        _rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleOutput> {
        let (s_min, s_max) = (sigma_at(schedule, 0.0), sigma_at(schedule, f64::MAX));
        let clip = self.opts.clip_x0;
        let mut nfe = 0;
        // dx/du at (x, u): sigma * d = sigma * (x - D) / sigma = x - D.
        let mut f = |x: &Tensor, u: f64| -> Result<Tensor> {
            nfe += 1;
            let (d, _) = denoise(model, schedule, x, u.exp(), clip)?;
            Ok((d * u.exp())?)
        };
        let x = to_sigma_space(&x_t, s_max)?;
        let (x, k1, _) = dormand_prince(
            &mut f,
            x,
            s_max.ln(),
            s_min.ln(),
            self.rtol,
            self.atol,
            "rk45 sampling",
            progress,
        )?;
        // Final Euler step sigma(0) -> 0 with the FSAL slope k1 = sigma d = x - D: x0 = x - k1.
        let x = (&x - k1)?;
        Ok(SampleOutput { x, nfe })
    }
}
