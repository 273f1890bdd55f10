//! Moving MNIST: Srivastava, Mansimov & Salakhutdinov 2015, "Unsupervised Learning of Video
//! Representations using LSTMs", arXiv:1502.04681, Sec. 3 ("Moving MNIST"). Digits:
//! MNIST (LeCun, Cortes & Burges 1998).
//!
//! **A clip.** Each of `digits` MNIST digits is area-resampled from 28x28 to
//! `digit_size` x `digit_size` ([`area_matrix`]) and placed on a black `size` x `size`
//! canvas. Its box's top-left corner starts at a uniform position in `[0, L]²`,
//! `L = size - digit_size` (so the digit starts inside the frame), and moves with a
//! constant speed drawn uniformly from the speed range, in a direction whose angle is
//! uniform in `[0, 2π)`: `p_{t+1} = p_t + v`. When a step would take the box past a wall,
//! it bounces as a billiard ball: the velocity component across that wall changes sign and
//! the overshoot is mirrored back inside (`p -> -p` at 0, `p -> 2L - p` at `L`). The paper's
//! own code clamps at the wall instead of mirroring; the two agree except for the frame of
//! a bounce. Each frame draws the digit at its position rounded to the nearest pixel (the
//! paper's code truncates), so the digit is never cut by the border and its ink mass is the
//! same in every frame. Several digits are combined with the pixel-wise maximum, as in the
//! paper's code. Values are in `[0, 1]`; an example is `[frames, 1, size, size]`.
//!
//! **Determinism.** Clip `i` of a split is a pure function of `(seed, split, i)`: its first
//! digit is image `perm[i mod N]` of the split (`perm` a seeded permutation of the `N`
//! MNIST images, so with the default `clips = N` every digit leads exactly one clip), and a
//! per-clip generator `Rng::derive(seed, "moving-mnist:SPLIT:i")` draws, digit by digit:
//! the source image (digits after the first: uniform over the split), the start row, the
//! start column, the angle and the speed. Clips are made in `write_example`; nothing is
//! cached. The train split is made from MNIST's training digits and the test split from
//! its test digits, so no test digit is ever seen in training.
//!
//! **Coordinates.** Rows grow downward. Positions are `[row, col]` in pixels of the top-left
//! corner of the digit's box ([`MovingMnist::trajectory`], continuous; the frame draws the
//! rounded value); the box's centre is that plus `(digit_size - 1) / 2`. An angle `θ` is
//! measured counter-clockwise from "right" as seen on screen: the velocity is
//! `[-s sin θ, s cos θ]` (`[row, col]` per frame), so "up" is decreasing row.
//!
//! **Labels and captions.** The label is the first digit's class (10 classes).
//! [`MovingMnist::direction`] is the 8-way compass sector of a digit's initial velocity (0 =
//! right, counter-clockwise: [`DIRECTION_NAMES`]). [`MovingMnist::caption`] names every
//! digit with its own direction: "a 3 moving up and to the right", "a 3 moving up and an 8
//! moving left".
//!
//! **Spec.** `moving-mnist[:SPLIT][,KEY=VALUE...]`, SPLIT `train` (default) or `test`, keys
//! `frames`, `digits`, `digit_size`, `size` (or the run's image size), `speed=MIN..MAX`,
//! `clips`, `seed` (see [`MovingMnistConfig`]); e.g. `moving-mnist:test,frames=16,digits=2`.
//! The held-out split of a train spec is the same spec with `test`.

use genlab_core::{Error, Result, Rng};

use crate::{data_dir, DataKind, Dataset, DatasetInfo, Mnist, OpenOptions, Split};

/// Default seed of the clips: a split's clips are the same whatever the run's seed, so that
/// runs are evaluated on the same test clips.
pub const MOVING_MNIST_SEED: u64 = 2015;
/// Speed range in pixels per frame at `size` 32; it scales linearly with `size` (at 64:
/// 3..6, around the paper's 0.1 x (64 - 28) = 3.6).
pub const SPEED_AT_32: [f64; 2] = [1.5, 3.0];
/// Largest digit box when `digit_size` is not given: MNIST's own 28 (the paper's setting
/// at size 64); smaller canvases use half their side.
pub const DEFAULT_MAX_DIGIT_SIZE: usize = 28;
/// Most frames per clip (a guard against typos).
pub const MAX_FRAMES: usize = 1024;
/// Largest canvas side.
pub const MAX_SIZE: usize = 1024;
/// Most digits per clip.
pub const MAX_DIGITS: usize = 9;
/// Names of the eight compass sectors of [`MovingMnist::direction`], counter-clockwise
/// from "right" (45 degrees each, centred on the named direction).
pub const DIRECTION_NAMES: [&str; 8] = [
    "right",
    "up and to the right",
    "up",
    "up and to the left",
    "left",
    "down and to the left",
    "down",
    "down and to the right",
];
/// The keys of a `moving-mnist` spec.
pub const SPEC_KEYS: [&str; 7] = [
    "frames",
    "digits",
    "digit_size",
    "size",
    "speed",
    "clips",
    "seed",
];

