//! Softmax attention (Vaswani et al. 2017, arXiv:1706.03762, Eq. 1) and a row softmax,
//! as differentiable custom ops.
//!
//! candle 0.11.1's `candle_nn::ops::softmax_last_dim` and `ops::sdpa` run backward without
//! error but pass no gradient (they are applied with `apply_op*_no_bwd`); [`attention`] and
//! [`softmax_last_dim`] replace them.
//!
//! [`attention`], per batch-head `b` (`q [Nq, d]`, `k [Nk, d]`, `v [Nk, dv]`), in blocks of
//! query rows so the score block `[rows, Nk]` stays cache-sized:
//!
//! - forward: `S = scale q k^T` (GEMM), `P = softmax(S)` row-wise with max subtraction,
//!   `O = P v` (GEMM; the `1/rowsum` is applied to `O`, not to `P`);
//! - backward recomputes `S` and `P` (memory-lean, like FlashAttention: nothing of size
//!   `Nq x Nk` is kept between forward and backward), then `dV += P^T dO`, `dP = dO V^T`,
//!   `D = rowsum(dO * O)`, `dS = P * (dP - D)`, `dQ = scale dS K`, `dK += scale dS^T Q`.
//!
//! Threads: the crate's [`num_threads`](crate::num_threads). Batch-heads are split over
//! rayon threads when there are at least as many as threads; otherwise they run in turn and
//! each GEMM (and the row softmax) is itself parallel. With one thread everything runs on
//! the calling thread and rayon is not touched.
//! `q`, `k`, `v` may be strided views (e.g. narrowed out of one packed qkv tensor): the
//! GEMMs read them in place.
//!
//! The exponential is a vectorisable polynomial (Cephes `expf`, relative error < 3e-7),
//! compiled for AVX-512 / AVX2+FMA when the CPU has them (candle's `exp` is scalar libm).
//!
//! f32 on the CPU only; other dtypes and devices fall back to [`attention_composed`] /
//! [`softmax_last_dim_composed`], compositions of differentiable candle ops.
//!
//! Gradients are computed by backward kernels without autograd of their own (candle detaches
//! gradients by default), so there is no double backward through these ops.
//!
//! This file also hosts the row splitting over rayon ([`par_rows`], [`rows_per_task`]) that
//! [`layer_norm`](mod@crate::layer_norm) uses.

use candle_core::{bail, Result, Shape, Tensor, D};
use gemm::Parallelism;

use crate::gemm::{gemm_into, Mat};
use crate::op::{all_f32_cpu, apply, apply_no_bwd, f32s, same_dtype, unpack, Arg, Grads, Kernel};
use crate::simd::{dot, exp_approx, hmax, hsum, padded, simd_dispatch, LANES};
use rayon::prelude::*;

// ---------------------------------------------------------------------------------------
// Shared helpers (also used by layer_norm.rs).
// ---------------------------------------------------------------------------------------

/// Smallest amount of work (elements) worth a rayon task of its own.
const MIN_TASK_ELEMS: usize = 1 << 14;

/// Rows per rayon task when `n_rows` rows of `row_len` elements are split over threads:
/// all rows (run inline, rayon untouched) with one thread or a small input, else about four
/// tasks per thread of at least [`MIN_TASK_ELEMS`] elements each. Threads: the crate's
/// [`num_threads`](crate::num_threads).
pub(crate) fn rows_per_task(n_rows: usize, row_len: usize) -> usize {
    let threads = crate::num_threads();
    if threads == 1 {
        return n_rows.max(1);
    }
    let min_rows = MIN_TASK_ELEMS.div_ceil(row_len.max(1));
    let even = n_rows.div_ceil(threads * 4);
    min_rows.max(even).max(1)
}

/// Runs `f(first_row, rows)` over `out` (rows of `row_len`, `row_len > 0`) split into
/// chunks of whole rows over rayon threads; inline when one chunk covers everything.
pub(crate) fn par_rows<F>(out: &mut [f32], row_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    debug_assert!(row_len > 0 && out.len() % row_len == 0);
    let n_rows = out.len() / row_len;
    let per = rows_per_task(n_rows, row_len);
    if per >= n_rows {
        f(0, out);
    } else {
        out.par_chunks_mut(per * row_len)
            .enumerate()
            .for_each(|(i, chunk)| f(i * per, chunk));
    }
}

/// `n` chunks of `size` elements of `buf` (`n` empty slices when `size == 0`).
fn split_chunks(buf: &mut [f32], n: usize, size: usize) -> Vec<&mut [f32]> {
    if size == 0 {
        (0..n).map(|_| <&mut [f32]>::default()).collect()
    } else {
        buf.chunks_mut(size).collect()
    }
}

/// Max of a row (NaN is skipped here; it reaches the result through `exp`).
#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    let lanes_max = |m: &mut [f32; LANES], c: &[f32]| {
        for (mi, &v) in m.iter_mut().zip(c) {
            *mi = if v > *mi { v } else { *mi };
        }
    };
    for c in &mut chunks {
        lanes_max(&mut m, c);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        lanes_max(&mut m, &padded(rem, f32::NEG_INFINITY));
    }
    hmax(m)
}

