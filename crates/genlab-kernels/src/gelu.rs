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
//!
//! The same holds for the two sigmoid-shaped variants, both written `x·σ(a(x))`:
//! - the tanh approximation (same paper, Sec. 2; DiT's MLP):
//!   `½x(1 + tanh u) = x·σ(2u)`, `u = √(2/π)(x + 0.044715 x³)`, so no `1 + tanh` cancels;
//!   candle computed it with scalar `powf` and `tanhf` (a third of a DiT training step);
//! - OpenAI CLIP's "QuickGELU" `x·σ(1.702 x)` (composed of four tensor ops before).
//!
//! Backward of `x·σ(a)`: `σ(a) + x·σ(a)(1 - σ(a))·a'(x)`.

use candle_core::{Result, Tensor};

use crate::op::{assert_same_len, GradFrom, Pointwise};
use crate::simd::{exp_approx, sigmoid_f32, simd_dispatch};

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

/// `2√(2/π)`.
const TWO_SQRT_2_OVER_PI: f32 = 1.595_769;
/// The cubic coefficient of the tanh approximation.
const GELU_TANH_CUBIC: f32 = 0.044_715;
/// QuickGELU's slope.
const QUICK_GELU_SLOPE: f32 = 1.702;

/// `2u` of the tanh approximation and its derivative in `x`.
#[inline(always)]
fn tanh_arg(x: f32) -> (f32, f32) {
    let x2 = x * x;
    let a = TWO_SQRT_2_OVER_PI * x * GELU_TANH_CUBIC.mul_add(x2, 1.0);
    let da = TWO_SQRT_2_OVER_PI * (3.0 * GELU_TANH_CUBIC).mul_add(x2, 1.0);
    (a, da)
}

#[inline(always)]
fn gelu_tanh_body(x: &[f32], y: &mut [f32]) {
    assert_same_len("gelu (tanh)", &[x.len(), y.len()]);
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x * sigmoid_f32(tanh_arg(x).0);
    }
}

simd_dispatch!(
    /// `y = x·σ(2u)` (GELU's tanh approximation) elementwise.
    pub fn gelu_tanh_slice(x: &[f32], y: &mut [f32]) => gelu_tanh_body
);

#[inline(always)]
fn gelu_tanh_grad_body(x: &[f32], g: &[f32], dx: &mut [f32]) {
    assert_same_len("gelu (tanh) backward", &[x.len(), g.len(), dx.len()]);
    for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
        let (a, da) = tanh_arg(x);
        let s = sigmoid_f32(a);
        *d = g * (x * s * (1.0 - s)).mul_add(da, s);
    }
}

simd_dispatch!(
    /// `dx = g·(σ(2u) + x·σ(2u)(1 - σ(2u))·2u')` elementwise.
    pub fn gelu_tanh_grad_slice(x: &[f32], g: &[f32], dx: &mut [f32]) => gelu_tanh_grad_body
);

const GELU_TANH: Pointwise = Pointwise {
    forward_name: "genlab-gelu-tanh",
    grad_name: "genlab-gelu-tanh-grad",
    forward: gelu_tanh_slice,
    grad: gelu_tanh_grad_slice,
    grad_from: GradFrom::Input,
};

/// GELU's tanh approximation (candle's `gelu`) of any tensor: the one-pass kernels for f32
/// on the CPU (differentiable once), candle's own `gelu` otherwise.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    GELU_TANH.apply_or(x, Tensor::gelu)
}

#[inline(always)]
fn quick_gelu_body(x: &[f32], y: &mut [f32]) {
    assert_same_len("quick gelu", &[x.len(), y.len()]);
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x * sigmoid_f32(QUICK_GELU_SLOPE * x);
    }
}

simd_dispatch!(
    /// `y = x·σ(1.702 x)` elementwise.
    pub fn quick_gelu_slice(x: &[f32], y: &mut [f32]) => quick_gelu_body
);

#[inline(always)]
fn quick_gelu_grad_body(x: &[f32], g: &[f32], dx: &mut [f32]) {
    assert_same_len("quick gelu backward", &[x.len(), g.len(), dx.len()]);
    for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
        let s = sigmoid_f32(QUICK_GELU_SLOPE * x);
        *d = g * (x * s * (1.0 - s)).mul_add(QUICK_GELU_SLOPE, s);
    }
}

