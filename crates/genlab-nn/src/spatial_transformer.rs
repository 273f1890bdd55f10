//! Spatial transformer: self-attention, cross-attention to a token sequence and a GEGLU
//! feed-forward over the positions of a feature map, the conditioning block of latent
//! diffusion's U-Net.
//!
//! Rombach, Blattmann, Lorenz, Esser & Ommer 2022, "High-Resolution Image Synthesis with
//! Latent Diffusion Models" (arXiv:2112.10752), Sec. 3.3 and Appendix E.2.1 (the
//! "SpatialTransformer"); attention of Vaswani et al. 2017 (arXiv:1706.03762, Eq. 1); GEGLU of
//! Shazeer 2020, "GLU Variants Improve Transformer" (arXiv:2002.05202, Eq. 6), with the exact
//! GELU of Hendrycks & Gimpel 2016 (arXiv:1606.08415). The arrangement and the parameter
//! names are those of diffusers' `Transformer2DModel` with `BasicTransformerBlock`s, as in
//! Stable Diffusion 1.x / 2.x, so that its checkpoints load by name:
//!
//! ```text
//! h = norm(x)                                  GroupNorm, eps 1e-6           `norm`
//! h = proj_in(h)                               1x1 conv (or linear)          `proj_in`
//! h: [B, C, H, W] -> [B, H·W, C]
//! for each block k:                                                          `transformer_blocks.{k}`
//!   h = h + attn1(norm1(h))                    self-attention                `norm1`, `attn1`
//!   h = h + attn2(norm2(h), context)           cross-attention               `norm2`, `attn2`
//!   h = h + ff(norm3(h))                       GEGLU MLP                     `norm3`, `ff.net.0.proj`, `ff.net.2`
//! h: [B, H·W, C] -> [B, C, H, W]
//! out = x + proj_out(h)                        1x1 conv (or linear)          `proj_out`
//! ```
//!
//! Attention (`attn1`, `attn2`): `to_q`, `to_k`, `to_v` without bias (`to_k`, `to_v` of
//! `attn2` read the context, of width `cross_attention_dim`), `to_out.0` with bias; heads
//! split the inner width in contiguous slices (head `h` owns columns `h·d .. (h+1)·d`); the
//! scale is `1/sqrt(d)`. GEGLU: `ff.net.0.proj` maps `C -> 2·4C`, the first half is the value
//! and the second the gate: `value · gelu(gate)`; `ff.net.2` maps back to `C`.
//!
//! The context may come with a key-padding mask (`[B, L]`, 1 = real token), applied as an
//! additive mask on the cross-attention scores (diffusers' `encoder_attention_mask`; it
//! adds -10000, here [`MASKED`](crate::transformer::MASKED) = -1e9: the same softmax whenever a row keeps one real
//! token). No context at all is the same function as an all-zero context: `to_k` and `to_v`
//! have no bias, so every key and value is zero and `attn2` returns its output bias. That
//! is the null condition classifier-free guidance uses here.
//!
//! Every op passes gradients: LayerNorm, GELU, the softmax and the fused attention are
//! genlab-kernels' custom ops (candle 0.11.1's fused `LayerNorm`, `softmax_last_dim` and
//! `sdpa` pass none). Unmasked attention runs `genlab_kernels::attention`; with a mask the
//! scores `[B, H, N, L]` are materialised and `genlab_kernels::softmax_last_dim` applied.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::conv::Conv;
use crate::linear::Linear;
use crate::norm::GroupNorm;
use crate::transformer::LayerNorm;

/// GroupNorm epsilon of `Transformer2DModel`'s `norm` (diffusers hard-codes 1e-6).
pub const SPATIAL_NORM_EPS: f64 = 1e-6;

/// LayerNorm epsilon of `BasicTransformerBlock`'s `norm1..3` (diffusers' `norm_eps`, 1e-5).
pub const BLOCK_NORM_EPS: f64 = 1e-5;

/// GEGLU's inner width as a multiple of the block width (diffusers' `mult = 4`).
pub const FF_MULT: usize = 4;

