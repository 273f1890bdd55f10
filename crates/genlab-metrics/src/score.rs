//! Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs") and
//! Mode Score (Che et al. 2017, "Mode Regularized Generative Adversarial Networks").
//!
//! IS = exp(E_x KL(p(y|x) || p(y))), with p(y) the generated label marginal, computed per
//! split of consecutive rows (as the original code does) and reported as mean and
//! population standard deviation over splits.
//!
//! Mode Score = exp(E_x KL(p(y|x) || p(y)) - KL(p(y) || p*(y))), with p*(y) the label marginal
//! of the real data: the IS penalised when the generated classes are not distributed like
//! the real ones. (Writing the first term against p*(y) instead, as some texts do, cancels
//! algebraically to exactly log IS; that form would make the score meaningless.)
//!
//! 0 log 0 is taken as 0, so one-hot predictions are exact rather than NaN.

use crate::suite::{Computed, Inputs};
use crate::FeatureMatrix;
use genlab_core::{Error, Result};
use serde::Serialize;

/// How far a probability row may sum from 1 (f32 softmax outputs are within ~1e-6).
pub const PROB_SUM_TOLERANCE: f64 = 1e-4;

/// Checks that every row is a probability vector; `what` names the matrix in the error.
pub fn check_probs(p: &FeatureMatrix, what: &str) -> Result<()> {
    for i in 0..p.rows() {
        let row = p.row(i);
        if let Some(j) = row.iter().position(|&v| v < 0.0) {
            return Err(Error::InvalidInput(format!(
                "{what}: row {i} has a negative probability ({}) in column {j}",
                row[j]
            )));
        }
        let s: f64 = row.iter().sum();
        if (s - 1.0).abs() > PROB_SUM_TOLERANCE {
            return Err(Error::InvalidInput(format!(
                "{what}: row {i} sums to {s}, expected 1 (within {PROB_SUM_TOLERANCE}); \
                 pass softmax probabilities, not logits or features"
            )));
        }
    }
    Ok(())
}

fn xlogy_ratio(p: f64, q: f64) -> f64 {
    if p == 0.0 {
        0.0
    } else {
        p * (p.ln() - q.ln())
    }
}

fn marginal(p: &FeatureMatrix, rows: std::ops::Range<usize>) -> Vec<f64> {
    let mut m = vec![0.0; p.cols()];
    let n = rows.len() as f64;
    for i in rows {
        for (a, v) in m.iter_mut().zip(p.row(i)) {
            *a += v;
        }
    }
    m.iter_mut().for_each(|a| *a /= n);
    m
}

/// Mean over rows of KL(p(y|x) || q).
fn mean_kl(p: &FeatureMatrix, rows: std::ops::Range<usize>, q: &[f64]) -> f64 {
    let n = rows.len() as f64;
    rows.map(|i| {
        p.row(i)
            .iter()
            .zip(q)
            .map(|(&a, &b)| xlogy_ratio(a, b))
            .sum::<f64>()
    })
    .sum::<f64>()
        / n
}

fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(&a, &b)| xlogy_ratio(a, b)).sum()
}

/// A score's mean and population standard deviation over splits.
#[derive(Debug, Clone, Serialize)]
pub struct SplitScore {
    pub mean: f64,
    pub std: f64,
    pub splits: usize,
    pub n: usize,
}

fn split_ranges(n: usize, splits: usize) -> Result<Vec<std::ops::Range<usize>>> {
    if splits == 0 || splits > n {
        return Err(Error::InvalidInput(format!(
            "{splits} splits of {n} samples: need 1 <= splits <= number of samples"
        )));
    }
    Ok((0..splits)
        .map(|k| k * n / splits..(k + 1) * n / splits)
        .collect())
}

fn summarize(v: Vec<f64>, n: usize) -> SplitScore {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    SplitScore {
        mean,
        std,
        splits: v.len(),
        n,
    }
}

/// Inception Score of generated class probabilities (N x K, rows sum to 1).
pub fn inception_score(probs: &FeatureMatrix, splits: usize) -> Result<SplitScore> {
    check_probs(probs, "generated probabilities")?;
    let v = split_ranges(probs.rows(), splits)?
        .into_iter()
        .map(|r| {
            let py = marginal(probs, r.clone());
            mean_kl(probs, r, &py).exp()
        })
        .collect();
    Ok(summarize(v, probs.rows()))
}

