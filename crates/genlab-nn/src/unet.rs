//! The DDPM U-Net noise predictor.
//!
//! Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (arXiv:2006.11239), simplified
//! like the common small DDPM U-Nets; the encoder/decoder with concatenated skips is
//! Ronneberger et al. 2015 (arXiv:1505.04597).
//!
//! ```text
//! temb = lin2(silu(lin1(sinusoidal(t, base))))             [B, 4·base]
//! h    = conv_in(x)                                         [B, base, H, W]   -> skip
//! for level i (channels base·mult[i]):
//!     num_res_blocks x ResBlock (+ attention at the lowest level)             -> skip each
//!     Downsample (stride-2 conv) unless i is the last level                   -> skip
//! mid: ResBlock, attention, ResBlock
//! for level i in reverse:
//!     (num_res_blocks + 1) x [concat(h, pop skip) -> ResBlock (+ attention at the lowest)]
//!     Upsample (nearest x2, conv) unless i == 0, to the size of the next skip
//! out  = conv_out(silu(GroupNorm(h)))                       [B, out_channels, H, W]
//! ```
//!
//! Spatial sizes go `H -> ceil(H/2)` per level, so `[1, 2, 2]` on 28x28 gives 28, 14, 7 and
//! on 8x8 gives 8, 4, 2. Nothing is zero-initialised (every parameter gets a gradient from
//! the first step).
//!
//! Parameter names: `time.lin1`, `time.lin2`, `conv_in`, `down.{i}.res.{j}.*`,
//! `down.{i}.attn.{j}.*`, `down.{i}.downsample.conv`, `mid.res.{0,1}.*`, `mid.attn.*`,
//! `up.{i}.res.{j}.*`, `up.{i}.attn.{j}.*`, `up.{i}.upsample.conv`, `out.norm`, `out.conv`,
//! with `i` the level (0 = full resolution) on both paths.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::linear::{silu, Linear};
use serde::{Deserialize, Serialize};

use crate::attention::AttentionBlock;
use crate::conv::Conv;
use crate::embedding::{timestep_embedding, DEFAULT_MAX_PERIOD};
use crate::flops::{attention_flops, conv_flops, linear_flops};
use crate::norm::GroupNorm;
use crate::resample::{Downsample, Upsample};
use crate::resblock::{conv3x3, ResBlock, GN_EPS};

/// Sizes of [`UNet`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UNetConfig {
    /// Channels of the first level; level `i` has `base_channels * channel_mult[i]`.
    pub base_channels: usize,
    /// One level per entry; every level but the last halves the resolution.
    pub channel_mult: Vec<usize>,
    /// ResNet blocks per level on the way down (the way up has one more, as in DDPM).
    pub num_res_blocks: usize,
    /// Self-attention in the lowest-resolution level and in the middle block.
    pub attention_at_lowest: bool,
    /// Attention heads; must divide the lowest level's channel count.
    pub heads: usize,
    /// GroupNorm groups; must divide every channel count of the network.
    pub groups: usize,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            // 32: the small DDPM U-Nets for 28x28 digits use 32-64; 32 keeps CPU training viable.
            base_channels: 32,
            // [1, 2, 2]: 28 -> 14 -> 7, three resolutions are enough for 28x28 digits.
            channel_mult: vec![1, 2, 2],
            // 2: DDPM's count per level.
            num_res_blocks: 2,
            // true: attention at 7x7 is cheap (49 positions) and gives global context.
            attention_at_lowest: true,
            // 1: DDPM's single head; at 64 channels more heads buy little.
            heads: 1,
            // 8: divides 32 and 64 with 4-8 channels per group (GroupNorm's sweet spot).
            groups: 8,
        }
    }
}

