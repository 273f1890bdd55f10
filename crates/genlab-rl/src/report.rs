//! Results across seeds: learning curves with bands and the spread of final returns.
//!
//! Each run's episode returns (its `log.jsonl`) are turned into a running mean over the last
//! [`crate::train::RUNNING_EPISODES`] episodes, read at evenly spaced environment steps; the
//! curve of a group of runs (one algorithm, several seeds) is the mean over runs at each
//! step with a band of one standard deviation (population, over runs). Final returns are
//! each run's deterministic evaluation. The chart is a self-contained SVG, one colour per
//! group, drawn with genlab-report's tick and palette conventions.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use genlab_core::{Error, Result};
use genlab_report::{escape_markup, format_tick, nice_ticks, PALETTE};

use crate::train::{read_returns, read_run, RUNNING_EPISODES};

/// Mean and spread of a curve at evenly spaced steps.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Band {
    pub label: String,
    pub steps: Vec<f64>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub runs: usize,
}

/// The running-mean return of one run at `steps` (NaN before its first episode).
pub fn running_curve(returns: &[(u64, f64)], steps: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(steps.len());
    let mut k = 0;
    for &s in steps {
        while k < returns.len() && returns[k].0 as f64 <= s {
            k += 1;
        }
        if k == 0 {
            out.push(f64::NAN);
        } else {
            let lo = k.saturating_sub(RUNNING_EPISODES);
            let w = &returns[lo..k];
            out.push(w.iter().map(|r| r.1).sum::<f64>() / w.len() as f64);
        }
    }
    out
}

/// Mean and std over runs at `points` evenly spaced steps up to the longest run.
pub fn band(label: &str, runs: &[Vec<(u64, f64)>], points: usize) -> Band {
    let max = runs
        .iter()
        .filter_map(|r| r.last().map(|x| x.0))
        .max()
        .unwrap_or(0) as f64;
    let steps: Vec<f64> = (1..=points)
        .map(|i| max * i as f64 / points as f64)
        .collect();
    let curves: Vec<Vec<f64>> = runs.iter().map(|r| running_curve(r, &steps)).collect();
    let (mut mean, mut std) = (Vec::new(), Vec::new());
    for j in 0..steps.len() {
        let v: Vec<f64> = curves
            .iter()
            .map(|c| c[j])
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() {
            mean.push(f64::NAN);
            std.push(f64::NAN);
            continue;
        }
        let m = v.iter().sum::<f64>() / v.len() as f64;
        mean.push(m);
        std.push((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt());
    }
    Band {
        label: label.into(),
        steps,
        mean,
        std,
        runs: runs.len(),
    }
}

/// An SVG chart of bands (mean line, shaded mean +- std).
pub fn band_chart_svg(title: &str, bands: &[Band]) -> Result<String> {
    let pts = || {
        bands.iter().flat_map(|b| {
            (0..b.steps.len())
                .filter(|&i| b.mean[i].is_finite())
                .flat_map(move |i| {
                    [
                        (b.steps[i], b.mean[i] - b.std[i]),
                        (b.steps[i], b.mean[i] + b.std[i]),
                    ]
                })
        })
    };
    if pts().next().is_none() {
        return Err(Error::InvalidInput("no finished episode to draw".into()));
    }
    let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (y0, y1) = pts().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    let (xt, yt) = (nice_ticks(0f64.min(x0), x1, 6), nice_ticks(y0, y1, 5));
    let (xa, xb) = (xt.values[0].min(0.0), *xt.values.last().unwrap());
    let (ya, yb) = (yt.values[0], *yt.values.last().unwrap());
    let (l, r, t, b) = (72.0, 620.0, 40.0, 340.0);
    let px = |x: f64| l + (x - xa) / (xb - xa).max(1e-12) * (r - l);
    let py = |y: f64| b - (y - ya) / (yb - ya).max(1e-12) * (b - t);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="640" height="400" viewBox="0 0 640 400" font-family="sans-serif" font-size="12"><rect width="640" height="400" fill="white"/><text x="320" y="22" text-anchor="middle" font-size="14">{}</text>"##,
        escape_markup(title)
    );
    for &v in &xt.values {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="{t}" x2="{0:.1}" y2="{b}" stroke="#eee"/><text x="{0:.1}" y="{1}" text-anchor="middle">{2}</text>"##,
            px(v),
            b + 16.0,
            format_tick(v, xt.step)
        );
    }
    for &v in &yt.values {
        let _ = write!(
            s,
            r##"<line x1="{l}" y1="{0:.1}" x2="{r}" y2="{0:.1}" stroke="#eee"/><text x="{1}" y="{2:.1}" text-anchor="end">{3}</text>"##,
            py(v),
            l - 6.0,
            py(v) + 4.0,
            format_tick(v, yt.step)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#444"/><text x="346" y="385" text-anchor="middle">environment steps</text><text x="16" y="190" text-anchor="middle" transform="rotate(-90 16 190)">return (running mean of {RUNNING_EPISODES} episodes)</text>"##,
        r - l,
        b - t
    );
    for (k, bd) in bands.iter().enumerate() {
        let c = PALETTE[k % PALETTE.len()];
        let idx: Vec<usize> = (0..bd.steps.len())
            .filter(|&i| bd.mean[i].is_finite())
            .collect();
        let mut poly = String::new();
        for &i in &idx {
            let _ = write!(
                poly,
                "{:.1},{:.1} ",
                px(bd.steps[i]),
                py(bd.mean[i] + bd.std[i])
            );
        }
        for &i in idx.iter().rev() {
            let _ = write!(
                poly,
                "{:.1},{:.1} ",
                px(bd.steps[i]),
                py(bd.mean[i] - bd.std[i])
            );
        }
        let _ = write!(
            s,
            r##"<polygon points="{poly}" fill="{c}" fill-opacity="0.2" stroke="none"/>"##
        );
        let line: Vec<String> = idx
            .iter()
            .map(|&i| format!("{:.1},{:.1}", px(bd.steps[i]), py(bd.mean[i])))
            .collect();
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"##,
            line.join(" ")
        );
        let ly = t + 16.0 + 16.0 * k as f64;
        let _ = write!(
            s,
            r##"<line x1="{0}" y1="{ly}" x2="{1}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{2}" y="{3}">{4} ({5} runs)</text>"##,
            l + 10.0,
            l + 30.0,
            l + 36.0,
            ly + 4.0,
            escape_markup(&bd.label),
            bd.runs
        );
    }
    s.push_str("</svg>\n");
    Ok(s)
}

