//! Axis ticks: "nice" linear ticks on a 1-2-5 ladder, decade ticks for log axes, and
//! their labels.
//!
//! Linear ticks cover the data: the axis range is widened to whole multiples of the step,
//! so that the first and last tick are the ends of the axis. Log ticks are powers of ten
//! (every k-th decade when the range spans very many).

/// Ticks of a linear axis; `ticks[0]` and `ticks[last]` are the axis ends.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearTicks {
    /// Distance between two ticks (1, 2 or 5 times a power of ten).
    pub step: f64,
    /// Tick values, increasing.
    pub values: Vec<f64>,
}

/// Smallest 1-2-5 step whose ticks split `[lo, hi]` into about `target` intervals.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|&m| norm <= m * (1.0 + 1e-9))
        .unwrap_or(10.0);
    m * mag
}

/// Nice ticks covering `[lo, hi]` with about `target` intervals.
///
/// Non-finite or reversed input is repaired (reversed ends are swapped, a non-finite range
/// becomes `[0, 1]`); an empty range `lo == hi` is widened by one step around the value.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> LinearTicks {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
        (lo.min(hi), lo.max(hi))
    } else {
        (0.0, 1.0)
    };
    if hi - lo <= 0.0 || !(hi - lo).is_finite() {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        if (hi - lo).is_finite() {
            lo -= d;
            hi += d;
        } else {
            // Span overflows f64: fall back to a symmetric range of the largest value.
            let m = lo.abs().max(hi.abs()) / 2.0;
            return nice_ticks(-m, m, target);
        }
    }
    let step = nice_step(hi - lo, target);
    let first = (lo / step + 1e-9).floor();
    let last = (hi / step - 1e-9).ceil();
    let usable = step > 0.0 && step.is_finite() && (last - first).is_finite();
    if !usable || last - first > 1000.0 {
        // Degenerate (e.g. subnormal) span: just mark the two ends.
        return LinearTicks {
            step: hi - lo,
            values: vec![lo, hi],
        };
    }
    let values = (first as i64..=last as i64)
        .map(|k| {
            let v = k as f64 * step;
            if v.abs() < step * 1e-9 {
                0.0
            } else {
                v
            }
        })
        .collect::<Vec<f64>>();
    if values.iter().any(|v| !v.is_finite()) {
        // Whole steps past the ends overflow f64: mark the ends themselves.
        return LinearTicks {
            step: hi / 2.0 - lo / 2.0,
            values: vec![lo, hi],
        };
    }
    LinearTicks { step, values }
}

/// Strips trailing zeros (and a trailing dot) from a decimal number string.
fn trim_zeros(s: &str) -> String {
    if !s.contains('.') {
        return s.to_string();
    }
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Label of tick `v` on an axis whose step is `step`: plain decimals with just enough
/// digits for the step, or scientific notation for very large or very small values.
pub fn format_tick(v: f64, step: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            format!("{v}")
        };
    }
    let big = v.abs().max(step.abs());
    if big >= 1e6 || (step.abs() < 1e-4 && v.abs() < 1e-3) {
        // Mantissa digits: enough to tell neighbouring ticks apart.
        let digits =
            ((v.abs().log10().floor() - step.abs().log10().floor()).max(0.0) as usize).min(12);
        let s = format!("{:.*e}", digits, v);
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        return format!("{}e{}", trim_zeros(mantissa), exp);
    }
    let decimals = (-step.log10() - 1e-9).ceil().max(0.0) as usize;
    let s = trim_zeros(&format!("{:.*}", decimals.min(12), v));
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// Decade exponents `lo..=hi` (every `stride`-th) covering positive `[min, max]`.
///
/// Returns `(exponents, axis_lo_exponent, axis_hi_exponent)`; the axis runs from
/// `10^axis_lo` to `10^axis_hi`. A range inside one decade is widened to whole decades.
pub fn log_ticks(min: f64, max: f64) -> (Vec<i32>, i32, i32) {
    let ok = |v: f64| v.is_finite() && v > 0.0;
    let (min, max) = match (ok(min), ok(max)) {
        (true, true) => (min.min(max), min.max(max)),
        (true, false) => (min, min),
        (false, true) => (max, max),
        (false, false) => (1.0, 10.0),
    };
    let mut lo = min.log10().floor() as i32;
    let mut hi = max.log10().ceil() as i32;
    if hi <= lo {
        // A single exact power of ten: show the decade on each side.
        lo -= 1;
        hi += 1;
    }
    let span = (hi - lo) as usize;
    let stride = span.div_ceil(8).max(1) as i32;
    // Align to multiples of the stride so labels read 1e-6, 1e-3, 1, ...
    lo = lo.div_euclid(stride) * stride;
    hi = -((-hi).div_euclid(stride) * stride);
    let exps = (lo..=hi).step_by(stride as usize).collect();
    (exps, lo, hi)
}

