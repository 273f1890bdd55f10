//! DiT: the diffusion transformer, for images and for videos cut into spacetime patches.
//!
//! Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", arXiv:2212.09748
//! (Sec. 3.2, Fig. 3): the noisy input is cut into `p x p` patches, each linearly embedded
//! and given a fixed 2-D sine-cosine position; `N` transformer blocks with **adaLN-Zero**
//! conditioning read the sum `c` of the timestep and class embeddings; a final adaptive
//! LayerNorm and a linear layer map each token back to its patch:
//!
//! ```text
//! z   = Linear(patchify(x)) + pos                       tokens [B, N, D]
//! c   = MLP(timestep_embedding(t)) + class_embedding    [B, D]
//! per block, (shift, scale, gate) x {attention, MLP} = Linear_0(SiLU(c)):
//!   z = z + gate_a * Attention(LN(z) * (1 + scale_a) + shift_a)
//!   z = z + gate_m * MLP(LN(z) * (1 + scale_m) + shift_m)
//! out = unpatchify(Linear_0(LN(z) * (1 + scale_f) + shift_f))
//! ```
//!
//! `LN` has no learned affine (eps 1e-6), the MLP is 4x wide with the tanh GELU, and every
//! `Linear_0` (the modulations and the output layer) starts at zero, so each block starts
//! as the identity and the network outputs zero (the "-Zero"). Transformer layers use
//! Xavier-uniform weights, the timestep MLP N(0, 0.02²) (the paper's released code).
//!
//! The class embedding is the `extra` the DDPM adds to `c` (genlab-models' label embedding,
//! with DiT's extra "no label" row for classifier-free guidance). With `context_dim` set,
//! each block also cross-attends to a token sequence (text) between its attention and its
//! MLP, with an affine LayerNorm and no modulation (the arrangement of PixArt-α, Chen et al.
//! 2023, arXiv:2310.00426, Sec. 2.3); the all-zero context is the null condition (only the
//! output bias of the cross-attention remains, as in genlab's `CondUNet`).
//!
//! **Video** (`[B, T, C, H, W]`): the clip is cut into `tubelet x p x p` spacetime patches
//! (Arnab et al. 2021, ViViT, arXiv:2103.15691, Sec. 3.2, "tubelet embedding"; the spacetime
//! patches of OpenAI's Sora report, 2024), positions are the 2-D spatial embedding plus a
//! 1-D embedding of the tubelet's time index, and attention is either **joint** over all
//! `T/tubelet · H/p · W/p` tokens or **factorised**: attention within each frame's tokens,
//! then attention across time at each spatial position, each with its own adaLN-Zero
//! modulation (ViViT's model 3 / TimeSformer's divided space-time attention, Bertasius et
//! al. 2021, arXiv:2102.05095; Latte, Ma et al. 2024, arXiv:2401.03048). An image model is
//! the one-frame case.
//!
//! Attention runs `genlab_kernels::attention`, which never materialises the `[N, N]`
//! score matrix of a whole batch-head (row blocks), so long spacetime sequences stay lean.
//!
//! Parameter names: `x_embed` (`[D, tubelet·C·p·p]`, a patch vector ordered (frame,
//! channel, row, column)), `pos_embed` (learned positions only), `t_embed.lin1`,
//! `t_embed.lin2`, `blocks.{i}.{ada, attn, temporal_attn, cross_norm, cross, mlp}`,
//! `final.ada`, `final.linear`.

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::flops::linear_flops;
use crate::spatial_transformer::Attention;
use crate::transformer::{LayerNorm, MlpAct, SelfAttention, TransformerMlp};
use crate::vit::{patchify, unpatchify};
use crate::{silu, timestep_embedding, Linear, DEFAULT_MAX_PERIOD};

/// LayerNorm epsilon of the DiT blocks (the paper's code: 1e-6).
pub const DIT_NORM_EPS: f64 = 1e-6;
/// Std of the timestep MLP's weights and of learned positions (DiT's code: 0.02).
pub const DIT_EMBED_STD: f64 = 0.02;
/// Base period of the sine-cosine position embedding (as the timestep embedding's).
pub const POS_MAX_PERIOD: f64 = 10_000.0;

