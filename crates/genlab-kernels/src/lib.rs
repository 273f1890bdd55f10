//! genlab-kernels: fast CPU kernels that candle 0.11.1 lacks.
//!
//! - [`conv2d`] / [`Conv2d`]: 2-D convolution as im2col + GEMM, with a backward that is
//!   GEMMs plus a col2im scatter-add, fused per image so no big column matrix is built
//!   (candle's own CPU conv2d backward is far slower);
//! - [`conv2d_im2col`]: the same through whole-batch custom ops and candle's matmul;
//! - [`im2col`] / [`col2im`] and the custom ops [`Im2Col`] / [`Col2Im`] behind them.
//!
//! All kernels are f32, CPU only, NCHW.

mod conv;
mod fused;
mod im2col;

pub use conv::{conv2d, conv2d_im2col, Conv2d};
pub use im2col::{col2im, im2col, Col2Im, Im2Col};
