//! The video metrics of `genlab video-eval` on generated clips, beside the same measures on
//! real clips and on frame-shuffled real clips ([`genlab_metrics::video`]):
//! per-frame digit identity (an MNIST classifier run), billiard motion error, and an
//! FVD-style Frechet distance on a video-classifier run's features (a stand-in for FVD,
//! Unterthiner et al. 2018, arXiv:1812.01717).
//!
//! Sets: `real` holds 2n clips, split into A (the first n) and B (the next n). Identity and
//! motion are measured on the fake clips, on A, and on A with its frames shuffled. The
//! Frechet distances all take n clips against A: fake vs A, B vs A (the floor two real
//! samples of this size reach), B frame-shuffled vs A (what destroying the motion costs).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;

use genlab_core::{Error, Result, Rng};
use genlab_metrics::features::classifier::extract_all;
use genlab_metrics::features::video_classifier::VideoClassifierExtractor;
use genlab_metrics::features::FeatureExtractor;
use genlab_metrics::fid::{fid, FidResult};
use genlab_metrics::video::identity::{classify_frames, identity, IdentityResult};
use genlab_metrics::video::motion::{
    direction_sector, fit_clip, motion, MotionFitConfig, MotionResult,
};
use genlab_metrics::video::Clips;

/// Clips per forward pass of the video classifier.
const BATCH: usize = 200;

/// Clips and the digit each one should show.
#[derive(Debug, Clone)]
pub struct LabelledClips {
    pub clips: Clips,
    pub labels: Vec<u32>,
}

impl LabelledClips {
    pub fn new(clips: Clips, labels: Vec<u32>) -> Result<Self> {
        if labels.len() != clips.len() {
            return Err(Error::InvalidInput(format!(
                "{} clips but {} labels",
                clips.len(),
                labels.len()
            )));
        }
        Ok(Self { clips, labels })
    }

    /// Clips `start..start + n`.
    pub fn slice(&self, start: usize, n: usize) -> Result<Self> {
        let [total, t, c, h, w] = self.clips.shape;
        if start + n > total || n == 0 {
            return Err(Error::InvalidInput(format!(
                "clips {start}..{} asked of {total}",
                start + n
            )));
        }
        let per = t * c * h * w;
        Self::new(
            Clips::new(
                &[n, t, c, h, w],
                self.clips.data[start * per..(start + n) * per].to_vec(),
            )?,
            self.labels[start..start + n].to_vec(),
        )
    }

    /// The same clips, each with its frames in a random order (seeded).
    pub fn shuffled(&self, seed: u64) -> Result<Self> {
        let mut rng = Rng::derive(seed, "video-eval frame shuffle");
        let t = self.clips.frames();
        let clips = self.clips.permute_frames(|_| {
            let mut p: Vec<usize> = (0..t).collect();
            rng.shuffle(&mut p);
            p
        })?;
        Self::new(clips, self.labels.clone())
    }

    fn tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.clips.data.clone(),
            self.clips.shape.to_vec(),
            &Device::Cpu,
        )?)
    }
}

/// One measure on the fake clips and its two references.
#[derive(Debug, Clone, Serialize)]
pub struct WithReferences<T> {
    pub fake: T,
    pub real: T,
    pub shuffled_real: T,
}

/// The video classifier's own accuracy on the real clips A (digit against the labels,
/// direction against the billiard fit's initial velocity).
#[derive(Debug, Clone, Serialize)]
pub struct VideoClassifierCheck {
    pub digit_accuracy: f64,
    pub direction_accuracy: f64,
}

/// The Frechet distances on video-classifier features, each against real set A.
#[derive(Debug, Clone, Serialize)]
pub struct Frechet {
    pub features: String,
    pub fake_vs_real: FidResult,
    pub real_vs_real: FidResult,
    pub shuffled_real_vs_real: FidResult,
    pub classifier_on_real: VideoClassifierCheck,
}

#[derive(Debug, Clone, Serialize)]
pub struct VideoEvalReport {
    /// Clips per set (n).
    pub n: usize,
    pub digit_classifier: String,
    pub identity: WithReferences<IdentityResult>,
    pub motion: WithReferences<MotionResult>,
    pub frechet: Option<Frechet>,
    pub seconds: f64,
}

