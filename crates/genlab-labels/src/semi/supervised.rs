//! The supervised-only baseline: the same CNN trained on the labelled examples alone (with
//! the weak augmentation the other methods also get), the reference every semi-supervised
//! method must beat (Oliver et al. 2018, "Realistic Evaluation of Deep Semi-Supervised
//! Learning Algorithms", arXiv:1804.09170, section 3).

use genlab_core::{Result, Rng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{parse_config, Ctx, MethodEntry};
use crate::augment;
use crate::data::gather_host;
use crate::net::Net;
use crate::train::fit;

pub const ENTRY: MethodEntry = MethodEntry {
    name: "supervised",
    paper: "Oliver et al. 2018, arXiv:1804.09170 (the baseline)",
    description: "the labelled examples alone, weakly augmented",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    run,
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Translate the labelled images by up to 12.5% while training.
    pub augment: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self { augment: true }
    }
}

fn run(ctx: &mut Ctx, v: &Value, rng: &mut Rng) -> Result<f64> {
    let c: Config = parse_config(v)?;
    let d = ctx.data;
    let (x, y) = gather_host(&d.pool, ctx.labelled);
    let net = Net::new(
        &ctx.cfg.model,
        &d.shape,
        d.classes,
        rng.next_u64(),
        ctx.device,
    )?;
    let shape = [d.shape[0], d.shape[1], d.shape[2]];
    let aug = move |ex: &mut [f32], r: &mut Rng| augment::weak(ex, shape, r);
    fit(
        &net,
        &x,
        &y,
        &d.shape,
        &ctx.cfg.fit,
        rng,
        c.augment.then_some(&aug as _),
    )?;
    ctx.test_accuracy(&|x| Ok(candle_nn::ops::softmax(&net.forward(x, None)?, 1)?))
}
