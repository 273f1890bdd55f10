//! The text-conditioned U-Net of latent diffusion, in diffusers' `UNet2DConditionModel`
//! layout and parameter names.
//!
//! Rombach, Blattmann, Lorenz, Esser & Ommer 2022, "High-Resolution Image Synthesis with
//! Latent Diffusion Models" (arXiv:2112.10752), Sec. 3.3: the DDPM U-Net (Ho et al. 2020,
//! arXiv:2006.11239) whose levels carry spatial transformers ([`SpatialTransformer`]) that
//! cross-attend to a token sequence (the text encoder's output). The layout follows
//! diffusers' `UNet2DConditionModel` as configured for Stable Diffusion 1.x / 2.x, so that
//! its checkpoints load by name (the pretrained-checkpoint issue):
//!
//! ```text
//! conv_in                                           3x3, in_channels -> c0
//! time_proj (no weights) -> time_embedding.linear_1 -> SiLU -> time_embedding.linear_2
//!   (+ class_embedding(label) when num_class_embeds > 0)  = emb
//! down_blocks.{i}.resnets.{j}, .attentions.{j}      (CrossAttnDownBlock2D / DownBlock2D)
//! down_blocks.{i}.downsamplers.0.conv               3x3 stride 2 (not on the last level)
//! mid_block.resnets.0, mid_block.attentions.0, mid_block.resnets.1
//! up_blocks.{i}.resnets.{j}, .attentions.{j}        layers_per_block + 1, skip concatenated
//! up_blocks.{i}.upsamplers.0.conv                   nearest to the skip's size, 3x3
//! conv_norm_out -> SiLU -> conv_out
//! ```
//!
//! Each resnet (`ResnetBlock2D`): `norm1` -> SiLU -> `conv1` -> + `time_emb_proj(SiLU(emb))`
//! -> `norm2` -> SiLU -> `conv2`, added to the input (through the 1x1 `conv_shortcut` when
//! the channel count changes). Up block `i` mirrors down level `L-1-i` (diffusers reverses
//! the level order for `up_blocks`). Levels are halved with `ceil` (7 -> 4 -> 2) and the
//! upsampler goes back to the skip's exact size (diffusers' `upsample_size`, passed when the
//! input is not a multiple of 2^(levels-1)): nearest-neighbour to `2n - 1` keeps the source
//! rows `floor(i / 2)`, the same as PyTorch's `interpolate(size=...)`, so 7x14 latents work.
//!
//! The time projection is diffusers' `get_timestep_embedding` with `flip_sin_to_cos` and
//! `downscale_freq_shift` as config fields (SD: true, 0): frequencies
//! `exp(-ln(10000) · i / (half - shift))`, `[cos, sin]` when flipped, else `[sin, cos]`.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::conv::Conv;
use crate::embedding::DEFAULT_MAX_PERIOD;
use crate::flops::{conv_flops, linear_flops};
use crate::linear::{silu, Linear};
use crate::norm::GroupNorm;
use crate::resample::{Downsample, Upsample};
use crate::resblock::conv3x3;
use crate::resnet2d::ResnetBlock2D;
use crate::spatial_transformer::{SpatialTransformer, SpatialTransformerConfig, FF_MULT};
use crate::transformer::key_padding_mask;

