//! SiLU (sigmoid-weighted linear unit), forward and backward each in one pass.
//!
//! Elfwing, Uchibe & Doya 2018, "Sigmoid-Weighted Linear Units for Neural Network Function
//! Approximation in Reinforcement Learning" (arXiv:1702.03118); Hendrycks & Gimpel's GELU
//! paper calls it SiLU. `silu(x) = x·σ(x)`, `silu'(x) = σ(x)·(1 + x·(1 - σ(x)))`.
//!
//! Why a kernel: candle 0.11 evaluates `exp` one scalar libm call at a time, and its SiLU
//! backward is six tensor ops (six passes and five allocations). Here each direction is one
//! pass with the branch-free `exp` of [`crate::simd`], vectorised for the CPU's widest unit.

use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::par::contiguous_f32;
use crate::simd::{sigmoid_f32, simd_dispatch};

/// Below this many elements a pass runs on the calling thread.
const PAR_MIN: usize = 1 << 15;
/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

#[inline(always)]
fn silu_body(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "silu: length mismatch");
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
    assert!(
        x.len() == g.len() && g.len() == dx.len(),
        "silu backward: length mismatch"
    );
    for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
        let s = sigmoid_f32(x);
        *d = g * s * (1.0 + x * (1.0 - s));
    }
}

simd_dispatch!(
    /// `dx = g · silu'(x)` elementwise.
    pub fn silu_grad_slice(x: &[f32], g: &[f32], dx: &mut [f32]) => silu_grad_body
);

/// Splits the output into chunks over rayon threads (inline below [`PAR_MIN`]).
fn par_map(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    if out.len() < PAR_MIN || rayon::current_num_threads() == 1 {
        f(0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, c)| f(i * CHUNK, c));
    }
}

struct SiluOp;

impl CustomOp1 for SiluOp {
    fn name(&self) -> &'static str {
        "genlab-silu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        par_map(&mut y, |off, c| silu_slice(&x[off..off + c.len()], c));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &SiluGrad)?))
    }
}

/// `(x, g) -> g · silu'(x)`: the backward of [`SiluOp`] (first order only).
struct SiluGrad;

impl candle_core::CustomOp2 for SiluGrad {
    fn name(&self) -> &'static str {
        "genlab-silu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let g = contiguous_f32(s2, l2, self.name())?;
        if x.len() != g.len() {
            bail!(
                "{}: gradient shape {:?} for input {:?}",
                self.name(),
                l2.shape(),
                l1.shape()
            )
        }
        let mut dx = vec![0f32; x.len()];
        par_map(&mut dx, |off, c| {
            let n = c.len();
            silu_grad_slice(&x[off..off + n], &g[off..off + n], c)
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// SiLU of any tensor: the one-pass kernels for f32 on the CPU (differentiable once),
/// candle's own `silu` otherwise (other dtypes and devices).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(SiluOp)
    } else {
        x.silu()
    }
}