fn features(
    ex: &dyn FeatureExtractor,
    set: &LabelledClips,
) -> Result<genlab_metrics::FeatureMatrix> {
    Ok(extract_all(ex, &set.tensor()?, BATCH, &mut |_, _| {})?.features)
}

/// Digit and direction accuracy of the video classifier on `set`.
pub fn video_classifier_accuracy(
    ex: &VideoClassifierExtractor,
    set: &LabelledClips,
) -> Result<VideoClassifierCheck> {
    let x = set.tensor()?;
    let cfg = MotionFitConfig::default();
    let (mut right_d, mut right_r, mut with_dir) = (0usize, 0usize, 0usize);
    let mut start = 0;
    while start < set.clips.len() {
        let len = BATCH.min(set.clips.len() - start);
        let (d, r) = ex.predict(&x.narrow(0, start, len)?)?;
        let d = d.argmax(1)?.to_vec1::<u32>()?;
        let r = r.argmax(1)?.to_vec1::<u32>()?;
        for k in 0..len {
            let i = start + k;
            right_d += usize::from(d[k] == set.labels[i]);
            if let Some(m) = fit_clip(&set.clips, i, &cfg) {
                with_dir += 1;
                right_r += usize::from(r[k] == direction_sector(m.velocity()));
            }
        }
        start += len;
    }
    Ok(VideoClassifierCheck {
        digit_accuracy: right_d as f64 / set.clips.len() as f64,
        direction_accuracy: right_r as f64 / with_dir.max(1) as f64,
    })
}

