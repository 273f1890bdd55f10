//! Pictures and pages of continual-learning runs: the accuracy matrix as a heat map with its
//! numbers, each task's accuracy over training (genlab-report's line chart), the run's HTML
//! page, and the table of several runs (mean and standard deviation over seeds).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use genlab_core::{Error, Result};
use genlab_report::{line_chart_svg, Block, Page, Section, Series};

use crate::train::RunResult;

fn report_err(e: genlab_report::ReportError) -> Error {
    Error::InvalidInput(e.to_string())
}

/// The accuracy matrix as an SVG heat map (viridis, 0 to 100%), each cell with its value.
pub fn matrix_svg(r: &[Vec<f64>], title: &str) -> String {
    let t = r.len();
    let cell = 56.0;
    let (left, top) = (90.0, 50.0);
    let w = left + cell * t as f64 + 20.0;
    let h = top + cell * t as f64 + 50.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        genlab_report::escape_markup(title)
    );
    for (i, row) in r.iter().enumerate() {
        let y = top + cell * i as f64;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">after task {}</text>"#,
            left - 6.0,
            y + cell / 2.0 + 4.0,
            i + 1
        );
        for (j, v) in row.iter().enumerate() {
            let x = left + cell * j as f64;
            let c = genlab_report::viridis(v.clamp(0.0, 1.0));
            let ink = if *v > 0.6 { "#000" } else { "#fff" };
            let _ = write!(
                s,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({},{},{})" stroke="#fff"/><text x="{}" y="{}" text-anchor="middle" fill="{ink}">{:.1}</text>"##,
                c[0],
                c[1],
                c[2],
                x + cell / 2.0,
                y + cell / 2.0 + 4.0,
                100.0 * v
            );
        }
    }
    for j in 0..t {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">task {}</text>"#,
            left + cell * j as f64 + cell / 2.0,
            top + cell * t as f64 + 18.0,
            j + 1
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">tested on</text></svg>"#,
        left + cell * t as f64 / 2.0,
        top + cell * t as f64 + 38.0
    );
    s
}

/// Each task's accuracy (%) over training iterations, as an SVG line chart.
pub fn curves_svg(res: &RunResult) -> Result<String> {
    let tasks = res.accuracy.len();
    let series: Vec<Series> = (0..tasks)
        .map(|j| Series {
            name: format!("task {}", j + 1),
            points: res
                .curves
                .iter()
                .map(|p| (p.iteration as f64, 100.0 * p.accuracy[j]))
                .collect(),
        })
        .collect();
    line_chart_svg(
        "test accuracy of each task during training",
        "iteration",
        "accuracy (%)",
        &series,
        false,
    )
    .map_err(report_err)
}

fn pct(v: f64) -> String {
    format!("{:.2}", 100.0 * v)
}

