//! The glyph set: an offline, Omniglot-like few-shot data set rendered from installed fonts.
//!
//! Omniglot (Lake, Salakhutdinov & Tenenbaum 2015, "Human-level concept learning through
//! probabilistic program induction", Science 350) has 1623 characters of 50 alphabets, each
//! drawn once by 20 people. Without internet we imitate it: the characters of many scripts
//! ([`SCRIPTS`], Unicode letters) are rendered from the fonts installed on the machine
//! (Debian's `fonts-noto-core` covers dozens of scripts; DejaVu a dozen), each by
//! [`GlyphsConfig::drawers`] "drawers". A drawer is a seeded choice of
//!
//! - a font among those that cover the character (Noto Sans / Serif / UI variants, weights),
//! - a stroke width (0, 1 or 2 dilations of the 56x56 rendering by a 3x3 maximum),
//! - a small random affine warp (rotation, scale, shear, translation), applied by inverse
//!   mapping with bilinear interpolation,
//!
//! then a 2x2 box filter down to 28x28, ink 1 on background 0 (MNIST's polarity). Every
//! image's randomness comes from `Rng::derive(seed, "ALPHABET/CODEPOINT/DRAWER")`, so the
//! same seed and fonts give the same bytes, in any order.
//!
//! On disk (`$GENLAB_DATA/glyphs/`): `glyphs.bin` (the u8 pixels, example after example,
//! class after class) and `glyphs.json` ([`GlyphsIndex`]: the classes with their alphabet
//! and character, the fonts used, the config). `genlab data make glyphs` writes them; the
//! `glyphs` data set reads them. Its labels are the character classes; the alphabet of each
//! class is in [`Glyphs::classes`], which few-shot learning splits by (as Omniglot's
//! background / evaluation alphabets).

use std::path::{Path, PathBuf};

use ab_glyph::{Font, FontVec, PxScale};
use genlab_core::{Error, Result, Rng};
use serde::{Deserialize, Serialize};

use crate::class_images::ClassImages;
use crate::Progress;

/// Side of the stored images.
pub const GLYPH_SIZE: usize = 28;
/// Side of the canvas a glyph is drawn on before the 2x2 box filter.
const CANVAS: usize = 2 * GLYPH_SIZE;
/// The glyph's larger side on the canvas, in pixels (margins for warps and thick strokes).
const GLYPH_EXTENT: f32 = 38.0;
/// A character is kept only when its rendered ink covers at least this many canvas pixels
/// (drops combining marks and dots that would be near-empty images).
const MIN_INK_PIXELS: usize = 40;
/// Sub-folder of the data directory.
pub const GLYPHS_SUBDIR: &str = "glyphs";
const BIN_FILE: &str = "glyphs.bin";
const INDEX_FILE: &str = "glyphs.json";

/// A script: its name and the Unicode ranges of its letters (inclusive).
pub struct Script {
    pub name: &'static str,
    pub ranges: &'static [(u32, u32)],
}

macro_rules! script {
    ($name:expr, $($lo:expr => $hi:expr),+) => {
        Script { name: $name, ranges: &[$(($lo, $hi)),+] }
    };
}