/// Label of the decade tick `10^k`: plain for `-4 <= k <= 5`, else `1e{k}`.
pub fn format_decade(k: i32) -> String {
    match k {
        0..=5 => format!("1{}", "0".repeat(k as usize)),
        -4..=-1 => format!("0.{}1", "0".repeat((-k - 1) as usize)),
        _ => format!("1e{k}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(t: &LinearTicks) -> Vec<String> {
        t.values.iter().map(|&v| format_tick(v, t.step)).collect()
    }

    #[test]
    fn unit_range_gives_fifths() {
        let t = nice_ticks(0.0, 1.0, 5);
        assert_eq!(labels(&t), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
    }

    #[test]
    fn ranges_are_widened_to_whole_steps() {
        let t = nice_ticks(0.0, 2999.0, 6);
        assert_eq!(
            labels(&t),
            ["0", "500", "1000", "1500", "2000", "2500", "3000"]
        );
        let t = nice_ticks(-0.13, 0.27, 5);
        assert_eq!(labels(&t), ["-0.2", "-0.1", "0", "0.1", "0.2", "0.3"]);
        let t = nice_ticks(3.0, 3.0, 5);
        assert!(t.values[0] < 3.0 && *t.values.last().unwrap() > 3.0);
        let t = nice_ticks(f64::NAN, 1.0, 5);
        assert_eq!(labels(&t), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        let t = nice_ticks(-f64::MAX, f64::MAX, 5);
        assert!(t.values.iter().all(|v| v.is_finite()));
        let t = nice_ticks(-f64::MAX / 2.0, f64::MAX / 2.0, 6);
        assert!(t.values.iter().all(|v| v.is_finite()), "{t:?}");
        assert!(labels(&t).iter().all(|l| !l.contains("inf")));
    }

    #[test]
    fn extreme_labels_use_exponents() {
        let t = nice_ticks(0.0, 2.5e7, 5);
        assert_eq!(labels(&t)[1], "5e6");
        assert_eq!(format_tick(1.5e7, 5e6), "1.5e7");
        let t = nice_ticks(0.0, 5e-320, 5);
        assert!(t.values.len() <= 1001);
        assert_eq!(format_tick(2.5e-5, 5e-6), "2.5e-5");
        assert_eq!(format_tick(0.05, 0.05), "0.05");
    }

    #[test]
    fn log_ticks_are_decades() {
        let (exps, lo, hi) = log_ticks(0.05, 20.0);
        assert_eq!(exps, [-2, -1, 0, 1, 2]);
        assert_eq!((lo, hi), (-2, 2));
        let names: Vec<String> = exps.iter().map(|&k| format_decade(k)).collect();
        assert_eq!(names, ["0.01", "0.1", "1", "10", "100"]);
        assert_eq!(format_decade(-7), "1e-7");
        assert_eq!(format_decade(9), "1e9");
        let (exps, _, _) = log_ticks(1.0, 1.0);
        assert_eq!(exps, [-1, 0, 1]);
        let (exps, _, _) = log_ticks(1e-20, 1e20);
        assert!(exps.len() <= 9 && exps.contains(&0), "{exps:?}");
    }
}
