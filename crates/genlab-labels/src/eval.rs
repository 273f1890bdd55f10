//! The one evaluation of learned representations (features of frozen encoders):
//!
//! - [`linear_probe`]: multinomial logistic regression on standardised features, trained
//!   with Adam on minibatches, the rate decayed to 0 by a half cosine so the convex problem
//!   is solved rather than left oscillating (the protocol of SimCLR, Chen et al. 2020,
//!   arXiv:2002.05709, section B.6, without its augmentations); its test accuracy;
//! - [`knn_accuracy`]: k-nearest-neighbour classification by cosine similarity, majority
//!   vote (ties: the class with the larger summed similarity), as in Wu et al. 2018
//!   (arXiv:1805.01978) without their temperature weighting.
//!
//! Features come as row-major `[n, dim]` f32 arrays.

use candle_core::{DType, Device, Tensor, Var};
use genlab_core::{Error, Result, Rng};
use genlab_nn::classifier::cross_entropy;
use genlab_train::optim::{AdamW, AdamWConfig};
use genlab_train::LrDecay;
use serde::{Deserialize, Serialize};

/// Settings of [`linear_probe`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Passes over the training features (100: with the cosine decay the probe's test
    /// accuracy is within 0.01 points of 300 passes on MNIST features, docs/labels.md;
    /// 30 passes at a constant rate, the setting before, stopped up to 0.2 points short).
    pub epochs: usize,
    /// Minibatch (256: SimCLR's probe uses 4096 on ImageNet; MNIST is smaller).
    pub batch: usize,
    /// Adam's learning rate (1e-2: a linear model on standardised inputs tolerates it).
    pub lr: f64,
    /// `cosine` (default), `constant` or `linear` decay of the rate to 0 over the epochs.
    /// A saved config without the key loads as `constant`, the probe it was evaluated with.
    #[serde(default)]
    pub lr_decay: LrDecay,
    /// Decoupled weight decay (1e-4: a little, so separable data has a bounded solution).
    pub weight_decay: f64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch: 256,
            lr: 1e-2,
            lr_decay: LrDecay::Cosine,
            weight_decay: 1e-4,
        }
    }
}

fn check(x: &[f32], y: &[u32], dim: usize, what: &str) -> Result<usize> {
    if dim == 0 || x.len() != y.len() * dim || y.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{what}: {} labels and {} values do not make [n, {dim}] features",
            y.len(),
            x.len()
        )));
    }
    Ok(y.len())
}

