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

use candle_core::{bail, Result, Shape, Tensor};

use crate::gemm::{gemm_into, parallelism, Mat};
use crate::op::{all_f32_cpu, apply, apply_no_bwd, f32s, Arg, Grads, Kernel};
use crate::par::num_threads;

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

impl Kernel for LinearOp {
    fn name(&self) -> &'static str {
        "genlab-linear"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let (n, i, o) = dims(args[0].shape(), args[1].shape(), args[2].shape())?;
        let [x, w, b] = f32s(self.name(), args)?;
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
        Ok((y, Shape::from((n, o))))
    }

    fn backward(&self, args: &[&Tensor], _y: &Tensor, grad: &Tensor) -> Result<Grads> {
        let (x, w) = (args[0], args[1]);
        let dx = apply_no_bwd(LinearGrad::Input, &[grad, w])?;
        let dw = apply_no_bwd(LinearGrad::Weight, &[grad, x])?;
        let db = apply_no_bwd(ColumnSum, &[grad])?;
        Ok(vec![Some(dx), Some(dw), Some(db)])
    }
}

/// The two GEMMs of [`LinearOp`]'s backward, on `(g [N, O], m)`.
#[derive(Debug, Clone, Copy)]
enum LinearGrad {
    /// `m = W [O, I]` -> `g W [N, I]`.
    Input,
    /// `m = x [N, I]` -> `gᵀ x [O, I]`.
    Weight,
}

impl Kernel for LinearGrad {
    fn name(&self) -> &'static str {
        match self {
            LinearGrad::Input => "genlab-linear-grad-input",
            LinearGrad::Weight => "genlab-linear-grad-weight",
        }
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let (n, o) = args[0].shape().dims2()?;
        let (m_rows, i) = args[1].shape().dims2()?;
        // The side `m` shares with `g`: O with W, N with x.
        let (shared, what) = match self {
            LinearGrad::Input => (o, "weight"),
            LinearGrad::Weight => (n, "input"),
        };
        if m_rows != shared {
            bail!(
                "{}: gradient {:?} for {what} {:?}",
                self.name(),
                args[0].shape(),
                args[1].shape()
            )
        }
        let [g, m] = f32s(self.name(), args)?;
        let (g_mat, rows) = match self {
            LinearGrad::Input => (Mat::dense(g, n, o), n),
            // gᵀ [O, N]: g read with row stride 1 and column stride O.
            LinearGrad::Weight => (Mat::transposed(g, o, n), o),
        };
        let mut out = vec![0f32; rows * i];
        gemm_into(&mut out, g_mat, Mat::dense(m, m_rows, i), 1.0, false, par());
        Ok((out, Shape::from((rows, i))))
    }
}

/// `g [N, O] -> Σ_n g[n, :]` `[O]`.
struct ColumnSum;

impl Kernel for ColumnSum {
    fn name(&self) -> &'static str {
        "genlab-column-sum"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let (_, o) = args[0].shape().dims2()?;
        let g = args[0].f32(self.name())?;
        let mut acc = vec![0f32; o];
        if o > 0 {
            for row in g.chunks_exact(o) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += *v);
            }
        }
        Ok((acc, Shape::from(o)))
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
    let x2 = x.reshape((n, i))?;
    let y = if all_f32_cpu(&[x, w, b]) {
        apply(LinearOp, &[&x2, w, b])?
    } else {
        dims(x2.shape(), w.shape(), b.shape())?;
        x2.matmul(&w.t()?)?.broadcast_add(b)?
    };
    let mut out = lead.to_vec();
    out.push(o);
    y.reshape(out)
}