/// Position embedding of the patch tokens.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PosEmbed {
    /// Fixed 2-D sine-cosine (DiT's choice), plus a 1-D one over time for videos.
    #[default]
    Sincos,
    /// A learned `[N, D]` table, N(0, 0.02²) at initialisation.
    Learned,
}

/// How a video DiT attends over its spacetime tokens.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VideoAttention {
    /// One attention over all tokens of the clip.
    #[default]
    Joint,
    /// Attention within each frame, then across frames at each position.
    Factorised,
}

/// Shape of a [`Dit`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DitConfig {
    /// Token width D.
    pub width: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads (divide the width).
    pub heads: usize,
    /// MLP hidden width over the token width (4 in the paper).
    pub mlp_ratio: usize,
    /// Patch side p (2, 4 or 8 in the paper; must divide the image's sides).
    pub patch: usize,
    /// Frames per spacetime patch of a video (must divide the clip length); 1 for images.
    pub tubelet: usize,
    pub pos_embed: PosEmbed,
    /// Joint or factorised space-time attention (videos only).
    pub attention: VideoAttention,
    /// Width of the tokens cross-attended to (text); `None`: no cross-attention.
    pub context_dim: Option<usize>,
    /// Frequencies of the timestep embedding fed to its MLP (256 in the paper).
    pub freq_dim: usize,
}

impl Default for DitConfig {
    /// DiT-S/4 at half the paper's width and depth (see [`DitConfig::size`]).
    fn default() -> Self {
        Self::size("s", 4).expect("a known size")
    }
}

impl DitConfig {
    /// The paper's named sizes (Table 1) at half their width and depth, so that they train
    /// on a CPU: `s` (DiT-S: 384 wide, 12 deep, 6 heads -> 192, 6, 3), `b` (DiT-B: 768, 12,
    /// 12 -> 384, 6, 6), and `xs` (128, 4, 4; tests and quick runs); `patch` as in
    /// "DiT-S/4".
    pub fn size(name: &str, patch: usize) -> genlab_core::Result<Self> {
        let (width, depth, heads) = match name.to_ascii_lowercase().as_str() {
            "xs" => (128, 4, 4),
            "s" => (192, 6, 3),
            "b" => (384, 6, 6),
            other => {
                return Err(genlab_core::Error::setting(
                    "dit size",
                    format!("unknown size `{other}` (known: xs, s, b)"),
                ))
            }
        };
        Ok(Self {
            width,
            depth,
            heads,
            mlp_ratio: 4,
            patch,
            tubelet: 1,
            pos_embed: PosEmbed::Sincos,
            attention: VideoAttention::Joint,
            context_dim: None,
            freq_dim: 256,
        })
    }

    /// Checks the config against the example shape `[C, H, W]` or `[T, C, H, W]`.
    pub fn validate(&self, shape: &[usize]) -> genlab_core::Result<()> {
        let bad = |m: String| Err(genlab_core::Error::Config(m));
        if self.width == 0 || self.depth == 0 || self.mlp_ratio == 0 || self.freq_dim == 0 {
            return bad("dit: width, depth, mlp_ratio and freq_dim must be positive".into());
        }
        if self.heads == 0 || self.width % self.heads != 0 {
            return bad(format!(
                "dit: heads ({}) must be positive and divide the width ({})",
                self.heads, self.width
            ));
        }
        if self.width % 4 != 0 || self.freq_dim % 2 != 0 {
            return bad(format!(
                "dit: the width ({}) must be a multiple of 4 (two sine-cosine position halves) \
                 and freq_dim ({}) even",
                self.width, self.freq_dim
            ));
        }
        if self.context_dim == Some(0) {
            return bad("dit: context_dim must be positive (or absent)".into());
        }
        let (t, h, w) = match shape {
            [_, h, w] => (1, *h, *w),
            [t, _, h, w] => (*t, *h, *w),
            other => {
                return bad(format!(
                    "dit: the data must be images [C, H, W] or videos [T, C, H, W], got {other:?}"
                ))
            }
        };
        let p = self.patch;
        if p == 0 || h % p != 0 || w % p != 0 {
            let fits: Vec<String> = (1..=h.min(w))
                .filter(|q| h % q == 0 && w % q == 0 && *q <= 8)
                .map(|q| q.to_string())
                .collect();
            return bad(format!(
                "dit: a {h}x{w} image does not split into {p}x{p} patches; patch sizes that \
                 fit: {}",
                fits.join(", ")
            ));
        }
        if self.tubelet == 0 || t % self.tubelet != 0 {
            return bad(format!(
                "dit: clips of {t} frames do not split into tubelets of {} frames",
                self.tubelet
            ));
        }
        if shape.len() == 3 && self.tubelet != 1 {
            return bad("dit: tubelet > 1 is for videos [T, C, H, W]; images take 1".into());
        }
        Ok(())
    }