/// The scripts tried, each the letters of its Unicode block (letters only, no digits or
/// marks; a character no installed font covers is skipped).
pub const SCRIPTS: &[Script] = &[
    script!("Latin", 0x41 => 0x5A),
    script!("Greek", 0x391 => 0x3A1, 0x3A3 => 0x3A9),
    script!("Cyrillic", 0x410 => 0x42F),
    script!("Armenian", 0x531 => 0x556),
    script!("Hebrew", 0x5D0 => 0x5EA),
    script!("Arabic", 0x627 => 0x63A, 0x641 => 0x64A),
    script!("Syriac", 0x710 => 0x72C),
    script!("Thaana", 0x780 => 0x7A5),
    script!("NKo", 0x7CA => 0x7EA),
    script!("Samaritan", 0x800 => 0x815),
    script!("Devanagari", 0x905 => 0x939),
    script!("Bengali", 0x985 => 0x9B9),
    script!("Gurmukhi", 0xA05 => 0xA39),
    script!("Gujarati", 0xA85 => 0xAB9),
    script!("Oriya", 0xB05 => 0xB39),
    script!("Tamil", 0xB85 => 0xBB9),
    script!("Telugu", 0xC05 => 0xC39),
    script!("Kannada", 0xC85 => 0xCB9),
    script!("Malayalam", 0xD05 => 0xD3A),
    script!("Sinhala", 0xD85 => 0xDC6),
    script!("Thai", 0xE01 => 0xE2E),
    script!("Lao", 0xE81 => 0xEAE),
    script!("Tibetan", 0xF40 => 0xF6C),
    script!("Myanmar", 0x1000 => 0x102A),
    script!("Georgian", 0x10D0 => 0x10FA),
    script!("Ethiopic", 0x1200 => 0x1248),
    script!("Cherokee", 0x13A0 => 0x13F4),
    script!("Canadian Syllabics", 0x1401 => 0x1440),
    script!("Ogham", 0x1681 => 0x169A),
    script!("Runic", 0x16A0 => 0x16EA),
    script!("Tagalog", 0x1700 => 0x1711),
    script!("Khmer", 0x1780 => 0x17B3),
    script!("Mongolian", 0x1820 => 0x1877),
    script!("Limbu", 0x1900 => 0x191E),
    script!("Tai Le", 0x1950 => 0x196D),
    script!("Buginese", 0x1A00 => 0x1A16),
    script!("Balinese", 0x1B05 => 0x1B33),
    script!("Sundanese", 0x1B83 => 0x1BA0),
    script!("Lepcha", 0x1C00 => 0x1C23),
    script!("Ol Chiki", 0x1C5A => 0x1C7D),
    script!("Glagolitic", 0x2C00 => 0x2C2E),
    script!("Coptic", 0x2C80 => 0x2CB1),
    script!("Tifinagh", 0x2D30 => 0x2D67),
    script!("Hiragana", 0x3041 => 0x3096),
    script!("Katakana", 0x30A1 => 0x30FA),
    script!("Hangul Jamo", 0x3131 => 0x314E),
    script!("Vai", 0xA500 => 0xA52B),
    script!("Bamum", 0xA6A0 => 0xA6EF),
    script!("Javanese", 0xA984 => 0xA9B2),
    script!("Cham", 0xAA00 => 0xAA28),
    script!("Old Italic", 0x10300 => 0x1031F),
    script!("Gothic", 0x10330 => 0x1034A),
    script!("Deseret", 0x10400 => 0x10427),
    script!("Shavian", 0x10450 => 0x1047F),
    script!("Osmanya", 0x10480 => 0x1049D),
    script!("Osage", 0x104B0 => 0x104D3),
    script!("Phoenician", 0x10900 => 0x10915),
    script!("Adlam", 0x1E900 => 0x1E921),
];

/// Settings of `genlab data make glyphs`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GlyphsConfig {
    /// Where the fonts are searched (recursively, `.ttf` / `.otf`).
    pub fonts_dir: PathBuf,
    /// Drawers (renderings) per character.
    pub drawers: usize,
    /// Seed of every drawer's choices.
    pub seed: u64,
    /// Characters kept per alphabet at most (evenly spread over the block).
    pub max_chars: usize,
    /// Alphabets with fewer usable characters are dropped.
    pub min_chars: usize,
    /// Fonts per script at most (the first ones by file name).
    pub max_fonts: usize,
}

impl Default for GlyphsConfig {
    fn default() -> Self {
        Self {
            // Debian's font root: fonts-noto-core installs under it.
            fonts_dir: PathBuf::from("/usr/share/fonts"),
            // 20: Omniglot's drawers per character.
            drawers: 20,
            seed: 0,
            // 40: Omniglot's alphabets have 14 to 55 characters.
            max_chars: 40,
            // 10: fewer would make 20-way episodes within an alphabet impossible... and
            // Omniglot's smallest alphabet has 14.
            min_chars: 10,
            // 8: enough variety of shapes per script; more only costs loading time.
            max_fonts: 8,
        }
    }
}

/// One class: a character of an alphabet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GlyphClass {
    pub alphabet: String,
    pub codepoint: u32,
}

/// What `glyphs.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GlyphsIndex {
    pub config: GlyphsConfig,
    pub size: usize,
    /// Examples per class (the drawers).
    pub per_class: usize,
    pub classes: Vec<GlyphClass>,
    /// Per alphabet, the font files used (names relative to the fonts directory).
    pub fonts: Vec<(String, Vec<String>)>,
}

