//! Sinusoidal timestep embedding.
//!
//! The positional encoding of Vaswani et al. 2017, "Attention Is All You Need"
//! (arXiv:1706.03762), applied to diffusion timesteps as in Ho et al. 2020, "Denoising
//! Diffusion Probabilistic Models" (arXiv:2006.11239). For `half = dim / 2` and
//! `i in 0..half` the frequencies are `f_i = exp(-ln(max_period) * i / half)`, and
//!
//! ```text
//! emb[b, i]        = cos(t[b] * f_i)
//! emb[b, half + i] = sin(t[b] * f_i)
//! ```
//!
//! (cos first, then sin: the order of the widely used "improved diffusion" code). Timesteps
//! may be fractional. The arguments and the trigonometry are computed in f64 (`t * f_i`
//! reaches ~1000 rad, where f32 rounding alone costs ~1e-4) and the result is f32.

use candle_core::{DType, Tensor};

/// The usual `max_period` (Vaswani et al. 2017 use 10000): the slowest frequency has a
/// period of `2π·10000` timesteps, far longer than any diffusion schedule.
pub const DEFAULT_MAX_PERIOD: f64 = 10_000.0;

/// Sinusoidal embedding of timesteps: `t` `[B]` (any float dtype, fractional values allowed)
/// -> `[B, dim]` f32, first half cos, second half sin (see the module docs).
///
/// Errors when `dim` is zero or odd, when `max_period` is not a finite number above 1, or
/// when `t` is not rank 1.
pub fn timestep_embedding(t: &Tensor, dim: usize, max_period: f64) -> candle_core::Result<Tensor> {
    if dim == 0 || dim % 2 != 0 {
        candle_core::bail!("timestep_embedding: dim must be a positive even number, got {dim}");
    }
    if !(max_period.is_finite() && max_period > 1.0) {
        candle_core::bail!(
            "timestep_embedding: max_period must be a finite number above 1, got {max_period}"
        );
    }
    if t.rank() != 1 {
        candle_core::bail!(
            "timestep_embedding: t must have shape [B], got {:?}",
            t.dims()
        );
    }
    let half = dim / 2;
    let freqs: Vec<f64> = (0..half)
        .map(|i| (-(max_period.ln()) * i as f64 / half as f64).exp())
        .collect();
    // [half] -> [1, half]
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    // [B] -> [B, 1]
    let t = t.to_dtype(DType::F64)?.unsqueeze(1)?;
    // [B, 1] * [1, half] -> [B, half]
    let args = t.broadcast_mul(&freqs)?;
    // [B, half] ++ [B, half] -> [B, dim]
    Tensor::cat(&[args.cos()?, args.sin()?], 1)?.to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// f32 rounding of values in [-1, 1] computed in f64 (the output is stored as f32).
    const EMB_TOL: f64 = 1e-6;

    #[test]
    fn matches_closed_form() {
        let ts = [0.0f32, 1.0, 2.5, 999.0];
        let (dim, max_period) = (6usize, 100.0f64);
        let t = Tensor::new(&ts, &Device::Cpu).unwrap();
        let emb: Vec<Vec<f32>> = timestep_embedding(&t, dim, max_period)
            .unwrap()
            .to_vec2()
            .unwrap();
        // half = 3: frequencies 100^0, 100^(-1/3), 100^(-2/3).
        let f = [1.0, 100f64.powf(-1.0 / 3.0), 100f64.powf(-2.0 / 3.0)];
        for (b, &tb) in ts.iter().enumerate() {
            assert_eq!(emb[b].len(), dim);
            for i in 0..3 {
                let a = tb as f64 * f[i];
                let (c, s) = (emb[b][i] as f64, emb[b][3 + i] as f64);
                assert!(
                    (c - a.cos()).abs() < EMB_TOL,
                    "cos t={tb} i={i}: {c} vs {}",
                    a.cos()
                );
                assert!(
                    (s - a.sin()).abs() < EMB_TOL,
                    "sin t={tb} i={i}: {s} vs {}",
                    a.sin()
                );
            }
        }
        // t = 0: cos half all ones, sin half all zeros.
        assert_eq!(emb[0], vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn rejects_odd_dim_and_bad_shapes() {
        let t = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let err = timestep_embedding(&t, 5, DEFAULT_MAX_PERIOD).unwrap_err();
        assert!(err.to_string().contains("even"), "{err}");
        assert!(timestep_embedding(&t, 0, DEFAULT_MAX_PERIOD).is_err());
        assert!(timestep_embedding(&t, 4, 1.0).is_err());
        let t2 = Tensor::new(&[[1.0f32]], &Device::Cpu).unwrap();
        let err = timestep_embedding(&t2, 4, DEFAULT_MAX_PERIOD).unwrap_err();
        assert!(err.to_string().contains("[B]"), "{err}");
    }
}