    /// The token grid (time, rows, columns) of an example of `shape`.
    pub fn grid(&self, shape: &[usize]) -> (usize, usize, usize) {
        let (t, h, w) = match shape {
            [_, h, w] => (1, *h, *w),
            [t, _, h, w] => (*t, *h, *w),
            _ => (1, 1, 1),
        };
        (t / self.tubelet, h / self.patch, w / self.patch)
    }

    /// Forward FLOPs (multiply-adds x 2, [`crate::flops`]) on a batch of `b` examples of
    /// `shape` (predicting as many channels as they have), with `context_len` context tokens when the model cross-attends.
    pub fn forward_flops(&self, b: usize, shape: &[usize], context_len: usize) -> f64 {
        let (gt, gh, gw) = self.grid(shape);
        let (s, n) = (gh * gw, gt * gh * gw);
        let d = self.width;
        let c = shape[shape.len() - 3];
        let patch_in = self.tubelet * c * self.patch * self.patch;
        let factorised = shape.len() == 4 && self.attention == VideoAttention::Factorised;
        let mods = if factorised { 9 } else { 6 };
        // q kᵀ and the weighted sum: 2 products of 2·(queries·keys·D) each.
        let scores = |groups: usize, len: usize| 4.0 * (b * groups * len * len * d) as f64;
        let attn = |groups: usize, len: usize| {
            linear_flops(b * n, &[(d, 3 * d)])
                + linear_flops(b * n, &[(d, d)])
                + scores(groups, len)
        };
        let mut block = linear_flops(b, &[(d, mods * d)])
            + linear_flops(b * n, &[(d, self.mlp_ratio * d), (self.mlp_ratio * d, d)]);
        block += if factorised {
            attn(gt, s) + attn(s, gt)
        } else {
            attn(1, n)
        };
        if let Some(dc) = self.context_dim {
            block += linear_flops(b * n, &[(d, d), (d, d)])
                + linear_flops(b * context_len, &[(dc, 2 * d)])
                + 4.0 * (b * n * context_len * d) as f64;
        }
        linear_flops(b * n, &[(patch_in, d)])
            + linear_flops(b, &[(self.freq_dim, d), (d, d), (d, 2 * d)])
            + self.depth as f64 * block
            + linear_flops(b * n, &[(d, patch_in)])
    }
}

/// `[B, T, C, H, W]` -> `[B, (T/τ)·(H/p)·(W/p), τ·C·p·p]`, tokens ordered (time, row,
/// column), a patch vector ordered (frame, channel, row, column).
pub fn patchify_video(x: &Tensor, tubelet: usize, p: usize) -> candle_core::Result<Tensor> {
    let (b, t, c, h, w) = x.dims5()?;
    if tubelet == 0 || t % tubelet != 0 {
        candle_core::bail!("patchify: {t} frames do not split into tubelets of {tubelet}");
    }
    let gt = t / tubelet;
    // A tubelet is an image with τ·C channels: [B·gt, τ·C, H, W] -> [B·gt, S, τ·C·p·p].
    let tok = patchify(&x.reshape((b * gt, tubelet * c, h, w))?, p)?;
    let (_, s, k) = tok.dims3()?;
    tok.reshape((b, gt * s, k))
}

/// Inverse of [`patchify_video`].
pub fn unpatchify_video(
    tokens: &Tensor,
    (t, c, h, w): (usize, usize, usize, usize),
    tubelet: usize,
    p: usize,
) -> candle_core::Result<Tensor> {
    let (b, n, k) = tokens.dims3()?;
    if tubelet == 0 || p == 0 || t % tubelet != 0 || h % p != 0 || w % p != 0 {
        candle_core::bail!("unpatchify: {t}x{h}x{w} does not split into {tubelet}x{p}x{p}");
    }
    let gt = t / tubelet;
    let s = (h / p) * (w / p);
    if n != gt * s {
        candle_core::bail!("unpatchify: {n} tokens, expected {gt}x{s}");
    }
    let img = unpatchify(&tokens.reshape((b * gt, s, k))?, tubelet * c, h, w, p)?;
    img.reshape((b, t, c, h, w))
}

