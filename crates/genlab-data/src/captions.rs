//! Captions for digit images, made deterministically from the label and measured
//! properties of the image, for contrastive text-image training (CLIP, Radford et al. 2021,
//! arXiv:2103.00020) on data that has no captions of its own.
//!
//! Measured per image (values in `[0, 1]`, `[1, H, W]`):
//! - **ink**: the mean intensity (ink mass) -> thin / regular / thick strokes;
//! - **slant**: from the intensity-weighted second moments, `-mu_rc / mu_rr` (rows grow
//!   downwards, so a positive value means the top of the digit is to the right of its
//!   bottom) -> leaning left / upright / leaning right;
//! - **extent**: the area of the bounding box of pixels above one half, as a fraction of
//!   the image -> small / medium / large.
//!
//! Each property is cut into three bins at [`Thresholds`]; the defaults are the terciles
//! of the MNIST training set (measured by `mnist_terciles_are_the_default_thresholds`, which
//! runs when MNIST is present), so "thick" means thicker than two thirds of MNIST digits.
//!
//! [`caption`] draws one of the training templates and synonyms with the caller's RNG;
//! [`ZERO_SHOT_TEMPLATES`] are never used in training (zero-shot evaluation with prompts the
//! model has not seen); [`attribute_caption`] is the one canonical caption of an image
//! (retrieval benchmarks).

use serde::{Deserialize, Serialize};

use genlab_core::Rng;

/// Measured properties of one digit image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measures {
    pub ink: f64,
    pub slant: f64,
    pub extent: f64,
}

/// Pixels above this count towards the bounding box.
pub const BOX_LEVEL: f32 = 0.5;

/// Measures a `[1, H, W]` image (row-major, values in `[0, 1]`). A blank image measures
/// zero everywhere.
pub fn measure(img: &[f32], h: usize, w: usize) -> Measures {
    assert_eq!(
        img.len(),
        h * w,
        "measure: expected a {h}x{w} single-channel image"
    );
    let (mut m, mut sr, mut sc) = (0f64, 0f64, 0f64);
    let (mut r0, mut r1, mut c0, mut c1) = (h, 0, w, 0);
    for r in 0..h {
        for c in 0..w {
            let v = img[r * w + c];
            let vf = v as f64;
            m += vf;
            sr += vf * r as f64;
            sc += vf * c as f64;
            if v > BOX_LEVEL {
                r0 = r0.min(r);
                r1 = r1.max(r);
                c0 = c0.min(c);
                c1 = c1.max(c);
            }
        }
    }
    if m <= 0.0 {
        return Measures {
            ink: 0.0,
            slant: 0.0,
            extent: 0.0,
        };
    }
    let (mr, mc) = (sr / m, sc / m);
    let (mut mrr, mut mrc) = (0f64, 0f64);
    for r in 0..h {
        for c in 0..w {
            let v = img[r * w + c] as f64;
            let dr = r as f64 - mr;
            mrr += v * dr * dr;
            mrc += v * dr * (c as f64 - mc);
        }
    }
    let slant = if mrr > 0.0 { -mrc / mrr } else { 0.0 };
    let extent = if r1 >= r0 && c1 >= c0 {
        ((r1 - r0 + 1) * (c1 - c0 + 1)) as f64 / (h * w) as f64
    } else {
        0.0
    };
    Measures {
        ink: m / (h * w) as f64,
        slant,
        extent,
    }
}

/// Bin edges `[low, high]` of each property: below `low` is the first bin, above `high` the
/// third.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub ink: [f64; 2],
    pub slant: [f64; 2],
    pub extent: [f64; 2],
}

impl Default for Thresholds {
    /// Terciles of the 60,000 MNIST training images (see the module docs).
    fn default() -> Self {
        Self {
            ink: MNIST_INK_TERCILES,
            slant: MNIST_SLANT_TERCILES,
            extent: MNIST_EXTENT_TERCILES,
        }
    }
}

/// Terciles of [`measure`] over the MNIST training set.
pub const MNIST_INK_TERCILES: [f64; 2] = [0.1092, 0.1466];
pub const MNIST_SLANT_TERCILES: [f64; 2] = [-0.0101, 0.2236];
pub const MNIST_EXTENT_TERCILES: [f64; 2] = [0.3316, 0.4082];

impl Thresholds {
    /// Terciles of the measures of `images` (each `[1, h, w]`).
    pub fn terciles<'a>(images: impl Iterator<Item = &'a [f32]>, h: usize, w: usize) -> Self {
        let ms: Vec<Measures> = images.map(|i| measure(i, h, w)).collect();
        let cut = |f: fn(&Measures) -> f64| -> [f64; 2] {
            let mut v: Vec<f64> = ms.iter().map(f).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            if v.is_empty() {
                return [0.0, 0.0];
            }
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            [q(1.0 / 3.0), q(2.0 / 3.0)]
        };
        Self {
            ink: cut(|m| m.ink),
            slant: cut(|m| m.slant),
            extent: cut(|m| m.extent),
        }
    }
}

