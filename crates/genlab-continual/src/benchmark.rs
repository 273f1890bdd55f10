//! Benchmarks and the three scenarios of continual learning.
//!
//! van de Ven & Tolias 2019, "Three scenarios for continual learning", arXiv:1904.07734,
//! Section 2 and Table 1: the same sequence of tasks is learned
//! - Task-incrementally (`task`): the task label is given at test time; the network has one
//!   output head per task ("multi-head") and an example competes only among its task's
//!   classes;
//! - Domain-incrementally (`domain`): no task label; the outputs are shared by all tasks (the
//!   within-task class: "first or second digit of the pair");
//! - Class-incrementally (`class`): no task label; one output per class of every task, and
//!   an example competes among all classes seen so far.
//!
//! Split MNIST: the ten digits in five tasks of two (0/1, 2/3, 4/5, 6/7, 8/9). Permuted MNIST
//! (Goodfellow et al. 2013, arXiv:1312.6211): ten tasks of all ten digits, task `t` with its own
//! fixed pixel permutation (task 0 unpermuted). The `*-digits` twins are the same on the
//! embedded 8x8 digits (1797 images, every fifth held out): no download, for tests and demos.
//!
//! Output units: Task- and Class-IL have `tasks x classes_per_task` outputs, task `t`'s head
//! being `t * cpt .. (t + 1) * cpt`; Domain-IL has `cpt`. An example of task `t` whose class is
//! the `k`-th of its task has target `t * cpt + k` (Task, Class) or `k` (Domain).

use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};
use genlab_data::{Dataset, Digits, Mnist, Split};

/// The three scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Task,
    Domain,
    Class,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Task, Scenario::Domain, Scenario::Class];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Task => "task",
            Scenario::Domain => "domain",
            Scenario::Class => "class",
        }
    }

    /// The paper's column name.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::Task => "Task-IL",
            Scenario::Domain => "Domain-IL",
            Scenario::Class => "Class-IL",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| Error::Setting {
                setting: "scenario".into(),
                problem: format!("`{s}` is unknown; expected one of task, domain, class"),
            })
    }
}

/// How a benchmark makes its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Disjoint groups of classes.
    Split,
    /// All classes, one pixel permutation per task.
    Permuted,
}

/// Where the images come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Mnist,
    Digits,
}

/// A registry entry: a benchmark by name.
#[derive(Clone, Copy, Debug)]
pub struct BenchmarkEntry {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    pub source: Source,
    /// Default number of tasks.
    pub tasks: usize,
    /// The paper's iterations per task, batch size, learning rate and hidden width.
    pub iters: usize,
    pub batch: usize,
    pub lr: f64,
    pub hidden: usize,
}

/// Every benchmark. Hyperparameters: van de Ven & Tolias 2019, Section 4 (split MNIST: 2000
/// iterations, lr 1e-3, 2x400 units; permuted MNIST: 5000 iterations, lr 1e-4, 2x1000 units;
/// batch 128 for both).
pub const BENCHMARKS: &[BenchmarkEntry] = &[
    BenchmarkEntry {
        name: "split-mnist",
        description: "MNIST in 5 tasks of 2 digits (0/1, 2/3, 4/5, 6/7, 8/9)",
        kind: Kind::Split,
        source: Source::Mnist,
        tasks: 5,
        iters: 2000,
        batch: 128,
        lr: 1e-3,
        hidden: 400,
    },
    BenchmarkEntry {
        name: "permuted-mnist",
        description: "MNIST in 10 tasks of all 10 digits, each with its own pixel permutation",
        kind: Kind::Permuted,
        source: Source::Mnist,
        tasks: 10,
        iters: 5000,
        batch: 128,
        lr: 1e-4,
        hidden: 1000,
    },
    BenchmarkEntry {
        name: "split-digits",
        description: "the embedded 8x8 digits in 5 tasks of 2 (no download; tests and demos)",
        kind: Kind::Split,
        source: Source::Digits,
        tasks: 5,
        iters: 300,
        batch: 64,
        lr: 1e-3,
        hidden: 100,
    },
    BenchmarkEntry {
        name: "permuted-digits",
        description: "the embedded 8x8 digits in 5 permuted tasks (no download; tests and demos)",
        kind: Kind::Permuted,
        source: Source::Digits,
        tasks: 5,
        iters: 300,
        batch: 64,
        lr: 1e-3,
        hidden: 100,
    },
];

/// Finds a benchmark by name.
pub fn find(name: &str) -> Result<&'static BenchmarkEntry> {
    BENCHMARKS.iter().find(|b| b.name == name).ok_or_else(|| {
        let names: Vec<&str> = BENCHMARKS.iter().map(|b| b.name).collect();
        Error::Setting {
            setting: "benchmark".into(),
            problem: format!("`{name}` is unknown; expected one of {}", names.join(", ")),
        }
    })
}