/// The rendered glyph set.
pub struct Glyphs {
    index: GlyphsIndex,
    images: ClassImages,
}

/// A loaded font and its file name.
struct LoadedFont {
    name: String,
    font: FontVec,
}

/// Every `.ttf` / `.otf` under `dir`, sorted (a stable order for the seeded choices).
fn font_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| Error::io("read the fonts folder", &d, e))?;
        for entry in rd.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()),
                Some(ref e) if e == "ttf" || e == "otf"
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The characters of a script, in order.
fn script_chars(s: &Script) -> Vec<char> {
    s.ranges
        .iter()
        .flat_map(|&(lo, hi)| lo..=hi)
        .filter_map(char::from_u32)
        .collect()
}

/// Renders `ch` of `font` centred on a `CANVAS`² canvas, its larger side `GLYPH_EXTENT`;
/// `None` when the font has no outline for it.
fn render_canvas(font: &FontVec, ch: char) -> Option<Vec<f32>> {
    let id = font.glyph_id(ch);
    if id.0 == 0 {
        return None;
    }
    // First at a nominal size to measure, then at the size that gives the wanted extent.
    let probe = font.outline_glyph(id.with_scale(PxScale::from(100.0)))?;
    let b = probe.px_bounds();
    let (w, h) = (b.width(), b.height());
    if w < 1.0 || h < 1.0 {
        return None;
    }
    let scale = 100.0 * GLYPH_EXTENT / w.max(h);
    let g = font.outline_glyph(id.with_scale(PxScale::from(scale)))?;
    let b = g.px_bounds();
    let ox = ((CANVAS as f32 - b.width()) / 2.0).round() as i64;
    let oy = ((CANVAS as f32 - b.height()) / 2.0).round() as i64;
    let mut canvas = vec![0f32; CANVAS * CANVAS];
    g.draw(|x, y, c| {
        let (cx, cy) = (x as i64 + ox, y as i64 + oy);
        if (0..CANVAS as i64).contains(&cx) && (0..CANVAS as i64).contains(&cy) {
            let p = &mut canvas[cy as usize * CANVAS + cx as usize];
            *p = p.max(c.clamp(0.0, 1.0));
        }
    });
    Some(canvas)
}

/// One 3x3 maximum filter (a dilation: the strokes thicken by one pixel each side).
fn dilate(img: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * n];
    for y in 0..n {
        for x in 0..n {
            let mut m = 0f32;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                    if (0..n as i64).contains(&yy) && (0..n as i64).contains(&xx) {
                        m = m.max(img[yy as usize * n + xx as usize]);
                    }
                }
            }
            out[y * n + x] = m;
        }
    }
    out
}

/// Bilinear sample of `img` (`n`²) at (x, y); 0 outside.
fn bilinear(img: &[f32], n: usize, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| -> f32 {
        if xi < 0.0 || yi < 0.0 || xi >= n as f32 || yi >= n as f32 {
            0.0
        } else {
            img[yi as usize * n + xi as usize]
        }
    };
    at(x0, y0) * (1.0 - fx) * (1.0 - fy)
        + at(x0 + 1.0, y0) * fx * (1.0 - fy)
        + at(x0, y0 + 1.0) * (1.0 - fx) * fy
        + at(x0 + 1.0, y0 + 1.0) * fx * fy
}

/// The affine warp of one drawer: output pixel p takes the input at `A⁻¹ (p - c - t) + c`.
#[derive(Clone, Copy, Debug)]
pub struct Warp {
    /// Rotation, radians.
    pub angle: f32,
    pub scale: f32,
    /// Horizontal shear factor.
    pub shear: f32,
    /// Translation in canvas pixels.
    pub tx: f32,
    pub ty: f32,
}

impl Warp {
    /// The identity.
    pub const IDENTITY: Warp = Warp {
        angle: 0.0,
        scale: 1.0,
        shear: 0.0,
        tx: 0.0,
        ty: 0.0,
    };

