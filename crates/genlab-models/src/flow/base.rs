//! The base density of every flow: the standard normal N(0, I).
//!
//! Dinh, Sohl-Dickstein & Bengio 2016, "Density estimation using Real NVP",
//! arXiv:1605.08803, Sec. 3.1 (an isotropic unit-norm Gaussian prior p_Z):
//!
//! ```text
//! log N(z; 0, I) = -1/2 (|z|^2 + D log(2 pi))        per example, D = dim z
//! ```

use candle_core::Tensor;

use genlab_core::Result;

use super::sum_per_example;

/// `log(2 pi)`.
pub const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// log N(z; 0, I) per example: `z [B, ...]` -> `[B]` (sum over all non-batch dimensions).
pub fn standard_normal_log_prob(z: &Tensor) -> Result<Tensor> {
    let d: usize = z.dims()[1..].iter().product();
    Ok((sum_per_example(&z.sqr()?)? + d as f64 * LN_2PI)?.affine(-0.5, 0.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// f64 arithmetic on a handful of terms.
    const TOL: f64 = 1e-12;

    #[test]
    fn log_density_equals_the_product_of_one_dimensional_pdfs() {
        let v = [0.3f64, -1.7, 2.5, 0.0, -0.01, 4.0];
        let z = Tensor::new(&v, &Device::Cpu)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        let got: Vec<f64> = standard_normal_log_prob(&z).unwrap().to_vec1().unwrap();
        for b in 0..2 {
            // prod_j exp(-z_j^2 / 2) / sqrt(2 pi), its log taken at the end.
            let p: f64 = v[3 * b..3 * b + 3]
                .iter()
                .map(|x| (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt())
                .product();
            assert!((got[b] - p.ln()).abs() < TOL, "{} vs {}", got[b], p.ln());
        }
        // Image-shaped z: the same sum over C, H, W.
        let z4 = z
            .reshape((2, 1, 3, 1))
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let got4: Vec<f64> = standard_normal_log_prob(&z4).unwrap().to_vec1().unwrap();
        assert!((got4[0] - got[0]).abs() < TOL && (got4[1] - got[1]).abs() < TOL);
    }
}
