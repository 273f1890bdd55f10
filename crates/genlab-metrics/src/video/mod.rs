//! Video metrics for generated clips of moving digits (Moving MNIST), where no I3D weights
//! exist: they stand in for FVD's "does it look right and move right".
//!
//! | measure | module | what it asks |
//! |---|---|---|
//! | per-frame digit identity | [`identity`] | is every frame the requested digit, and the same digit all clip long? |
//! | MNIST normalisation | [`mnist_norm`] | LeCun et al. 1998's crop / 20x20 / centre-of-mass framing of a frame |
//! | motion fidelity | [`motion`] | does the ink move like a billiard ball (constant velocity, bounces)? |
//! | FVD-style Frechet distance | [`crate::fid`] on [`crate::features::video_classifier`] features | do the clips' features match real clips'? |
//!
//! Clips are `[N, T, C, H, W]` f32 in [0, 1] ([`Clips`]); colour frames are turned grey by
//! the channel mean. A pixel is *ink* when its grey value is at least [`INK_THRESHOLD`];
//! a frame without ink has no digit (the identity measures count it wrong, the motion fit
//! skips the clip).

pub mod identity;
pub mod mnist_norm;
pub mod motion;

use genlab_core::{Error, Result};

/// Grey level from which a pixel counts as ink. Moving MNIST's background is exactly 0 and
/// its strokes reach 1; 0.1 keeps the faint anti-aliased rim of a stroke out of the
/// bounding box, and the low-level noise a generator leaves on the background out of the
/// centre of mass.
pub const INK_THRESHOLD: f32 = 0.1;

/// A batch of clips, `[N, T, C, H, W]` row-major f32 in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Clips {
    pub shape: [usize; 5],
    pub data: Vec<f32>,
}

impl Clips {
    /// Checks that `data` holds `shape`'s values, that no dimension is 0, and that every
    /// value is finite.
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let shape: [usize; 5] = shape.try_into().map_err(|_| {
            Error::InvalidInput(format!(
                "clips must have shape [N, T, C, H, W], got {shape:?}"
            ))
        })?;
        if shape.contains(&0) {
            return Err(Error::InvalidInput(format!(
                "clips of shape {shape:?}: every dimension must be at least 1"
            )));
        }
        if shape[2] != 1 && shape[2] != 3 {
            return Err(Error::InvalidInput(format!(
                "clips of shape {shape:?}: frames must have 1 or 3 channels, got {}",
                shape[2]
            )));
        }
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::InvalidInput(format!(
                "clips of shape {shape:?} hold {n} values, got {}",
                data.len()
            )));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "clips: value {i} is {} (expected finite values in [0, 1])",
                data[i]
            )));
        }
        Ok(Self { shape, data })
    }

    pub fn len(&self) -> usize {
        self.shape[0]
    }

    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    pub fn frames(&self) -> usize {
        self.shape[1]
    }

    /// `(H, W)` of a frame.
    pub fn frame_size(&self) -> (usize, usize) {
        (self.shape[3], self.shape[4])
    }

    /// Frame `t` of clip `i` in grey (the channel mean), `H * W` row-major.
    pub fn grey_frame(&self, i: usize, t: usize) -> Vec<f32> {
        let [_, nt, c, h, w] = self.shape;
        let per = h * w;
        let start = (i * nt + t) * c * per;
        let mut out = self.data[start..start + per].to_vec();
        for ch in 1..c {
            let s = start + ch * per;
            for (o, v) in out.iter_mut().zip(&self.data[s..s + per]) {
                *o += v;
            }
        }
        if c > 1 {
            out.iter_mut().for_each(|v| *v /= c as f32);
        }
        out
    }

    /// The same clips with the frames of clip `i` reordered by `order(i)` (a permutation of
    /// `0..T`): the frame-shuffled baseline.
    pub fn permute_frames(&self, mut order: impl FnMut(usize) -> Vec<usize>) -> Result<Self> {
        let [n, nt, c, h, w] = self.shape;
        let per = c * h * w;
        let mut data = Vec::with_capacity(self.data.len());
        for i in 0..n {
            let p = order(i);
            let mut seen = vec![false; nt];
            if p.len() != nt
                || p.iter()
                    .any(|&t| t >= nt || std::mem::replace(&mut seen[t], true))
            {
                return Err(Error::InvalidInput(format!(
                    "frame order {p:?} for clip {i} is not a permutation of 0..{nt}"
                )));
            }
            for t in p {
                let s = (i * nt + t) * per;
                data.extend_from_slice(&self.data[s..s + per]);
            }
        }
        Ok(Self {
            shape: self.shape,
            data,
        })
    }
}