/// How clips are made (see the module docs). Defaults are the CPU setting: 1 digit,
/// 32x32, 8 frames.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MovingMnistConfig {
    /// Frames per clip (the paper: 20 = 10 given + 10 predicted).
    pub frames: usize,
    /// Canvas side in pixels (the paper: 64).
    pub size: usize,
    /// Digits per clip (the paper: 2).
    pub digits: usize,
    /// Side of each digit's box; `None`: `min(28, size / 2)` (16 at size 32; 28 at 64, the
    /// paper's). Must be below `size` so that the digit can move.
    pub digit_size: Option<usize>,
    /// Speed range `[min, max]` in pixels per frame; `None`: [`SPEED_AT_32`] x `size` / 32.
    pub speed: Option<[f64; 2]>,
    /// Number of clips; `None`: as many as MNIST digits in the split (60000 / 10000).
    pub clips: Option<usize>,
    /// Seed of the clips ([`MOVING_MNIST_SEED`]).
    pub seed: u64,
}

impl Default for MovingMnistConfig {
    fn default() -> Self {
        Self {
            frames: 8, // enough for two bounces at the default speed, cheap on a CPU
            size: 32,  // a DiT with patch 4 sees 64 tokens per frame
            digits: 1, // one digit: its class is the clip's label
            digit_size: None,
            speed: None,
            clips: None,
            seed: MOVING_MNIST_SEED,
        }
    }
}

impl MovingMnistConfig {
    /// The paper's setting: 2 digits of 28x28 on 64x64, 20 frames.
    pub fn paper() -> Self {
        Self {
            frames: 20,
            size: 64,
            digits: 2,
            digit_size: Some(28),
            ..Self::default()
        }
    }

    /// The digit box side in use.
    pub fn digit_side(&self) -> usize {
        self.digit_size
            .unwrap_or((self.size / 2).min(DEFAULT_MAX_DIGIT_SIZE))
    }

    /// The speed range in use, pixels per frame.
    pub fn speed_range(&self) -> [f64; 2] {
        self.speed
            .unwrap_or(SPEED_AT_32.map(|s| s * self.size as f64 / 32.0))
    }

    /// Errors unless every setting is in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |setting: &str, problem: String| {
            Err(Error::Setting {
                setting: format!("moving-mnist {setting}"),
                problem,
            })
        };
        if self.frames == 0 || self.frames > MAX_FRAMES {
            return bad(
                "frames",
                format!("must be 1..={MAX_FRAMES}, got {}", self.frames),
            );
        }
        if self.size < 2 || self.size > MAX_SIZE {
            return bad("size", format!("must be 2..={MAX_SIZE}, got {}", self.size));
        }
        if self.digits == 0 || self.digits > MAX_DIGITS {
            return bad(
                "digits",
                format!("must be 1..={MAX_DIGITS}, got {}", self.digits),
            );
        }
        let d = self.digit_side();
        if d == 0 || d >= self.size {
            return bad(
                "digit_size",
                format!(
                    "must be 1..{} (below the canvas side {}, so that the digit can move), \
                     got {d}",
                    self.size, self.size
                ),
            );
        }
        let [lo, hi] = self.speed_range();
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi) {
            return bad(
                "speed",
                format!("must be MIN..MAX with 0 <= MIN <= MAX, got {lo}..{hi}"),
            );
        }
        if self.clips == Some(0) {
            return bad("clips", "must be at least 1, got 0".into());
        }
        Ok(())
    }

    /// Applies the `KEY=VALUE` options of a spec ([`SPEC_KEYS`]).
    pub fn apply_options(&mut self, options: &[(String, String)]) -> Result<()> {
        let int = |k: &str, v: &str| -> Result<usize> {
            v.parse().map_err(|_| {
                Error::InvalidInput(format!(
                    "moving-mnist option {k}={v}: expected a whole number"
                ))
            })
        };
        for (k, v) in options {
            match k.as_str() {
                "frames" => self.frames = int(k, v)?,
                "digits" => self.digits = int(k, v)?,
                "digit_size" => self.digit_size = Some(int(k, v)?),
                "size" => self.size = int(k, v)?,
                "clips" => self.clips = Some(int(k, v)?),
                "seed" => self.seed = int(k, v)? as u64,
                "speed" => {
                    let parsed = v.split_once("..").and_then(|(a, b)| {
                        Some([a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?])
                    });
                    self.speed = Some(parsed.ok_or_else(|| {
                        Error::InvalidInput(format!(
                            "moving-mnist option speed={v}: expected MIN..MAX in pixels per \
                             frame, e.g. speed=1.5..3"
                        ))
                    })?);
                }
                other => {
                    return Err(Error::InvalidInput(format!(
                        "unknown moving-mnist option `{other}`; expected one of {}",
                        SPEC_KEYS.join(", ")
                    )))
                }
            }
        }
        Ok(())
    }
}

/// A parsed `moving-mnist[:SPLIT][,KEY=VALUE...]` argument.
#[derive(Clone, Debug, PartialEq)]
pub struct MovingMnistSpec {
    pub split: Split,
    pub options: Vec<(String, String)>,
}

