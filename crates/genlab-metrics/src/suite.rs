//! Several metrics at once on one pair of sample sets: what `genlab eval` runs.
//!
//! The caller turns each side into a [`Side`] (features, class probabilities and/or cached
//! Gaussian statistics); [`evaluate`] checks that each requested metric has what it needs,
//! runs it, and returns every value with its spread, sample counts and warnings.

use crate::fid::{fid, fid_from_stats};
use crate::kernel::{kid, mmd2_unbiased, Bandwidth, Kernel, KidOptions};
use crate::nn1::one_nn;
use crate::score::{inception_score, mode_score};
use crate::stats::GaussianStats;
use crate::wasserstein::{wasserstein, WassersteinOptions};
use crate::FeatureMatrix;
use genlab_core::{Error, Result};
use serde::Serialize;
use serde_json::json;

/// A metric `genlab eval` can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    Fid,
    Kid,
    Mmd,
    Is,
    Mode,
    Wasserstein,
    OneNn,
}

/// Every metric with its command-line name and a one-line description.
pub const METRICS: &[(Metric, &str, &str)] = &[
    (
        Metric::Fid,
        "fid",
        "Frechet distance of Gaussian fits to the features (lower is better)",
    ),
    (
        Metric::Kid,
        "kid",
        "Kernel Inception Distance: unbiased cubic-kernel MMD^2 over subsets",
    ),
    (
        Metric::Mmd,
        "mmd",
        "unbiased MMD^2 with a Gaussian kernel, median-heuristic bandwidth",
    ),
    (
        Metric::Is,
        "is",
        "Inception Score of the generated class probabilities (higher is better)",
    ),
    (
        Metric::Mode,
        "mode",
        "Mode Score: IS penalised by KL(generated || real label marginal)",
    ),
    (
        Metric::Wasserstein,
        "wasserstein",
        "earth mover's distance between the feature sets",
    ),
    (
        Metric::OneNn,
        "1nn",
        "leave-one-out 1-NN two-sample accuracy (0.5 = indistinguishable)",
    ),
];

impl Metric {
    pub fn name(self) -> &'static str {
        METRICS.iter().find(|m| m.0 == self).expect("listed").1
    }

    /// Parses a comma-separated list (`fid,kid,1nn`; `all` for every metric).
    pub fn parse_list(s: &str) -> Result<Vec<Metric>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                return Ok(METRICS.iter().map(|m| m.0).collect());
            }
            let m = METRICS
                .iter()
                .find(|m| m.1 == part)
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "unknown metric `{part}` (known: {}, or all)",
                        METRICS.iter().map(|m| m.1).collect::<Vec<_>>().join(", ")
                    ))
                })?
                .0;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            return Err(Error::InvalidInput(
                "no metric named (e.g. --metrics fid,kid)".into(),
            ));
        }
        Ok(out)
    }

    /// Whether the metric needs feature vectors of both sides (FID can use statistics).
    pub fn needs_features(self) -> bool {
        !matches!(self, Metric::Is | Metric::Mode)
    }
}

/// One side of the comparison.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub features: Option<FeatureMatrix>,
    pub probs: Option<FeatureMatrix>,
    /// Cached Gaussian statistics (used by FID when there are no features).
    pub stats: Option<GaussianStats>,
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

/// FID warns when a side has fewer than this many samples per feature dimension: its
/// covariance estimate, and so FID's upward bias (which shrinks like 1/N), is then large.
pub const FID_SAMPLES_PER_DIM: usize = 5;

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

fn need<'a>(x: &'a Option<FeatureMatrix>, what: &str, metric: &str) -> Result<&'a FeatureMatrix> {
    x.as_ref().ok_or_else(|| {
        Error::InvalidInput(format!(
            "{metric} needs {what}, which this side does not provide; drop {metric} from --metrics \
             or give a source that has them"
        ))
    })
}

