//! The gradient reversal layer of Ganin & Lempitsky 2015 / Ganin et al. 2016
//! ("Domain-Adversarial Training of Neural Networks", JMLR 17(59), arXiv:1505.07818,
//! section 4.2): the pseudo-function `R_lambda` with
//!
//! ```text
//! R(x) = x                 (forward: identity)
//! dR/dx = -lambda I        (backward: the incoming gradient, negated and scaled)
//! ```
//!
//! Placed between the features and the domain classifier, one backward pass trains the
//! classifier to tell the domains apart and the features to make that impossible.
//!
//! A candle `CustomOp1` on CPU tensors (f32, f64): the forward pass copies the elements, the
//! backward pass is `-lambda * grad`. On another device, the same function is written as
//! `(1 + lambda) x.detach() - lambda x` (forward x up to rounding, gradient `-lambda`).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use genlab_core::Result;

struct Reverse {
    lambda: f64,
}

/// The elements of a contiguous layout.
fn copy<T: Copy>(v: &[T], l: &Layout) -> candle_core::Result<Vec<T>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(v[a..b].to_vec()),
        None => candle_core::bail!("gradient reversal: input must be contiguous"),
    }
}

impl CustomOp1 for Reverse {
    fn name(&self) -> &'static str {
        "genlab-gradient-reversal"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(copy(v, l)?),
            CpuStorage::F64(v) => CpuStorage::F64(copy(v, l)?),
            other => candle_core::bail!(
                "gradient reversal: f32 or f64 only, got {:?}",
                candle_core::backend::BackendStorage::dtype(other)
            ),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.affine(-self.lambda, 0.0)?))
    }
}

/// `R_lambda(x)`: `x` forward, `-lambda * grad` backward (see the module documentation).
pub fn reverse_gradient(x: &Tensor, lambda: f64) -> Result<Tensor> {
    if x.device().is_cpu() {
        Ok(x.contiguous()?.apply_op1(Reverse { lambda })?)
    } else {
        Ok((x.detach().affine(1.0 + lambda, 0.0)? - x.affine(lambda, 0.0)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Forward: bit for bit the input (a transposed, strided view included). Backward: the
    /// closed form. For `L = sum(R(x) * r)`, dL/dx = -lambda r; for `L = sum(R(x)^2)` the
    /// chain rule through R gives -lambda 2x. Exact in f64 (one product each), 1e-6 in f32.
    #[test]
    fn forward_is_identity_and_gradient_is_minus_lambda_times_the_incoming_one() {
        const F32_TOL: f64 = 1e-6;
        let dev = Device::Cpu;
        for dtype in [DType::F64, DType::F32] {
            let xs: Vec<f64> = (0..12).map(|i| (i as f64 - 5.5) * 0.37).collect();
            let rs: Vec<f64> = (0..12).map(|i| ((i * 7 % 5) as f64) - 2.0).collect();
            let x = Var::from_tensor(
                &Tensor::from_vec(xs.clone(), (3, 4), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            let r = Tensor::from_vec(rs.clone(), (3, 4), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let v = |t: &Tensor| {
                t.to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            };
            for lambda in [0.0, 0.3, 1.0] {
                let y = reverse_gradient(x.as_tensor(), lambda).unwrap();
                assert_eq!(v(&y), v(x.as_tensor()));
                let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let gx = v(g.get(&x).unwrap());
                for (gi, ri) in gx.iter().zip(&rs) {
                    assert!(
                        (gi - (-lambda * ri)).abs() <= F32_TOL,
                        "{gi} vs {}",
                        -lambda * ri
                    );
                }
                let y = reverse_gradient(x.as_tensor(), lambda).unwrap();
                let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                let gx = v(g.get(&x).unwrap());
                let xv = v(x.as_tensor());
                for (gi, xi) in gx.iter().zip(&xv) {
                    assert!((gi - (-2.0 * lambda * xi)).abs() <= F32_TOL * 10.0);
                }
            }
            // A strided view: forward is the view's values, gradient lands transposed.
            let t = x.as_tensor().t().unwrap();
            let y = reverse_gradient(&t, 2.0).unwrap();
            assert_eq!(v(&y), v(&t.contiguous().unwrap()));
            let g = y.sum_all().unwrap().backward().unwrap();
            assert!(v(g.get(&x).unwrap()).iter().all(|&gi| gi == -2.0));
        }
    }
}