/// What a caption says about a digit: its class and one bin of each property
/// (0 = low, 1 = middle, 2 = high).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Facts {
    pub digit: u8,
    pub stroke: u8,
    pub lean: u8,
    pub size: u8,
}

fn bin(v: f64, t: [f64; 2]) -> u8 {
    if v < t[0] {
        0
    } else if v > t[1] {
        2
    } else {
        1
    }
}

/// The facts of a labelled image.
pub fn facts(label: u32, m: &Measures, t: &Thresholds) -> Facts {
    Facts {
        digit: (label % 10) as u8,
        stroke: bin(m.ink, t.ink),
        lean: bin(m.slant, t.slant),
        size: bin(m.extent, t.extent),
    }
}

/// Digit names (index = digit).
pub const DIGIT_WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// The two names of a digit: its word and its numeral.
pub fn digit_names(d: u8) -> [String; 2] {
    [DIGIT_WORDS[d as usize].to_string(), d.to_string()]
}

const THIN: &[&str] = &["thin", "fine", "light"];
const THICK: &[&str] = &["thick", "bold", "heavy"];
const LEFT: &[&str] = &["leaning left", "slanted to the left", "tilted left"];
const RIGHT: &[&str] = &["leaning right", "slanted to the right", "tilted right"];
const SMALL: &[&str] = &["small", "narrow", "little"];
const LARGE: &[&str] = &["large", "wide", "big"];

fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len() as u64) as usize]
}

fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u' | '8') => "an",
        _ => "a",
    }
}

/// One training caption of `f`: a template and synonyms drawn from `rng`. Attribute words
/// appear only for properties outside the middle bin, so every word is true of the image.
pub fn caption(f: &Facts, rng: &mut Rng) -> String {
    let names = digit_names(f.digit);
    let d = names[rng.below(2) as usize].clone();
    let stroke = match f.stroke {
        0 => Some(pick(rng, THIN)),
        2 => Some(pick(rng, THICK)),
        _ => None,
    };
    let lean = match f.lean {
        0 => Some(pick(rng, LEFT)),
        2 => Some(pick(rng, RIGHT)),
        _ => None,
    };
    let size = match f.size {
        0 => Some(pick(rng, SMALL)),
        2 => Some(pick(rng, LARGE)),
        _ => None,
    };
    match rng.below(8) {
        0 => format!("{} handwritten {d}", article("handwritten")),
        1 => format!("the digit {d}"),
        2 => format!("the number {d}"),
        3 => d,
        4 => match stroke {
            Some(s) => format!("the digit {d} written with {s} strokes"),
            None => format!("{} {d} written by hand", article(&d)),
        },
        5 => match lean {
            Some(l) => format!("{} {d} {l}", article(&d)),
            None => format!("an upright {d}"),
        },
        6 => match size {
            Some(s) => format!("{} {s} handwritten {d}", article(s)),
            None => format!("a handwritten {d} of ordinary size"),
        },
        _ => {
            let mut words = String::new();
            if let Some(s) = size {
                words.push_str(s);
                words.push(' ');
            }
            if let Some(s) = stroke {
                words.push_str(s);
                words.push(' ');
            }
            let head = format!("{words}{d}");
            match lean {
                Some(l) => format!("{} {head}, {l}", article(&head)),
                None => format!("{} {head}", article(&head)),
            }
        }
    }
}

/// The one canonical caption of `f`, naming every property (retrieval benchmarks).
pub fn attribute_caption(f: &Facts) -> String {
    let stroke = ["thin", "regular", "thick"][f.stroke as usize];
    let lean = ["leaning left", "upright", "leaning right"][f.lean as usize];
    let size = ["small", "medium", "large"][f.size as usize];
    format!(
        "a {size} {} written with {stroke} strokes, {lean}",
        DIGIT_WORDS[f.digit as usize]
    )
}

/// Prompt templates for zero-shot classification, never used in training (`{}` is a digit
/// name).
pub const ZERO_SHOT_TEMPLATES: &[&str] = &[
    "a photo of the number {}.",
    "a picture of a {}.",
    "an image showing a {}.",
    "a scan of a handwritten {}.",
    "a drawing of the digit {}.",
    "{}, drawn by someone.",
];