/// Trains a linear classifier on `(train_x, train_y)` and returns its accuracy on
/// `(test_x, test_y)`; features `[n, dim]`, `classes` outputs.
#[allow(clippy::too_many_arguments)]
pub fn linear_probe(
    train_x: &[f32],
    train_y: &[u32],
    test_x: &[f32],
    test_y: &[u32],
    dim: usize,
    classes: usize,
    cfg: &ProbeConfig,
    seed: u64,
) -> Result<f64> {
    let n = check(train_x, train_y, dim, "linear probe (train)")?;
    let m = check(test_x, test_y, dim, "linear probe (test)")?;
    // Standardise with the training statistics (f64).
    let mut mean = vec![0f64; dim];
    let mut var = vec![0f64; dim];
    for r in train_x.chunks_exact(dim) {
        for (a, &v) in mean.iter_mut().zip(r) {
            *a += v as f64 / n as f64;
        }
    }
    for r in train_x.chunks_exact(dim) {
        for ((a, &v), mu) in var.iter_mut().zip(r).zip(&mean) {
            *a += (v as f64 - mu).powi(2) / n as f64;
        }
    }
    let std: Vec<f64> = var.iter().map(|v| v.sqrt().max(1e-6)).collect();
    let norm = |x: &[f32]| -> Vec<f32> {
        x.chunks_exact(dim)
            .flat_map(|r| {
                r.iter()
                    .zip(&mean)
                    .zip(&std)
                    .map(|((&v, mu), s)| ((v as f64 - mu) / s) as f32)
            })
            .collect()
    };
    let (tx, sx) = (norm(train_x), norm(test_x));
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::zeros((dim, classes), DType::F32, &dev)?)?;
    let b = Var::from_tensor(&Tensor::zeros(classes, DType::F32, &dev)?)?;
    let mut opt = AdamW::new(
        vec![("w".into(), w.clone()), ("b".into(), b.clone())],
        AdamWConfig {
            weight_decay: cfg.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let mut rng = Rng::derive(seed, "probe");
    let all_x = Tensor::from_vec(tx, (n, dim), &dev)?;
    let all_y = Tensor::from_vec(train_y.to_vec(), n, &dev)?;
    let batch = cfg.batch.max(1);
    let total = (cfg.epochs * n.div_ceil(batch)).max(1) as f64;
    let mut k = 0usize;
    for _ in 0..cfg.epochs {
        let mut order: Vec<u32> = (0..n as u32).collect();
        rng.shuffle(&mut order);
        for chunk in order.chunks(batch) {
            let idx = Tensor::from_vec(chunk.to_vec(), chunk.len(), &dev)?;
            let xb = all_x.index_select(&idx, 0)?;
            let yb = all_y.index_select(&idx, 0)?;
            let logits = xb.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            let loss = cross_entropy(&logits, &yb)?;
            let lr = cfg.lr * cfg.lr_decay.factor(k as f64 / total);
            opt.step(&loss.backward()?, lr, 1.0)?;
            k += 1;
        }
    }
    let test = Tensor::from_vec(sx, (m, dim), &dev)?;
    let pred = test
        .matmul(w.as_tensor())?
        .broadcast_add(b.as_tensor())?
        .argmax(1)?
        .to_vec1::<u32>()?;
    Ok(pred.iter().zip(test_y).filter(|(a, b)| a == b).count() as f64 / m as f64)
}

/// Linear-probe and k-NN accuracy of a frozen encoder's features ([`probe_frozen`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeReport {
    pub data: String,
    /// Training examples the probe was fitted on (and k-NN searched).
    pub train: usize,
    /// Test examples.
    pub test: usize,
    /// Feature width.
    pub dim: usize,
    pub linear_probe: Option<f64>,
    pub knn: Option<f64>,
    pub knn_k: usize,
}

/// Fits [`linear_probe`] (when `probe` is given) and runs [`knn_accuracy`] (when `knn_k`
/// is) on the features `f` gives for `data`'s pool (all of it, or a class-balanced seeded
/// subset of `train_limit`), tested on all of `data`'s test set.
#[allow(clippy::too_many_arguments)]
pub fn probe_frozen(
    data: &crate::Data,
    train_limit: Option<usize>,
    f: impl Fn(&Tensor) -> Result<Tensor>,
    probe: Option<&ProbeConfig>,
    knn_k: Option<usize>,
    seed: u64,
    device: &Device,
) -> Result<ProbeReport> {
    let idx: Vec<usize> = match train_limit {
        None => (0..data.pool.len()).collect(),
        Some(n) => crate::data::balanced_subset(
            &data.pool,
            data.classes,
            n,
            &mut Rng::derive(seed, "probe/subset"),
        )?,
    };
    let (tx, dim) = crate::train::features(&data.pool, &idx, 500, device, &f)?;
    let ty: Vec<u32> = idx.iter().map(|&i| data.pool.label(i)).collect();
    let test_idx: Vec<usize> = (0..data.test.len()).collect();
    let (sx, _) = crate::train::features(&data.test, &test_idx, 500, device, &f)?;
    let sy: Vec<u32> = test_idx.iter().map(|&i| data.test.label(i)).collect();
    let linear = probe
        .map(|cfg| linear_probe(&tx, &ty, &sx, &sy, dim, data.classes, cfg, seed))
        .transpose()?;
    let k = knn_k.map(|k| k.min(ty.len()));
    let knn = k
        .map(|k| knn_accuracy(&tx, &ty, &sx, &sy, dim, data.classes, k))
        .transpose()?;
    Ok(ProbeReport {
        data: data.name.clone(),
        train: ty.len(),
        test: sy.len(),
        dim,
        linear_probe: linear,
        knn,
        knn_k: k.unwrap_or(0),
    })
}