/// Writes `result.json`, `matrix.svg`, `curves.svg` and `index.html` into `dir`.
pub fn write_run(dir: &Path, res: &RunResult) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let json = serde_json::to_string_pretty(res)
        .map_err(|e| Error::Config(format!("cannot serialise the result: {e}")))?;
    let write = |name: &str, text: &str| {
        genlab_report::write_atomic(&dir.join(name), text.as_bytes()).map_err(report_err)
    };
    write("result.json", &json)?;
    let c = &res.config;
    let title = format!(
        "{} on {} ({}), seed {}",
        c.method,
        c.benchmark,
        c.scenario.title(),
        c.seed
    );
    let matrix = matrix_svg(&res.accuracy, "accuracy (%) after each task, on each task");
    let curves = curves_svg(res)?;
    write("matrix.svg", &matrix)?;
    write("curves.svg", &curves)?;
    let m = &res.measures;
    let tasks = res.accuracy.len();
    let mut header = vec!["after task".to_string()];
    header.extend((1..=tasks).map(|j| format!("task {j}")));
    let rows: Vec<Vec<String>> = res
        .accuracy
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = vec![(i + 1).to_string()];
            row.extend(r.iter().map(|v| pct(*v)));
            row
        })
        .collect();
    let mut memory_rows: Vec<Vec<String>> = vec![vec![
        "classifier".into(),
        res.classifier_params.to_string(),
        format!("{:.2}", 4.0 * res.classifier_params as f64 / 1e6),
    ]];
    memory_rows.extend(res.memory.iter().map(|m| {
        vec![
            m.what.clone(),
            m.floats.to_string(),
            format!("{:.2}", m.bytes as f64 / 1e6),
        ]
    }));
    let page = Page {
        title: title.clone(),
        sections: vec![
            Section {
                heading: "Measures".into(),
                blocks: vec![Block::Table {
                    header: vec![
                        "average accuracy (%)".into(),
                        "backward transfer".into(),
                        "forward transfer".into(),
                        "forgetting".into(),
                        "seconds".into(),
                    ],
                    rows: vec![vec![
                        pct(m.average_accuracy),
                        pct(m.backward_transfer),
                        pct(m.forward_transfer),
                        pct(m.forgetting),
                        format!("{:.1}", res.seconds),
                    ]],
                }],
            },
            Section {
                heading: "Accuracy matrix".into(),
                blocks: vec![Block::Svg(matrix), Block::Table { header, rows }],
            },
            Section {
                heading: "Accuracy during training".into(),
                blocks: vec![
                    Block::Text(format!(
                        "Each task's accuracy on its first {} test examples, every {} iterations \
                         ({} per task).",
                        c.curve_examples, c.eval_every, c.iters
                    )),
                    Block::Svg(curves),
                ],
            },
            Section {
                heading: "Memory".into(),
                blocks: vec![Block::Table {
                    header: vec!["what".into(), "floats".into(), "MB (f32)".into()],
                    rows: memory_rows,
                }],
            },
            Section {
                heading: "Config".into(),
                blocks: vec![Block::Code(
                    serde_json::to_string_pretty(c).unwrap_or_default(),
                )],
            },
        ],
    };
    genlab_report::write_html(&page, dir.join("index.html")).map_err(report_err)
}

/// One cell of a table: a method in a scenario over seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub method: String,
    pub scenario: String,
    pub seeds: usize,
    /// Mean and sample standard deviation of the average accuracy (%).
    pub mean: f64,
    pub std: f64,
    pub values: Vec<f64>,
    pub mean_seconds: f64,
}

/// Groups results by method and scenario.
pub fn cells(results: &[RunResult]) -> Vec<Cell> {
    let mut groups: BTreeMap<(usize, usize), Vec<&RunResult>> = BTreeMap::new();
    for r in results {
        let mi = crate::methods::METHODS
            .iter()
            .position(|m| m.name == r.config.method)
            .unwrap_or(usize::MAX);
        let si = crate::Scenario::ALL
            .iter()
            .position(|s| *s == r.config.scenario)
            .unwrap_or(0);
        groups.entry((mi, si)).or_default().push(r);
    }
    groups
        .into_values()
        .map(|rs| {
            let values: Vec<f64> = rs
                .iter()
                .map(|r| 100.0 * r.measures.average_accuracy)
                .collect();
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let std = if values.len() > 1 {
                (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            } else {
                0.0
            };
            Cell {
                method: rs[0].config.method.clone(),
                scenario: rs[0].config.scenario.name().to_string(),
                seeds: values.len(),
                mean,
                std,
                values,
                mean_seconds: rs.iter().map(|r| r.seconds).sum::<f64>() / n,
            }
        })
        .collect()
}

/// The table as text: one row per method, one column per scenario, `mean ± std (seeds)`.
pub fn table_text(cells: &[Cell]) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for c in cells {
        if !methods.contains(&c.method.as_str()) {
            methods.push(&c.method);
        }
    }
    let mut s = format!(
        "{:<14} {:>20} {:>20} {:>20}\n",
        "method", "Task-IL", "Domain-IL", "Class-IL"
    );
    for m in methods {
        let _ = write!(s, "{m:<14}");
        for sc in ["task", "domain", "class"] {
            let v = cells
                .iter()
                .find(|c| c.method == m && c.scenario == sc)
                .map(|c| format!("{:.2} ± {:.2} ({})", c.mean, c.std, c.seeds))
                .unwrap_or_else(|| "-".into());
            let _ = write!(s, " {v:>20}");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_svg_has_a_cell_per_entry_with_its_percentage() {
        let svg = matrix_svg(&[vec![0.991, 0.5], vec![0.25, 1.0]], "t");
        assert_eq!(svg.matches("<rect").count(), 4);
        for v in ["99.1", "50.0", "25.0", "100.0"] {
            assert!(svg.contains(&format!(">{v}<")), "{v}");
        }
    }
}
