//! Layer normalisation (Ba, Kiros & Hinton 2016, arXiv:1607.06450) as a differentiable
//! custom op.
//!
//! candle 0.11.1's `candle_nn::LayerNorm` / `RmsNorm` run backward without error but pass
//! no gradient; [`layer_norm`] replaces them.
//!
//! Per row `x [D]` of `x [..., D]`:
//!
//! - forward, one pass for the statistics: sums of `x - x[0]` and of its square in f64
//!   (shifting by a row element keeps the variance exact for rows far from zero), biased
//!   variance as PyTorch, `rstd = 1 / sqrt(var + eps)`; then
//!   `y = ((x - x[0]) - (mean - x[0])) * rstd * w + b` (a constant row gives exactly `b`);
//! - backward, one fused kernel recomputing the row statistics (nothing is saved between
//!   forward and backward): with `xhat = (x - mean) * rstd`, `gw = g * w`,
//!   `dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat))`, and per-task partial sums of
//!   `dw = sum_rows g * xhat`, `db = sum_rows g`, reduced at the end.
//!
//! The affine may also be one `[D]` row per index of `x`'s first dim (`weight`, `bias`
//! `[G, D]`): adaLN's per-sample `LN(x)·(1 + scale) + shift` (DiT) in the same passes, its
//! `d(scale)`, `d(shift)` the per-group sums of `g·xhat` and `g`.
//!
//! Rows are split over rayon threads, [`num_threads`](crate::num_threads) of them (inline,
//! rayon untouched, for small inputs or one thread). f32 on the
//! CPU only; other dtypes and devices fall back to [`layer_norm_composed`].

use candle_core::{bail, Result, Shape, Tensor, D};
use rayon::prelude::*;

use crate::attention::{par_rows, rows_per_task};
use crate::op::{all_f32_cpu, apply, apply_no_bwd, f32s, same_dtype, unpack, Arg, Grads, Kernel};
use crate::simd::{hsum, simd_dispatch, LANES};

/// Rows per local partial sum of `dw`/`db` inside a task (bounds f32 summation error).
const PARTIAL_ROWS: usize = 128;

/// Statistics of one row (`x` non-empty): `(shift, mean - shift, rstd)`, so that
/// `xhat = ((x - shift) - m) * rstd`. `x - shift` is one f32 rounding (exact when the two
/// are within a factor 2), its sum and sum of squares accumulate in f64.
#[inline(always)]
fn row_stats(x: &[f32], eps: f64) -> (f32, f32, f32) {
    let shift = x[0];
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let mut acc = |c: &[f32; LANES]| {
        for ((a, b), &v) in s1.iter_mut().zip(s2.iter_mut()).zip(c.iter()) {
            let t = (v - shift) as f64;
            *a += t;
            *b += t * t;
        }
    };
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        acc(c.try_into().expect("chunk of LANES"));
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        // Padding with the shift adds zeros.
        acc(&std::array::from_fn(|i| {
            if i < rem.len() {
                rem[i]
            } else {
                shift
            }
        }));
    }
    let n = x.len() as f64;
    let m = s1.iter().sum::<f64>() / n;
    let var = (s2.iter().sum::<f64>() / n - m * m).max(0.0);
    let rstd = 1.0 / (var + eps).sqrt();
    (shift, m as f32, rstd as f32)
}