/// 1-D sine-cosine embedding of `positions` in `dim` (even) dimensions: for
/// `i < dim / 2`, `ω_i = POS_MAX_PERIOD^(-i / (dim / 2))`, entries `sin(pos ω_i)` then
/// `cos(pos ω_i)` (the MAE / DiT code's `get_1d_sincos_pos_embed_from_grid`). f64.
pub fn sincos_1d(positions: &[f64], dim: usize) -> Vec<Vec<f64>> {
    let half = dim / 2;
    positions
        .iter()
        .map(|&pos| {
            let mut row = vec![0.0; dim];
            for i in 0..half {
                let omega = POS_MAX_PERIOD.powf(-(i as f64) / half as f64);
                row[i] = (pos * omega).sin();
                row[half + i] = (pos * omega).cos();
            }
            row
        })
        .collect()
}

/// The fixed position table `[gt·gh·gw, dim]`: the first half of each row embeds the
/// token's column, the second half its row ([`sincos_1d`] of `dim / 2`; the order of the
/// MAE code that DiT and diffusers' `PatchEmbed` use, `meshgrid(w, h)`), and when `gt > 1`
/// a 1-D embedding of its time index over all `dim` dimensions is added.
pub fn sincos_positions(
    (gt, gh, gw): (usize, usize, usize),
    dim: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let rows = sincos_1d(&(0..gh).map(|r| r as f64).collect::<Vec<_>>(), dim / 2);
    let cols = sincos_1d(&(0..gw).map(|c| c as f64).collect::<Vec<_>>(), dim / 2);
    let times = sincos_1d(&(0..gt).map(|f| f as f64).collect::<Vec<_>>(), dim);
    let mut v = Vec::with_capacity(gt * gh * gw * dim);
    for time in &times {
        for row in &rows {
            for col in &cols {
                for j in 0..dim {
                    let space = if j < dim / 2 {
                        col[j]
                    } else {
                        row[j - dim / 2]
                    };
                    let tt = if gt > 1 { time[j] } else { 0.0 };
                    v.push((space + tt) as f32);
                }
            }
        }
    }
    Tensor::from_vec(v, (gt * gh * gw, dim), device)
}

/// `LN(x)·(1 + scale) + shift` for `x [B, N, D]`, `shift`, `scale` `[B, D]`: DiT's
/// LayerNorm without a learned affine (`elementwise_affine=False`) and the adaLN
/// modulation in one fused LayerNorm with a per-sample affine.
fn modulated_norm(x: &Tensor, shift: &Tensor, scale: &Tensor) -> candle_core::Result<Tensor> {
    genlab_kernels::layer_norm(x, &(scale + 1.0)?, shift, DIT_NORM_EPS)
}

/// One DiT block with adaLN-Zero (and its factorised and cross-attention variants).
#[derive(Debug, Clone)]
struct DitBlock {
    ada: Linear,
    attn: SelfAttention,
    temporal_attn: Option<SelfAttention>,
    cross: Option<(LayerNorm, Attention)>,
    mlp: TransformerMlp,
}

impl DitBlock {
    fn new(cfg: &DitConfig, factorised: bool, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.width;
        let mods = if factorised { 9 } else { 6 };
        let cross = match cfg.context_dim {
            Some(dc) => Some((
                LayerNorm::new(d, DIT_NORM_EPS, vb.pp("cross_norm"))?,
                Attention::new(d, dc, cfg.heads, d / cfg.heads, vb.pp("cross"))?,
            )),
            None => None,
        };
        Ok(Self {
            ada: Linear::zeros(d, mods * d, vb.pp("ada"))?,
            attn: SelfAttention::xavier(d, cfg.heads, vb.pp("attn"))?,
            temporal_attn: if factorised {
                Some(SelfAttention::xavier(d, cfg.heads, vb.pp("temporal_attn"))?)
            } else {
                None
            },
            cross,
            mlp: TransformerMlp::xavier(d, cfg.mlp_ratio * d, MlpAct::GeluTanh, vb.pp("mlp"))?,
        })
    }