/// `x := exp(x - m)` in place; returns the sum of the new values.
#[inline(always)]
fn exp_shift_sum(x: &mut [f32], m: f32) -> f32 {
    let mut s = [0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (si, v) in s.iter_mut().zip(c.iter_mut()) {
            *v = exp_approx(*v - m);
            *si += *v;
        }
    }
    let rem = chunks.into_remainder();
    if !rem.is_empty() {
        // Padding with m gives exp(0) = 1 in the unused lanes; only the used ones count.
        let mut t = padded(rem, m);
        for v in t.iter_mut() {
            *v = exp_approx(*v - m);
        }
        for ((r, &v), si) in rem.iter_mut().zip(t.iter()).zip(s.iter_mut()) {
            *r = v;
            *si += v;
        }
    }
    hsum(s)
}

/// Row softmax of `x` (rows of `row_len`) in place. With `normalize`, rows end as
/// probabilities; without, as `exp(x - max)` and `inv_sums[i] = 1 / rowsum` is left for the
/// caller to apply. `inv_sums` has one entry per row.
#[inline(always)]
fn softmax_rows_body(x: &mut [f32], row_len: usize, inv_sums: &mut [f32], normalize: bool) {
    for (row, inv) in x.chunks_exact_mut(row_len).zip(inv_sums.iter_mut()) {
        let m = row_max(row);
        let s = exp_shift_sum(row, m);
        *inv = 1.0 / s;
        if normalize {
            let a = *inv;
            row.iter_mut().for_each(|v| *v *= a);
        }
    }
}

simd_dispatch!(
    /// See [`softmax_rows_body`].
    fn softmax_rows(x: &mut [f32], row_len: usize, inv_sums: &mut [f32], normalize: bool)
        => softmax_rows_body
);

/// Softmax backward on rows: `dx = y * (g - sum(g * y))`.
#[inline(always)]
fn softmax_bwd_rows_body(y: &[f32], g: &[f32], dx: &mut [f32], row_len: usize) {
    for ((yr, gr), dr) in y
        .chunks_exact(row_len)
        .zip(g.chunks_exact(row_len))
        .zip(dx.chunks_exact_mut(row_len))
    {
        let s = dot(yr, gr);
        for ((d, &yi), &gi) in dr.iter_mut().zip(yr).zip(gr) {
            *d = yi * (gi - s);
        }
    }
}

simd_dispatch!(
    /// See [`softmax_bwd_rows_body`].
    fn softmax_bwd_rows(y: &[f32], g: &[f32], dx: &mut [f32], row_len: usize)
        => softmax_bwd_rows_body
);

/// Attention score gradient on a block: `dp := p * (dp - d_i)` with
/// `d_i = dot(o_i, g_i)` (rows of `p`/`dp` are `nk` long, rows of `o`/`g` are `dv` long).
#[inline(always)]
fn score_grad_body(p: &[f32], dp: &mut [f32], nk: usize, o: &[f32], g: &[f32], dv: usize) {
    let rows = p.len() / nk;
    for i in 0..rows {
        let di = if dv == 0 {
            0.0
        } else {
            dot(&o[i * dv..(i + 1) * dv], &g[i * dv..(i + 1) * dv])
        };
        let pr = &p[i * nk..(i + 1) * nk];
        let dr = &mut dp[i * nk..(i + 1) * nk];
        for (d, &pi) in dr.iter_mut().zip(pr) {
            *d = pi * (*d - di);
        }
    }
}

simd_dispatch!(
    /// See [`score_grad_body`].
    fn score_grad(p: &[f32], dp: &mut [f32], nk: usize, o: &[f32], g: &[f32], dv: usize)
        => score_grad_body
);

// ---------------------------------------------------------------------------------------
// GEMM on raw slices.
// ---------------------------------------------------------------------------------------

/// A `[B, rows, cols]` f32 input read in place through its layout (any strides).
#[derive(Clone, Copy)]
struct Batch<'a> {
    data: &'a [f32],
    b: usize,
    rows: usize,
    cols: usize,
    bs: usize,
    rs: usize,
    cs: usize,
    /// Matrix `i` starts at `(i / heads)·bs + (i % heads)·hs` (heads of one sample that
    /// are not `bs` apart, as in a packed qkv tensor); `heads = 1` for a plain batch.
    heads: usize,
    hs: usize,
}

impl<'a> Batch<'a> {
    fn new(op: &str, arg: Arg<'a>) -> Result<Self> {
        let (b, rows, cols) = arg.shape().dims3()?;
        let st = arg.layout.stride();
        let data = arg.storage_f32(op)?;
        Ok(Self {
            data: data.get(arg.layout.start_offset()..).unwrap_or(&[]),
            b,
            rows,
            cols,
            bs: st[0],
            rs: st[1],
            cs: st[2],
            heads: 1,
            hs: 0,
        })
    }