fn l2_normalise(x: &[f32], dim: usize) -> Vec<f32> {
    x.chunks_exact(dim)
        .flat_map(|r| {
            let n = r
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            r.iter().map(move |&v| (v as f64 / n) as f32)
        })
        .collect()
}

/// Accuracy of `k`-nearest-neighbour classification (cosine similarity) of the test
/// features against the training features; test rows are processed in chunks of 256.
#[allow(clippy::too_many_arguments)]
pub fn knn_accuracy(
    train_x: &[f32],
    train_y: &[u32],
    test_x: &[f32],
    test_y: &[u32],
    dim: usize,
    classes: usize,
    k: usize,
) -> Result<f64> {
    let n = check(train_x, train_y, dim, "k-NN (train)")?;
    let m = check(test_x, test_y, dim, "k-NN (test)")?;
    if k == 0 || k > n {
        return Err(Error::setting(
            "k",
            format!("k-NN needs 1 <= k <= {n} (the training examples), got {k}"),
        ));
    }
    let dev = Device::Cpu;
    let tr = Tensor::from_vec(l2_normalise(train_x, dim), (n, dim), &dev)?;
    let te = l2_normalise(test_x, dim);
    let mut correct = 0;
    for (c, chunk) in te.chunks(256 * dim).enumerate() {
        let rows = chunk.len() / dim;
        let q = Tensor::from_vec(chunk.to_vec(), (rows, dim), &dev)?;
        let sims = q.matmul(&tr.t()?)?.to_vec2::<f32>()?; // [rows, n]
        for (r, s) in sims.iter().enumerate() {
            if vote(s, train_y, classes, k) == test_y[c * 256 + r] {
                correct += 1;
            }
        }
    }
    Ok(correct as f64 / m as f64)
}