/// Shape of a [`CondUNet`] (diffusers' `UNet2DConditionModel` arguments, see each field).
/// The defaults are a small text-to-image network for the two-digit canvas, sized for CPU
/// training (1.7M parameters): 4-channel latents, three levels of 32, 64, 64 channels,
/// cross-attention everywhere, 4 heads, 64-wide context tokens, 8 groups; the time
/// projection's are Stable Diffusion's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CondUNetConfig {
    /// Input channels (`in_channels`; SD: 4 latent channels).
    pub in_channels: usize,
    /// Output channels (`out_channels`).
    pub out_channels: usize,
    /// Channels of each level (`block_out_channels`; SD 1.x: [320, 640, 1280, 1280]).
    pub block_out_channels: Vec<usize>,
    /// Resnets per down level (`layers_per_block`; the up levels have one more).
    pub layers_per_block: usize,
    /// Which levels carry spatial transformers, one entry per level, down level `i` and its
    /// mirror up level alike: `true` is diffusers' `CrossAttnDownBlock2D` /
    /// `CrossAttnUpBlock2D`, `false` `DownBlock2D` / `UpBlock2D` (SD 1.x: [true, true, true,
    /// false]). The middle block always has one (`UNetMidBlock2DCrossAttn`).
    pub cross_attention: Vec<bool>,
    /// Attention heads per level (one entry for all levels, or one per level; the middle
    /// block uses the last). diffusers' SD configs call this `attention_head_dim` (SD 1.x:
    /// 8) and it is the number of heads; the head width is channels / heads.
    pub num_attention_heads: Vec<usize>,
    /// Width of the context tokens (`cross_attention_dim`; SD 1.x: 768).
    pub cross_attention_dim: usize,
    /// `BasicTransformerBlock`s per spatial transformer (`transformer_layers_per_block`).
    pub transformer_layers_per_block: usize,
    /// GroupNorm groups of every resnet, transformer and the output norm (`norm_num_groups`).
    pub norm_num_groups: usize,
    /// GroupNorm epsilon of the resnets and `conv_norm_out` (`norm_eps`; the transformers'
    /// own GroupNorm uses 1e-6 as in diffusers).
    pub norm_eps: f64,
    /// `proj_in` / `proj_out` as linear layers (SD 2.x) rather than 1x1 convs (SD 1.x).
    pub use_linear_projection: bool,
    /// Time projection `[cos, sin]` (true, SD) or `[sin, cos]`.
    pub flip_sin_to_cos: bool,
    /// `downscale_freq_shift` of the time projection (SD: 0; diffusers' default: 1).
    pub freq_shift: f64,
    /// Rows of `class_embedding` (`num_class_embeds`; 0: none). The caller decides which
    /// label is its null class (genlab's convention: label K of K classes, K + 1 rows).
    pub num_class_embeds: usize,
}

impl Default for CondUNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 4,
            out_channels: 4,
            block_out_channels: vec![32, 64, 64],
            layers_per_block: 1,
            cross_attention: vec![true, true, true],
            num_attention_heads: vec![4],
            cross_attention_dim: 64,
            transformer_layers_per_block: 1,
            norm_num_groups: 8,
            norm_eps: 1e-5,
            use_linear_projection: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            num_class_embeds: 0,
        }
    }
}

impl CondUNetConfig {
    /// Heads of level `i` (the last level's for the middle block).
    fn heads(&self, i: usize) -> usize {
        if self.num_attention_heads.len() == 1 {
            self.num_attention_heads[0]
        } else {
            self.num_attention_heads[i]
        }
    }

    fn transformer(&self, channels: usize, heads: usize) -> SpatialTransformerConfig {
        SpatialTransformerConfig {
            channels,
            heads,
            context_dim: self.cross_attention_dim,
            layers: self.transformer_layers_per_block,
            groups: self.norm_num_groups,
            linear_projection: self.use_linear_projection,
        }
    }