    /// Matrix `i` of the batch.
    fn mat(&self, i: usize) -> Mat<'a> {
        let start = (i / self.heads) * self.bs + (i % self.heads) * self.hs;
        Mat {
            data: self.data.get(start..).unwrap_or(&[]),
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Attention kernels.
// ---------------------------------------------------------------------------------------

/// Target size (elements) of one score block `[rows, Nk]`: 256 KiB of f32.
const SCORE_BLOCK_ELEMS: usize = 1 << 16;
/// Fewest query rows per block (smaller GEMMs lose efficiency).
const MIN_BLOCK_ROWS: usize = 16;

/// Query rows per block for `Nq` queries against `Nk` keys.
fn block_rows(nq: usize, nk: usize) -> usize {
    (SCORE_BLOCK_ELEMS / nk.max(1))
        .max(MIN_BLOCK_ROWS)
        .min(nq)
        .max(1)
}

/// How the batch-heads of one call are run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    /// One thread: in turn on the calling thread, rayon untouched.
    Inline,
    /// Batch-heads split over threads, each GEMM single-threaded.
    Outer,
    /// Fewer batch-heads than threads: in turn, each GEMM and row softmax parallel.
    Inner(usize),
}

impl Plan {
    fn new(bh: usize) -> Self {
        match crate::num_threads() {
            0 | 1 => Plan::Inline,
            t if bh >= t => Plan::Outer,
            t => Plan::Inner(t),
        }
    }

    fn gemm(self) -> Parallelism {
        match self {
            Plan::Inner(t) => Parallelism::Rayon(t),
            _ => Parallelism::None,
        }
    }
}

/// Row softmax of a score block, its rows split over threads when `parallel`.
fn softmax_block(s: &mut [f32], nk: usize, inv: &mut [f32], normalize: bool, parallel: bool) {
    let rows = inv.len();
    let per = if parallel {
        rows_per_task(rows, nk)
    } else {
        rows
    };
    if per >= rows {
        softmax_rows(s, nk, inv, normalize);
    } else {
        s.par_chunks_mut(per * nk)
            .zip(inv.par_chunks_mut(per))
            .for_each(|(sc, ic)| softmax_rows(sc, nk, ic, normalize));
    }
}

/// Causal row softmax of a score block whose first row is query `r0`: row `i` keeps keys
/// `0..=r0 + i` (its prefix goes through the softmax) and zeroes the rest. Rows in turn.
fn causal_softmax(s: &mut [f32], nk: usize, inv: &mut [f32], r0: usize, normalize: bool) {
    for (i, (row, iv)) in s
        .chunks_exact_mut(nk)
        .zip(inv.chunks_exact_mut(1))
        .enumerate()
    {
        let keep = (r0 + i + 1).min(nk);
        softmax_rows(&mut row[..keep], keep, iv, normalize);
        row[keep..].fill(0.0);
    }
}

/// Attention problem size.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dims {
    bh: usize,
    nq: usize,
    nk: usize,
    d: usize,
    dv: usize,
}

/// Checks `q [BH, Nq, d]`, `k [BH, Nk, d]`, `v [BH, Nk, dv]`; returns the sizes.
fn attention_dims(q: &Shape, k: &Shape, v: &Shape) -> Result<Dims> {
    let (Ok((bh, nq, d)), Ok((bk, nk, dk)), Ok((bv, nv, dv))) = (q.dims3(), k.dims3(), v.dims3())
    else {
        bail!("attention: q, k, v must be 3-D [BH, N, d], got q {q:?}, k {k:?}, v {v:?}")
    };
    if bk != bh || bv != bh {
        bail!("attention: batch-head counts differ: q {q:?}, k {k:?}, v {v:?}")
    }
    if dk != d {
        bail!("attention: q and k feature sizes differ (q {q:?} has d = {d}, k {k:?} has d = {dk})")
    }
    if nv != nk {
        bail!("attention: k and v key counts differ (k {k:?} has {nk} keys, v {v:?} has {nv})")
    }
    if nk == 0 && nq > 0 {
        bail!("attention: no keys (k {k:?}): softmax over an empty set")
    }
    Ok(Dims { bh, nq, nk, d, dv })
}

/// Forward: returns `O [BH, Nq, dv]`.
/// With `causal`, query `i` attends keys `0..=i` only (self-attention, `Nq = Nk`): the
/// scores above the diagonal are left out of the softmax and their probabilities are 0.
fn attn_forward(
    q: Batch,
    k: Batch,
    v: Batch,
    dims: Dims,
    scale: f32,
    block: usize,
    causal: bool,
) -> Vec<f32> {
    let Dims { bh, nq, nk, d, dv } = dims;
    debug_assert!(q.cols == d && k.cols == d && v.cols == dv);
    debug_assert!(q.b == bh && k.b == bh && v.b == bh && q.rows == nq && k.rows == nk);
    let mut out = vec![0f32; bh * nq * dv];
    if out.is_empty() {
        return out;
    }
    let plan = Plan::new(bh);
    let par = plan.gemm();
    let inner = matches!(plan, Plan::Inner(_));
    let one = |b: usize, o_b: &mut [f32], s: &mut [f32], inv: &mut [f32]| {
        let (qm, km, vm) = (q.mat(b), k.mat(b), v.mat(b));
        for r0 in (0..nq).step_by(block) {
            let rows = block.min(nq - r0);
            let sb = &mut s[..rows * nk];
            let ib = &mut inv[..rows];
            // S = scale Q_blk K^T: [rows, d] @ [d, Nk]
            gemm_into(sb, qm.row_block(r0, rows), km.t(), scale, false, par);
            if causal {
                causal_softmax(sb, nk, ib, r0, false);
            } else {
                softmax_block(sb, nk, ib, false, inner);
            }
            // O_blk = exp(S - max) V / rowsum: [rows, Nk] @ [Nk, dv]
            let ob = &mut o_b[r0 * dv..(r0 + rows) * dv];
            gemm_into(ob, Mat::dense(sb, rows, nk), vm, 1.0, false, par);
            for (orow, &a) in ob.chunks_exact_mut(dv).zip(ib.iter()) {
                orow.iter_mut().for_each(|x| *x *= a);
            }
        }
    };
    let init = || (vec![0f32; block * nk], vec![0f32; block]);
    let chunks = split_chunks(&mut out, bh, nq * dv);
    if plan == Plan::Outer {
        chunks
            .into_par_iter()
            .enumerate()
            .for_each_init(init, |(s, inv), (b, o_b)| one(b, o_b, s, inv));
    } else {
        let (mut s, mut inv) = init();
        for (b, o_b) in chunks.into_iter().enumerate() {
            one(b, o_b, &mut s, &mut inv);
        }
    }
    out
}

