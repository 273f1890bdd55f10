//! Motion fidelity: how far the ink's centre-of-mass trajectory is from the best billiard
//! trajectory (constant velocity, elastic bounces off the walls), the motion Moving MNIST
//! is made of (Srivastava, Mansimov & Salakhutdinov 2015, arXiv:1502.04681, Sec. 3).
//!
//! Per axis the model is `p(t) = reflect(p0 + v t)` into `[lo, hi]`, where `reflect` folds
//! the line back and forth between the walls (a triangle wave of period `2 (hi - lo)`).
//! `[lo, hi]` is the range the centre of mass can reach: from the ink's extent, `lo = a + m`
//! and `hi = b - m`, where `a` is where the centre of mass is when the ink touches the
//! low wall (the median over frames of centre minus ink minimum), `b` likewise at the high
//! wall, and `m >= 0` the margin between the ink and the box that actually bounces (an
//! MNIST digit's box has a blank rim: 4 of 28 pixels, 2.3 at 16). The fit, per axis:
//! 1. a grid over `m` in `[0, max_margin]`, `p0` in `[lo, hi]` and `v` in `[-L, L]`
//!    (`L = hi - lo`; faster velocities alias onto these when sampled once per frame);
//! 2. from the best few grid points of every `m`, a local refinement that is exact: with the
//!    fold each frame falls in held fixed, the model is `y_t = s_t (p0 + v t) + c_t`
//!    (`s_t = +-1`, `c_t` a constant), so `s_t (y_t - c_t)` is a straight line in `t` and
//!    `(p0, v)` follow in closed form by least squares; folds are recomputed from the new
//!    fit until they stop changing, keeping the best squared error seen; then moves onto
//!    fold boundaries (a frame exactly at a wall, or two: also closed form), since an
//!    optimum can sit on such a kink of the error; then the refinement once more.
//!
//! The clip's error is the root mean square over frames of the 2-D distance between the
//! centre of mass and the fitted position, in pixels. A clip with a frame without ink has
//! no trajectory: it is skipped and counted.

use genlab_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::{ink, Clips};

/// Grid and refinement settings of the billiard fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionFitConfig {
    /// Grid step of the start position, pixels.
    pub p0_step: f64,
    /// Grid step of the velocity, pixels per frame.
    pub v_step: f64,
    /// Grid step of the ink-to-box margin, pixels.
    pub margin_step: f64,
    /// Largest margin tried (the MNIST box's rim is 4 px at 28 px).
    pub max_margin: f64,
    /// Refinement iterations per start (the folds settle in 2-3).
    pub max_refine: usize,
    /// Grid points (the best ones of each margin) the refinement starts from: with noise,
    /// the best grid point can sit in a neighbouring fold pattern's basin.
    pub refine_starts: usize,
}

impl Default for MotionFitConfig {
    fn default() -> Self {
        Self {
            // Half the refinement's basin: a grid point this close to the optimum has the
            // optimum's folds except next to a bounce, which the refinement then corrects.
            p0_step: 0.5,
            v_step: 0.25,
            margin_step: 0.5,
            max_margin: 4.0,
            max_refine: 10,
            refine_starts: 16,
        }
    }
}

impl MotionFitConfig {
    pub fn validate(&self) -> Result<()> {
        let steps = [self.p0_step, self.v_step, self.margin_step];
        if steps.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || !(self.max_margin.is_finite() && self.max_margin >= 0.0)
            || self.refine_starts == 0
        {
            return Err(Error::Config(format!(
                "motion fit: steps and refine_starts must be positive and max_margin \
                 non-negative, got {self:?}"
            )));
        }
        Ok(())
    }
}

/// One axis's fitted billiard motion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisFit {
    pub lo: f64,
    pub hi: f64,
    pub p0: f64,
    /// Velocity of the unfolded line; the velocity at t = 0 is [`AxisFit::v0`].
    pub v: f64,
    /// Sum of squared residuals.
    pub sse: f64,
}