/// The majority class of the `k` most similar rows (ties: larger summed similarity, then
/// lower class).
fn vote(sims: &[f32], labels: &[u32], classes: usize, k: usize) -> u32 {
    let mut order: Vec<usize> = (0..sims.len()).collect();
    order.select_nth_unstable_by(k - 1, |&a, &b| sims[b].total_cmp(&sims[a]).then(a.cmp(&b)));
    let mut count = vec![0usize; classes];
    let mut sum = vec![0f64; classes];
    for &i in &order[..k] {
        count[labels[i] as usize] += 1;
        sum[labels[i] as usize] += sims[i] as f64;
    }
    (0..classes)
        .max_by(|&a, &b| {
            count[a]
                .cmp(&count[b])
                .then(sum[a].total_cmp(&sum[b]))
                .then(b.cmp(&a))
        })
        .unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_probe_without_a_decay_loads_as_the_constant_rate_it_ran_with() {
        let old: ProbeConfig = serde_json::from_str(
            r#"{"epochs": 30, "batch": 256, "lr": 0.01, "weight_decay": 0.0001}"#,
        )
        .unwrap();
        assert_eq!((old.epochs, old.lr_decay), (30, LrDecay::Constant));
        let new = ProbeConfig::default();
        assert_eq!((new.epochs, new.lr_decay), (100, LrDecay::Cosine));
        let back: ProbeConfig =
            serde_json::from_value(serde_json::to_value(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }

    /// Three Gaussian classes in 5-D with means 4 apart: nearly separable.
    fn blobs(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = Rng::new(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = (i % 3) as u32;
            for d in 0..5 {
                let mu = if d == c as usize { 4.0 } else { 0.0 };
                x.push((mu + rng.normal()) as f32);
            }
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn probe_matches_the_bayes_rule_on_gaussian_classes() {
        let (tx, ty) = blobs(600, 1);
        let (sx, sy) = blobs(600, 2);
        let acc = linear_probe(&tx, &ty, &sx, &sy, 5, 3, &ProbeConfig::default(), 0).unwrap();
        // Bayes rule for equal isotropic covariances: the nearest true mean.
        let bayes = sx
            .chunks_exact(5)
            .zip(&sy)
            .filter(|(r, &c)| {
                let best = (0..3)
                    .min_by(|&a, &b| {
                        let d = |k: usize| {
                            r.iter()
                                .enumerate()
                                .map(|(j, &v)| (v as f64 - if j == k { 4.0 } else { 0.0 }).powi(2))
                                .sum::<f64>()
                        };
                        d(a).total_cmp(&d(b))
                    })
                    .unwrap();
                best == c as usize
            })
            .count() as f64
            / 600.0;
        assert!(acc > bayes - 0.02, "probe {acc} vs Bayes {bayes}");
    }

    #[test]
    fn probe_separates_linearly_separable_classes_exactly() {
        // Four classes at the corners of a square, each a tight cloud (radius 0.1 around
        // (+-1, +-1)): the quadrant is the class, so a linear classifier exists with
        // accuracy 1 and the probe must find it; a shifted, rescaled copy of the features
        // changes nothing (the probe standardises).
        let cloud = |n: usize, seed: u64, shift: f32, scale: f32| {
            let mut rng = Rng::new(seed);
            let mut x = Vec::new();
            let mut y = Vec::new();
            for i in 0..n {
                let c = (i % 4) as u32;
                let (a, b) = (
                    if c & 1 == 0 { -1.0 } else { 1.0 },
                    if c & 2 == 0 { -1.0 } else { 1.0 },
                );
                x.push(shift + scale * (a + 0.1 * (2.0 * rng.uniform() - 1.0) as f32));
                x.push(shift + scale * (b + 0.1 * (2.0 * rng.uniform() - 1.0) as f32));
                y.push(c);
            }
            (x, y)
        };
        for (shift, scale) in [(0.0, 1.0), (50.0, 0.01)] {
            let (tx, ty) = cloud(200, 1, shift, scale);
            let (sx, sy) = cloud(200, 2, shift, scale);
            let acc = linear_probe(&tx, &ty, &sx, &sy, 2, 4, &ProbeConfig::default(), 0).unwrap();
            assert_eq!(acc, 1.0, "shift {shift} scale {scale}");
        }
        // Features that carry no information about the labels: chance (one class of four
        // in the test set, so the probe's single prediction is right 25% of the time at most).
        let x = vec![1f32; 2 * 40];
        let y: Vec<u32> = (0..40).map(|i| (i % 4) as u32).collect();
        let acc = linear_probe(&x, &y, &x, &y, 2, 4, &ProbeConfig::default(), 0).unwrap();
        assert!(acc <= 0.25 + 1e-12, "{acc}");
    }

    #[test]
    fn knn_matches_a_brute_force_vote() {
        let (tx, ty) = blobs(90, 3);
        let (sx, sy) = blobs(300, 4);
        for k in [1, 5, 20] {
            let got = knn_accuracy(&tx, &ty, &sx, &sy, 5, 3, k).unwrap();
            // Brute force: sort every training row by cosine similarity.
            let cos = |a: &[f32], b: &[f32]| {
                let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
                let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
                let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
                dot / (na * nb)
            };
            let mut correct = 0;
            for (q, &c) in sx.chunks_exact(5).zip(&sy) {
                let mut s: Vec<(f64, u32)> = tx
                    .chunks_exact(5)
                    .zip(&ty)
                    .map(|(r, &l)| (cos(q, r), l))
                    .collect();
                s.sort_by(|a, b| b.0.total_cmp(&a.0));
                let mut cnt = [0usize; 3];
                let mut sum = [0f64; 3];
                for &(v, l) in &s[..k] {
                    cnt[l as usize] += 1;
                    sum[l as usize] += v;
                }
                let best = (0..3)
                    .max_by(|&a, &b| {
                        cnt[a]
                            .cmp(&cnt[b])
                            .then(sum[a].total_cmp(&sum[b]))
                            .then(b.cmp(&a))
                    })
                    .unwrap();
                correct += (best == c as usize) as usize;
            }
            let want = correct as f64 / 300.0;
            assert!((got - want).abs() < 1e-12, "k={k}: {got} vs {want}");
        }
        assert!(knn_accuracy(&tx, &ty, &sx, &sy, 5, 3, 91).is_err());
    }
}