/// The zero-shot prompts of one class: every template with every name of `digit`.
pub fn zero_shot_prompts(digit: u8, templates: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for t in templates {
        for n in digit_names(digit) {
            out.push(t.replace("{}", &n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-pixel-wide vertical bar, then the same bar sheared right: the moments say
    /// upright, then leaning right; a thicker bar has more ink.
    #[test]
    fn measures_follow_closed_forms() {
        let (h, w) = (10, 10);
        let mut bar = vec![0f32; h * w];
        for r in 1..9 {
            bar[r * w + 4] = 1.0;
        }
        let m = measure(&bar, h, w);
        assert!((m.ink - 0.08).abs() < 1e-12);
        assert!(m.slant.abs() < 1e-12);
        assert!((m.extent - 8.0 / 100.0).abs() < 1e-12);
        // sheared: column = 8 - r/2 ... top (small r) to the right
        let mut sh = vec![0f32; h * w];
        for r in 0..8 {
            sh[r * w + 8 - r / 2] = 1.0;
        }
        let m = measure(&sh, h, w);
        // -cov(r, c)/var(r) for c = 8 - floor(r/2), r = 0..8, by hand:
        let rs: Vec<f64> = (0..8).map(|r| r as f64).collect();
        let cs: Vec<f64> = (0..8).map(|r| (8 - r / 2) as f64).collect();
        let (mr, mc) = (rs.iter().sum::<f64>() / 8.0, cs.iter().sum::<f64>() / 8.0);
        let cov: f64 = rs.iter().zip(&cs).map(|(r, c)| (r - mr) * (c - mc)).sum();
        let var: f64 = rs.iter().map(|r| (r - mr).powi(2)).sum();
        assert!((m.slant - (-cov / var)).abs() < 1e-12);
        assert!(m.slant > 0.4);
        assert_eq!(measure(&vec![0f32; 100], 10, 10).ink, 0.0);
    }

    #[test]
    fn captions_are_deterministic_and_true() {
        let f = Facts {
            digit: 7,
            stroke: 2,
            lean: 2,
            size: 1,
        };
        let a: Vec<String> = {
            let mut r = Rng::new(3);
            (0..50).map(|_| caption(&f, &mut r)).collect()
        };
        let b: Vec<String> = {
            let mut r = Rng::new(3);
            (0..50).map(|_| caption(&f, &mut r)).collect()
        };
        assert_eq!(a, b);
        for c in &a {
            assert!(c.contains("seven") || c.contains('7'), "{c}");
            for wrong in ["thin", "left", "small", "large", "upright"] {
                assert!(!c.contains(wrong), "{c} says {wrong}");
            }
        }
        assert_eq!(
            attribute_caption(&f),
            "a medium seven written with thick strokes, leaning right"
        );
    }

    #[test]
    fn zero_shot_templates_never_occur_in_training_captions() {
        let mut r = Rng::new(0);
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000u32 {
            let f = Facts {
                digit: (i % 10) as u8,
                stroke: (i / 10 % 3) as u8,
                lean: (i / 30 % 3) as u8,
                size: (i / 90 % 3) as u8,
            };
            seen.insert(caption(&f, &mut r));
        }
        for d in 0..10 {
            for p in zero_shot_prompts(d, ZERO_SHOT_TEMPLATES) {
                assert!(!seen.contains(&p), "{p} is also a training caption");
            }
        }
    }

    /// The default thresholds are the terciles of MNIST's training set (to the 4 decimals
    /// they are written with). Runs when MNIST has been fetched (`genlab data fetch mnist`).
    #[test]
    fn mnist_terciles_are_the_default_thresholds() {
        use crate::{Dataset, Mnist, Split};
        let dir = genlab_core::paths::data_dir().join("mnist");
        let Ok(ds) = Mnist::load(&dir, Split::Train) else {
            eprintln!(
                "skipped: MNIST is not in {} (genlab data fetch mnist)",
                dir.display()
            );
            return;
        };
        let mut buf = vec![0f32; 784];
        let imgs: Vec<Vec<f32>> = (0..ds.len())
            .map(|i| {
                ds.write_example(i, &mut buf);
                buf.clone()
            })
            .collect();
        let t = Thresholds::terciles(imgs.iter().map(|v| v.as_slice()), 28, 28);
        eprintln!("MNIST terciles: {t:?}");
        let d = Thresholds::default();
        for (got, want) in [(t.ink, d.ink), (t.slant, d.slant), (t.extent, d.extent)] {
            for k in 0..2 {
                assert!((got[k] - want[k]).abs() < 6e-5, "{got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn terciles_split_in_thirds() {
        let imgs: Vec<Vec<f32>> = (0..30)
            .map(|k| {
                let mut v = vec![0f32; 16];
                for p in v.iter_mut().take(k % 16 + 1) {
                    *p = 1.0;
                }
                v
            })
            .collect();
        let t = Thresholds::terciles(imgs.iter().map(|v| v.as_slice()), 4, 4);
        let below = imgs
            .iter()
            .filter(|v| measure(v, 4, 4).ink < t.ink[0])
            .count();
        assert!((8..=11).contains(&below), "{below}");
    }
}