simd_dispatch!(
    /// `dx = g·(σ(1.702 x) + 1.702 x·σ(1 - σ))` elementwise.
    pub fn quick_gelu_grad_slice(x: &[f32], g: &[f32], dx: &mut [f32]) => quick_gelu_grad_body
);

const QUICK_GELU: Pointwise = Pointwise {
    forward_name: "genlab-quick-gelu",
    grad_name: "genlab-quick-gelu-grad",
    forward: quick_gelu_slice,
    grad: quick_gelu_grad_slice,
    grad_from: GradFrom::Input,
};

/// `x·σ(1.702 x)` composed of tensor ops (other dtypes and devices).
fn quick_gelu_composed(x: &Tensor) -> Result<Tensor> {
    x.mul(&((x * -(QUICK_GELU_SLOPE as f64))?.exp()? + 1.0)?.recip()?)
}

/// OpenAI CLIP's QuickGELU `x·σ(1.702 x)` of any tensor: the one-pass kernels for f32 on
/// the CPU (differentiable once), composed tensor ops otherwise.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    QUICK_GELU.apply_or(x, quick_gelu_composed)
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

    /// `(f(x), f'(x))` in f64 for `x·σ(a(x))`, from its own closed form.
    fn sigmoid_gelu_f64(x: f64, a: f64, da: f64) -> (f64, f64) {
        let s = 1.0 / (1.0 + (-a).exp());
        (x * s, s + x * s * (1.0 - s) * da)
    }

    /// The tanh approximation written with `tanh` (candle's form), and its derivative.
    fn gelu_tanh_f64(x: f64) -> (f64, f64) {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let u = c * (x + 0.044715 * x * x * x);
        let t = u.tanh();
        let du = c * (1.0 + 3.0 * 0.044715 * x * x);
        (
            0.5 * x * (1.0 + t),
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du,
        )
    }

    fn check_pointwise(
        name: &str,
        f: fn(&Tensor) -> Result<Tensor>,
        want: impl Fn(f64) -> (f64, f64),
    ) {
        let xs = grid();
        let x = Var::new(xs.as_slice(), &Device::Cpu).unwrap();
        let y = f(x.as_tensor()).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let y = y.to_vec1::<f32>().unwrap();
        let d = g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        for ((&x, y), d) in xs.iter().zip(y).zip(d) {
            let (wy, wd) = want(x as f64);
            assert!(
                (y as f64 - wy).abs() < TOL * (1.0 + wy.abs()),
                "{name}({x}) = {y}, want {wy}"
            );
            assert!(
                (d as f64 - wd).abs() < TOL * (1.0 + wd.abs()),
                "{name}'({x}) = {d}, want {wd}"
            );
        }
    }

    #[test]
    fn gelu_tanh_matches_the_tanh_form_and_candles_gelu() {
        check_pointwise("gelu_tanh", gelu_tanh, gelu_tanh_f64);
        // The sigmoid form is the tanh form.
        for x in [-3.0, -0.5, 0.0, 1e-4, 0.7, 5.0] {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let a = 2.0 * c * (x + 0.044715 * x * x * x);
            let da = 2.0 * c * (1.0 + 3.0 * 0.044715 * x * x);
            let (y, d) = sigmoid_gelu_f64(x, a, da);
            let (wy, wd) = gelu_tanh_f64(x);
            assert!((y - wy).abs() < 1e-12 && (d - wd).abs() < 1e-12, "{x}");
        }
        // candle's own f64 `gelu` is the same function.
        let x = Tensor::new(grid().as_slice(), &Device::Cpu).unwrap();
        let got = gelu_tanh(&x).unwrap().to_vec1::<f32>().unwrap();
        let want = x.to_dtype(candle_core::DType::F64).unwrap().gelu().unwrap();
        for (g, w) in got.iter().zip(want.to_vec1::<f64>().unwrap()) {
            assert!((*g as f64 - w).abs() < TOL * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    #[test]
    fn quick_gelu_matches_its_closed_form_and_the_composed_ops() {
        check_pointwise("quick_gelu", quick_gelu, |x| {
            sigmoid_gelu_f64(x, 1.702 * x, 1.702)
        });
        let x = Tensor::new(grid().as_slice(), &Device::Cpu).unwrap();
        let got = quick_gelu(&x).unwrap().to_vec1::<f32>().unwrap();
        let x64 = x.to_dtype(candle_core::DType::F64).unwrap();
        let want = quick_gelu_composed(&x64).unwrap().to_vec1::<f64>().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < TOL * (1.0 + w.abs()), "{g} vs {w}");
        }
    }
}
