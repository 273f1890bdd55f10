//! Uniform dequantisation of discrete pixels, and likelihoods in nats and bits/dim.
//!
//! Theis, van den Oord & Bethge 2016, "A note on the evaluation of generative models",
//! arXiv:1511.01844, Sec. 3.1; Kingma & Dhariwal 2018 (Glow), arXiv:1807.03039, Sec. 2,
//! Eq. 2. Pixels take L values (L = 256 for 8-bit images), stored in [0, 1] as
//! x = k / (L - 1), k in {0, ..., L - 1}. genlab's flows model
//!
//! ```text
//! y = (k + u) / L in [0, 1)^D,        u ~ U[0, 1)^D
//! ```
//!
//! with a density p(y) on the unit cube (the flow itself sees y - 1/2). The density of
//! v = k + u on [0, L)^D is p(y) / L^D, and P(k) = int_{[0,1)^D} p_v(k + u) du, so by
//! Jensen's inequality
//!
//! ```text
//! log P(k) >= E_u[ log p(y) ] - D log L                          (Theis et al., Sec. 3.1)
//! ```
//!
//! genlab reports, per example, `log p(y) - D ln L` nats (one draw of u): the standard
//! estimate of that bound, in the units of the discrete data. Bits per dimension are
//!
//! ```text
//! bpd = -(log p(y) - D ln L) / (D ln 2) = (nll_[0,1] + D ln L) / (D ln 2)
//!     = nll_[0,1] / (D ln 2) + log2 L        (+ 8 for L = 256)
//! ```
//!
//! where `nll_[0,1] = -log p(y)` is the NLL of the rescaled continuous data. A model of the
//! uniform density on the cube (p(y) = 1) gets exactly log2 L = 8 bits/dim, the cost of
//! storing raw bytes. Variational dequantisation (Ho et al. 2019, Flow++) lives in
//! `var_dequantize.rs`.

use candle_core::{DType, Tensor};

use genlab_core::{Error, Result, Rng};

/// Uniform dequantisation of data with `levels` values per dimension.
#[derive(Clone, Copy, Debug)]
pub struct Dequantizer {
    pub levels: u32,
}

impl Dequantizer {
    pub fn new(levels: u32) -> Result<Self> {
        if levels < 2 {
            return Err(Error::Config(format!(
                "flow.levels must be at least 2 (values per pixel), got {levels}"
            )));
        }
        Ok(Self { levels })
    }

    /// `Err(InvalidInput)` unless every value of `x` is in [0, 1] (finite).
    pub fn check_range(x: &Tensor) -> Result<()> {
        let v = x.detach().flatten_all()?.to_dtype(DType::F64)?;
        if !v.sum_all()?.to_scalar::<f64>()?.is_finite() {
            return Err(Error::InvalidInput(
                "image data contain NaN or infinite values".into(),
            ));
        }
        let (lo, hi) = (v.min(0)?.to_scalar::<f64>()?, v.max(0)?.to_scalar::<f64>()?);
        if !(lo >= 0.0 && hi <= 1.0) {
            return Err(Error::InvalidInput(format!(
                "image data must lie in [0, 1] (pixels k / (L - 1)), got values in \
                 [{lo}, {hi}]"
            )));
        }
        Ok(())
    }

    /// `x` in [0, 1] -> `y = (round(x (L - 1)) + u) / L` with fresh uniform noise u.
    pub fn dequantize(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        Self::check_range(x)?;
        let l = self.levels as f64;
        let k = x.affine(l - 1.0, 0.0)?.round()?;
        let u = rng
            .uniform_tensor(0.0, 1.0, x.dims(), x.device())?
            .to_dtype(x.dtype())?;
        Ok((k + u)?.affine(1.0 / l, 0.0)?)
    }

    /// The constant added to log p(y) to get the discrete log-likelihood bound of an
    /// example with `d` dimensions: `-d ln L`.
    pub fn log_jacobian(&self, d: usize) -> f64 {
        -(d as f64) * (self.levels as f64).ln()
    }

    /// `y` in R^D -> the pixel value k / (L - 1) of the bin holding y (clamped to the cube).
    pub fn quantize(&self, y: &Tensor) -> Result<Tensor> {
        let l = self.levels as f64;
        Ok(y.affine(l, 0.0)?
            .floor()?
            .clamp(0.0, l - 1.0)?
            .affine(1.0 / (l - 1.0), 0.0)?)
    }
}

/// Bits per dimension of a negative log-likelihood `nll` (nats per example, in the units
/// of the data it was computed on) over `d` dimensions.
pub fn bits_per_dim(nll: f64, d: usize) -> f64 {
    nll / (d as f64 * std::f64::consts::LN_2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_uniform_density_costs_exactly_eight_bits_per_dim() {
        let q = Dequantizer::new(256).unwrap();
        let d = 784;
        // log p(y) = 0 for the uniform density on the cube.
        let nll = -(0.0 + q.log_jacobian(d));
        assert!((bits_per_dim(nll, d) - 8.0).abs() < 1e-12);
    }

    /// Monte Carlo over 20000 draws of u for a 1-D density.
    const MC_TOL: f64 = 0.01;

    #[test]
    fn the_dequantised_log_likelihood_bounds_the_discrete_one() {
        // p(y) = 2y on [0, 1], L = 4: P(k) = int_{k/4}^{(k+1)/4} 2y dy = (2k + 1) / 16.
        let q = Dequantizer::new(4).unwrap();
        let mut rng = Rng::new(1);
        for k in 0..4u32 {
            let x = Tensor::full(k as f32 / 3.0, 20000, &Device::Cpu).unwrap();
            let y: Vec<f32> = q.dequantize(&x, &mut rng).unwrap().to_vec1().unwrap();
            assert!(y
                .iter()
                .all(|&v| v >= k as f32 / 4.0 && v < (k + 1) as f32 / 4.0));
            let bound: f64 = y.iter().map(|&v| (2.0 * v as f64).ln()).sum::<f64>() / y.len() as f64
                + q.log_jacobian(1);
            let exact = ((2 * k + 1) as f64 / 16.0).ln();
            assert!(bound <= exact + MC_TOL, "k {k}: {bound} > {exact}");
            // The gap is the KL from uniform noise to the in-bin posterior: small when
            // p is nearly flat inside the bin (k >= 1).
            if k >= 1 {
                assert!(exact - bound < 0.1, "k {k}: {bound} vs {exact}");
            }
            let back: Vec<f32> = q
                .quantize(&Tensor::new(y.as_slice(), &Device::Cpu).unwrap())
                .unwrap()
                .to_vec1()
                .unwrap();
            assert!(back.iter().all(|&v| (v - k as f32 / 3.0).abs() < 1e-6));
        }
    }

    #[test]
    fn data_outside_the_unit_interval_is_an_invalid_input() {
        let q = Dequantizer::new(256).unwrap();
        let x = Tensor::new(&[0.5f32, 1.2], &Device::Cpu).unwrap();
        let e = q.dequantize(&x, &mut Rng::new(0)).unwrap_err();
        assert!(
            matches!(e, Error::InvalidInput(_)) && e.to_string().contains("[0, 1]"),
            "{e}"
        );
        let x = Tensor::new(&[f32::NAN, 0.1], &Device::Cpu).unwrap();
        assert!(q.dequantize(&x, &mut Rng::new(0)).is_err());
        assert!(Dequantizer::new(1).is_err());
    }
}
