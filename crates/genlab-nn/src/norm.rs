//! Group normalisation, optionally fused with the SiLU that follows it.
//!
//! Wu & He 2018, "Group Normalization" (arXiv:1803.08494): the channels of each sample are
//! split into `G` groups, each normalised to zero mean and unit variance over its channels
//! and positions, then scaled and shifted per channel:
//! `y = γ_c · (x - μ_bg) / sqrt(σ²_bg + ε) + β_c`. With `silu` the output is
//! `y · sigmoid(y)` (Elfwing et al. 2018, arXiv:1702.03118), the pairing of every DDPM
//! ResNet block.
//!
//! `candle_nn::GroupNorm` is correct and differentiable but its backward pass is a long chain
//! of broadcast ops (about 20x the forward time). On CPU f32 this layer runs one fused
//! kernel forward and one backward, with the analytic gradient
//! `dx = rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂))` over each group,
//! `dγ_c = Σ dy · x̂`, `dβ_c = Σ dy`. Elsewhere it falls back to `candle_nn::GroupNorm`
//! (then `silu`), which computes the same function. Parameters are created exactly like
//! `candle_nn::group_norm`: `weight` (ones) and `bias` (zeros).

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Shape, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::cpu::{contiguous_f32, par_chunks_mut};

/// Mean and reciprocal standard deviation of one group (accumulated in f64).
fn group_stats(x: &[f32], eps: f64) -> (f32, f32) {
    let m = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / m;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

fn sigmoid(y: f32) -> f32 {
    1.0 / (1.0 + (-y).exp())
}

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

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "genlab-group-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = self.0;
        let x = contiguous_f32(s1, l1, "group_norm x")?;
        let gamma = contiguous_f32(s2, l2, "group_norm weight")?;
        let beta = contiguous_f32(s3, l3, "group_norm bias")?;
        let mut y = vec![0f32; x.len()];
        let (m, cpg) = (d.per_group(), d.channels / d.groups);
        // One chunk per (sample, group): contiguous in [B, C, ...].
        par_chunks_mut(
            &mut y,
            m,
            || (),
            |bg, out, _| {
                let xs = &x[bg * m..][..m];
                let (mean, rstd) = group_stats(xs, d.eps);
                let c0 = (bg % d.groups) * cpg;
                for (j, (o, xc)) in out
                    .chunks_mut(d.spatial)
                    .zip(xs.chunks(d.spatial))
                    .enumerate()
                {
                    let (ga, be) = (gamma[c0 + j], beta[c0 + j]);
                    for (o, &v) in o.iter_mut().zip(xc) {
                        let yv = (v - mean) * rstd * ga + be;
                        *o = if d.silu { yv * sigmoid(yv) } else { yv };
                    }
                }
            },
        );
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c) = (x.elem_count(), self.0.channels);
        // [C] ++ [C] -> [2C]
        let gb = Tensor::cat(&[gamma, beta], 0)?;
        // [n + 2C] = dx (flattened) ++ dγ ++ dβ
        let packed = x.apply_op3_no_bwd(&gb, &grad.contiguous()?, &GroupNormBwd(self.0))?;
        // [n] -> x's shape [B, C, ...]; [C]; [C]
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, n, c)?;
        let dbeta = packed.narrow(0, n + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// Backward: `(x, γ ++ β, dy) -> dx (flattened) ++ dγ ++ dβ`.
struct GroupNormBwd(Dims);

impl CustomOp3 for GroupNormBwd {
    fn name(&self) -> &'static str {
        "genlab-group-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = self.0;
        let x = contiguous_f32(s1, l1, "group_norm backward x")?;
        let gb = contiguous_f32(s2, l2, "group_norm backward weight")?;
        let dy = contiguous_f32(s3, l3, "group_norm backward grad")?;
        let (gamma, beta) = gb.split_at(d.channels);
        let (n, m, cpg) = (x.len(), d.per_group(), d.channels / d.groups);
        let mut out = vec![0f32; n + 2 * d.channels];
        let (dx, dparams) = out.split_at_mut(n);
        // Each thread accumulates its own dγ, dβ (f64) over the chunks it handles.
        let partials = par_chunks_mut(
            dx,
            m,
            || vec![0f64; 2 * d.channels],
            |bg, dxs, acc| {
                let xs = &x[bg * m..][..m];
                let dys = &dy[bg * m..][..m];
                let (mean, rstd) = group_stats(xs, d.eps);
                let c0 = (bg % d.groups) * cpg;
                // Pass 1: dx̂ into dxs, the two group means, and dγ, dβ.
                let (mut s1, mut s2) = (0f64, 0f64);
                for j in 0..cpg {
                    let c = c0 + j;
                    let (ga, be) = (gamma[c], beta[c]);
                    let (mut dg, mut db) = (0f64, 0f64);
                    let r = j * d.spatial..(j + 1) * d.spatial;
                    for ((o, &v), &g) in dxs[r.clone()].iter_mut().zip(&xs[r.clone()]).zip(&dys[r])
                    {
                        let xh = (v - mean) * rstd;
                        let g = if d.silu {
                            let yv = xh * ga + be;
                            let s = sigmoid(yv);
                            g * s * (1.0 + yv * (1.0 - s))
                        } else {
                            g
                        };
                        dg += (g * xh) as f64;
                        db += g as f64;
                        let dxh = g * ga;
                        s1 += dxh as f64;
                        s2 += (dxh * xh) as f64;
                        *o = dxh;
                    }
                    acc[c] += dg;
                    acc[d.channels + c] += db;
                }
                // Pass 2: dx = rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂)).
                let (m1, m2) = ((s1 / m as f64) as f32, (s2 / m as f64) as f32);
                for (o, &v) in dxs.iter_mut().zip(xs) {
                    let xh = (v - mean) * rstd;
                    *o = rstd * (*o - m1 - xh * m2);
                }
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
        Ok((CpuStorage::F32(out), Shape::from(n + 2 * d.channels)))
    }
}

/// GroupNorm over `[B, C, ...]` with a per-channel affine map, optionally followed by SiLU.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    reference: candle_nn::GroupNorm,
    channels: usize,
    groups: usize,
    eps: f64,
    silu: bool,
}

impl GroupNorm {
    /// `groups` must divide `channels`; `silu` fuses the activation that follows.
    pub fn new(
        groups: usize,
        channels: usize,
        eps: f64,
        silu: bool,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        if groups == 0 || channels % groups != 0 {
            candle_core::bail!(
                "GroupNorm: groups ({groups}) must be positive and divide channels ({channels})"
            );
        }
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let reference =
            candle_nn::GroupNorm::new(weight.clone(), bias.clone(), channels, groups, eps)?;
        Ok(Self {
            weight,
            bias,
            reference,
            channels,
            groups,
            eps,
            silu,
        })
    }

    /// `[B, C, ...]` -> same shape.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            return self.forward_reference(x);
        }
        let dims = x.dims();
        if dims.len() < 3 || dims[1] != self.channels || dims[2..].contains(&0) {
            candle_core::bail!(
                "GroupNorm: expected [B, {}, ...] with non-empty spatial dims, got {dims:?}",
                self.channels
            );
        }
        let d = Dims {
            channels: self.channels,
            groups: self.groups,
            spatial: dims[2..].iter().product(),
            eps: self.eps,
            silu: self.silu,
        };
        x.contiguous()?
            .apply_op3(&self.weight, &self.bias, GroupNormOp(d))
    }

    /// `candle_nn::GroupNorm` (then SiLU when fused): the reference the tests compare to.
    pub fn forward_reference(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.reference.forward(x)?;
        if self.silu {
            y.silu()
        } else {
            Ok(y)
        }
    }
}
