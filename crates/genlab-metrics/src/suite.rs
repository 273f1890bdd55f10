//! Several metrics at once on one pair of sample sets: what `genlab eval` runs.
//!
//! The caller turns each side into a [`Side`] (features, class probabilities and/or cached
//! Gaussian statistics); [`evaluate`] checks that each requested metric has what it needs,
//! runs it, and returns every value with its spread, sample counts and warnings.

use crate::kernel::{Bandwidth, KidOptions};
use crate::stats::GaussianStats;
use crate::wasserstein::WassersteinOptions;
use crate::FeatureMatrix;
use genlab_core::{Error, Result};
use serde::Serialize;

/// What a metric needs from the two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Needs {
    /// Feature vectors on both sides.
    Features,
    /// Feature vectors or cached Gaussian statistics on both sides (FID).
    FeaturesOrStats,
    /// Class probabilities of the generated samples (Inception Score).
    FakeProbs,
    /// Class probabilities of both sides (Mode Score).
    BothProbs,
    /// Class probabilities and requested labels of the generated samples.
    FakeProbsAndLabels,
}

impl Needs {
    /// Whether the metric reads feature vectors (or their statistics), as opposed to class
    /// probabilities only.
    pub fn features(self) -> bool {
        matches!(self, Needs::Features | Needs::FeaturesOrStats)
    }
}

/// What a metric's computation returns; [`evaluate`] adds the metric's name.
#[derive(Debug, Clone)]
pub struct Computed {
    pub value: f64,
    /// Standard deviation over subsets/splits where the metric has one.
    pub std: Option<f64>,
    /// Everything else the metric reports (parts, kernel, method, sample counts).
    pub detail: serde_json::Value,
    /// Anything that limits how far the value can be trusted.
    pub warnings: Vec<String>,
}

impl Computed {
    /// A value with its spread and its result struct as the detail.
    pub fn new(value: f64, std: Option<f64>, detail: &impl Serialize) -> Self {
        Self {
            value,
            std,
            detail: serde_json::to_value(detail).expect("metric results are plain data"),
            warnings: Vec::new(),
        }
    }

    /// Adds a warning when `cond` holds.
    pub fn warn_if(mut self, cond: bool, warning: impl FnOnce() -> String) -> Self {
        if cond {
            self.warnings.push(warning());
        }
        self
    }
}

/// What a metric is computed from: the two sides and the suite's settings.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub real: &'a Side,
    pub fake: &'a Side,
    pub opts: &'a SuiteOptions,
}

impl<'a> Inputs<'a> {
    /// Both sides' feature vectors, or an error naming `metric` and the missing side.
    pub fn features(&self, metric: &str) -> Result<(&'a FeatureMatrix, &'a FeatureMatrix)> {
        Ok((
            need(&self.real.features, "real features", metric)?,
            need(&self.fake.features, "fake features", metric)?,
        ))
    }

    /// The generated samples' class probabilities.
    pub fn fake_probs(&self, metric: &str) -> Result<&'a FeatureMatrix> {
        need(
            &self.fake.probs,
            "class probabilities of the generated samples (from a feature extractor with a \
             classifier head, or given as a probability file)",
            metric,
        )
    }

    /// The real samples' class probabilities.
    pub fn real_probs(&self, metric: &str) -> Result<&'a FeatureMatrix> {
        need(
            &self.real.probs,
            "class probabilities of the real samples (given as a probability file, or real \
             images with a classifier extractor)",
            metric,
        )
    }
}

/// Computes one metric from its inputs.
pub type ComputeFn = fn(&Inputs) -> Result<Computed>;

/// One registered metric. Adding a metric: its file (the pure function and a [`ComputeFn`]
/// adapter beside it) and one entry in [`METRICS`].
pub struct MetricEntry {
    /// Command-line name.
    pub name: &'static str,
    pub description: &'static str,
    pub needs: Needs,
    pub compute: ComputeFn,
}

impl std::fmt::Debug for MetricEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for MetricEntry {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Every metric, in the order `all` computes them.
pub const METRICS: &[MetricEntry] = &[
    MetricEntry {
        name: "fid",
        description: "Frechet distance of Gaussian fits to the features (lower is better)",
        needs: Needs::FeaturesOrStats,
        compute: crate::fid::compute,
    },
    MetricEntry {
        name: "kid",
        description: "Kernel Inception Distance: unbiased cubic-kernel MMD^2 over subsets",
        needs: Needs::Features,
        compute: crate::kernel::compute_kid,
    },
    MetricEntry {
        name: "mmd",
        description: "unbiased MMD^2 with a Gaussian kernel, median-heuristic bandwidth",
        needs: Needs::Features,
        compute: crate::kernel::compute_mmd,
    },
    MetricEntry {
        name: "is",
        description: "Inception Score of the generated class probabilities (higher is better)",
        needs: Needs::FakeProbs,
        compute: crate::score::compute_is,
    },
    MetricEntry {
        name: "mode",
        description: "Mode Score: IS penalised by KL(generated || real label marginal)",
        needs: Needs::BothProbs,
        compute: crate::score::compute_mode,
    },
    MetricEntry {
        name: "wasserstein",
        description: "earth mover's distance between the feature sets",
        needs: Needs::Features,
        compute: crate::wasserstein::compute,
    },
    MetricEntry {
        name: "class-acc",
        description: "share of class-conditional samples the classifier assigns to the class \
                      they were generated as (needs their labels)",
        needs: Needs::FakeProbsAndLabels,
        compute: crate::class_accuracy::compute,
    },
    MetricEntry {
        name: "1nn",
        description: "leave-one-out 1-NN two-sample accuracy (0.5 = indistinguishable)",
        needs: Needs::Features,
        compute: crate::nn1::compute,
    },
];

/// The metric called `name`; an unknown name lists the known ones.
pub fn find_metric(name: &str) -> Result<&'static MetricEntry> {
    METRICS.iter().find(|m| m.name == name).ok_or_else(|| {
        let known = METRICS.iter().map(|m| m.name).chain(["all"]);
        Error::unknown("metric", name, known)
    })
}