/// Backward: `o [BH, Nq, dv]` (forward output), `g = dO [BH, Nq, dv]`, both contiguous.
/// Returns `[dQ | dK | dV]` packed in one buffer.
#[allow(clippy::too_many_arguments)]
fn attn_backward(
    q: Batch,
    k: Batch,
    v: Batch,
    o: &[f32],
    g: &[f32],
    dims: Dims,
    scale: f32,
    block: usize,
    causal: bool,
) -> Vec<f32> {
    let Dims { bh, nq, nk, d, dv } = dims;
    let (n_dq, n_dk, n_dv) = (bh * nq * d, bh * nk * d, bh * nk * dv);
    let mut out = vec![0f32; n_dq + n_dk + n_dv];
    if bh == 0 || nq == 0 || nk == 0 {
        return out;
    }
    let plan = Plan::new(bh);
    let par = plan.gemm();
    let inner = matches!(plan, Plan::Inner(_));
    let one = |b: usize,
               (dq_b, dk_b, dv_b): (&mut [f32], &mut [f32], &mut [f32]),
               (p, dp, inv): &mut (Vec<f32>, Vec<f32>, Vec<f32>)| {
        let (qm, km, vm) = (q.mat(b), k.mat(b), v.mat(b));
        for r0 in (0..nq).step_by(block) {
            let rows = block.min(nq - r0);
            let pb = &mut p[..rows * nk];
            let dpb = &mut dp[..rows * nk];
            let qb = qm.row_block(r0, rows);
            let span = (b * nq + r0) * dv..(b * nq + r0 + rows) * dv;
            let (gb, ob) = (&g[span.clone()], &o[span]);
            // Recompute P = softmax(scale Q_blk K^T).
            gemm_into(pb, qb, km.t(), scale, false, par);
            if causal {
                causal_softmax(pb, nk, &mut inv[..rows], r0, true);
            } else {
                softmax_block(pb, nk, &mut inv[..rows], true, inner);
            }
            let pm = Mat::dense(pb, rows, nk);
            let gm = Mat::dense(gb, rows, dv);
            // dV += P^T dO: [Nk, rows] @ [rows, dv]
            gemm_into(dv_b, pm.t(), gm, 1.0, r0 > 0, par);
            // dP = dO V^T: [rows, dv] @ [dv, Nk]
            gemm_into(dpb, gm, vm.t(), 1.0, false, par);
            // dS = P * (dP - rowsum(dO * O))
            score_grad(pb, dpb, nk, ob, gb, dv);
            let dsm = Mat::dense(dpb, rows, nk);
            // dQ = scale dS K: [rows, Nk] @ [Nk, d]
            gemm_into(
                &mut dq_b[r0 * d..(r0 + rows) * d],
                dsm,
                km,
                scale,
                false,
                par,
            );
            // dK += scale dS^T Q_blk: [Nk, rows] @ [rows, d]
            gemm_into(dk_b, dsm.t(), qb, scale, r0 > 0, par);
        }
    };
    let init = || {
        (
            vec![0f32; block * nk],
            vec![0f32; block * nk],
            vec![0f32; block],
        )
    };
    let (dq, rest) = out.split_at_mut(n_dq);
    let (dk, dvv) = rest.split_at_mut(n_dk);
    let items: Vec<_> = split_chunks(dq, bh, nq * d)
        .into_iter()
        .zip(split_chunks(dk, bh, nk * d))
        .zip(split_chunks(dvv, bh, nk * dv))
        .map(|((a, b), c)| (a, b, c))
        .collect();
    if plan == Plan::Outer {
        items
            .into_par_iter()
            .enumerate()
            .for_each_init(init, |scratch, (b, item)| one(b, item, scratch));
    } else {
        let mut scratch = init();
        for (b, item) in items.into_iter().enumerate() {
            one(b, item, &mut scratch);
        }
    }
    out
}

/// The `(q, k, v)` of an attention kernel read in place, and the problem size.
fn qkv_args<'a>(op: &str, args: &[Arg<'a>]) -> Result<(Batch<'a>, Batch<'a>, Batch<'a>, Dims)> {
    let dims = attention_dims(args[0].shape(), args[1].shape(), args[2].shape())?;
    let q = Batch::new(op, args[0])?;
    let k = Batch::new(op, args[1])?;
    let v = Batch::new(op, args[2])?;
    Ok((q, k, v, dims))
}

