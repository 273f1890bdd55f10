//! The two-digit captioned canvas: two MNIST digits side by side on a 28x56 image, with
//! captions that say which digit is where ("a 3 on the left and a 7 on the right"), for
//! compositional text-to-image training in the manner of latent diffusion (Rombach et al.
//! 2022, arXiv:2112.10752) on data that has no captions of its own. Digits: MNIST (LeCun,
//! Cortes & Burges 1998).
//!
//! **Canvases.** `mnist-pairs:train` has 60,000 canvases made from the MNIST training
//! split, `mnist-pairs:test` 10,000 from the test split: canvas `i` puts digit image
//! `left[i]` on the left and `right[i]` on the right, where `left` and `right` are two
//! independent seeded permutations of the split ([`PAIRS_SEED`], streams `pairs-left` and
//! `pairs-right`). Every image of the split appears once on each side, the two sides are
//! independent, so the 100 (left, right) combinations occur with the product of MNIST's
//! class frequencies (about 1% each). The label is `10 · left + right` (100 classes), so the
//! ordinary batch machinery carries both digits. Nothing depends on the open options: the
//! canvases of a split are always the same.
//!
//! **Captions.** [`pair_caption`] fills one template with the two digits, each named by its
//! numeral or its word ([`crate::captions::DIGIT_WORDS`]); [`random_pair_caption`] draws
//! the template and the two names with the caller's RNG for training.
//! [`PAIR_TEMPLATES`] are the training templates; [`PAIR_HELDOUT_TEMPLATES`] are never used
//! in training.
//!
//! **Held-out prompts.** [`pair_prompts_test`] is the evaluation list: prompt `p` asks for
//! the pair `p mod 100` (so 1,000 prompts ask for each of the 100 combinations exactly ten
//! times, a balanced table) in a training template and naming drawn from a fixed seed
//! (stream `pairs-prompts`). With 100 pairs and a handful of templates every such string
//! also occurs among training captions: what is held out is the image, which the model must
//! draw rather than recall, not the wording. [`pair_prompts_unseen`] draws the same pairs
//! in the held-out templates only: the check that the text encoder generalises to phrasing
//! it never saw, reported separately rather than mixed into the headline accuracy.

use genlab_core::{Error, Result, Rng};

use crate::captions::DIGIT_WORDS;
use crate::{data_dir, DataKind, Dataset, DatasetInfo, Mnist, OpenOptions, Split};

/// Seed of the canvas permutations (fixed: a split's canvases never change).
pub const PAIRS_SEED: u64 = 22;
/// Seed of [`pair_prompts_test`] and [`pair_prompts_unseen`].
pub const PROMPTS_SEED: u64 = 1022;
/// CLIP BPE tokens of the longest caption, training or held-out templates (without the
/// start and end tokens): a text encoder context of this plus 2 never truncates one.
pub const PAIR_CAPTION_MAX_TOKENS: usize = 11;
/// Classes of the canvas labels: `10 · left + right`.
pub const PAIR_CLASSES: usize = 100;

/// Training caption templates. `{L}` / `{R}` are the left / right digit's name; `{aL}` /
/// `{aR}` the same with its indefinite article ("an 8", "a seven").
pub const PAIR_TEMPLATES: &[&str] = &[
    "{aL} on the left and {aR} on the right",
    "{L} and {R}",
    "the digit {L} next to the digit {R}",
    "left: {L}, right: {R}",
    "{L} on the left, {R} on the right",
    "the number {L} followed by the number {R}",
    "{aL} beside {aR}",
    "handwritten {L} and {R}, side by side",
];

/// Templates kept out of training (see the module docs).
pub const PAIR_HELDOUT_TEMPLATES: &[&str] = &[
    "{aR} on the right and {aL} on the left",
    "two digits: {L} then {R}",
    "{aL} to the left of {aR}",
];

/// "an" before a digit name that starts with a vowel sound ("8", "eight"), else "a" ("a
/// one" is said "a won").
fn article(name: &str) -> &'static str {
    if name == "8" || name == "eight" {
        "an"
    } else {
        "a"
    }
}

/// The name of digit `d` (0..=9) as its word or its numeral.
fn name(d: u8, word: bool) -> String {
    if word {
        DIGIT_WORDS[d as usize].to_string()
    } else {
        d.to_string()
    }
}

