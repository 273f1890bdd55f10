//! Pooling and dropout that pass correct gradients and draw their randomness from
//! `genlab_core::Rng`.
//!
//! - [`max_pool2`]: 2x2 max-pooling with stride 2 as a reshape and two max reductions
//!   (candle 0.11.1's `max_pool2d` backward scales by the tie count the wrong way); odd
//!   sides are cropped first, as PyTorch's floor mode does. Moved here from genlab-fewshot's
//!   conv-4 embedding so that every network shares one copy.
//! - [`dropout`]: inverted dropout (Srivastava et al. 2014, JMLR 15(56); "inverted": kept
//!   units are scaled by `1 / (1 - p)` at training time so that inference is the identity),
//!   with its Bernoulli mask drawn from a seeded [`genlab_core::Rng`] so runs repeat
//!   exactly. Monte Carlo dropout (Gal & Ghahramani 2016, arXiv:1506.02142) is the same call
//!   at test time.

use candle_core::{Tensor, D};
use genlab_core::Rng;

/// 2x2 max-pooling with stride 2 of `[B, C, H, W]` (odd sides cropped).
pub fn max_pool2(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let x = x.narrow(2, 0, 2 * h2)?.narrow(3, 0, 2 * w2)?;
    // [B, C, 2*h2, 2*w2] -> [B, C, h2, 2, w2, 2] -> max over the two 2s.
    x.reshape((b, c, h2, 2, w2, 2))?.max(D::Minus1)?.max(3)
}

/// Inverted dropout of rate `p` in `[0, 1)`: each element is zeroed with probability `p`
/// (mask from `rng`, one uniform draw per element in row-major order) and the kept ones are
/// scaled by `1 / (1 - p)`. `p == 0` returns `x` unchanged and draws nothing.
pub fn dropout(x: &Tensor, p: f64, rng: &mut Rng) -> candle_core::Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        candle_core::bail!("dropout rate must be in [0, 1), got {p}");
    }
    if p == 0.0 {
        return Ok(x.clone());
    }
    let scale = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.uniform() < p { 0.0 } else { scale })
        .collect();
    let mask = Tensor::from_vec(mask, x.dims(), x.device())?.to_dtype(x.dtype())?;
    x.mul(&mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Statistical tolerance on the kept fraction of 100k dropout draws (about 5 standard
    /// errors of a Bernoulli(0.7) mean).
    const KEPT_FRACTION_TOL: f64 = 0.008;

    #[test]
    fn max_pool_matches_brute_force_and_routes_the_gradient_to_the_maxima() {
        let mut rng = Rng::new(1);
        let v: Vec<f32> = (0..2 * 5 * 5).map(|_| rng.uniform() as f32).collect();
        let x = Var::from_vec(v.clone(), (1, 2, 5, 5), &Device::Cpu).unwrap();
        let y = max_pool2(x.as_tensor()).unwrap();
        assert_eq!(y.dims(), &[1, 2, 2, 2]);
        let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut want_grad = vec![0f32; 50];
        for c in 0..2 {
            for i in 0..2 {
                for j in 0..2 {
                    let cells = [
                        (2 * i, 2 * j),
                        (2 * i, 2 * j + 1),
                        (2 * i + 1, 2 * j),
                        (2 * i + 1, 2 * j + 1),
                    ];
                    let (arg, m) = cells
                        .iter()
                        .map(|&(a, b)| (c * 25 + a * 5 + b, v[c * 25 + a * 5 + b]))
                        .fold((0, f32::MIN), |acc, p| if p.1 > acc.1 { p } else { acc });
                    assert_eq!(got[c * 4 + i * 2 + j], m);
                    want_grad[arg] = 1.0;
                }
            }
        }
        let g = y.sum_all().unwrap().backward().unwrap();
        let gx = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(gx, want_grad);
    }

    #[test]
    fn dropout_keeps_one_minus_p_scales_them_and_repeats_with_the_seed() {
        let n = 100_000;
        let x = Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap();
        let a = dropout(&x, 0.3, &mut Rng::new(5))
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = dropout(&x, 0.3, &mut Rng::new(5))
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b, "same seed, same mask");
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        assert!((kept - 0.7).abs() < KEPT_FRACTION_TOL, "kept {kept}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        // p = 0 is the identity and draws nothing.
        let mut r = Rng::new(9);
        let y = dropout(&x, 0.0, &mut r).unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![1.0; n]);
        assert_eq!(r.state(), Rng::new(9).state());
        assert!(dropout(&x, 1.0, &mut r).is_err());
    }
}
