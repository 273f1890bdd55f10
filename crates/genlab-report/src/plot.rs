//! Line charts as self-contained SVG (loss curves, metrics over training).
//!
//! A 640 x 400 chart with a title, a framed plot area, light grid lines at "nice" ticks
//! (1-2-5 steps, or decades on a log y axis), tick labels, axis labels and a legend, one
//! colour per series. Series with many points (at least [`SMOOTH_MIN_POINTS`]) are drawn
//! faint, with a bold exponential moving average on top, so that a noisy loss curve still
//! shows its trend. Non-finite points (and, on a log axis, points with `y <= 0`) are
//! skipped. Very long series are thinned to per-bucket minima and maxima, which keeps the
//! file small without hiding spikes.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};
use crate::escape::escape_markup;
use crate::ticks::{format_decade, format_tick, log_ticks, nice_ticks};

/// One named line of a chart: `(x, y)` points in drawing order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name` with points `(i, y_i)`, for values indexed by step.
    pub fn from_values(name: impl Into<String>, values: &[f64]) -> Self {
        Series {
            name: name.into(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, &y)| (i as f64, y))
                .collect(),
        }
    }
}

/// Series with at least this many plottable points also get a smoothed line.
pub const SMOOTH_MIN_POINTS: usize = 200;
/// Series colours, used in order and then repeated.
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
/// Chart width in SVG user units (pixels).
pub const CHART_WIDTH: f64 = 640.0;
/// Chart height in SVG user units (pixels).
pub const CHART_HEIGHT: f64 = 400.0;

/// Plot area: left, right, top, bottom.
const X0: f64 = 72.0;
const X1: f64 = 620.0;
const Y0: f64 = 40.0;
const Y1: f64 = 340.0;
/// Paths longer than this are thinned to per-bucket minima and maxima.
const MAX_PATH_POINTS: usize = 2000;
/// At most this many legend entries are listed.
const MAX_LEGEND: usize = 12;
/// Longest series name shown in the legend, in characters.
const MAX_NAME_CHARS: usize = 28;

/// Exponential moving average of `ys`, debiased so the start is not pulled towards 0.
fn ema(ys: &[f64]) -> Vec<f64> {
    let span = (ys.len() as f64 / 50.0).max(5.0);
    let beta = 1.0 - 2.0 / (span + 1.0);
    let mut acc = 0.0;
    let mut weight = 0.0;
    ys.iter()
        .map(|&y| {
            acc = beta * acc + (1.0 - beta) * y;
            weight = beta * weight + (1.0 - beta);
            acc / weight
        })
        .collect()
}

/// Thins `pts` to at most about [`MAX_PATH_POINTS`], keeping each bucket's min and max.
fn thin(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if pts.len() <= MAX_PATH_POINTS {
        return pts.to_vec();
    }
    let bucket = pts.len().div_ceil(MAX_PATH_POINTS / 2);
    let mut out = Vec::with_capacity(MAX_PATH_POINTS + 2);
    for chunk in pts.chunks(bucket) {
        let lo = (0..chunk.len()).min_by(|&a, &b| chunk[a].1.total_cmp(&chunk[b].1));
        let hi = (0..chunk.len()).max_by(|&a, &b| chunk[a].1.total_cmp(&chunk[b].1));
        if let (Some(lo), Some(hi)) = (lo, hi) {
            out.push(chunk[lo.min(hi)]);
            if lo != hi {
                out.push(chunk[lo.max(hi)]);
            }
        }
    }
    out
}

/// Linear map from the axis ranges to the plot area.
struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

/// Position of `v` between `lo` (0) and `hi` (1); halved operands keep extreme ranges
/// from overflowing, and an empty or broken range gives the middle.
fn fraction(v: f64, (lo, hi): (f64, f64)) -> f64 {
    let t = (v / 2.0 - lo / 2.0) / (hi / 2.0 - lo / 2.0);
    if t.is_finite() {
        t
    } else {
        0.5
    }
}

impl Frame {
    fn sx(&self, x: f64) -> f64 {
        X0 + fraction(x, self.x) * (X1 - X0)
    }
    fn sy(&self, y: f64) -> f64 {
        Y1 - fraction(y, self.y) * (Y1 - Y0)
    }
}

/// SVG path data through `pts` (already in plot space); a lone point becomes a dot.
fn path_data(frame: &Frame, pts: &[(f64, f64)]) -> String {
    let mut d = String::with_capacity(pts.len() * 16);
    for (i, &(x, y)) in pts.iter().enumerate() {
        let cmd = if i == 0 { 'M' } else { 'L' };
        let _ = write!(d, "{cmd}{:.2} {:.2}", frame.sx(x), frame.sy(y));
    }
    if pts.len() == 1 {
        d.push_str(" l0 0");
    }
    d
}