/// `reflect(x)` into `[lo, hi]`, and the sign of its slope there.
pub fn reflect(x: f64, lo: f64, hi: f64) -> (f64, f64) {
    let l = hi - lo;
    if l <= 0.0 {
        return (lo, 0.0);
    }
    let r = (x - lo).rem_euclid(2.0 * l);
    if r <= l {
        (lo + r, 1.0)
    } else {
        (lo + 2.0 * l - r, -1.0)
    }
}

impl AxisFit {
    /// The fitted position at frame `t`.
    pub fn at(&self, t: f64) -> f64 {
        reflect(self.p0 + self.v * t, self.lo, self.hi).0
    }

    /// The velocity at t = 0 (the unfolded velocity, turned by the fold `p0` lies in).
    pub fn v0(&self) -> f64 {
        self.v * reflect(self.p0, self.lo, self.hi).1
    }
}

fn sse(y: &[f64], p0: f64, v: f64, lo: f64, hi: f64) -> f64 {
    y.iter()
        .enumerate()
        .map(|(t, &yt)| {
            let d = yt - reflect(p0 + v * t as f64, lo, hi).0;
            d * d
        })
        .sum()
}

/// Closed-form refinement from `(p0, v)` with the walls fixed (see the module text).
fn refine(y: &[f64], mut p0: f64, mut v: f64, lo: f64, hi: f64, iters: usize) -> (f64, f64, f64) {
    let l = hi - lo;
    let mut best = (p0, v, sse(y, p0, v, lo, hi));
    if l <= 0.0 || y.len() < 2 {
        return best;
    }
    let n = y.len() as f64;
    let mean_t = (n - 1.0) / 2.0;
    let stt: f64 = (0..y.len()).map(|t| (t as f64 - mean_t).powi(2)).sum();
    let mut last_folds: Vec<i64> = Vec::new();
    for _ in 0..iters {
        let mut folds = Vec::with_capacity(y.len());
        let mut z = Vec::with_capacity(y.len());
        for (t, &yt) in y.iter().enumerate() {
            let s = p0 - lo + v * t as f64;
            let k = (s / l).floor() as i64;
            folds.push(k);
            // Even fold: y = p0 + vt - kL; odd fold: y = 2 lo + (k+1) L - (p0 + vt).
            z.push(if k.rem_euclid(2) == 0 {
                yt + k as f64 * l
            } else {
                2.0 * lo + (k + 1) as f64 * l - yt
            });
        }
        if folds == last_folds {
            break;
        }
        let mean_z = z.iter().sum::<f64>() / n;
        let szt: f64 = z
            .iter()
            .enumerate()
            .map(|(t, zt)| (t as f64 - mean_t) * (zt - mean_z))
            .sum();
        v = szt / stt;
        p0 = mean_z - v * mean_t;
        let e = sse(y, p0, v, lo, hi);
        if e < best.2 {
            best = (p0, v, e);
        }
        last_folds = folds;
    }
    best
}

