//! Toy 2-D distributions generated on the fly.
//!
//! Six classic test beds for generative models of the plane (two moons, concentric rings,
//! swiss roll, eight Gaussians, checkerboard, pinwheel), as popularised by FFJORD
//! (Grathwohl et al., 2018, arXiv:1810.01367) and the unrolled-GAN paper (Metz et al., 2016,
//! arXiv:1611.02163). Example `i` is computed from its own generator, seeded from the
//! dataset seed and `i`, so the dataset is random-access and stores nothing. Every kind is
//! scaled to lie roughly in `[-4, 4]^2` with a per-coordinate standard deviation of 1-2.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use genlab_core::{Error, Rng};

use crate::eight_gaussians::{eight_gaussians_modes, EIGHT_GAUSSIANS_STD};
use crate::{DataKind, Dataset};

/// Which toy distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Toy2dKind {
    /// Two interleaved half circles.
    TwoMoons,
    /// Four concentric circles, equally likely.
    Rings,
    /// A 2-D swiss roll (spiral).
    SwissRoll,
    /// Eight Gaussians on a circle (see [`crate::eight_gaussians`]).
    EightGaussians,
    /// Uniform on the dark squares of a 4x4 board.
    Checkerboard,
    /// Five curved arms.
    Pinwheel,
}

/// Two-moons: scale from the unit-radius construction to the plane.
const MOONS_SCALE: f64 = 2.0;
/// Two-moons: centre of the unit-radius construction (mean of the two arcs).
const MOONS_CENTER: [f64; 2] = [0.5, 0.25];
/// Two-moons: std of the isotropic noise, after scaling.
const MOONS_NOISE: f64 = 0.15;
/// Rings: radii of the four circles (the largest keeps the set inside [-4, 4]).
const RING_RADII: [f64; 4] = [0.9, 1.8, 2.7, 3.6];
/// Rings: radial noise std.
const RINGS_NOISE: f64 = 0.08;
/// Swiss roll: the angle t runs over [1.5 pi, 4.5 pi] and the point is t (cos t, sin t) / scale.
const SWISS_ROLL_DIVISOR: f64 = 3.5;
/// Swiss roll: std of the isotropic noise, after scaling.
const SWISS_ROLL_NOISE: f64 = 0.1;
/// Checkerboard: side of the board's cells (4 x 4 cells centred on the origin).
const CHECKER_CELL: f64 = 1.5;
/// Pinwheel: number of arms.
const PINWHEEL_ARMS: usize = 5;
/// Pinwheel: radial std (in unit-radius coordinates).
const PINWHEEL_RADIAL_STD: f64 = 0.3;
/// Pinwheel: tangential std (in unit-radius coordinates).
const PINWHEEL_TANGENTIAL_STD: f64 = 0.1;
/// Pinwheel: how fast the arms curl with radius.
const PINWHEEL_RATE: f64 = 0.25;
/// Pinwheel: scale from unit-radius coordinates to the plane.
const PINWHEEL_SCALE: f64 = 2.0;

impl Toy2dKind {
    /// Every kind, in listing order.
    pub const ALL: [Toy2dKind; 6] = [
        Toy2dKind::TwoMoons,
        Toy2dKind::Rings,
        Toy2dKind::SwissRoll,
        Toy2dKind::EightGaussians,
        Toy2dKind::Checkerboard,
        Toy2dKind::Pinwheel,
    ];