/// `(sum g w, sum g w xh)` with lane-wise partial sums.
#[inline(always)]
fn gw_sums(g: &[f32], w: &[f32], xh: &[f32]) -> (f32, f32) {
    let (mut a, mut c) = ([0f32; LANES], [0f32; LANES]);
    let mut acc = |gc: &[f32; LANES], wc: &[f32; LANES], xc: &[f32; LANES]| {
        for ((((ai, ci), &gi), &wi), &xi) in a
            .iter_mut()
            .zip(c.iter_mut())
            .zip(gc.iter())
            .zip(wc.iter())
            .zip(xc.iter())
        {
            let gw = gi * wi;
            *ai += gw;
            *ci += gw * xi;
        }
    };
    let (mut cg, mut cw, mut cx) = (
        g.chunks_exact(LANES),
        w.chunks_exact(LANES),
        xh.chunks_exact(LANES),
    );
    for ((gc, wc), xc) in (&mut cg).zip(&mut cw).zip(&mut cx) {
        let arr = |s: &[f32]| -> [f32; LANES] { s.try_into().expect("chunk of LANES") };
        acc(&arr(gc), &arr(wc), &arr(xc));
    }
    let (rg, rw, rx) = (cg.remainder(), cw.remainder(), cx.remainder());
    if !rg.is_empty() {
        let pad = |s: &[f32]| -> [f32; LANES] {
            std::array::from_fn(|i| if i < s.len() { s[i] } else { 0.0 })
        };
        acc(&pad(rg), &pad(rw), &pad(rx));
    }
    (hsum(a), hsum(c))
}

/// Forward over whole rows: `x`, `y` hold rows of `w.len()`.
#[inline(always)]
fn ln_fwd_rows_body(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], eps: f64) {
    let d = w.len();
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let (shift, m, rstd) = row_stats(xr, eps);
        for (((yi, &xi), &wi), &bi) in yr.iter_mut().zip(xr).zip(w).zip(b) {
            *yi = ((xi - shift) - m) * rstd * wi + bi;
        }
    }
}

simd_dispatch!(
    /// See [`ln_fwd_rows_body`].
    fn ln_fwd_rows(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], eps: f64) => ln_fwd_rows_body
);

/// Backward over whole rows: writes `dx`, adds the rows' `g * xhat` to `dw` and `g` to
/// `db` (through local partials of [`PARTIAL_ROWS`] rows).
#[inline(always)]
fn ln_bwd_rows_body(
    x: &[f32],
    g: &[f32],
    w: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
    db: &mut [f32],
    eps: f64,
) {
    let d = w.len();
    let inv_d = 1.0 / d as f32;
    let mut pw = vec![0f32; d];
    let mut pb = vec![0f32; d];
    let block = PARTIAL_ROWS * d;
    for ((xb, gb), dxb) in x
        .chunks(block)
        .zip(g.chunks(block))
        .zip(dx.chunks_mut(block))
    {
        pw.fill(0.0);
        pb.fill(0.0);
        for ((xr, gr), dr) in xb
            .chunks_exact(d)
            .zip(gb.chunks_exact(d))
            .zip(dxb.chunks_exact_mut(d))
        {
            let (shift, m, rstd) = row_stats(xr, eps);
            // Pass 1: xhat (kept in `dr` until pass 3), dw and db partials.
            for ((((dri, &xi), &gi), pwi), pbi) in dr
                .iter_mut()
                .zip(xr)
                .zip(gr)
                .zip(pw.iter_mut())
                .zip(pb.iter_mut())
            {
                let xh = ((xi - shift) - m) * rstd;
                *dri = xh;
                *pwi += gi * xh;
                *pbi += gi;
            }
            // Pass 2: mean(g w), mean(g w xhat).
            let (sum_gw, sum_gwx) = gw_sums(gr, w, dr);
            let mean_gw = sum_gw * inv_d;
            let mean_gwx = sum_gwx * inv_d;
            // Pass 3: dx.
            for ((dxi, &gi), &wi) in dr.iter_mut().zip(gr).zip(w) {
                *dxi = rstd * (gi * wi - mean_gw - *dxi * mean_gwx);
            }
        }
        for (t, p) in dw.iter_mut().zip(&pw) {
            *t += *p;
        }
        for (t, p) in db.iter_mut().zip(&pb) {
            *t += *p;
        }
    }
}

