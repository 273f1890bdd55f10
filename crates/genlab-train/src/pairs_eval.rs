//! Scoring images of the two-digit canvas (`mnist-pairs`, [`genlab_data::pairs`]) against
//! the digits their prompts asked for: each `[C, H, 2W]` image is cut into its left and
//! right `[C, H, W]` halves and each half is read by the project's MNIST classifier (a
//! `classifier` run, [`crate::registry::load_classifier`]), the way the text-to-image target
//! of latent diffusion is measured ("the classifier reads both the left and the right digit
//! as requested").
//!
//! The reported numbers are the fraction of images whose left half is read as requested,
//! the same for the right half, and the fraction with both right; per requested pair the
//! both-right counts, for a 10x10 table. The classifier's own accuracy bounds what can be
//! reached: on real test canvases it reads both halves right about as often as the square
//! of its single-digit accuracy.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use genlab_core::{Error, Result};
use genlab_nn::Classifier;

/// Images per classifier forward pass.
pub const EVAL_BATCH: usize = 500;

/// How well the two halves of generated canvases match the requested digits.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PairAccuracy {
    /// Images scored.
    pub n: usize,
    /// Fraction whose left half is read as the requested left digit.
    pub left: f64,
    /// Fraction whose right half is read as the requested right digit.
    pub right: f64,
    /// Fraction with both halves right.
    pub both: f64,
    /// Per requested pair `10 · left + right`: `(both right, requested)`.
    pub per_pair: Vec<(usize, usize)>,
}

impl PairAccuracy {
    /// The per-pair both-right rates as a Markdown table: rows the requested left digit,
    /// columns the right digit, percentages with no decimals (`-` where nothing was asked).
    pub fn table(&self) -> String {
        let mut s = String::from("| left \\ right |");
        for r in 0..10 {
            s.push_str(&format!(" {r} |"));
        }
        s.push_str("\n|---|");
        s.push_str(&"---|".repeat(10));
        for l in 0..10 {
            s.push_str(&format!("\n| {l} |"));
            for r in 0..10 {
                let (ok, n) = self.per_pair[10 * l + r];
                if n == 0 {
                    s.push_str(" - |");
                } else {
                    s.push_str(&format!(" {:.0} |", 100.0 * ok as f64 / n as f64));
                }
            }
        }
        s.push('\n');
        s
    }
}

/// `[N, C, H, 2W]` -> the left and right `[N, C, H, W]` halves (contiguous). An odd width
/// or a tensor that is not 4-D is an error.
pub fn split_halves(images: &Tensor) -> Result<(Tensor, Tensor)> {
    let dims = images.dims();
    if dims.len() != 4 || dims[3] % 2 == 1 || dims[3] == 0 {
        return Err(Error::InvalidInput(format!(
            "two-digit canvases must be [N, C, H, W] with an even width W, got {dims:?}"
        )));
    }
    let w = dims[3] / 2;
    Ok((
        images.narrow(3, 0, w)?.contiguous()?,
        images.narrow(3, w, w)?.contiguous()?,
    ))
}

/// Reads both halves of `images [N, C, H, 2W]` (values in `[0, 1]`) with `net` and compares
/// them with `requested` (`(left, right)` digits, one per image). The halves must be the
/// classifier's input size.
pub fn pair_accuracy(
    net: &Classifier,
    images: &Tensor,
    requested: &[(u8, u8)],
) -> Result<PairAccuracy> {
    let n = images.dims().first().copied().unwrap_or(0);
    if n == 0 || n != requested.len() {
        return Err(Error::InvalidInput(format!(
            "{n} images and {} requested pairs: expected the same non-zero number",
            requested.len()
        )));
    }
    if let Some((l, r)) = requested.iter().find(|(l, r)| *l > 9 || *r > 9) {
        return Err(Error::InvalidInput(format!(
            "requested digits must be 0..=9, got ({l}, {r})"
        )));
    }
    let (left, right) = split_halves(images)?;
    let [c, h, w] = net.config().input;
    if left.dims()[1..] != [c, h, w] {
        return Err(Error::InvalidInput(format!(
            "each half of the canvases is {:?}, the classifier reads [{c}, {h}, {w}] \
             (canvases must be [N, {c}, {h}, {}])",
            &left.dims()[1..],
            2 * w
        )));
    }
    let read = |x: &Tensor| -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(EVAL_BATCH) {
            let len = EVAL_BATCH.min(n - start);
            let xb = x
                .narrow(0, start, len)?
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?;
            out.extend(net.forward(&xb)?.detach().argmax(1)?.to_vec1::<u32>()?);
        }
        Ok(out)
    };
    let (pl, pr) = (read(&left)?, read(&right)?);
    let mut per_pair = vec![(0usize, 0usize); 100];
    let (mut nl, mut nr, mut nb) = (0usize, 0usize, 0usize);
    for (i, &(l, r)) in requested.iter().enumerate() {
        let (okl, okr) = (pl[i] == l as u32, pr[i] == r as u32);
        nl += okl as usize;
        nr += okr as usize;
        nb += (okl && okr) as usize;
        let cell = &mut per_pair[10 * l as usize + r as usize];
        cell.0 += (okl && okr) as usize;
        cell.1 += 1;
    }
    let f = |k: usize| k as f64 / n as f64;
    Ok(PairAccuracy {
        n,
        left: f(nl),
        right: f(nr),
        both: f(nb),
        per_pair,
    })
}

