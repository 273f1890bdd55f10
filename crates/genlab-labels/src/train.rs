//! Supervised training of a [`Net`] on a labelled set, and the passes over a data part:
//! class probabilities (deterministic or Monte Carlo dropout), features and test accuracy,
//! each streamed in batches.

use candle_core::{DType, Device, Tensor};
use genlab_core::{Error, Result, Rng};
use genlab_nn::classifier::cross_entropy;
use genlab_train::optim::{AdamW, AdamWConfig};
use serde::{Deserialize, Serialize};

use crate::data::{for_batches, Part};
use crate::net::Net;

/// How a network is trained on its labelled set (every round of active learning trains a
/// fresh one from scratch, as Gal et al. 2017 do).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FitConfig {
    /// Passes over the labelled set (50: Gal et al.'s Keras code).
    pub epochs: usize,
    /// Minibatch size (128: Gal et al.'s Keras code).
    pub batch: usize,
    /// At least this many steps, so that 20 labels (one batch per epoch) still train
    /// (0: epochs decide alone).
    pub min_steps: usize,
    /// Adam's learning rate (1e-3: Kingma & Ba's default, Keras's).
    pub lr: f64,
    /// Decoupled weight decay (AdamW). 0: plain Adam.
    pub weight_decay: f64,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 50,
            batch: 128,
            min_steps: 0,
            lr: 1e-3,
            weight_decay: 0.0,
        }
    }
}

impl FitConfig {
    /// The number of optimizer steps for `n` labelled examples.
    pub fn steps(&self, n: usize) -> usize {
        (self.epochs * n.div_ceil(self.batch.max(1))).max(self.min_steps)
    }
}

/// An image augmentation applied in place to one example `[C, H, W]` (host f32).
pub type Augment<'a> = &'a dyn Fn(&mut [f32], &mut Rng);

/// Trains `net` with cross-entropy on images `x` (`[n, C, H, W]` row-major) labelled `y`,
/// in shuffled minibatches (each optionally augmented); returns the mean loss of the last
/// epoch's worth of steps.
pub fn fit(
    net: &Net,
    x: &[f32],
    y: &[u32],
    shape: &[usize],
    cfg: &FitConfig,
    rng: &mut Rng,
    augment: Option<Augment>,
) -> Result<f64> {
    let opt_cfg = AdamWConfig {
        weight_decay: cfg.weight_decay,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(net.params.vars(), opt_cfg)?;
    let device = net.params.device().clone();
    fit_with(
        &|xb, rng| net.forward(xb, Some(rng)),
        &mut |g| opt.step(g, cfg.lr, 1.0),
        x,
        y,
        shape,
        cfg,
        rng,
        augment,
        &device,
    )
}

/// The loop of [`fit`] for any model: `logits` maps a batch to logits (with the rng for
/// dropout), `step` applies the gradients of the batch's cross-entropy (one optimizer, or
/// several with their own rates); `cfg.lr` and `cfg.weight_decay` are left to `step`.
#[allow(clippy::too_many_arguments)]
pub fn fit_with(
    logits: &dyn Fn(&Tensor, &mut Rng) -> Result<Tensor>,
    step: &mut dyn FnMut(&candle_core::backprop::GradStore) -> Result<()>,
    x: &[f32],
    y: &[u32],
    shape: &[usize],
    cfg: &FitConfig,
    rng: &mut Rng,
    augment: Option<Augment>,
    device: &Device,
) -> Result<f64> {
    let n = y.len();
    let d: usize = shape.iter().product();
    if n == 0 || x.len() != n * d {
        return Err(Error::InvalidInput(format!(
            "fit needs a non-empty labelled set of {d}-pixel images, got {n} labels and {} values",
            x.len()
        )));
    }
    let steps = cfg.steps(n);
    let per_epoch = n.div_ceil(cfg.batch.max(1));
    let mut order: Vec<usize> = Vec::new();
    let (mut recent, mut count) = (0.0, 0usize);
    for s in 0..steps {
        if order.is_empty() {
            order = (0..n).collect();
            rng.shuffle(&mut order);
        }
        let take = cfg.batch.max(1).min(order.len());
        let idx: Vec<usize> = order.drain(..take).collect();
        let (xb, yb) = host_batch(x, y, d, &idx, shape, rng, augment, device)?;
        let loss = cross_entropy(&logits(&xb, rng)?, &yb)?;
        let l = loss.to_scalar::<f32>()? as f64;
        if !l.is_finite() {
            return Err(Error::Numeric(format!("training loss is {l} at step {s}")));
        }
        step(&loss.backward()?)?;
        if s + per_epoch >= steps {
            recent += l;
            count += 1;
        }
    }
    Ok(recent / count.max(1) as f64)
}

/// The examples `idx` of host arrays as a batch `[b, C, H, W]` and labels `[b]`.
#[allow(clippy::too_many_arguments)]
pub fn host_batch(
    x: &[f32],
    y: &[u32],
    d: usize,
    idx: &[usize],
    shape: &[usize],
    rng: &mut Rng,
    augment: Option<Augment>,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let mut buf = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        buf.extend_from_slice(&x[i * d..(i + 1) * d]);
    }
    if let Some(a) = augment {
        for ex in buf.chunks_exact_mut(d) {
            a(ex, rng);
        }
    }
    let mut dims = vec![idx.len()];
    dims.extend_from_slice(shape);
    let xb = Tensor::from_vec(buf, dims, device)?;
    let yb = Tensor::from_vec(
        idx.iter().map(|&i| y[i]).collect::<Vec<u32>>(),
        idx.len(),
        device,
    )?;
    Ok((xb, yb))
}

