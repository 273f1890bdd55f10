//! Group normalisation, optionally fused with the SiLU that follows it: one forward and one
//! backward kernel.
//!
//! Algorithm: Wu & He 2018, "Group Normalization" (arXiv:1803.08494): the channels of each
//! sample are split into `G` groups, each normalised to zero mean and unit variance over its
//! channels and positions, then scaled and shifted per channel:
//! `y = γ_c · (x - μ_bg) / sqrt(σ²_bg + ε) + β_c`. With `silu` the output is
//! `y · sigmoid(y)` (Elfwing et al. 2018, arXiv:1702.03118), the pairing of every DDPM
//! ResNet block. The backward pass is the analytic gradient
//! `dx = rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂))` over each group (dx̂ = dy·γ, through
//! the SiLU's derivative when fused), `dγ_c = Σ dy · x̂`, `dβ_c = Σ dy`; statistics and
//! parameter gradients are accumulated in f64 (per channel in f32 lanes first). The
//! per-group loops are vectorised for the CPU's widest unit ([`crate::simd`]).
//!
//! Layout conventions: `x [B, C, ...]` (any number of trailing spatial dims), contiguous
//! f32 on the CPU, so each (sample, group) is one contiguous run of `C/G · spatial` values;
//! `γ`, `β`: `[C]`. (`candle_nn::GroupNorm` computes the same function, but its backward pass
//! is a long chain of broadcast ops, about 20x the forward time.)
//!
//! Threads ([`crate::num_threads`]): the (sample, group) runs are split over them; with one
//! thread, or little data, everything runs on the calling thread.

use candle_core::{bail, Result, Shape, Tensor};

use crate::op::{apply, apply_no_bwd, f32s, require_f32_cpu, unpack, Arg, Grads, Kernel};
use crate::par::{elementwise_parts, par_chunks_mut};
use crate::simd::{sigmoid_f32, simd_dispatch, sum_f64, sum_sq_dev_f64};

