//! NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020,
//! arXiv:2002.05709, eq. 1; Sohn 2016's N-pair loss with a temperature): for `N` pairs of
//! projections `(z_i, z_{i+N})`, with `s_ij = cos(z_i, z_j) / tau`,
//!
//! ```text
//! l(i, j) = -log( exp(s_ij) / sum_{k != i} exp(s_ik) ),  L = (1/2N) sum_i l(i, pair(i))
//! ```
//!
//! Built from differentiable candle ops (genlab-nn's log-softmax), so it trains.

use candle_core::{DType, Tensor};
use genlab_core::Result;
use genlab_nn::classifier::log_softmax;
use genlab_nn::norm::l2_normalize;

/// Large negative logit that removes `k == i` from the softmax.
const SELF_MASK: f64 = 1e9;

/// NT-Xent of two views' projections `z1`, `z2` `[N, d]` at temperature `tau`.
pub fn nt_xent(z1: &Tensor, z2: &Tensor, tau: f64) -> Result<Tensor> {
    let n = z1.dim(0)?;
    let z = Tensor::cat(&[z1, z2], 0)?; // [2N, d]
    let z = l2_normalize(&z)?;
    let sim = (z.matmul(&z.t()?)? / tau)?; // [2N, 2N]
    let eye = Tensor::eye(2 * n, DType::F32, z.device())?;
    let sim = (sim - (eye * SELF_MASK)?)?;
    let pair: Vec<u32> = (0..2 * n).map(|i| ((i + n) % (2 * n)) as u32).collect();
    let pair = Tensor::from_vec(pair, (2 * n, 1), z.device())?;
    Ok(log_softmax(&sim)?.gather(&pair, 1)?.mean_all()?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use genlab_core::Rng;

    /// f32 arithmetic against the f64 brute force.
    const TOL: f64 = 1e-4;

    fn brute(z: &[Vec<f64>], tau: f64) -> f64 {
        let m = z.len();
        let n = m / 2;
        let cos = |a: &[f64], b: &[f64]| {
            let d: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            d / (a.iter().map(|x| x * x).sum::<f64>().sqrt()
                * b.iter().map(|x| x * x).sum::<f64>().sqrt())
        };
        let mut total = 0.0;
        for i in 0..m {
            let j = (i + n) % m;
            let den: f64 = (0..m)
                .filter(|&k| k != i)
                .map(|k| (cos(&z[i], &z[k]) / tau).exp())
                .sum();
            total += -((cos(&z[i], &z[j]) / tau).exp() / den).ln();
        }
        total / m as f64
    }

    #[test]
    fn matches_a_brute_force_sum_and_passes_a_gradient() {
        let mut rng = Rng::new(7);
        for (n, d, tau) in [(2, 3, 0.5), (5, 4, 0.1), (8, 16, 1.0)] {
            let v: Vec<f32> = rng.normal_vec(2 * n * d);
            let z1 = Var::from_vec(v[..n * d].to_vec(), (n, d), &Device::Cpu).unwrap();
            let z2 = Tensor::from_vec(v[n * d..].to_vec(), (n, d), &Device::Cpu).unwrap();
            let got = nt_xent(z1.as_tensor(), &z2, tau).unwrap();
            let rows: Vec<Vec<f64>> = v
                .chunks(d)
                .map(|r| r.iter().map(|&x| x as f64).collect())
                .collect();
            let want = brute(&rows, tau);
            let g = got.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (g - want).abs() < TOL * want.abs().max(1.0),
                "n={n}: {g} vs {want}"
            );
            let grads = got.backward().unwrap();
            assert!(grads.get(z1.as_tensor()).is_some());
        }
    }
}
