//! The one yardstick of every few-label experiment: test accuracy against the number of
//! labels used, as JSON (`curve.json`) and an SVG line chart (`curve.svg`, genlab-report's
//! chart), with the labels needed to reach a given test error.

use std::path::Path;

use genlab_core::{Error, Result};
use genlab_report::Series;
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

/// Several curves on one chart: test error (%) against labels. Curves of the same name
/// (one strategy on one data set, run with several seeds) become one line, their mean at
/// every label count they all reached, with a band from the best to the worst seed; the
/// legend says how many seeds.
pub fn curves_svg(curves: &[Curve]) -> Result<String> {
    let mut names: Vec<&str> = Vec::new();
    for c in curves {
        if !names.contains(&c.name.as_str()) {
            names.push(&c.name);
        }
    }
    let mut series = Vec::new();
    let mut bands = Vec::new();
    for name in names {
        let group: Vec<&Curve> = curves.iter().filter(|c| c.name == name).collect();
        if group.len() == 1 {
            series.push(Series {
                name: name.to_string(),
                points: group[0]
                    .points
                    .iter()
                    .map(|p| (p.labels as f64, 100.0 * (1.0 - p.accuracy)))
                    .collect(),
            });
            bands.push(Vec::new());
            continue;
        }
        let (mean, band) = seed_band(&group);
        series.push(Series {
            name: format!("{name} ({} seeds)", group.len()),
            points: mean,
        });
        bands.push(band);
    }
    genlab_report::line_chart_bands_svg(
        "test error against labels",
        "labelled examples",
        "test error (%)",
        &series,
        &bands,
        false,
    )
    .map_err(|e| Error::InvalidInput(format!("learning-curve chart: {e}")))
}

/// Mean test error (%) of the curves at every label count all of them reached, and the
/// `(labels, lowest, highest)` band.
type MeanAndBand = (Vec<(f64, f64)>, Vec<(f64, f64, f64)>);

fn seed_band(group: &[&Curve]) -> MeanAndBand {
    let mut mean = Vec::new();
    let mut band = Vec::new();
    for p in &group[0].points {
        let errs: Vec<f64> = group
            .iter()
            .filter_map(|c| c.points.iter().find(|q| q.labels == p.labels))
            .map(|q| 100.0 * (1.0 - q.accuracy))
            .collect();
        if errs.len() < group.len() {
            continue;
        }
        let x = p.labels as f64;
        mean.push((x, errs.iter().sum::<f64>() / errs.len() as f64));
        let lo = errs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = errs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        band.push((x, lo, hi));
    }
    (mean, band)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_of_one_name_are_a_mean_with_a_band_over_seeds() {
        let curve = |acc: &[(usize, f64)]| {
            let mut c = Curve::new("bald on mnist".into(), serde_json::Value::Null);
            for &(labels, accuracy) in acc {
                c.points.push(CurvePoint {
                    labels,
                    accuracy,
                    seconds: 0.0,
                });
            }
            c
        };
        let a = curve(&[(20, 0.5), (30, 0.8), (40, 0.9)]);
        // A shorter run: 40 labels is not in every seed, so the mean stops at 30.
        let b = curve(&[(20, 0.7), (30, 0.9)]);
        let (mean, band) = seed_band(&[&a, &b]);
        let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
        assert_eq!(mean.len(), 2);
        assert!(close(mean[0].1, 40.0) && close(mean[1].1, 15.0), "{mean:?}");
        assert!(close(band[0].1, 30.0) && close(band[0].2, 50.0), "{band:?}");
        let other = Curve {
            name: "random on mnist".into(),
            ..a.clone()
        };
        let svg = curves_svg(&[a, b, other]).unwrap();
        assert_eq!(svg.matches("class=\"band\"").count(), 1);
        assert!(svg.contains("bald on mnist (2 seeds)") && svg.contains(">random on mnist<"));
    }

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