/// Fills `template` (placeholders `{L}`, `{R}`, `{aL}`, `{aR}`) with the digits `left` and
/// `right` (0..=9), each named by its word (`words.0` / `words.1`) or its numeral.
pub fn pair_caption(left: u8, right: u8, template: &str, words: (bool, bool)) -> Result<String> {
    if left > 9 || right > 9 {
        return Err(Error::InvalidInput(format!(
            "digits must be 0..=9, got left {left} and right {right}"
        )));
    }
    let (l, r) = (name(left, words.0), name(right, words.1));
    Ok(template
        .replace("{aL}", &format!("{} {l}", article(&l)))
        .replace("{aR}", &format!("{} {r}", article(&r)))
        .replace("{L}", &l)
        .replace("{R}", &r))
}

/// A caption drawn for training: a template of [`PAIR_TEMPLATES`] and, for each digit,
/// word or numeral with probability one half, from `rng`.
pub fn random_pair_caption(left: u8, right: u8, rng: &mut Rng) -> Result<String> {
    let t = PAIR_TEMPLATES[rng.below(PAIR_TEMPLATES.len() as u64) as usize];
    let words = (rng.below(2) == 1, rng.below(2) == 1);
    pair_caption(left, right, t, words)
}

/// The digits of a canvas label `10 · left + right`.
pub fn label_digits(label: u32) -> Result<(u8, u8)> {
    if label as usize >= PAIR_CLASSES {
        return Err(Error::InvalidInput(format!(
            "a two-digit canvas label is 0..100, got {label}"
        )));
    }
    Ok(((label / 10) as u8, (label % 10) as u8))
}

/// One evaluation prompt: the requested digits and the caption that asks for them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PairPrompt {
    pub left: u8,
    pub right: u8,
    pub caption: String,
}

fn prompts(n: usize, templates: &[&str], stream: &str) -> Vec<PairPrompt> {
    let mut rng = Rng::derive(PROMPTS_SEED, stream);
    (0..n)
        .map(|p| {
            let (left, right) = ((p % 100 / 10) as u8, (p % 10) as u8);
            let t = templates[rng.below(templates.len() as u64) as usize];
            let words = (rng.below(2) == 1, rng.below(2) == 1);
            let caption = pair_caption(left, right, t, words).expect("digits are 0..=9");
            PairPrompt {
                left,
                right,
                caption,
            }
        })
        .collect()
}

/// The held-out evaluation prompts: `n` of them (1,000 in the target), prompt `p` asking
/// for left `p / 10 mod 10`, right `p mod 10`, in a training template (module docs).
pub fn pair_prompts_test(n: usize) -> Vec<PairPrompt> {
    prompts(n, PAIR_TEMPLATES, "pairs-prompts")
}

/// The same pairs as [`pair_prompts_test`], worded with [`PAIR_HELDOUT_TEMPLATES`] only.
pub fn pair_prompts_unseen(n: usize) -> Vec<PairPrompt> {
    prompts(n, PAIR_HELDOUT_TEMPLATES, "pairs-prompts-unseen")
}

/// The split of `mnist-pairs[:train|test]` (train by default).
fn split(arg: Option<&str>) -> Result<Split> {
    match arg {
        None | Some("train") => Ok(Split::Train),
        Some("test") => Ok(Split::Test),
        Some(other) => Err(Error::InvalidInput(format!(
            "unknown mnist-pairs split `{other}`; expected train or test"
        ))),
    }
}

/// The registry's `info` of `mnist-pairs`: `[1, 28, 56]` images, 100 classes, held out on
/// `mnist-pairs:test`.
pub fn mnist_pairs_info(arg: Option<&str>) -> Result<DatasetInfo> {
    let train = split(arg)? == Split::Train;
    Ok(DatasetInfo {
        kind: DataKind::Image,
        shape: Some(vec![1, 28, 56]),
        labels: Some(true),
        num_classes: Some(PAIR_CLASSES),
        held_out: train.then(|| "mnist-pairs:test".to_string()),
        log_density: None,
        mode_coverage: None,
        labels_are_modes: false,
    })
}

/// The registry's `open` of `mnist-pairs`: the canvases of one MNIST split (from the cache;
/// `genlab data fetch mnist`). Fixed 28x56: any other requested size or channel count is
/// refused.
pub fn open_mnist_pairs(arg: Option<&str>, opts: &OpenOptions) -> Result<Box<dyn Dataset>> {
    let split = split(arg)?;
    if opts.channels.is_some_and(|c| c != 1) || opts.image_size.is_some_and(|s| s != 28) {
        return Err(Error::InvalidInput(format!(
            "mnist-pairs canvases are 1x28x56; channels {:?} / size {:?} were requested and \
             only image folders are converted",
            opts.channels, opts.image_size
        )));
    }
    let mnist = Mnist::load(&data_dir().join(crate::fetch::MNIST_SUBDIR), split)?;
    Ok(Box::new(DigitPairs::new(
        Box::new(mnist),
        format!("mnist-pairs:{split}"),
    )?))
}