/// `softmax(scale q k^T) v` for `q [BH, Nq, d]`, `k [BH, Nk, d]`, `v [BH, Nk, dv]`.
#[derive(Debug, Clone, Copy)]
struct AttentionOp {
    scale: f32,
}

impl Kernel for AttentionOp {
    const STRIDED: bool = true;

    fn name(&self) -> &'static str {
        "genlab-attention"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let (q, k, v, dims) = qkv_args(self.name(), args)?;
        let block = block_rows(dims.nq, dims.nk);
        let out = attn_forward(q, k, v, dims, self.scale, block, false);
        Ok((out, Shape::from((dims.bh, dims.nq, dims.dv))))
    }

    fn backward(&self, args: &[&Tensor], res: &Tensor, grad: &Tensor) -> Result<Grads> {
        let (q, k, v) = (args[0], args[1], args[2]);
        // dO and O travel inside the op (a copy of [BH, Nq, dv] each, small next to the
        // attention itself); candle locks the storages of q, k, v for the op.
        let op = AttentionBwd {
            scale: self.scale,
            o: res.flatten_all()?.to_vec1::<f32>()?,
            g: grad.flatten_all()?.to_vec1::<f32>()?,
        };
        let packed = apply_no_bwd(op, &[q, k, v])?;
        let [dq, dk, dv] = unpack(&packed, [q.shape(), k.shape(), v.shape()])?;
        Ok(vec![Some(dq), Some(dk), Some(dv)])
    }
}

/// Backward of [`AttentionOp`]: `(q, k, v) -> [dQ | dK | dV]` flat, given `O` and `dO`.
struct AttentionBwd {
    scale: f32,
    o: Vec<f32>,
    g: Vec<f32>,
}

impl Kernel for AttentionBwd {
    const STRIDED: bool = true;

    fn name(&self) -> &'static str {
        "genlab-attention-bwd"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let (q, k, v, dims) = qkv_args(self.name(), args)?;
        let want = dims.bh * dims.nq * dims.dv;
        if self.o.len() != want || self.g.len() != want {
            bail!(
                "{}: output/gradient sizes {}/{} for {dims:?}",
                self.name(),
                self.o.len(),
                self.g.len()
            )
        }
        let block = block_rows(dims.nq, dims.nk);
        let out = attn_backward(q, k, v, &self.o, &self.g, dims, self.scale, block, false);
        let n = out.len();
        Ok((out, Shape::from(n)))
    }
}

/// Where the channels of a packed qkv tensor sit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// `[B, 3·C, N]`: a U-Net's 1x1 qkv convolution over `N` positions.
    ChannelsFirst,
    /// `[B, N, 3·C]`: a transformer's fused qkv linear over `N` tokens.
    Tokens,
}

/// Geometry of a packed qkv tensor: channel `part·C + h·d + j` (part q, k, v; head `h`;
/// `C = H·d`), in either [`Layout`].
#[derive(Debug, Clone, Copy)]
struct Packed {
    b: usize,
    heads: usize,
    d: usize,
    n: usize,
    layout: Layout,
}

impl Packed {
    fn new(shape: &Shape, heads: usize, layout: Layout) -> Result<Self> {
        let (b, c3, n, what) = match layout {
            Layout::ChannelsFirst => {
                let (b, c3, n) = shape.dims3()?;
                (b, c3, n, "attention_qkv")
            }
            Layout::Tokens => {
                let (b, n, c3) = shape.dims3()?;
                (b, c3, n, "attention_qkv_tokens")
            }
        };
        if heads == 0 || c3 == 0 || c3 % (3 * heads) != 0 {
            bail!("{what}: {c3} channels are not 3 x heads ({heads}) x head size (qkv {shape:?})")
        }
        if n == 0 {
            bail!("{what}: no positions (qkv {shape:?})")
        }
        Ok(Self {
            b,
            heads,
            d: c3 / (3 * heads),
            n,
            layout,
        })
    }

