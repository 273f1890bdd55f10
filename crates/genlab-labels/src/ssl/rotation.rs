//! Rotation prediction (Gidaris, Singh & Komodakis 2018, "Unsupervised Representation
//! Learning by Predicting Image Rotations", arXiv:1803.07728): every image turned by 0, 90,
//! 180 and 270 degrees, and a linear head on the encoder's features predicts which. The
//! four rotations of each image share a batch (the paper's section 2.2 finding).

use candle_core::Tensor;
use genlab_core::{Error, Result, Rng};
use genlab_nn::classifier::cross_entropy;
use genlab_nn::{Classifier, Linear};
use serde::{Deserialize, Serialize};

use super::{parse_config, Method, MethodEntry, Spec};

pub const ENTRY: MethodEntry = MethodEntry {
    name: "rotation",
    paper: "Gidaris, Singh & Komodakis 2018, arXiv:1803.07728",
    description: "predict which of four rotations an image was turned by",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build,
};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {}

/// Turns a square `[C, S, S]` image by `quarter` quarter turns counter-clockwise.
pub fn rotate(x: &[f32], shape: [usize; 3], quarter: usize) -> Vec<f32> {
    let [c, s, _] = shape;
    let mut out = vec![0f32; x.len()];
    for ch in 0..c {
        for i in 0..s {
            for j in 0..s {
                // Source pixel of output (i, j) after `quarter` counter-clockwise turns.
                let (si, sj) = match quarter % 4 {
                    0 => (i, j),
                    1 => (j, s - 1 - i),
                    2 => (s - 1 - i, s - 1 - j),
                    _ => (s - 1 - j, i),
                };
                out[ch * s * s + i * s + j] = x[ch * s * s + si * s + sj];
            }
        }
    }
    out
}

struct Rotation<'a> {
    enc: &'a Classifier,
    head: Linear,
    shape: [usize; 3],
    device: candle_core::Device,
}

fn build<'a>(s: &Spec<'a>) -> Result<Box<dyn Method + 'a>> {
    let _: Config = parse_config(s.config)?;
    if s.shape[1] != s.shape[2] {
        return Err(Error::InvalidInput(format!(
            "rotation needs square images, got {}x{}",
            s.shape[1], s.shape[2]
        )));
    }
    let head = Linear::new(
        s.encoder.config().features,
        4,
        s.params.vb().pp("rotation_head"),
    )?;
    Ok(Box::new(Rotation {
        enc: s.encoder,
        head,
        shape: s.shape,
        device: s.device.clone(),
    }))
}

impl Method for Rotation<'_> {
    fn loss(&self, x: &[f32], b: usize, _: &mut Rng) -> Result<Tensor> {
        let d: usize = self.shape.iter().product();
        let mut all = Vec::with_capacity(4 * x.len());
        let mut y = Vec::with_capacity(4 * b);
        for ex in x.chunks_exact(d) {
            for q in 0..4 {
                all.extend(rotate(ex, self.shape, q));
                y.push(q as u32);
            }
        }
        let [c, h, w] = self.shape;
        let t = Tensor::from_vec(all, (4 * b, c, h, w), &self.device)?;
        let yt = Tensor::from_vec(y, 4 * b, &self.device)?;
        let logits = self.head.forward(&self.enc.features(&t)?)?;
        Ok(cross_entropy(&logits, &yt)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_turns_match_by_hand_and_four_are_the_identity() {
        // 1 2      2 4
        // 3 4  ->  1 3   (one counter-clockwise quarter turn)
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(rotate(&x, [1, 2, 2], 1), vec![2.0, 4.0, 1.0, 3.0]);
        assert_eq!(rotate(&x, [1, 2, 2], 2), vec![4.0, 3.0, 2.0, 1.0]);
        let v: Vec<f32> = (0..18).map(|i| i as f32).collect();
        let mut r = v.clone();
        for _ in 0..4 {
            r = rotate(&r, [2, 3, 3], 1);
        }
        assert_eq!(r, v);
    }
}