    /// `x [B, gt·S, D]`, `c_act = SiLU(c)` `[B, D]`.
    fn forward(
        &self,
        x: &Tensor,
        c_act: &Tensor,
        (gt, s): (usize, usize),
        context: Option<(&Tensor, Option<&Tensor>)>,
    ) -> candle_core::Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let m = self.ada.forward(c_act)?; // [B, k·D]
                                          // shift, scale [B, D]; gate [B, 1, D]
        let chunk = |i: usize| m.narrow(1, i * d, d);
        let mut x = x.clone();
        let mut next = 0;
        let mut take3 = || -> candle_core::Result<(Tensor, Tensor, Tensor)> {
            let gate = chunk(next + 2)?.reshape((b, 1, d))?;
            let r = (chunk(next)?, chunk(next + 1)?, gate);
            next += 3;
            Ok(r)
        };
        // Attention (joint, or within each frame when factorised).
        let (shift, scale, gate) = take3()?;
        let h = modulated_norm(&x, &shift, &scale)?;
        let a = if self.temporal_attn.is_some() {
            self.attn
                .forward(&h.reshape((b * gt, s, d))?, None)?
                .reshape((b, n, d))?
        } else {
            self.attn.forward(&h, None)?
        };
        x = (x + a.broadcast_mul(&gate)?)?;
        if let Some(ta) = &self.temporal_attn {
            let (shift, scale, gate) = take3()?;
            let h = modulated_norm(&x, &shift, &scale)?;
            // [B, gt, S, D] -> [B, S, gt, D] -> [B·S, gt, D]
            let h = h
                .reshape((b, gt, s, d))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * s, gt, d))?;
            let a = ta
                .forward(&h, None)?
                .reshape((b, s, gt, d))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, n, d))?;
            x = (x + a.broadcast_mul(&gate)?)?;
        }
        if let Some((ln, attn)) = &self.cross {
            let h = ln.forward(&x)?;
            let a = match context {
                Some((ctx, mask)) => attn.forward_cross(&h, ctx, mask)?,
                None => attn.forward_null(&h)?,
            };
            x = (x + a)?;
        }
        let (shift, scale, gate) = take3()?;
        let h = modulated_norm(&x, &shift, &scale)?;
        &x + self.mlp.forward(&h)?.broadcast_mul(&gate)?
    }
}

/// The diffusion transformer (see the module docs).
#[derive(Debug, Clone)]
pub struct Dit {
    cfg: DitConfig,
    /// `[C, H, W]` or `[T, C, H, W]` of the input.
    shape: Vec<usize>,
    out_channels: usize,
    x_embed: Linear,
    pos: Tensor,
    t_lin1: Linear,
    t_lin2: Linear,
    blocks: Vec<DitBlock>,
    final_ada: Linear,
    final_linear: Linear,
}

