//! Class accuracy of class-conditional samples: the share that a classifier assigns to the
//! class each sample was generated as (Ho & Salimans 2022 and Dhariwal & Nichol 2021 report
//! it beside FID and IS for guided models). The classifier's probabilities come from a
//! feature extractor with a class head; the labels from the sampler.

use crate::suite::{Computed, Inputs};
use crate::FeatureMatrix;
use genlab_core::{Error, Result};
use serde::Serialize;

/// Accuracy and its parts.
#[derive(Debug, Clone, Serialize)]
pub struct ClassAccuracy {
    pub accuracy: f64,
    /// Per requested class: (class, samples, share assigned to it).
    pub per_class: Vec<(u32, usize, f64)>,
}

/// The share of rows of `probs` whose most probable class is `labels[i]`, overall and per
/// requested class.
pub fn class_accuracy(probs: &FeatureMatrix, labels: &[u32]) -> Result<ClassAccuracy> {
    if probs.rows() != labels.len() {
        return Err(Error::InvalidInput(format!(
            "{} samples but {} labels",
            probs.rows(),
            labels.len()
        )));
    }
    if let Some(bad) = labels.iter().find(|&&l| l as usize >= probs.cols()) {
        return Err(Error::InvalidInput(format!(
            "label {bad} is outside the classifier's {} classes",
            probs.cols()
        )));
    }
    let mut classes: Vec<u32> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let argmax = |i: usize| {
        let row = probs.row(i);
        (0..row.len()).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as u32
    };
    let hits: Vec<bool> = (0..labels.len()).map(|i| argmax(i) == labels[i]).collect();
    let per_class = classes
        .iter()
        .map(|&k| {
            let mine: Vec<bool> = labels
                .iter()
                .zip(&hits)
                .filter(|(&l, _)| l == k)
                .map(|(_, &h)| h)
                .collect();
            let share = mine.iter().filter(|&&h| h).count() as f64 / mine.len() as f64;
            (k, mine.len(), share)
        })
        .collect();
    Ok(ClassAccuracy {
        accuracy: hits.iter().filter(|&&h| h).count() as f64 / labels.len().max(1) as f64,
        per_class,
    })
}

/// `genlab eval`'s class accuracy.
pub fn compute(x: &Inputs) -> Result<Computed> {
    let p = x.fake_probs("class-acc")?;
    let labels = x.fake.labels.as_ref().ok_or_else(|| {
        Error::InvalidInput(
            "class-acc needs the class each sample was generated as (the .labels.npy that \
             class-conditional sampling writes beside its samples)"
                .into(),
        )
    })?;
    let r = class_accuracy(p, labels)?;
    Ok(Computed::new(r.accuracy, None, &r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_argmax_hits_per_requested_class() {
        // Rows: class 0 right, class 0 wrong, class 1 right, class 1 right.
        let p = FeatureMatrix::new(4, 2, vec![0.9, 0.1, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6], "probs")
            .unwrap();
        let r = class_accuracy(&p, &[0, 0, 1, 1]).unwrap();
        assert_eq!(r.accuracy, 0.75);
        assert_eq!(r.per_class, vec![(0, 2, 0.5), (1, 2, 1.0)]);
        assert!(class_accuracy(&p, &[0, 1]).is_err());
        assert!(class_accuracy(&p, &[0, 0, 2, 1]).is_err());
    }
}