/// Mean and reciprocal standard deviation of one group (two passes, f64 lane sums).
#[inline(always)]
fn group_stats(x: &[f32], eps: f64) -> (f32, f32) {
    let m = x.len() as f64;
    let mean = sum_f64(x) / m;
    let var = sum_sq_dev_f64(x, mean) / m;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

#[inline(always)]
fn forward_group_body(
    xs: &[f32],
    out: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    spatial: usize,
    eps: f64,
    silu: bool,
) {
    let (mean, rstd) = group_stats(xs, eps);
    for ((o, xc), (&ga, &be)) in out
        .chunks_mut(spatial)
        .zip(xs.chunks(spatial))
        .zip(gamma.iter().zip(beta))
    {
        // y = γ (x - μ) rstd + β = a x + b
        let a = rstd * ga;
        let b = be - mean * a;
        if silu {
            for (o, &v) in o.iter_mut().zip(xc) {
                let y = v * a + b;
                *o = y * sigmoid_f32(y);
            }
        } else {
            for (o, &v) in o.iter_mut().zip(xc) {
                *o = v * a + b;
            }
        }
    }
}

simd_dispatch!(
    /// Forward of one (sample, group): `xs`, `out` hold its `γ.len()` channels of `spatial`
    /// values; `γ`, `β` are this group's slices.
    fn forward_group(
        xs: &[f32],
        out: &mut [f32],
        gamma: &[f32],
        beta: &[f32],
        spatial: usize,
        eps: f64,
        silu: bool,
    ) => forward_group_body
);

#[allow(clippy::too_many_arguments)] // one group's slices and the op's settings
#[inline(always)]
fn backward_group_body(
    xs: &[f32],
    dys: &[f32],
    dxs: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    dgamma: &mut [f64],
    dbeta: &mut [f64],
    spatial: usize,
    eps: f64,
    silu: bool,
) {
    let (mean, rstd) = group_stats(xs, eps);
    // Pass 1: g = dy (through the SiLU's derivative when fused) into dxs; per channel
    // dγ = Σ g x̂, dβ = Σ g; the group sums of dx̂ = gγ and of dx̂·x̂ follow from them.
    let (mut s1, mut s2) = (0f64, 0f64);
    for (c, ((o, (xc, dyc)), (&ga, &be))) in dxs
        .chunks_mut(spatial)
        .zip(xs.chunks(spatial).zip(dys.chunks(spatial)))
        .zip(gamma.iter().zip(beta))
        .enumerate()
    {
        let a = rstd * ga;
        let b = be - mean * a;
        if silu {
            for ((o, &v), &g) in o.iter_mut().zip(xc).zip(dyc) {
                let y = v * a + b;
                let s = sigmoid_f32(y);
                *o = g * s * (1.0 + y * (1.0 - s));
            }
        } else {
            o.copy_from_slice(dyc);
        }
        // Σ g and Σ g·x in f32 lanes (one channel: at most a few thousand terms), then
        // Σ g x̂ = rstd (Σ g x - μ Σ g).
        let mut sg = [0f32; 16];
        let mut sgx = [0f32; 16];
        let chunks = o.chunks_exact(16).zip(xc.chunks_exact(16));
        for (gc, xc16) in chunks {
            for i in 0..16 {
                sg[i] += gc[i];
                sgx[i] += gc[i] * xc16[i];
            }
        }
        let tail = o.len() - o.len() % 16;
        let mut db: f64 = sg.iter().map(|&v| v as f64).sum();
        let mut gx: f64 = sgx.iter().map(|&v| v as f64).sum();
        for (g, v) in o[tail..].iter().zip(&xc[tail..]) {
            db += *g as f64;
            gx += (*g * *v) as f64;
        }
        let dg = rstd as f64 * (gx - mean as f64 * db);
        dgamma[c] += dg;
        dbeta[c] += db;
        s1 += ga as f64 * db;
        s2 += ga as f64 * dg;
    }
    // Pass 2: dx = rstd (g γ - mean(dx̂) - x̂ mean(dx̂ x̂)) = A g + B x + C per channel.
    let m = xs.len() as f64;
    let (m1, m2) = ((s1 / m) as f32, (s2 / m) as f32);
    for (o, (xc, &ga)) in dxs.chunks_mut(spatial).zip(xs.chunks(spatial).zip(gamma)) {
        let a = rstd * ga;
        let bx = -rstd * rstd * m2;
        let c = -rstd * m1 - bx * mean;
        for (o, &v) in o.iter_mut().zip(xc) {
            *o = a * *o + bx * v + c;
        }
    }
}

simd_dispatch!(
    /// Backward of one (sample, group): writes `dx` and adds this group's `dγ`, `dβ` into
    /// `dgamma`, `dbeta` (its channels' slices).
    #[allow(clippy::too_many_arguments)] // one group's slices and the op's settings
    fn backward_group(
        xs: &[f32],
        dys: &[f32],
        dxs: &mut [f32],
        gamma: &[f32],
        beta: &[f32],
        dgamma: &mut [f64],
        dbeta: &mut [f64],
        spatial: usize,
        eps: f64,
        silu: bool,
    ) => backward_group_body
);

/// Shape bookkeeping shared by the forward and backward kernels.
#[derive(Clone, Copy, Debug)]
struct Dims {
    channels: usize,
    groups: usize,
    /// Elements per channel of one sample (the product of the spatial dims).
    spatial: usize,
    eps: f64,
    silu: bool,
}

impl Dims {
    fn per_group(&self) -> usize {
        self.channels / self.groups * self.spatial
    }
}

/// Forward: `(x [B, C, ...], γ [C], β [C]) -> y`, same shape as `x`.
struct GroupNormOp(Dims);

impl Kernel for GroupNormOp {
    fn name(&self) -> &'static str {
        "genlab-group-norm"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let d = self.0;
        let [x, gamma, beta] = f32s(self.name(), args)?;
        let mut y = vec![0f32; x.len()];
        let (m, cpg) = (d.per_group(), d.channels / d.groups);
        // One chunk per (sample, group): contiguous in [B, C, ...].
        let parts = elementwise_parts(y.len());
        par_chunks_mut(
            &mut y,
            m,
            parts,
            || (),
            |bg, out, _| {
                let c0 = (bg % d.groups) * cpg;
                forward_group(
                    &x[bg * m..][..m],
                    out,
                    &gamma[c0..c0 + cpg],
                    &beta[c0..c0 + cpg],
                    d.spatial,
                    d.eps,
                    d.silu,
                );
            },
        );
        Ok((y, args[0].shape().clone()))
    }

    fn backward(&self, args: &[&Tensor], _res: &Tensor, grad: &Tensor) -> Result<Grads> {
        let (x, gamma, beta) = (args[0], args[1], args[2]);
        // [C] ++ [C] -> [2C]
        let gb = Tensor::cat(&[gamma, beta], 0)?;
        // [n + 2C] = dx (flattened) ++ dγ ++ dβ; a gradient, with no backward of its own.
        let packed = apply_no_bwd(GroupNormBwd(self.0), &[x, &gb, grad])?;
        // [n] -> x's shape [B, C, ...]; [C]; [C]
        let [dx, dgamma, dbeta] = unpack(&packed, [x.shape(), gamma.shape(), beta.shape()])?;
        Ok(vec![Some(dx), Some(dgamma), Some(dbeta)])
    }
}