/// Mode Score of generated probabilities against the real label marginal.
pub fn mode_score(
    fake_probs: &FeatureMatrix,
    real_probs: &FeatureMatrix,
    splits: usize,
) -> Result<SplitScore> {
    check_probs(fake_probs, "generated probabilities")?;
    check_probs(real_probs, "real probabilities")?;
    if fake_probs.cols() != real_probs.cols() {
        return Err(Error::InvalidInput(format!(
            "generated probabilities have {} classes, real ones {}",
            fake_probs.cols(),
            real_probs.cols()
        )));
    }
    let p_star = marginal(real_probs, 0..real_probs.rows());
    let v = split_ranges(fake_probs.rows(), splits)?
        .into_iter()
        .map(|r| {
            let py = marginal(fake_probs, r.clone());
            (mean_kl(fake_probs, r, &py) - kl(&py, &p_star)).exp()
        })
        .collect();
    Ok(summarize(v, fake_probs.rows()))
}

/// Probability of the top class above which a sample counts as confidently classified.
pub const CONFIDENT_PROB: f64 = 0.9;

/// Share of rows whose most probable class is each class (argmax histogram, sums to 1):
/// with a strong classifier, how a generator's samples spread over the classes.
pub fn class_fractions(p: &FeatureMatrix) -> Vec<f64> {
    let mut counts = vec![0usize; p.cols()];
    for i in 0..p.rows() {
        let row = p.row(i);
        let best = (0..row.len()).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        counts[best] += 1;
    }
    counts
        .into_iter()
        .map(|c| c as f64 / p.rows().max(1) as f64)
        .collect()
}

/// Share of rows whose top class probability is at least [`CONFIDENT_PROB`]: with a
/// strong classifier, roughly the share of samples that look like some class at all.
pub fn confident_fraction(p: &FeatureMatrix) -> f64 {
    let k = (0..p.rows())
        .filter(|&i| p.row(i).iter().cloned().fold(0.0, f64::max) >= CONFIDENT_PROB)
        .count();
    k as f64 / p.rows().max(1) as f64
}

/// The rows of `p` dealt round-robin into `splits` consecutive blocks: row i goes to block
/// i mod `splits`. Class-conditional samples come ordered by class (`--class all`: n of
/// class 0, then of class 1, ...), and consecutive splits of them would each hold one or
/// two classes, so that each split's marginal equals its conditionals and the score
/// collapses towards 1; dealt, every split sees every class as an unordered sample would.
pub fn deal_rows(p: &FeatureMatrix, splits: usize) -> Result<FeatureMatrix> {
    let (n, d) = (p.rows(), p.cols());
    let splits = splits.max(1);
    let mut data = Vec::with_capacity(n * d);
    for k in 0..splits {
        for i in (k..n).step_by(splits) {
            data.extend_from_slice(p.row(i));
        }
    }
    FeatureMatrix::new(n, d, data, "class probabilities")
}

/// The generated probabilities as the split scores take them: dealt across the splits when
/// the samples carry their generation labels (ordered by class), as they are otherwise.
fn split_ready<'a>(
    x: &Inputs,
    p: &'a FeatureMatrix,
    splits: usize,
) -> Result<std::borrow::Cow<'a, FeatureMatrix>> {
    Ok(if x.fake.labels.is_some() {
        std::borrow::Cow::Owned(deal_rows(p, splits)?)
    } else {
        std::borrow::Cow::Borrowed(p)
    })
}

/// `genlab eval`'s Inception Score, with the share of confidently classified samples and
/// the spread over predicted classes in its detail.
pub fn compute_is(x: &Inputs) -> Result<Computed> {
    let p = x.fake_probs("is")?;
    let splits = x.opts.splits.min(p.rows());
    let r = inception_score(&*split_ready(x, p, splits)?, splits)?;
    let mut c = Computed::new(r.mean, Some(r.std), &r);
    c.detail["confident_fraction"] = confident_fraction(p).into();
    c.detail["class_fractions"] = class_fractions(p).into();
    c.detail["rows_dealt_across_splits"] = x.fake.labels.is_some().into();
    Ok(c)
}

