//! Gaussian feature statistics (mean, unbiased covariance, N): a streaming accumulator and a
//! cache file, so that a reference dataset's side of FID is computed once.
//!
//! The accumulator keeps sums of deviations from a fixed shift (the first batch's mean),
//! which keeps the one-pass covariance accurate even for features with large means.

use crate::linalg::{par, symmetrize};
use crate::FeatureMatrix;
use candle_core::{Device, Tensor};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat};
use genlab_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Where a statistics file's numbers came from: recorded so that FIDs computed with a
/// different extractor or preprocessing are refused instead of silently compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsProvenance {
    /// Feature extractor id (`FeatureExtractor::id`).
    pub extractor: String,
    /// Its preprocessing description.
    pub preprocessing: String,
    /// What the features were computed on (`mnist:test`, a folder, a checkpoint).
    pub source: String,
}

/// Mean, unbiased covariance and sample count of a feature set.
#[derive(Debug, Clone)]
pub struct GaussianStats {
    pub n: usize,
    pub mean: Vec<f64>,
    pub cov: Mat<f64>,
}

impl GaussianStats {
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Statistics of a whole feature matrix.
    pub fn of(x: &FeatureMatrix) -> Result<Self> {
        let (mean, cov) = crate::linalg::mean_cov(x)?;
        Ok(Self {
            n: x.rows(),
            mean,
            cov,
        })
    }

    /// Writes mean and covariance (f64) with the sample count and provenance as metadata.
    pub fn save(&self, path: &Path, provenance: &StatsProvenance) -> Result<()> {
        let d = self.dim();
        let cov: Vec<f64> = (0..d * d).map(|k| self.cov[(k / d, k % d)]).collect();
        let mut tensors = HashMap::new();
        tensors.insert(
            "mean".to_string(),
            Tensor::from_vec(self.mean.clone(), d, &Device::Cpu)?,
        );
        tensors.insert(
            "cov".to_string(),
            Tensor::from_vec(cov, (d, d), &Device::Cpu)?,
        );
        let mut meta = HashMap::new();
        meta.insert("n".to_string(), self.n.to_string());
        meta.insert(
            "genlab-stats".to_string(),
            serde_json::to_string(provenance).map_err(|e| Error::Config(e.to_string()))?,
        );
        genlab_core::io::save_tensors_with_metadata(path, &tensors, meta)
    }

    /// Reads a file written by [`GaussianStats::save`].
    pub fn load(path: &Path) -> Result<(Self, StatsProvenance)> {
        let (tensors, meta) = genlab_core::io::load_tensors_with_metadata(path, &Device::Cpu)?;
        let bad = |what: &str| {
            Error::Checkpoint(format!(
                "{} is not a genlab feature-statistics file: {what}",
                path.display()
            ))
        };
        let prov: StatsProvenance = meta
            .get("genlab-stats")
            .ok_or_else(|| bad("no 'genlab-stats' metadata"))
            .and_then(|s| serde_json::from_str(s).map_err(|e| bad(&e.to_string())))?;
        let n: usize = meta
            .get("n")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no sample count"))?;
        let mean = tensors.get("mean").ok_or_else(|| bad("no 'mean' tensor"))?;
        let cov = tensors.get("cov").ok_or_else(|| bad("no 'cov' tensor"))?;
        let mean: Vec<f64> = mean.to_vec1()?;
        let d = mean.len();
        if cov.dims() != [d, d] {
            return Err(bad(&format!(
                "covariance shape {:?}, expected [{d}, {d}]",
                cov.dims()
            )));
        }
        let cov: Vec<f64> = cov.flatten_all()?.to_vec1()?;
        let cov = Mat::from_fn(d, d, |i, j| cov[i * d + j]);
        Ok((Self { n, mean, cov }, prov))
    }
}

/// Streaming mean/covariance: add feature batches as they come, finish once.
#[derive(Debug, Clone)]
pub struct StatsAccumulator {
    dim: usize,
    n: usize,
    shift: Option<Vec<f64>>,
    /// Sum of (x - shift).
    sum: Vec<f64>,
    /// Sum of (x - shift)(x - shift)^T.
    outer: Mat<f64>,
}

