//! ReLU, forward and backward each in one pass.
//!
//! Nair & Hinton 2010, "Rectified Linear Units Improve Restricted Boltzmann Machines"
//! (ICML): `relu(x) = max(x, 0)`. Its derivative is taken as 1 where the output is positive
//! and 0 elsewhere (x = 0 included, PyTorch's convention); NaN inputs stay NaN.
//!
//! Why a kernel: candle 0.11's ReLU backward is `grad * (x >= 0)` built from a zero tensor,
//! a comparison, a dtype conversion and a product: four passes and four allocations over
//! the activation, on the widest tensors of a conv net (the flows' conditioners run ReLU on
//! 64 channels at full resolution twice per coupling). Here the backward is one pass over
//! the output and the incoming gradient.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::par::contiguous_f32;
use crate::simd::simd_dispatch;

/// Below this many elements a pass runs on the calling thread.
const PAR_MIN: usize = 1 << 15;
/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

#[inline(always)]
fn relu_body(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "relu: length mismatch");
    for (y, &x) in y.iter_mut().zip(x) {
        *y = if x <= 0.0 { 0.0 } else { x }; // NaN stays NaN
    }
}

simd_dispatch!(
    /// `y = max(x, 0)` elementwise; NaN stays NaN (as in PyTorch; candle's `relu` maps it
    /// to 0), so that a diverging network is detected rather than masked.
    fn relu_slice(x: &[f32], y: &mut [f32]) => relu_body
);

#[inline(always)]
fn relu_grad_body(y: &[f32], g: &[f32], dx: &mut [f32]) {
    assert!(
        y.len() == g.len() && g.len() == dx.len(),
        "relu backward: length mismatch"
    );
    for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
        *d = if y > 0.0 { g } else { 0.0 };
    }
}

simd_dispatch!(
    /// `dx = g` where the output `y` is positive, else 0.
    fn relu_grad_slice(y: &[f32], g: &[f32], dx: &mut [f32]) => relu_grad_body
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

struct ReluOp;

impl CustomOp1 for ReluOp {
    fn name(&self) -> &'static str {
        "genlab-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        par_map(&mut y, |off, c| relu_slice(&x[off..off + c.len()], c));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?))
    }
}

/// `(y, g) -> g · [y > 0]`: the backward of [`ReluOp`] from its output (first order only).
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "genlab-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(s1, l1, self.name())?;
        let g = contiguous_f32(s2, l2, self.name())?;
        if y.len() != g.len() {
            bail!(
                "{}: gradient shape {:?} for output {:?}",
                self.name(),
                l2.shape(),
                l1.shape()
            )
        }
        let mut dx = vec![0f32; y.len()];
        par_map(&mut dx, |off, c| {
            let n = c.len();
            relu_grad_slice(&y[off..off + n], &g[off..off + n], c)
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// ReLU of any tensor: the one-pass kernels for f32 on the CPU (differentiable once),
/// candle's own `relu` otherwise (other dtypes and devices).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(ReluOp)
    } else {
        x.relu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The kernel against candle's `relu`: values, and the gradient of `sum(relu(x) * r)`,
    /// on a tensor long enough for the parallel split, with exact zeros, negatives and a
    /// strided (transposed) view. Both are exact selections, so they must agree bit for bit
    /// (x = 0: candle passes the gradient, `x >= 0`; we do not, as PyTorch; no test input
    /// is exactly 0 except where noted).
    #[test]
    fn relu_matches_candle_values_and_gradients() {
        let dev = Device::Cpu;
        let n = 7 * ((1 << 15) / 2 + 3); // above PAR_MIN, a multiple of 7
        let xs: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 2003) as f32 - 1001.5) / 100.0)
            .collect();
        let rs: Vec<f32> = (0..n).map(|i| ((i * 31 % 17) as f32) - 8.0).collect();
        let x = Var::from_vec(xs, (n / 7, 7), &dev).unwrap();
        let r = Tensor::from_vec(rs, (n / 7, 7), &dev).unwrap();
        for transposed in [false, true] {
            let (xv, rv) = if transposed {
                (x.t().unwrap(), r.t().unwrap())
            } else {
                (x.as_tensor().clone(), r.clone())
            };
            let ours = relu(&xv).unwrap();
            let want = xv.relu().unwrap();
            let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
            assert_eq!(flat(&ours), flat(&want), "values, transposed {transposed}");
            let g_ours = (ours * &rv).unwrap().sum_all().unwrap().backward().unwrap();
            let g_want = (want * &rv).unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(
                flat(g_ours.get(&x).unwrap()),
                flat(g_want.get(&x).unwrap()),
                "gradients, transposed {transposed}"
            );
        }
        // x = 0: no gradient (PyTorch's convention; candle's relu passes it).
        let z = Var::from_vec(vec![0f32, -1.0, 2.0], 3, &dev).unwrap();
        let g = relu(z.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gz: Vec<f32> = g.get(&z).unwrap().to_vec1().unwrap();
        assert_eq!(gz, vec![0.0, 0.0, 1.0]);
        let y: Vec<f32> = relu(&Tensor::new(&[f32::NAN, -0.5], &dev).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(y[0].is_nan() && y[1] == 0.0);
    }
}