/// `genlab eval`'s Mode Score.
pub fn compute_mode(x: &Inputs) -> Result<Computed> {
    let (p, q) = (x.fake_probs("mode")?, x.real_probs("mode")?);
    let splits = x.opts.splits.min(p.rows());
    let r = mode_score(&*split_ready(x, p, splits)?, q, splits)?;
    let mut c = Computed::new(r.mean, Some(r.std), &r);
    c.detail["rows_dealt_across_splits"] = x.fake.labels.is_some().into();
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(n: usize, k: usize, class: impl Fn(usize) -> usize) -> FeatureMatrix {
        let mut d = vec![0.0; n * k];
        for i in 0..n {
            d[i * k + class(i)] = 1.0;
        }
        FeatureMatrix::new(n, k, d, "p").unwrap()
    }

    #[test]
    fn samples_ordered_by_class_are_dealt_across_the_splits() {
        // 10 confident samples of each of 10 classes, in class order: consecutive splits
        // each hold one class (IS 1, closed form exp(0)); dealt, each split holds one of
        // every class (IS = K = 10, closed form exp(ln K)).
        let p = one_hot(100, 10, |i| i / 10);
        let plain = inception_score(&p, 10).unwrap();
        assert!((plain.mean - 1.0).abs() < 1e-9, "{}", plain.mean);
        let dealt = deal_rows(&p, 10).unwrap();
        assert_eq!(dealt.rows(), 100);
        // Block 0 is rows 0, 10, 20, ...: classes 0..9.
        for j in 0..10 {
            assert_eq!(dealt.row(j), p.row(10 * j));
        }
        let r = inception_score(&dealt, 10).unwrap();
        assert!((r.mean - 10.0).abs() < 1e-9 && r.std < 1e-9, "{r:?}");
        // Uneven: 7 rows in 3 splits keep every row once.
        let q = one_hot(7, 3, |i| i % 3);
        let d = deal_rows(&q, 3).unwrap();
        let mut seen: Vec<Vec<f64>> = (0..7).map(|i| d.row(i).to_vec()).collect();
        let mut want: Vec<Vec<f64>> = (0..7).map(|i| q.row(i).to_vec()).collect();
        seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
        want.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(seen, want);
    }

    #[test]
    fn uniform_one_hot_predictions_score_the_number_of_classes() {
        let p = one_hot(100, 10, |i| i % 10);
        let s = inception_score(&p, 1).unwrap();
        assert!((s.mean - 10.0).abs() < 1e-12, "{s:?}");
        let s = inception_score(&p, 10).unwrap();
        assert!((s.mean - 10.0).abs() < 1e-12 && s.std < 1e-12, "{s:?}");
    }

    #[test]
    fn collapsed_or_uncertain_predictions_score_one() {
        assert!((inception_score(&one_hot(20, 5, |_| 3), 1).unwrap().mean - 1.0).abs() < 1e-12);
        let flat = FeatureMatrix::new(4, 4, vec![0.25; 16], "p").unwrap();
        assert!((inception_score(&flat, 2).unwrap().mean - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mode_score_equals_is_when_marginals_agree_and_is_penalised_otherwise() {
        let fake = one_hot(60, 3, |i| i % 3);
        let real = one_hot(30, 3, |i| (i + 1) % 3);
        let is = inception_score(&fake, 1).unwrap().mean;
        let ms = mode_score(&fake, &real, 1).unwrap().mean;
        assert!((ms - is).abs() < 1e-12);
        // Real data all class 0 but generated uniform: KL(p || p*) is infinite -> score 0.
        let skew_real = FeatureMatrix::new(2, 3, vec![0.8, 0.1, 0.1, 0.8, 0.1, 0.1], "r").unwrap();
        let ms = mode_score(&fake, &skew_real, 1).unwrap().mean;
        let expect = 3.0
            * (-(3f64.recip() * ((1.0 / 3.0) / 0.8f64).ln()
                + 2.0 * 3f64.recip() * ((1.0 / 3.0) / 0.1f64).ln()))
            .exp();
        assert!((ms - expect).abs() < 1e-12, "{ms} vs {expect}");
    }

    #[test]
    fn rejects_rows_that_are_not_probabilities() {
        let bad = FeatureMatrix::new(2, 2, vec![0.5, 0.5, 0.7, 0.7], "p").unwrap();
        let err = inception_score(&bad, 1).unwrap_err().to_string();
        assert!(err.contains("row 1 sums to 1.4"), "{err}");
        let neg = FeatureMatrix::new(1, 2, vec![1.5, -0.5], "p").unwrap();
        assert!(inception_score(&neg, 1).is_err());
        assert!(inception_score(&one_hot(3, 2, |_| 0), 4).is_err());
    }
}