    /// Checks every size rule; the image size is free (odd levels are halved with `ceil`).
    pub fn validate(&self) -> genlab_core::Result<()> {
        let bad = |m: String| Err(genlab_core::Error::Config(format!("cond-unet: {m}")));
        let levels = self.block_out_channels.len();
        if levels == 0 || self.block_out_channels.contains(&0) {
            return bad(format!(
                "block_out_channels must be a non-empty list of positive channel counts, got {:?}",
                self.block_out_channels
            ));
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return bad(format!(
                "in_channels ({}) and out_channels ({}) must be positive",
                self.in_channels, self.out_channels
            ));
        }
        let c0 = self.block_out_channels[0];
        if c0 % 2 != 0 {
            return bad(format!(
                "block_out_channels[0] = {c0} must be even (it is also the width of the \
                 sinusoidal time projection)"
            ));
        }
        if !(self.freq_shift.is_finite() && self.freq_shift < (c0 / 2) as f64) {
            return bad(format!(
                "freq_shift = {} must be finite and below half the time projection's width ({})",
                self.freq_shift,
                c0 / 2
            ));
        }
        if self.layers_per_block == 0 || self.transformer_layers_per_block == 0 {
            return bad(format!(
                "layers_per_block ({}) and transformer_layers_per_block ({}) must be at least 1",
                self.layers_per_block, self.transformer_layers_per_block
            ));
        }
        if self.cross_attention.len() != levels {
            return bad(format!(
                "cross_attention needs one entry per level ({levels}, as block_out_channels = \
                 {:?}), got {:?}",
                self.block_out_channels, self.cross_attention
            ));
        }
        let nh = self.num_attention_heads.len();
        if nh != 1 && nh != levels {
            return bad(format!(
                "num_attention_heads needs one entry or one per level ({levels}), got {:?}",
                self.num_attention_heads
            ));
        }
        if self.cross_attention_dim == 0 {
            return bad("cross_attention_dim must be positive".into());
        }
        let g = self.norm_num_groups;
        if g == 0 {
            return bad("norm_num_groups must be at least 1".into());
        }
        if let Some(c) = self.block_out_channels.iter().find(|c| *c % g != 0) {
            return bad(format!(
                "norm_num_groups = {g} must divide every level's channels, but not {c} \
                 (block_out_channels = {:?})",
                self.block_out_channels
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return bad(format!("norm_eps must be positive, got {}", self.norm_eps));
        }
        // Levels with attention, and the middle block at the last level's width.
        let attn_levels = (0..levels)
            .filter(|&i| self.cross_attention[i])
            .chain(std::iter::once(levels - 1));
        for i in attn_levels {
            let (c, h) = (self.block_out_channels[i], self.heads(i));
            if h == 0 || c % h != 0 {
                return bad(format!(
                    "num_attention_heads = {h} at level {i} must be positive and divide its \
                     {c} channels"
                ));
            }
        }
        Ok(())
    }

    /// FLOPs of one forward pass (multiply-adds x 2) on `b` inputs of `h x w` with `l`
    /// context tokens: convolutions, linear layers and the attention products, the
    /// structure of [`CondUNet::new`] (norms and activations left out).
    pub fn forward_flops(&self, b: usize, h: usize, w: usize, l: usize) -> f64 {
        let c0 = self.block_out_channels[0];
        let temb = 4 * c0;
        let d = self.cross_attention_dim;
        let res = |ci: usize, co: usize, n: usize| {
            conv_flops(b, ci, co, 3, n)
                + conv_flops(b, co, co, 3, n)
                + if ci != co {
                    conv_flops(b, ci, co, 1, n)
                } else {
                    0.0
                }
                + linear_flops(b, &[(temb, co)])
        };
        let st = |c: usize, n: usize| {
            let (bf, nf, cf, lf, df) = (b as f64, n as f64, c as f64, l as f64, d as f64);
            let proj = 2.0 * 2.0 * bf * nf * cf * cf;
            let attn1 = 2.0 * bf * nf * cf * 4.0 * cf + 2.0 * 2.0 * bf * nf * nf * cf;
            let attn2 = 2.0 * bf * nf * cf * 2.0 * cf
                + 2.0 * bf * lf * df * 2.0 * cf
                + 2.0 * 2.0 * bf * nf * lf * cf;
            let ff = 2.0 * bf * nf * cf * (3 * FF_MULT) as f64 * cf;
            proj + self.transformer_layers_per_block as f64 * (attn1 + attn2 + ff)
        };
        let levels = &self.block_out_channels;
        let last = levels.len() - 1;
        let mut f = linear_flops(b, &[(c0, temb), (temb, temb)]);
        let (mut sh, mut sw) = (h, w);
        f += conv_flops(b, self.in_channels, c0, 3, sh * sw);
        let mut skips = vec![(c0, sh, sw)];
        let mut ch = c0;
        for (i, &c) in levels.iter().enumerate() {
            for _ in 0..self.layers_per_block {
                f += res(ch, c, sh * sw);
                ch = c;
                if self.cross_attention[i] {
                    f += st(c, sh * sw);
                }
                skips.push((ch, sh, sw));
            }
            if i != last {
                (sh, sw) = (sh.div_ceil(2), sw.div_ceil(2));
                f += conv_flops(b, ch, ch, 3, sh * sw);
                skips.push((ch, sh, sw));
            }
        }
        f += 2.0 * res(ch, ch, sh * sw) + st(ch, sh * sw);
        for (i, &c) in levels.iter().enumerate().rev() {
            for _ in 0..=self.layers_per_block {
                let (skip_ch, _, _) = skips.pop().expect("one skip per up resnet");
                f += res(ch + skip_ch, c, sh * sw);
                ch = c;
                if self.cross_attention[i] {
                    f += st(c, sh * sw);
                }
            }
            if i != 0 {
                let &(_, uh, uw) = skips.last().expect("a skip for the next level");
                (sh, sw) = (uh, uw);
                f += conv_flops(b, ch, ch, 3, sh * sw);
            }
        }
        f + conv_flops(b, ch, self.out_channels, 3, sh * sw)
    }
}

/// One level of the encoder or the decoder.
#[derive(Debug, Clone)]
struct Level {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<SpatialTransformer>,
}

/// The cross-attention U-Net: `x [B, C_in, H, W]`, `t [B]` -> `[B, C_out, H, W]`, steered by
/// a token sequence `[B, L, cross_attention_dim]`.
#[derive(Debug, Clone)]
pub struct CondUNet {
    cfg: CondUNetConfig,
    conv_in: Conv,
    linear_1: Linear,
    linear_2: Linear,
    class_embedding: Option<Tensor>,
    down: Vec<Level>,
    downsamplers: Vec<Downsample>,
    mid_res: [ResnetBlock2D; 2],
    mid_attn: SpatialTransformer,
    up: Vec<Level>,
    upsamplers: Vec<Upsample>,
    conv_norm_out: GroupNorm,
    conv_out: Conv,
}

fn cfg_err(e: genlab_core::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

impl CondUNet {
    /// Creates the parameters under `vb`, named as in diffusers (module docs); checks the
    /// config with [`CondUNetConfig::validate`].
    pub fn new(cfg: &CondUNetConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        cfg.validate().map_err(cfg_err)?;
        let levels = &cfg.block_out_channels;
        let last = levels.len() - 1;
        let c0 = levels[0];
        let temb = 4 * c0;
        let conv_in = conv3x3(cfg.in_channels, c0, vb.pp("conv_in"))?;
        let te = vb.pp("time_embedding");
        let linear_1 = Linear::new(c0, temb, te.pp("linear_1"))?;
        let linear_2 = Linear::new(temb, temb, te.pp("linear_2"))?;
        let class_embedding = if cfg.num_class_embeds > 0 {
            Some(
                candle_nn::embedding(cfg.num_class_embeds, temb, vb.pp("class_embedding"))?
                    .embeddings()
                    .clone(),
            )
        } else {
            None
        };

        let mut skips = vec![c0];
        let mut ch = c0;
        let mut down = Vec::with_capacity(levels.len());
        let mut downsamplers = Vec::new();
        for (i, &c) in levels.iter().enumerate() {
            let vbl = vb.pp("down_blocks").pp(i);
            let mut level = Level {
                resnets: Vec::new(),
                attentions: Vec::new(),
            };
            for j in 0..cfg.layers_per_block {
                level
                    .resnets
                    .push(resnet(ch, c, temb, cfg, vbl.pp("resnets").pp(j))?);
                ch = c;
                if cfg.cross_attention[i] {
                    level.attentions.push(SpatialTransformer::new(
                        &cfg.transformer(c, cfg.heads(i)),
                        vbl.pp("attentions").pp(j),
                    )?);
                }
                skips.push(ch);
            }
            if i != last {
                downsamplers.push(Downsample::new(ch, vbl.pp("downsamplers").pp(0))?);
                skips.push(ch);
            }
            down.push(level);
        }

        let vbm = vb.pp("mid_block");
        let mid_res = [
            resnet(ch, ch, temb, cfg, vbm.pp("resnets").pp(0))?,
            resnet(ch, ch, temb, cfg, vbm.pp("resnets").pp(1))?,
        ];
        let mid_attn = SpatialTransformer::new(
            &cfg.transformer(ch, cfg.heads(last)),
            vbm.pp("attentions").pp(0),
        )?;

        // up_blocks.{k} is level L-1-k.
        let mut up = Vec::with_capacity(levels.len());
        let mut upsamplers = Vec::new();
        for (k, (i, &c)) in levels.iter().enumerate().rev().enumerate() {
            let vbl = vb.pp("up_blocks").pp(k);
            let mut level = Level {
                resnets: Vec::new(),
                attentions: Vec::new(),
            };
            for j in 0..=cfg.layers_per_block {
                let skip = skips.pop().expect("one skip per up resnet");
                level
                    .resnets
                    .push(resnet(ch + skip, c, temb, cfg, vbl.pp("resnets").pp(j))?);
                ch = c;
                if cfg.cross_attention[i] {
                    level.attentions.push(SpatialTransformer::new(
                        &cfg.transformer(c, cfg.heads(i)),
                        vbl.pp("attentions").pp(j),
                    )?);
                }
            }
            if i != 0 {
                upsamplers.push(Upsample::new(ch, vbl.pp("upsamplers").pp(0))?);
            }
            up.push(level);
        }
        debug_assert!(skips.is_empty());
        let conv_norm_out = GroupNorm::new(
            cfg.norm_num_groups,
            ch,
            cfg.norm_eps,
            true,
            vb.pp("conv_norm_out"),
        )?;
        let conv_out = conv3x3(ch, cfg.out_channels, vb.pp("conv_out"))?;
        Ok(Self {
            cfg: cfg.clone(),
            conv_in,
            linear_1,
            linear_2,
            class_embedding,
            down,
            downsamplers,
            mid_res,
            mid_attn,
            up,
            upsamplers,
            conv_norm_out,
            conv_out,
        })
    }

    pub fn config(&self) -> &CondUNetConfig {
        &self.cfg
    }

    /// Width of the time embedding (4 x `block_out_channels[0]`), which an embedding added to
    /// it ([`CondUNet::forward_with`]'s `extra`) must have.
    pub fn temb_dim(&self) -> usize {
        4 * self.cfg.block_out_channels[0]
    }

    /// diffusers' `get_timestep_embedding`: `t [B]` -> `[B, block_out_channels[0]]` f32,
    /// computed in f64.
    pub fn time_proj(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        let dim = self.cfg.block_out_channels[0];
        let half = dim / 2;
        let denom = half as f64 - self.cfg.freq_shift;
        let freqs: Vec<f64> = (0..half)
            .map(|i| (-(DEFAULT_MAX_PERIOD.ln()) * i as f64 / denom).exp())
            .collect();
        // [B, 1] * [1, half] -> [B, half]
        let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
        let args = t
            .to_dtype(DType::F64)?
            .unsqueeze(1)?
            .broadcast_mul(&freqs)?;
        let (c, s) = (args.cos()?, args.sin()?);
        let parts = if self.cfg.flip_sin_to_cos {
            [c, s]
        } else {
            [s, c]
        };
        Tensor::cat(&parts, 1)?.to_dtype(DType::F32)
    }

    /// `x [B, in_channels, H, W]`, `t [B]` (float timesteps), `context [B, L,
    /// cross_attention_dim]` (None: the all-zero context, see [`crate::spatial_transformer`]),
    /// `context_mask [B, L]` (1 real token, 0 padding), `class [B]` labels below
    /// `num_class_embeds` -> `[B, out_channels, H, W]`.
    pub fn forward(
        &self,
        x: &Tensor,
        t: &Tensor,
        context: Option<&Tensor>,
        context_mask: Option<&Tensor>,
        class: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        self.forward_with(x, t, context, context_mask, class, None)
    }

    /// [`CondUNet::forward`] with `extra` (`[B, temb_dim]`) added to the time embedding
    /// like the class embedding (genlab's DDPM adds its own label embedding this way).
    pub fn forward_with(
        &self,
        x: &Tensor,
        t: &Tensor,
        context: Option<&Tensor>,
        context_mask: Option<&Tensor>,
        class: Option<&Tensor>,
        extra: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        if c != self.cfg.in_channels {
            candle_core::bail!(
                "cond-unet: x has {c} channels, the model expects {}",
                self.cfg.in_channels
            );
        }
        if t.dims() != [b] {
            candle_core::bail!("cond-unet: t must have shape [{b}], got {:?}", t.dims());
        }
        let mask = match (context, context_mask) {
            (_, None) => None,
            (None, Some(_)) => {
                candle_core::bail!("cond-unet: a context mask was given without a context")
            }
            (Some(ctx), Some(m)) => {
                let l = ctx.dim(1)?;
                if m.dims() != [b, l] {
                    candle_core::bail!(
                        "cond-unet: the context mask must have shape [{b}, {l}] (the context's \
                         batch and length), got {:?}",
                        m.dims()
                    );
                }
                Some(key_padding_mask(m)?)
            }
        };
        if let Some(ctx) = context {
            let dims = ctx.dims();
            if dims.len() != 3 || dims[0] != b || dims[2] != self.cfg.cross_attention_dim {
                candle_core::bail!(
                    "cond-unet: the context must have shape [{b}, L, {}], got {dims:?}",
                    self.cfg.cross_attention_dim
                );
            }
        }
        let mut emb = self
            .linear_2
            .forward(&silu(&self.linear_1.forward(&self.time_proj(t)?)?)?)?;
        match (class, &self.class_embedding) {
            (None, _) => {}
            (Some(_), None) => candle_core::bail!(
                "cond-unet: class labels were given, but the model has no class embedding \
                 (num_class_embeds = 0)"
            ),
            (Some(l), Some(table)) => {
                if l.dims() != [b] {
                    candle_core::bail!(
                        "cond-unet: class labels must have shape [{b}], got {:?}",
                        l.dims()
                    );
                }
                let ids = l.to_dtype(DType::U32)?;
                let k = self.cfg.num_class_embeds as u32;
                if let Some(bad) = ids.to_vec1::<u32>()?.into_iter().find(|&v| v >= k) {
                    candle_core::bail!(
                        "cond-unet: class label {bad} is outside the embedding's 0..{}",
                        k - 1
                    );
                }
                emb = (emb + table.index_select(&ids.to_device(table.device())?, 0)?)?;
            }
        }
        if let Some(e) = extra {
            emb = (emb + e)?;
        }
        // Every resnet applies SiLU before its projection: once here for all of them.
        let emb = silu(&emb)?;
        let ctx = context;
        let mask = mask.as_ref();

        let mut h = self.conv_in.forward(x)?;
        let mut skips = vec![h.clone()];
        for (i, level) in self.down.iter().enumerate() {
            for (j, res) in level.resnets.iter().enumerate() {
                h = res.forward(&h, Some(&emb))?;
                if let Some(a) = level.attentions.get(j) {
                    h = a.forward(&h, ctx, mask)?;
                }
                skips.push(h.clone());
            }
            if let Some(ds) = self.downsamplers.get(i) {
                h = ds.forward(&h)?;
                skips.push(h.clone());
            }
        }
        h = self.mid_res[0].forward(&h, Some(&emb))?;
        h = self.mid_attn.forward(&h, ctx, mask)?;
        h = self.mid_res[1].forward(&h, Some(&emb))?;
        for (k, level) in self.up.iter().enumerate() {
            for (j, res) in level.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up resnet");
                // [B, C_h, h, w] ++ [B, C_skip, h, w] -> [B, C_h + C_skip, h, w]
                h = res.forward(&Tensor::cat(&[&h, &skip], 1)?, Some(&emb))?;
                if let Some(a) = level.attentions.get(j) {
                    h = a.forward(&h, ctx, mask)?;
                }
            }
            if let Some(us) = self.upsamplers.get(k) {
                let (_, _, sh, sw) = skips.last().expect("a skip for the next level").dims4()?;
                h = us.forward(&h, sh, sw)?;
            }
        }
        // GroupNorm and SiLU fused.
        self.conv_out.forward(&self.conv_norm_out.forward(&h)?)
    }
}

/// A diffusers `ResnetBlock2D` with the time input and this config's norms.
fn resnet(
    c_in: usize,
    c_out: usize,
    temb: usize,
    cfg: &CondUNetConfig,
    vb: VarBuilder,
) -> candle_core::Result<ResnetBlock2D> {
    ResnetBlock2D::new(
        c_in,
        c_out,
        Some(temb),
        cfg.norm_num_groups,
        cfg.norm_eps,
        vb,
    )
}