impl StatsAccumulator {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            n: 0,
            shift: None,
            sum: vec![0.0; dim],
            outer: Mat::zeros(dim, dim),
        }
    }

    pub fn count(&self) -> usize {
        self.n
    }

    pub fn add(&mut self, batch: &FeatureMatrix) -> Result<()> {
        if batch.cols() != self.dim {
            return Err(Error::InvalidInput(format!(
                "feature batch has {} columns, the accumulator {}",
                batch.cols(),
                self.dim
            )));
        }
        if batch.rows() == 0 {
            return Ok(());
        }
        let shift = self.shift.get_or_insert_with(|| {
            let mut m = vec![0.0; batch.cols()];
            for i in 0..batch.rows() {
                for (a, v) in m.iter_mut().zip(batch.row(i)) {
                    *a += v;
                }
            }
            m.iter_mut().for_each(|a| *a /= batch.rows() as f64);
            m
        });
        let xc = Mat::from_fn(batch.rows(), self.dim, |i, j| batch.row(i)[j] - shift[j]);
        for i in 0..batch.rows() {
            for j in 0..self.dim {
                self.sum[j] += xc[(i, j)];
            }
        }
        matmul(
            self.outer.as_mut(),
            Accum::Add,
            xc.transpose(),
            xc.as_ref(),
            1.0,
            par(),
        );
        self.n += batch.rows();
        Ok(())
    }

    pub fn finish(&self) -> Result<GaussianStats> {
        let n = self.n;
        if n < 2 {
            return Err(Error::InvalidInput(format!(
                "statistics need at least 2 samples, got {n}"
            )));
        }
        let shift = self.shift.as_ref().expect("n >= 2 implies a shift");
        let d_mean: Vec<f64> = self.sum.iter().map(|s| s / n as f64).collect();
        let mean = shift.iter().zip(&d_mean).map(|(s, d)| s + d).collect();
        let nf = n as f64;
        let mut cov = Mat::from_fn(self.dim, self.dim, |i, j| {
            (self.outer[(i, j)] - nf * d_mean[i] * d_mean[j]) / (nf - 1.0)
        });
        symmetrize(&mut cov);
        Ok(GaussianStats { n, mean, cov })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> FeatureMatrix {
        let rows: Vec<Vec<f64>> = (0..23)
            .map(|i| {
                (0..5)
                    .map(|j| 1e4 + ((i * 5 + j) as f64 * 0.37).sin() * (j + 1) as f64)
                    .collect()
            })
            .collect();
        FeatureMatrix::from_rows(&rows, "x").unwrap()
    }

    #[test]
    fn streaming_equals_batch() {
        let x = data();
        let whole = GaussianStats::of(&x).unwrap();
        let mut acc = StatsAccumulator::new(5);
        for chunk in [0..4usize, 4..5, 5..17, 17..23] {
            acc.add(&x.select(&chunk.collect::<Vec<_>>())).unwrap();
        }
        let s = acc.finish().unwrap();
        assert_eq!(s.n, 23);
        for j in 0..5 {
            assert!((s.mean[j] - whole.mean[j]).abs() < 1e-9);
            for k in 0..5 {
                assert!((s.cov[(j, k)] - whole.cov[(j, k)]).abs() < 1e-9, "{j}{k}");
            }
        }
        assert!(StatsAccumulator::new(4).add(&x).is_err());
        assert!(StatsAccumulator::new(5).finish().is_err());
    }

    #[test]
    fn save_load_round_trip_keeps_f64_and_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ref.safetensors");
        let s = GaussianStats::of(&data()).unwrap();
        let prov = StatsProvenance {
            extractor: "e".into(),
            preprocessing: "none".into(),
            source: "unit".into(),
        };
        s.save(&p, &prov).unwrap();
        let (t, prov2) = GaussianStats::load(&p).unwrap();
        assert_eq!(prov, prov2);
        assert_eq!(t.n, 23);
        assert_eq!(t.mean, s.mean);
        assert_eq!(t.cov, s.cov);
        std::fs::write(&p, b"junk").unwrap();
        assert!(GaussianStats::load(&p).is_err());
    }
}