    /// The packed argument of a qkv kernel: its geometry and its q, k, v parts.
    fn read<'a>(
        op: &str,
        arg: Arg<'a>,
        heads: usize,
        layout: Layout,
    ) -> Result<(Self, [Batch<'a>; 3])> {
        let pk = Packed::new(arg.shape(), heads, layout)?;
        let data = arg.f32(op)?;
        Ok((pk, [0, 1, 2].map(|p| pk.part(data, p))))
    }

    fn dims(&self) -> Dims {
        Dims {
            bh: self.b * self.heads,
            nq: self.n,
            nk: self.n,
            d: self.d,
            dv: self.d,
        }
    }

    /// Distance between consecutive channels and consecutive positions.
    fn strides(&self, channels: usize) -> (usize, usize) {
        match self.layout {
            Layout::ChannelsFirst => (self.n, 1),
            Layout::Tokens => (1, channels),
        }
    }

    /// Part `p` (0 q, 1 k, 2 v) as a batch of `[N, d]` matrices read in place.
    fn part<'a>(&self, data: &'a [f32], p: usize) -> Batch<'a> {
        let c = self.heads * self.d;
        let (cs, rs) = self.strides(3 * c);
        Batch {
            data: data.get(p * c * cs..).unwrap_or(&[]),
            b: self.b * self.heads,
            rows: self.n,
            cols: self.d,
            bs: 3 * c * self.n,
            rs,
            cs,
            heads: self.heads,
            hs: self.d * cs,
        }
    }

    /// The shape of a `[B, ...]` tensor of `c` channels in this layout.
    fn shape(&self, c: usize) -> Shape {
        match self.layout {
            Layout::ChannelsFirst => Shape::from((self.b, c, self.n)),
            Layout::Tokens => Shape::from((self.b, self.n, c)),
        }
    }

    /// `[BH, N, d]` (the kernels' layout) -> `dst` of `dst_c` channels per sample in this
    /// layout, head `h` at channels `offset_c + h·d ..`.
    fn scatter(&self, src: &[f32], dst: &mut [f32], dst_c: usize, offset_c: usize) {
        let (n, d) = (self.n, self.d);
        let (cs, rs) = self.strides(dst_c);
        for (i, m) in src.chunks_exact(n * d).enumerate() {
            let (b, h) = (i / self.heads, i % self.heads);
            let base = b * dst_c * n + (offset_c + h * d) * cs;
            for (r, row) in m.chunks_exact(d).enumerate() {
                for (j, v) in row.iter().enumerate() {
                    dst[base + j * cs + r * rs] = *v;
                }
            }
        }
    }

    /// `[B, ...]` of `C` channels in this layout -> `[BH, N, d]`.
    fn gather(&self, src: &[f32]) -> Vec<f32> {
        let (n, d, c) = (self.n, self.d, self.heads * self.d);
        let (cs, rs) = self.strides(c);
        let mut out = vec![0f32; self.b * c * n];
        for (i, m) in out.chunks_exact_mut(n * d).enumerate() {
            let (b, h) = (i / self.heads, i % self.heads);
            let base = b * c * n + h * d * cs;
            for (r, row) in m.chunks_exact_mut(d).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = src[base + j * cs + r * rs];
                }
            }
        }
        out
    }
}

/// Multi-head self-attention on a packed qkv tensor (either [`Layout`]), optionally causal;
/// its backward writes `d(qkv)` in the same packed layout.
#[derive(Debug, Clone, Copy)]
struct QkvAttentionOp {
    heads: usize,
    scale: f32,
    causal: bool,
    layout: Layout,
}

impl Kernel for QkvAttentionOp {
    fn name(&self) -> &'static str {
        "genlab-attention-qkv"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let (pk, [q, k, v]) = Packed::read(self.name(), args[0], self.heads, self.layout)?;
        let dims = pk.dims();
        let block = block_rows(dims.nq, dims.nk);
        let o = attn_forward(q, k, v, dims, self.scale, block, self.causal);
        let c = pk.heads * pk.d;
        let mut out = vec![0f32; pk.b * c * pk.n];
        pk.scatter(&o, &mut out, c, 0);
        Ok((out, pk.shape(c)))
    }

    fn backward(&self, args: &[&Tensor], res: &Tensor, grad: &Tensor) -> Result<Grads> {
        let qkv = args[0];
        let pk = Packed::new(qkv.shape(), self.heads, self.layout)?;
        let op = QkvAttentionBwd {
            fwd: *self,
            o: pk.gather(&res.flatten_all()?.to_vec1::<f32>()?),
            g: pk.gather(&grad.flatten_all()?.to_vec1::<f32>()?),
        };
        Ok(vec![Some(apply_no_bwd(op, &[qkv])?)])
    }
}

/// Backward of [`QkvAttentionOp`]: `qkv -> d(qkv)`, given `O` and `dO` in `[BH, N, d]`.
struct QkvAttentionBwd {
    fwd: QkvAttentionOp,
    o: Vec<f32>,
    g: Vec<f32>,
}

impl Kernel for QkvAttentionBwd {
    fn name(&self) -> &'static str {
        "genlab-attention-qkv-bwd"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let f = self.fwd;
        let (pk, [q, k, v]) = Packed::read(self.name(), args[0], f.heads, f.layout)?;
        let dims = pk.dims();
        let part = dims.bh * dims.nq * dims.d;
        if self.o.len() != part || self.g.len() != part {
            bail!(
                "{}: output/gradient sizes {}/{} for {dims:?}",
                self.name(),
                self.o.len(),
                self.g.len()
            )
        }
        let block = block_rows(dims.nq, dims.nk);
        let packed = attn_backward(q, k, v, &self.o, &self.g, dims, f.scale, block, f.causal);
        let c = pk.heads * pk.d;
        let mut dqkv = vec![0f32; pk.b * 3 * c * pk.n];
        for p in 0..3 {
            pk.scatter(&packed[p * part..(p + 1) * part], &mut dqkv, 3 * c, p * c);
        }
        Ok((dqkv, args[0].shape().clone()))
    }
}

