//! Class-indexed data: every class's examples together, and the disjoint meta-train /
//! meta-validation / meta-test splits of few-shot learning.
//!
//! A [`ClassSet`] holds images (`[C, H, W]`, f32 in [0, 1]) grouped by class; each class
//! has a name and a group (the glyph set's alphabet, Omniglot's alphabet; the digit itself
//! for MNIST). Splits are made by group or by class, never by example, so no test class is
//! seen in meta-training ([`Splits::check_disjoint`]).

use genlab_core::{Error, Result};
use genlab_data::Dataset;

/// One class: its name, its group and where its examples are.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassInfo {
    pub name: String,
    pub group: String,
    /// Indices of its examples in [`ClassSet::data`] (example units).
    pub examples: Vec<usize>,
}

/// Images grouped by class.
#[derive(Clone, Debug)]
pub struct ClassSet {
    pub name: String,
    /// `[C, H, W]` of one example.
    pub shape: Vec<usize>,
    /// All examples, row-major, `dim()` floats each (shared by the splits of one source).
    pub data: std::sync::Arc<Vec<f32>>,
    pub classes: Vec<ClassInfo>,
}

impl ClassSet {
    /// Floats per example.
    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }

    /// Example `i`.
    pub fn example(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.data[i * d..(i + 1) * d]
    }

    /// The labelled examples of `ds` whose label passes `keep`, one class per label; the
    /// class names come from `name(label)`, the groups from `group(label)`.
    pub fn from_dataset(
        ds: &dyn Dataset,
        keep: impl Fn(u32) -> bool,
        name: impl Fn(u32) -> String,
        group: impl Fn(u32) -> String,
    ) -> Result<Self> {
        let shape = ds.example_shape();
        let d: usize = shape.iter().product();
        let mut by_label: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        let mut data = Vec::new();
        let mut buf = vec![0f32; d];
        let mut n = 0;
        for i in 0..ds.len() {
            let Some(l) = ds.label(i) else {
                return Err(Error::Data(format!(
                    "{}: example {i} has no label; few-shot learning needs class labels",
                    ds.name()
                )));
            };
            if !keep(l) {
                continue;
            }
            ds.write_example(i, &mut buf);
            data.extend_from_slice(&buf);
            by_label.entry(l).or_default().push(n);
            n += 1;
        }
        let classes = by_label
            .into_iter()
            .map(|(l, examples)| ClassInfo {
                name: name(l),
                group: group(l),
                examples,
            })
            .collect();
        Ok(Self {
            name: ds.name().to_string(),
            shape,
            data: data.into(),
            classes,
        })
    }

    /// The classes whose index passes `keep` (examples shared, indices unchanged).
    pub fn select(&self, name: &str, keep: impl Fn(&ClassInfo) -> bool) -> Self {
        Self {
            name: name.to_string(),
            shape: self.shape.clone(),
            data: self.data.clone(),
            classes: self.classes.iter().filter(|c| keep(c)).cloned().collect(),
        }
    }

    /// Each class also turned by 90°, 180° and 270°, as new classes (the usual Omniglot
    /// augmentation, Santoro et al. 2016; Vinyals et al. 2016): 4x the classes.
    pub fn with_rotations(&self) -> Result<Self> {
        let [c, h, w] = self.shape[..] else {
            return Err(Error::Data(format!(
                "rotations need [C, H, W] images, got {:?}",
                self.shape
            )));
        };
        if h != w {
            return Err(Error::Data(format!(
                "rotations need square images, got {h}x{w}"
            )));
        }
        let d = self.dim();
        let n0 = self.data.len() / d;
        let mut data: Vec<f32> = self.data.to_vec();
        let mut classes = self.classes.clone();
        for quarter in 1..4 {
            let offset = data.len() / d;
            for i in 0..n0 {
                let src = &self.data[i * d..(i + 1) * d];
                let mut img = vec![0f32; d];
                for ch in 0..c {
                    for y in 0..h {
                        for x in 0..w {
                            // Output (y, x) of a `quarter`-times 90° counter-clockwise turn.
                            let (sy, sx) = match quarter {
                                1 => (x, w - 1 - y),
                                2 => (h - 1 - y, w - 1 - x),
                                _ => (h - 1 - x, y),
                            };
                            img[ch * h * w + y * w + x] = src[ch * h * w + sy * w + sx];
                        }
                    }
                }
                data.extend(img);
            }
            for cl in &self.classes {
                classes.push(ClassInfo {
                    name: format!("{}@{}", cl.name, quarter * 90),
                    group: cl.group.clone(),
                    examples: cl.examples.iter().map(|&e| e + offset).collect(),
                });
            }
        }
        Ok(Self {
            name: self.name.clone(),
            shape: self.shape.clone(),
            data: data.into(),
            classes,
        })
    }

    /// The fewest examples any class has (0 for no class).
    pub fn min_examples(&self) -> usize {
        self.classes
            .iter()
            .map(|c| c.examples.len())
            .min()
            .unwrap_or(0)
    }
}