    /// The kind's name, as accepted by [`FromStr`].
    pub const fn name(self) -> &'static str {
        match self {
            Toy2dKind::TwoMoons => "two-moons",
            Toy2dKind::Rings => "rings",
            Toy2dKind::SwissRoll => "swiss-roll",
            Toy2dKind::EightGaussians => "eight-gaussians",
            Toy2dKind::Checkerboard => "checkerboard",
            Toy2dKind::Pinwheel => "pinwheel",
        }
    }

    /// One-line description for listings.
    pub const fn description(self) -> &'static str {
        match self {
            Toy2dKind::TwoMoons => "2-D: two interleaved half circles",
            Toy2dKind::Rings => "2-D: four concentric circles",
            Toy2dKind::SwissRoll => "2-D: swiss-roll spiral",
            Toy2dKind::EightGaussians => "2-D: eight Gaussians (std 0.2) on a circle of radius 2",
            Toy2dKind::Checkerboard => "2-D: uniform on the dark squares of a 4x4 board",
            Toy2dKind::Pinwheel => "2-D: five curved arms",
        }
    }

    /// Draws one point of this distribution.
    pub fn sample(self, rng: &mut Rng) -> [f64; 2] {
        self.sample_labeled(rng).0
    }

    /// The number of classes of [`Toy2dKind::sample_labeled`]'s labels, `None` for the
    /// swiss roll (one continuous arm).
    pub const fn num_classes(self) -> Option<usize> {
        match self {
            Toy2dKind::TwoMoons => Some(2),
            Toy2dKind::Rings => Some(RING_RADII.len()),
            Toy2dKind::SwissRoll => None,
            Toy2dKind::EightGaussians => Some(8),
            Toy2dKind::Checkerboard => Some(8),
            Toy2dKind::Pinwheel => Some(PINWHEEL_ARMS),
        }
    }

    /// Draws one point and the part of the distribution it came from: the moon (0 outer, 1
    /// inner), the ring (inner to outer), the mode (counter-clockwise from angle 0), the dark
    /// square (row by row from the bottom left), the arm; `None` for the swiss roll. The
    /// point is the one [`Toy2dKind::sample`] draws from the same generator.
    pub fn sample_labeled(self, rng: &mut Rng) -> ([f64; 2], Option<u32>) {
        match self {
            Toy2dKind::TwoMoons => {
                let t = PI * rng.uniform();
                // Outer arc (cos t, sin t); inner arc (1 - cos t, 1/2 - sin t).
                let moon = rng.below(2);
                let p = if moon == 0 {
                    [t.cos(), t.sin()]
                } else {
                    [1.0 - t.cos(), 0.5 - t.sin()]
                };
                let x = [
                    MOONS_SCALE * (p[0] - MOONS_CENTER[0]) + MOONS_NOISE * rng.normal(),
                    MOONS_SCALE * (p[1] - MOONS_CENTER[1]) + MOONS_NOISE * rng.normal(),
                ];
                (x, Some(moon as u32))
            }
            Toy2dKind::Rings => {
                let ring = rng.below(RING_RADII.len() as u64) as usize;
                let r = RING_RADII[ring] + RINGS_NOISE * rng.normal();
                let a = 2.0 * PI * rng.uniform();
                ([r * a.cos(), r * a.sin()], Some(ring as u32))
            }
            Toy2dKind::SwissRoll => {
                let t = 1.5 * PI * (1.0 + 2.0 * rng.uniform());
                let x = [
                    t * t.cos() / SWISS_ROLL_DIVISOR + SWISS_ROLL_NOISE * rng.normal(),
                    t * t.sin() / SWISS_ROLL_DIVISOR + SWISS_ROLL_NOISE * rng.normal(),
                ];
                (x, None)
            }
            Toy2dKind::EightGaussians => {
                let k = rng.below(8) as usize;
                let m = eight_gaussians_modes()[k];
                let x = [
                    m[0] + EIGHT_GAUSSIANS_STD * rng.normal(),
                    m[1] + EIGHT_GAUSSIANS_STD * rng.normal(),
                ];
                (x, Some(k as u32))
            }
            Toy2dKind::Checkerboard => {
                // 8 dark cells: row j in 0..4, column i in {j%2, j%2 + 2}.
                let k = rng.below(8);
                let j = k / 2;
                let i = 2 * (k % 2) + j % 2;
                let half = 2.0 * CHECKER_CELL;
                let x = [
                    -half + CHECKER_CELL * (i as f64 + rng.uniform()),
                    -half + CHECKER_CELL * (j as f64 + rng.uniform()),
                ];
                (x, Some(k as u32))
            }
            Toy2dKind::Pinwheel => {
                let arm = rng.below(PINWHEEL_ARMS as u64);
                let radial = 1.0 + PINWHEEL_RADIAL_STD * rng.normal();
                let tangential = PINWHEEL_TANGENTIAL_STD * rng.normal();
                let a = 2.0 * PI * arm as f64 / PINWHEEL_ARMS as f64 + PINWHEEL_RATE * radial.exp();
                let (s, c) = a.sin_cos();
                let x = [
                    PINWHEEL_SCALE * (radial * c - tangential * s),
                    PINWHEEL_SCALE * (radial * s + tangential * c),
                ];
                (x, Some(arm as u32))
            }
        }
    }
}