impl UNetConfig {
    /// A very small U-Net for tests: two levels (8x8 -> 4x4), one block per level.
    pub fn tiny() -> Self {
        Self {
            // 16: the smallest width with 4 groups of 4 channels.
            base_channels: 16,
            // [1, 2]: two levels, one downsampling.
            channel_mult: vec![1, 2],
            // 1: exercises the skip bookkeeping at the lowest cost.
            num_res_blocks: 1,
            // true: exercises the attention path.
            attention_at_lowest: true,
            // 2: exercises the multi-head reshapes (32 channels -> 16 per head).
            heads: 2,
            // 4: divides 16 and 32.
            groups: 4,
        }
    }

    /// The small U-Net of the MNIST DDPM run in docs/mnist.md (and of the `unet-train` and
    /// `ddim50` benchmark workloads): base 16, levels [1, 2, 2], one block per level.
    pub fn mnist_small() -> Self {
        Self {
            // 16: half the default width, a 2-core CPU budget of ~2 steps/s at batch 32.
            base_channels: 16,
            ..Self::mnist_blocks()
        }
    }

    /// The default levels with one block per level (the smaller MNIST networks).
    fn mnist_blocks() -> Self {
        Self {
            // 1: one block per level halves the depth, at little cost in sample quality.
            num_res_blocks: 1,
            ..Self::default()
        }
    }

    /// Forward FLOPs of the [`UNet`] of this config on `[b, c_in, s, s]` (see
    /// [`crate::flops`]), walking the same structure as
    /// `UNet::new` (same level channels, blocks, skips, attention placement).
    pub fn forward_flops(&self, b: usize, c_in: usize, s: usize) -> f64 {
        let cfg = self;
        let base = cfg.base_channels;
        let temb = 4 * base;
        let levels: Vec<usize> = cfg.channel_mult.iter().map(|m| base * m).collect();
        let lowest = levels.len() - 1;
        let res = |ci: usize, co: usize, n: usize| {
            conv_flops(b, ci, co, 3, n)
                + conv_flops(b, co, co, 3, n)
                + if ci != co {
                    conv_flops(b, ci, co, 1, n)
                } else {
                    0.0
                }
                + 2.0 * (b * temb * co) as f64
        };
        let mut f = linear_flops(b, &[(base, temb), (temb, temb)]);
        let mut size = s;
        f += conv_flops(b, c_in, base, 3, size * size);
        let mut skips = vec![(base, size)];
        let mut ch = base;
        for (i, &c) in levels.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                f += res(ch, c, size * size);
                ch = c;
                if cfg.attention_at_lowest && i == lowest {
                    f += attention_flops(b, c, size * size);
                }
                skips.push((ch, size));
            }
            if i != lowest {
                let next = size.div_ceil(2);
                f += conv_flops(b, ch, ch, 3, next * next);
                size = next;
                skips.push((ch, size));
            }
        }
        f += 2.0 * res(ch, ch, size * size);
        if cfg.attention_at_lowest {
            f += attention_flops(b, ch, size * size);
        }
        for (i, &c) in levels.iter().enumerate().rev() {
            for _ in 0..=cfg.num_res_blocks {
                let (skip_ch, _) = skips.pop().expect("one skip per decoder block");
                f += res(ch + skip_ch, c, size * size);
                ch = c;
                if cfg.attention_at_lowest && i == lowest {
                    f += attention_flops(b, c, size * size);
                }
            }
            if i != 0 {
                let (_, up) = *skips.last().expect("skip for the next level");
                f += conv_flops(b, ch, ch, 3, up * up);
                size = up;
            }
        }
        f + conv_flops(b, ch, c_in, 3, size * size)
    }

    /// The channel count of each level.
    fn level_channels(&self) -> Vec<usize> {
        self.channel_mult
            .iter()
            .map(|m| self.base_channels * m)
            .collect()
    }

    /// Checks the sizes that do not depend on the image (what [`UNet::new`] needs).
    pub fn validate_channels(&self) -> genlab_core::Result<()> {
        let bad = |m: String| Err(genlab_core::Error::Config(m));
        if self.base_channels == 0 || self.base_channels % 2 != 0 {
            return bad(format!(
                "unet.base_channels must be a positive even number (it is also the size of the \
                 sinusoidal time embedding), got {}",
                self.base_channels
            ));
        }
        if self.channel_mult.is_empty() || self.channel_mult.contains(&0) {
            return bad(format!(
                "unet.channel_mult must be a non-empty list of positive multipliers, got {:?}",
                self.channel_mult
            ));
        }
        if self.num_res_blocks == 0 {
            return bad("unet.num_res_blocks must be at least 1".into());
        }
        if self.groups == 0 {
            return bad("unet.groups must be at least 1".into());
        }
        // Every GroupNorm sees base (conv_in's output, concatenated on the way up), a level's
        // channels, or a sum of two of those: divisibility of each term covers all of them.
        let mut counts = vec![self.base_channels];
        counts.extend(self.level_channels());
        if let Some(c) = counts.iter().find(|c| *c % self.groups != 0) {
            return bad(format!(
                "unet.groups = {} must divide every channel count of the network, but not {c} \
                 (channels are base_channels = {} times each of channel_mult = {:?})",
                self.groups, self.base_channels, self.channel_mult
            ));
        }
        let lowest = *self.level_channels().last().expect("non-empty");
        if self.attention_at_lowest && (self.heads == 0 || lowest % self.heads != 0) {
            return bad(format!(
                "unet.heads = {} must be positive and divide the lowest level's {lowest} channels",
                self.heads
            ));
        }
        Ok(())
    }

    /// Checks the config for square images of side `image_size`: the channel rules of
    /// [`UNetConfig::validate_channels`], and `image_size` divisible by `2^(levels - 1)` so
    /// that every downsampling halves exactly (the lowest level may be odd: 28 -> 14 -> 7).
    pub fn validate(&self, image_size: usize) -> genlab_core::Result<()> {
        self.validate_channels()?;
        // Any size works: each level takes ceil(H / 2) and the way up crops to the skip's
        // size (7 -> 4 -> 7 for latent diffusion's 7x7 MNIST latents).
        if image_size == 0 {
            return Err(genlab_core::Error::Config(
                "the U-Net needs images of at least one pixel a side".into(),
            ));
        }
        Ok(())
    }
}