    /// A drawer's small random warp: rotation within ±12°, scale 0.85-1.1, shear ±0.2,
    /// translation ±3 canvas pixels (±1.5 output pixels).
    fn random(rng: &mut Rng) -> Self {
        let u = |rng: &mut Rng, lo: f32, hi: f32| lo + (hi - lo) * rng.uniform() as f32;
        Warp {
            angle: u(rng, -12.0, 12.0).to_radians(),
            scale: u(rng, 0.85, 1.1),
            shear: u(rng, -0.2, 0.2),
            tx: u(rng, -3.0, 3.0),
            ty: u(rng, -3.0, 3.0),
        }
    }

    /// Applies the warp to an `n`² image about its centre.
    pub fn apply(&self, img: &[f32], n: usize) -> Vec<f32> {
        // A = s R(θ) [[1, k], [0, 1]]; its inverse maps output to input coordinates.
        let (s, c) = self.angle.sin_cos();
        let a = [
            [self.scale * c, self.scale * (c * self.shear - s)],
            [self.scale * s, self.scale * (s * self.shear + c)],
        ];
        let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
        let inv = [
            [a[1][1] / det, -a[0][1] / det],
            [-a[1][0] / det, a[0][0] / det],
        ];
        let centre = (n as f32 - 1.0) / 2.0;
        let mut out = vec![0f32; n * n];
        for y in 0..n {
            for x in 0..n {
                let (px, py) = (x as f32 - centre - self.tx, y as f32 - centre - self.ty);
                let sx = inv[0][0] * px + inv[0][1] * py + centre;
                let sy = inv[1][0] * px + inv[1][1] * py + centre;
                out[y * n + x] = bilinear(img, n, sx, sy);
            }
        }
        out
    }
}