impl fmt::Display for Toy2dKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Toy2dKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Toy2dKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Toy2dKind::ALL.iter().map(|k| k.name()).collect();
                Error::InvalidInput(format!(
                    "unknown toy 2-D distribution {s:?}; expected one of: {}",
                    names.join(", ")
                ))
            })
    }
}

/// `n` points of a toy distribution, each computed on demand from `(seed, i)`.
#[derive(Clone, Debug)]
pub struct Toy2d {
    kind: Toy2dKind,
    n: usize,
    seed: u64,
    /// Per-dataset key mixed with the example index to seed each example's generator.
    key: u64,
}

/// Odd 64-bit constant (2^64 / golden ratio): multiplying by it is a bijection on u64.
const INDEX_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

impl Toy2d {
    /// `n` points of `kind`, determined by `seed`.
    pub fn new(kind: Toy2dKind, n: usize, seed: u64) -> Self {
        let key = Rng::derive(seed, &format!("toy2d/{}", kind.name())).next_u64();
        Self { kind, n, seed, key }
    }

    /// The distribution.
    pub fn toy_kind(&self) -> Toy2dKind {
        self.kind
    }

    /// The seed the points derive from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Point `i` (any `i`, also beyond `len`: the stream is unbounded).
    pub fn point(&self, i: usize) -> [f32; 2] {
        let p = self.labeled_point(i).0;
        [p[0] as f32, p[1] as f32]
    }

    /// Point `i` and its label (see [`Toy2dKind::sample_labeled`]).
    fn labeled_point(&self, i: usize) -> ([f64; 2], Option<u32>) {
        // Distinct i give distinct seeds (xor with a key after a bijective multiply).
        let mut rng = Rng::new(self.key ^ (i as u64).wrapping_mul(INDEX_MIX));
        self.kind.sample_labeled(&mut rng)
    }

    /// All `len` points.
    pub fn points(&self) -> Vec<[f32; 2]> {
        (0..self.n).map(|i| self.point(i)).collect()
    }
}

impl Dataset for Toy2d {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn len(&self) -> usize {
        self.n
    }

    fn example_shape(&self) -> Vec<usize> {
        vec![2]
    }

    fn write_example(&self, i: usize, out: &mut [f32]) {
        out.copy_from_slice(&self.point(i));
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.labeled_point(i).1
    }

    fn num_classes(&self) -> Option<usize> {
        self.kind.num_classes()
    }

