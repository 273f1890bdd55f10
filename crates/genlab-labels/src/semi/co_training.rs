//! Co-training (Blum & Mitchell 1998, "Combining labeled and unlabeled data with
//! co-training", COLT): two classifiers, each seeing one view of the input (here the top
//! and the bottom half of the image, the other half blanked), label unlabelled examples for
//! each other. Each round both are trained on the shared labelled set; each adds, for every
//! class, its `per_class` most confident unlabelled examples predicted as that class, with
//! its prediction as the label (the paper's p positive and n negative examples per round).
//! The final classifier multiplies the two views' probabilities (the paper's combination).

use candle_core::{Device, Tensor};
use genlab_core::{Result, Rng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{parse_config, Ctx, MethodEntry};
use crate::augment;
use crate::data::{for_batches, gather_host};
use crate::net::Net;
use crate::train::fit;

pub const ENTRY: MethodEntry = MethodEntry {
    name: "co-training",
    paper: "Blum & Mitchell 1998 (COLT)",
    description:
        "two CNNs on the top and bottom image halves label confident examples for each other",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    run,
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Rounds of mutual labelling (5).
    pub rounds: usize,
    /// Examples each view adds per class per round (20: 200 per view per round on digits).
    pub per_class: usize,
    /// Random unlabelled examples scored per round (5,000: cheap, and plenty to pick from).
    pub subset: usize,
    /// Translate training images by up to 12.5% (before the view's mask).
    pub augment: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rounds: 5,
            per_class: 20,
            subset: 5000,
            augment: true,
        }
    }
}

/// Blanks the half of the image a view does not see: view 0 keeps the top rows, view 1
/// the bottom rows.
pub fn mask_view(x: &mut [f32], shape: [usize; 3], view: usize) {
    let [c, h, w] = shape;
    for ch in 0..c {
        for i in 0..h {
            let top = i < h / 2;
            if top != (view == 0) {
                x[ch * h * w + i * w..ch * h * w + (i + 1) * w].fill(0.0);
            }
        }
    }
}

fn view_tensor(shape: [usize; 3], view: usize, device: &Device) -> Result<Tensor> {
    let mut m = vec![1f32; shape.iter().product()];
    mask_view(&mut m, shape, view);
    Ok(Tensor::from_vec(
        m,
        (1, shape[0], shape[1], shape[2]),
        device,
    )?)
}

fn run(ctx: &mut Ctx, v: &Value, rng: &mut Rng) -> Result<f64> {
    let c: Config = parse_config(v)?;
    let d = ctx.data;
    let shape = [d.shape[0], d.shape[1], d.shape[2]];
    let masks = [
        view_tensor(shape, 0, ctx.device)?,
        view_tensor(shape, 1, ctx.device)?,
    ];
    let (mut x, mut y) = gather_host(&d.pool, ctx.labelled);
    let mut in_set = vec![false; d.pool.len()];
    for &i in ctx.labelled {
        in_set[i] = true;
    }
    let mut nets: Vec<Net> = Vec::new();
    for round in 0..=c.rounds {
        nets.clear();
        for view in 0..2 {
            let net = Net::new(
                &ctx.cfg.model,
                &d.shape,
                d.classes,
                rng.next_u64(),
                ctx.device,
            )?;
            let aug = move |ex: &mut [f32], r: &mut Rng| {
                if c.augment {
                    augment::weak(ex, shape, r);
                }
                mask_view(ex, shape, view);
            };
            fit(&net, &x, &y, &d.shape, &ctx.cfg.fit, rng, Some(&aug))?;
            nets.push(net);
        }
        if round == c.rounds {
            break;
        }
        let mut cand: Vec<usize> = (0..d.pool.len()).filter(|&i| !in_set[i]).collect();
        rng.shuffle(&mut cand);
        if c.subset > 0 {
            cand.truncate(c.subset);
        }
        let (mut added, mut right) = (Vec::new(), 0usize);
        let mut new_y = Vec::new();
        for view in 0..2 {
            // (confidence, candidate position) per predicted class.
            let mut by_class: Vec<Vec<(f32, usize)>> = vec![Vec::new(); d.classes];
            for_batches(&d.pool, &cand, ctx.cfg.batch, ctx.device, |start, xb, _| {
                let xb = xb.broadcast_mul(&masks[view])?;
                let p = candle_nn::ops::softmax(&nets[view].forward(&xb, None)?, 1)?
                    .to_vec2::<f32>()?;
                for (j, row) in p.iter().enumerate() {
                    let (k, q) = row.iter().enumerate().fold((0, f32::MIN), |a, (k, &q)| {
                        if q > a.1 {
                            (k, q)
                        } else {
                            a
                        }
                    });
                    by_class[k].push((q, start + j));
                }
                Ok(())
            })?;
            for (k, list) in by_class.iter_mut().enumerate() {
                list.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                for &(_, j) in list.iter().take(c.per_class) {
                    let i = cand[j];
                    if !in_set[i] {
                        in_set[i] = true;
                        added.push(i);
                        new_y.push(k as u32);
                        // Diagnostics only.
                        right += (d.pool.label(i) == k as u32) as usize;
                    }
                }
            }
        }
        x.extend(gather_host(&d.pool, &added).0);
        y.extend(new_y);
        (ctx.log)(&format!(
            "round {}: {} examples added ({:.1}% correct), {} in the labelled set",
            round + 1,
            added.len(),
            100.0 * right as f64 / added.len().max(1) as f64,
            y.len()
        ));
    }
    ctx.test_accuracy(&|x: &Tensor| {
        let p0 = candle_nn::ops::softmax(&nets[0].forward(&x.broadcast_mul(&masks[0])?, None)?, 1)?;
        let p1 = candle_nn::ops::softmax(&nets[1].forward(&x.broadcast_mul(&masks[1])?, None)?, 1)?;
        Ok(p0.mul(&p1)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_views_partition_the_image() {
        let x: Vec<f32> = (0..2 * 5 * 3).map(|v| v as f32 + 1.0).collect();
        let (mut a, mut b) = (x.clone(), x.clone());
        mask_view(&mut a, [2, 5, 3], 0);
        mask_view(&mut b, [2, 5, 3], 1);
        for i in 0..x.len() {
            assert_eq!(a[i] + b[i], x[i], "each pixel in exactly one view");
        }
        // Rows 0-1 of each channel are the top view (5 / 2 = 2 rows).
        assert_eq!(a[0], 1.0);
        assert_eq!(a[6], 0.0);
        assert_eq!(b[6], 7.0);
    }
}