/// Two-digit canvases made from a labelled single-digit dataset (see the module docs).
pub struct DigitPairs {
    name: String,
    source: Box<dyn Dataset>,
    /// `(left, right)` source indices of each canvas.
    pairs: Vec<(usize, usize)>,
    /// `[C, H, W]` of one source image.
    shape: [usize; 3],
}

impl DigitPairs {
    /// One canvas per source image, named `name`. The source must hold `[C, H, W]` images
    /// labelled with the ten digits.
    pub fn new(source: Box<dyn Dataset>, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let shape = source.example_shape();
        if source.kind() != DataKind::Image || shape.len() != 3 {
            return Err(Error::Data(format!(
                "{name}: the source `{}` must hold images, got examples of shape {shape:?}",
                source.name()
            )));
        }
        if source.num_classes() != Some(10) || source.is_empty() {
            return Err(Error::Data(format!(
                "{name}: the source `{}` must be non-empty and labelled with the ten digits",
                source.name()
            )));
        }
        let n = source.len();
        let mut left: Vec<usize> = (0..n).collect();
        let mut right: Vec<usize> = (0..n).collect();
        Rng::derive(PAIRS_SEED, "pairs-left").shuffle(&mut left);
        Rng::derive(PAIRS_SEED, "pairs-right").shuffle(&mut right);
        Ok(Self {
            name,
            pairs: left.into_iter().zip(right).collect(),
            shape: [shape[0], shape[1], shape[2]],
            source,
        })
    }

    /// The `(left, right)` source indices of canvas `i`.
    pub fn sources(&self, i: usize) -> (usize, usize) {
        self.pairs[i]
    }

    /// The `(left, right)` digits of canvas `i`.
    pub fn digits(&self, i: usize) -> (u8, u8) {
        let (l, r) = self.pairs[i];
        let d = |j| self.source.label(j).unwrap_or(0) as u8;
        (d(l), d(r))
    }
}

impl Dataset for DigitPairs {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn example_shape(&self) -> Vec<usize> {
        let [c, h, w] = self.shape;
        vec![c, h, 2 * w]
    }

    fn write_example(&self, i: usize, out: &mut [f32]) {
        let [c, h, w] = self.shape;
        let (l, r) = self.pairs[i];
        let mut img = vec![0f32; c * h * w];
        for (half, j) in [(0, l), (1, r)] {
            self.source.write_example(j, &mut img);
            for ch in 0..c {
                for row in 0..h {
                    let src = &img[(ch * h + row) * w..(ch * h + row + 1) * w];
                    let at = (ch * h + row) * 2 * w + half * w;
                    out[at..at + w].copy_from_slice(src);
                }
            }
        }
    }

    fn label(&self, i: usize) -> Option<u32> {
        let (l, r) = self.digits(i);
        Some(10 * l as u32 + r as u32)
    }

    /// The canonical caption, [`PAIR_TEMPLATES`]' first with numerals ("a 3 on the left and
    /// a 7 on the right"): what evaluation (retrieval) pairs with canvas `i`.
    fn caption(&self, i: usize) -> Option<String> {
        let (l, r) = self.digits(i);
        pair_caption(l, r, PAIR_TEMPLATES[0], (false, false)).ok()
    }

    /// A training caption: a template of [`PAIR_TEMPLATES`] and numeral or word for each
    /// digit drawn with `rng` ([`random_pair_caption`]), so the text tower sees every
    /// wording of a canvas over training rather than one fixed string.
    fn draw_caption(&self, i: usize, rng: &mut Rng) -> Option<String> {
        let (l, r) = self.digits(i);
        random_pair_caption(l, r, rng).ok()
    }

    fn num_classes(&self) -> Option<usize> {
        Some(PAIR_CLASSES)
    }

