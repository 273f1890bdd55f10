//! SiLU (sigmoid-weighted linear unit), forward and backward each in one pass.
//!
//! Elfwing, Uchibe & Doya 2018, "Sigmoid-Weighted Linear Units for Neural Network Function
//! Approximation in Reinforcement Learning" (arXiv:1702.03118); Hendrycks & Gimpel's GELU
//! paper calls it SiLU. `silu(x) = x·σ(x)`, `silu'(x) = σ(x)·(1 + x·(1 - σ(x)))`.
//!
//! Why a kernel: candle 0.11 evaluates `exp` one scalar libm call at a time, and its SiLU
//! backward is six tensor ops (six passes and five allocations). Here each direction is one
//! pass with the branch-free `exp` of [`crate::simd`], vectorised for the CPU's widest unit.

use candle_core::{Result, Tensor};

use crate::op::{assert_same_len, GradFrom, Pointwise};
use crate::simd::{sigmoid_f32, simd_dispatch};

#[inline(always)]
fn silu_body(x: &[f32], y: &mut [f32]) {
    assert_same_len("silu", &[x.len(), y.len()]);
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x * sigmoid_f32(x);
    }
}

simd_dispatch!(
    /// `y = silu(x)` elementwise, the widest vector unit the CPU has.
    pub fn silu_slice(x: &[f32], y: &mut [f32]) => silu_body
);

#[inline(always)]
fn silu_grad_body(x: &[f32], g: &[f32], dx: &mut [f32]) {
    assert_same_len("silu backward", &[x.len(), g.len(), dx.len()]);
    for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
        let s = sigmoid_f32(x);
        *d = g * s * (1.0 + x * (1.0 - s));
    }
}

simd_dispatch!(
    /// `dx = g · silu'(x)` elementwise.
    pub fn silu_grad_slice(x: &[f32], g: &[f32], dx: &mut [f32]) => silu_grad_body
);

/// `silu(x)`, backward `g · silu'(x)` from its input (first order only).
const SILU: Pointwise = Pointwise {
    forward_name: "genlab-silu",
    grad_name: "genlab-silu-grad",
    forward: silu_slice,
    grad: silu_grad_slice,
    grad_from: GradFrom::Input,
};

/// SiLU of any tensor: the one-pass kernels for f32 on the CPU (differentiable once),
/// candle's own `silu` otherwise (other dtypes and devices).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    SILU.apply_or(x, Tensor::silu)
}