/// All images of one split of the source, flattened, in `[0, 1]`.
#[derive(Debug)]
pub struct Pool {
    pub dim: usize,
    /// `[n, dim]`.
    pub x: Vec<f32>,
    pub y: Vec<u8>,
}

/// The examples of one task in one split: indices into a pool, maybe a pixel permutation.
#[derive(Clone, Debug)]
pub struct Part {
    pool: Arc<Pool>,
    pub idx: Vec<usize>,
    perm: Option<Arc<Vec<usize>>>,
    /// The task these examples belong to.
    pub task: usize,
}

impl Part {
    pub fn len(&self) -> usize {
        self.idx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.pool.dim
    }

    /// The digit (source class) of example `i`.
    pub fn digit(&self, i: usize) -> u32 {
        self.pool.y[self.idx[i]] as u32
    }

    /// Writes example `i` (`dim` values) into `out`.
    pub fn write(&self, i: usize, out: &mut [f32]) {
        let d = self.pool.dim;
        let src = &self.pool.x[self.idx[i] * d..(self.idx[i] + 1) * d];
        match &self.perm {
            None => out.copy_from_slice(src),
            Some(p) => {
                for (o, &j) in out.iter_mut().zip(p.iter()) {
                    *o = src[j];
                }
            }
        }
    }

    /// The examples `ids` as one `[ids.len(), dim]` matrix.
    pub fn gather(&self, ids: &[usize]) -> Vec<f32> {
        let d = self.pool.dim;
        let mut x = vec![0f32; ids.len() * d];
        for (row, &i) in x.chunks_exact_mut(d).zip(ids) {
            self.write(i, row);
        }
        x
    }

    /// The examples whose digit is `digit`.
    pub fn with_digit(&self, digit: u32) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.digit(i) == digit)
            .collect()
    }
}

/// A loaded benchmark: the tasks' train and test parts.
#[derive(Clone, Debug)]
pub struct Benchmark {
    pub entry: &'static BenchmarkEntry,
    /// The source classes of each task, in output order.
    pub task_classes: Vec<Vec<u32>>,
    pub train: Vec<Part>,
    pub test: Vec<Part>,
}

/// A sequence of labelled examples drawn from the benchmark (a batch, or a replayed set).
#[derive(Clone, Debug, Default)]
pub struct Examples {
    /// `[n, dim]`.
    pub x: Vec<f32>,
    /// Output-unit targets (see the module header).
    pub y: Vec<u32>,
    /// The task of each example.
    pub task: Vec<usize>,
}

impl Examples {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

fn load_pools(source: Source) -> Result<(Arc<Pool>, Arc<Pool>)> {
    match source {
        Source::Mnist => {
            let dir = genlab_core::paths::data_dir().join("mnist");
            let pool = |split| -> Result<Pool> {
                let m = Mnist::load(&dir, split)?;
                let n = m.len();
                let mut x = vec![0f32; n * 784];
                let mut y = Vec::with_capacity(n);
                for i in 0..n {
                    m.write_example(i, &mut x[i * 784..(i + 1) * 784]);
                    y.push(m.label(i).unwrap_or(0) as u8);
                }
                Ok(Pool { dim: 784, x, y })
            };
            Ok((Arc::new(pool(Split::Train)?), Arc::new(pool(Split::Test)?)))
        }
        Source::Digits => {
            let d = Digits::load()?;
            let mut pools = [(vec![], vec![]), (vec![], vec![])];
            let mut row = vec![0f32; 64];
            for i in 0..d.len() {
                d.write_example(i, &mut row);
                // Every fifth image is held out.
                let p = &mut pools[usize::from(i % 5 == 0)];
                p.0.extend_from_slice(&row);
                p.1.push(d.label(i).unwrap_or(0) as u8);
            }
            let [(tx, ty), (vx, vy)] = pools;
            Ok((
                Arc::new(Pool {
                    dim: 64,
                    x: tx,
                    y: ty,
                }),
                Arc::new(Pool {
                    dim: 64,
                    x: vx,
                    y: vy,
                }),
            ))
        }
    }
}

/// Parses a task grouping such as `0,1/2,3/4,5/6,7/8,9` (split benchmarks only).
pub fn parse_groups(spec: &str) -> Result<Vec<Vec<u32>>> {
    let mut groups = Vec::new();
    for g in spec.split('/') {
        let mut classes = Vec::new();
        for c in g.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let d: u32 = c
                .parse()
                .ok()
                .filter(|d| *d < 10)
                .ok_or_else(|| Error::Setting {
                    setting: "tasks".into(),
                    problem: format!("`{c}` in `{spec}` is not a digit 0-9"),
                })?;
            classes.push(d);
        }
        groups.push(classes);
    }
    check_groups(&groups)?;
    Ok(groups)
}

