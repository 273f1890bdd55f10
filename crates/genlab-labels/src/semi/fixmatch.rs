//! FixMatch (Sohn et al. 2020, "FixMatch: Simplifying Semi-Supervised Learning with
//! Consistency and Confidence", arXiv:2001.07685, eq. 2-4): each step, a batch of `batch`
//! labelled images (weakly augmented) gives the supervised cross-entropy; a batch of
//! `mu * batch` unlabelled images is augmented weakly and strongly; where the network's
//! prediction on the weak view is at least `threshold` sure, its argmax is the target of
//! the strong view:
//!
//! ```text
//! loss = H(y, p(x_weak)) + lambda_u (1 / mu B) sum_b 1[max q_b >= tau] H(argmax q_b, p(A(u_b)))
//! ```
//!
//! with `q_b = p(alpha(u_b))` taken without gradient. The test accuracy is that of an
//! exponential moving average of the weights (decay 0.999, section 4 and appendix B.1 of the
//! paper; `ema = 0` evaluates the trained weights themselves); both are logged. Differences
//! from the paper: Adam instead of SGD with Nesterov momentum (the rate follows the paper's
//! cosine decay `lr cos(7 pi k / 16 K)` at step k of K, or stays constant), the EMA's warm-up of [`genlab_train::ema`], the Gal et al. CNN (with its
//! dropout) instead of a Wide ResNet, and the digit augmentations of [`crate::augment`].

use candle_core::{DType, Tensor};
use genlab_core::{Error, Result, Rng};
use genlab_nn::classifier::{cross_entropy, log_softmax};
use genlab_train::ema::Ema;
use genlab_train::optim::{AdamW, AdamWConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{parse_config, Ctx, MethodEntry};
use crate::augment;
use crate::data::gather_host;
use crate::net::Net;
use crate::train::host_batch;

pub const ENTRY: MethodEntry = MethodEntry {
    name: "fixmatch",
    paper: "Sohn et al. 2020, arXiv:2001.07685",
    description: "confident predictions on weak views are the targets of strong views",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    run,
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Optimizer steps.
    pub steps: usize,
    /// Labelled images per step (64: the paper's B).
    pub batch: usize,
    /// Unlabelled images per labelled one (7: the paper's mu).
    pub mu: usize,
    /// Pseudo-label confidence threshold (0.95: the paper's tau).
    pub threshold: f64,
    /// Weight of the unlabelled loss (1: the paper's lambda_u).
    pub lambda_u: f64,
    /// Adam's learning rate (at the start, with `cosine`).
    pub lr: f64,
    /// The paper's cosine decay of the rate, to cos(7 pi / 16) = 0.195 of it at the end.
    pub cosine: bool,
    /// Decay of the weight average that is evaluated (0.999: the paper's; 0: no average).
    pub ema: f64,
    /// Steps between progress lines.
    pub log_every: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // 3,000: a CPU-sized run (the paper trains 2^20 steps).
            steps: 3000,
            batch: 64,
            mu: 7,
            threshold: 0.95,
            lambda_u: 1.0,
            lr: 1e-3,
            cosine: true,
            ema: 0.999,
            log_every: 100,
        }
    }
}

/// The masked unlabelled loss of eq. 4: mean over the batch of
/// `1[max q >= tau] * -log p_strong(argmax q)`, and the fraction above the threshold.
pub fn unlabelled_loss(q: &[Vec<f32>], strong_logits: &Tensor, tau: f64) -> Result<(Tensor, f64)> {
    let n = q.len();
    let mut target = Vec::with_capacity(n);
    let mut mask = Vec::with_capacity(n);
    for row in q {
        let (k, p) = row
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |a, (k, &p)| if p > a.1 { (k, p) } else { a });
        target.push(k as u32);
        mask.push(if p as f64 >= tau { 1f32 } else { 0.0 });
    }
    let dev = strong_logits.device();
    let frac = mask.iter().sum::<f32>() as f64 / n.max(1) as f64;
    let t = Tensor::from_vec(target, (n, 1), dev)?;
    let m = Tensor::from_vec(mask, n, dev)?;
    let nll = log_softmax(strong_logits)?
        .gather(&t, 1)?
        .squeeze(1)?
        .neg()?; // [n]
    Ok(((nll.mul(&m)?.sum_all()? / n as f64)?, frac))
}

/// The rate at step `k` (from 0): `lr cos(7 pi k / 16 K)` with the cosine decay.
pub fn learning_rate(c: &Config, k: usize) -> f64 {
    if c.cosine {
        c.lr * (7.0 * std::f64::consts::PI * k as f64 / (16.0 * c.steps.max(1) as f64)).cos()
    } else {
        c.lr
    }
}

