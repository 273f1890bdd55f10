//! `genlab report RUN... --out report.html`: one self-contained HTML page about a set of
//! runs, to share: an overview table, then per run its state and metrics, loss and
//! learning-rate curves (inline SVG drawn from its log; for an RL run its episode returns
//! first), every picture (inlined as `data:` URLs, so the file needs nothing beside it) and
//! its config. Runs with a learning curve (`curve.json`: `genlab active run`) are also drawn
//! together on one chart, seeds of one strategy as a band, with the labels each needed.
//!
//! The page is a [`genlab_report::Page`]; the runs are read as the runs page reads them
//! ([`crate::runs`]).

use std::path::{Path, PathBuf};

use base64::Engine as _;

use genlab_report::{Block, Page, Section, Series};
use genlab_train::trainer::{CHECKPOINT_FILE, CONFIG_FILE, LOG_FILE};

use crate::error::{Result, ServeError};
use crate::logs;
use crate::runs::{self, Family, RunSummary};

/// Pictures larger than this are left out of the page (with a note).
const MAX_PICTURE: u64 = 16 << 20;

/// What [`write_report`] wrote.
#[derive(Clone, Debug)]
pub struct ReportSummary {
    pub runs: usize,
    pub pictures: usize,
    pub bytes: usize,
}

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn state_text(s: &RunSummary) -> String {
    serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn fmt_num(v: Option<f64>) -> String {
    v.map_or("-".into(), |l| format!("{l:.4}"))
}

/// An RL run's episode returns against environment steps, with their running mean (as
/// `genlab rl report` averages them).
fn return_curve(records: &[logs::LogRecord], title: &str) -> Result<Option<Block>> {
    let returns = runs::log_returns(records);
    if returns.is_empty() {
        return Ok(None);
    }
    let steps: Vec<f64> = returns.iter().map(|p| p.0 as f64).collect();
    let running = genlab_rl::report::running_curve(&returns, &steps);
    let series = [
        Series {
            name: "episode return".into(),
            points: returns.iter().map(|&(s, r)| (s as f64, r)).collect(),
        },
        Series {
            name: format!(
                "mean of the last {} episodes",
                genlab_rl::train::RUNNING_EPISODES
            ),
            points: steps.into_iter().zip(running).collect(),
        },
    ];
    Ok(Some(Block::Svg(genlab_report::line_chart_svg(
        &format!("{title}: episode return"),
        "environment steps",
        "return",
        &series,
        false,
    )?)))
}

/// Loss curves and the learning rate of a run (an RL run's returns first), as inline SVG
/// charts.
fn curves(dir: &Path, title: &str, family: Family) -> Result<Vec<Block>> {
    let log = dir.join(LOG_FILE);
    let mut blocks = Vec::new();
    let records = logs::read_all(&log).map_err(|e| ServeError::io("read", &log, e))?;
    if family == Family::Rl {
        blocks.extend(return_curve(&records.records, title)?);
    }
    let losses = genlab_train::outputs::read_losses(&log);
    if !losses.is_empty() {
        let positive = losses.iter().all(|(_, p)| p.iter().all(|&(_, y)| y > 0.0));
        let series: Vec<Series> = losses
            .into_iter()
            .map(|(name, points)| Series { name, points })
            .collect();
        blocks.push(Block::Svg(genlab_report::line_chart_svg(
            &format!("{title}: loss"),
            if family == Family::Rl {
                "environment steps"
            } else {
                "step"
            },
            "loss (mean per log interval)",
            &series,
            positive,
        )?));
    }
    let lr: Vec<(f64, f64)> = records
        .records
        .iter()
        .filter_map(|r| Some((r.step as f64, *r.values.get("lr")?)))
        .collect();
    if !lr.is_empty() {
        blocks.push(Block::Svg(genlab_report::line_chart_svg(
            &format!("{title}: learning rate"),
            "step",
            "learning rate",
            &[Series {
                name: "lr".into(),
                points: lr,
            }],
            false,
        )?));
    }
    Ok(blocks)
}

/// Every run's learning curve (`curve.json`, test accuracy against labels) on one chart,
/// curves of one name (a strategy run with several seeds) as their mean and a band, and a
/// table of the labels each run needed to reach 10% and 5% test error. `None` below two
/// curves (a single run's own `curve.svg` is among its pictures).
fn learning_curves(runs: &[PathBuf]) -> Result<Option<Section>> {
    use genlab_labels::curve::{curves_svg, Curve};
    let mut curves = Vec::new();
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for dir in runs {
        if !dir.join("curve.json").is_file() {
            continue;
        }
        // A damaged curve leaves that run out of the chart, not the page unwritten (the run's
        // own section still shows what can be read).
        let c = match Curve::read(dir) {
            Ok(c) => c,
            Err(e) => {
                unreadable.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        let reach = |e: f64| {
            c.labels_to_reach(e)
                .map_or("not reached".into(), |n| n.to_string())
        };
        rows.push(vec![
            dir.display().to_string(),
            c.name.clone(),
            fmt_opt(c.points.last().map(|p| p.labels)),
            c.final_error()
                .map_or("-".into(), |e| format!("{:.2}", 100.0 * e)),
            reach(0.10),
            reach(0.05),
        ]);
        curves.push(c);
    }
    if curves.len() < 2 {
        return Ok(None);
    }
    let mut blocks = Vec::new();
    if !unreadable.is_empty() {
        blocks.push(Block::Text(format!(
            "Left out (curve.json unreadable): {}",
            unreadable.join("; ")
        )));
    }
    blocks.extend([
        Block::Svg(curves_svg(&curves)?),
        Block::Table {
            header: [
                "run",
                "curve",
                "labels at the end",
                "test error there (%)",
                "labels to 10% error",
                "labels to 5% error",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        },
    ]);
    Ok(Some(Section {
        heading: "Learning curves".into(),
        blocks,
    }))
}

/// The page about `runs` (each a run directory).
pub fn render(runs: &[PathBuf]) -> Result<(Page, ReportSummary)> {
    if runs.is_empty() {
        return Err(genlab_core::Error::InvalidInput(
            "a report needs at least one run directory".into(),
        )
        .into());
    }
    let mut overview = Vec::new();
    let mut sections = Vec::new();
    let mut pictures = 0;
    for dir in runs {
        let is_run = [CONFIG_FILE, CHECKPOINT_FILE, LOG_FILE]
            .iter()
            .any(|f| dir.join(f).is_file());
        if !is_run {
            return Err(genlab_core::Error::InvalidInput(format!(
                "{} is not a training run directory (it holds none of {CONFIG_FILE}, \
                 {CHECKPOINT_FILE}, {LOG_FILE})",
                dir.display()
            ))
            .into());
        }
        let name = dir.display().to_string();
        let d = runs::detail(dir, name.clone());
        let s = &d.summary;
        overview.push(vec![
            name.clone(),
            fmt_opt(s.model.as_deref()),
            fmt_opt(s.data.as_deref()),
            state_text(s),
            format!("{} / {}", fmt_opt(s.step), fmt_opt(s.steps)),
            fmt_num(s.last_loss),
            fmt_num(s.last_return),
        ]);
        let mut line = format!(
            "{} on {}, seed {}: {} at step {} of {}",
            fmt_opt(s.model.as_deref()),
            fmt_opt(s.data.as_deref()),
            fmt_opt(s.seed),
            state_text(s),
            fmt_opt(s.step),
            fmt_opt(s.steps),
        );
        if s.family == Family::Rl {
            line = format!(
                "Reinforcement learning: {line} environment steps, {} episodes; last episode \
                 return {} (mean of the last {}: {})",
                fmt_opt(s.episodes),
                fmt_num(s.last_return),
                genlab_rl::train::RUNNING_EPISODES,
                fmt_num(s.running_return),
            );
        }
        if s.family == Family::Generative || s.last_loss.is_some() {
            line += &format!(
                "; last {} {}",
                s.loss_name.as_deref().unwrap_or("loss"),
                fmt_num(s.last_loss)
            );
        }
        let mut blocks = vec![Block::Text(format!("{line}."))];
        if !s.problems.is_empty() {
            blocks.push(Block::Text(format!("Problems: {}", s.problems.join("; "))));
        }
        if !s.metrics.is_empty() {
            blocks.push(Block::Table {
                header: vec!["metric".into(), "value".into()],
                rows: s
                    .metrics
                    .iter()
                    .map(|(k, v)| vec![k.clone(), format!("{v:.6}")])
                    .collect(),
            });
        }
        blocks.extend(curves(dir, &name, s.family)?);
        for p in &d.pictures {
            // The return chart above is drawn from the same log as the run's own curve.
            if s.family == Family::Rl && p.name == genlab_rl::train::CURVE_FILE {
                continue;
            }
            let path = dir.join(&p.name);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if size > MAX_PICTURE {
                blocks.push(Block::Text(format!(
                    "{} left out: {size} bytes is more than a shared page should carry",
                    p.name
                )));
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| ServeError::io("read", &path, e))?;
            let mime = match Path::new(&p.name).extension().and_then(|e| e.to_str()) {
                Some(e) if e.eq_ignore_ascii_case("gif") => "image/gif",
                Some(e) if e.eq_ignore_ascii_case("svg") => "image/svg+xml",
                _ => "image/png",
            };
            blocks.push(Block::Image {
                src: format!(
                    "data:{mime};base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                ),
                caption: p.name.clone(),
            });
            pictures += 1;
        }
        if let Some(c) = &d.config {
            blocks.push(Block::Code(
                serde_json::to_string_pretty(c).unwrap_or_default(),
            ));
        }
        sections.push(Section {
            heading: name,
            blocks,
        });
    }
    let mut all = vec![Section {
        heading: "Runs".into(),
        blocks: vec![Block::Table {
            header: [
                "run",
                "model",
                "data",
                "state",
                "step",
                "last loss",
                "last return",
            ]
            .map(String::from)
            .to_vec(),
            rows: overview,
        }],
    }];
    all.extend(learning_curves(runs)?);
    all.extend(sections);
    let page = Page {
        title: format!(
            "genlab report: {} run{}",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" }
        ),
        sections: all,
    };
    let summary = ReportSummary {
        runs: runs.len(),
        pictures,
        bytes: 0,
    };
    Ok((page, summary))
}

/// Writes the page about `runs` to `out` (atomically; parent folders created).
pub fn write_report(runs: &[PathBuf], out: &Path) -> Result<ReportSummary> {
    let (page, mut summary) = render(runs)?;
    let html = genlab_report::render_html(&page);
    summary.bytes = html.len();
    genlab_report::write_atomic(out, html.as_bytes())?;
    Ok(summary)
}
