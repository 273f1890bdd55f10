//! GELU with the exact normal CDF, forward and backward each in one vectorised pass.
//!
//! Hendrycks & Gimpel 2016, "Gaussian Error Linear Units (GELUs)" (arXiv:1606.08415), Eq. 1:
//! `gelu(x) = x·Φ(x)`, `Φ(x) = erfc(-x/√2)/2`; backward `gelu'(x) = Φ(x) + x·φ(x)`,
//! `φ(x) = exp(-x²/2)/√(2π)`.
//!
//! `erfc` is the Chebyshev-fitted form of Press et al., "Numerical Recipes" (2nd ed.,
//! Sec. 6.2, `erfcc`: fractional error below 1.2e-7 for every argument), on the branch-free
//! `exp` of [`crate::simd`]; in f32 the result is within a few 1e-7 of the exact function
//! (tested against candle's `gelu_erf`).
//!
//! Why a kernel: candle 0.11 evaluates `erf` one scalar libm call at a time, forward and
//! again backward; in a transformer's MLP this was over half of a CLIP training step.

use candle_core::{Result, Tensor};

use crate::op::{assert_same_len, GradFrom, Pointwise};
use crate::simd::{exp_approx, simd_dispatch};

/// `1/√2`.
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1/√(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `Φ(x)`, the standard normal CDF.
// The coefficients as Numerical Recipes prints them (f32 rounds the last digits).
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn phi_cdf(x: f32) -> f32 {
    // u = -x/√2; erfc(u) = t·exp(-u² + P(t)) for u >= 0 with t = 1/(1 + |u|/2), and
    // erfc(u) = 2 - erfc(-u) below 0. Φ(x) = erfc(u)/2.
    let z = (x * FRAC_1_SQRT_2).abs();
    let t = 1.0 / 0.5f32.mul_add(z, 1.0);
    let mut p = 0.170_872_77_f32;
    p = p.mul_add(t, -0.822_152_23);
    p = p.mul_add(t, 1.488_515_87);
    p = p.mul_add(t, -1.135_203_98);
    p = p.mul_add(t, 0.278_868_07);
    p = p.mul_add(t, -0.186_288_06);
    p = p.mul_add(t, 0.096_784_18);
    p = p.mul_add(t, 0.374_091_96);
    p = p.mul_add(t, 1.000_023_68);
    p = p.mul_add(t, -1.265_512_23);
    let half_erfc = 0.5 * t * exp_approx((-z).mul_add(z, p));
    // x <= 0: u >= 0, Φ = erfc(u)/2; x > 0: Φ = 1 - erfc(-u)/2.
    if x > 0.0 {
        1.0 - half_erfc
    } else {
        half_erfc
    }
}

#[inline(always)]
fn gelu_body(x: &[f32], y: &mut [f32]) {
    assert_same_len("gelu", &[x.len(), y.len()]);
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x * phi_cdf(x);
    }
}

simd_dispatch!(
    /// `y = x·Φ(x)` elementwise, the widest vector unit the CPU has.
    pub fn gelu_erf_slice(x: &[f32], y: &mut [f32]) => gelu_body
);

#[inline(always)]
fn gelu_grad_body(x: &[f32], g: &[f32], dx: &mut [f32]) {
    assert_same_len("gelu backward", &[x.len(), g.len(), dx.len()]);
    for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
        let pdf = FRAC_1_SQRT_2PI * exp_approx(-0.5 * x * x);
        *d = g * x.mul_add(pdf, phi_cdf(x));
    }
}

simd_dispatch!(
    /// `dx = g·(Φ(x) + x·φ(x))` elementwise.
    pub fn gelu_erf_grad_slice(x: &[f32], g: &[f32], dx: &mut [f32]) => gelu_grad_body
);

const GELU: Pointwise = Pointwise {
    forward_name: "genlab-gelu-erf",
    grad_name: "genlab-gelu-erf-grad",
    forward: gelu_erf_slice,
    grad: gelu_erf_grad_slice,
    grad_from: GradFrom::Input,
};

/// GELU (exact CDF) of any tensor: the one-pass kernels for f32 on the CPU
/// (differentiable once), candle's own `gelu_erf` otherwise.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    GELU.apply_or(x, Tensor::gelu_erf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// f32 evaluation of a 1.2e-7-accurate erfc: a few f32 ulps of the exact values.
    const TOL: f64 = 1e-6;

    fn grid() -> Vec<f32> {
        (-1200..=1200)
            .map(|i| i as f32 * 0.01)
            .chain([-40.0, -9.5, 9.5, 40.0])
            .collect()
    }

    #[test]
    fn forward_matches_candles_exact_gelu() {
        let x = Tensor::new(grid().as_slice(), &Device::Cpu).unwrap();
        let got = gelu_erf(&x).unwrap().to_vec1::<f32>().unwrap();
        let want = x
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .gelu_erf()
            .unwrap();
        let want = want.to_vec1::<f64>().unwrap();
        for ((g, w), x) in got.iter().zip(&want).zip(grid()) {
            assert!(
                (*g as f64 - w).abs() < TOL * (1.0 + w.abs()),
                "gelu({x}) = {g}, want {w}"
            );
        }
    }

    #[test]
    fn backward_matches_the_closed_form() {
        let xs = grid();
        let x = Var::new(xs.as_slice(), &Device::Cpu).unwrap();
        let g = gelu_erf(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let got = g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        for (d, &x) in got.iter().zip(&xs) {
            let x = x as f64;
            let cdf = 0.5 * libm_erfc(-x / std::f64::consts::SQRT_2);
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want = cdf + x * pdf;
            assert!(
                (*d as f64 - want).abs() < TOL * (1.0 + want.abs()),
                "gelu'({x}) = {d}, want {want}"
            );
        }
    }

    /// erfc in f64 from candle's f64 `erf` (an independent implementation).
    fn libm_erfc(u: f64) -> f64 {
        let t = Tensor::new(&[u], &Device::Cpu).unwrap().erf().unwrap();
        1.0 - t.to_vec1::<f64>().unwrap()[0]
    }
}
