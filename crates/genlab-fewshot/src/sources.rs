//! Few-shot sources by name: where the classes come from and how they are split.
//!
//! | name | classes | split |
//! |---|---|---|
//! | `glyphs` | the glyph set's characters (`genlab data make glyphs`) | by alphabet, like Omniglot's background / evaluation alphabets: 35% of the alphabets meta-test, 10% meta-val, the rest meta-train (fixed split seed) |
//! | `omniglot` | Omniglot's characters (`genlab data fetch omniglot`) | its own: the 20 evaluation alphabets meta-test; of the 30 background alphabets, 5 (fixed seed) meta-val, 25 meta-train |
//! | `mnist` | MNIST digits | meta-train 0-4 (training images), meta-test 5-9 (test images); meta-val: 0-4 of the test images (ten classes leave no third disjoint five, so validation watches unseen *images*, not unseen classes) |
//! | `digits` | the 8x8 digits (embedded) | as `mnist`, images split 70/30 by a fixed seed |
//! | `synthetic` | 30 classes of 6x6 noisy templates (no files; tests and smoke runs) | by group of 5 classes |
//! | `sinusoid` | regression tasks, not classes ([`crate::sinusoid`]) | none (tasks are drawn fresh) |

use genlab_core::{Error, Result, Rng};
use genlab_data::{Dataset, Digits, Glyphs, Mnist, Split};

use crate::classes::{ClassInfo, ClassSet, Splits};

/// Fraction of the groups held out for meta-test.
const TEST_FRAC: f64 = 0.35;
/// Fraction of the groups for meta-validation.
const VAL_FRAC: f64 = 0.10;
/// Fraction of Omniglot's 30 background alphabets for meta-validation (5 of 30).
const OMNIGLOT_VAL_ALPHABETS: f64 = 5.0 / 30.0;
/// The split seed: fixed, so that every run of a source shares one split.
const SPLIT_SEED: u64 = 0;

/// What a source gives.
pub enum Source {
    /// Classification episodes from class splits.
    Classes(Box<Splits>),
    /// Regression tasks drawn from a distribution.
    Sinusoid,
}

/// Every source name, for errors and `genlab fewshot list`.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "glyphs",
        "characters of many scripts rendered from fonts, split by alphabet",
    ),
    (
        "omniglot",
        "Omniglot, background alphabets for meta-training, evaluation alphabets for meta-test",
    ),
    ("mnist", "MNIST, meta-train on digits 0-4, meta-test on 5-9"),
    (
        "digits",
        "the 8x8 digits, meta-train on 0-4, meta-test on 5-9",
    ),
    (
        "synthetic",
        "30 classes of 6x6 noisy templates (tests, smoke runs)",
    ),
    (
        "sinusoid",
        "sine regression tasks: amplitude 0.1-5, phase 0-pi, x in [-5, 5] (MAML)",
    ),
];

/// Whether a source gives regression tasks.
pub fn is_regression(name: &str) -> bool {
    name == "sinusoid"
}

/// Opens `name` (`rotations`: add the 90/180/270° turns of every meta-train class as new
/// classes).
pub fn open(name: &str, rotations: bool) -> Result<Source> {
    let splits = match name {
        "sinusoid" => return Ok(Source::Sinusoid),
        "glyphs" => {
            let dir = genlab_data::glyphs::glyphs_dir(&genlab_data::data_dir());
            let g = Glyphs::load(&dir)?;
            let classes = g.classes().to_vec();
            let all = ClassSet::from_dataset(
                g.images(),
                |_| true,
                |l| {
                    let c = &classes[l as usize];
                    format!("{}/U+{:04X}", c.alphabet, c.codepoint)
                },
                |l| classes[l as usize].alphabet.clone(),
            )?;
            Splits::by_group(&all, VAL_FRAC, TEST_FRAC, SPLIT_SEED)?
        }
        "omniglot" => {
            let dir = genlab_data::data_dir().join(genlab_data::omniglot::OMNIGLOT_SUBDIR);
            let o = genlab_data::omniglot::Omniglot::load(&dir)?;
            let classes = o.classes().to_vec();
            let all = ClassSet::from_dataset(
                o.images(),
                |_| true,
                |l| {
                    format!(
                        "{}/{}",
                        classes[l as usize].alphabet, classes[l as usize].character
                    )
                },
                |l| classes[l as usize].alphabet.clone(),
            )?;
            let background = all.select("background", |c| {
                classes
                    .iter()
                    .any(|k| k.background && k.alphabet == c.group)
            });
            let mut bg = Splits::by_group(&background, OMNIGLOT_VAL_ALPHABETS, 0.0, SPLIT_SEED)?;
            // by_group holds out at least one group for test: fold it back into meta-train.
            let mut train = bg.train.clone();
            train.classes.append(&mut bg.test.classes);
            train.name = "meta-train".into();
            let mut test = all.select("meta-test", |c| {
                classes
                    .iter()
                    .any(|k| !k.background && k.alphabet == c.group)
            });
            test.name = "meta-test".into();
            let s = Splits {
                train,
                val: bg.val,
                test,
                note: "Omniglot's split: evaluation alphabets meta-test, background alphabets meta-train \
                       (5 of them meta-val)"
                    .into(),
            };
            s.check_disjoint()?;
            s
        }
        "mnist" => {
            let dir = genlab_data::data_dir().join(genlab_data::fetch::MNIST_SUBDIR);
            let train = Mnist::load(&dir, Split::Train)?;
            let test = Mnist::load(&dir, Split::Test)?;
            digit_split(&train, &test, "MNIST")?
        }
        "digits" => {
            let d = Digits::load()?;
            let (a, b) = holdout(&d, 0.3);
            digit_split(&a, &b, "digits")?
        }
        "synthetic" => {
            let all = synthetic(30, 20, 6, 5);
            Splits::by_group(&all, 0.2, 0.34, SPLIT_SEED)?
        }
        other => {
            return Err(Error::unknown(
                "few-shot data",
                other,
                SOURCES.iter().map(|s| s.0),
            ))
        }
    };
    Ok(Source::Classes(Box::new(if rotations {
        // Training augmentation: the test and validation classes stay as they are, so the
        // evaluation task is the same with and without it.
        Splits {
            train: splits.train.with_rotations()?,
            note: format!(
                "{}; each meta-train class also turned 90/180/270° as new classes",
                splits.note
            ),
            ..splits
        }
    } else {
        splits
    })))
}

