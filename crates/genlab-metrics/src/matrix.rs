//! `FeatureMatrix`: N samples x D features, row-major, f64.
//!
//! Every metric in this crate is a pure function of one or two feature matrices. The
//! constructor validates the shape and that every value is finite, so the metrics never
//! have to guess what a NaN means.

use genlab_core::{Error, Result};

/// N x D feature matrix, row-major, always finite.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl FeatureMatrix {
    /// Wraps `data` (row-major, `rows * cols` values). `what` names the matrix in errors
    /// ("real features", "fake probabilities").
    pub fn new(rows: usize, cols: usize, data: Vec<f64>, what: &str) -> Result<Self> {
        if cols == 0 {
            return Err(Error::InvalidInput(format!(
                "{what}: feature dimension is 0; expected at least one column"
            )));
        }
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(Error::InvalidInput(format!(
                "{what}: {} values do not make a {rows} x {cols} matrix",
                data.len()
            )));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "{what}: value at row {}, column {} is {} (features must be finite)",
                i / cols,
                i % cols,
                data[i]
            )));
        }
        Ok(Self { rows, cols, data })
    }

    /// From f32 values (what networks and `.npy` files usually hold).
    pub fn from_f32(rows: usize, cols: usize, data: &[f32], what: &str) -> Result<Self> {
        Self::new(rows, cols, data.iter().map(|&v| v as f64).collect(), what)
    }

    /// From a list of equally long rows.
    pub fn from_rows(rows: &[Vec<f64>], what: &str) -> Result<Self> {
        let cols = rows.first().map_or(0, |r| r.len());
        if let Some(i) = rows.iter().position(|r| r.len() != cols) {
            return Err(Error::InvalidInput(format!(
                "{what}: row {i} has {} values, row 0 has {cols}",
                rows[i].len()
            )));
        }
        Self::new(rows.len(), cols, rows.concat(), what)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row-major values.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The first `n` rows (or all of them when there are fewer).
    pub fn head(&self, n: usize) -> Self {
        let n = n.min(self.rows);
        Self {
            rows: n,
            cols: self.cols,
            data: self.data[..n * self.cols].to_vec(),
        }
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Self {
        let mut data = Vec::with_capacity(idx.len() * self.cols);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Self {
            rows: idx.len(),
            cols: self.cols,
            data,
        }
    }

    /// As a faer matrix (copy).
    pub fn to_faer(&self) -> faer::Mat<f64> {
        faer::Mat::from_fn(self.rows, self.cols, |i, j| self.data[i * self.cols + j])
    }
}

/// Checks that two feature sets can be compared: same dimension, at least `min_rows` rows each.
pub fn check_pair(real: &FeatureMatrix, fake: &FeatureMatrix, min_rows: usize) -> Result<()> {
    if real.cols() != fake.cols() {
        return Err(Error::InvalidInput(format!(
            "feature dimensions differ: real has {} columns, fake has {}; both sides must come \
             from the same feature extractor",
            real.cols(),
            fake.cols()
        )));
    }
    for (what, m) in [("real", real), ("fake", fake)] {
        if m.rows() < min_rows {
            return Err(Error::InvalidInput(format!(
                "{what} set has {} samples; this metric needs at least {min_rows}",
                m.rows()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes_and_non_finite_values() {
        assert!(FeatureMatrix::new(2, 2, vec![0.0; 3], "x").is_err());
        assert!(FeatureMatrix::new(1, 0, vec![], "x").is_err());
        let err = FeatureMatrix::new(2, 2, vec![0.0, 1.0, f64::NAN, 2.0], "fake features")
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1, column 0"), "{err}");
        assert!(FeatureMatrix::from_rows(&[vec![1.0, 2.0], vec![1.0]], "x").is_err());
    }

    #[test]
    fn pair_check_names_the_mismatch() {
        let a = FeatureMatrix::new(3, 2, vec![0.0; 6], "a").unwrap();
        let b = FeatureMatrix::new(3, 3, vec![0.0; 9], "b").unwrap();
        let err = check_pair(&a, &b, 2).unwrap_err().to_string();
        assert!(err.contains("2 columns") && err.contains("3"), "{err}");
        assert!(check_pair(&a, &a, 4).is_err());
        assert!(check_pair(&a, &a, 3).is_ok());
    }
}