/// Class probabilities of `n` examples under `t` forward passes, `[t, n, k]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Probs {
    pub t: usize,
    pub n: usize,
    pub k: usize,
    pub p: Vec<f32>,
}

impl Probs {
    /// `p[s, i, :]`.
    pub fn row(&self, s: usize, i: usize) -> &[f32] {
        let o = (s * self.n + i) * self.k;
        &self.p[o..o + self.k]
    }

    /// The mean over passes of example `i`'s probabilities (f64).
    pub fn mean(&self, i: usize) -> Vec<f64> {
        let mut m = vec![0.0; self.k];
        for s in 0..self.t {
            for (a, &p) in m.iter_mut().zip(self.row(s, i)) {
                *a += p as f64 / self.t as f64;
            }
        }
        m
    }
}

/// Softmax probabilities of the examples `idx` of `part`: one deterministic pass when
/// `mc == 0`, else `mc` Monte Carlo dropout samples (the trunk computed once per batch).
pub fn predict(
    net: &Net,
    part: &Part,
    idx: &[usize],
    batch: usize,
    mc: usize,
    rng: &mut Rng,
) -> Result<Probs> {
    let t = mc.max(1);
    let (n, k) = (idx.len(), net.classes());
    let mut p = vec![0f32; t * n * k];
    for_batches(part, idx, batch, net.params.device(), |start, x, _| {
        let trunk = net.trunk(x)?;
        let b = trunk.dim(0)?;
        for s in 0..t {
            let logits = match mc {
                0 => net.head(&trunk, None)?.1,
                _ => net.head(&trunk, Some(rng))?.1,
            };
            let probs = candle_nn::ops::softmax(&logits, 1)?.to_vec2::<f32>()?;
            for (j, row) in probs.iter().enumerate().take(b) {
                let o = (s * n + start + j) * k;
                p[o..o + k].copy_from_slice(row);
            }
        }
        Ok(())
    })?;
    Ok(Probs { t, n, k, p })
}

/// Deterministic features `[n, F]` of the examples `idx` of `part`, row-major.
pub fn features(
    part: &Part,
    idx: &[usize],
    batch: usize,
    device: &Device,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<(Vec<f32>, usize)> {
    let mut out = Vec::new();
    let mut dim = 0;
    for_batches(part, idx, batch, device, |_, x, _| {
        let h = f(x)?.to_dtype(DType::F32)?;
        dim = h.dim(1)?;
        out.extend(h.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    })?;
    Ok((out, dim))
}

/// Accuracy in [0, 1] of the deterministic network on every example of `part`.
pub fn accuracy(net: &Net, part: &Part, batch: usize) -> Result<f64> {
    accuracy_with(part, batch, net.params.device(), |x| net.forward(x, None))
}

/// Accuracy in [0, 1] on every example of `part` of any model's `logits`.
pub fn accuracy_with(
    part: &Part,
    batch: usize,
    device: &Device,
    logits: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<f64> {
    let idx: Vec<usize> = (0..part.len()).collect();
    let mut correct = 0usize;
    for_batches(part, &idx, batch, device, |_, x, y| {
        let pred = logits(x)?.argmax(1)?;
        correct += pred
            .eq(y)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as usize;
        Ok(())
    })?;
    Ok(correct as f64 / part.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{gather_host, Data};
    use crate::net::NetConfig;

    #[test]
    fn a_fitted_cnn_learns_the_synthetic_classes_and_mc_rows_are_distributions() {
        let d = Data::open("synthetic").unwrap();
        let dev = Device::Cpu;
        let net = Net::new(&NetConfig::default(), &d.shape, d.classes, 0, &dev).unwrap();
        let idx: Vec<usize> = (0..200).collect();
        let (x, y) = gather_host(&d.pool, &idx);
        let cfg = FitConfig {
            epochs: 30,
            batch: 32,
            ..FitConfig::default()
        };
        let mut rng = Rng::new(0);
        fit(&net, &x, &y, &d.shape, &cfg, &mut rng, None).unwrap();
        let acc = accuracy(&net, &d.test, 64).unwrap();
        assert!(acc > 0.9, "test accuracy {acc}");
        let p = predict(&net, &d.test, &[0, 5, 7], 2, 4, &mut rng).unwrap();
        assert_eq!((p.t, p.n, p.k), (4, 3, 10));
        for s in 0..4 {
            for i in 0..3 {
                let sum: f32 = p.row(s, i).iter().sum();
                assert!((sum - 1.0).abs() < 1e-5);
            }
        }
        // MC samples differ; the deterministic pass has one row.
        assert_ne!(p.row(0, 0), p.row(1, 0));
        assert_eq!(
            predict(&net, &d.test, &[0, 5], 8, 0, &mut rng).unwrap().t,
            1
        );
    }
}