/// Multi-head self-attention on a packed, channels-first `qkv [B, 3·C, N]` (channel
/// `part·C + h·d + j`: part q, k, v; head `h`; `d = C / heads`) -> `[B, C, N]`, channel
/// `h·d + j`: `softmax(scale q kᵀ) v` per head over the `N` positions.
///
/// The layout a U-Net's 1x1 qkv convolution produces, taken as one op so that neither the
/// forward (views) nor the backward (one packed gradient instead of three narrowed ones
/// that candle would zero-pad and add) copies the qkv tensor. f32 CPU runs the fused
/// kernels; other dtypes/devices run [`attention_composed`] on reshaped views.
pub fn attention_qkv(qkv: &Tensor, heads: usize, scale: f64) -> Result<Tensor> {
    let pk = Packed::new(qkv.shape(), heads, Layout::ChannelsFirst)?;
    if all_f32_cpu(&[qkv]) {
        let op = QkvAttentionOp {
            heads,
            scale: scale as f32,
            causal: false,
            layout: Layout::ChannelsFirst,
        };
        return apply(op, &[qkv]);
    }
    let (b, h, d, n) = (pk.b, heads, pk.d, pk.n);
    // [B, 3C, N] -> [B, 3, H, d, N]; part p -> [BH, d, N] -> [BH, N, d]
    let qkv = qkv.reshape((b, 3, h, d, n))?;
    let part = |p: usize| -> Result<Tensor> {
        qkv.narrow(1, p, 1)?.reshape((b * h, d, n))?.transpose(1, 2)
    };
    let out = attention_composed(&part(0)?, &part(1)?, &part(2)?, scale)?;
    // [BH, N, d] -> [BH, d, N] -> [B, C, N]
    out.transpose(1, 2)?.contiguous()?.reshape((b, h * d, n))
}

/// Multi-head self-attention on a packed, token-major `qkv [B, N, 3·C]` (channel
/// `part·C + h·d + j`: part q, k, v; head `h`; `d = C / heads`, the output of a fused qkv
/// linear) -> `[B, N, C]`, channel `h·d + j`: `softmax(scale q kᵀ) v` per head over the `N`
/// tokens; with `causal`, token `i` attends tokens `0..=i` (GPT, CLIP's text tower).
///
/// One op, so that neither the forward (q, k, v are read in place, no head-major copy) nor
/// the backward (one packed gradient instead of three narrowed ones that candle would
/// zero-pad and add) copies the qkv tensor, and the causal mask costs nothing (no
/// `[B, H, N, N]` mask tensor, no batched candle matmuls). f32 CPU runs the fused kernels;
/// other dtypes/devices run [`attention_composed`] / [`causal_attention_composed`] on
/// reshaped views.
pub fn attention_qkv_tokens(
    qkv: &Tensor,
    heads: usize,
    scale: f64,
    causal: bool,
) -> Result<Tensor> {
    let pk = Packed::new(qkv.shape(), heads, Layout::Tokens)?;
    if all_f32_cpu(&[qkv]) {
        let op = QkvAttentionOp {
            heads,
            scale: scale as f32,
            causal,
            layout: Layout::Tokens,
        };
        return apply(op, &[qkv]);
    }
    let (b, n, h, d) = (pk.b, pk.n, heads, pk.d);
    // [B, N, 3C] -> [B, N, 3, H, d]; part p -> [B, H, N, d] -> [BH, N, d]
    let qkv = qkv.reshape((b, n, 3, h, d))?;
    let part = |p: usize| -> Result<Tensor> {
        qkv.narrow(2, p, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * h, n, d))
    };
    let (q, k, v) = (part(0)?, part(1)?, part(2)?);
    let out = if causal {
        causal_attention_composed(&q, &k, &v, scale)?
    } else {
        attention_composed(&q, &k, &v, scale)?
    };
    // [BH, N, d] -> [B, H, N, d] -> [B, N, H, d] -> [B, N, C]
    out.reshape((b, h, n, d))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, n, h * d))
}

/// Causal [`attention_composed`] (`Nq = Nk`; query `i` attends keys `0..=i`): an additive
/// `-inf` mask above the diagonal before the composed softmax. The fallback of
/// [`attention_qkv_tokens`] and the reference in tests.
pub fn causal_attention_composed(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let dims = attention_dims(q.shape(), k.shape(), v.shape())?;
    if dims.nq != dims.nk {
        bail!(
            "causal attention: {} queries against {} keys (expected as many of each)",
            dims.nq,
            dims.nk
        )
    }
    let n = dims.nq;
    let mask: Vec<f32> = (0..n * n)
        .map(|i| {
            if i % n > i / n {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (n, n), q.device())?.to_dtype(q.dtype())?;
    // [BH, N, d] @ [BH, d, N] -> [BH, N, N], masked above the diagonal
    let s = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
    softmax_last_dim_composed(&s)?.matmul(v)
}

/// Scaled dot-product softmax attention, differentiable in `q`, `k` and `v`:
/// `softmax(scale * q k^T) v`, the softmax over keys.
///
/// `q [BH, Nq, d]`, `k [BH, Nk, d]`, `v [BH, Nk, dv]` -> `[BH, Nq, dv]`; `Nq` and `Nk` may
/// differ (cross-attention). The usual `scale` is `1 / sqrt(d)`. No mask.
///
/// f32 CPU inputs (contiguous or any strided view) run the fused kernel; anything else runs
/// [`attention_composed`]. Errors on mismatched shapes or dtypes, or when there are no keys.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    attention_dims(q.shape(), k.shape(), v.shape())?;
    same_dtype("attention", &[("q", q), ("k", k), ("v", v)])?;
    if all_f32_cpu(&[q, k, v]) {
        let op = AttentionOp {
            scale: scale as f32,
        };
        apply(op, &[q, k, v])
    } else {
        attention_composed(q, k, v, scale)
    }
}

/// [`attention`] as a composition of differentiable candle ops (`matmul`, `exp`,
/// `sum_keepdim`, `broadcast_div`, ...): the fallback for non-f32 or non-CPU inputs, and
/// the reference in tests. Materialises `[BH, Nq, Nk]` several times.
pub fn attention_composed(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    attention_dims(q.shape(), k.shape(), v.shape())?;
    // [BH, Nq, d] @ [BH, d, Nk] -> [BH, Nq, Nk]
    let s = (q.matmul(&k.t()?)? * scale)?;
    softmax_last_dim_composed(&s)?.matmul(v)
}

/// Softmax over the last dim, `[..., D] -> [..., D]`, differentiable (candle 0.11.1's
/// `candle_nn::ops::softmax_last_dim` passes no gradient): backward
/// `dx = y * (g - sum(g * y))`.
///
/// f32 CPU inputs run the custom op; anything else [`softmax_last_dim_composed`].
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.rank() == 0 {
        bail!("softmax_last_dim: needs at least one dimension, got a scalar")
    }
    if all_f32_cpu(&[x]) {
        apply(SoftmaxLastDim, &[x])
    } else {
        softmax_last_dim_composed(x)
    }
}

