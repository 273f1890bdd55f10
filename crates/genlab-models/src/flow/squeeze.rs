//! Squeeze: trade spatial resolution for channels.
//!
//! Dinh, Sohl-Dickstein & Bengio 2016, "Density estimation using Real NVP",
//! arXiv:1605.08803, Sec. 3.6 (and Fig. 3, right): "for each channel, it divides the image
//! into subsquares of shape 2 x 2 x c, then reshapes them into subsquares of shape
//! 1 x 1 x 4c", `[B, C, H, W] -> [B, 4C, H/2, W/2]`. A permutation of the coordinates:
//! log |det| = 0. Channel `4c + 2i + j` of the output holds offset (i, j) of channel c.

use candle_core::Tensor;

use genlab_core::{Error, Result};

use super::{zeros_b, Transform};

pub struct Squeeze;

impl Squeeze {
    /// The output shape for an example of shape `[C, H, W]`, or a `Config` error for odd
    /// sides.
    pub fn out_shape(shape: &[usize]) -> Result<[usize; 3]> {
        match shape {
            [c, h, w] if h % 2 == 0 && w % 2 == 0 && *h > 0 && *w > 0 => Ok([4 * c, h / 2, w / 2]),
            _ => Err(Error::Config(format!(
                "squeeze needs images [C, H, W] with even H and W, got {shape:?} (the \
                 multi-scale flow needs sides divisible by 2^scales)"
            ))),
        }
    }
}

impl Transform for Squeeze {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, c, h, w) = x.dims4()?;
        Self::out_shape(&[c, h, w]).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let z = x
            .reshape((b, c, h / 2, 2, w / 2, 2))? // [B, C, H/2, i, W/2, j]
            .permute((0, 1, 3, 5, 2, 4))? // [B, C, i, j, H/2, W/2]
            .reshape((b, 4 * c, h / 2, w / 2))?;
        Ok((z, zeros_b(x)?))
    }

    fn inverse(&self, z: &Tensor) -> Result<Tensor> {
        let (b, c4, h, w) = z.dims4()?;
        if c4 % 4 != 0 {
            return Err(Error::InvalidInput(format!(
                "unsqueeze needs a multiple of 4 channels, got {c4}"
            )));
        }
        let c = c4 / 4;
        Ok(z.reshape((b, c, 2, 2, h, w))? // [B, C, i, j, H/2, W/2]
            .permute((0, 1, 4, 2, 5, 3))? // [B, C, H/2, i, W/2, j]
            .reshape((b, c, 2 * h, 2 * w))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;
    use candle_core::Device;

    #[test]
    fn squeeze_moves_each_2x2_block_into_channels_and_inverts() {
        // One 4x4 channel holding 0..16: output channel 2i + j at (r, s) holds pixel
        // (2r + i, 2s + j).
        let x = Tensor::arange(0f64, 16.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 4, 4))
            .unwrap();
        let (z, _) = Squeeze.forward(&x).unwrap();
        let zv: Vec<f64> = z.flatten_all().unwrap().to_vec1().unwrap();
        for ch in 0..4 {
            let (i, j) = (ch / 2, ch % 2);
            for r in 0..2 {
                for s in 0..2 {
                    let want = ((2 * r + i) * 4 + 2 * s + j) as f64;
                    assert_eq!(zv[ch * 4 + r * 2 + s], want);
                }
            }
        }
        check_transform("squeeze", &Squeeze, &randn64(1, &[2, 2, 2, 4], 1.0));
        assert!(Squeeze.forward(&randn64(1, &[1, 1, 3, 4], 1.0)).is_err());
    }
}
