//! The data of every few-label experiment: a training pool and a test set of labelled
//! images, opened by name.
//!
//! | name | pool | test |
//! |---|---|---|
//! | `mnist` | the 60,000 training images | the 10,000 test images |
//! | `digits` | 70% of the 8x8 digits (fixed split) | the other 30% |
//! | `digits28` | the same 70%, upsampled to MNIST's 28x28 | the same 30%, upsampled |
//! | `synthetic` | 10 random 8x8 binary templates with 10% of pixels flipped, 60 each | 20 each |
//!
//! The pool is never loaded as one array: the datasets are random access
//! ([`genlab_data::Dataset`]) and every pass over it goes through [`for_batches`] in
//! chunks of `batch` examples.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use genlab_core::{Error, Result, Rng};
use genlab_data::{Dataset, Digits, Mnist, Split};

/// The data sources: `(name, description)`.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "mnist",
        "MNIST: pool = 60,000 training images, test = 10,000 (genlab data fetch mnist)",
    ),
    (
        "digits",
        "the embedded 8x8 digits: pool = 70% (1,258), test = 30% (539), fixed split",
    ),
    (
        "digits28",
        "the 8x8 digits upsampled to 28x28 as MNIST frames its digits (bicubic to the central \
         20x20, zero border): the digits split, for domain adaptation from MNIST",
    ),
    (
        "synthetic",
        "10 classes of noisy 8x8 binary templates (600 pool, 200 test): for tests",
    ),
];

/// Seed of the fixed digits split and of the synthetic set.
const SPLIT_SEED: u64 = 20_250_101;

/// Labelled images in memory, `[n, C, H, W]` row-major.
#[derive(Clone, Debug)]
pub struct InMemory {
    pub name: String,
    pub shape: Vec<usize>,
    pub x: Vec<f32>,
    pub y: Vec<u32>,
}

impl Dataset for InMemory {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> usize {
        self.y.len()
    }
    fn example_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn write_example(&self, i: usize, out: &mut [f32]) {
        let d = out.len();
        out.copy_from_slice(&self.x[i * d..(i + 1) * d]);
    }
    fn label(&self, i: usize) -> Option<u32> {
        Some(self.y[i])
    }
    fn kind(&self) -> genlab_data::DataKind {
        genlab_data::DataKind::Image
    }
}

/// A view of some examples of a dataset.
#[derive(Clone)]
pub struct Part {
    pub ds: Arc<dyn Dataset>,
    /// Indices into `ds`.
    pub idx: Vec<usize>,
}

impl Part {
    pub fn len(&self) -> usize {
        self.idx.len()
    }
    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }
    /// Label of the part's `i`-th example.
    pub fn label(&self, i: usize) -> u32 {
        self.ds.label(self.idx[i]).unwrap_or(0)
    }
}

/// A pool to draw labels from and a test set.
#[derive(Clone)]
pub struct Data {
    pub name: String,
    pub pool: Part,
    pub test: Part,
    /// `[C, H, W]`.
    pub shape: Vec<usize>,
    pub classes: usize,
}

impl Data {
    /// Opens `name` (one of [`SOURCES`]).
    pub fn open(name: &str) -> Result<Self> {
        let (pool, test): (Arc<dyn Dataset>, Arc<dyn Dataset>) = match name {
            "mnist" => {
                let dir = genlab_data::data_dir().join(genlab_data::fetch::MNIST_SUBDIR);
                (
                    Arc::new(Mnist::load(&dir, Split::Train)?),
                    Arc::new(Mnist::load(&dir, Split::Test)?),
                )
            }
            "digits" | "digits28" => {
                let d: Arc<dyn Dataset> = match name {
                    "digits" => Arc::new(Digits::load()?),
                    _ => Arc::new(digits28()?),
                };
                let mut idx: Vec<usize> = (0..d.len()).collect();
                Rng::derive(SPLIT_SEED, "digits-split").shuffle(&mut idx);
                let cut = (0.7 * idx.len() as f64).round() as usize;
                let test = idx.split_off(cut);
                return Ok(Self::from_parts(
                    name,
                    Part { ds: d.clone(), idx },
                    Part { ds: d, idx: test },
                ));
            }
            "synthetic" => {
                let (p, t) = synthetic(10, 60, 20, 8);
                (Arc::new(p), Arc::new(t))
            }
            other => return Err(Error::unknown("data", other, SOURCES.iter().map(|s| s.0))),
        };
        let all = |ds: Arc<dyn Dataset>| Part {
            idx: (0..ds.len()).collect(),
            ds,
        };
        Ok(Self::from_parts(name, all(pool), all(test)))
    }