impl MovingMnistSpec {
    /// Parses the argument after `moving-mnist:` (`None`: the train split, defaults).
    pub fn parse(arg: Option<&str>) -> Result<Self> {
        let mut parts = arg.unwrap_or("").split(',').map(str::trim).peekable();
        let split = match parts.peek() {
            Some(p) if !p.contains('=') => {
                let p = parts.next().unwrap_or_default();
                match p {
                    "" | "train" => Split::Train,
                    "test" => Split::Test,
                    other => {
                        return Err(Error::InvalidInput(format!(
                            "unknown moving-mnist split `{other}`; expected train or test \
                             (then options, e.g. moving-mnist:test,frames=16)"
                        )))
                    }
                }
            }
            _ => Split::Train,
        };
        let mut options: Vec<(String, String)> = Vec::new();
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                return Err(Error::InvalidInput(format!(
                    "moving-mnist option `{p}` is not KEY=VALUE (keys: {})",
                    SPEC_KEYS.join(", ")
                )));
            };
            let k = k.trim().to_string();
            if options.iter().any(|o| o.0 == k) {
                return Err(Error::InvalidInput(format!(
                    "moving-mnist option `{k}` is given twice"
                )));
            }
            options.push((k, v.trim().to_string()));
        }
        // Unknown keys and bad values are reported now, before any file is read.
        MovingMnistConfig::default().apply_options(&options)?;
        Ok(Self { split, options })
    }

    /// The config of this spec; `image_size` (the run's size) sets `size` unless the spec
    /// does, and must agree with it if both do.
    pub fn config(&self, image_size: Option<usize>) -> Result<MovingMnistConfig> {
        let mut cfg = MovingMnistConfig::default();
        cfg.apply_options(&self.options)?;
        let in_spec = self.options.iter().any(|o| o.0 == "size");
        match image_size {
            Some(s) if in_spec && s != cfg.size => {
                return Err(Error::Setting {
                    setting: "image_size".into(),
                    problem: format!(
                        "is {s} but the moving-mnist spec says size={}; give one of them",
                        cfg.size
                    ),
                })
            }
            Some(s) => cfg.size = s,
            None => {}
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The spec as written canonically: `moving-mnist:SPLIT[,KEY=VALUE...]`.
    pub fn to_spec(&self) -> String {
        let mut s = format!("moving-mnist:{}", self.split);
        for (k, v) in &self.options {
            s.push_str(&format!(",{k}={v}"));
        }
        s
    }
}

/// The registry's `info` of `moving-mnist`: `[frames, 1, size, size]` clips (size from the
/// spec, else 32; a run's `image_size` changes it), 10 classes, held out on the test split.
pub fn moving_mnist_info(arg: Option<&str>) -> Result<DatasetInfo> {
    let spec = MovingMnistSpec::parse(arg)?;
    let cfg = spec.config(None)?;
    let held_out = (spec.split == Split::Train).then(|| {
        MovingMnistSpec {
            split: Split::Test,
            ..spec.clone()
        }
        .to_spec()
    });
    Ok(DatasetInfo {
        kind: DataKind::Video,
        shape: Some(vec![cfg.frames, 1, cfg.size, cfg.size]),
        labels: Some(true),
        num_classes: Some(10),
        held_out,
        log_density: None,
        mode_coverage: None,
        labels_are_modes: false,
    })
}

/// The registry's `open` of `moving-mnist`: clips from one MNIST split (from the cache;
/// `genlab data fetch mnist`). Grey only: another channel count is refused.
pub fn open_moving_mnist(arg: Option<&str>, opts: &OpenOptions) -> Result<Box<dyn Dataset>> {
    let spec = MovingMnistSpec::parse(arg)?;
    if let Some(c) = opts.channels.filter(|&c| c != 1) {
        return Err(Error::Setting {
            setting: "channels".into(),
            problem: format!("is {c}, but moving-mnist clips are grey (1 channel)"),
        });
    }
    let cfg = spec.config(opts.image_size)?;
    let mnist = Mnist::load(&data_dir().join(crate::fetch::MNIST_SUBDIR), spec.split)?;
    Ok(Box::new(MovingMnist::new(
        Box::new(mnist),
        spec.split.name(),
        cfg,
    )?))
}

/// The `[n_out, n_in]` matrix of area resampling along one axis, for any sizes: output
/// pixel `i` covers the input interval `[i s, (i + 1) s)`, `s = n_in / n_out`, and is the
/// mean of the input over it, each input pixel weighted by its overlap (PIL's box filter,
/// OpenCV's `INTER_AREA`). Rows sum to 1, so the mean intensity is kept.
pub fn area_matrix(n_in: usize, n_out: usize) -> Vec<f64> {
    let mut m = vec![0.0; n_out * n_in];
    let s = n_in as f64 / n_out as f64;
    for i in 0..n_out {
        let (a, b) = (i as f64 * s, (i + 1) as f64 * s);
        let first = a.floor() as usize;
        let last = (b.ceil() as usize).min(n_in);
        for j in first..last {
            let overlap = (b.min(j as f64 + 1.0) - a.max(j as f64)).max(0.0);
            m[i * n_in + j] = overlap / s;
        }
    }
    m
}

/// Resamples the `h x w` image `img` to `oh x ow` with [`area_matrix`] along each axis.
pub fn area_resize(img: &[f32], (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<f32> {
    resample(
        img,
        (h, w),
        &area_matrix(h, oh),
        &area_matrix(w, ow),
        (oh, ow),
    )
}

/// `rows · img · colsᵀ` for the `h x w` image `img`, `rows` `[oh, h]`, `cols` `[ow, w]`.
fn resample(
    img: &[f32],
    (h, w): (usize, usize),
    rows: &[f64],
    cols: &[f64],
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    // Columns first: tmp [h, ow], then rows: out [oh, ow].
    let mut tmp = vec![0f64; h * ow];
    for y in 0..h {
        for x in 0..ow {
            tmp[y * ow + x] = (0..w)
                .map(|j| cols[x * w + j] * img[y * w + j] as f64)
                .sum();
        }
    }
    let mut out = vec![0f32; oh * ow];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = (0..h)
                .map(|j| rows[y * h + j] * tmp[j * ow + x])
                .sum::<f64>() as f32;
        }
    }
    out
}

/// The billiard path of a box corner in `[0, room]²`: `frames` positions from `start` with
/// constant `velocity` (both `[row, col]`), each component reflected at 0 and `room` (sign
/// of the velocity flipped, overshoot mirrored). `room` must be positive.
pub fn bounce_path(start: [f64; 2], velocity: [f64; 2], room: f64, frames: usize) -> Vec<[f64; 2]> {
    let (mut p, mut v) = (start, velocity);
    let mut out = Vec::with_capacity(frames);
    for t in 0..frames {
        if t > 0 {
            for a in 0..2 {
                p[a] += v[a];
                // More than one reflection only when a step exceeds the room.
                loop {
                    if p[a] < 0.0 {
                        p[a] = -p[a];
                        v[a] = -v[a];
                    } else if p[a] > room {
                        p[a] = 2.0 * room - p[a];
                        v[a] = -v[a];
                    } else {
                        break;
                    }
                }
            }
        }
        out.push(p);
    }
    out
}

/// The compass sector (0..8, 0 = right, counter-clockwise, [`DIRECTION_NAMES`]) of the
/// angle `theta` (radians, counter-clockwise from right as seen on screen).
pub fn direction_sector(theta: f64) -> usize {
    let eighth = std::f64::consts::FRAC_PI_4;
    ((theta / eighth).round().rem_euclid(8.0)) as usize % 8
}

/// "a 3", "an 8".
fn a_digit(class: u8) -> String {
    let article = if class == 8 { "an" } else { "a" };
    format!("{article} {class}")
}

/// The caption of digits `(class, direction sector)`: "a 3 moving up and to the right",
/// "a 3 moving up and an 8 moving left", "a 1 moving up, a 2 moving left and a 3 moving
/// down".
pub fn motion_caption(digits: &[(u8, usize)]) -> String {
    let parts: Vec<String> = digits
        .iter()
        .map(|&(c, d)| format!("{} moving {}", a_digit(c), DIRECTION_NAMES[d % 8]))
        .collect();
    match parts.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// How one digit of a clip moves.
#[derive(Clone, Debug, PartialEq)]
pub struct DigitMotion {
    /// Index of its image in the source split.
    pub source: usize,
    /// Its class, 0..=9.
    pub class: u8,
    /// Angle of the initial velocity, radians in `[0, 2π)`, counter-clockwise from right.
    pub angle: f64,
    /// Pixels per frame.
    pub speed: f64,
    /// Top-left corner `[row, col]` per frame, continuous (drawn rounded).
    pub path: Vec<[f64; 2]>,
}

impl DigitMotion {
    /// The compass sector of the initial velocity ([`direction_sector`]).
    pub fn direction(&self) -> usize {
        direction_sector(self.angle)
    }
}

/// Moving MNIST clips made from a labelled digit dataset (see the module docs).
pub struct MovingMnist {
    name: String,
    stream: String,
    cfg: MovingMnistConfig,
    source: Box<dyn Dataset>,
    /// `[H, W]` of a source image.
    side: [usize; 2],
    /// Source image of the first digit of clip `i` is `order[i % N]`.
    order: Vec<usize>,
    /// Area-resampling matrices (rows `[d, H]`, columns `[d, W]`).
    rows: Vec<f64>,
    cols: Vec<f64>,
}

impl MovingMnist {
    /// Clips of `cfg` made from `source` (one grey `[1, H, W]` image per example, labelled
    /// with the ten digits), whose split is named `split` (`train`, `test`): the name is
    /// part of every clip's random stream.
    pub fn new(source: Box<dyn Dataset>, split: &str, cfg: MovingMnistConfig) -> Result<Self> {
        cfg.validate()?;
        let shape = source.example_shape();
        if source.kind() != DataKind::Image || shape.len() != 3 || shape[0] != 1 {
            return Err(Error::Data(format!(
                "moving-mnist: the source `{}` must hold grey [1, H, W] images, got examples \
                 of shape {shape:?}",
                source.name()
            )));
        }
        if source.num_classes() != Some(10) || source.is_empty() {
            return Err(Error::Data(format!(
                "moving-mnist: the source `{}` must be non-empty and labelled with the ten \
                 digits",
                source.name()
            )));
        }
        let stream = format!("moving-mnist:{split}");
        let mut order: Vec<usize> = (0..source.len()).collect();
        Rng::derive(cfg.seed, &format!("{stream}:order")).shuffle(&mut order);
        let d = cfg.digit_side();
        let mut name = stream.clone();
        let def = MovingMnistConfig::default();
        for (k, v, dv) in [
            ("frames", cfg.frames, def.frames),
            ("size", cfg.size, def.size),
            ("digits", cfg.digits, def.digits),
        ] {
            if v != dv {
                name.push_str(&format!(",{k}={v}"));
            }
        }
        Ok(Self {
            name,
            stream,
            side: [shape[1], shape[2]],
            order,
            rows: area_matrix(shape[1], d),
            cols: area_matrix(shape[2], d),
            cfg,
            source,
        })
    }

    /// The configuration the clips are made with.
    pub fn config(&self) -> &MovingMnistConfig {
        &self.cfg
    }

    /// How each digit of clip `i` moves (module docs: the draws and their order).
    ///
    /// # Panics
    /// When `i >= len()`.
    pub fn motion(&self, i: usize) -> Vec<DigitMotion> {
        assert!(i < self.len(), "clip {i} of {}", self.len());
        let n = self.source.len();
        let room = (self.cfg.size - self.cfg.digit_side()) as f64;
        let [lo, hi] = self.cfg.speed_range();
        let mut rng = Rng::derive(self.cfg.seed, &format!("{}:{i}", self.stream));
        (0..self.cfg.digits)
            .map(|k| {
                let source = if k == 0 {
                    self.order[i % n]
                } else {
                    rng.below(n as u64) as usize
                };
                let start = [rng.uniform() * room, rng.uniform() * room];
                let angle = rng.uniform() * std::f64::consts::TAU;
                let speed = lo + rng.uniform() * (hi - lo);
                let velocity = [-speed * angle.sin(), speed * angle.cos()];
                DigitMotion {
                    source,
                    class: self.source.label(source).unwrap_or(0) as u8,
                    angle,
                    speed,
                    path: bounce_path(start, velocity, room, self.cfg.frames),
                }
            })
            .collect()
    }

    /// The first digit's top-left corner `[row, col]` (pixels, continuous; the frame draws
    /// it rounded) in each frame.
    pub fn trajectory(&self, i: usize) -> Vec<[f32; 2]> {
        self.motion(i)[0]
            .path
            .iter()
            .map(|p| [p[0] as f32, p[1] as f32])
            .collect()
    }

    /// The compass sector (0 = right, counter-clockwise; [`DIRECTION_NAMES`]) of the first
    /// digit's initial velocity.
    pub fn direction(&self, i: usize) -> usize {
        self.motion(i)[0].direction()
    }

    /// The classes of every digit of clip `i`, first digit first.
    pub fn classes(&self, i: usize) -> Vec<u8> {
        self.motion(i).iter().map(|m| m.class).collect()
    }

    /// "a 3 moving up and to the right" (each digit with its own direction).
    pub fn caption(&self, i: usize) -> String {
        let d: Vec<(u8, usize)> = self
            .motion(i)
            .iter()
            .map(|m| (m.class, m.direction()))
            .collect();
        motion_caption(&d)
    }

    /// The source image `j` resampled to the digit box: `[d, d]`.
    pub fn glyph(&self, j: usize) -> Vec<f32> {
        let [h, w] = self.side;
        let d = self.cfg.digit_side();
        let mut img = vec![0f32; h * w];
        self.source.write_example(j, &mut img);
        if (h, w) == (d, d) {
            return img;
        }
        let mut out = resample(&img, (h, w), &self.rows, &self.cols, (d, d));
        for v in &mut out {
            *v = v.clamp(0.0, 1.0);
        }
        out
    }
}

impl Dataset for MovingMnist {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.cfg.clips.unwrap_or(self.source.len())
    }

    fn example_shape(&self) -> Vec<usize> {
        vec![self.cfg.frames, 1, self.cfg.size, self.cfg.size]
    }

    fn write_example(&self, i: usize, out: &mut [f32]) {
        let (s, d) = (self.cfg.size, self.cfg.digit_side());
        out.fill(0.0);
        for m in self.motion(i) {
            let g = self.glyph(m.source);
            for (t, p) in m.path.iter().enumerate() {
                let (r0, c0) = (p[0].round() as usize, p[1].round() as usize);
                let frame = &mut out[t * s * s..(t + 1) * s * s];
                for y in 0..d {
                    let row = &mut frame[(r0 + y) * s + c0..(r0 + y) * s + c0 + d];
                    for (o, &v) in row.iter_mut().zip(&g[y * d..(y + 1) * d]) {
                        *o = o.max(v);
                    }
                }
            }
        }
    }

    fn label(&self, i: usize) -> Option<u32> {
        let n = self.source.len();
        self.source.label(self.order[i % n])
    }

    fn num_classes(&self) -> Option<usize> {
        Some(10)
    }

    fn kind(&self) -> DataKind {
        DataKind::Video
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{make_batch, Digits};
    use candle_core::Device;

    /// Positions computed two ways in f64 agree to rounding.
    const PATH_TOL: f64 = 1e-9;
    /// The fine-substep simulation moves at most one substep (`speed / SUBSTEPS`) past
    /// the exact reflection point per bounce.
    const SUBSTEPS: usize = 10_000;
    /// Frame sums of the same glyph in different places (f32 sums of the same values).
    const MASS_TOL: f32 = 1e-4;
    /// Area resampling against block means of the supersampled image (f32 output).
    const AREA_TOL: f32 = 1e-6;

    /// Clips of the 8x8 digits (no download): 8x8 digits on a 16x16 canvas.
    fn small(cfg: MovingMnistConfig) -> MovingMnist {
        MovingMnist::new(Box::new(Digits::load().unwrap()), "train", cfg).unwrap()
    }

    fn small_cfg() -> MovingMnistConfig {
        MovingMnistConfig {
            frames: 24,
            size: 16,
            digit_size: Some(8),
            clips: Some(300),
            ..Default::default()
        }
    }

    fn clip(ds: &MovingMnist, i: usize) -> Vec<f32> {
        let mut out = vec![0f32; ds.example_shape().iter().product()];
        ds.write_example(i, &mut out);
        out
    }

    /// The closed form of a billiard coordinate: the unreflected position folded into
    /// `[0, room]` (a triangle wave of period `2 room`).
    fn fold(q: f64, room: f64) -> f64 {
        let r = q.rem_euclid(2.0 * room);
        if r <= room {
            r
        } else {
            2.0 * room - r
        }
    }

    #[test]
    fn clips_are_pure_functions_of_seed_split_and_index() {
        let ds = small(small_cfg());
        assert_eq!(ds.example_shape(), vec![24, 1, 16, 16]);
        assert_eq!(
            (ds.len(), ds.kind(), ds.num_classes()),
            (300, DataKind::Video, Some(10))
        );
        let again = small(small_cfg());
        for i in [0, 1, 17, 299] {
            assert_eq!(clip(&ds, i), clip(&again, i));
            assert_eq!(clip(&ds, i), clip(&ds, i));
            assert!(clip(&ds, i).iter().all(|v| (0.0..=1.0).contains(v)));
        }
        assert_ne!(clip(&ds, 0), clip(&ds, 1));
        let other_seed = small(MovingMnistConfig {
            seed: 7,
            ..small_cfg()
        });
        assert_ne!(clip(&ds, 0), clip(&other_seed, 0));
        let other_split =
            MovingMnist::new(Box::new(Digits::load().unwrap()), "test", small_cfg()).unwrap();
        assert_ne!(clip(&ds, 0), clip(&other_split, 0));
        // With clips = N, every source image leads exactly one clip.
        let all = small(MovingMnistConfig {
            clips: None,
            ..small_cfg()
        });
        let mut firsts: Vec<usize> = (0..all.len()).map(|i| all.motion(i)[0].source).collect();
        firsts.sort_unstable();
        assert!(firsts.iter().copied().eq(0..all.len()));
        // The batch machinery carries [B, T, C, H, W] and the labels.
        let b = make_batch(&ds, &[3, 4], &Device::Cpu).unwrap();
        assert_eq!(b.x.dims(), &[2, 24, 1, 16, 16]);
        let labels: Vec<u32> = b.labels.unwrap().to_vec1().unwrap();
        assert_eq!(labels, vec![ds.label(3).unwrap(), ds.label(4).unwrap()]);
        assert_eq!(ds.label(3).unwrap(), ds.classes(3)[0] as u32);
    }

    #[test]
    fn the_digit_stays_whole_inside_the_frame() {
        let ds = small(small_cfg());
        let (s, d) = (16usize, 8usize);
        let room = (s - d) as f32;
        let mut bounced = 0;
        for i in 0..ds.len() {
            let m = &ds.motion(i)[0];
            let mass: f32 = ds.glyph(m.source).iter().sum();
            assert!(mass > 1.0);
            let c = clip(&ds, i);
            for (t, frame) in c.chunks_exact(s * s).enumerate() {
                let sum: f32 = frame.iter().sum();
                assert!(
                    (sum - mass).abs() < MASS_TOL,
                    "clip {i} frame {t}: {sum} vs {mass}"
                );
            }
            let traj = ds.trajectory(i);
            assert!(traj.iter().flatten().all(|&p| (0.0..=room).contains(&p)));
            // The frame is the glyph at the rounded position, zero elsewhere.
            for (t, p) in traj.iter().enumerate() {
                let (r0, c0) = (p[0].round() as usize, p[1].round() as usize);
                let g = ds.glyph(m.source);
                for y in 0..s {
                    for x in 0..s {
                        let inside = (r0..r0 + d).contains(&y) && (c0..c0 + d).contains(&x);
                        let want = if inside {
                            g[(y - r0) * d + x - c0]
                        } else {
                            0.0
                        };
                        assert_eq!(c[t * s * s + y * s + x], want, "clip {i} frame {t}");
                    }
                }
            }
            let v0 = [traj[1][0] - traj[0][0], traj[1][1] - traj[0][1]];
            let v_last = [traj[23][0] - traj[22][0], traj[23][1] - traj[22][1]];
            if v0[0].signum() != v_last[0].signum() || v0[1].signum() != v_last[1].signum() {
                bounced += 1;
            }
        }
        // 24 frames at >= 1.5 px/frame in an 8-pixel room: most clips bounce.
        assert!(bounced > ds.len() / 2, "only {bounced} clips bounced");
    }

    #[test]
    fn the_bounce_matches_a_closed_form_and_a_fine_simulation() {
        let ds = small(small_cfg());
        let room = 8.0;
        for i in 0..ds.len() {
            let m = &ds.motion(i)[0];
            let v = [-m.speed * m.angle.sin(), m.speed * m.angle.cos()];
            let p0 = m.path[0];
            // Closed form: fold the straight line.
            for (t, p) in m.path.iter().enumerate() {
                for a in 0..2 {
                    let want = fold(p0[a] + t as f64 * v[a], room);
                    assert!((p[a] - want).abs() < PATH_TOL, "clip {i} t {t}: {p:?}");
                }
            }
            // Brute force: many small steps, a wall flips the velocity when crossed.
            let (mut q, mut u) = (p0, v.map(|c| c / SUBSTEPS as f64));
            for (t, p) in m.path.iter().enumerate().skip(1) {
                for _ in 0..SUBSTEPS {
                    for a in 0..2 {
                        q[a] += u[a];
                        if q[a] < 0.0 || q[a] > room {
                            q[a] = q[a].clamp(0.0, room);
                            u[a] = -u[a];
                        }
                    }
                }
                let tol = 2.0 * t as f64 * m.speed / SUBSTEPS as f64;
                for a in 0..2 {
                    assert!((p[a] - q[a]).abs() <= tol, "clip {i} t {t}: {p:?} vs {q:?}");
                }
            }
        }
        // Hand-made cases: a bounce off the right wall and a step over two walls.
        let p = bounce_path([0.0, 7.0], [0.0, 2.0], 8.0, 3);
        assert_eq!(p, vec![[0.0, 7.0], [0.0, 7.0], [0.0, 5.0]]);
        let p = bounce_path([1.0, 1.0], [-3.0, 0.0], 8.0, 2);
        assert_eq!(p[1], [2.0, 1.0]);
        let p = bounce_path([1.0, 0.0], [0.0, 19.0], 8.0, 2);
        assert_eq!(p[1], [1.0, fold(19.0, 8.0)]);
    }

    #[test]
    fn captions_and_directions_follow_the_velocity() {
        let ds = small(MovingMnistConfig {
            frames: 2,
            size: 64,
            digit_size: Some(8),
            ..small_cfg()
        });
        let mut seen = [0usize; 8];
        for i in 0..ds.len() {
            let m = &ds.motion(i)[0];
            let dir = ds.direction(i);
            seen[dir] += 1;
            // The sector's centre is within 22.5 degrees of the velocity's angle, the
            // angle measured on screen (up = decreasing row).
            let v = [-m.speed * m.angle.sin(), m.speed * m.angle.cos()];
            let screen = (-v[0]).atan2(v[1]);
            let centre = dir as f64 * std::f64::consts::FRAC_PI_4;
            let diff = (screen - centre + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU)
                - std::f64::consts::PI;
            assert!(
                diff.abs() <= std::f64::consts::FRAC_PI_8 + 1e-12,
                "clip {i}"
            );
            let cap = ds.caption(i);
            let class = ds.classes(i)[0];
            assert!(cap.starts_with(&format!(
                "{} {class} moving ",
                a_digit(class).split(' ').next().unwrap()
            )));
            assert!(cap.ends_with(DIRECTION_NAMES[dir]), "{cap}");
            // The first step (no bounce yet far from the walls) goes that way.
            let t = ds.trajectory(i);
            let (dr, dc) = (t[1][0] - t[0][0], t[1][1] - t[0][1]);
            let away = |p: f32| (3.5..=52.5).contains(&p);
            if away(t[0][0]) && away(t[0][1]) {
                match dir {
                    0 => assert!(dc > 0.0 && dr.abs() < dc),
                    2 => assert!(dr < 0.0 && dc.abs() < -dr),
                    4 => assert!(dc < 0.0 && dr.abs() < -dc),
                    6 => assert!(dr > 0.0 && dc.abs() < dr),
                    1 => assert!(dr < 0.0 && dc > 0.0),
                    3 => assert!(dr < 0.0 && dc < 0.0),
                    5 => assert!(dr > 0.0 && dc < 0.0),
                    _ => assert!(dr > 0.0 && dc > 0.0),
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 10), "{seen:?}");
        assert_eq!(motion_caption(&[(3, 1)]), "a 3 moving up and to the right");
        assert_eq!(motion_caption(&[(8, 4)]), "an 8 moving left");
        assert_eq!(
            motion_caption(&[(3, 2), (7, 6)]),
            "a 3 moving up and a 7 moving down"
        );
        assert_eq!(
            motion_caption(&[(1, 0), (2, 5), (0, 7)]),
            "a 1 moving right, a 2 moving down and to the left and a 0 moving down and to the right"
        );
        let eighth = std::f64::consts::FRAC_PI_4;
        assert_eq!(direction_sector(0.0), 0);
        assert_eq!(direction_sector(2.0 * eighth + 0.1), 2);
        assert_eq!(direction_sector(8.0 * eighth - 0.1), 0);
        assert_eq!(direction_sector(7.0 * eighth - 0.3), 7);
    }

    #[test]
    fn several_digits_combine_with_the_maximum() {
        let two = small(MovingMnistConfig {
            digits: 2,
            ..small_cfg()
        });
        let s = 16;
        for i in [0, 5, 9] {
            let ms = two.motion(i);
            assert_eq!(ms.len(), 2);
            let mut want = vec![0f32; 24 * s * s];
            for m in &ms {
                let g = two.glyph(m.source);
                for (t, p) in m.path.iter().enumerate() {
                    let (r0, c0) = (p[0].round() as usize, p[1].round() as usize);
                    for y in 0..8 {
                        for x in 0..8 {
                            let o = &mut want[t * s * s + (r0 + y) * s + c0 + x];
                            *o = o.max(g[y * 8 + x]);
                        }
                    }
                }
            }
            assert_eq!(clip(&two, i), want);
            let cap = two.caption(i);
            assert_eq!(cap.matches(" moving ").count(), 2, "{cap}");
            assert_eq!(two.label(i), Some(ms[0].class as u32));
        }
    }

    #[test]
    fn area_resampling_is_the_mean_over_each_output_pixel() {
        // 28 -> 16: the exact area average equals the block mean of the image replicated
        // 4x4 (to 112x112) in blocks of 7x7.
        let mut rng = Rng::new(3);
        let img: Vec<f32> = (0..28 * 28).map(|_| rng.uniform() as f32).collect();
        let got = area_resize(&img, (28, 28), (16, 16));
        for y in 0..16 {
            for x in 0..16 {
                let mut sum = 0.0f64;
                for yy in y * 7..(y + 1) * 7 {
                    for xx in x * 7..(x + 1) * 7 {
                        sum += img[(yy / 4) * 28 + xx / 4] as f64;
                    }
                }
                let want = (sum / 49.0) as f32;
                assert!((got[y * 16 + x] - want).abs() < AREA_TOL, "{y},{x}");
            }
        }
        // An integer factor is the plain block mean; the same size is the identity.
        let got = area_resize(&img, (28, 28), (14, 14));
        let want = (img[0] + img[1] + img[28] + img[29]) / 4.0;
        assert!((got[0] - want).abs() < AREA_TOL);
        let same = area_resize(&img, (28, 28), (28, 28));
        assert!(same.iter().zip(&img).all(|(a, b)| (a - b).abs() < AREA_TOL));
        for (n_in, n_out) in [(28, 16), (8, 16), (28, 28), (5, 3)] {
            let m = area_matrix(n_in, n_out);
            for row in m.chunks(n_in) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn specs_parse_describe_and_refuse_bad_options() {
        let info = crate::dataset_info("moving-mnist").unwrap();
        assert_eq!(info.kind, DataKind::Video);
        assert_eq!(info.shape, Some(vec![8, 1, 32, 32]));
        assert_eq!(info.num_classes, Some(10));
        assert_eq!(info.held_out.as_deref(), Some("moving-mnist:test"));
        let info = crate::dataset_info("moving-mnist:train,frames=16,digits=2").unwrap();
        assert_eq!(info.shape, Some(vec![16, 1, 32, 32]));
        assert_eq!(
            info.held_out.as_deref(),
            Some("moving-mnist:test,frames=16,digits=2")
        );
        let info = crate::dataset_info("moving-mnist:size=64,frames=20").unwrap();
        assert_eq!(info.shape, Some(vec![20, 1, 64, 64]));
        assert!(crate::dataset_info("moving-mnist:test")
            .unwrap()
            .held_out
            .is_none());
        let spec = MovingMnistSpec::parse(Some("test,speed=1..2,seed=5")).unwrap();
        let cfg = spec.config(Some(48)).unwrap();
        assert_eq!(
            (cfg.size, cfg.digit_side(), cfg.speed, cfg.seed),
            (48, 24, Some([1.0, 2.0]), 5)
        );
        assert_eq!(MovingMnistConfig::paper().digit_side(), 28);
        assert_eq!(MovingMnistConfig::paper().speed_range(), [3.0, 6.0]);
        let err = |spec: &str| crate::dataset_info(spec).unwrap_err().to_string();
        assert!(err("moving-mnist:val").contains("train or test"));
        assert!(err("moving-mnist:train,fps=3").contains("frames, digits"));
        assert!(err("moving-mnist:frames=x").contains("whole number"));
        assert!(err("moving-mnist:frames=0").contains("frames must be 1..="));
        assert!(err("moving-mnist:frames=2,frames=3").contains("twice"));
        assert!(err("moving-mnist:digit_size=32").contains("below the canvas side"));
        assert!(err("moving-mnist:speed=3").contains("MIN..MAX"));
        assert!(err("moving-mnist:speed=3..1").contains("MIN <= MAX"));
        assert!(err("moving-mnist:train,clips").contains("KEY=VALUE"));
        let e = MovingMnistSpec::parse(Some("size=32"))
            .unwrap()
            .config(Some(64))
            .unwrap_err()
            .to_string();
        assert!(e.contains("image_size") && e.contains("size=32"), "{e}");
        let opts = OpenOptions {
            channels: Some(3),
            ..Default::default()
        };
        let e = crate::open_dataset("moving-mnist", &opts)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("grey"), "{e}");
        let toy = crate::Toy2d::new(crate::Toy2dKind::TwoMoons, 10, 0);
        let e = MovingMnist::new(Box::new(toy), "train", MovingMnistConfig::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("grey [1, H, W]"), "{e}");
    }

    #[test]
    fn registry_opens_moving_mnist_from_the_mnist_cache() {
        let opts = OpenOptions::default();
        match crate::open_dataset("moving-mnist:test,frames=4", &opts) {
            Ok(ds) => {
                assert_eq!((ds.len(), ds.example_shape()), (10_000, vec![4, 1, 32, 32]));
                assert_eq!(ds.name(), "moving-mnist:test,frames=4");
                let mut out = vec![0f32; 4 * 32 * 32];
                ds.write_example(9_999, &mut out);
                let sums: Vec<f32> = out.chunks(32 * 32).map(|f| f.iter().sum()).collect();
                assert!(sums[0] > 5.0 && sums.iter().all(|s| (s - sums[0]).abs() < MASS_TOL));
                assert!(ds.label(0).unwrap() < 10);
            }
            Err(e) => eprintln!("skipped the MNIST part: {e} (genlab data fetch mnist)"),
        }
    }
}