simd_dispatch!(
    /// See [`ln_bwd_rows_body`].
    fn ln_bwd_rows(
        x: &[f32],
        g: &[f32],
        w: &[f32],
        dx: &mut [f32],
        dw: &mut [f32],
        db: &mut [f32],
        eps: f64,
    ) => ln_bwd_rows_body
);

/// Checks `weight`/`bias` against `x [..., D]`: both `[D]` (one affine for every row), or
/// both `[G, D]` with `x [G, ..., D]` (one affine per leading index: adaLN's per-sample
/// scale and shift). Returns `(D, G)`, `G = 1` for `[D]`.
fn check_shapes(x: &Shape, w: &Shape, b: &Shape) -> Result<(usize, usize)> {
    let Some(&d) = x.dims().last() else {
        bail!("layer_norm: x must have at least one dimension, got a scalar")
    };
    let groups = match w.dims() {
        [wd] if *wd == d => 1,
        [g, wd] if *wd == d && x.rank() >= 2 && x.dims()[0] == *g => *g,
        _ => bail!(
            "layer_norm: weight has shape {w:?}, expected [{d}] (the last dim of x {x:?}) or \
             [{}, {d}] (one row per index of x's first dim)",
            x.dims()[0]
        ),
    };
    if b.dims() != w.dims() {
        bail!("layer_norm: bias has shape {b:?}, expected the weight's {w:?} (x {x:?})")
    }
    Ok((d, groups))
}

/// `(x [..., D], weight [D] or [G, D], bias like weight) -> [..., D]`.
#[derive(Debug, Clone, Copy)]
struct LayerNormOp {
    eps: f64,
}

impl Kernel for LayerNormOp {
    fn name(&self) -> &'static str {
        "genlab-layer-norm"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let (d, groups) = check_shapes(args[0].shape(), args[1].shape(), args[2].shape())?;
        let [x, w, b] = f32s(self.name(), args)?;
        let mut y = vec![0f32; x.len()];
        if y.is_empty() {
            return Ok((y, args[0].shape().clone()));
        }
        if groups == 1 {
            par_rows(&mut y, d, |r0, rows| {
                ln_fwd_rows(&x[r0 * d..r0 * d + rows.len()], w, b, rows, self.eps);
            });
        } else {
            // One task per group, each with its own affine.
            let per = x.len() / groups;
            y.par_chunks_mut(per)
                .zip(x.par_chunks(per))
                .zip(w.par_chunks(d).zip(b.par_chunks(d)))
                .for_each(|((yc, xc), (wg, bg))| ln_fwd_rows(xc, wg, bg, yc, self.eps));
        }
        Ok((y, args[0].shape().clone()))
    }

    fn backward(&self, args: &[&Tensor], _res: &Tensor, grad: &Tensor) -> Result<Grads> {
        let (x, w) = (args[0], args[1]);
        let packed = apply_no_bwd(LayerNormBwd { eps: self.eps }, &[x, w, grad])?;
        // [dx | dw | db] -> x's shape, [D], [D]
        let [dx, dw, db] = unpack(&packed, [x.shape(), w.shape(), w.shape()])?;
        Ok(vec![Some(dx), Some(dw), Some(db)])
    }
}

/// Backward of [`LayerNormOp`]: `(x, weight, grad) -> [dx | dweight | dbias]` flat.
#[derive(Debug, Clone, Copy)]
struct LayerNormBwd {
    eps: f64,
}