    fn from_parts(name: &str, pool: Part, test: Part) -> Self {
        let shape = pool.ds.example_shape();
        let classes = (0..pool.len()).map(|i| pool.label(i)).max().unwrap_or(0) as usize + 1;
        Self {
            name: name.to_string(),
            pool,
            test,
            shape,
            classes,
        }
    }

    /// Pixels per example.
    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The images `idx` (positions in `part`) as `[n, C, H, W]` and their labels `[n]`.
pub fn gather(part: &Part, idx: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
    let ids: Vec<usize> = idx.iter().map(|&i| part.idx[i]).collect();
    let b = genlab_data::make_batch(part.ds.as_ref(), &ids, device)?;
    let y = b
        .labels
        .ok_or_else(|| Error::Data(format!("{} has no labels", part.ds.name())))?;
    Ok((b.x, y))
}

/// The images `idx` of `part` as row-major f32 (for augmentations done on the host).
pub fn gather_host(part: &Part, idx: &[usize]) -> (Vec<f32>, Vec<u32>) {
    let d: usize = part.ds.example_shape().iter().product();
    let mut x = vec![0f32; idx.len() * d];
    for (chunk, &i) in x.chunks_exact_mut(d).zip(idx) {
        part.ds.write_example(part.idx[i], chunk);
    }
    (x, idx.iter().map(|&i| part.label(i)).collect())
}

/// Calls `f(start, images, labels)` over `idx` in chunks of at most `batch` (the pool is
/// streamed, never gathered whole).
pub fn for_batches(
    part: &Part,
    idx: &[usize],
    batch: usize,
    device: &Device,
    mut f: impl FnMut(usize, &Tensor, &Tensor) -> Result<()>,
) -> Result<()> {
    for (c, chunk) in idx.chunks(batch.max(1)).enumerate() {
        let (x, y) = gather(part, chunk, device)?;
        f(c * batch.max(1), &x, &y)?;
    }
    Ok(())
}

/// `n` examples of `part` chosen at random with classes as balanced as possible (class
/// `k` gets `n / K` or one more), as in Gal et al. 2017's balanced initial set. Errors when
/// the part has fewer than `n` examples.
pub fn balanced_subset(part: &Part, classes: usize, n: usize, rng: &mut Rng) -> Result<Vec<usize>> {
    if n > part.len() {
        return Err(Error::setting(
            "labels",
            format!(
                "asks for {n} labelled examples but the pool has only {}",
                part.len()
            ),
        ));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for i in 0..part.len() {
        by_class[part.label(i) as usize].push(i);
    }
    for c in &mut by_class {
        rng.shuffle(c);
    }
    let mut out = Vec::with_capacity(n);
    let mut round = 0;
    while out.len() < n {
        for c in &by_class {
            if out.len() < n && round < c.len() {
                out.push(c[round]);
            }
        }
        round += 1;
    }
    Ok(out)
}

/// Side of MNIST's images.
const MNIST_SIDE: usize = 28;
/// The fraction of MNIST's side its digits fill (LeCun et al.: size-normalised to a 20x20
/// box, centred in the 28x28 field).
const MNIST_FRAME: f64 = 20.0 / 28.0;

/// The 8x8 digits in MNIST's format: each image resized (bicubic, PyTorch's a = -0.75) to
/// the central 20x20 of a 28x28 zero field and clamped to [0, 1], as CLIP's zero-shot
/// evaluation fits them ([`genlab_train::clip_eval::fit_images`]). Both sets are white ink
/// on black in [0, 1], so intensity and polarity already agree.
pub fn digits28() -> Result<InMemory> {
    let d = Digits::load()?;
    let idx: Vec<usize> = (0..d.len()).collect();
    let b = genlab_data::make_batch(&d, &idx, &Device::Cpu)?;
    let up = genlab_train::clip_eval::fit_images(&b.x, [1, MNIST_SIDE, MNIST_SIDE], MNIST_FRAME)?;
    let y = b
        .labels
        .ok_or_else(|| Error::Data("the digits have no labels".into()))?
        .to_vec1::<u32>()?;
    Ok(InMemory {
        name: "digits28".into(),
        shape: vec![1, MNIST_SIDE, MNIST_SIDE],
        x: up.flatten_all()?.to_vec1::<f32>()?,
        y,
    })
}

/// The synthetic set: `classes` random `side`x`side` binary templates; each example its
/// template with 10% of the pixels flipped; `per_pool` and `per_test` examples per class.
pub fn synthetic(
    classes: usize,
    per_pool: usize,
    per_test: usize,
    side: usize,
) -> (InMemory, InMemory) {
    let d = side * side;
    let mut rng = Rng::derive(SPLIT_SEED, "synthetic");
    let templates: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..d).map(|_| (rng.uniform() < 0.5) as u8 as f32).collect())
        .collect();
    let mut make = |per: usize, name: &str| {
        let mut x = Vec::with_capacity(classes * per * d);
        let mut y = Vec::with_capacity(classes * per);
        for i in 0..classes * per {
            let k = i % classes;
            x.extend(
                templates[k]
                    .iter()
                    .map(|&t| if rng.uniform() < 0.1 { 1.0 - t } else { t }),
            );
            y.push(k as u32);
        }
        InMemory {
            name: name.into(),
            shape: vec![1, side, side],
            x,
            y,
        }
    };
    let pool = make(per_pool, "synthetic:pool");
    let test = make(per_test, "synthetic:test");
    (pool, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_subsets_cover_the_classes_evenly_and_refuse_too_many() {
        let d = Data::open("synthetic").unwrap();
        let s = balanced_subset(&d.pool, d.classes, 23, &mut Rng::new(0)).unwrap();
        let mut counts = vec![0; 10];
        for &i in &s {
            counts[d.pool.label(i) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c == 2 || c == 3), "{counts:?}");
        let mut u = s.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), 23);
        let e = balanced_subset(&d.pool, d.classes, 601, &mut Rng::new(0)).unwrap_err();
        assert!(e.to_string().contains("only 600"), "{e}");
    }

    #[test]
    fn digits_split_is_disjoint_and_whole() {
        let d = Data::open("digits").unwrap();
        assert_eq!(d.pool.len() + d.test.len(), 1797);
        let mut all: Vec<usize> = d.pool.idx.iter().chain(&d.test.idx).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 1797);
        assert_eq!(d.shape, vec![1, 8, 8]);
        assert_eq!(d.classes, 10);
    }

    /// `digits28` is `digits` (same split, same labels) in MNIST's frame: a zero border of
    /// 4 pixels, values in [0, 1], and the ink of each image scaled by the area ratio
    /// (20/8)^2 (bicubic weights sum to 1 per axis, so the resize keeps the mean intensity
    /// up to border effects and the clamp, which cuts the kernel's negative lobes and adds
    /// ink: measured up to ~5%, tolerance 10%).
    #[test]
    fn digits28_is_the_digits_split_in_mnist_format() {
        let (a, b) = (
            Data::open("digits").unwrap(),
            Data::open("digits28").unwrap(),
        );
        assert_eq!(
            (a.pool.idx.clone(), a.test.idx.clone()),
            (b.pool.idx.clone(), b.test.idx.clone())
        );
        assert_eq!((b.shape.clone(), b.classes), (vec![1, 28, 28], 10));
        let idx: Vec<usize> = (0..a.pool.len()).collect();
        let (small, ys) = gather_host(&a.pool, &idx);
        let (big, yb) = gather_host(&b.pool, &idx);
        assert_eq!(ys, yb);
        assert!(big.iter().all(|&v| (0.0..=1.0).contains(&v)));
        const INK_TOL: f64 = 0.10;
        for (s, l) in small.chunks_exact(64).zip(big.chunks_exact(784)) {
            for r in 0..28 {
                for c in 0..28 {
                    if !(4..24).contains(&r) || !(4..24).contains(&c) {
                        assert_eq!(l[r * 28 + c], 0.0, "border pixel ({r}, {c})");
                    }
                }
            }
            let ink_s: f64 = s.iter().map(|&v| v as f64).sum::<f64>() * (20.0f64 / 8.0).powi(2);
            let ink_l: f64 = l.iter().map(|&v| v as f64).sum();
            assert!((ink_l / ink_s - 1.0).abs() < INK_TOL, "{ink_l} vs {ink_s}");
        }
    }
}