/// Meta-train on digits 0-4 of `train`, meta-val on 0-4 of `test`, meta-test on 5-9 of `test`.
fn digit_split(train: &dyn Dataset, test: &dyn Dataset, what: &str) -> Result<Splits> {
    let name = |l: u32| format!("digit {l}");
    let group = |l: u32| format!("{l}");
    let mut tr = ClassSet::from_dataset(train, |l| l < 5, name, group)?;
    tr.name = "meta-train".into();
    let mut val = ClassSet::from_dataset(
        test,
        |l| l < 5,
        |l| format!("digit {l} (held-out images)"),
        group,
    )?;
    val.name = "meta-val".into();
    let mut te = ClassSet::from_dataset(test, |l| l >= 5, name, group)?;
    te.name = "meta-test".into();
    let s = Splits {
        train: tr,
        val,
        test: te,
        note: format!(
            "{what} by class: meta-train 0-4 (training images), meta-test 5-9 (test images), \
             meta-val 0-4 (test images: no disjoint classes are left)"
        ),
    };
    s.check_disjoint()?;
    Ok(s)
}

/// A dataset view of some examples of another.
struct Subset<'a> {
    ds: &'a dyn Dataset,
    idx: Vec<usize>,
}

impl Dataset for Subset<'_> {
    fn name(&self) -> &str {
        self.ds.name()
    }
    fn len(&self) -> usize {
        self.idx.len()
    }
    fn example_shape(&self) -> Vec<usize> {
        self.ds.example_shape()
    }
    fn write_example(&self, i: usize, out: &mut [f32]) {
        self.ds.write_example(self.idx[i], out)
    }
    fn label(&self, i: usize) -> Option<u32> {
        self.ds.label(self.idx[i])
    }
    fn num_classes(&self) -> Option<usize> {
        self.ds.num_classes()
    }
    fn kind(&self) -> genlab_data::DataKind {
        self.ds.kind()
    }
}

/// Splits `ds`'s examples into (1 - frac, frac) with a fixed seed.
fn holdout(ds: &dyn Dataset, frac: f64) -> (Subset<'_>, Subset<'_>) {
    let mut idx: Vec<usize> = (0..ds.len()).collect();
    Rng::derive(SPLIT_SEED, "holdout").shuffle(&mut idx);
    let cut = ((1.0 - frac) * idx.len() as f64).round() as usize;
    let b = idx.split_off(cut);
    (Subset { ds, idx }, Subset { ds, idx: b })
}

/// `n_classes` classes of `per` examples: each class a random `side`² binary template, each
/// example the template with 10% of its pixels flipped; groups of `group` classes.
pub fn synthetic(n_classes: usize, per: usize, side: usize, group: usize) -> ClassSet {
    let d = side * side;
    let mut rng = Rng::derive(SPLIT_SEED, "synthetic");
    let mut data = Vec::with_capacity(n_classes * per * d);
    let mut classes = Vec::new();
    for k in 0..n_classes {
        let template: Vec<f32> = (0..d).map(|_| (rng.uniform() < 0.5) as u8 as f32).collect();
        let mut examples = Vec::new();
        for _ in 0..per {
            examples.push(data.len() / d);
            data.extend(
                template
                    .iter()
                    .map(|&t| if rng.uniform() < 0.1 { 1.0 - t } else { t }),
            );
        }
        classes.push(ClassInfo {
            name: format!("class {k}"),
            group: format!("group {}", k / group),
            examples,
        });
    }
    ClassSet {
        name: "synthetic".into(),
        shape: vec![1, side, side],
        data: data.into(),
        classes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_split_by_class() {
        let Source::Classes(s) = open("digits", false).unwrap() else {
            panic!("classes")
        };
        let labels = |c: &ClassSet| {
            c.classes
                .iter()
                .map(|c| c.group.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(labels(&s.train), ["0", "1", "2", "3", "4"]);
        assert_eq!(labels(&s.test), ["5", "6", "7", "8", "9"]);
        // 1797 digits, 30% held out: the test split has the held-out 5-9 only.
        let n_test: usize = s.test.classes.iter().map(|c| c.examples.len()).sum();
        assert!((200..340).contains(&n_test), "{n_test}");
    }

    #[test]
    fn unknown_source_lists_the_known_ones() {
        let e = open("omnigot", false).err().unwrap().to_string();
        assert!(
            e.contains("omnigot") && e.contains("glyphs") && e.contains("sinusoid"),
            "{e}"
        );
    }
}
