//! genlab-nn: the neural-network blocks of genlab's generative models.
//!
//! - [`timestep_embedding`]: sinusoidal embedding of diffusion timesteps (Vaswani et al. 2017);
//! - [`MlpDenoiser`]: a time-conditioned MLP noise predictor for 2-D toy data;
//! - [`UNet`]: the DDPM U-Net (Ho et al. 2020) with its [`ResBlock`], [`AttentionBlock`],
//!   [`Downsample`] and [`Upsample`] parts.
//!
//! Parameters are created through `genlab_core::ParamStore::vb()`, so initial weights are
//! seeded. Only ops whose candle 0.11.1 backward passes a gradient are used: GroupNorm (built
//! from plain tensor ops) and `candle_nn::ops::softmax`, never the fused LayerNorm, RmsNorm,
//! `softmax_last_dim` or `sdpa`.

pub mod attention;
pub mod conv;
mod cpu;
pub mod embedding;
pub mod mlp;
pub mod norm;
pub mod resample;
pub mod resblock;
pub mod unet;

pub use attention::AttentionBlock;
pub use conv::Conv;
pub use embedding::{timestep_embedding, DEFAULT_MAX_PERIOD};
pub use mlp::{MlpDenoiser, MlpDenoiserConfig};
pub use norm::GroupNorm;
pub use resample::{Downsample, Upsample};
pub use resblock::ResBlock;
pub use unet::{UNet, UNetConfig};
