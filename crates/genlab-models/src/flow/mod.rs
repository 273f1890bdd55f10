//! Normalizing flows: invertible maps with tractable Jacobians, trained by exact maximum
//! likelihood through the change of variables (Dinh, Krueger & Bengio 2014, "NICE",
//! arXiv:1410.8516, Sec. 2; Dinh, Sohl-Dickstein & Bengio 2016, "Density estimation using
//! Real NVP", arXiv:1605.08803, Sec. 3.1):
//!
//! ```text
//! log p_X(x) = log p_Z(f(x)) + log |det df/dx|,    f = f_K o ... o f_1,
//! log |det df/dx| = sum_k log |det df_k/dh_{k-1}|  (Kingma & Dhariwal 2018, Glow, Sec. 2)
//! ```
//!
//! Convention of this module: every [`Transform`] maps data to noise in `forward`
//! (x -> z, the density direction) and returns `log |det dz/dx|` per example; `inverse`
//! maps noise to data (sampling). One transformation per file, each with its paper:
//!
//! | file               | transformation                                     |
//! |--------------------|----------------------------------------------------|
//! | `elementwise.rs`   | elementwise affine (NICE's diagonal scaling)       |
//! | `actnorm.rs`       | ActNorm with data-dependent init (Glow)            |
//! | `inv_linear.rs`    | invertible linear map / 1x1 conv, LU form (Glow)   |
//! | `additive.rs`      | additive coupling (NICE)                           |
//! | `affine_coupling.rs` | affine coupling, checkerboard/channel masks (RealNVP) |
//! | `spline.rs`        | rational-quadratic spline coupling (Durkan et al.) |
//! | `squeeze.rs`       | squeeze (RealNVP)                                  |
//! | `multiscale.rs`    | factor-out and the multi-scale architecture        |
//! | `made.rs`          | MADE masks (Germain et al. 2015)                   |
//! | `maf.rs`, `iaf.rs` | masked / inverse autoregressive flows              |
//! | `dequantize.rs`    | uniform dequantisation, nats and bits/dim          |
//! | `model.rs`         | the `Flow` model with its config and presets       |
//!
//! All transforms work in the dtype of their parameters (f32 for training; the tests build
//! them in f64 to compare log-dets with brute-force Jacobians).

use candle_core::Tensor;

use genlab_core::Result;

pub mod actnorm;
pub mod additive;
pub mod affine_coupling;
pub mod base;
pub mod dequantize;
pub mod elementwise;
pub mod flops;
pub mod iaf;
pub mod inv_linear;
pub mod made;
pub mod maf;
pub mod masks;
pub mod model;
pub mod multiscale;
pub mod spline;
pub mod squeeze;
pub mod var_dequantize;

#[cfg(test)]
mod testing;

pub use actnorm::ActNorm;
pub use additive::AdditiveCoupling;
pub use affine_coupling::AffineCoupling;
pub use base::{standard_normal_log_prob, LN_2PI};
pub use dequantize::{bits_per_dim, Dequantizer};
pub use elementwise::ElementwiseAffine;
pub use iaf::Iaf;
pub use inv_linear::InvLinear;
pub use made::Made;
pub use maf::Maf;
pub use masks::{CouplingNet, HalfSplit, Mask, MaskKind};
pub use model::{Coupling, DequantizationKind, Flow, FlowConfig, FlowTerms, Mixing};
pub use multiscale::{MultiScale, Scale};
pub use spline::SplineCoupling;
pub use squeeze::Squeeze;
pub use var_dequantize::{Dequantized, VariationalDequantizer};

/// Values to write into named variables (ActNorm's data-dependent initialisation).
pub type Assignments = Vec<(String, Tensor)>;

/// An invertible map with a tractable log-determinant. `forward` goes data -> noise.
pub trait Transform {
    /// `x [B, ...]` -> `(z, log |det dz/dx|)` with the log-det `[B]`.
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)>;
    /// `z` -> `x`, the exact inverse of [`Transform::forward`].
    fn inverse(&self, z: &Tensor) -> Result<Tensor>;
    /// Data-dependent initialisation on a batch `x`: returns the output computed with the
    /// initial values and the values to write into the named variables. The default has
    /// nothing to initialise (only ActNorm does).
    fn data_init(&self, x: &Tensor) -> Result<(Tensor, Assignments)> {
        Ok((self.forward(x)?.0, Vec::new()))
    }
}

/// Transforms applied in order (x -> f_1 -> ... -> f_K -> z); the log-dets add up.
pub struct Chain(pub Vec<Box<dyn Transform>>);

impl Transform for Chain {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut h = x.clone();
        let mut ld = zeros_b(x)?;
        for t in &self.0 {
            let (z, l) = t.forward(&h)?;
            h = z;
            ld = (ld + l)?;
        }
        Ok((h, ld))
    }

    fn inverse(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = z.clone();
        for t in self.0.iter().rev() {
            h = t.inverse(&h)?;
        }
        Ok(h)
    }

    fn data_init(&self, x: &Tensor) -> Result<(Tensor, Assignments)> {
        let mut h = x.clone();
        let mut all = Vec::new();
        for t in &self.0 {
            let (z, a) = t.data_init(&h)?;
            h = z;
            all.extend(a);
        }
        Ok((h, all))
    }
}

/// Sums `t [B, ...]` over everything but the batch dimension: `[B]`.
pub(crate) fn sum_per_example(t: &Tensor) -> Result<Tensor> {
    let b = t.dim(0)?;
    Ok(t.reshape((b, ()))?.sum(1)?) // [B, prod(rest)] -> [B]
}

/// A `[B]` tensor of zeros in `x`'s dtype and device.
pub(crate) fn zeros_b(x: &Tensor) -> Result<Tensor> {
    Ok(Tensor::zeros(x.dim(0)?, x.dtype(), x.device())?)
}

/// A host `f64` vector as a tensor of `like`'s dtype and device with `shape`.
pub(crate) fn constant(v: Vec<f64>, shape: &[usize], like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(v, shape, like.device())?.to_dtype(like.dtype())?)
}

/// `c * tanh(s / c)`: a log-scale that behaves like `s` near 0 and never leaves
/// `(-c, c)` (the soft clamp of Glow's and nflows' implementations; keeps a freshly
/// diverging coupling from producing infinite log-dets).
pub(crate) fn soft_clamp(s: &Tensor, c: f64) -> Result<Tensor> {
    Ok((s / c)?.tanh()?.affine(c, 0.0)?)
}
