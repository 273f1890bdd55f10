//! `genlab report RUN... --out report.html`: one self-contained HTML page about a set of
//! runs, to share: an overview table, then per run its state and metrics, loss and
//! learning-rate curves (inline SVG drawn from its log), every picture (inlined as `data:`
//! URLs, so the file needs nothing beside it) and its config.
//!
//! The page is a [`genlab_report::Page`]; the runs are read as the runs page reads them
//! ([`crate::runs`]).

use std::path::{Path, PathBuf};

use base64::Engine as _;

use genlab_report::{Block, Page, Section, Series};
use genlab_train::trainer::{CHECKPOINT_FILE, CONFIG_FILE, LOG_FILE};

use crate::error::{Result, ServeError};
use crate::logs;
use crate::runs::{self, RunSummary};

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

/// Loss curves and the learning rate of a run, as inline SVG charts.
fn curves(dir: &Path, title: &str) -> Result<Vec<Block>> {
    let log = dir.join(LOG_FILE);
    let mut blocks = Vec::new();
    let losses = genlab_train::outputs::read_losses(&log);
    if !losses.is_empty() {
        let positive = losses.iter().all(|(_, p)| p.iter().all(|&(_, y)| y > 0.0));
        let series: Vec<Series> = losses
            .into_iter()
            .map(|(name, points)| Series { name, points })
            .collect();
        blocks.push(Block::Svg(genlab_report::line_chart_svg(
            &format!("{title}: loss"),
            "step",
            "loss (mean per log interval)",
            &series,
            positive,
        )?));
    }
    let records = logs::read_all(&log).map_err(|e| ServeError::io("read", &log, e))?;
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
            s.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
        ]);
        let mut blocks = vec![Block::Text(format!(
            "{} on {}, seed {}: {} at step {} of {}; last {} {}.",
            fmt_opt(s.model.as_deref()),
            fmt_opt(s.data.as_deref()),
            fmt_opt(s.seed),
            state_text(s),
            fmt_opt(s.step),
            fmt_opt(s.steps),
            s.loss_name.as_deref().unwrap_or("loss"),
            s.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
        ))];
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
        blocks.extend(curves(dir, &name)?);
        for p in &d.pictures {
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
            blocks.push(Block::Image {
                src: format!(
                    "data:image/png;base64,{}",
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
            header: ["run", "model", "data", "state", "step", "last loss"]
                .map(String::from)
                .to_vec(),
            rows: overview,
        }],
    }];
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