/// Parses a comma-separated list (`fid,kid,1nn`; `all` for every metric), without
/// repeats.
pub fn parse_metrics(s: &str) -> Result<Vec<&'static MetricEntry>> {
    let mut out: Vec<&'static MetricEntry> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "all" {
            return Ok(METRICS.iter().collect());
        }
        let m = find_metric(part)?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidInput(
            "no metric named (expected a comma-separated list such as fid,kid)".into(),
        ));
    }
    Ok(out)
}

/// One side of the comparison.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub features: Option<FeatureMatrix>,
    pub probs: Option<FeatureMatrix>,
    /// Cached Gaussian statistics (used by FID when there are no features).
    pub stats: Option<GaussianStats>,
    /// The class each sample was generated as (class-conditional samples).
    pub labels: Option<Vec<u32>>,
}

impl Side {
    fn n(&self) -> usize {
        self.features
            .as_ref()
            .map(|f| f.rows())
            .or(self.probs.as_ref().map(|p| p.rows()))
            .or(self.stats.as_ref().map(|s| s.n))
            .unwrap_or(0)
    }
}

/// Settings of the individual metrics.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub kid: KidOptions,
    pub mmd_bandwidth: Bandwidth,
    /// Splits of the Inception and Mode Scores.
    pub splits: usize,
    pub wasserstein: WassersteinOptions,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        Self {
            kid: KidOptions::default(),
            mmd_bandwidth: Bandwidth::Median,
            splits: 10,
            wasserstein: WassersteinOptions::default(),
        }
    }
}

/// One computed metric.
#[derive(Debug, Clone, Serialize)]
pub struct MetricValue {
    pub metric: &'static str,
    pub value: f64,
    /// Standard deviation over subsets/splits where the metric has one.
    pub std: Option<f64>,
    /// Everything else the metric reports (parts, kernel, method, sample counts).
    pub detail: serde_json::Value,
}

/// All requested metrics plus warnings about how far they can be trusted.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub values: Vec<MetricValue>,
    pub warnings: Vec<String>,
    pub n_real: usize,
    pub n_fake: usize,
}

pub use crate::fid::FID_SAMPLES_PER_DIM;
pub use crate::score::{class_fractions, confident_fraction, CONFIDENT_PROB};

/// The side's matrix `x`, or an error naming the metric and what it needed.
fn need<'a>(x: &'a Option<FeatureMatrix>, what: &str, metric: &str) -> Result<&'a FeatureMatrix> {
    x.as_ref().ok_or_else(|| {
        Error::InvalidInput(format!(
            "{metric} needs {what}, which this side does not provide; leave {metric} out of the \
             metrics or give a source that has them"
        ))
    })
}

/// Computes `metrics` between `real` and `fake`.
pub fn evaluate(
    metrics: &[&MetricEntry],
    real: &Side,
    fake: &Side,
    opts: &SuiteOptions,
) -> Result<Report> {
    let mut values = Vec::new();
    let mut warnings = Vec::new();
    let inputs = Inputs { real, fake, opts };
    for m in metrics {
        let c = (m.compute)(&inputs)?;
        warnings.extend(c.warnings);
        values.push(MetricValue {
            metric: m.name,
            value: c.value,
            std: c.std,
            detail: c.detail,
        });
    }
    Ok(Report {
        values,
        warnings,
        n_real: real.n(),
        n_fake: fake.n(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_fractions_count_argmax_classes() {
        let p = FeatureMatrix::new(
            4,
            3,
            vec![0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.2, 0.5, 0.3, 0.3, 0.3, 0.4],
            "probs",
        )
        .unwrap();
        assert_eq!(class_fractions(&p), vec![0.25, 0.5, 0.25]);
    }

    #[test]
    fn metric_lists_parse_and_reject_unknown_names() {
        let names = |v: Vec<&MetricEntry>| v.iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(
            names(parse_metrics("fid, kid,1nn,fid").unwrap()),
            vec!["fid", "kid", "1nn"]
        );
        assert_eq!(parse_metrics("all").unwrap().len(), METRICS.len());
        let err = parse_metrics("fid,precision").unwrap_err().to_string();
        assert!(
            err.contains("unknown metric `precision`") && err.contains("1nn"),
            "{err}"
        );
        assert!(parse_metrics(" , ").is_err());
    }

    #[test]
    fn missing_inputs_are_named() {
        let f =
            FeatureMatrix::new(4, 2, (0..8).map(|v| ((v * v) % 5) as f64).collect(), "f").unwrap();
        let side = Side {
            features: Some(f),
            ..Default::default()
        };
        let is = find_metric("is").unwrap();
        let err = evaluate(&[is], &side, &side, &SuiteOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("class probabilities"), "{err}");
        let r = evaluate(
            &parse_metrics("fid,1nn").unwrap(),
            &side,
            &side,
            &SuiteOptions::default(),
        )
        .unwrap();
        assert_eq!(r.values.len(), 2);
        assert!(
            r.warnings.iter().any(|w| w.contains("biased")),
            "{:?}",
            r.warnings
        );
    }
}