impl Dit {
    /// A DiT for examples of `shape` (`[C, H, W]` or `[T, C, H, W]`, the input's channels)
    /// predicting `out_channels` per pixel.
    pub fn new(
        cfg: &DitConfig,
        shape: &[usize],
        out_channels: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        cfg.validate(shape)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let d = cfg.width;
        let c = shape[shape.len() - 3];
        let p = cfg.patch;
        let grid = cfg.grid(shape);
        let n = grid.0 * grid.1 * grid.2;
        let factorised = shape.len() == 4 && cfg.attention == VideoAttention::Factorised;
        let pos = match cfg.pos_embed {
            PosEmbed::Sincos => sincos_positions(grid, d, vb.device())?,
            PosEmbed::Learned => vb.get_with_hints(
                (n, d),
                "pos_embed",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: DIT_EMBED_STD,
                },
            )?,
        };
        let blocks = (0..cfg.depth)
            .map(|i| DitBlock::new(cfg, factorised, vb.pp("blocks").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            shape: shape.to_vec(),
            out_channels,
            x_embed: Linear::xavier(cfg.tubelet * c * p * p, d, vb.pp("x_embed"))?,
            pos,
            t_lin1: Linear::with_weight_std(cfg.freq_dim, d, DIT_EMBED_STD, vb.pp("t_embed.lin1"))?,
            t_lin2: Linear::with_weight_std(d, d, DIT_EMBED_STD, vb.pp("t_embed.lin2"))?,
            blocks,
            final_ada: Linear::zeros(d, 2 * d, vb.pp("final.ada"))?,
            final_linear: Linear::zeros(
                d,
                cfg.tubelet * out_channels * p * p,
                vb.pp("final.linear"),
            )?,
        })
    }

    pub fn config(&self) -> &DitConfig {
        &self.cfg
    }

    /// Width of the conditioning vector `c` (the time embedding), which a class embedding
    /// added to it must have.
    pub fn temb_dim(&self) -> usize {
        self.cfg.width
    }

    /// Whether the model takes videos `[B, T, C, H, W]`.
    pub fn is_video(&self) -> bool {
        self.shape.len() == 4
    }

    /// `x [B, C, H, W]` (or `[B, T, C, H, W]`), timesteps `t [B]` -> the prediction of
    /// the same shape with `out_channels` channels. `extra [B, D]` is added to the time
    /// embedding (a class embedding); `context [B, L, context_dim]` with its additive mask
    /// feeds the cross-attention (None: the null context).
    pub fn forward_with(
        &self,
        x: &Tensor,
        t: &Tensor,
        extra: Option<&Tensor>,
        context: Option<(&Tensor, Option<&Tensor>)>,
    ) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        if dims.len() != self.shape.len() + 1 || dims[1..] != self.shape[..] {
            candle_core::bail!(
                "DiT: the input has shape {dims:?}, the model takes [B, {}]",
                self.shape
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let b = dims[0];
        if t.dims() != [b] {
            candle_core::bail!("DiT: t must have shape [{b}], got {:?}", t.dims());
        }
        if context.is_some() && self.cfg.context_dim.is_none() {
            candle_core::bail!("DiT: this model has no cross-attention (context_dim unset)");
        }
        let p = self.cfg.patch;
        let (gt, gh, gw) = self.cfg.grid(&self.shape);
        let tokens = if self.is_video() {
            patchify_video(x, self.cfg.tubelet, p)?
        } else {
            patchify(x, p)?
        };
        let mut z = self.x_embed.forward(&tokens)?.broadcast_add(&self.pos)?;
        let temb = timestep_embedding(t, self.cfg.freq_dim, DEFAULT_MAX_PERIOD)?;
        let mut c = self.t_lin2.forward(&silu(&self.t_lin1.forward(&temb)?)?)?;
        if let Some(e) = extra {
            c = (c + e)?;
        }
        let c_act = silu(&c)?;
        for block in &self.blocks {
            z = block.forward(&z, &c_act, (gt, gh * gw), context)?;
        }
        let d = self.cfg.width;
        let m = self.final_ada.forward(&c_act)?;
        let (shift, scale) = (m.narrow(1, 0, d)?, m.narrow(1, d, d)?);
        let out = self
            .final_linear
            .forward(&modulated_norm(&z, &shift, &scale)?)?;
        if self.is_video() {
            let (t_, _, h, w) = (self.shape[0], self.shape[1], self.shape[2], self.shape[3]);
            unpatchify_video(&out, (t_, self.out_channels, h, w), self.cfg.tubelet, p)
        } else {
            let (h, w) = (self.shape[1], self.shape[2]);
            unpatchify(&out, self.out_channels, h, w, p)
        }
    }

    /// [`Dit::forward_with`] with neither class nor context.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, t, None, None)
    }
}

