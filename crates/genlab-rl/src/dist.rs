//! Action distributions of the policy-gradient agents, with the gradients of their
//! log-probabilities and entropies written out.
//!
//! Categorical over logits z: log p_a = z_a - logsumexp(z); d log p_a / d z = onehot(a) - p;
//! entropy H = -sum p log p, dH/dz_j = -p_j (log p_j + H). Diagonal Gaussian with a
//! state-independent log standard deviation (as SB3's PPO/A2C): log N(a; mu, sigma) =
//! -sum((a - mu)^2 / (2 sigma^2) + log sigma + log sqrt(2 pi)).

use genlab_core::Rng;

/// Softmax probabilities of `logits` into `p`; returns logsumexp.
pub fn softmax(logits: &[f32], p: &mut [f32]) -> f32 {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = 0.0f32;
    for (q, &z) in p.iter_mut().zip(logits) {
        *q = (z - m).exp();
        s += *q;
    }
    for q in p.iter_mut() {
        *q /= s;
    }
    m + s.ln()
}

/// Draws an index from probabilities `p`.
pub fn sample_categorical(p: &[f32], rng: &mut Rng) -> usize {
    let u = rng.uniform() as f32;
    let mut acc = 0.0;
    for (i, &q) in p.iter().enumerate() {
        acc += q;
        if u < acc {
            return i;
        }
    }
    p.len() - 1
}

pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// -sum p log p from probabilities and log-sum-exp of the logits.
pub fn entropy(logits: &[f32], p: &[f32], lse: f32) -> f32 {
    -p.iter()
        .zip(logits)
        .map(|(q, z)| q * (z - lse))
        .sum::<f32>()
}

pub const LOG_SQRT_2PI: f32 = 0.918_938_5;

/// log N(a; mu, exp(log_std)) summed over dimensions.
pub fn gaussian_log_prob(a: &[f32], mu: &[f32], log_std: &[f32]) -> f32 {
    a.iter()
        .zip(mu)
        .zip(log_std)
        .map(|((a, m), ls)| {
            let z = (a - m) / ls.exp();
            -0.5 * z * z - ls - LOG_SQRT_2PI
        })
        .sum()
}

/// Entropy of a diagonal Gaussian: sum(log_std + 0.5 + log sqrt(2 pi)).
pub fn gaussian_entropy(log_std: &[f32]) -> f32 {
    log_std.iter().map(|ls| ls + 0.5 + LOG_SQRT_2PI).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_entropy_of_uniform_logits_is_log_n() {
        let z = [0.3f32; 4];
        let mut p = [0f32; 4];
        let lse = softmax(&z, &mut p);
        assert!(p.iter().all(|q| (q - 0.25).abs() < 1e-6));
        assert!((entropy(&z, &p, lse) - 4f32.ln()).abs() < 1e-6);
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
    }

    #[test]
    fn standard_normal_log_density_at_zero() {
        let lp = gaussian_log_prob(&[0.0], &[0.0], &[0.0]);
        assert!((lp + LOG_SQRT_2PI).abs() < 1e-6);
        assert!((gaussian_entropy(&[0.0]) - (0.5 + LOG_SQRT_2PI)).abs() < 1e-6);
    }

    #[test]
    fn categorical_sampling_follows_the_probabilities() {
        let mut rng = Rng::new(9);
        let p = [0.1f32, 0.6, 0.3];
        let mut c = [0usize; 3];
        for _ in 0..30_000 {
            c[sample_categorical(&p, &mut rng)] += 1;
        }
        for (k, q) in c.iter().zip(p) {
            assert!((*k as f32 / 30_000.0 - q).abs() < 0.02, "{c:?}");
        }
    }
}