/// One level of the encoder or decoder.
#[derive(Debug, Clone)]
struct Level {
    res: Vec<ResBlock>,
    attn: Vec<AttentionBlock>,
}

/// The DDPM U-Net: `x` `[B, C_in, H, W]`, `t` `[B]` -> `[B, C_out, H, W]`.
#[derive(Debug, Clone)]
pub struct UNet {
    in_channels: usize,
    base_channels: usize,
    time_lin1: Linear,
    time_lin2: Linear,
    conv_in: Conv,
    down: Vec<Level>,
    downsample: Vec<Downsample>,
    mid_res1: ResBlock,
    mid_attn: Option<AttentionBlock>,
    mid_res2: ResBlock,
    up: Vec<Level>,
    upsample: Vec<Upsample>,
    out_norm: GroupNorm,
    out_conv: Conv,
}

impl UNet {
    /// Creates the parameters under `vb` (names in the module docs). The config is checked
    /// with [`UNetConfig::validate_channels`]; the image size is free, but
    /// [`UNetConfig::validate`] should be called with it first.
    pub fn new(
        cfg: &UNetConfig,
        in_channels: usize,
        out_channels: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        cfg.validate_channels()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        if in_channels == 0 || out_channels == 0 {
            candle_core::bail!(
                "UNet: in_channels ({in_channels}) and out_channels ({out_channels}) must be positive"
            );
        }
        let base = cfg.base_channels;
        let temb_dim = 4 * base;
        let g = cfg.groups;
        let levels = cfg.level_channels();
        let lowest = levels.len() - 1;
        let attn_at = |i: usize| cfg.attention_at_lowest && i == lowest;

        let time_lin1 = Linear::new(base, temb_dim, vb.pp("time").pp("lin1"))?;
        let time_lin2 = Linear::new(temb_dim, temb_dim, vb.pp("time").pp("lin2"))?;
        let conv_in = conv3x3(in_channels, base, vb.pp("conv_in"))?;

        // Encoder; `skips` records the channel count of every tensor pushed for the decoder.
        let mut skips = vec![base];
        let mut ch = base;
        let mut down = Vec::with_capacity(levels.len());
        let mut downsample = Vec::new();
        for (i, &c) in levels.iter().enumerate() {
            let vbl = vb.pp("down").pp(i);
            let mut level = Level {
                res: Vec::new(),
                attn: Vec::new(),
            };
            for j in 0..cfg.num_res_blocks {
                level
                    .res
                    .push(ResBlock::new(ch, c, temb_dim, g, vbl.pp("res").pp(j))?);
                ch = c;
                if attn_at(i) {
                    level
                        .attn
                        .push(AttentionBlock::new(c, cfg.heads, g, vbl.pp("attn").pp(j))?);
                }
                skips.push(ch);
            }
            if i != lowest {
                downsample.push(Downsample::new(ch, vbl.pp("downsample"))?);
                skips.push(ch);
            }
            down.push(level);
        }

        let vbm = vb.pp("mid");
        let mid_res1 = ResBlock::new(ch, ch, temb_dim, g, vbm.pp("res").pp(0))?;
        let mid_attn = if cfg.attention_at_lowest {
            Some(AttentionBlock::new(ch, cfg.heads, g, vbm.pp("attn"))?)
        } else {
            None
        };
        let mid_res2 = ResBlock::new(ch, ch, temb_dim, g, vbm.pp("res").pp(1))?;

        // Decoder, built from the lowest level up; stored in that order.
        let mut up = Vec::with_capacity(levels.len());
        let mut upsample = Vec::new();
        for (i, &c) in levels.iter().enumerate().rev() {
            let vbl = vb.pp("up").pp(i);
            let mut level = Level {
                res: Vec::new(),
                attn: Vec::new(),
            };
            for j in 0..=cfg.num_res_blocks {
                let skip_ch = skips.pop().expect("one skip per decoder block");
                level.res.push(ResBlock::new(
                    ch + skip_ch,
                    c,
                    temb_dim,
                    g,
                    vbl.pp("res").pp(j),
                )?);
                ch = c;
                if attn_at(i) {
                    level
                        .attn
                        .push(AttentionBlock::new(c, cfg.heads, g, vbl.pp("attn").pp(j))?);
                }
            }
            if i != 0 {
                upsample.push(Upsample::new(ch, vbl.pp("upsample"))?);
            }
            up.push(level);
        }
        debug_assert!(skips.is_empty());

        let out_norm = GroupNorm::new(g, ch, GN_EPS, true, vb.pp("out").pp("norm"))?;
        let out_conv = conv3x3(ch, out_channels, vb.pp("out").pp("conv"))?;
        Ok(Self {
            in_channels,
            base_channels: base,
            time_lin1,
            time_lin2,
            conv_in,
            down,
            downsample,
            mid_res1,
            mid_attn,
            mid_res2,
            up,
            upsample,
            out_norm,
            out_conv,
        })
    }