    fn kind(&self) -> DataKind {
        DataKind::Image
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{make_batch, Digits};
    use candle_core::Device;

    #[test]
    fn canvases_put_the_two_source_images_side_by_side() {
        let digits = Digits::load().unwrap();
        let n = digits.len();
        let src = Digits::load().unwrap();
        let pairs = DigitPairs::new(Box::new(digits), "digit-pairs").unwrap();
        assert_eq!(pairs.len(), n);
        assert_eq!(pairs.example_shape(), vec![1, 8, 16]);
        assert_eq!(pairs.num_classes(), Some(100));
        let mut canvas = vec![0f32; 128];
        let (mut a, mut b) = (vec![0f32; 64], vec![0f32; 64]);
        for i in [0, 1, 7, n - 1] {
            pairs.write_example(i, &mut canvas);
            let (l, r) = pairs.sources(i);
            src.write_example(l, &mut a);
            src.write_example(r, &mut b);
            for row in 0..8 {
                assert_eq!(&canvas[row * 16..row * 16 + 8], &a[row * 8..row * 8 + 8]);
                assert_eq!(
                    &canvas[row * 16 + 8..row * 16 + 16],
                    &b[row * 8..row * 8 + 8]
                );
            }
            let want = 10 * src.label(l).unwrap() + src.label(r).unwrap();
            assert_eq!(pairs.label(i), Some(want));
        }
        // Each image appears once on each side; the sides are not the same permutation.
        let mut lefts: Vec<usize> = (0..n).map(|i| pairs.sources(i).0).collect();
        let mut rights: Vec<usize> = (0..n).map(|i| pairs.sources(i).1).collect();
        assert!((0..n).any(|i| lefts[i] != rights[i]));
        lefts.sort_unstable();
        rights.sort_unstable();
        assert!(lefts.iter().eq((0..n).collect::<Vec<_>>().iter()));
        assert!(rights.iter().eq((0..n).collect::<Vec<_>>().iter()));
        // Deterministic, and the batch machinery carries the 100-class label.
        let again = DigitPairs::new(Box::new(Digits::load().unwrap()), "x").unwrap();
        assert!((0..n).all(|i| again.sources(i) == pairs.sources(i)));
        let batch = make_batch(&pairs, &[3, 4], &Device::Cpu).unwrap();
        assert_eq!(batch.x.dims(), &[2, 1, 8, 16]);
        let labels: Vec<u32> = batch.labels.unwrap().to_vec1().unwrap();
        assert_eq!(
            labels,
            vec![pairs.label(3).unwrap(), pairs.label(4).unwrap()]
        );
        // Evaluation batches carry the canonical caption, training batches a drawn one.
        let (l, r) = pairs.digits(3);
        let canonical = pair_caption(l, r, PAIR_TEMPLATES[0], (false, false)).unwrap();
        assert_eq!(batch.captions.as_ref().unwrap()[0], canonical);
        let mut rng = Rng::new(5);
        let drawn: std::collections::BTreeSet<String> = (0..200)
            .map(|_| {
                let b = crate::make_training_batch(&pairs, &[3], &Device::Cpu, &mut rng).unwrap();
                b.captions.unwrap().remove(0)
            })
            .collect();
        assert_eq!(drawn.len(), PAIR_TEMPLATES.len() * 4);
        let mut again = Rng::new(5);
        assert_eq!(
            pairs.draw_caption(3, &mut again),
            crate::make_training_batch(&pairs, &[3], &Device::Cpu, &mut Rng::new(5))
                .unwrap()
                .captions
                .unwrap()
                .pop()
        );
    }

    #[test]
    fn captions_name_both_digits_in_place() {
        let c = |l, r, t, w| pair_caption(l, r, t, w).unwrap();
        assert_eq!(
            c(3, 7, PAIR_TEMPLATES[0], (false, false)),
            "a 3 on the left and a 7 on the right"
        );
        assert_eq!(
            c(8, 1, PAIR_TEMPLATES[0], (true, true)),
            "an eight on the left and a one on the right"
        );
        assert_eq!(c(3, 7, PAIR_TEMPLATES[1], (false, false)), "3 and 7");
        assert_eq!(
            c(3, 7, PAIR_TEMPLATES[2], (true, true)),
            "the digit three next to the digit seven"
        );
        assert_eq!(
            c(3, 7, PAIR_TEMPLATES[3], (false, true)),
            "left: 3, right: seven"
        );
        assert_eq!(
            c(0, 8, PAIR_HELDOUT_TEMPLATES[0], (false, false)),
            "an 8 on the right and a 0 on the left"
        );
        assert!(pair_caption(10, 1, PAIR_TEMPLATES[0], (false, false)).is_err());
        for t in PAIR_TEMPLATES.iter().chain(PAIR_HELDOUT_TEMPLATES) {
            let s = c(4, 6, t, (true, false));
            assert!(
                s.contains("four") && s.contains('6') && !s.contains('{'),
                "{s}"
            );
            assert!(!PAIR_TEMPLATES.contains(t) || !PAIR_HELDOUT_TEMPLATES.contains(t));
        }
        let mut rng = Rng::new(1);
        let drawn: std::collections::BTreeSet<String> = (0..400)
            .map(|_| random_pair_caption(2, 5, &mut rng).unwrap())
            .collect();
        // 8 templates x 4 namings, all distinct strings.
        assert_eq!(drawn.len(), PAIR_TEMPLATES.len() * 4);
        assert_eq!(label_digits(37).unwrap(), (3, 7));
        assert!(label_digits(100).is_err());
    }

    /// Every caption (all pairs, templates and namings) fits a text encoder context of
    /// [`PAIR_CAPTION_MAX_TOKENS`] CLIP BPE tokens plus start and end.
    #[test]
    fn every_caption_fits_the_documented_token_count() {
        let tok = crate::tokenize::ClipTokenizer::new().unwrap();
        let mut longest = (0, String::new());
        for t in PAIR_TEMPLATES.iter().chain(PAIR_HELDOUT_TEMPLATES) {
            for p in 0..100u8 {
                for w in 0..4 {
                    let s = pair_caption(p / 10, p % 10, t, (w & 1 == 1, w & 2 == 2)).unwrap();
                    let n = tok.encode(&s).len();
                    if n > longest.0 {
                        longest = (n, s);
                    }
                }
            }
        }
        eprintln!("longest caption: {} tokens: {}", longest.0, longest.1);
        assert_eq!(longest.0, PAIR_CAPTION_MAX_TOKENS, "{}", longest.1);
    }

    #[test]
    fn held_out_prompts_are_balanced_and_fixed() {
        let p = pair_prompts_test(1000);
        assert_eq!(p.len(), 1000);
        let mut count = [0usize; 100];
        for q in &p {
            count[(10 * q.left + q.right) as usize] += 1;
            let want = (0..4).any(|w| {
                PAIR_TEMPLATES.iter().any(|t| {
                    pair_caption(q.left, q.right, t, (w & 1 == 1, w & 2 == 2)).unwrap() == q.caption
                })
            });
            assert!(want, "{q:?}");
        }
        assert!(count.iter().all(|&c| c == 10));
        assert_eq!(p, pair_prompts_test(1000));
        assert_eq!(&pair_prompts_test(10)[..], &p[..10]);
        let u = pair_prompts_unseen(200);
        for (a, b) in u.iter().zip(&p) {
            assert_eq!((a.left, a.right), (b.left, b.right));
            assert!(PAIR_TEMPLATES.iter().all(|t| {
                (0..4).all(|w| {
                    pair_caption(a.left, a.right, t, (w & 1 == 1, w & 2 == 2)).unwrap() != a.caption
                })
            }));
        }
    }

    #[test]
    fn registry_entry_describes_and_opens_mnist_pairs() {
        let info = crate::dataset_info("mnist-pairs").unwrap();
        assert_eq!(info.shape, Some(vec![1, 28, 56]));
        assert_eq!(info.num_classes, Some(100));
        assert_eq!(info.held_out.as_deref(), Some("mnist-pairs:test"));
        assert!(crate::dataset_info("mnist-pairs:test")
            .unwrap()
            .held_out
            .is_none());
        assert!(crate::dataset_info("mnist-pairs:val").is_err());
        let opts = OpenOptions {
            image_size: Some(32),
            ..Default::default()
        };
        assert!(crate::open_dataset("mnist-pairs:test", &opts).is_err());
        match crate::open_dataset("mnist-pairs:test", &OpenOptions::default()) {
            Ok(ds) => {
                assert_eq!((ds.len(), ds.example_shape()), (10_000, vec![1, 28, 56]));
                // The balanced-ish label spread: every one of the 100 pairs occurs.
                let mut seen = [false; 100];
                for i in 0..ds.len() {
                    seen[ds.label(i).unwrap() as usize] = true;
                }
                assert!(seen.iter().all(|&s| s));
            }
            Err(e) => eprintln!("skipped the MNIST part: {e} (genlab data fetch mnist)"),
        }
    }

    #[test]
    fn a_source_that_is_not_ten_digit_images_is_refused() {
        let toy = crate::Toy2d::new(crate::Toy2dKind::TwoMoons, 10, 0);
        let err = DigitPairs::new(Box::new(toy), "p")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("must hold images"), "{err}");
    }
}
