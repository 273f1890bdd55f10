//! Per-frame digit identity: genlab's MNIST classifier on every frame of every clip, each
//! frame first put into MNIST's framing ([`super::mnist_norm`], LeCun et al. 1998).
//!
//! - *frame accuracy*: the fraction of all frames classified as the clip's requested digit;
//! - *persistence*: the fraction of clips whose frames all get the same class;
//! - *persistence at the requested digit*: the fraction of clips whose frames are all the
//!   requested digit.
//!
//! A frame without ink (no pixel at [`super::INK_THRESHOLD`]) has no digit: it counts as
//! wrong for the frame accuracy and breaks both persistences of its clip.

use candle_core::{Device, Tensor};
use genlab_core::{Error, Result};
use serde::Serialize;

use super::mnist_norm::{normalise, FIELD};
use super::Clips;
use crate::features::FeatureExtractor;

/// Frames classified per forward pass.
const BATCH: usize = 256;

/// The identity measures of a set of clips.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentityResult {
    /// Fraction of all frames recognised as the requested digit.
    pub frame_accuracy: f64,
    /// Fraction of clips whose frames all get one class.
    pub persistence: f64,
    /// Fraction of clips whose frames are all the requested digit.
    pub persistence_requested: f64,
    pub n_clips: usize,
    pub n_frames: usize,
    /// Frames with no ink (counted wrong).
    pub frames_without_ink: usize,
}

/// The measures from per-frame predictions (`None`: no ink) and the requested labels.
pub fn identity(preds: &[Vec<Option<u32>>], labels: &[u32]) -> Result<IdentityResult> {
    if preds.len() != labels.len() || preds.is_empty() {
        return Err(Error::InvalidInput(format!(
            "identity: {} clips of predictions for {} labels (expected the same, at least 1)",
            preds.len(),
            labels.len()
        )));
    }
    let (mut frames, mut right, mut blank, mut same, mut same_req) = (0, 0, 0, 0, 0);
    for (p, &want) in preds.iter().zip(labels) {
        frames += p.len();
        right += p.iter().filter(|&&c| c == Some(want)).count();
        blank += p.iter().filter(|c| c.is_none()).count();
        if let Some(&Some(first)) = p.first() {
            if p.iter().all(|&c| c == Some(first)) {
                same += 1;
                same_req += usize::from(first == want);
            }
        }
    }
    let n = preds.len() as f64;
    Ok(IdentityResult {
        frame_accuracy: right as f64 / frames.max(1) as f64,
        persistence: same as f64 / n,
        persistence_requested: same_req as f64 / n,
        n_clips: preds.len(),
        n_frames: frames,
        frames_without_ink: blank,
    })
}

/// The class `classifier` (an MNIST classifier taking `[B, 1, 28, 28]`) gives every frame of
/// every clip after MNIST framing; `None` for frames without ink.
pub fn classify_frames(
    clips: &Clips,
    classifier: &dyn FeatureExtractor,
) -> Result<Vec<Vec<Option<u32>>>> {
    let [n, nt, _, h, w] = clips.shape;
    let mut out = vec![vec![None; nt]; n];
    let mut pending: Vec<(usize, usize)> = Vec::new();
    let mut buf: Vec<f32> = Vec::new();
    let flush = |pending: &mut Vec<(usize, usize)>,
                 buf: &mut Vec<f32>,
                 out: &mut Vec<Vec<Option<u32>>>|
     -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let x = Tensor::from_vec(
            std::mem::take(buf),
            (pending.len(), 1, FIELD, FIELD),
            &Device::Cpu,
        )?;
        let probs = classifier.extract(&x)?.probs.ok_or_else(|| {
            Error::InvalidInput(format!(
                "the digit classifier {} has no class probabilities",
                classifier.id()
            ))
        })?;
        for (k, (i, t)) in pending.drain(..).enumerate() {
            let row = probs.row(k);
            let best = (0..row.len()).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            out[i][t] = Some(best as u32);
        }
        Ok(())
    };
    for i in 0..n {
        for t in 0..nt {
            if let Some(f) = normalise(&clips.grey_frame(i, t), h, w) {
                buf.extend_from_slice(&f);
                pending.push((i, t));
                if pending.len() == BATCH {
                    flush(&mut pending, &mut buf, &mut out)?;
                }
            }
        }
    }
    flush(&mut pending, &mut buf, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measures_count_frames_clips_and_blank_frames_by_hand() {
        let preds = vec![
            vec![Some(3), Some(3), Some(3)], // right, persistent
            vec![Some(5), Some(5), Some(5)], // wrong, persistent
            vec![Some(1), Some(7), Some(1)], // 2 of 3 right, not persistent
            vec![Some(2), None, Some(2)],    // blank frame: wrong, breaks persistence
        ];
        let r = identity(&preds, &[3, 4, 1, 2]).unwrap();
        assert_eq!((r.n_clips, r.n_frames, r.frames_without_ink), (4, 12, 1));
        assert!((r.frame_accuracy - 7.0 / 12.0).abs() < 1e-12);
        assert!((r.persistence - 0.5).abs() < 1e-12);
        assert!((r.persistence_requested - 0.25).abs() < 1e-12);
        assert!(identity(&preds, &[1]).is_err());
        let blank = identity(&[vec![None, None]], &[0]).unwrap();
        assert_eq!((blank.frame_accuracy, blank.persistence), (0.0, 0.0));
    }
}