    fn kind(&self) -> DataKind {
        DataKind::Points
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode_coverage;

    /// Points per statistics test.
    const N: usize = 20_000;
    /// Every kind stays inside this box (4 plus a few noise std).
    const BOX: f32 = 4.6;
    /// Per-coordinate std must lie in this range.
    const STD_RANGE: (f64, f64) = (0.8, 2.3);
    /// Fraction of points that must lie near the distribution's support curve.
    const NEAR_SUPPORT: f64 = 0.99;

    fn moments(p: &[[f32; 2]]) -> ([f64; 2], [f64; 2]) {
        let n = p.len() as f64;
        let mut mean = [0.0; 2];
        let mut std = [0.0; 2];
        for d in 0..2 {
            mean[d] = p.iter().map(|q| q[d] as f64).sum::<f64>() / n;
            std[d] = (p
                .iter()
                .map(|q| (q[d] as f64 - mean[d]).powi(2))
                .sum::<f64>()
                / n)
                .sqrt();
        }
        (mean, std)
    }

    fn frac(p: &[[f32; 2]], f: impl Fn(f64, f64) -> bool) -> f64 {
        p.iter().filter(|q| f(q[0] as f64, q[1] as f64)).count() as f64 / p.len() as f64
    }

    #[test]
    fn names_roundtrip_and_unknown_name_lists_valid_ones() {
        for k in Toy2dKind::ALL {
            assert_eq!(k.name().parse::<Toy2dKind>().unwrap(), k);
        }
        let e = "moons".parse::<Toy2dKind>().unwrap_err().to_string();
        assert!(
            e.contains("moons") && e.contains("two-moons") && e.contains("pinwheel"),
            "{e}"
        );
    }

    #[test]
    fn shape_and_determinism_and_random_access() {
        for k in Toy2dKind::ALL {
            let a = Toy2d::new(k, 100, 7);
            assert_eq!(a.len(), 100);
            assert_eq!(a.example_shape(), vec![2]);
            assert_eq!(a.kind(), DataKind::Points);
            // Labelled where the kind has parts (issue 20), never for the swiss roll.
            assert_eq!(a.label(0).is_some(), k.num_classes().is_some());
            let b = Toy2d::new(k, 100, 7);
            let c = Toy2d::new(k, 100, 8);
            assert_eq!(a.points(), b.points());
            assert_ne!(a.points(), c.points());
            let mut out = [0f32; 2];
            a.write_example(57, &mut out);
            assert_eq!(out, a.points()[57]);
            assert_ne!(a.point(0), a.point(1));
        }
    }

    #[test]
    fn every_kind_is_in_the_box_with_moderate_spread() {
        for k in Toy2dKind::ALL {
            let p = Toy2d::new(k, N, 1).points();
            assert!(
                p.iter().all(|q| q[0].abs() < BOX && q[1].abs() < BOX),
                "{k}"
            );
            let (_, std) = moments(&p);
            for s in std {
                assert!(s > STD_RANGE.0 && s < STD_RANGE.1, "{k}: std {std:?}");
            }
        }
    }

    #[test]
    fn two_moons_lie_on_two_arcs() {
        let p = Toy2d::new(Toy2dKind::TwoMoons, N, 2).points();
        let (mean, _) = moments(&p);
        assert!(mean[0].abs() < 0.05 && mean[1].abs() < 0.05, "{mean:?}");
        let near = frac(&p, |x, y| {
            let (u, v) = (
                x / MOONS_SCALE + MOONS_CENTER[0],
                y / MOONS_SCALE + MOONS_CENTER[1],
            );
            let outer = ((u * u + v * v).sqrt() - 1.0).abs();
            let inner = (((u - 1.0).powi(2) + (v - 0.5).powi(2)).sqrt() - 1.0).abs();
            outer.min(inner) < 0.25
        });
        assert!(near > NEAR_SUPPORT, "{near}");
    }

    #[test]
    fn rings_are_concentric_and_balanced() {
        let p = Toy2d::new(Toy2dKind::Rings, N, 3).points();
        let mut counts = [0usize; 4];
        for q in &p {
            let r = (q[0] as f64).hypot(q[1] as f64);
            let (k, d) = RING_RADII
                .iter()
                .enumerate()
                .map(|(k, rr)| (k, (r - rr).abs()))
                .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
            if d < 4.0 * RINGS_NOISE {
                counts[k] += 1;
            }
        }
        for c in counts {
            let f = c as f64 / N as f64;
            assert!((f - 0.25).abs() < 0.02, "{counts:?}");
        }
    }

    #[test]
    fn swiss_roll_radius_follows_the_angle() {
        let p = Toy2d::new(Toy2dKind::SwissRoll, N, 4).points();
        let (lo, hi) = (1.5 * PI / SWISS_ROLL_DIVISOR, 4.5 * PI / SWISS_ROLL_DIVISOR);
        let near = frac(&p, |x, y| {
            let r = x.hypot(y);
            r > lo - 0.4 && r < hi + 0.4
        });
        assert!(near > NEAR_SUPPORT, "{near}");
    }

    #[test]
    fn eight_gaussians_cover_every_mode_equally() {
        let p = Toy2d::new(Toy2dKind::EightGaussians, N, 5).points();
        let c = mode_coverage(&p);
        // Expected 1 - exp(-4.5) = 0.98889; 4 standard errors at N = 20k is 0.003.
        let expected = 1.0 - (-4.5f64).exp();
        assert!((c.fraction_within_3std - expected).abs() < 0.004, "{c:?}");
        for f in c.per_mode_fraction {
            assert!((f - expected / 8.0).abs() < 0.01, "{c:?}");
        }
    }

    #[test]
    fn checkerboard_fills_only_dark_cells() {
        let p = Toy2d::new(Toy2dKind::Checkerboard, N, 6).points();
        let cell = |v: f64| ((v + 2.0 * CHECKER_CELL) / CHECKER_CELL).floor() as i64;
        assert_eq!(frac(&p, |x, y| (cell(x) + cell(y)) % 2 == 0), 1.0);
        let (mean, _) = moments(&p);
        assert!(mean[0].abs() < 0.05 && mean[1].abs() < 0.05, "{mean:?}");
    }

    #[test]
    fn pinwheel_is_centred_with_five_arms() {
        let p = Toy2d::new(Toy2dKind::Pinwheel, N, 7).points();
        let (mean, _) = moments(&p);
        assert!(mean[0].abs() < 0.05 && mean[1].abs() < 0.05, "{mean:?}");
        // Rotating by one arm's angle maps the distribution onto itself: compare the
        // angular histograms (36 bins) of the points and of the rotated points.
        let bins = 36;
        let hist = |rot: f64| {
            let mut h = vec![0f64; bins];
            for q in &p {
                let a = (q[1] as f64).atan2(q[0] as f64) + rot;
                let b = ((a.rem_euclid(2.0 * PI)) / (2.0 * PI) * bins as f64) as usize;
                h[b.min(bins - 1)] += 1.0 / N as f64;
            }
            h
        };
        let (h0, h1) = (hist(0.0), hist(2.0 * PI / PINWHEEL_ARMS as f64));
        let tv: f64 = h0.iter().zip(&h1).map(|(a, b)| (a - b).abs()).sum::<f64>() / 2.0;
        assert!(tv < 0.05, "total variation under 1/5 turn: {tv}");
        // ...while the histogram itself is far from uniform (there are arms).
        let tv_uniform: f64 = h0
            .iter()
            .map(|a| (a - 1.0 / bins as f64).abs())
            .sum::<f64>()
            / 2.0;
        assert!(tv_uniform > 0.2, "{tv_uniform}");
    }

    /// Share of labelled points whose label matches the part of the plane they lie in
    /// (noise carries a few over a boundary: 2% at most here).
    const LABEL_GEOMETRY_AGREEMENT: f64 = 0.98;

    #[test]
    fn labels_name_the_part_of_the_distribution_a_point_came_from() {
        let agree = |kind: Toy2dKind, part: &dyn Fn([f32; 2]) -> u32| {
            let d = Toy2d::new(kind, 4000, 3);
            assert_eq!(d.num_classes(), kind.num_classes());
            let ok = (0..d.len())
                .filter(|&i| d.label(i) == Some(part(d.point(i))))
                .count();
            let frac = ok as f64 / d.len() as f64;
            assert!(frac >= LABEL_GEOMETRY_AGREEMENT, "{kind}: {frac}");
        };
        let modes = eight_gaussians_modes();
        agree(Toy2dKind::EightGaussians, &|p| {
            let d = |m: [f64; 2]| (p[0] as f64 - m[0]).powi(2) + (p[1] as f64 - m[1]).powi(2);
            (0..8)
                .min_by(|&a, &b| d(modes[a]).total_cmp(&d(modes[b])))
                .unwrap() as u32
        });
        agree(Toy2dKind::Rings, &|p| {
            let r = (p[0] as f64).hypot(p[1] as f64);
            (0..4)
                .min_by(|&a, &b| {
                    (r - RING_RADII[a])
                        .abs()
                        .total_cmp(&(r - RING_RADII[b]).abs())
                })
                .unwrap() as u32
        });
        agree(Toy2dKind::Checkerboard, &|p| {
            let cell = |v: f32| ((v as f64 + 2.0 * CHECKER_CELL) / CHECKER_CELL).floor() as u32;
            let (i, j) = (cell(p[0]), cell(p[1]));
            2 * j + (i - j % 2) / 2
        });
        // Moons and arms overlap near their ends under the noise: their labels are checked
        // by the counts (each part equally likely).
        for kind in [Toy2dKind::TwoMoons, Toy2dKind::Pinwheel] {
            let d = Toy2d::new(kind, 10_000, 5);
            let k = kind.num_classes().unwrap();
            let mut counts = vec![0usize; k];
            for i in 0..d.len() {
                counts[d.label(i).unwrap() as usize] += 1;
            }
            for c in counts {
                let share = c as f64 * k as f64 / d.len() as f64;
                assert!((share - 1.0).abs() < 0.1, "{kind}: {share}");
            }
        }
        let roll = Toy2d::new(Toy2dKind::SwissRoll, 3, 0);
        assert_eq!((roll.label(0), roll.num_classes()), (None, None));
    }

    #[test]
    fn labelled_draws_are_the_unlabelled_points() {
        for kind in Toy2dKind::ALL {
            let mut a = Rng::new(9);
            let mut b = Rng::new(9);
            for _ in 0..50 {
                assert_eq!(kind.sample(&mut a), kind.sample_labeled(&mut b).0);
            }
        }
    }
}