/// The shape of one [`SpatialTransformer`].
#[derive(Clone, Debug, PartialEq)]
pub struct SpatialTransformerConfig {
    /// Channels of the feature map (= the inner width: heads · head dim).
    pub channels: usize,
    pub heads: usize,
    /// Width of the context tokens (`cross_attention_dim`).
    pub context_dim: usize,
    /// Number of `BasicTransformerBlock`s (`transformer_layers_per_block`).
    pub layers: usize,
    /// GroupNorm groups of `norm`.
    pub groups: usize,
    /// `proj_in` / `proj_out` as linear layers (SD 2.x) instead of 1x1 convolutions (SD 1.x).
    pub linear_projection: bool,
}

/// A bias-free projection `y = x Wᵀ` (`weight [out, in]`, PyTorch's initialisation).
#[derive(Debug, Clone)]
struct Proj {
    weight: Tensor,
}

impl Proj {
    fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            weight: candle_nn::linear_no_bias(c_in, c_out, vb)?.weight().clone(),
        })
    }
}

/// `x Wᵀ` through genlab-kernels' GEMM with a constant zero bias.
fn linear_no_bias(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let zero = Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?;
    genlab_kernels::linear(x, w, &zero)
}

/// Multi-head attention with separate bias-free `to_q`, `to_k`, `to_v` and a biased
/// `to_out.0` (diffusers' `Attention`): self-attention when no context is given to
/// [`Attention::new`], cross-attention otherwise.
#[derive(Debug, Clone)]
pub struct Attention {
    heads: usize,
    inner: usize,
    to_q: Proj,
    to_k: Proj,
    to_v: Proj,
    to_out: Linear,
}

impl Attention {
    /// `query_dim` -> `inner = heads · head_dim` -> `query_dim`; keys and values read
    /// `context_dim` wide tokens (`query_dim` for self-attention).
    pub fn new(
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        if heads == 0 || head_dim == 0 {
            candle_core::bail!(
                "attention: heads ({heads}) and head dim ({head_dim}) must be positive"
            );
        }
        let inner = heads * head_dim;
        Ok(Self {
            heads,
            inner,
            to_q: Proj::new(query_dim, inner, vb.pp("to_q"))?,
            to_k: Proj::new(context_dim, inner, vb.pp("to_k"))?,
            to_v: Proj::new(context_dim, inner, vb.pp("to_v"))?,
            to_out: Linear::new(inner, query_dim, vb.pp("to_out").pp(0))?,
        })
    }

    /// Self-attention: `x [B, N, C]` -> `[B, N, C]`. The three projections run as one GEMM
    /// against the stacked weights.
    pub fn forward_self(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let (h, inner) = (self.heads, self.inner);
        let d = inner / h;
        // [3·inner, C]: rows q, then k, then v.
        let w = Tensor::cat(
            &[&self.to_q.weight, &self.to_k.weight, &self.to_v.weight],
            0,
        )?;
        // [B, N, 3·inner] -> [B, N, 3, H, d] -> [3, B, H, N, d]
        let qkv = linear_no_bias(x, &w)?
            .reshape((b, n, 3, h, d))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let part = |p: usize| qkv.get(p)?.reshape((b * h, n, d));
        let o =
            genlab_kernels::attention(&part(0)?, &part(1)?, &part(2)?, 1.0 / (d as f64).sqrt())?;
        self.merge_heads(&o, b, n)
    }

