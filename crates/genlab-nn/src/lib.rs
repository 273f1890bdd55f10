//! genlab-nn: the neural-network blocks of genlab's generative models.
//!
//! - [`timestep_embedding`]: sinusoidal embedding of diffusion timesteps (Vaswani et al. 2017);
//! - [`Classifier`]: a small CNN digit classifier, genlab's own feature extractor;
//! - [`VideoClassifier`]: a small clip classifier (digit and direction of motion), the
//!   feature extractor of the FVD-style Frechet distance on Moving MNIST;
//! - [`MlpDenoiser`]: a time-conditioned MLP noise predictor for 2-D toy data;
//! - [`UNet`]: the DDPM U-Net (Ho et al. 2020) with its [`ResBlock`], [`AttentionBlock`],
//!   [`Downsample`] and [`Upsample`] parts;
//! - [`Dit`]: the diffusion transformer (Peebles & Xie 2023) with adaLN-Zero, for images and
//!   for videos cut into spacetime patches (joint or factorised attention);
//! - [`CondUNet`]: the text-conditioned U-Net of latent diffusion (Rombach et al. 2022) in
//!   diffusers' `UNet2DConditionModel` names, with its [`SpatialTransformer`] blocks;
//! - [`resize`]: bicubic (Keys 1981) and area resizing of image batches as matrices;
//! - [`max_pool2`] and [`dropout`]: max-pooling with a correct gradient, seeded dropout;
//! - [`Mlp`] with [`Act`]: plain perceptrons for the VAE and GAN networks on vectors;
//! - [`VectorQuantizer`] (VQ-VAE / VQGAN codebook, EMA updates, [`CodebookUsage`]) and
//!   [`PatchDiscriminator`] (PatchGAN with VQGAN's hinge losses and adaptive weight): the
//!   parts of a first-stage autoencoder;
//! - [`Conv`], [`ConvTranspose`], [`GroupNorm`], [`Linear`], [`silu`], [`upsample_nearest`]:
//!   the layers under the networks. This crate holds only the layers (parameters, checks); on CPU f32 they run
//!   genlab-kernels' custom ops, which carry their own backward passes (candle 0.11.1's CPU
//!   backward passes for these were 5-20x slower), and elsewhere they fall back to candle's
//!   op, which computes the same function and is what the tests compare against.
//!
//! Parameters are created through `genlab_core::ParamStore::vb()` with the ordinary
//! `candle_nn` constructors, so initial weights are seeded and names are the `pp` paths.
//! Only ops whose candle 0.11.1 backward passes a gradient are used (`candle_nn::ops::softmax`,
//! never the fused LayerNorm, RmsNorm, `softmax_last_dim` or `sdpa`).
//!
//! The weights are variables, so every output tracks its autograd graph: iterative samplers
//! must `detach()` their state each step, or every step's intermediates stay alive.

// `usize::is_multiple_of` is newer (1.87) than the workspace's rust-version (1.85).
#![allow(clippy::manual_is_multiple_of)]

pub mod activation;
pub mod attention;
pub mod classifier;
pub mod cond_unet;
pub mod conv;
pub mod dit;
pub mod embedding;
pub mod flops;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod patch_discriminator;
pub mod pool;
pub mod resample;
pub mod resblock;
pub mod resize;
pub mod resnet2d;
pub mod spatial_transformer;
pub mod stack;
pub mod text_transformer;
pub mod time_classifier;
pub mod transformer;
pub mod unet;
pub mod vector_quantizer;
pub mod video_classifier;
pub mod vit;

pub use activation::{leaky_relu, softplus};
pub use attention::AttentionBlock;
pub use classifier::{Classifier, ClassifierConfig};
pub use cond_unet::{CondUNet, CondUNetConfig};
pub use conv::{Conv, ConvTranspose};
pub use dit::{Dit, DitConfig, PosEmbed, VideoAttention};
pub use embedding::{timestep_embedding, DEFAULT_MAX_PERIOD};
pub use linear::{relu, silu, Linear};
pub use mlp::{MlpDenoiser, MlpDenoiserConfig};
pub use norm::GroupNorm;
pub use patch_discriminator::{PatchDiscConfig, PatchDiscriminator};
pub use pool::{dropout, max_pool2};
pub use resample::{upsample_nearest, upsample_reference, Downsample, Upsample};
pub use resblock::ResBlock;
pub use resnet2d::ResnetBlock2D;
pub use spatial_transformer::{SpatialTransformer, SpatialTransformerConfig};
pub use stack::{Act, Mlp};
pub use text_transformer::{TextTransformer, TextTransformerConfig};
pub use time_classifier::{TimeClassifier, TimeClassifierConfig};
pub use transformer::{
    causal_mask, key_padding_mask, LayerNorm, MlpAct, SelfAttention, TransformerBlock,
    TransformerBlockConfig, TransformerMlp,
};
pub use unet::{UNet, UNetConfig};
pub use vector_quantizer::{CodebookUsage, VectorQuantizer, VqConfig, VqOutput};
pub use video_classifier::{VideoClassifier, VideoClassifierConfig};
pub use vit::{patchify, unpatchify, VisionTransformer, VitConfig};