/// 2x2 box filter of an `n`² image (`n` even) to `(n/2)`², as u8.
fn box_down(img: &[f32], n: usize) -> Vec<u8> {
    let m = n / 2;
    let mut out = vec![0u8; m * m];
    for y in 0..m {
        for x in 0..m {
            let v = (img[2 * y * n + 2 * x]
                + img[2 * y * n + 2 * x + 1]
                + img[(2 * y + 1) * n + 2 * x]
                + img[(2 * y + 1) * n + 2 * x + 1])
                / 4.0;
            out[y * m + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    out
}

/// One drawer's rendering of `ch` (28x28 u8), from a clean canvas rendering.
pub fn draw(clean: &[f32], rng: &mut Rng) -> Vec<u8> {
    let mut img = clean.to_vec();
    for _ in 0..rng.below(3) {
        img = dilate(&img, CANVAS);
    }
    let warped = Warp::random(rng).apply(&img, CANVAS);
    box_down(&warped, CANVAS)
}

/// Renders the glyph set into `out_dir` (`glyphs.bin`, `glyphs.json`); returns its index.
pub fn make_glyphs(
    cfg: &GlyphsConfig,
    out_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<GlyphsIndex> {
    if cfg.drawers == 0 || cfg.max_chars == 0 || cfg.min_chars > cfg.max_chars {
        return Err(Error::InvalidInput(format!(
            "glyphs: drawers ({}) and max_chars ({}) must be positive and min_chars ({}) at \
             most max_chars",
            cfg.drawers, cfg.max_chars, cfg.min_chars
        )));
    }
    if !cfg.fonts_dir.is_dir() {
        return Err(Error::InvalidInput(format!(
            "glyphs: the fonts folder {} does not exist (expected a folder of .ttf/.otf \
             files, e.g. /usr/share/fonts after `apt-get install fonts-noto-core`)",
            cfg.fonts_dir.display()
        )));
    }
    let files = font_files(&cfg.fonts_dir)?;
    let mut fonts = Vec::new();
    for f in &files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        if let Ok(font) = FontVec::try_from_vec(bytes) {
            let name = f
                .strip_prefix(&cfg.fonts_dir)
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned();
            fonts.push(LoadedFont { name, font });
        }
    }
    if fonts.is_empty() {
        return Err(Error::InvalidInput(format!(
            "glyphs: no usable font in {} ({} .ttf/.otf file(s) found, none could be read); \
             expected TrueType/OpenType fonts, e.g. `apt-get install fonts-noto-core`",
            cfg.fonts_dir.display(),
            files.len()
        )));
    }
    progress.note(&format!(
        "{} fonts in {}",
        fonts.len(),
        cfg.fonts_dir.display()
    ));
    let mut classes = Vec::new();
    let mut pixels = Vec::new();
    let mut fonts_used = Vec::new();
    progress.start("rendering scripts", Some(SCRIPTS.len() as u64));
    for script in SCRIPTS {
        progress.advance(1);
        let chars = script_chars(script);
        // The script's fonts: those covering at least 80% of its letters.
        let covering: Vec<&LoadedFont> = fonts
            .iter()
            .filter(|f| {
                let n = chars.iter().filter(|&&c| f.font.glyph_id(c).0 != 0).count();
                n * 5 >= chars.len() * 4
            })
            .take(cfg.max_fonts)
            .collect();
        if covering.is_empty() {
            continue;
        }
        // Per character, the clean renderings of the fonts that draw it with enough ink.
        let mut usable: Vec<(char, Vec<Vec<f32>>)> = Vec::new();
        for &ch in &chars {
            let renders: Vec<Vec<f32>> = covering
                .iter()
                .filter_map(|f| render_canvas(&f.font, ch))
                .filter(|c| c.iter().filter(|&&v| v > 0.5).count() >= MIN_INK_PIXELS)
                .collect();
            if !renders.is_empty() {
                usable.push((ch, renders));
            }
        }
        if usable.len() < cfg.min_chars {
            continue;
        }
        // Evenly spread over the block when there are more than max_chars.
        let n = usable.len().min(cfg.max_chars);
        let picked: Vec<usize> = (0..n).map(|i| i * usable.len() / n).collect();
        for &i in &picked {
            let (ch, renders) = &usable[i];
            for d in 0..cfg.drawers {
                let mut rng =
                    Rng::derive(cfg.seed, &format!("{}/{:x}/{d}", script.name, *ch as u32));
                let clean = &renders[rng.below(renders.len() as u64) as usize];
                pixels.extend(draw(clean, &mut rng));
            }
            classes.push(GlyphClass {
                alphabet: script.name.to_string(),
                codepoint: *ch as u32,
            });
        }
        fonts_used.push((
            script.name.to_string(),
            covering.iter().map(|f| f.name.clone()).collect(),
        ));
    }
    progress.finish("rendering scripts");
    if classes.is_empty() {
        return Err(Error::InvalidInput(format!(
            "glyphs: no usable font in {}: none of its {} font(s) covers at least {} letters \
             of any script (expected e.g. the fonts of `apt-get install fonts-noto-core`)",
            cfg.fonts_dir.display(),
            fonts.len(),
            cfg.min_chars
        )));
    }
    let index = GlyphsIndex {
        config: cfg.clone(),
        size: GLYPH_SIZE,
        per_class: cfg.drawers,
        classes,
        fonts: fonts_used,
    };
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io("create", out_dir, e))?;
    genlab_core::io::write_atomic(&out_dir.join(BIN_FILE), &pixels)?;
    genlab_core::io::write_json(&out_dir.join(INDEX_FILE), &index)?;
    Ok(index)
}

impl Glyphs {
    /// Reads a glyph set written by [`make_glyphs`].
    pub fn load(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        if !index_path.exists() {
            return Err(Error::Data(format!(
                "no glyph set in {} (expected {INDEX_FILE}); make it with `genlab data make \
                 glyphs`",
                dir.display()
            )));
        }
        let index: GlyphsIndex = genlab_core::io::read_json(&index_path)?;
        let images = ClassImages::read(
            "glyphs",
            &dir.join(BIN_FILE),
            index.size,
            index.per_class,
            index.classes.len(),
        )?;
        Ok(Self { index, images })
    }

    pub fn index(&self) -> &GlyphsIndex {
        &self.index
    }

    /// The classes (character and alphabet), label order.
    pub fn classes(&self) -> &[GlyphClass] {
        &self.index.classes
    }

    /// The images as a data set (labels: the classes' indices).
    pub fn images(&self) -> &ClassImages {
        &self.images
    }

    pub fn into_images(self) -> ClassImages {
        self.images
    }
}

/// The glyph set's folder in the data directory.
pub fn glyphs_dir(root: &Path) -> PathBuf {
    root.join(GLYPHS_SUBDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;

    /// Tolerance of the warp's identity check (bilinear at integer points is exact).
    const WARP_TOL: f32 = 1e-5;

    #[test]
    fn identity_warp_is_the_identity() {
        let mut rng = Rng::new(0);
        let img: Vec<f32> = (0..36).map(|_| rng.uniform() as f32).collect();
        let out = Warp::IDENTITY.apply(&img, 6);
        for (a, b) in img.iter().zip(&out) {
            assert!((a - b).abs() < WARP_TOL);
        }
    }

    #[test]
    fn quarter_turn_warp_rotates_like_an_index_permutation() {
        // A 90° rotation about the centre maps (x, y) to (c - (y - c), x)... checked
        // against the brute-force permutation of indices.
        let n = 5;
        let img: Vec<f32> = (0..n * n).map(|i| i as f32).collect();
        let w = Warp {
            angle: std::f32::consts::FRAC_PI_2,
            ..Warp::IDENTITY
        };
        let out = w.apply(&img, n);
        let c = (n - 1) as i64 / 2;
        for y in 0..n as i64 {
            for x in 0..n as i64 {
                // Output p takes input R⁻¹(p - c) + c; R⁻¹ of +90° maps (u, v) -> (v, -u).
                let (u, v) = (x - c, y - c);
                let (sx, sy) = (v + c, -u + c);
                let want = img[(sy * n as i64 + sx) as usize];
                assert!((out[(y * n as i64 + x) as usize] - want).abs() < WARP_TOL);
            }
        }
    }

    #[test]
    fn dilation_grows_a_point_to_a_square() {
        let mut img = vec![0f32; 25];
        img[12] = 1.0;
        let d = dilate(&img, 5);
        let ones: Vec<usize> = (0..25).filter(|&i| d[i] == 1.0).collect();
        assert_eq!(ones, vec![6, 7, 8, 11, 12, 13, 16, 17, 18]);
    }

    #[test]
    fn box_filter_averages_two_by_two_blocks() {
        let img = vec![
            1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        // Top-left block 1, 0, 1, 1 -> 0.75; top-right 0, 0, 1, 1 -> 0.5; u8 by rounding.
        assert_eq!(box_down(&img, 4), vec![191, 128, 0, 0]);
    }

    #[test]
    fn empty_fonts_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.ttf"), b"not a font").unwrap();
        let cfg = GlyphsConfig {
            fonts_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let err = make_glyphs(&cfg, &dir.path().join("out"), &mut crate::NoProgress)
            .expect_err("no usable font must be an error")
            .to_string();
        assert!(err.contains("no usable font"), "{err}");
    }

    /// The system fonts, when the machine has some (CI installs fonts-noto-core);
    /// `GENLAB_REQUIRE_FONTS=1` turns their absence into a failure.
    fn system_fonts() -> Option<PathBuf> {
        let dir = PathBuf::from("/usr/share/fonts");
        let any = dir.is_dir() && font_files(&dir).map(|f| !f.is_empty()).unwrap_or(false);
        if !any {
            assert!(
                std::env::var_os("GENLAB_REQUIRE_FONTS").is_none(),
                "GENLAB_REQUIRE_FONTS is set but /usr/share/fonts has no font"
            );
            eprintln!("skipped: no fonts in /usr/share/fonts (apt-get install fonts-noto-core)");
            return None;
        }
        Some(dir)
    }

    #[test]
    fn rendering_is_reproducible_and_split_into_alphabets() {
        let Some(fonts_dir) = system_fonts() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = GlyphsConfig {
            fonts_dir,
            drawers: 2,
            max_chars: 10,
            max_fonts: 2,
            ..Default::default()
        };
        let a = make_glyphs(&cfg, &dir.path().join("a"), &mut crate::NoProgress).unwrap();
        make_glyphs(&cfg, &dir.path().join("b"), &mut crate::NoProgress).unwrap();
        let bytes = |s: &str| std::fs::read(dir.path().join(s).join(BIN_FILE)).unwrap();
        assert_eq!(bytes("a"), bytes("b"), "same seed, same bytes");
        let g = Glyphs::load(&dir.path().join("a")).unwrap().into_images();
        assert_eq!(g.len(), a.classes.len() * 2);
        assert!(a.fonts.len() >= 2, "at least two scripts: {:?}", a.fonts);
        // Every image has ink, and two drawers of one character differ.
        let mut x = vec![0f32; 28 * 28];
        let mut y = vec![0f32; 28 * 28];
        g.write_example(0, &mut x);
        g.write_example(1, &mut y);
        assert!(x.iter().sum::<f32>() > 5.0);
        assert_ne!(x, y);
    }
}