    /// `x` `[B, C, H, W]`, `t` `[B]` f32 (diffusion timestep as a float) ->
    /// `[B, out_channels, H, W]`.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, t, None)
    }

    /// Width of the time embedding (4 x base channels), which a condition embedding added
    /// to it must have.
    pub fn temb_dim(&self) -> usize {
        4 * self.base_channels
    }

    /// Input channels the network takes (data channels plus any concatenated condition map).
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// [`UNet::forward`] with `extra` (`[B, 4·base]`, e.g. a class embedding) added to the
    /// time embedding before its activation (as diffusers adds its class embedding).
    pub fn forward_with(
        &self,
        x: &Tensor,
        t: &Tensor,
        extra: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        if c != self.in_channels {
            candle_core::bail!(
                "UNet: x has {c} channels, the model expects {}",
                self.in_channels
            );
        }
        if t.dims() != [b] {
            candle_core::bail!("UNet: t must have shape [{b}], got {:?}", t.dims());
        }
        // [B] -> [B, base] -> [B, 4·base]; activated once for every block's projection.
        let temb = timestep_embedding(t, self.base_channels, DEFAULT_MAX_PERIOD)?;
        let temb = self
            .time_lin2
            .forward(&silu(&self.time_lin1.forward(&temb)?)?)?;
        let temb = match extra {
            Some(e) => silu(&(temb + e)?)?,
            None => silu(&temb)?,
        };

        let mut h = self.conv_in.forward(x)?;
        let mut skips = vec![h.clone()];
        for (i, level) in self.down.iter().enumerate() {
            for (j, res) in level.res.iter().enumerate() {
                h = res.forward(&h, &temb)?;
                if let Some(attn) = level.attn.get(j) {
                    h = attn.forward(&h)?;
                }
                skips.push(h.clone());
            }
            if let Some(ds) = self.downsample.get(i) {
                h = ds.forward(&h)?;
                skips.push(h.clone());
            }
        }

        h = self.mid_res1.forward(&h, &temb)?;
        if let Some(attn) = &self.mid_attn {
            h = attn.forward(&h)?;
        }
        h = self.mid_res2.forward(&h, &temb)?;

        for (k, level) in self.up.iter().enumerate() {
            for (j, res) in level.res.iter().enumerate() {
                let skip = skips.pop().expect("one skip per decoder block");
                // [B, C_h, h, w] ++ [B, C_skip, h, w] -> [B, C_h + C_skip, h, w]
                h = res.forward(&Tensor::cat(&[&h, &skip], 1)?, &temb)?;
                if let Some(attn) = level.attn.get(j) {
                    h = attn.forward(&h)?;
                }
            }
            if let Some(us) = self.upsample.get(k) {
                let (_, _, sh, sw) = skips.last().expect("skip for the next level").dims4()?;
                h = us.forward(&h, sh, sw)?;
            }
        }

        // GroupNorm and SiLU fused.
        self.out_conv.forward(&self.out_norm.forward(&h)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_flops_match_a_hand_count_for_one_level() {
        // One level, one block, no attention, 4x4 (16 positions), batch 1, base 4 (temb 16),
        // 1 channel: time MLP 2(4·16 + 16·16) = 640; conv_in 2·16·1·4·9 = 1152;
        // down res(4->4): 2 convs of 2·16·4·4·9 = 4608, temb 2·16·4 = 128 -> 9344;
        // mid: 2 res(4->4) = 18688; up: 2 res(8->4): conv1 2·16·8·4·9 = 9216, conv2 4608,
        // 1x1 skip 2·16·8·4 = 1024, temb 128 -> 14976 each = 29952; out conv 1152.
        let cfg = UNetConfig {
            base_channels: 4,
            channel_mult: vec![1],
            num_res_blocks: 1,
            attention_at_lowest: false,
            heads: 1,
            groups: 2,
        };
        let want = 640.0 + 1152.0 + 9344.0 + 18688.0 + 29952.0 + 1152.0;
        assert_eq!(cfg.forward_flops(1, 1, 4), want);
    }

    #[test]
    fn the_mnist_preset_is_the_benchmarked_network() {
        let c = UNetConfig::mnist_small();
        assert_eq!(
            (c.base_channels, c.channel_mult.clone(), c.num_res_blocks),
            (16, vec![1, 2, 2], 1)
        );
        assert!(c.attention_at_lowest && c.heads == 1 && c.groups == 8);
    }
}