/// The three disjoint splits of a few-shot source.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: ClassSet,
    pub val: ClassSet,
    pub test: ClassSet,
    /// How the split was made (in the run's config and the evaluation's JSON).
    pub note: String,
}

impl Splits {
    /// An error if two splits share a class name (the same class seen in training and test).
    pub fn check_disjoint(&self) -> Result<()> {
        let names = |s: &ClassSet| -> std::collections::HashSet<String> {
            s.classes.iter().map(|c| c.name.clone()).collect()
        };
        let (a, b, c) = (names(&self.train), names(&self.val), names(&self.test));
        for (x, y, what) in [
            (&a, &c, "meta-train and meta-test"),
            (&b, &c, "meta-val and meta-test"),
            (&a, &b, "meta-train and meta-val"),
        ] {
            if let Some(shared) = x.intersection(y).next() {
                return Err(Error::Data(format!(
                    "{what} share class `{shared}`; splits must be disjoint"
                )));
            }
        }
        Ok(())
    }

    /// Splits `all` by group: the groups (sorted, then shuffled with a fixed seed so every
    /// run shares the split) go `test_frac` to meta-test, `val_frac` to meta-validation, the
    /// rest to meta-training.
    pub fn by_group(
        all: &ClassSet,
        val_frac: f64,
        test_frac: f64,
        split_seed: u64,
    ) -> Result<Self> {
        let mut groups: Vec<String> = all.classes.iter().map(|c| c.group.clone()).collect();
        groups.sort();
        groups.dedup();
        if groups.len() < 3 {
            return Err(Error::Data(format!(
                "{}: {} group(s) of classes, at least 3 needed for disjoint meta-train, \
                 meta-val and meta-test splits",
                all.name,
                groups.len()
            )));
        }
        let mut rng = genlab_core::Rng::derive(split_seed, "fewshot-split");
        rng.shuffle(&mut groups);
        let n = groups.len();
        let n_test = ((n as f64 * test_frac).round() as usize).clamp(1, n - 2);
        let n_val = ((n as f64 * val_frac).round() as usize).clamp(1, n - 1 - n_test);
        let test: Vec<String> = groups[..n_test].to_vec();
        let val: Vec<String> = groups[n_test..n_test + n_val].to_vec();
        let s = Self {
            train: all.select("meta-train", |c| {
                !test.contains(&c.group) && !val.contains(&c.group)
            }),
            val: all.select("meta-val", |c| val.contains(&c.group)),
            test: all.select("meta-test", |c| test.contains(&c.group)),
            note: format!(
                "by group: {} meta-train, {} meta-val ({}), {} meta-test ({}) groups",
                n - n_test - n_val,
                n_val,
                val.join(", "),
                n_test,
                test.join(", ")
            ),
        };
        s.check_disjoint()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n_classes: usize, per: usize, groups: usize) -> ClassSet {
        let mut data = Vec::new();
        let mut classes = Vec::new();
        for k in 0..n_classes {
            let mut ex = Vec::new();
            for j in 0..per {
                ex.push(data.len() / 4);
                data.extend([k as f32, j as f32, 0.0, 1.0]);
            }
            classes.push(ClassInfo {
                name: format!("c{k}"),
                group: format!("g{}", k % groups),
                examples: ex,
            });
        }
        ClassSet {
            name: "toy".into(),
            shape: vec![1, 2, 2],
            data: data.into(),
            classes,
        }
    }

    #[test]
    fn group_split_is_disjoint_and_covers_every_class() {
        let all = toy(40, 3, 10);
        let s = Splits::by_group(&all, 0.1, 0.3, 0).unwrap();
        let total = s.train.classes.len() + s.val.classes.len() + s.test.classes.len();
        assert_eq!(total, 40);
        assert_eq!(s.test.classes.len(), 12);
        assert_eq!(s.val.classes.len(), 4);
        s.check_disjoint().unwrap();
        // Whole groups go to one split.
        for c in &s.test.classes {
            assert!(!s.train.classes.iter().any(|t| t.group == c.group));
        }
    }

    #[test]
    fn overlapping_splits_are_refused() {
        let all = toy(6, 2, 3);
        let s = Splits {
            train: all.clone(),
            val: all.select("v", |_| false),
            test: all.clone(),
            note: String::new(),
        };
        assert!(s
            .check_disjoint()
            .unwrap_err()
            .to_string()
            .contains("share class"));
    }

    #[test]
    fn rotations_match_index_permutations() {
        // A 2x2 image [a b; c d] turned 90° counter-clockwise is [b d; a c].
        let all = toy(1, 1, 1);
        let r = all.with_rotations().unwrap();
        assert_eq!(r.classes.len(), 4);
        let img = r.example(r.classes[1].examples[0]);
        let src = all.example(0);
        assert_eq!(img, &[src[1], src[3], src[0], src[2]]);
        let img180 = r.example(r.classes[2].examples[0]);
        assert_eq!(img180, &[src[3], src[2], src[1], src[0]]);
        // Four quarter turns give the original back.
        let img270 = r.example(r.classes[3].examples[0]);
        assert_eq!(img270, &[src[2], src[0], src[3], src[1]]);
    }
}