    /// Cross-attention: queries from `x [B, N, C]`, keys and values from `context
    /// [B, L, D]`; `mask` (additive, broadcasting to `[B, H, N, L]`, e.g.
    /// [`crate::key_padding_mask`]) hides padded tokens. `[B, N, C]` out.
    pub fn forward_cross(
        &self,
        x: &Tensor,
        context: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let (bc, l, dc) = context.dims3()?;
        let want = self.to_k.weight.dim(1)?;
        if bc != b || dc != want {
            candle_core::bail!(
                "cross-attention: the context has shape [{bc}, {l}, {dc}], expected [{b}, L, {want}]"
            );
        }
        let (h, inner) = (self.heads, self.inner);
        let d = inner / h;
        let scale = 1.0 / (d as f64).sqrt();
        // [B, N, inner] -> [B, N, H, d] -> [B, H, N, d] -> [BH, N, d]
        let q = linear_no_bias(x, &self.to_q.weight)?
            .reshape((b, n, h, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * h, n, d))?;
        // [B, L, 2·inner] -> [B, L, 2, H, d] -> [2, B, H, L, d]
        let wkv = Tensor::cat(&[&self.to_k.weight, &self.to_v.weight], 0)?;
        let kv = linear_no_bias(context, &wkv)?
            .reshape((b, l, 2, h, d))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (k, v) = (
            kv.get(0)?.reshape((b * h, l, d))?,
            kv.get(1)?.reshape((b * h, l, d))?,
        );
        let o = match mask {
            None => genlab_kernels::attention(&q, &k, &v, scale)?,
            Some(m) => {
                // [BH, N, d] @ [BH, d, L] -> [BH, N, L] -> [B, H, N, L] (+ mask)
                let s = (q.matmul(&k.t()?)? * scale)?
                    .reshape((b, h, n, l))?
                    .broadcast_add(m)?;
                // [B, H, N, L] -> [BH, N, L] @ [BH, L, d] -> [BH, N, d]
                genlab_kernels::softmax_last_dim(&s)?
                    .reshape((b * h, n, l))?
                    .matmul(&v)?
            }
        };
        self.merge_heads(&o, b, n)
    }

    /// What [`Attention::forward_cross`] returns for an all-zero context: every value is
    /// zero, so only the output bias remains, `[B, N, C]`.
    pub fn forward_null(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let c = self.to_out.out_features();
        self.to_out
            .bias()
            .reshape((1, 1, c))?
            .broadcast_as((b, n, c))?
            .contiguous()
    }

    /// `[BH, N, d]` -> `[B, N, inner]` -> `to_out.0` -> `[B, N, C]`.
    fn merge_heads(&self, o: &Tensor, b: usize, n: usize) -> candle_core::Result<Tensor> {
        let (h, inner) = (self.heads, self.inner);
        let o = o
            .reshape((b, h, n, inner / h))?
            .transpose(1, 2)?
            .reshape((b, n, inner))?;
        self.to_out.forward(&o)
    }
}

/// GEGLU feed-forward: `ff.net.2(value · gelu(gate))` with `[value, gate] = ff.net.0.proj(x)`.
#[derive(Debug, Clone)]
pub struct GegluFeedForward {
    proj: Linear,
    out: Linear,
    inner: usize,
}

impl GegluFeedForward {
    pub fn new(dim: usize, inner: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let net = vb.pp("net");
        Ok(Self {
            proj: Linear::new(dim, 2 * inner, net.pp(0).pp("proj"))?,
            out: Linear::new(inner, dim, net.pp(2))?,
            inner,
        })
    }

    /// `[..., C]` -> `[..., C]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let p = self.proj.forward(x)?;
        let last = p.rank() - 1;
        let value = p.narrow(last, 0, self.inner)?;
        let gate = p.narrow(last, self.inner, self.inner)?.contiguous()?;
        self.out
            .forward(&(value * genlab_kernels::gelu_erf(&gate)?)?)
    }
}

/// diffusers' `BasicTransformerBlock` (layer norms, self-attention, cross-attention, GEGLU).
#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: GegluFeedForward,
}

impl BasicTransformerBlock {
    pub fn new(
        dim: usize,
        heads: usize,
        context_dim: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        if heads == 0 || dim % heads != 0 {
            candle_core::bail!(
                "transformer block: heads ({heads}) must be positive and divide the width ({dim})"
            );
        }
        let d = dim / heads;
        Ok(Self {
            norm1: LayerNorm::new(dim, BLOCK_NORM_EPS, vb.pp("norm1"))?,
            attn1: Attention::new(dim, dim, heads, d, vb.pp("attn1"))?,
            norm2: LayerNorm::new(dim, BLOCK_NORM_EPS, vb.pp("norm2"))?,
            attn2: Attention::new(dim, context_dim, heads, d, vb.pp("attn2"))?,
            norm3: LayerNorm::new(dim, BLOCK_NORM_EPS, vb.pp("norm3"))?,
            ff: GegluFeedForward::new(dim, FF_MULT * dim, vb.pp("ff"))?,
        })
    }