/// Top-left corner of the legend box: the plot corner (top-right preferred) whose box
/// would cover the least of the drawn lines.
fn legend_corner(frame: &Frame, data: &[Vec<(f64, f64)>], w: f64, h: f64) -> (f64, f64) {
    let (left, right) = (X0 + 8.0, X1 - w - 8.0);
    let (top, bottom) = (Y0 + 8.0, Y1 - h - 8.0);
    let corners = [(right, top), (left, top), (right, bottom), (left, bottom)];
    // Points along every drawn segment, about 4 px apart, in plot space.
    let mut samples = Vec::new();
    for pts in data {
        let line: Vec<(f64, f64)> = thin(pts)
            .iter()
            .map(|p| (frame.sx(p.0), frame.sy(p.1)))
            .collect();
        samples.extend(line.first().copied());
        for seg in line.windows(2) {
            let (a, b) = (seg[0], seg[1]);
            let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
            let steps = (len / 4.0).ceil().clamp(1.0, 200.0) as usize;
            samples.extend((1..=steps).map(|k| {
                let t = k as f64 / steps as f64;
                (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
            }));
        }
    }
    let covered = |&(cx, cy): &(f64, f64)| {
        samples
            .iter()
            .filter(|&&(x, y)| {
                x >= cx - 4.0 && x <= cx + w + 4.0 && y >= cy - 4.0 && y <= cy + h + 4.0
            })
            .count()
    };
    // min_by_key keeps the first of equal counts, so top-right wins ties.
    corners
        .iter()
        .copied()
        .min_by_key(covered)
        .unwrap_or(corners[0])
}

/// Shortens `name` to [`MAX_NAME_CHARS`] characters with an ellipsis.
fn short_name(name: &str) -> String {
    if name.chars().count() <= MAX_NAME_CHARS {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(MAX_NAME_CHARS - 1).collect();
        s.push('…');
        s
    }
}

/// The plottable points of one series, with y on the log10 scale when `log_y`.
fn plottable(s: &Series, log_y: bool) -> Vec<(f64, f64)> {
    s.points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
        .map(|&(x, y)| (x, if log_y { y.log10() } else { y }))
        .collect()
}

/// Renders `series` as a self-contained SVG line chart (640 x 400).
///
/// With `log_y` the y axis is logarithmic with decade ticks and points with `y <= 0` are
/// skipped. Each series with plottable points gives one `<path>`, plus a second (the
/// smoothed line) when it has at least [`SMOOTH_MIN_POINTS`] points; a chart without any
/// plottable point still renders, with a "no finite data" note. Errors when `series` is
/// empty.
pub fn line_chart_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> Result<String> {
    line_chart_bands_svg(title, x_label, y_label, series, &[], log_y)
}

/// [`line_chart_svg`] with a shaded band under each series: `bands[i]` holds `(x, low,
/// high)` of series `i` (empty or missing: no band), drawn as a translucent polygon in the
/// series' colour below the lines; the axes cover the bands too.
pub fn line_chart_bands_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    bands: &[Vec<(f64, f64, f64)>],
    log_y: bool,
) -> Result<String> {
    if series.is_empty() {
        return Err(ReportError::invalid("line chart needs at least one series"));
    }
    if bands.len() > series.len() {
        return Err(ReportError::invalid(format!(
            "{} bands for {} series",
            bands.len(),
            series.len()
        )));
    }
    let data: Vec<Vec<(f64, f64)>> = series.iter().map(|s| plottable(s, log_y)).collect();
    let ys = |y: f64| if log_y { y.log10() } else { y };
    let band_pts: Vec<Vec<(f64, f64, f64)>> = bands
        .iter()
        .map(|b| {
            b.iter()
                .filter(|(x, lo, hi)| {
                    x.is_finite()
                        && lo.is_finite()
                        && hi.is_finite()
                        && (!log_y || (*lo > 0.0 && *hi > 0.0))
                })
                .map(|&(x, lo, hi)| (x, ys(lo), ys(hi)))
                .collect()
        })
        .collect();
    let edges: Vec<(f64, f64)> = band_pts
        .iter()
        .flatten()
        .flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)])
        .collect();
    let all = || data.iter().flatten().chain(edges.iter());
    let have_data = all().next().is_some();
    let (xmin, xmax) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let (ymin, ymax) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });

    // Ticks: (position in plot space, label), plus faint minor grid positions.
    let xt = if have_data {
        nice_ticks(xmin, xmax, 6)
    } else {
        nice_ticks(0.0, 1.0, 5)
    };
    let x_ticks: Vec<(f64, String)> = xt
        .values
        .iter()
        .map(|&v| (v, format_tick(v, xt.step)))
        .collect();
    let mut minor_y = Vec::new();
    let (y_ticks, y_range): (Vec<(f64, String)>, (f64, f64)) = if log_y {
        let (lo, hi) = if have_data {
            (10f64.powf(ymin), 10f64.powf(ymax))
        } else {
            (1.0, 10.0)
        };
        let (exps, elo, ehi) = log_ticks(lo, hi);
        if exps.len() >= 2 && exps[1] - exps[0] == 1 && ehi - elo <= 6 {
            for k in elo..ehi {
                minor_y.extend((2..10).map(|m| k as f64 + (m as f64).log10()));
            }
        }
        let ticks = exps.iter().map(|&k| (k as f64, format_decade(k))).collect();
        (ticks, (elo as f64, ehi as f64))
    } else {
        let yt = if have_data {
            nice_ticks(ymin, ymax, 5)
        } else {
            nice_ticks(0.0, 1.0, 5)
        };
        let ticks: Vec<(f64, String)> = yt
            .values
            .iter()
            .map(|&v| (v, format_tick(v, yt.step)))
            .collect();
        let range = (yt.values[0], *yt.values.last().unwrap_or(&1.0));
        (ticks, range)
    };
    let x_range = (xt.values[0], *xt.values.last().unwrap_or(&1.0));
    let frame = Frame {
        x: x_range,
        y: y_range,
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#,
        w = CHART_WIDTH,
        h = CHART_HEIGHT
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        CHART_WIDTH / 2.0,
        escape_markup(title)
    );

    // Grid lines and tick labels.
    let _ = writeln!(svg, r##"<g stroke="#f0f0f0" stroke-width="1">"##);
    for &m in &minor_y {
        let y = frame.sy(m);
        let _ = writeln!(
            svg,
            r#"<line x1="{X0}" y1="{y:.2}" x2="{X1}" y2="{y:.2}"/>"#
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(svg, r##"<g stroke="#dcdcdc" stroke-width="1">"##);
    for (v, _) in &x_ticks {
        let x = frame.sx(*v);
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.2}" y1="{Y0}" x2="{x:.2}" y2="{Y1}"/>"#
        );
    }
    for (v, _) in &y_ticks {
        let y = frame.sy(*v);
        let _ = writeln!(
            svg,
            r#"<line x1="{X0}" y1="{y:.2}" x2="{X1}" y2="{y:.2}"/>"#
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r##"<rect x="{X0}" y="{Y0}" width="{}" height="{}" fill="none" stroke="#444" stroke-width="1"/>"##,
        X1 - X0,
        Y1 - Y0
    );
    let _ = writeln!(
        svg,
        r##"<g fill="#333" class="x-ticks" text-anchor="middle">"##
    );
    for (v, label) in &x_ticks {
        let _ = writeln!(
            svg,
            r#"<text x="{:.2}" y="{:.1}">{}</text>"#,
            frame.sx(*v),
            Y1 + 17.0,
            escape_markup(label)
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r##"<g fill="#333" class="y-ticks" text-anchor="end">"##
    );
    for (v, label) in &y_ticks {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.2}" dy="0.35em">{}</text>"#,
            X0 - 6.0,
            frame.sy(*v),
            escape_markup(label)
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (X0 + X1) / 2.0,
        CHART_HEIGHT - 16.0,
        escape_markup(x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (Y0 + Y1) / 2.0,
        escape_markup(y_label)
    );
    if !have_data {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#a00">no finite data</text>"##,
            (X0 + X1) / 2.0,
            (Y0 + Y1) / 2.0
        );
    }

    // Bands under everything else.
    for (i, b) in band_pts.iter().enumerate() {
        if b.len() < 2 {
            continue;
        }
        let colour = PALETTE[i % PALETTE.len()];
        let outline: Vec<(f64, f64)> = b
            .iter()
            .map(|p| (p.0, p.2))
            .chain(b.iter().rev().map(|p| (p.0, p.1)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<path class="band" d="{}Z" fill="{colour}" fill-opacity="0.18" stroke="none"/>"#,
            path_data(&frame, &outline)
        );
    }

    // Series: raw lines (faint when smoothed), then the smoothed lines on top.
    let mut smoothed = Vec::new();
    for (i, pts) in data.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let colour = PALETTE[i % PALETTE.len()];
        let smooth = pts.len() >= SMOOTH_MIN_POINTS;
        let (width, opacity) = if smooth { (1.0, 0.3) } else { (1.8, 1.0) };
        let _ = writeln!(
            svg,
            r#"<path class="series" d="{}" fill="none" stroke="{colour}" stroke-width="{width}" stroke-opacity="{opacity}" stroke-linejoin="round" stroke-linecap="round"/>"#,
            path_data(&frame, &thin(pts))
        );
        if smooth {
            let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
            let line: Vec<(f64, f64)> = pts.iter().map(|p| p.0).zip(ema(&ys)).collect();
            smoothed.push((colour, line));
        }
    }
    for (colour, line) in &smoothed {
        let _ = writeln!(
            svg,
            r#"<path class="smoothed" d="{}" fill="none" stroke="{colour}" stroke-width="2.4" stroke-linejoin="round" stroke-linecap="round"/>"#,
            path_data(&frame, &thin(line))
        );
    }

    // Legend, top-right inside the plot area.
    let shown = series.len().min(MAX_LEGEND);
    let extra = series.len() - shown;
    let names: Vec<String> = series[..shown]
        .iter()
        .zip(&data)
        .map(|(s, pts)| {
            let n = short_name(&s.name);
            if pts.is_empty() {
                format!("{n} (no data)")
            } else {
                n
            }
        })
        .collect();
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let rows = shown + usize::from(extra > 0);
    let box_w = 40.0 + 6.6 * longest.max(6) as f64;
    let box_h = 8.0 + 18.0 * rows as f64;
    let (lx, ly) = legend_corner(&frame, &data, box_w, box_h);
    let _ = writeln!(svg, r#"<g class="legend">"#);
    let _ = writeln!(
        svg,
        r##"<rect x="{lx:.1}" y="{ly:.1}" width="{box_w:.1}" height="{box_h:.1}" fill="white" fill-opacity="0.85" stroke="#ccc"/>"##
    );
    for (i, name) in names.iter().enumerate() {
        let y = ly + 15.0 + 18.0 * i as f64;
        let colour = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2.4"/>"#,
            lx + 8.0,
            y - 4.0,
            lx + 26.0,
            y - 4.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{y:.1}">{}</text>"#,
            lx + 32.0,
            escape_markup(name)
        );
    }
    if extra > 0 {
        let y = ly + 15.0 + 18.0 * shown as f64;
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{y:.1}" fill="#666">+{extra} more</text>"##,
            lx + 32.0
        );
    }
    let _ = writeln!(svg, "</g>");
    svg.push_str("</svg>\n");
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(s: &str, needle: &str) -> usize {
        s.matches(needle).count()
    }

    #[test]
    fn title_paths_and_linear_ticks() {
        let a = Series {
            name: "train".into(),
            points: vec![(0.0, 0.0), (1.0, 0.5), (2.0, 1.0), (3.0, f64::NAN)],
        };
        let b = Series {
            name: "val".into(),
            points: vec![(0.0, 1.0), (2.0, 0.1)],
        };
        let svg = line_chart_svg("My <chart>", "step", "loss", &[a, b], false).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("My &lt;chart&gt;"));
        assert_eq!(count(&svg, "<path"), 2);
        for label in ["0", "0.2", "0.4", "0.6", "0.8", "1"] {
            assert!(svg.contains(&format!(">{label}</text>")), "missing {label}");
        }
        assert!(svg.contains(">0.5</text>") && svg.contains(">1.5</text>"));
        assert!(svg.contains(">train</text>") && svg.contains(">val</text>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(svg.contains(PALETTE[0]) && svg.contains(PALETTE[1]));
    }

    #[test]
    fn bands_are_polygons_under_the_lines_and_widen_the_axis() {
        let s = Series {
            name: "probe".into(),
            points: vec![(1.0, 50.0), (2.0, 60.0), (3.0, 70.0)],
        };
        let band = vec![(1.0, 40.0, 55.0), (2.0, 58.0, 63.0), (3.0, 69.0, 90.0)];
        let svg =
            line_chart_bands_svg("t", "x", "y", std::slice::from_ref(&s), &[band], false).unwrap();
        assert_eq!(count(&svg, r#"class="band""#), 1);
        // The band comes before (under) the series' line.
        assert!(svg.find(r#"class="band""#) < svg.find(r#"class="series""#));
        // The y axis reaches the band's 40 and 90, which the line alone does not.
        assert!(
            svg.contains(">40</text>") && svg.contains(">90</text>"),
            "{svg}"
        );
        let d = svg.split(r#"class="band" d=""#).nth(1).unwrap();
        let d = &d[..d.find('"').unwrap()];
        // Upper edge left to right, lower edge back: 6 corners, closed.
        assert_eq!(d.matches(['M', 'L']).count(), 6);
        assert!(d.ends_with('Z'));
        // No band: the plain chart, byte for byte.
        assert_eq!(
            line_chart_bands_svg("t", "x", "y", std::slice::from_ref(&s), &[], false).unwrap(),
            line_chart_svg("t", "x", "y", std::slice::from_ref(&s), false).unwrap()
        );
        assert!(line_chart_bands_svg("t", "x", "y", &[s], &[vec![], vec![]], false).is_err());
    }

    #[test]
    fn long_series_get_a_smoothed_line() {
        let loss: Vec<f64> = (0..3000)
            .map(|i| 2.0 * (-(i as f64) / 800.0).exp() + 0.05 * ((i * 7919) % 13) as f64 / 13.0)
            .collect();
        let s = Series::from_values("loss", &loss);
        let short = Series::from_values("eval", &[1.0, 0.5, 0.3]);
        let svg = line_chart_svg("Loss", "step", "loss", &[s, short], true).unwrap();
        assert_eq!(count(&svg, "<path"), 3);
        assert_eq!(count(&svg, r#"class="smoothed""#), 1);
    }

    #[test]
    fn log_axis_has_decade_ticks() {
        let s = Series {
            name: "x".into(),
            points: vec![(0.0, 0.05), (1.0, 20.0), (2.0, 0.0), (3.0, -1.0)],
        };
        let svg = line_chart_svg("t", "x", "y", &[s], true).unwrap();
        for label in ["0.01", "0.1", "1", "10", "100"] {
            assert!(
                svg.contains(&format!("dy=\"0.35em\">{label}</text>")),
                "missing {label}"
            );
        }
        assert!(!svg.contains(">0.05</text>"));
    }

    #[test]
    fn legend_avoids_the_data() {
        // Only three vertices: the legend must avoid the segments, not just the vertices.
        let rising = Series {
            name: "rising".into(),
            points: vec![(0.0, 0.0), (15.0, 20.0), (20.0, 16.0)],
        };
        let svg = line_chart_svg("t", "x", "y", &[rising], false).unwrap();
        // The last segment cuts the top-right corner (no vertex there): legend top-left.
        let legend = svg.split(r#"<g class="legend">"#).nth(1).unwrap();
        assert!(legend.contains(&format!(r#"<rect x="{:.1}" y="{:.1}""#, X0 + 8.0, Y0 + 8.0)));
    }

    #[test]
    fn ema_and_thinning() {
        let e = ema(&[1.0; 10]);
        assert!(e.iter().all(|v| (v - 1.0).abs() < 1e-12));
        let e = ema(&[0.0, 10.0]);
        assert!(e[1] > 0.0 && e[1] < 10.0);
        let mut pts: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, 0.0)).collect();
        pts[51_234].1 = 9.0;
        let t = thin(&pts);
        assert!(t.len() <= MAX_PATH_POINTS + 2);
        assert!(t.iter().any(|p| p.1 == 9.0), "spike lost");
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn empty_and_degenerate_inputs() {
        assert!(matches!(
            line_chart_svg("t", "x", "y", &[], false),
            Err(ReportError::InvalidInput(_))
        ));
        let nan = Series {
            name: "nan".into(),
            points: vec![(0.0, f64::NAN)],
        };
        let svg = line_chart_svg("t", "x", "y", &[nan], false).unwrap();
        assert!(svg.contains("no finite data") && svg.contains("(no data)"));
        assert_eq!(count(&svg, "<path"), 0);
        let one = Series {
            name: "one".into(),
            points: vec![(5.0, 5.0)],
        };
        let svg = line_chart_svg("t", "x", "y", &[one], false).unwrap();
        assert_eq!(count(&svg, "<path"), 1);
        assert!(!svg.contains("NaN"));
        let extreme = Series {
            name: "extreme".into(),
            points: vec![(-f64::MAX, f64::MAX), (f64::MAX, -f64::MAX), (0.0, 1e-300)],
        };
        for log_y in [false, true] {
            let svg = line_chart_svg("t", "x", "y", std::slice::from_ref(&extreme), log_y).unwrap();
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }
}
