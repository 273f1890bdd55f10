//! The one yardstick of every few-label experiment: test accuracy against the number of
//! labels used, as JSON (`curve.json`) and an SVG line chart (`curve.svg`, genlab-report's
//! chart), with the labels needed to reach a given test error.

use std::path::Path;

use genlab_core::{Error, Result};
use genlab_report::{line_chart_svg, Series};
use serde::{Deserialize, Serialize};

/// One point: a model trained with `labels` labels and its test accuracy in [0, 1].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    pub labels: usize,
    pub accuracy: f64,
    /// Wall-clock seconds since the run started.
    pub seconds: f64,
}

/// A learning curve.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Curve {
    pub name: String,
    /// The resolved config of the run.
    pub config: serde_json::Value,
    pub points: Vec<CurvePoint>,
}

impl Curve {
    pub fn new(name: String, config: serde_json::Value) -> Self {
        Self {
            name,
            config,
            points: Vec::new(),
        }
    }

    /// The fewest labels at which the test error is at most `error` (in [0, 1]), if ever.
    pub fn labels_to_reach(&self, error: f64) -> Option<usize> {
        self.points
            .iter()
            .find(|p| 1.0 - p.accuracy <= error)
            .map(|p| p.labels)
    }

    /// The last point's test error in [0, 1].
    pub fn final_error(&self) -> Option<f64> {
        self.points.last().map(|p| 1.0 - p.accuracy)
    }

    /// Writes `curve.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        genlab_core::io::write_json(&dir.join("curve.json"), self)
    }

    /// Writes `curve.svg` (test error in % against labels) into `dir`.
    pub fn write_svg(&self, dir: &Path) -> Result<()> {
        let svg = curves_svg(std::slice::from_ref(self))?;
        genlab_core::io::write_atomic(&dir.join("curve.svg"), svg.as_bytes())
    }

    /// Reads `curve.json` from a run directory.
    pub fn read(dir: &Path) -> Result<Self> {
        genlab_core::io::read_json(&dir.join("curve.json"))
    }
}

/// Several curves on one chart: test error (%) against labels.
pub fn curves_svg(curves: &[Curve]) -> Result<String> {
    let series: Vec<Series> = curves
        .iter()
        .map(|c| Series {
            name: c.name.clone(),
            points: c
                .points
                .iter()
                .map(|p| (p.labels as f64, 100.0 * (1.0 - p.accuracy)))
                .collect(),
        })
        .collect();
    line_chart_svg(
        "test error against labels",
        "labelled examples",
        "test error (%)",
        &series,
        false,
    )
    .map_err(|e| Error::InvalidInput(format!("learning-curve chart: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_to_reach_an_error_is_the_first_point_at_or_below_it() {
        let mut c = Curve::new("x".into(), serde_json::Value::Null);
        for (l, a) in [(20, 0.5), (30, 0.91), (40, 0.89), (50, 0.96)] {
            c.points.push(CurvePoint {
                labels: l,
                accuracy: a,
                seconds: 0.0,
            });
        }
        assert_eq!(c.labels_to_reach(0.10), Some(30));
        assert_eq!(c.labels_to_reach(0.05), Some(50));
        assert_eq!(c.labels_to_reach(0.01), None);
        assert!((c.final_error().unwrap() - 0.04).abs() < 1e-12);
        let t = tempfile::tempdir().unwrap();
        c.write(t.path()).unwrap();
        c.write_svg(t.path()).unwrap();
        assert_eq!(Curve::read(t.path()).unwrap(), c);
        assert!(std::fs::read_to_string(t.path().join("curve.svg"))
            .unwrap()
            .contains("<svg"));
    }
}
