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

use candle_core::{Result, Tensor};

use crate::op::{assert_same_len, GradFrom, Pointwise};
use crate::simd::simd_dispatch;

#[inline(always)]
fn relu_body(x: &[f32], y: &mut [f32]) {
    assert_same_len("relu", &[x.len(), y.len()]);
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
    assert_same_len("relu backward", &[y.len(), g.len(), dx.len()]);
    for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
        *d = if y > 0.0 { g } else { 0.0 };
    }
}

simd_dispatch!(
    /// `dx = g` where the output `y` is positive, else 0.
    fn relu_grad_slice(y: &[f32], g: &[f32], dx: &mut [f32]) => relu_grad_body
);

/// `relu(x)`, backward `g · [y > 0]` from its output (first order only).
const RELU: Pointwise = Pointwise {
    forward_name: "genlab-relu",
    grad_name: "genlab-relu-grad",
    forward: relu_slice,
    grad: relu_grad_slice,
    grad_from: GradFrom::Output,
};

/// ReLU of any tensor: the one-pass kernels for f32 on the CPU (differentiable once),
/// candle's own `relu` otherwise (other dtypes and devices).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    RELU.apply_or(x, Tensor::relu)
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
        let n = 7 * ((1 << 15) / 2 + 3); // above ELEMENTWISE_MIN_PAR, a multiple of 7
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