/// See the module documentation. `real` must hold at least `2 n` clips and `fake` at
/// least `n`, all of one shape.
pub fn evaluate_video(
    fake: &LabelledClips,
    real: &LabelledClips,
    n: usize,
    digit_classifier: &dyn FeatureExtractor,
    video_features: Option<&VideoClassifierExtractor>,
    seed: u64,
) -> Result<VideoEvalReport> {
    let t0 = std::time::Instant::now();
    if fake.clips.shape[1..] != real.clips.shape[1..] {
        return Err(Error::InvalidInput(format!(
            "fake clips have shape [N, {:?}] but real clips [N, {:?}]",
            &fake.clips.shape[1..],
            &real.clips.shape[1..]
        )));
    }
    if fake.clips.len() < n || real.clips.len() < 2 * n || n < 2 {
        return Err(Error::InvalidInput(format!(
            "video-eval with n = {n} needs n >= 2, at least n fake clips (got {}) and 2n real \
             clips (got {})",
            fake.clips.len(),
            real.clips.len()
        )));
    }
    let fake = fake.slice(0, n)?;
    let a = real.slice(0, n)?;
    let b = real.slice(n, n)?;
    let a_shuf = a.shuffled(seed)?;
    let b_shuf = b.shuffled(seed.wrapping_add(1))?;

    let ident =
        |s: &LabelledClips| identity(&classify_frames(&s.clips, digit_classifier)?, &s.labels);
    let identity_r = WithReferences {
        fake: ident(&fake)?,
        real: ident(&a)?,
        shuffled_real: ident(&a_shuf)?,
    };
    let cfg = MotionFitConfig::default();
    let motion_r = WithReferences {
        fake: motion(&fake.clips, &cfg)?,
        real: motion(&a.clips, &cfg)?,
        shuffled_real: motion(&a_shuf.clips, &cfg)?,
    };
    let frechet = match video_features {
        None => None,
        Some(ex) => {
            let fa = features(ex, &a)?;
            Some(Frechet {
                features: ex.id(),
                fake_vs_real: fid(&fa, &features(ex, &fake)?)?,
                real_vs_real: fid(&fa, &features(ex, &b)?)?,
                shuffled_real_vs_real: fid(&fa, &features(ex, &b_shuf)?)?,
                classifier_on_real: video_classifier_accuracy(ex, &a)?,
            })
        }
    };
    Ok(VideoEvalReport {
        n,
        digit_classifier: digit_classifier.id(),
        identity: identity_r,
        motion: motion_r,
        frechet,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The first `n` clips of a dataset of clips `[T, C, H, W]` with their labels.
pub fn dataset_clips(ds: &dyn genlab_data::Dataset, n: usize) -> Result<LabelledClips> {
    let shape = ds.example_shape();
    if shape.len() != 4 {
        return Err(Error::InvalidInput(format!(
            "{} holds examples of shape {shape:?}, not clips [T, C, H, W]",
            ds.name()
        )));
    }
    let n = n.min(ds.len());
    let per: usize = shape.iter().product();
    let mut data = vec![0f32; n * per];
    let mut labels = Vec::with_capacity(n);
    for (i, chunk) in data.chunks_exact_mut(per).enumerate() {
        ds.write_example(i, chunk);
        labels.push(ds.label(i).ok_or_else(|| {
            Error::Data(format!("{} has no digit label for clip {i}", ds.name()))
        })?);
    }
    let mut full = vec![n];
    full.extend_from_slice(&shape);
    LabelledClips::new(Clips::new(&full, data)?, labels)
}

/// Generated clips from a `.npy` of shape `[N, T, C, H, W]` in [0, 1]; their labels from
/// `labels` (a `.npy` of N values) or else the `.labels.npy` `genlab sample` writes beside it.
pub fn read_fake_clips(path: &Path, labels: Option<&Path>) -> Result<LabelledClips> {
    let a = genlab_core::io::read_npy(path)?;
    if a.shape.len() != 5 {
        return Err(Error::InvalidInput(format!(
            "{}: shape {:?}, expected clips [N, T, C, H, W]",
            path.display(),
            a.shape
        )));
    }
    let lp = labels.map_or_else(|| crate::outputs::labels_path(path), Path::to_path_buf);
    if !lp.exists() {
        return Err(Error::InvalidInput(format!(
            "no labels for {}: expected {} (written by `genlab sample --class`) or --labels",
            path.display(),
            lp.display()
        )));
    }
    let l = genlab_core::io::read_npy(&lp)?;
    let labels = l
        .data
        .iter()
        .map(|&v| {
            if v >= 0.0 && v.fract() == 0.0 && v < u32::MAX as f32 {
                Ok(v as u32)
            } else {
                Err(Error::InvalidInput(format!(
                    "{}: label {v} is not a class index",
                    lp.display()
                )))
            }
        })
        .collect::<Result<Vec<u32>>>()?;
    LabelledClips::new(Clips::new(&a.shape, a.data)?, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clips_and_labels_are_read_and_mismatches_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.npy");
        genlab_core::io::write_npy(&p, &[2, 1, 1, 2, 2], &[0.5; 8]).unwrap();
        let e = read_fake_clips(&p, None).unwrap_err().to_string();
        assert!(e.contains("s.labels.npy"), "{e}");
        genlab_core::io::write_npy(&crate::outputs::labels_path(&p), &[2], &[3.0, 7.0]).unwrap();
        let c = read_fake_clips(&p, None).unwrap();
        assert_eq!(
            (c.labels.clone(), c.clips.shape),
            (vec![3, 7], [2, 1, 1, 2, 2])
        );
        let bad = dir.path().join("bad.npy");
        genlab_core::io::write_npy(&bad, &[2], &[3.5, 1.0]).unwrap();
        assert!(read_fake_clips(&p, Some(&bad)).is_err());
        genlab_core::io::write_npy(&bad, &[3], &[3.0, 1.0, 2.0]).unwrap();
        assert!(read_fake_clips(&p, Some(&bad)).is_err());
        let flat = dir.path().join("flat.npy");
        genlab_core::io::write_npy(&flat, &[2, 4], &[0.0; 8]).unwrap();
        assert!(read_fake_clips(&flat, None).is_err());
        // Shuffling keeps every frame of a clip and its label.
        let s = c.shuffled(1).unwrap();
        assert_eq!(s.labels, c.labels);
        assert!(c.slice(1, 2).is_err());
    }
}