/// A grouping of digits into split tasks: at least two tasks, none empty, digits 0-9, no
/// digit in two tasks.
pub fn check_groups(groups: &[Vec<u32>]) -> Result<()> {
    let bad = |problem: String| {
        Err(Error::Setting {
            setting: "tasks".into(),
            problem,
        })
    };
    if groups.len() < 2 {
        return bad(format!(
            "{groups:?} has {} task; continual learning needs at least 2",
            groups.len()
        ));
    }
    let mut seen = [false; 10];
    for g in groups {
        if g.is_empty() {
            return bad(format!(
                "{groups:?} has a task without classes; expected groups of digits like 0,1/2,3"
            ));
        }
        for &d in g {
            if d >= 10 {
                return bad(format!("{d} is not a digit 0-9"));
            }
            if seen[d as usize] {
                return bad(format!(
                    "digit {d} is in two tasks of {groups:?}; split tasks must not share classes"
                ));
            }
            seen[d as usize] = true;
        }
    }
    Ok(())
}

impl Benchmark {
    /// Loads `name` with `tasks` tasks (default: the benchmark's) or, for split benchmarks, the
    /// explicit grouping `groups`. Permutations come from `seed`.
    pub fn load(
        name: &str,
        tasks: Option<usize>,
        groups: Option<Vec<Vec<u32>>>,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Self> {
        let entry = find(name)?;
        let task_classes: Vec<Vec<u32>> = match entry.kind {
            Kind::Split => {
                if let Some(g) = groups {
                    check_groups(&g)?;
                    if tasks.is_some_and(|t| t != g.len()) {
                        return Err(Error::Setting {
                            setting: "tasks".into(),
                            problem: format!(
                                "the grouping has {} tasks but {} were asked for",
                                g.len(),
                                tasks.unwrap_or(0)
                            ),
                        });
                    }
                    g
                } else {
                    let t = tasks.unwrap_or(entry.tasks);
                    if !(2..=5).contains(&t) {
                        return Err(Error::Setting {
                            setting: "tasks".into(),
                            problem: format!(
                                "must be 2 to 5 for {name} (pairs of digits), got {t}"
                            ),
                        });
                    }
                    (0..t as u32).map(|k| vec![2 * k, 2 * k + 1]).collect()
                }
            }
            Kind::Permuted => {
                if groups.is_some() {
                    return Err(Error::Setting {
                        setting: "tasks".into(),
                        problem: format!(
                            "a class grouping applies to split benchmarks, not to {name}"
                        ),
                    });
                }
                let t = tasks.unwrap_or(entry.tasks);
                if !(2..=100).contains(&t) {
                    return Err(Error::Setting {
                        setting: "tasks".into(),
                        problem: format!("must be 2 to 100, got {t}"),
                    });
                }
                vec![(0..10).collect(); t]
            }
        };
        // Domain-IL maps the k-th class of every task onto output k: the tasks must have the
        // same number of classes for their labels to share the outputs.
        let cpt = task_classes[0].len();
        if scenario == Scenario::Domain && task_classes.iter().any(|c| c.len() != cpt) {
            let sizes: Vec<String> = task_classes.iter().map(|c| c.len().to_string()).collect();
            return Err(Error::Setting {
                setting: "tasks".into(),
                problem: format!(
                    "have {} classes each; the domain scenario shares its outputs between tasks \
                     and needs the same number of classes in every task",
                    sizes.join("/")
                ),
            });
        }
        if task_classes.iter().any(|c| c.len() != cpt) {
            return Err(Error::Setting {
                setting: "tasks".into(),
                problem: "must all have the same number of classes".into(),
            });
        }
        let (train_pool, test_pool) = load_pools(entry.source)?;
        let dim = train_pool.dim;
        let mut rng = Rng::derive(seed, "permutations");
        let mut train = Vec::new();
        let mut test = Vec::new();
        for (t, classes) in task_classes.iter().enumerate() {
            let perm = match entry.kind {
                Kind::Permuted if t > 0 => {
                    let mut p: Vec<usize> = (0..dim).collect();
                    rng.shuffle(&mut p);
                    Some(Arc::new(p))
                }
                _ => None,
            };
            let part = |pool: &Arc<Pool>| Part {
                pool: pool.clone(),
                idx: (0..pool.y.len())
                    .filter(|&i| classes.contains(&(pool.y[i] as u32)))
                    .collect(),
                perm: perm.clone(),
                task: t,
            };
            train.push(part(&train_pool));
            test.push(part(&test_pool));
        }
        Ok(Self {
            entry,
            task_classes,
            train,
            test,
        })
    }

    pub fn n_tasks(&self) -> usize {
        self.task_classes.len()
    }

    pub fn classes_per_task(&self) -> usize {
        self.task_classes[0].len()
    }

    pub fn dim(&self) -> usize {
        self.train[0].dim()
    }

    /// Output units of the network in `scenario`.
    pub fn n_outputs(&self, scenario: Scenario) -> usize {
        match scenario {
            Scenario::Domain => self.classes_per_task(),
            _ => self.n_tasks() * self.classes_per_task(),
        }
    }

    /// The output unit of an example of task `task` with source class `digit`.
    pub fn target(&self, scenario: Scenario, task: usize, digit: u32) -> u32 {
        let cpt = self.classes_per_task();
        let k = self.task_classes[task]
            .iter()
            .position(|&c| c == digit)
            .expect("the digit belongs to its task");
        match scenario {
            Scenario::Domain => k as u32,
            _ => (task * cpt + k) as u32,
        }
    }

    /// Task `task`'s own output units (its head in Task-IL).
    pub fn head(&self, task: usize) -> Range<usize> {
        let cpt = self.classes_per_task();
        task * cpt..(task + 1) * cpt
    }

    /// The output units an example of task `task` competes among while `current` is trained.
    pub fn train_range(&self, scenario: Scenario, task: usize, current: usize) -> Range<usize> {
        match scenario {
            Scenario::Task => self.head(task),
            Scenario::Domain => 0..self.classes_per_task(),
            Scenario::Class => 0..(current + 1) * self.classes_per_task(),
        }
    }

    /// The output units among which a test example of task `task` is classified after training
    /// through task `after` (Class-IL: every class seen so far, and the task's own).
    pub fn eval_range(&self, scenario: Scenario, task: usize, after: usize) -> Range<usize> {
        self.train_range(scenario, task, task.max(after))
    }

    /// Examples `ids` of task `task`'s training part, with their targets.
    pub fn train_examples(&self, scenario: Scenario, task: usize, ids: &[usize]) -> Examples {
        let part = &self.train[task];
        Examples {
            x: part.gather(ids),
            y: ids
                .iter()
                .map(|&i| self.target(scenario, task, part.digit(i)))
                .collect(),
            task: vec![task; ids.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_digits_tasks_hold_their_pairs_and_targets_follow_the_scenario() {
        let b = Benchmark::load("split-digits", None, None, Scenario::Class, 0).unwrap();
        assert_eq!(b.n_tasks(), 5);
        for t in 0..5 {
            let p = &b.train[t];
            assert!(p.len() > 250);
            for i in 0..p.len() {
                let d = p.digit(i);
                assert!(d == 2 * t as u32 || d == 2 * t as u32 + 1);
                assert_eq!(b.target(Scenario::Class, t, d), d);
                assert_eq!(b.target(Scenario::Domain, t, d), d % 2);
                assert_eq!(b.target(Scenario::Task, t, d), d);
            }
        }
        assert_eq!(b.n_outputs(Scenario::Domain), 2);
        assert_eq!(b.n_outputs(Scenario::Task), 10);
        assert_eq!(b.train_range(Scenario::Class, 1, 3), 0..8);
        assert_eq!(b.train_range(Scenario::Task, 1, 3), 2..4);
        assert_eq!(b.eval_range(Scenario::Class, 4, 1), 0..10);
    }

    #[test]
    fn permuted_tasks_permute_the_same_images() {
        let b = Benchmark::load("permuted-digits", Some(3), None, Scenario::Domain, 7).unwrap();
        let d = b.dim();
        let (mut a, mut c) = (vec![0f32; d], vec![0f32; d]);
        b.train[0].write(5, &mut a);
        b.train[2].write(5, &mut c);
        assert_ne!(a, c);
        let (mut sa, mut sc) = (a.clone(), c.clone());
        sa.sort_by(f32::total_cmp);
        sc.sort_by(f32::total_cmp);
        assert_eq!(sa, sc, "a permutation keeps the pixel values");
        assert_eq!(b.target(Scenario::Class, 2, 7), 27);
    }

    #[test]
    fn bad_benchmarks_and_groupings_are_clear_errors() {
        let e = find("split-cifar").unwrap_err().to_string();
        assert!(e.contains("split-mnist"), "{e}");
        let e = parse_groups("0,1/1,2").unwrap_err().to_string();
        assert!(e.contains("share"), "{e}");
        let e = parse_groups("0,1").unwrap_err().to_string();
        assert!(e.contains("at least 2"), "{e}");
        let g = parse_groups("0,1,2/3,4").unwrap();
        let e = Benchmark::load("split-digits", None, Some(g), Scenario::Domain, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("same number of classes"), "{e}");
    }
}