/// Computes `metrics` between `real` and `fake`.
pub fn evaluate(
    metrics: &[Metric],
    real: &Side,
    fake: &Side,
    opts: &SuiteOptions,
) -> Result<Report> {
    let mut values = Vec::new();
    let mut warnings = Vec::new();
    for &m in metrics {
        let name = m.name();
        let v = match m {
            Metric::Fid => {
                let r = match (&real.features, &real.stats, &fake.features, &fake.stats) {
                    (Some(a), _, Some(b), _) => fid(a, b)?,
                    (_, Some(sa), Some(b), _) => fid_from_stats(sa, &GaussianStats::of(b)?)?,
                    (Some(a), _, _, Some(sb)) => fid_from_stats(&GaussianStats::of(a)?, sb)?,
                    (_, Some(sa), _, Some(sb)) => fid_from_stats(sa, sb)?,
                    _ => {
                        return Err(Error::InvalidInput(
                            "fid needs features or statistics on both sides".into(),
                        ))
                    }
                };
                let d = real
                    .features
                    .as_ref()
                    .map(|f| f.cols())
                    .or(real.stats.as_ref().map(|s| s.dim()))
                    .unwrap_or(0);
                let few = r.n_real.min(r.n_fake);
                if few < FID_SAMPLES_PER_DIM * d {
                    warnings.push(format!(
                        "fid: {few} samples on the smaller side for {d}-dimensional features (fewer \
                         than {FID_SAMPLES_PER_DIM} per dimension); FID is biased upwards at small N \
                         (the bias shrinks like 1/N), so compare FIDs only at equal N; KID is unbiased"
                    ));
                }
                if r.most_negative_eigenvalue < 0.0 {
                    warnings.push(format!(
                        "fid: an eigenvalue of {:.3e} was clamped to 0; the covariances are badly \
                         conditioned, treat the value with care",
                        r.most_negative_eigenvalue
                    ));
                }
                MetricValue {
                    metric: name,
                    value: r.fid,
                    std: None,
                    detail: serde_json::to_value(&r).expect("plain data"),
                }
            }
            Metric::Kid => {
                let (a, b) = (
                    need(&real.features, "real features", name)?,
                    need(&fake.features, "fake features", name)?,
                );
                let r = kid(a, b, &opts.kid)?;
                if r.subset_size < opts.kid.subset_size {
                    warnings.push(format!(
                        "kid: subsets of {} (the smaller set's size) instead of {}",
                        r.subset_size, opts.kid.subset_size
                    ));
                }
                MetricValue {
                    metric: name,
                    value: r.kid,
                    std: Some(r.std),
                    detail: serde_json::to_value(&r).expect("plain data"),
                }
            }
            Metric::Mmd => {
                let (a, b) = (
                    need(&real.features, "real features", name)?,
                    need(&fake.features, "fake features", name)?,
                );
                let r = mmd2_unbiased(
                    a,
                    b,
                    &Kernel::Rbf {
                        bandwidth: opts.mmd_bandwidth,
                    },
                )?;
                MetricValue {
                    metric: name,
                    value: r.mmd2,
                    std: None,
                    detail: serde_json::to_value(&r).expect("plain data"),
                }
            }
            Metric::Is => {
                let p = need(&fake.probs, "class probabilities of the generated samples (a feature extractor with a classifier head, or --fake-probs)", name)?;
                let r = inception_score(p, opts.splits.min(p.rows()))?;
                let mut detail = serde_json::to_value(&r).expect("plain data");
                detail["confident_fraction"] = confident_fraction(p).into();
                detail["class_fractions"] = class_fractions(p).into();
                MetricValue {
                    metric: name,
                    value: r.mean,
                    std: Some(r.std),
                    detail,
                }
            }
            Metric::Mode => {
                let p = need(&fake.probs, "class probabilities of the generated samples (a feature extractor with a classifier head, or --fake-probs)", name)?;
                let q = need(&real.probs, "class probabilities of the real samples (--real-probs, or real images with a classifier extractor)", name)?;
                let r = mode_score(p, q, opts.splits.min(p.rows()))?;
                MetricValue {
                    metric: name,
                    value: r.mean,
                    std: Some(r.std),
                    detail: serde_json::to_value(&r).expect("plain data"),
                }
            }
            Metric::Wasserstein => {
                let (a, b) = (
                    need(&real.features, "real features", name)?,
                    need(&fake.features, "fake features", name)?,
                );
                let r = wasserstein(a, b, &opts.wasserstein)?;
                if !r.converged {
                    warnings.push(format!("wasserstein: {} did not converge", r.method));
                }
                MetricValue {
                    metric: name,
                    value: r.value,
                    std: None,
                    detail: json!({ "method": r.method, "p": r.p, "converged": r.converged }),
                }
            }
            Metric::OneNn => {
                let (a, b) = (
                    need(&real.features, "real features", name)?,
                    need(&fake.features, "fake features", name)?,
                );
                let r = one_nn(a, b)?;
                MetricValue {
                    metric: name,
                    value: r.accuracy,
                    std: None,
                    detail: serde_json::to_value(&r).expect("plain data"),
                }
            }
        };
        values.push(v);
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
        assert_eq!(
            Metric::parse_list("fid, kid,1nn,fid").unwrap(),
            vec![Metric::Fid, Metric::Kid, Metric::OneNn]
        );
        assert_eq!(Metric::parse_list("all").unwrap().len(), METRICS.len());
        let err = Metric::parse_list("fid,precision").unwrap_err().to_string();
        assert!(
            err.contains("unknown metric `precision`") && err.contains("1nn"),
            "{err}"
        );
        assert!(Metric::parse_list(" , ").is_err());
    }

    #[test]
    fn missing_inputs_are_named() {
        let f =
            FeatureMatrix::new(4, 2, (0..8).map(|v| ((v * v) % 5) as f64).collect(), "f").unwrap();
        let side = Side {
            features: Some(f),
            ..Default::default()
        };
        let err = evaluate(&[Metric::Is], &side, &side, &SuiteOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("class probabilities"), "{err}");
        let r = evaluate(
            &[Metric::Fid, Metric::OneNn],
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
