//! Factor-out and the multi-scale architecture.
//!
//! Dinh, Sohl-Dickstein & Bengio 2016, "Density estimation using Real NVP",
//! arXiv:1605.08803, Sec. 3.6 ("Multi-scale architecture", its four displayed equations):
//!
//! ```text
//! h^(0) = x
//! (z^(i+1), h^(i+1)) = f^(i+1)(h^(i))        (a scale, then half factored out)
//! z^(L) = f^(L)(h^(L-1))
//! z = (z^(1), ..., z^(L))
//! ```
//!
//! Each scale squeezes (`[C, H, W] -> [4C, H/2, W/2]`), applies its flow steps, then (but
//! for the last scale) factors out half of the channels: they go straight to the
//! N(0, I) base density (RealNVP; Glow's learned prior for them is not implemented), the
//! other half continues at the next scale. Later scales therefore work on fewer
//! dimensions. Factoring out is a split of coordinates, log |det| = 0. The whole
//! architecture is a [`Transform`] `[B, C, H, W] -> [B, C H W]`: the factored-out parts
//! and the last scale's output, flattened and concatenated in that order.

use candle_core::Tensor;

use genlab_core::{Error, Result};

use super::{Assignments, Chain, Squeeze, Transform};

/// One scale: squeeze, flow steps, then factor out half of the channels unless it is the
/// last.
pub struct Scale {
    pub steps: Chain,
    /// The example shape after the squeeze (what the steps see).
    pub shape: [usize; 3],
    pub factor_out: bool,
}

pub struct MultiScale {
    scales: Vec<Scale>,
    /// The input example shape `[C, H, W]`.
    input: [usize; 3],
}

/// Splits `h [B, C, H, W]` into the kept first half and the factored-out second half of
/// the channels.
pub fn factor_out(h: &Tensor) -> Result<(Tensor, Tensor)> {
    let c = h.dim(1)?;
    if c % 2 != 0 {
        return Err(Error::InvalidInput(format!(
            "factor-out splits the channels in half, got {c}"
        )));
    }
    Ok((h.narrow(1, 0, c / 2)?, h.narrow(1, c / 2, c / 2)?))
}

/// The inverse of [`factor_out`].
pub fn factor_in(kept: &Tensor, out: &Tensor) -> Result<Tensor> {
    Ok(Tensor::cat(&[kept, out], 1)?)
}

impl MultiScale {
    /// `build(i, shape)` makes the steps of scale `i` for the squeezed shape `shape`.
    pub fn new(
        input: &[usize],
        scales: usize,
        mut build: impl FnMut(usize, [usize; 3]) -> Result<Chain>,
    ) -> Result<Self> {
        let [c, h, w] = match input {
            [c, h, w] => [*c, *h, *w],
            _ => {
                return Err(Error::Config(format!(
                    "the multi-scale flow is for images [C, H, W], got {input:?}"
                )))
            }
        };
        if scales == 0 {
            return Err(Error::Config("flow.scales must be at least 1".into()));
        }
        let f = 1usize << scales;
        if h % f != 0 || w % f != 0 {
            return Err(Error::Config(format!(
                "{scales} scales squeeze the image {scales} times and need sides divisible by \
                 {f}, got {h}x{w}"
            )));
        }
        let mut out = Vec::new();
        let mut shape = [c, h, w];
        for i in 0..scales {
            let sq = Squeeze::out_shape(&shape)?;
            let steps = build(i, sq)?;
            let last = i + 1 == scales;
            out.push(Scale {
                steps,
                shape: sq,
                factor_out: !last,
            });
            shape = if last { sq } else { [sq[0] / 2, sq[1], sq[2]] };
        }
        Ok(Self {
            scales: out,
            input: [c, h, w],
        })
    }

