//! Fully connected layer `y = x Wᵀ + b` as one GEMM, with a backward of two GEMMs and one
//! column sum.
//!
//! No paper: the affine map of every MLP (Rumelhart, Hinton & Williams 1986 for its
//! gradient). Layouts follow PyTorch / candle_nn: `x [N, I]`, `W [O, I]`, `b [O]`,
//! `y [N, O]`, all row-major f32.
//!
//! Why a kernel: candle_nn's `Linear` is a matmul plus a `broadcast_add`; autograd then
//! adds a transpose node and reduces the bias gradient with a generic strided reduction,
//! and each node allocates. Here the forward GEMM writes into a buffer pre-filled with the
//! bias (one pass), and the backward computes
//!
//! ```text
//! dx [N, I] = g [N, O] @ W [O, I]
//! dW [O, I] = gᵀ [O, N] @ x [N, I]      (gᵀ as a strided view, no copy)
//! db [O]    = Σ_n g[n, :]               (row-order accumulation, cache friendly)
//! ```
//!
//! with the `gemm` crate (the one candle uses; AVX-512 kernels enabled in Cargo.toml).

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

use crate::gemm::{gemm_into, parallelism, Mat};
use crate::par::{contiguous_f32, num_threads};

/// GEMM parallelism at the user's thread count.
fn par() -> gemm::Parallelism {
    parallelism(num_threads())
}

/// Checks `x [N, I]`, `w [O, I]`, `b [O]`; returns `(N, I, O)`.
fn dims(x: &Shape, w: &Shape, b: &Shape) -> Result<(usize, usize, usize)> {
    let (n, i) = x.dims2()?;
    let (o, wi) = w.dims2()?;
    if wi != i {
        bail!(
            "linear: input has {i} features, weight {:?} expects {wi}",
            w.dims()
        )
    }
    if b.dims1()? != o {
        bail!("linear: bias {:?} for {o} outputs", b.dims())
    }
    Ok((n, i, o))
}

/// Up to this many input features the forward skips the GEMM (see [`LinearOp`]).
const SMALL_INPUT: usize = 8;

/// `(x [N, I], W [O, I], b [O]) -> x Wᵀ + b [N, O]`.
struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "genlab-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, i, o) = dims(l1.shape(), l2.shape(), l3.shape())?;
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let b = contiguous_f32(s3, l3, self.name())?;
        let mut y = Vec::with_capacity(n * o);
        for _ in 0..n {
            y.extend_from_slice(b);
        }
        if i <= SMALL_INPUT {
            // A few inputs (2-D points): row-wise axpy over a transposed copy of W; the
            // GEMM's packing costs more than the arithmetic here.
            let mut wt = vec![0f32; i * o];
            for (r, row) in w.chunks_exact(i.max(1)).enumerate() {
                for (c, v) in row.iter().enumerate() {
                    wt[c * o + r] = *v;
                }
            }
            for (y_row, x_row) in y.chunks_exact_mut(o.max(1)).zip(x.chunks_exact(i.max(1))) {
                for (xv, wt_row) in x_row.iter().zip(wt.chunks_exact(o.max(1))) {
                    y_row.iter_mut().zip(wt_row).for_each(|(a, w)| *a += xv * w);
                }
            }
        } else {
            // [N, I] @ Wᵀ, Wᵀ [I, O] being W read with row stride 1 and column stride I.
            gemm_into(
                &mut y,
                Mat::dense(x, n, i),
                Mat::transposed(w, i, o),
                1.0,
                true,
                par(),
            );
        }
        Ok((CpuStorage::F32(y), Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(w, &LinearGradInput)?;
        let dw = grad.apply_op2_no_bwd(x, &LinearGradWeight)?;
        let db = grad.apply_op1_no_bwd(&ColumnSum)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `(g [N, O], W [O, I]) -> g W [N, I]`.
struct LinearGradInput;

impl candle_core::CustomOp2 for LinearGradInput {
    fn name(&self) -> &'static str {
        "genlab-linear-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, o) = l1.shape().dims2()?;
        let (wo, i) = l2.shape().dims2()?;
        if wo != o {
            bail!(
                "{}: gradient {:?} for weight {:?}",
                self.name(),
                l1.shape(),
                l2.shape()
            )
        }
        let g = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let mut dx = vec![0f32; n * i];
        gemm_into(
            &mut dx,
            Mat::dense(g, n, o),
            Mat::dense(w, o, i),
            1.0,
            false,
            par(),
        );
        Ok((CpuStorage::F32(dx), Shape::from((n, i))))
    }
}

/// `(g [N, O], x [N, I]) -> gᵀ x [O, I]`.
struct LinearGradWeight;

impl candle_core::CustomOp2 for LinearGradWeight {
    fn name(&self) -> &'static str {
        "genlab-linear-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, o) = l1.shape().dims2()?;
        let (xn, i) = l2.shape().dims2()?;
        if xn != n {
            bail!(
                "{}: gradient {:?} for input {:?}",
                self.name(),
                l1.shape(),
                l2.shape()
            )
        }
        let g = contiguous_f32(s1, l1, self.name())?;
        let x = contiguous_f32(s2, l2, self.name())?;
        let mut dw = vec![0f32; o * i];
        // gᵀ [O, N]: g read with row stride 1 and column stride O.
        gemm_into(
            &mut dw,
            Mat::transposed(g, o, n),
            Mat::dense(x, n, i),
            1.0,
            false,
            par(),
        );
        Ok((CpuStorage::F32(dw), Shape::from((o, i))))
    }
}

/// `g [N, O] -> Σ_n g[n, :]` `[O]`.
struct ColumnSum;

impl candle_core::CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "genlab-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, o) = l.shape().dims2()?;
        let g = contiguous_f32(s, l, self.name())?;
        let mut acc = vec![0f32; o];
        if o > 0 {
            for row in g.chunks_exact(o) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += *v);
            }
        }
        Ok((CpuStorage::F32(acc), Shape::from(o)))
    }
}

/// `x Wᵀ + b` for `x [..., I]`, `w [O, I]`, `b [O]` -> `[..., O]`.
///
/// f32 on the CPU runs the GEMM kernels above (differentiable once w.r.t. all three);
/// anything else runs candle's matmul + broadcast add, the same function.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = x.dims();
    let Some((&i, lead)) = shape.split_last() else {
        bail!("linear: input must have at least one dimension")
    };
    let n: usize = lead.iter().product();
    let o = w.dim(0)?;
    let fast = x.device().is_cpu()
        && [x.dtype(), w.dtype(), b.dtype()]
            .iter()
            .all(|d| *d == DType::F32);
    let x2 = x.reshape((n, i))?;
    let y = if fast {
        x2.contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, LinearOp)?
    } else {
        dims(x2.shape(), w.shape(), b.shape())?;
        x2.matmul(&w.t()?)?.broadcast_add(b)?
    };
    let mut out = lead.to_vec();
    out.push(o);
    y.reshape(out)
}