/// Backward: `(x, γ ++ β, dy) -> dx (flattened) ++ dγ ++ dβ`.
struct GroupNormBwd(Dims);

impl Kernel for GroupNormBwd {
    fn name(&self) -> &'static str {
        "genlab-group-norm-bwd"
    }

    fn forward(&self, args: &[Arg]) -> Result<(Vec<f32>, Shape)> {
        let d = self.0;
        let [x, gb, dy] = f32s(self.name(), args)?;
        let (gamma, beta) = gb.split_at(d.channels);
        let (n, m, cpg) = (x.len(), d.per_group(), d.channels / d.groups);
        let mut out = vec![0f32; n + 2 * d.channels];
        let (dx, dparams) = out.split_at_mut(n);
        // Each thread accumulates its own dγ, dβ (f64) over the chunks it handles.
        let parts = elementwise_parts(dx.len());
        let partials = par_chunks_mut(
            dx,
            m,
            parts,
            || vec![0f64; 2 * d.channels],
            |bg, dxs, acc| {
                let c0 = (bg % d.groups) * cpg;
                let (dgamma, dbeta) = acc.split_at_mut(d.channels);
                backward_group(
                    &x[bg * m..][..m],
                    &dy[bg * m..][..m],
                    dxs,
                    &gamma[c0..c0 + cpg],
                    &beta[c0..c0 + cpg],
                    &mut dgamma[c0..c0 + cpg],
                    &mut dbeta[c0..c0 + cpg],
                    d.spatial,
                    d.eps,
                    d.silu,
                );
            },
        );
        let mut total = vec![0f64; 2 * d.channels];
        for p in &partials {
            for (t, v) in total.iter_mut().zip(p) {
                *t += v;
            }
        }
        for (o, t) in dparams.iter_mut().zip(&total) {
            *o = *t as f32;
        }
        Ok((out, Shape::from(n + 2 * d.channels)))
    }
}

/// Group normalisation of `x [B, C, ...]` with `weight` (γ) and `bias` (β) `[C]`,
/// `groups` dividing `C`, followed by SiLU when `silu`. CPU f32 only; differentiable w.r.t.
/// `x`, `weight` and `bias` (first order).
pub fn group_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    groups: usize,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    require_f32_cpu("group_norm", &[x, weight, bias])?;
    let dims = x.dims();
    if dims.len() < 3 || dims[2..].contains(&0) {
        bail!("group_norm: expected [B, C, ...] with non-empty spatial dims, got {dims:?}")
    }
    let channels = dims[1];
    if weight.dims1()? != channels || bias.dims1()? != channels {
        bail!(
            "group_norm: weight {:?} and bias {:?} for {channels} channels",
            weight.dims(),
            bias.dims()
        )
    }
    if groups == 0 || channels % groups != 0 {
        bail!("group_norm: groups ({groups}) must be positive and divide channels ({channels})")
    }
    let d = Dims {
        channels,
        groups,
        spatial: dims[2..].iter().product(),
        eps,
        silu,
    };
    apply(GroupNormOp(d), &[x, weight, bias])
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};

    /// Relative agreement with candle_nn's GroupNorm (f32, different summation order).
    const TOL: f32 = 1e-5;

    #[test]
    fn forward_matches_candle_nn() {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 120.0, &dev)
            .unwrap()
            .sin()
            .unwrap()
            .reshape((2, 6, 2, 5))
            .unwrap();
        let gamma = Tensor::new(&[0.5f32, 1.0, -1.5, 2.0, 0.1, 1.2], &dev).unwrap();
        let beta = Tensor::new(&[0.0f32, 0.3, -0.2, 1.0, 0.5, -1.0], &dev).unwrap();
        let reference = candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), 6, 3, 1e-5)
            .unwrap()
            .forward(&x)
            .unwrap();
        for silu in [false, true] {
            let want = if silu {
                reference.silu().unwrap()
            } else {
                reference.clone()
            };
            let got = group_norm(&x, &gamma, &beta, 3, 1e-5, silu).unwrap();
            let diff = (got - &want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < TOL, "silu={silu}: max diff {diff}");
        }
        assert!(group_norm(&x, &gamma, &beta, 4, 1e-5, false).is_err());
    }
}