/// One group of runs in a report.
#[derive(Clone, Debug, Serialize)]
pub struct GroupSummary {
    pub label: String,
    pub runs: Vec<PathBuf>,
    /// Each run's final running-mean training return.
    pub final_running: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

/// Reads runs, groups them by algorithm and environment, writes the band chart to `svg`
/// and returns the summaries (mean and population std over runs of the final running
/// return).
pub fn seeds_report(runs: &[PathBuf], svg: &Path, points: usize) -> Result<Vec<GroupSummary>> {
    // (label, run directories, each run's (step, return) episodes)
    type Group = (String, Vec<PathBuf>, Vec<Vec<(u64, f64)>>);
    let mut groups: Vec<Group> = Vec::new();
    for dir in runs {
        let run = read_run(dir)?;
        let label = format!("{} on {}", run.algo, run.env);
        let ret = read_returns(dir)?;
        match groups.iter_mut().find(|g| g.0 == label) {
            Some(g) => {
                g.1.push(dir.clone());
                g.2.push(ret);
            }
            None => groups.push((label, vec![dir.clone()], vec![ret])),
        }
    }
    let bands: Vec<Band> = groups.iter().map(|g| band(&g.0, &g.2, points)).collect();
    let title = if groups.len() == 1 {
        groups[0].0.clone()
    } else {
        "learning curves".into()
    };
    genlab_core::io::write_atomic(svg, band_chart_svg(&title, &bands)?.as_bytes())?;
    Ok(groups
        .into_iter()
        .map(|(label, dirs, rets)| {
            let f: Vec<f64> = rets
                .iter()
                .map(|r| {
                    let w = &r[r.len().saturating_sub(RUNNING_EPISODES)..];
                    w.iter().map(|x| x.1).sum::<f64>() / w.len().max(1) as f64
                })
                .collect();
            let m = f.iter().sum::<f64>() / f.len() as f64;
            GroupSummary {
                label,
                runs: dirs,
                std: (f.iter().map(|x| (x - m).powi(2)).sum::<f64>() / f.len() as f64).sqrt(),
                min: f.iter().copied().fold(f64::INFINITY, f64::min),
                max: f.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                mean: m,
                final_running: f,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_curve_averages_the_last_episodes_before_each_step() {
        let r: Vec<(u64, f64)> = (1..=30).map(|i| (i * 10, i as f64)).collect();
        let c = running_curve(&r, &[5.0, 10.0, 300.0]);
        assert!(c[0].is_nan());
        assert_eq!(c[1], 1.0);
        // Episodes 11..=30: mean 20.5.
        assert_eq!(c[2], 20.5);
    }

    #[test]
    fn band_is_the_mean_and_population_std_over_runs() {
        let a: Vec<(u64, f64)> = vec![(100, 1.0)];
        let b: Vec<(u64, f64)> = vec![(100, 3.0)];
        let bd = band("x", &[a, b], 1);
        assert_eq!((bd.mean[0], bd.std[0], bd.runs), (2.0, 1.0, 2));
        let svg = band_chart_svg("t <1>", &[bd]).unwrap();
        assert!(svg.contains("<polygon") && svg.contains("t &lt;1&gt;"));
        assert!(band_chart_svg("t", &[band("y", &[vec![]], 3)]).is_err());
    }
}