    /// `x [B, N, C]`, `context [B, L, D]` (None: the all-zero context), `mask` additive
    /// `[B, 1, 1, L]` -> `[B, N, C]`.
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let x = (x + self.attn1.forward_self(&self.norm1.forward(x)?)?)?;
        let h = self.norm2.forward(&x)?;
        let a = match context {
            Some(c) => self.attn2.forward_cross(&h, c, mask)?,
            None => self.attn2.forward_null(&h)?,
        };
        let x = (x + a)?;
        &x + self.ff.forward(&self.norm3.forward(&x)?)?
    }
}

/// `proj_in` / `proj_out`: a 1x1 convolution on `[B, C, H, W]` or a linear layer on tokens.
#[derive(Debug, Clone)]
enum Projection {
    Conv(Conv),
    Linear(Linear),
}

/// diffusers' `Transformer2DModel` (continuous input): `x [B, C, H, W]` -> `[B, C, H, W]`.
#[derive(Debug, Clone)]
pub struct SpatialTransformer {
    channels: usize,
    context_dim: usize,
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl SpatialTransformer {
    pub fn new(cfg: &SpatialTransformerConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let c = cfg.channels;
        if cfg.layers == 0 || cfg.context_dim == 0 {
            candle_core::bail!(
                "spatial transformer: layers ({}) and context width ({}) must be positive",
                cfg.layers,
                cfg.context_dim
            );
        }
        let proj = |vb: VarBuilder| -> candle_core::Result<Projection> {
            Ok(if cfg.linear_projection {
                Projection::Linear(Linear::new(c, c, vb)?)
            } else {
                Projection::Conv(Conv::new(c, c, 1, 1, 0, vb)?)
            })
        };
        let norm = GroupNorm::new(cfg.groups, c, SPATIAL_NORM_EPS, false, vb.pp("norm"))?;
        let proj_in = proj(vb.pp("proj_in"))?;
        let blocks = (0..cfg.layers)
            .map(|k| {
                BasicTransformerBlock::new(
                    c,
                    cfg.heads,
                    cfg.context_dim,
                    vb.pp("transformer_blocks").pp(k),
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let proj_out = proj(vb.pp("proj_out"))?;
        Ok(Self {
            channels: c,
            context_dim: cfg.context_dim,
            norm,
            proj_in,
            blocks,
            proj_out,
        })
    }

    /// `x [B, C, H, W]`, `context [B, L, D]` (None: the all-zero context), `mask` additive,
    /// broadcasting to `[B, H, N, L]` (see [`crate::key_padding_mask`]) -> `[B, C, H, W]`.
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, c, hh, ww) = x.dims4()?;
        if c != self.channels {
            candle_core::bail!(
                "spatial transformer: x has {c} channels, expected {}",
                self.channels
            );
        }
        if let Some(ctx) = context {
            let (bc, _, d) = ctx.dims3()?;
            if bc != b || d != self.context_dim {
                candle_core::bail!(
                    "spatial transformer: the context has shape {:?}, expected [{b}, L, {}]",
                    ctx.dims(),
                    self.context_dim
                );
            }
        }
        let n = hh * ww;
        let h = self.norm.forward(x)?;
        // [B, C, H, W] -> [B, N, C]
        let to_tokens = |t: &Tensor| t.reshape((b, c, n))?.transpose(1, 2)?.contiguous();
        let mut h = match &self.proj_in {
            Projection::Conv(p) => to_tokens(&p.forward(&h)?)?,
            Projection::Linear(p) => p.forward(&to_tokens(&h)?)?,
        };
        for block in &self.blocks {
            h = block.forward(&h, context, mask)?;
        }
        // [B, N, C] -> [B, C, H, W]
        let to_map = |t: &Tensor| t.transpose(1, 2)?.contiguous()?.reshape((b, c, hh, ww));
        let h = match &self.proj_out {
            Projection::Conv(p) => p.forward(&to_map(&h)?)?,
            Projection::Linear(p) => to_map(&p.forward(&h)?)?,
        };
        x + h
    }
}
