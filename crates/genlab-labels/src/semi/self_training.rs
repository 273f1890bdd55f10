//! Self-training with confidence-thresholded pseudo-labels (Scudder 1965, "Probability of
//! error of some adaptive pattern-recognition machines", IEEE Trans. IT; in deep networks
//! Lee 2013, "Pseudo-Label", ICML workshop): train on the labelled set, label the
//! unlabelled examples the network is at least `threshold` sure of with its prediction,
//! retrain from scratch on both, and repeat for `rounds` rounds.
//!
//! With `balanced` (the default) no class takes more than its even share of a round's
//! pseudo-labels (the most confident ones are kept), as in class-balanced self-training
//! (Zou et al. 2018, arXiv:1810.07911, section 3.2): without it the easy classes flood the
//! training set and the errors feed on themselves (measured on the 8x8 digits with 50
//! labels: 84% after the supervised round, 46% after three unbalanced rounds).

use candle_core::Tensor;
use genlab_core::{Result, Rng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{parse_config, Ctx, MethodEntry};
use crate::augment;
use crate::data::gather_host;
use crate::net::Net;
use crate::train::{fit, predict};

pub const ENTRY: MethodEntry = MethodEntry {
    name: "self-training",
    paper: "Scudder 1965 (IEEE Trans. IT); Lee 2013 (ICML workshop, Pseudo-Label)",
    description: "retrain on the labelled set plus the confident predictions on unlabelled images",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    run,
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Pseudo-labelling rounds (3: most of the gain comes in the first rounds).
    pub rounds: usize,
    /// Confidence a pseudo-label needs (0.95: FixMatch's threshold).
    pub threshold: f64,
    /// Random unlabelled examples scored per round (0: all of them).
    pub subset: usize,
    /// Translate training images by up to 12.5%.
    pub augment: bool,
    /// Cap each class at an even share of the round's pseudo-labels.
    pub balanced: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rounds: 3,
            threshold: 0.95,
            // 10,000: a sixth of MNIST, enough pseudo-labels to matter, cheap to score.
            subset: 10_000,
            augment: true,
            balanced: true,
        }
    }
}

fn run(ctx: &mut Ctx, v: &Value, rng: &mut Rng) -> Result<f64> {
    let c: Config = parse_config(v)?;
    let d = ctx.data;
    let (lx, ly) = gather_host(&d.pool, ctx.labelled);
    let shape = [d.shape[0], d.shape[1], d.shape[2]];
    let aug = move |ex: &mut [f32], r: &mut Rng| augment::weak(ex, shape, r);
    let mut unl = ctx.unlabelled();
    rng.shuffle(&mut unl);
    if c.subset > 0 {
        unl.truncate(c.subset);
    }
    let (mut x, mut y) = (lx.clone(), ly.clone());
    let mut net;
    let mut round = 0;
    loop {
        net = Net::new(
            &ctx.cfg.model,
            &d.shape,
            d.classes,
            rng.next_u64(),
            ctx.device,
        )?;
        fit(
            &net,
            &x,
            &y,
            &d.shape,
            &ctx.cfg.fit,
            rng,
            c.augment.then_some(&aug as _),
        )?;
        if round == c.rounds {
            break;
        }
        let p = predict(&net, &d.pool, &unl, ctx.cfg.batch, 0, rng)?;
        // (confidence, pool position) of the confident predictions, per predicted class.
        let mut by_class: Vec<Vec<(f32, usize)>> = vec![Vec::new(); d.classes];
        for (j, &i) in unl.iter().enumerate() {
            let (best, conf) = p
                .row(0, j)
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |a, (k, &q)| if q > a.1 { (k, q) } else { a });
            if conf as f64 >= c.threshold {
                by_class[best].push((conf, i));
            }
        }
        let total: usize = by_class.iter().map(Vec::len).sum();
        let cap = match c.balanced {
            true => total.div_ceil(d.classes),
            false => usize::MAX,
        };
        let (mut px, mut py) = (lx.clone(), ly.clone());
        let mut chosen = Vec::new();
        let mut right = 0usize;
        for (k, list) in by_class.iter_mut().enumerate() {
            list.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, i) in list.iter().take(cap) {
                chosen.push(i);
                py.push(k as u32);
                // Diagnostics only: the true label is never used for training.
                right += (d.pool.label(i) == k as u32) as usize;
            }
        }
        px.extend(gather_host(&d.pool, &chosen).0);
        (ctx.log)(&format!(
            "round {}: {} pseudo-labels ({:.1}% correct)",
            round + 1,
            chosen.len(),
            100.0 * right as f64 / chosen.len().max(1) as f64
        ));
        x = px;
        y = py;
        round += 1;
    }
    ctx.test_accuracy(&|x: &Tensor| Ok(candle_nn::ops::softmax(&net.forward(x, None)?, 1)?))
}