/// [`softmax_last_dim`] as differentiable candle ops: `exp(x - max)` (max detached, the
/// softmax does not depend on it) over its `sum_keepdim`.
pub fn softmax_last_dim_composed(x: &Tensor) -> Result<Tensor> {
    if x.rank() == 0 {
        bail!("softmax_last_dim: needs at least one dimension, got a scalar")
    }
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Row softmax over the last dim (contiguous f32).
#[derive(Debug, Clone, Copy)]
struct SoftmaxLastDim;

impl Kernel for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "genlab-softmax-last-dim"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let x = args[0].f32(self.name())?;
        let n = *args[0].shape().dims().last().unwrap_or(&0);
        let mut y = x.to_vec();
        if !y.is_empty() {
            par_rows(&mut y, n, |_, rows| {
                let mut inv = vec![0f32; rows.len() / n];
                softmax_rows(rows, n, &mut inv, true);
            });
        }
        Ok((y, args[0].shape().clone()))
    }

    fn backward(&self, _args: &[&Tensor], res: &Tensor, grad: &Tensor) -> Result<Grads> {
        Ok(vec![Some(apply_no_bwd(SoftmaxBwd, &[res, grad])?)])
    }
}

/// `(y, g) -> y * (g - sum(g * y))` over the last dim.
#[derive(Debug, Clone, Copy)]
struct SoftmaxBwd;

impl Kernel for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "genlab-softmax-last-dim-bwd"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let (yshape, gshape) = (args[0].shape(), args[1].shape());
        if yshape != gshape {
            bail!(
                "{}: output {yshape:?} and gradient {gshape:?} differ",
                self.name()
            )
        }
        let [y, g] = f32s(self.name(), args)?;
        let n = *yshape.dims().last().unwrap_or(&0);
        let mut dx = vec![0f32; y.len()];
        if !dx.is_empty() {
            par_rows(&mut dx, n, |r0, rows| {
                let span = r0 * n..r0 * n + rows.len();
                softmax_bwd_rows(&y[span.clone()], &g[span], rows, n);
            });
        }
        Ok((dx, yshape.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-blocked kernels (blocks of 1, 2, 3 query rows) match the one-block run.
    #[test]
    fn blocking_does_not_change_results() {
        let dims = Dims {
            bh: 3,
            nq: 7,
            nk: 5,
            d: 4,
            dv: 3,
        };
        let gen = |n: usize, seed: u32| -> Vec<f32> {
            (0..n)
                .map(|i| (((i as u32 * 2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
                .collect()
        };
        let q = gen(dims.bh * dims.nq * dims.d, 1);
        let k = gen(dims.bh * dims.nk * dims.d, 2);
        let v = gen(dims.bh * dims.nk * dims.dv, 3);
        let g = gen(dims.bh * dims.nq * dims.dv, 4);
        fn mk(data: &[f32], b: usize, rows: usize, cols: usize) -> Batch<'_> {
            Batch {
                data,
                b,
                rows,
                cols,
                bs: rows * cols,
                rs: cols,
                cs: 1,
                heads: 1,
                hs: 0,
            }
        }
        let (qb, kb, vb) = (
            mk(&q, dims.bh, dims.nq, dims.d),
            mk(&k, dims.bh, dims.nk, dims.d),
            mk(&v, dims.bh, dims.nk, dims.dv),
        );
        let o_full = attn_forward(qb, kb, vb, dims, 0.7, dims.nq, false);
        let b_full = attn_backward(qb, kb, vb, &o_full, &g, dims, 0.7, dims.nq, false);
        for block in [1, 2, 3] {
            let o = attn_forward(qb, kb, vb, dims, 0.7, block, false);
            let bw = attn_backward(qb, kb, vb, &o, &g, dims, 0.7, block, false);
            for (a, b) in o.iter().zip(&o_full).chain(bw.iter().zip(&b_full)) {
                assert!((a - b).abs() < 1e-5, "block {block}: {a} vs {b}");
            }
        }
    }
}
