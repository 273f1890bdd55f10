//! genlab-kernels: genlab's own CPU kernels, the ones candle 0.11.1 lacks or runs slowly
//! (its CPU backward passes for these were 5-20x the forward time). Each is a candle custom
//! op with its own backward pass; genlab-nn's layers call them on CPU f32 tensors and fall
//! back to candle's ops elsewhere.
//!
//! - [`conv2d`] / [`conv_transpose2d`]: 2-D convolution and transposed convolution as
//!   per-image im2col + GEMM (Chellapilla, Puri & Simard 2006), three kernels serving both
//!   (forward, input gradient, weight gradient), bias folded in (`conv.rs`, `im2col.rs`);
//! - [`group_norm`]: GroupNorm (Wu & He 2018), optionally fused with the SiLU after it
//!   (`group_norm.rs`);
//! - [`upsample_nearest2x`]: nearest-neighbour x2 upsampling with a crop, and its 2x2-sum
//!   adjoint (`resample.rs`);
//! - [`linear`] (`linear.rs`), [`silu`] (`silu.rs`), [`relu`] (`relu.rs`), [`attention`] / [`softmax_last_dim`]
//!   (`attention.rs`), [`layer_norm`] (`layer_norm.rs`): see those modules' headers;
//! - [`num_threads`]: the thread count the convolution, GroupNorm and resampling kernels use
//!   (`par.rs`);
//! - `op.rs`: the candle custom-op plumbing they all share (one `Kernel` trait implemented
//!   per op, whatever its arity, and the argument, dtype and gradient handling around it).
//!
//! All kernels take NCHW (for GroupNorm `[B, C, ...]`) f32 tensors on the CPU and return
//! contiguous results. They use the thread count the user set (`genlab --threads N`, i.e.
//! `RAYON_NUM_THREADS`, or the rayon pool they run in); with one thread they run on the
//! calling thread and spawn none.
//!
//! This crate enables the `gemm` crate's AVX-512 kernels (see its Cargo.toml), for its own
//! GEMMs and, by feature unification, for candle's matmul in every build that includes it.

// `usize::is_multiple_of` is newer (1.87) than the workspace's rust-version (1.85).
#![allow(clippy::manual_is_multiple_of)]

mod attention;
mod conv;
mod gelu;
mod gemm;
mod group_norm;
mod im2col;
mod layer_norm;
mod linear;
mod op;
mod par;
mod relu;
mod resample;
mod silu;
// The Cephes `expf` polynomial coefficients are written as published.
#[allow(clippy::excessive_precision)]
mod simd;

pub use attention::{
    attention, attention_composed, attention_qkv, attention_qkv_tokens, causal_attention_composed,
    softmax_last_dim, softmax_last_dim_composed,
};
pub use conv::{conv2d, conv_transpose2d};
pub use gelu::{
    gelu_erf, gelu_erf_grad_slice, gelu_erf_slice, gelu_tanh, gelu_tanh_grad_slice,
    gelu_tanh_slice, quick_gelu, quick_gelu_grad_slice, quick_gelu_slice,
};
pub use group_norm::group_norm;
pub use layer_norm::{layer_norm, layer_norm_composed};
pub use linear::linear;
pub use par::num_threads;
pub use relu::relu;
pub use resample::upsample_nearest2x;
pub use silu::{silu, silu_grad_slice, silu_slice};