/// Ink statistics of one grey frame: where its centre of mass and bounding box are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ink {
    /// Centre of mass `(row, col)` in pixel-centre coordinates (pixel `(r, c)` is at
    /// `(r, c)`), weighted by the grey value of the ink pixels.
    pub com: [f64; 2],
    /// Inclusive bounding box of the ink: `[row_min, col_min]` and `[row_max, col_max]`.
    pub min: [usize; 2],
    pub max: [usize; 2],
    /// Sum of the ink pixels' grey values.
    pub mass: f64,
}

/// The ink of a grey `h x w` frame, `None` when no pixel reaches [`INK_THRESHOLD`].
pub fn ink(frame: &[f32], h: usize, w: usize) -> Option<Ink> {
    let (mut m, mut sr, mut sc) = (0.0f64, 0.0f64, 0.0f64);
    let (mut min, mut max) = ([usize::MAX; 2], [0usize; 2]);
    for r in 0..h {
        for c in 0..w {
            let v = frame[r * w + c];
            if v >= INK_THRESHOLD {
                let v = v as f64;
                m += v;
                sr += v * r as f64;
                sc += v * c as f64;
                min = [min[0].min(r), min[1].min(c)];
                max = [max[0].max(r), max[1].max(c)];
            }
        }
    }
    (m > 0.0).then(|| Ink {
        com: [sr / m, sc / m],
        min,
        max,
        mass: m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ink_finds_the_centre_of_mass_and_box_and_ignores_faint_pixels() {
        let (h, w) = (5, 6);
        let mut f = vec![0.05f32; h * w]; // background noise below the threshold
        f[w + 1] = 1.0;
        f[3 * w + 4] = 0.5;
        let k = ink(&f, h, w).unwrap();
        // Brute force: (1*(1,1) + 0.5*(3,4)) / 1.5.
        assert!((k.com[0] - 2.5 / 1.5).abs() < 1e-12 && (k.com[1] - 3.0 / 1.5).abs() < 1e-12);
        assert_eq!((k.min, k.max, k.mass), ([1, 1], [3, 4], 1.5));
        assert!(ink(&vec![0.0; h * w], h, w).is_none());
    }

    #[test]
    fn clips_check_their_shape_and_grey_and_permute_frames() {
        assert!(Clips::new(&[1, 2, 1, 2], vec![0.0; 4]).is_err());
        assert!(Clips::new(&[1, 2, 2, 2, 2], vec![0.0; 16]).is_err());
        assert!(Clips::new(&[1, 2, 1, 2, 2], vec![0.0; 7]).is_err());
        assert!(Clips::new(&[1, 1, 1, 1, 1], vec![f32::NAN]).is_err());
        // 1 clip, 2 frames, RGB 1x2: grey is the channel mean.
        let data = vec![0.0, 0.3, 0.3, 0.6, 0.6, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let c = Clips::new(&[1, 2, 3, 1, 2], data).unwrap();
        let g = c.grey_frame(0, 0);
        assert!((g[0] - 0.3).abs() < 1e-6 && (g[1] - 0.3).abs() < 1e-6);
        assert_eq!(c.grey_frame(0, 1), vec![1.0, 1.0]);
        let p = c.permute_frames(|_| vec![1, 0]).unwrap();
        assert_eq!(p.grey_frame(0, 0), vec![1.0, 1.0]);
        assert!(c.permute_frames(|_| vec![0, 0]).is_err());
    }
}