/// Where the least-squares optimum of a fold pattern lies outside that pattern's region, the
/// best fit sits on a boundary between patterns, a kink of the error where frame `t` is at
/// a wall: `p0 + v t = lo + k L`. From `(p0, v)`, this tries every frame at its nearest wall
/// (the other frames' folds held, `v` then follows by least squares in closed form) and
/// every pair of frames at their nearest walls (a vertex: two linear equations), moves to
/// the best true error, and repeats until nothing improves.
fn boundary_moves(y: &[f64], p0: f64, v: f64, e: f64, lo: f64, hi: f64) -> (f64, f64, f64) {
    let l = hi - lo;
    let mut best = (p0, v, e);
    if l <= 0.0 || y.len() < 3 {
        return best;
    }
    for _ in 0..BOUNDARY_ROUNDS {
        let (p0, v) = (best.0, best.1);
        // Unfolded targets z_j (p0 - lo + v j = z_j under the current folds) and the wall
        // nearest to every frame's unfolded position.
        let mut z = Vec::with_capacity(y.len());
        let mut wall = Vec::with_capacity(y.len());
        for (t, &yt) in y.iter().enumerate() {
            let s = p0 - lo + v * t as f64;
            let k = (s / l).floor() as i64;
            z.push(if k.rem_euclid(2) == 0 {
                yt + k as f64 * l - lo
            } else {
                lo + (k + 1) as f64 * l - yt
            });
            wall.push((s / l).round() * l); // unfolded, relative to lo
        }
        let mut cand: Vec<(f64, f64)> = Vec::new();
        for t in 0..y.len() {
            // p0 - lo = wall_t - v t; v from the other frames: (j - t) v = z_j - wall_t.
            let (mut num, mut den) = (0.0, 0.0);
            for (j, zj) in z.iter().enumerate() {
                let d = j as f64 - t as f64;
                num += d * (zj - wall[t]);
                den += d * d;
            }
            let w = num / den;
            cand.push((lo + wall[t] - w * t as f64, w));
            for u in t + 1..y.len() {
                let w = (wall[u] - wall[t]) / (u - t) as f64;
                cand.push((lo + wall[t] - w * t as f64, w));
            }
        }
        let mut moved = false;
        for (p, w) in cand {
            let e = sse(y, p, w, lo, hi);
            if e < best.2 - 1e-15 {
                best = (p, w, e);
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    best
}

/// Rounds of [`boundary_moves`] (each one strictly lowers the error; 2-3 suffice).
const BOUNDARY_ROUNDS: usize = 20;

/// Fits one axis's positions `y` (one per frame) with walls `[a + m, b - m]`, `m` in
/// `[0, cfg.max_margin]` (and `b - a - 2m >= 0`).
pub fn fit_axis(y: &[f64], a: f64, b: f64, cfg: &MotionFitConfig) -> AxisFit {
    let mut best = AxisFit {
        lo: a,
        hi: b,
        p0: y.first().copied().unwrap_or(a),
        v: 0.0,
        sse: f64::INFINITY,
    };
    let margins = (cfg.max_margin / cfg.margin_step + 1e-9).floor() as usize;
    for mi in 0..=margins {
        let m = mi as f64 * cfg.margin_step;
        let (lo, hi) = (a + m, b - m);
        if hi < lo {
            break;
        }
        let l = hi - lo;
        let np = (l / cfg.p0_step).ceil() as usize;
        let nv = (l / cfg.v_step).ceil() as usize;
        // The best `refine_starts` grid points, by squared error.
        let mut starts: Vec<(f64, f64, f64)> = Vec::with_capacity(cfg.refine_starts + 1);
        for ip in 0..=np {
            let p0 = (lo + ip as f64 * cfg.p0_step).min(hi);
            for iv in 0..=2 * nv {
                let v = (iv as f64 - nv as f64) * cfg.v_step;
                let e = sse(y, p0, v, lo, hi);
                if starts.len() < cfg.refine_starts || e < starts[starts.len() - 1].2 {
                    let at = starts.partition_point(|s| s.2 <= e);
                    starts.insert(at, (p0, v, e));
                    starts.truncate(cfg.refine_starts);
                }
            }
        }
        for &(p0, v, _) in &starts {
            let (p0, v, e) = refine(y, p0, v, lo, hi, cfg.max_refine);
            let (p0, v, _) = boundary_moves(y, p0, v, e, lo, hi);
            let (p0, v, e) = refine(y, p0, v, lo, hi, cfg.max_refine);
            if e < best.sse {
                best = AxisFit {
                    lo,
                    hi,
                    p0,
                    v,
                    sse: e,
                };
            }
        }
    }
    best
}

/// The billiard fit of one clip's centre-of-mass trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipMotion {
    /// Centre of mass per frame, `(row, col)`.
    pub trajectory: Vec<[f64; 2]>,
    /// Row and column fits.
    pub fit: [AxisFit; 2],
    /// Root mean square over frames of the 2-D distance to the fit, pixels.
    pub rmse: f64,
}

impl ClipMotion {
    /// The fitted velocity at t = 0, `(row, col)` pixels per frame.
    pub fn velocity(&self) -> [f64; 2] {
        [self.fit[0].v0(), self.fit[1].v0()]
    }
}

/// Fits clip `i`, or `None` when one of its frames has no ink. Ink spread over the whole
/// frame (noise) leaves the centre of mass no room to move: no fit, an infinite `rmse`.
pub fn fit_clip(clips: &Clips, i: usize, cfg: &MotionFitConfig) -> Option<ClipMotion> {
    let (h, w) = clips.frame_size();
    let nt = clips.frames();
    let mut traj = Vec::with_capacity(nt);
    let mut to_low = [Vec::new(), Vec::new()];
    let mut to_high = [Vec::new(), Vec::new()];
    for t in 0..nt {
        let k = ink(&clips.grey_frame(i, t), h, w)?;
        traj.push(k.com);
        for d in 0..2 {
            to_low[d].push(k.com[d] - k.min[d] as f64);
            to_high[d].push(k.max[d] as f64 - k.com[d]);
        }
    }
    let size = [h as f64 - 1.0, w as f64 - 1.0];
    let fit = [0, 1].map(|d| {
        let y: Vec<f64> = traj.iter().map(|p| p[d]).collect();
        let a = median(&mut to_low[d]);
        let b = size[d] - median(&mut to_high[d]);
        fit_axis(&y, a, b, cfg)
    });
    let rmse = ((fit[0].sse + fit[1].sse) / nt as f64).sqrt();
    Some(ClipMotion {
        trajectory: traj,
        fit,
        rmse,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One of 8 compass sectors of a velocity `(row, col)`: 0 = right, counter-clockwise in
/// 45-degree steps (2 = up, 4 = left, 6 = down); image rows grow downward, so up is a
/// decreasing row. Moving MNIST's direction label of a clip is this sector of its initial
/// velocity.
pub fn direction_sector(v: [f64; 2]) -> u32 {
    let angle = (-v[0]).atan2(v[1]); // counter-clockwise from the +column axis
    let k = (angle / std::f64::consts::FRAC_PI_4).round() as i64;
    k.rem_euclid(8) as u32
}

/// The motion error over a set of clips.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MotionResult {
    /// Mean over fitted clips of the per-clip RMSE, pixels.
    pub mean_rmse: f64,
    pub median_rmse: f64,
    /// Clips fitted, and clips skipped because a frame had no ink (or ink wider than the
    /// frame's room to move).
    pub n_fitted: usize,
    pub n_skipped: usize,
}

/// Fits every clip and summarises the per-clip errors.
pub fn motion(clips: &Clips, cfg: &MotionFitConfig) -> Result<MotionResult> {
    cfg.validate()?;
    // Clips without ink in a frame, or whose ink leaves no room to move (infinite error),
    // are skipped and counted.
    let mut errs: Vec<f64> = (0..clips.len())
        .filter_map(|i| fit_clip(clips, i, cfg).map(|m| m.rmse))
        .filter(|e| e.is_finite())
        .collect();
    let n_fitted = errs.len();
    if n_fitted == 0 {
        return Err(Error::InvalidInput(format!(
            "motion: none of the {} clips has ink in every frame",
            clips.len()
        )));
    }
    Ok(MotionResult {
        mean_rmse: errs.iter().sum::<f64>() / n_fitted as f64,
        median_rmse: median(&mut errs),
        n_fitted,
        n_skipped: clips.len() - n_fitted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_core::Rng;

    /// An exact billiard trajectory is recovered to rounding.
    const EXACT_TOL: f64 = 1e-9;
    /// The grid-and-refine fit may not lose to a dense brute-force grid by more than this
    /// (squared pixels summed over frames).
    const BRUTE_SSE_TOL: f64 = 1e-6;
    /// Bounds on mean squared error / its linear-fit expectation for noisy trajectories.
    const NOISE_RATIO: (f64, f64) = (0.75, 1.1);

    fn billiard(p0: f64, v: f64, lo: f64, hi: f64, t: usize) -> Vec<f64> {
        // An independent simulation: step, then mirror any overshoot off the wall.
        let (mut p, mut v) = (p0, v);
        let mut out = vec![p];
        for _ in 1..t {
            p += v;
            loop {
                if p > hi {
                    p = 2.0 * hi - p;
                    v = -v;
                } else if p < lo {
                    p = 2.0 * lo - p;
                    v = -v;
                } else {
                    break;
                }
            }
            out.push(p);
        }
        out
    }

    #[test]
    fn exact_billiards_are_recovered_and_the_fit_never_loses_to_brute_force() {
        let mut rng = Rng::new(7);
        let cfg = MotionFitConfig {
            max_margin: 0.0,
            ..Default::default()
        };
        for case in 0..60 {
            let (lo, hi) = (2.0 + 3.0 * rng.uniform(), 14.0 + 10.0 * rng.uniform());
            let p0 = lo + (hi - lo) * rng.uniform();
            let v = (1.0 + 3.0 * rng.uniform()) * if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
            let t = 8 + case % 9;
            let y = billiard(p0, v, lo, hi, t);
            let f = fit_axis(&y, lo, hi, &cfg);
            assert!(f.sse < EXACT_TOL, "case {case}: sse {}", f.sse);
            assert!(
                (f.v0() - v).abs() < 1e-6,
                "case {case}: v0 {} vs {v}",
                f.v0()
            );
            for (k, yk) in y.iter().enumerate() {
                assert!((f.at(k as f64) - yk).abs() < 1e-6);
            }
            // Noisy: compare with a dense brute-force grid (no refinement).
            let noisy: Vec<f64> = y.iter().map(|p| p + 0.7 * rng.normal()).collect();
            let f = fit_axis(&noisy, lo, hi, &cfg);
            let mut brute = f64::INFINITY;
            let mut barg = (0.0, 0.0);
            let (np, nv) = (400, 800);
            for ip in 0..=np {
                let p = lo + (hi - lo) * ip as f64 / np as f64;
                for iv in 0..=nv {
                    let w = (hi - lo) * (2.0 * iv as f64 / nv as f64 - 1.0);
                    let e = sse(&noisy, p, w, lo, hi);
                    if e < brute {
                        brute = e;
                        barg = (p, w);
                    }
                }
            }
            assert!(
                f.sse <= brute + BRUTE_SSE_TOL,
                "case {case}: {} > {brute} {f:?} {barg:?} true {p0} {v}",
                f.sse
            );
        }
    }

    #[test]
    fn noisy_billiards_leave_the_noise_and_shuffled_frames_do_not_fit() {
        let mut rng = Rng::new(11);
        let (t, sigma, n) = (8usize, 0.5f64, 200);
        let cfg = MotionFitConfig {
            max_margin: 0.0,
            ..Default::default()
        };
        let (mut mse, mut shuffled) = (0.0, 0.0);
        for _ in 0..n {
            let (lo, hi) = (4.0, 20.0);
            let p0 = lo + (hi - lo) * rng.uniform();
            let v = 1.5 + 1.5 * rng.uniform();
            let y = billiard(p0, v, lo, hi, t);
            let noisy: Vec<f64> = y.iter().map(|p| p + sigma * rng.normal()).collect();
            mse += fit_axis(&noisy, lo, hi, &cfg).sse / t as f64;
            let mut perm = y.clone();
            rng.shuffle(&mut perm);
            shuffled += (fit_axis(&perm, lo, hi, &cfg).sse / t as f64).sqrt();
        }
        // A straight-line least-squares fit of 2 parameters leaves sigma^2 (T - 2) / T.
        let ratio = mse / n as f64 / (sigma * sigma * (t - 2) as f64 / t as f64);
        assert!(
            (NOISE_RATIO.0..NOISE_RATIO.1).contains(&ratio),
            "ratio {ratio}"
        );
        let shuffled = shuffled / n as f64;
        assert!(shuffled > 4.0 * sigma, "shuffled rmse {shuffled}");
    }

    /// A 3x3 block of ink at `(r, c)` (top-left), sub-pixel positions rounded.
    fn block_clip(traj: &[[f64; 2]], size: usize) -> Clips {
        let mut data = vec![0f32; traj.len() * size * size];
        for (t, p) in traj.iter().enumerate() {
            let (r, c) = (p[0].round() as usize, p[1].round() as usize);
            for dr in 0..3 {
                for dc in 0..3 {
                    data[t * size * size + (r + dr) * size + c + dc] = 1.0;
                }
            }
        }
        Clips::new(&[1, traj.len(), 1, size, size], data).unwrap()
    }

    #[test]
    fn clips_fit_their_ink_with_an_unknown_margin_and_give_the_direction() {
        // The box that bounces is 5x5 with the 3x3 ink inside it (margin 1): the top-left
        // of the box moves in [0, 16 - 5] = [0, 11].
        let (size, t) = (16usize, 10usize);
        let rows = billiard(2.0, -3.0, 0.0, 11.0, t);
        let cols = billiard(7.0, 2.0, 0.0, 11.0, t);
        let traj: Vec<[f64; 2]> = rows
            .iter()
            .zip(&cols)
            .map(|(r, c)| [r + 1.0, c + 1.0])
            .collect();
        let clips = block_clip(&traj, size);
        let m = fit_clip(&clips, 0, &MotionFitConfig::default()).unwrap();
        assert!(m.rmse < EXACT_TOL, "rmse {}", m.rmse);
        let v = m.velocity();
        assert!(
            (v[0] + 3.0).abs() < 1e-6 && (v[1] - 2.0).abs() < 1e-6,
            "{v:?}"
        );
        assert_eq!(direction_sector(v), 1); // up (row decreasing) and to the right
        assert_eq!(direction_sector([0.0, 1.0]), 0);
        assert_eq!(direction_sector([-1.0, 0.0]), 2);
        assert_eq!(direction_sector([0.0, -1.0]), 4);
        assert_eq!(direction_sector([1.0, 0.1]), 6);
        assert_eq!(direction_sector([1.0, 1.0]), 7);
        // A blank frame: the clip is skipped.
        let mut data = clips.data.clone();
        data[..size * size].iter_mut().for_each(|v| *v = 0.0);
        let blank = Clips::new(&clips.shape, data).unwrap();
        assert!(fit_clip(&blank, 0, &MotionFitConfig::default()).is_none());
        assert!(motion(&blank, &MotionFitConfig::default()).is_err());
        // Ink over the whole frame (noise, what an untrained video model makes) may leave no
        // room to move: such a clip is skipped, never an infinite mean.
        let mut rng = genlab_core::Rng::new(3);
        let noise: Vec<f32> = (0..clips.data.len())
            .map(|_| rng.uniform() as f32)
            .collect();
        let noisy = Clips::new(&clips.shape, noise).unwrap();
        let both = Clips::new(
            &[2, clips.shape[1], 1, size, size],
            [clips.data.clone(), noisy.data.clone()].concat(),
        )
        .unwrap();
        let r = motion(&both, &MotionFitConfig::default()).unwrap();
        assert_eq!(r.n_fitted + r.n_skipped, 2);
        assert!(r.mean_rmse.is_finite() && r.median_rmse.is_finite());
        let bad = MotionFitConfig {
            v_step: 0.0,
            ..Default::default()
        };
        assert!(motion(&clips, &bad).is_err());
    }
}