fn run(ctx: &mut Ctx, v: &Value, rng: &mut Rng) -> Result<f64> {
    let c: Config = parse_config(v)?;
    if c.batch == 0 || c.mu == 0 {
        return Err(Error::setting(
            "method.batch",
            "batch and mu must be at least 1",
        ));
    }
    if !(0.0..1.0).contains(&c.ema) {
        return Err(Error::setting(
            "method.ema",
            format!("the average's decay must be in [0, 1), got {}", c.ema),
        ));
    }
    let d = ctx.data;
    let shape = [d.shape[0], d.shape[1], d.shape[2]];
    let dim = d.dim();
    let (lx, ly) = gather_host(&d.pool, ctx.labelled);
    let unl = ctx.unlabelled();
    let seed = rng.next_u64();
    let net = Net::new(&ctx.cfg.model, &d.shape, d.classes, seed, ctx.device)?;
    // The average starts from the same initial weights (same seed).
    let avg = if c.ema > 0.0 {
        let shadow = Net::new(&ctx.cfg.model, &d.shape, d.classes, seed, ctx.device)?;
        let ema = Ema::new(&shadow.params, &net.params, c.ema)?;
        Some((shadow, ema))
    } else {
        None
    };
    let mut opt = AdamW::new(net.params.vars(), AdamWConfig::default())?;
    let weak = move |ex: &mut [f32], r: &mut Rng| augment::weak(ex, shape, r);
    let strong = move |ex: &mut [f32], r: &mut Rng| augment::strong(ex, shape, r);
    let mut order: Vec<usize> = Vec::new();
    let (mut sum_l, mut sum_u, mut sum_m) = (0.0, 0.0, 0.0);
    for step in 0..c.steps {
        let mut li = Vec::with_capacity(c.batch);
        while li.len() < c.batch {
            if order.is_empty() {
                order = (0..ly.len()).collect();
                rng.shuffle(&mut order);
            }
            li.push(order.pop().unwrap_or(0));
        }
        let (xl, yl) = host_batch(&lx, &ly, dim, &li, &d.shape, rng, Some(&weak), ctx.device)?;
        let ui: Vec<usize> = (0..c.batch * c.mu)
            .map(|_| unl[rng.below(unl.len() as u64) as usize])
            .collect();
        let (ux, _) = gather_host(&d.pool, &ui);
        let dummy = vec![0u32; ui.len()];
        let all: Vec<usize> = (0..ui.len()).collect();
        let (xw, _) = host_batch(
            &ux,
            &dummy,
            dim,
            &all,
            &d.shape,
            rng,
            Some(&weak),
            ctx.device,
        )?;
        let (xs, _) = host_batch(
            &ux,
            &dummy,
            dim,
            &all,
            &d.shape,
            rng,
            Some(&strong),
            ctx.device,
        )?;
        let q = candle_nn::ops::softmax(&net.forward(&xw, None)?.detach(), 1)?.to_vec2::<f32>()?;
        // One pass over labelled and strong images: [B + muB, C, H, W].
        let logits = net.forward(&Tensor::cat(&[&xl, &xs], 0)?, Some(rng))?;
        let ll = logits.narrow(0, 0, c.batch)?;
        let ls = logits.narrow(0, c.batch, ui.len())?;
        let loss_l = cross_entropy(&ll, &yl)?;
        let (loss_u, frac) = unlabelled_loss(&q, &ls, c.threshold)?;
        let loss = (&loss_l + (loss_u.clone() * c.lambda_u)?)?;
        let lv = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !lv.is_finite() {
            return Err(Error::Numeric(format!(
                "fixmatch loss is {lv} at step {step}"
            )));
        }
        opt.step(&loss.backward()?, learning_rate(&c, step), 1.0)?;
        if let Some((_, ema)) = &avg {
            ema.update(step as u64)?;
        }
        sum_l += loss_l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        sum_u += loss_u.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        sum_m += frac;
        if (step + 1) % c.log_every.max(1) == 0 || step + 1 == c.steps {
            let k = ((step % c.log_every.max(1)) + 1) as f64;
            (ctx.log)(&format!(
                "step {}: supervised loss {:.4}, unlabelled loss {:.4}, {:.1}% above threshold",
                step + 1,
                sum_l / k,
                sum_u / k,
                100.0 * sum_m / k
            ));
            (sum_l, sum_u, sum_m) = (0.0, 0.0, 0.0);
        }
    }
    fn probs(n: &Net) -> impl Fn(&Tensor) -> Result<Tensor> + '_ {
        move |x| Ok(candle_nn::ops::softmax(&n.forward(x, None)?, 1)?)
    }
    let raw = ctx.test_accuracy(&probs(&net))?;
    let Some((shadow, _)) = &avg else {
        return Ok(raw);
    };
    let averaged = ctx.test_accuracy(&probs(shadow))?;
    (ctx.log)(&format!(
        "test accuracy: {:.2}% with the weight average (decay {}), {:.2}% without",
        100.0 * averaged,
        c.ema,
        100.0 * raw
    ));
    Ok(averaged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn unlabelled_loss_matches_the_masked_formula() {
        let q = vec![vec![0.97f32, 0.03], vec![0.6, 0.4], vec![0.01, 0.99]];
        let logits = [[0.5f32, -0.2], [1.0, 2.0], [0.3, 0.1]];
        let t = Tensor::new(&logits, &Device::Cpu).unwrap();
        let (l, frac) = unlabelled_loss(&q, &t, 0.95).unwrap();
        let nll = |r: [f32; 2], k: usize| {
            let lse = ((r[0] as f64).exp() + (r[1] as f64).exp()).ln();
            lse - r[k] as f64
        };
        // Rows 0 (class 0) and 2 (class 1) pass the threshold; row 1 is masked.
        let want = (nll(logits[0], 0) + nll(logits[2], 1)) / 3.0;
        let got = l.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert!((frac - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_rate_follows_the_papers_cosine_decay() {
        let c = Config {
            steps: 1000,
            lr: 0.03,
            ..Config::default()
        };
        assert_eq!(learning_rate(&c, 0), 0.03);
        // Half way: cos(7 pi / 32); at the end: cos(7 pi / 16) = 0.1951 (FixMatch's factor).
        let half = 0.03 * (7.0 * std::f64::consts::PI / 32.0).cos();
        assert!((learning_rate(&c, 500) - half).abs() < 1e-15);
        assert!((learning_rate(&c, 1000) / 0.03 - 0.195_090_322).abs() < 1e-9);
        let flat = Config { cosine: false, ..c };
        assert_eq!(learning_rate(&flat, 700), 0.03);
    }
}