/// Mean over the last dimension, for tests of the normalisation.
#[cfg(test)]
fn last_dim_mean(x: &Tensor) -> Tensor {
    x.mean_keepdim(candle_core::D::Minus1).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use genlab_core::ParamStore;

    /// f32 round trips through reshapes and permutes are exact.
    const EXACT: f32 = 0.0;
    /// f32 sine-cosine values against the f64 closed form.
    const POS_TOL: f64 = 1e-6;

    fn rand(seed: u64, shape: &[usize]) -> Tensor {
        let mut rng = genlab_core::Rng::new(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn video_patches_round_trip_and_hold_the_right_pixels() {
        let x = rand(1, &[2, 4, 3, 8, 8]);
        let tok = patchify_video(&x, 2, 4).unwrap();
        assert_eq!(tok.dims(), &[2, 2 * 2 * 2, 2 * 3 * 4 * 4]);
        let back = unpatchify_video(&tok, (4, 3, 8, 8), 2, 4).unwrap();
        assert!(max_abs_diff(&x, &back) <= EXACT);
        // Token (time 1, row 0, column 1) of clip 1; entry (frame 1, channel 2, r 3, c 0) is
        // pixel [1, 2·1 + 1, 2, 3, 4·1 + 0].
        let flat = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let idx = |b: usize, t: usize, c: usize, h: usize, w: usize| {
            (((b * 4 + t) * 3 + c) * 8 + h) * 8 + w
        };
        let token = 4 + 1; // time 1 of 2, then row 0, column 1 of a 2x2 grid
        let (frame, channel, row, col) = (1, 2, 3, 0);
        let entry = ((frame * 3 + channel) * 4 + row) * 4 + col;
        let got = tok.get(1).unwrap().get(token).unwrap().get(entry).unwrap();
        assert_eq!(got.to_scalar::<f32>().unwrap(), flat[idx(1, 3, 2, 3, 4)]);
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // index loops mirror the formula
    fn sincos_positions_follow_the_closed_form() {
        let (gt, gh, gw, d) = (3, 2, 5, 16);
        let pos = sincos_positions((gt, gh, gw), d, &Device::Cpu).unwrap();
        let v = pos.to_vec2::<f32>().unwrap();
        for f in 0..gt {
            for r in 0..gh {
                for c in 0..gw {
                    let row = &v[(f * gh + r) * gw + c];
                    for j in 0..d {
                        let (coord, k, dim) = if j < d / 2 {
                            (c as f64, j, d / 2)
                        } else {
                            (r as f64, j - d / 2, d / 2)
                        };
                        let half = dim / 2;
                        let om = |i: usize, h: usize| 10_000f64.powf(-(i as f64) / h as f64);
                        let space = if k < half {
                            (coord * om(k, half)).sin()
                        } else {
                            (coord * om(k - half, half)).cos()
                        };
                        let time = if j < d / 2 {
                            (f as f64 * om(j, d / 2)).sin()
                        } else {
                            (f as f64 * om(j - d / 2, d / 2)).cos()
                        };
                        let want = space + time;
                        assert!((row[j] as f64 - want).abs() < POS_TOL, "{f} {r} {c} {j}");
                    }
                }
            }
        }
    }

    /// Gives every all-zero parameter (adaLN-Zero's modulations and output layer) small
    /// random values, so that every parameter affects the output.
    fn wake_zero_tensors(ps: &ParamStore, seed: u64) {
        for (_, var) in ps.vars() {
            let sum = var.as_tensor().abs().unwrap().sum_all().unwrap();
            if sum.to_scalar::<f32>().unwrap() == 0.0 {
                var.set(&rand(seed, var.dims()).affine(0.1, 0.0).unwrap())
                    .unwrap();
            }
        }
    }

    fn tiny(patch: usize) -> DitConfig {
        DitConfig {
            width: 16,
            depth: 2,
            heads: 2,
            mlp_ratio: 2,
            patch,
            freq_dim: 8,
            ..DitConfig::default()
        }
    }

    #[test]
    fn adaln_zero_starts_at_zero_and_every_parameter_learns() {
        for (shape, tubelet, attention) in [
            (vec![1, 8, 8], 1, VideoAttention::Joint),
            (vec![4, 1, 8, 8], 2, VideoAttention::Joint),
            (vec![4, 1, 8, 8], 1, VideoAttention::Factorised),
        ] {
            let cfg = DitConfig {
                tubelet,
                attention,
                pos_embed: PosEmbed::Learned,
                ..tiny(4)
            };
            let ps = ParamStore::new(0, &Device::Cpu);
            let net = Dit::new(&cfg, &shape, 1, ps.vb()).unwrap();
            let mut full = vec![3];
            full.extend(&shape);
            let x = rand(2, &full);
            let t = Tensor::new(&[1f32, 300.0, 999.0], &Device::Cpu).unwrap();
            let y = net.forward(&x, &t).unwrap();
            assert_eq!(y.dims(), x.dims());
            // adaLN-Zero: the output layer starts at zero.
            assert_eq!(
                y.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap(),
                0.0
            );
            // Zero output layer: only it receives a gradient on the first step; after
            // perturbing every zero-initialised tensor, all of them do.
            wake_zero_tensors(&ps, 7);
            let y = net.forward(&x, &t).unwrap();
            let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            for (name, var) in ps.vars() {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no grad"));
                let s = g
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(s > 0.0, "{name}: zero gradient ({shape:?}, {attention:?})");
            }
        }
    }

    #[test]
    fn cross_attention_reads_the_context_and_ignores_masked_tokens() {
        let cfg = DitConfig {
            context_dim: Some(6),
            ..tiny(4)
        };
        let ps = ParamStore::new(0, &Device::Cpu);
        let net = Dit::new(&cfg, &[1, 8, 8], 1, ps.vb()).unwrap();
        // Wake the zero-initialised tensors so that the output depends on everything.
        wake_zero_tensors(&ps, 5);
        let x = rand(1, &[2, 1, 8, 8]);
        let t = Tensor::new(&[10f32, 500.0], &Device::Cpu).unwrap();
        let ctx = rand(2, &[2, 3, 6]);
        // Token 2 of each example is padding: changing it must not change the output.
        let valid = Tensor::new(&[[1f32, 1.0, 0.0], [1.0, 1.0, 0.0]], &Device::Cpu).unwrap();
        let mask = crate::key_padding_mask(&valid).unwrap();
        let y = net
            .forward_with(&x, &t, None, Some((&ctx, Some(&mask))))
            .unwrap();
        let other = Tensor::cat(&[&ctx.narrow(1, 0, 2).unwrap(), &rand(3, &[2, 1, 6])], 1).unwrap();
        let y2 = net
            .forward_with(&x, &t, None, Some((&other, Some(&mask))))
            .unwrap();
        assert!(max_abs_diff(&y, &y2) < 1e-6);
        // The context matters, and the null context differs from a real one.
        let y_null = net.forward(&x, &t).unwrap();
        assert!(max_abs_diff(&y, &y_null) > 1e-3);
        let y3 = net
            .forward_with(&x, &t, None, Some((&rand(4, &[2, 3, 6]), Some(&mask))))
            .unwrap();
        assert!(max_abs_diff(&y, &y3) > 1e-3);
    }

    #[test]
    fn plain_norm_centres_each_token() {
        let x = rand(3, &[2, 5, 16]);
        let zero = Tensor::zeros((2, 16), DType::F32, &Device::Cpu).unwrap();
        let n = modulated_norm(&x, &zero, &zero).unwrap();
        let m = last_dim_mean(&n);
        assert!(
            m.abs()
                .unwrap()
                .max_keepdim(1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                < 1e-5
        );
    }

    #[test]
    fn bad_shapes_are_refused_with_the_sizes_that_fit() {
        let e = tiny(8).validate(&[1, 28, 28]).unwrap_err().to_string();
        assert!(e.contains("28x28") && e.contains("2, 4, 7"), "{e}");
        let e = DitConfig {
            tubelet: 3,
            ..tiny(4)
        }
        .validate(&[8, 1, 32, 32])
        .unwrap_err()
        .to_string();
        assert!(e.contains("8 frames"), "{e}");
        let e = tiny(4).validate(&[2]).unwrap_err().to_string();
        assert!(e.contains("[T, C, H, W]"), "{e}");
    }

    #[test]
    fn flops_count_the_blocks() {
        // Joint attention, 1 block, D = 16, 4 tokens of 16 inputs, batch 1, no context:
        let cfg = DitConfig {
            depth: 1,
            ..tiny(4)
        };
        let f = cfg.forward_flops(1, &[1, 8, 8], 0);
        let (n, d) = (4.0, 16.0);
        let want = 2.0 * n * 16.0 * d                               // x_embed
            + 2.0 * (8.0 * d + d * d + d * 2.0 * d)                 // t MLP + final ada
            + 2.0 * d * 6.0 * d                                     // block ada
            + 2.0 * n * (d * 3.0 * d + d * d)                       // qkv + out
            + 4.0 * n * n * d                                       // scores + sum
            + 2.0 * n * (d * 2.0 * d + 2.0 * d * d)                 // MLP (ratio 2)
            + 2.0 * n * d * 16.0; // final linear
        assert_eq!(f, want);
    }
}