    fn run(&self, x: &Tensor, init: bool) -> Result<(Tensor, Tensor, Assignments)> {
        let b = x.dim(0)?;
        if x.dims()[1..] != self.input {
            return Err(Error::InvalidInput(format!(
                "the multi-scale flow was built for examples of shape {:?}, got {:?}",
                self.input,
                &x.dims()[1..]
            )));
        }
        let mut h = x.clone();
        let mut ld = super::zeros_b(x)?;
        let mut zs = Vec::new();
        let mut assigned = Vec::new();
        for s in &self.scales {
            h = Squeeze.forward(&h)?.0;
            if init {
                let (y, a) = s.steps.data_init(&h)?;
                h = y;
                assigned.extend(a);
            } else {
                let (y, l) = s.steps.forward(&h)?;
                h = y;
                ld = (ld + l)?;
            }
            if s.factor_out {
                let (kept, out) = factor_out(&h)?;
                zs.push(out.reshape((b, ()))?); // [B, C/2 H W] flattened
                h = kept;
            }
        }
        zs.push(h.reshape((b, ()))?);
        Ok((Tensor::cat(&zs, 1)?, ld, assigned))
    }
}

impl Transform for MultiScale {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (z, ld, _) = self.run(x, false)?;
        Ok((z, ld))
    }

    fn inverse(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dim(0)?;
        let d: usize = self.input.iter().product();
        if z.dims() != [b, d] {
            return Err(Error::InvalidInput(format!(
                "the multi-scale flow inverts z of shape [B, {d}], got {:?}",
                z.dims()
            )));
        }
        // Sizes of the factored-out parts, in order, then of the last scale's output.
        let mut offset = 0;
        let mut parts = Vec::new();
        for s in &self.scales {
            let [c, h, w] = s.shape;
            let (cc, n) = if s.factor_out {
                (c / 2, c / 2 * h * w)
            } else {
                (c, c * h * w)
            };
            parts.push(z.narrow(1, offset, n)?.reshape((b, cc, h, w))?);
            offset += n;
        }
        let mut h = parts.pop().expect("at least one scale");
        for s in self.scales.iter().rev() {
            if s.factor_out {
                h = factor_in(&h, &parts.pop().expect("one part per factored scale"))?;
            }
            h = s.steps.inverse(&h)?;
            h = Squeeze.inverse(&h)?;
        }
        Ok(h)
    }

    fn data_init(&self, x: &Tensor) -> Result<(Tensor, Assignments)> {
        let (z, _, a) = self.run(x, true)?;
        Ok((z, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;
    use crate::flow::{ActNorm, AffineCoupling, InvLinear, MaskKind};

    #[test]
    fn factor_out_and_in_are_inverse() {
        let h = randn64(1, &[2, 4, 2, 2], 1.0);
        let (a, b) = factor_out(&h).unwrap();
        assert_eq!(a.dims(), [2, 2, 2, 2]);
        assert!(max_abs_diff(&factor_in(&a, &b).unwrap(), &h) < 1e-15);
        assert!(factor_out(&randn64(1, &[2, 3, 2, 2], 1.0)).is_err());
    }

    #[test]
    fn multiscale_inverts_and_its_log_det_matches_the_jacobian() {
        let (ps, vb) = vb64(1);
        let ms = MultiScale::new(&[1, 4, 4], 2, |i, [c, h, w]| {
            let vb = vb.pp(format!("scale{i}"));
            Ok(Chain(vec![
                Box::new(ActNorm::new(c, vb.pp("an"))?),
                Box::new(InvLinear::new(c, vb.pp("mix"))?),
                Box::new(AffineCoupling::new(
                    &[c, h, w],
                    MaskKind::Channel,
                    i == 1,
                    &[4],
                    2.0,
                    i == 0, // the full conditioner at scale 0, the halved one at scale 1
                    vb.pp("cp"),
                )?),
            ]))
        })
        .unwrap();
        perturb(&ps, 3, 0.3);
        check_transform("multiscale", &ms, &randn64(2, &[2, 1, 4, 4], 1.0));
        let e = MultiScale::new(&[1, 6, 6], 2, |_, _| Ok(Chain(vec![])))
            .err()
            .unwrap();
        assert!(e.to_string().contains("divisible by 4"), "{e}");
    }
}
