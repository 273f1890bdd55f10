//! A time-conditional classifier of noisy inputs: the network of classifier guidance
//! (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis",
//! arXiv:2105.05233, Sec. 4 and App. C: the U-Net's downsampling half with its time
//! embedding, then a pooled linear head).
//!
//! Images `[B, C, H, W]`:
//! ```text
//! temb = silu(lin2(silu(lin1(sinusoidal(t, base)))))          [B, 4·base]
//! h    = conv_in(x); per level i: ResBlock(h, temb), then a stride-2 conv (not after the last)
//! out  = head(mean_hw(silu(norm(h))))                         [B, K]
//! ```
//! Vectors `[B, D]`: an MLP whose hidden layers each add a projection of the time embedding
//! (as `MlpDenoiser`), with K outputs.
//!
//! Parameter names: `time.lin1`, `time.lin2`, then `conv_in`, `down.{i}.res`,
//! `down.{i}.down`, `norm`, `head` (images) or `in`, `hidden.{i}`, `temb_proj.{i}`, `head`
//! (vectors).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::embedding::{timestep_embedding, DEFAULT_MAX_PERIOD};
use crate::linear::{silu, Linear};
use crate::norm::GroupNorm;
use crate::resample::Downsample;
use crate::resblock::{conv3x3, ResBlock, GN_EPS};
use crate::Conv;

/// Sizes of [`TimeClassifier`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TimeClassifierConfig {
    /// Channels of the first level (images) / width of the hidden layers (vectors).
    pub base_channels: usize,
    /// One level per entry (images); every level but the last halves the resolution.
    pub channel_mult: Vec<usize>,
    /// GroupNorm groups (images).
    pub groups: usize,
    /// Hidden layers (vectors).
    pub layers: usize,
}

impl Default for TimeClassifierConfig {
    fn default() -> Self {
        Self {
            // 32: the MNIST U-Net's width order; a classifier needs no more on 28x28 digits.
            base_channels: 32,
            // [1, 2, 2]: 28 -> 14 -> 7 like the U-Net it guides.
            channel_mult: vec![1, 2, 2],
            // 8: divides 32 and 64.
            groups: 8,
            // 3: the MLP denoiser's depth.
            layers: 3,
        }
    }
}

enum Body {
    Conv {
        conv_in: Conv,
        res: Vec<ResBlock>,
        down: Vec<Downsample>,
        norm: GroupNorm,
    },
    Mlp {
        input: Linear,
        hidden: Vec<Linear>,
        temb_proj: Vec<Linear>,
    },
}

/// Logits of `num_classes` classes from a noisy input and its timestep.
pub struct TimeClassifier {
    base: usize,
    time_lin1: Linear,
    time_lin2: Linear,
    body: Body,
    head: Linear,
}

impl TimeClassifier {
    /// For examples of `shape` (`[D]` or `[C, H, W]`) and `num_classes` classes.
    pub fn new(
        cfg: &TimeClassifierConfig,
        shape: &[usize],
        num_classes: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        if num_classes < 2 || cfg.base_channels == 0 || cfg.base_channels % 2 != 0 {
            candle_core::bail!(
                "TimeClassifier: needs at least 2 classes and an even base width, got {num_classes} classes, base {}",
                cfg.base_channels
            );
        }
        let base = cfg.base_channels;
        let temb = 4 * base;
        let time_lin1 = Linear::new(base, temb, vb.pp("time").pp("lin1"))?;
        let time_lin2 = Linear::new(temb, temb, vb.pp("time").pp("lin2"))?;
        let (body, width) = match shape {
            [c, _, _] => {
                if cfg.channel_mult.is_empty() {
                    candle_core::bail!("TimeClassifier: channel_mult needs at least one level");
                }
                let conv_in = conv3x3(*c, base, vb.pp("conv_in"))?;
                let (mut res, mut down) = (vec![], vec![]);
                let mut ch = base;
                let last = cfg.channel_mult.len() - 1;
                for (i, m) in cfg.channel_mult.iter().enumerate() {
                    let out = base * m;
                    let vbl = vb.pp("down").pp(i);
                    res.push(ResBlock::new(ch, out, temb, cfg.groups, vbl.pp("res"))?);
                    ch = out;
                    if i != last {
                        down.push(Downsample::new(ch, vbl.pp("down"))?);
                    }
                }
                let norm = GroupNorm::new(cfg.groups, ch, GN_EPS, true, vb.pp("norm"))?;
                (
                    Body::Conv {
                        conv_in,
                        res,
                        down,
                        norm,
                    },
                    ch,
                )
            }
            [d] => {
                if cfg.layers == 0 {
                    candle_core::bail!("TimeClassifier: needs at least one hidden layer");
                }
                let input = Linear::new(*d, base, vb.pp("in"))?;
                let hidden = (0..cfg.layers - 1)
                    .map(|i| Linear::new(base, base, vb.pp("hidden").pp(i)))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let temb_proj = (0..cfg.layers)
                    .map(|i| Linear::new(temb, base, vb.pp("temb_proj").pp(i)))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                (
                    Body::Mlp {
                        input,
                        hidden,
                        temb_proj,
                    },
                    base,
                )
            }
            other => candle_core::bail!(
                "TimeClassifier: examples must be [D] or [C, H, W], got {other:?}"
            ),
        };
        let head = Linear::new(width, num_classes, vb.pp("head"))?;
        Ok(Self {
            base,
            time_lin1,
            time_lin2,
            body,
            head,
        })
    }

    /// `x` `[B, ...]`, `t` `[B]` f32 timesteps -> logits `[B, K]`.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
        // [B] -> [B, base] -> [B, 4·base], activated once for every projection.
        let temb = timestep_embedding(t, self.base, DEFAULT_MAX_PERIOD)?;
        let temb = silu(
            &self
                .time_lin2
                .forward(&silu(&self.time_lin1.forward(&temb)?)?)?,
        )?;
        let features = match &self.body {
            Body::Conv {
                conv_in,
                res,
                down,
                norm,
            } => {
                let mut h = conv_in.forward(x)?;
                for (i, r) in res.iter().enumerate() {
                    h = r.forward(&h, &temb)?;
                    if let Some(d) = down.get(i) {
                        h = d.forward(&h)?;
                    }
                }
                // [B, C, H, W] -> [B, C]: GroupNorm + SiLU, then the spatial mean.
                norm.forward(&h)?.mean((2, 3))?
            }
            Body::Mlp {
                input,
                hidden,
                temb_proj,
            } => {
                let mut h = silu(&(input.forward(x)? + temb_proj[0].forward(&temb)?)?)?;
                for (lin, proj) in hidden.iter().zip(&temb_proj[1..]) {
                    h = silu(&(lin.forward(&h)? + proj.forward(&temb)?)?)?;
                }
                h
            }
        };
        self.head.forward(&features)
    }
}
