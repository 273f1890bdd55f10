//! Image maps: what an image-conditioned diffusion model sees of the image it generates.
//!
//! A map is computed from the full image (training, evaluation) and concatenated to the
//! network's input channels at every step, as in SR3 (Saharia et al. 2021, "Image
//! Super-Resolution via Iterative Refinement", arXiv:2104.07636, Sec. 2.4: the bicubic
//! upsampling of the low-resolution image is concatenated to x_t) and Palette (Saharia et
//! al. 2022, arXiv:2111.05826) for other image-to-image tasks. Two maps:
//!
//! - `low-res`: the image area-averaged down to `size x size` and upsampled back with
//!   bicubic convolution (PyTorch's a = -0.75), clamped to [0, 1]: the SR3 input, and the
//!   bicubic baseline a super-resolution model must beat;
//! - `edges`: the Sobel gradient magnitude (Sobel & Feldman 1968; the 3x3 kernels
//!   [1 2 1]^T [-1 0 1] and its transpose, divided by 4 so that a unit step scores 1, borders
//!   replicated) thresholded to a binary edge map.

use std::str::FromStr;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result};
use genlab_nn::resize::{area, bicubic, BICUBIC_A_TORCH};

/// Which image map a model is conditioned on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ImageMap {
    /// The image at `size x size` (area average), bicubic-upsampled back (SR3).
    LowRes { size: usize },
    /// Binary Sobel edges: gradient magnitude above `threshold` (a unit step scores 1).
    Edges {
        #[serde(default = "default_edge_threshold")]
        threshold: f64,
    },
}

/// Half a unit step: MNIST strokes rise from 0 to 1 over about two pixels, so their
/// outlines score about 1 and flat ink or background 0.
fn default_edge_threshold() -> f64 {
    0.5
}

impl FromStr for ImageMap {
    type Err = Error;

    /// `low-res:7`, `edges` or `edges:0.3`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::setting(
                "image_condition",
                format!(
                    "expected low-res:SIZE (e.g. low-res:7), edges or edges:THRESHOLD, got `{s}`"
                ),
            )
        };
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k.trim(), Some(a.trim())),
            None => (s.trim(), None),
        };
        match (kind, arg) {
            ("low-res", Some(a)) => Ok(Self::LowRes {
                size: a.parse().map_err(|_| bad())?,
            }),
            ("edges", None) => Ok(Self::Edges {
                threshold: default_edge_threshold(),
            }),
            ("edges", Some(a)) => Ok(Self::Edges {
                threshold: a.parse().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for ImageMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LowRes { size } => write!(f, "low-res:{size}"),
            Self::Edges { threshold } => write!(f, "edges:{threshold}"),
        }
    }
}

