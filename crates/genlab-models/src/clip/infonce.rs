//! CLIP's symmetric contrastive loss (Radford et al. 2021, arXiv:2103.00020, Fig. 3; the
//! InfoNCE objective of van den Oord et al. 2018, arXiv:1807.03748, Eq. 4):
//!
//! ```text
//! logits = exp(t) · norm(I) norm(T)^T              [B, B]
//! loss   = ( CE(logits, arange B) + CE(logits^T, arange B) ) / 2
//! ```
//!
//! row `i` of `logits` scores image `i` against every text (image -> text), column `i` text
//! `i` against every image (text -> image); the matching pair is the diagonal.

use candle_core::{DType, Tensor};

use genlab_core::{Error, Result};

/// Each row divided by its Euclidean norm (genlab-nn's one copy).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    Ok(genlab_nn::norm::l2_normalize(x)?)
}

/// Mean cross-entropy of each row of `logits [B, B]` against its diagonal entry.
fn diagonal_ce(logits: &Tensor) -> Result<Tensor> {
    let b = logits.dim(0)?;
    let lp = genlab_nn::classifier::log_softmax(logits)?;
    let idx = Tensor::arange(0u32, b as u32, logits.device())?.unsqueeze(1)?;
    Ok(lp.gather(&idx, 1)?.mean_all()?.neg()?)
}

/// The symmetric loss of a square logit matrix `[B, B]`.
pub fn clip_loss(logits: &Tensor) -> Result<Tensor> {
    let (r, c) = logits.dims2()?;
    if r != c || r == 0 {
        return Err(Error::InvalidInput(format!(
            "the contrastive loss needs a square, non-empty logit matrix, got {r}x{c}"
        )));
    }
    let logits = logits.to_dtype(DType::F32)?;
    let i2t = diagonal_ce(&logits)?;
    let t2i = diagonal_ce(&logits.t()?.contiguous()?)?;
    Ok(((i2t + t2i)? * 0.5)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// f32 log-sum-exp over a handful of terms against f64.
    const TOL: f64 = 1e-5;

    #[allow(clippy::needless_range_loop)] // index-for-index with the formula
    fn brute(l: &[Vec<f64>]) -> f64 {
        let b = l.len();
        let ce = |row: &dyn Fn(usize) -> f64, i: usize| {
            let m = (0..b).map(row).fold(f64::MIN, f64::max);
            let lse = m + (0..b).map(|j| (row(j) - m).exp()).sum::<f64>().ln();
            lse - row(i)
        };
        let mut s = 0.0;
        for i in 0..b {
            s += ce(&|j| l[i][j], i);
            s += ce(&|j| l[j][i], i);
        }
        s / (2.0 * b as f64)
    }

    #[test]
    fn loss_matches_brute_force_and_its_gradient_is_finite_differences() {
        let mut rng = genlab_core::Rng::new(4);
        let b = 5;
        let v: Vec<f32> = (0..b * b).map(|_| 3.0 * rng.normal() as f32).collect();
        let t = Tensor::from_vec(v.clone(), (b, b), &Device::Cpu).unwrap();
        let rows: Vec<Vec<f64>> = (0..b)
            .map(|i| (0..b).map(|j| v[i * b + j] as f64).collect())
            .collect();
        let got = clip_loss(&t).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!(
            (got - brute(&rows)).abs() < TOL,
            "{got} vs {}",
            brute(&rows)
        );
        let var = Var::from_tensor(&t).unwrap();
        let g = clip_loss(var.as_tensor()).unwrap().backward().unwrap();
        let g = g.get(var.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let h = 1e-4;
        for (i, j) in [(0, 0), (1, 3), (4, 2)] {
            let mut p = rows.clone();
            p[i][j] += h;
            let mut m = rows.clone();
            m[i][j] -= h;
            let fd = (brute(&p) - brute(&m)) / (2.0 * h);
            assert!((fd - g[i][j] as f64).abs() < 1e-4, "{fd} vs {}", g[i][j]);
        }
    }

    #[test]
    fn perfect_alignment_at_high_scale_gives_near_zero_loss() {
        let eye = Tensor::eye(4, DType::F32, &Device::Cpu).unwrap();
        let l = clip_loss(&(eye * 100.0).unwrap())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(l < 1e-6);
        let x = Tensor::new(&[[3f32, 4.0], [0.0, 0.0]], &Device::Cpu).unwrap();
        let n = l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(n[0], vec![0.6, 0.8]);
        assert_eq!(n[1], vec![0.0, 0.0]);
        assert!(clip_loss(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()).is_err());
    }
}