impl Kernel for LayerNormBwd {
    fn name(&self) -> &'static str {
        "genlab-layer-norm-bwd"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let (xshape, wshape, gshape) = (args[0].shape(), args[1].shape(), args[2].shape());
        let (d, groups) = check_shapes(xshape, wshape, wshape)?;
        if gshape != xshape {
            bail!("{}: gradient {gshape:?} for x {xshape:?}", self.name())
        }
        let [x, w, g] = f32s(self.name(), args)?;
        let n = x.len();
        let wn = groups * d;
        let mut out = vec![0f32; n + 2 * wn];
        if n == 0 {
            return Ok((out, Shape::from(n + 2 * wn)));
        }
        let (dx, dwb) = out.split_at_mut(n);
        let (dw, db) = dwb.split_at_mut(wn);
        let per = rows_per_task(n / d, d) * d;
        if groups > 1 {
            // One task per group: its rows' dx, and its own dweight/dbias row.
            let per = n / groups;
            dx.par_chunks_mut(per)
                .zip(dw.par_chunks_mut(d).zip(db.par_chunks_mut(d)))
                .enumerate()
                .for_each(|(i, (dxc, (dwg, dbg)))| {
                    let (xc, gc) = (&x[i * per..(i + 1) * per], &g[i * per..(i + 1) * per]);
                    ln_bwd_rows(xc, gc, &w[i * d..(i + 1) * d], dxc, dwg, dbg, self.eps);
                });
        } else if per >= n {
            ln_bwd_rows(x, g, w, dx, dw, db, self.eps);
        } else {
            let (pw, pb) = dx
                .par_chunks_mut(per)
                .zip(x.par_chunks(per))
                .zip(g.par_chunks(per))
                .map(|((dxc, xc), gc)| {
                    let (mut pw, mut pb) = (vec![0f32; d], vec![0f32; d]);
                    ln_bwd_rows(xc, gc, w, dxc, &mut pw, &mut pb, self.eps);
                    (pw, pb)
                })
                .reduce(
                    || (vec![0f32; d], vec![0f32; d]),
                    |(mut aw, mut ab), (bw, bb)| {
                        aw.iter_mut().zip(&bw).for_each(|(s, v)| *s += *v);
                        ab.iter_mut().zip(&bb).for_each(|(s, v)| *s += *v);
                        (aw, ab)
                    },
                );
            dw.copy_from_slice(&pw);
            db.copy_from_slice(&pb);
        }
        Ok((out, Shape::from(n + 2 * wn)))
    }
}

/// Layer normalisation over the last dim, differentiable in `x`, `weight` and `bias`:
/// `(x - mean) / sqrt(var + eps) * weight + bias`, biased variance (as PyTorch).
///
/// `x [..., D]`, `weight [D]`, `bias [D]` -> `[..., D]`; or `weight`, `bias` `[G, D]` with
/// `x [G, ..., D]`: row `g` of the affine for `x[g]` (adaLN's `LN(x)·(1 + scale) + shift`
/// with per-sample `scale`, `shift`, gradients included). f32 CPU inputs run the fused
/// kernels (non-contiguous inputs are made contiguous first); anything else runs
/// [`layer_norm_composed`]. Errors when `weight`/`bias` have other shapes or dtypes differ.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    check_shapes(x.shape(), weight.shape(), bias.shape())?;
    same_dtype(
        "layer_norm",
        &[("x", x), ("weight", weight), ("bias", bias)],
    )?;
    if all_f32_cpu(&[x, weight, bias]) {
        apply(LayerNormOp { eps }, &[x, weight, bias])
    } else {
        layer_norm_composed(x, weight, bias, eps)
    }
}

/// [`layer_norm`] as a composition of differentiable candle ops (`mean_keepdim`,
/// `broadcast_sub`, `sqr`, `sqrt`, `broadcast_div`, `broadcast_mul`, `broadcast_add`): the
/// fallback for non-f32 or non-CPU inputs, and the reference in tests.
pub fn layer_norm_composed(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let (d, groups) = check_shapes(x.shape(), weight.shape(), bias.shape())?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    if weight.rank() == 2 {
        // [G, D] -> [G, 1, ..., 1, D]
        let mut dims = vec![1; x.rank()];
        (dims[0], dims[x.rank() - 1]) = (groups, d);
        return xhat
            .broadcast_mul(&weight.reshape(dims.as_slice())?)?
            .broadcast_add(&bias.reshape(dims.as_slice())?);
    }
    xhat.broadcast_mul(weight)?.broadcast_add(bias)
}