impl ImageMap {
    /// Errors unless the map applies to square images of side `side`.
    pub fn validate(&self, side: usize) -> Result<()> {
        match self {
            Self::LowRes { size } if *size == 0 || *size >= side || !side.is_multiple_of(*size) => {
                Err(Error::Config(format!(
                    "image_condition low-res:{size} needs a size that divides the image side \
                     {side} and is smaller than it (e.g. low-res:{})",
                    side / 4
                )))
            }
            Self::Edges { threshold } if !(*threshold > 0.0 && threshold.is_finite()) => {
                Err(Error::Config(format!(
                    "image_condition edges: the threshold must be positive, got {threshold}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The map of images `x` (`[B, C, H, W]` in [0, 1]): `[B, C, H, W]` in [0, 1], on `x`'s
    /// device.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let x = x.to_dtype(DType::F32)?;
        Ok(match self {
            Self::LowRes { size } => {
                let low = area(&x, (*size, *size))?;
                bicubic(&low, (h, w), BICUBIC_A_TORCH)?.clamp(0f32, 1f32)?
            }
            Self::Edges { threshold } => {
                // [B*C, 1, H+2, W+2]: every channel on its own, borders replicated.
                let p = x
                    .reshape((b * c, 1, h, w))?
                    .pad_with_same(2, 1, 1)?
                    .pad_with_same(3, 1, 1)?;
                let k: [f32; 18] = [
                    -1., 0., 1., -2., 0., 2., -1., 0., 1., // d/dx
                    -1., -2., -1., 0., 0., 0., 1., 2., 1., // d/dy
                ];
                let k =
                    Tensor::from_vec(k.to_vec(), (2, 1, 3, 3), x.device())?.affine(0.25, 0.0)?;
                // [B*C, 2, H, W] -> magnitude [B*C, 1, H, W]
                let g = p.conv2d(&k, 0, 1, 1, 1)?;
                let mag = g.sqr()?.sum_keepdim(1)?.sqrt()?;
                mag.ge(*threshold)?
                    .to_dtype(DType::F32)?
                    .reshape((b, c, h, w))?
            }
        })
    }

    /// What the map is, in words (for pictures and messages).
    pub fn describe(&self) -> String {
        match self {
            Self::LowRes { size } => format!("the image at {size}x{size}, bicubic-upsampled"),
            Self::Edges { .. } => "the image's Sobel edge map".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn img(h: usize, w: usize, f: impl Fn(usize, usize) -> f32) -> Tensor {
        let v: Vec<f32> = (0..h * w).map(|k| f(k / w, k % w)).collect();
        Tensor::from_vec(v, (1, 1, h, w), &Device::Cpu).unwrap()
    }

    #[test]
    fn edges_mark_exactly_the_columns_beside_a_step() {
        // Left half 0, right half 1: the central difference is nonzero only in the two
        // columns that straddle the step; the replicated borders make no edge.
        let x = img(6, 8, |_, j| if j >= 4 { 1.0 } else { 0.0 });
        let m = ImageMap::Edges { threshold: 0.5 }.apply(&x).unwrap();
        let v: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
        for i in 0..6 {
            for j in 0..8 {
                let want = if j == 3 || j == 4 { 1.0 } else { 0.0 };
                assert_eq!(v[i * 8 + j], want, "({i},{j})");
            }
        }
        // A step of 0.4 scores 0.4 < 0.5: no edges at all.
        let faint = img(6, 8, |_, j| if j >= 4 { 0.4 } else { 0.0 });
        let m = ImageMap::Edges { threshold: 0.5 }.apply(&faint).unwrap();
        assert_eq!(m.sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn low_res_keeps_constant_images_and_the_block_means() {
        let x = img(8, 8, |_, _| 0.3);
        let m = ImageMap::LowRes { size: 2 }.apply(&x).unwrap();
        assert_eq!(m.dims(), &[1, 1, 8, 8]);
        let v: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|p| (p - 0.3).abs() < 1e-6));
        // Area-downsampling the map again gives back the low-res image up to the bicubic
        // round trip: a top-half-bright image stays brighter on top.
        let x = img(8, 8, |i, _| if i < 4 { 1.0 } else { 0.0 });
        let m = ImageMap::LowRes { size: 2 }.apply(&x).unwrap();
        let v: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v[0] > 0.9 && v[63] < 0.1, "{} {}", v[0], v[63]);
    }

    #[test]
    fn names_parse_and_bad_settings_are_errors() {
        assert_eq!(
            "low-res:7".parse::<ImageMap>().unwrap(),
            ImageMap::LowRes { size: 7 }
        );
        assert_eq!(
            "edges".parse::<ImageMap>().unwrap(),
            ImageMap::Edges { threshold: 0.5 }
        );
        for bad in ["low-res", "low-res:x", "blur", "edges:q"] {
            let e = bad.parse::<ImageMap>().unwrap_err().to_string();
            assert!(e.contains("low-res:SIZE"), "{bad}: {e}");
        }
        assert!(ImageMap::LowRes { size: 7 }.validate(28).is_ok());
        let e = ImageMap::LowRes { size: 5 }
            .validate(28)
            .unwrap_err()
            .to_string();
        assert!(e.contains("divides"), "{e}");
        assert!(ImageMap::Edges { threshold: 0.0 }.validate(28).is_err());
        // Configs round-trip and refuse unknown keys.
        let m: ImageMap = serde_json::from_str(r#"{"kind":"low-res","size":7}"#).unwrap();
        assert_eq!(m.to_string(), "low-res:7");
        assert!(serde_json::from_str::<ImageMap>(r#"{"kind":"low-res","size":7,"x":1}"#).is_err());
    }
}