/// [`pair_accuracy`] with the classifier of the `classifier` run in `run` (e.g.
/// `runs/clf-mnist`).
pub fn pair_accuracy_run(
    run: &Path,
    images: &Tensor,
    requested: &[(u8, u8)],
) -> Result<PairAccuracy> {
    let (net, _) = crate::registry::load_classifier(run)?;
    pair_accuracy(&net, images, requested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_core::{ParamStore, Rng};
    use genlab_nn::ClassifierConfig;

    #[test]
    fn halves_are_the_left_and_right_columns() {
        let (n, c, h, w) = (3, 2, 4, 5);
        let v: Vec<f32> = (0..n * c * h * 2 * w).map(|i| i as f32).collect();
        let x = Tensor::from_vec(v.clone(), (n, c, h, 2 * w), &Device::Cpu).unwrap();
        let (l, r) = split_halves(&x).unwrap();
        assert_eq!(l.dims(), &[n, c, h, w]);
        let (lv, rv): (Vec<f32>, Vec<f32>) = (
            l.flatten_all().unwrap().to_vec1().unwrap(),
            r.flatten_all().unwrap().to_vec1().unwrap(),
        );
        for row in 0..n * c * h {
            for col in 0..w {
                assert_eq!(lv[row * w + col], v[row * 2 * w + col]);
                assert_eq!(rv[row * w + col], v[row * 2 * w + w + col]);
            }
        }
        let odd = Tensor::zeros((1, 1, 2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(split_halves(&odd).is_err());
        assert!(split_halves(&odd.flatten_all().unwrap()).is_err());
    }

    /// An untrained classifier's own reading of separate halves is the reference: a canvas
    /// made of two images must score exactly as its halves read alone.
    #[test]
    fn accuracy_counts_match_the_classifier_on_separate_halves() {
        let dev = Device::Cpu;
        let cfg = ClassifierConfig {
            input: [1, 12, 12],
            channels: [4, 4],
            features: 8,
            ..Default::default()
        };
        let ps = ParamStore::new(7, &dev);
        let net = Classifier::new(&cfg, ps.vb()).unwrap();
        let mut rng = Rng::new(2);
        let n = 40;
        let a = rng.uniform_tensor(0.0, 1.0, &[n, 1, 12, 12], &dev).unwrap();
        let b = rng.uniform_tensor(0.0, 1.0, &[n, 1, 12, 12], &dev).unwrap();
        let pa: Vec<u32> = net
            .forward(&a)
            .unwrap()
            .argmax(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let pb: Vec<u32> = net
            .forward(&b)
            .unwrap()
            .argmax(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let canvas = Tensor::cat(&[&a, &b], 3).unwrap();
        // Request the classifier's own reading, then spoil the left digit of every third
        // image and the right digit of every fifth.
        let req: Vec<(u8, u8)> = (0..n)
            .map(|i| {
                let l = if i % 3 == 0 { (pa[i] + 1) % 10 } else { pa[i] };
                let r = if i % 5 == 0 { (pb[i] + 1) % 10 } else { pb[i] };
                (l as u8, r as u8)
            })
            .collect();
        let acc = pair_accuracy(&net, &canvas, &req).unwrap();
        let left_ok = (0..n).filter(|i| i % 3 != 0).count();
        let right_ok = (0..n).filter(|i| i % 5 != 0).count();
        let both_ok = (0..n).filter(|i| i % 3 != 0 && i % 5 != 0).count();
        assert_eq!(acc.n, n);
        assert_eq!(acc.left, left_ok as f64 / n as f64);
        assert_eq!(acc.right, right_ok as f64 / n as f64);
        assert_eq!(acc.both, both_ok as f64 / n as f64);
        assert_eq!(acc.per_pair.iter().map(|c| c.1).sum::<usize>(), n);
        assert_eq!(acc.per_pair.iter().map(|c| c.0).sum::<usize>(), both_ok);
        let table = acc.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 12);
        assert_eq!(
            lines[0],
            "| left \\ right | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |"
        );
        let (l0, r0) = req[1];
        let cell = lines[2 + l0 as usize]
            .split('|')
            .nth(2 + r0 as usize)
            .unwrap()
            .trim();
        let (ok, n) = acc.per_pair[10 * l0 as usize + r0 as usize];
        assert_eq!(cell, format!("{:.0}", 100.0 * ok as f64 / n as f64));
        // Bad input: count mismatch, digit out of range, wrong canvas size.
        assert!(pair_accuracy(&net, &canvas, &req[..3]).is_err());
        let mut bad = req.clone();
        bad[0] = (10, 0);
        assert!(pair_accuracy(&net, &canvas, &bad).is_err());
        let err = pair_accuracy(&net, &a, &req).unwrap_err().to_string();
        assert!(err.contains("[N, 1, 12, 24]"), "{err}");
    }
}
