//! Binary masks and conditioner networks shared by the coupling layers.
//!
//! Dinh, Sohl-Dickstein & Bengio 2016, "Density estimation using Real NVP",
//! arXiv:1605.08803, Sec. 3.3 (Eq. 9, the masked form of a coupling layer,
//! `y = b * x + (1 - b) * g(x; b * x)`) and Sec. 3.4 / Fig. 3 (the two kinds of mask):
//! - checkerboard: b = 1 where the sum of spatial coordinates is even (images), or on every
//!   other feature (points);
//! - channel-wise: b = 1 on the first half of the channels (images) or features (points),
//!   which needs an even count.
//!
//! b = 1 marks the conditioning (unchanged) part; `parity` swaps the roles, so that
//! alternating layers transform every dimension.
//!
//! [`CouplingNet`] is the conditioner m(b * x): an MLP on flattened points or a small CNN on
//! images (Glow's NN(): 3x3 conv, 1x1 conv, 3x3 conv, ReLU between; Kingma & Dhariwal 2018,
//! arXiv:1807.03039, Sec. 3.3 and Sec. 5), mapping `[B, ...shape]` to `k` values per
//! element, `[B, k, ...shape]`. Its last layer starts small (weights of std
//! `HEAD_GAIN / sqrt(fan_in)`, zero bias) so that every coupling starts near the identity
//! (Glow, Sec. 3.3: "zero initialization"); not exactly zero, because a zero last layer
//! passes no gradient to the layers before it on the first step.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result};
use genlab_nn::{Act, Conv, Mlp};

use super::constant;

/// Weight scale of a conditioner's last layer relative to the usual 1/sqrt(fan_in).
pub const HEAD_GAIN: f64 = 0.05;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MaskKind {
    /// Alternate elements (features for points, spatial positions for images).
    Checkerboard,
    /// The first vs the second half of the features / channels (needs an even count).
    Channel,
}

/// A fixed 0/1 mask over one example's shape (1 = conditioning part).
pub struct Mask {
    /// `[1, ...shape]`, in the dtype of the layer.
    pub b: Tensor,
    /// `1 - b`.
    pub not_b: Tensor,
}

impl Mask {
    /// The mask of `kind` for examples of `shape` (`[D]` or `[C, H, W]`), roles swapped if
    /// `parity`; `like` gives dtype and device.
    pub fn new(kind: MaskKind, shape: &[usize], parity: bool, like: &Tensor) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n < 2 {
            return Err(Error::Config(format!(
                "a coupling layer needs at least 2 dimensions to split, got shape {shape:?}"
            )));
        }
        let v: Vec<f64> = match (kind, shape) {
            (MaskKind::Checkerboard, [_]) => (0..n)
                .map(|d| ((d % 2 == 0) != parity) as u8 as f64)
                .collect(),
            (MaskKind::Checkerboard, [_, h, w]) => (0..n)
                .map(|i| {
                    let (y, x) = ((i / w) % h, i % w);
                    (((x + y) % 2 == 0) != parity) as u8 as f64
                })
                .collect(),
            (MaskKind::Channel, [c, rest @ ..]) => {
                if c % 2 != 0 {
                    return Err(Error::Config(format!(
                        "the channel mask splits the {} into halves and needs an even number, \
                         got {c} (shape {shape:?}); use mask = checkerboard",
                        if rest.is_empty() {
                            "features"
                        } else {
                            "channels"
                        }
                    )));
                }
                let per: usize = rest.iter().product();
                (0..n)
                    .map(|i| (((i / per) < c / 2) != parity) as u8 as f64)
                    .collect()
            }
            _ => {
                return Err(Error::Config(format!(
                    "coupling masks are for points [D] or images [C, H, W], got shape {shape:?}"
                )))
            }
        };
        let mut full = vec![1];
        full.extend(shape);
        let not: Vec<f64> = v.iter().map(|b| 1.0 - b).collect();
        Ok(Self {
            b: constant(v, &full, like)?,
            not_b: constant(not, &full, like)?,
        })
    }
}

/// The conditioner network of a coupling layer.
pub enum CouplingNet {
    /// Points `[B, D]`: an MLP `D -> hidden... -> k D`.
    Mlp { net: Mlp, d: usize, k: usize },
    /// Images `[B, C, H, W]`: 3x3 conv, 1x1 convs, 3x3 conv to `k C` channels.
    Cnn {
        convs: Vec<Conv>,
        c: usize,
        k: usize,
    },
    /// A channel-mask conditioner that reads only the conditioning half of the channels
    /// (features) and computes outputs only for the transformed half, zero on the other:
    /// `[B, 2h, ...] -> [B, k, 2h, ...]` through a net on `h` channels.
    Halves {
        net: Box<CouplingNet>,
        half: usize,
        /// Whether the conditioning half is the first one.
        cond_first: bool,
    },
}

impl CouplingNet {
    /// A conditioner for examples of `shape` with `k` outputs per element and these hidden
    /// widths (channels for images).
    pub fn new(shape: &[usize], hidden: &[usize], k: usize, vb: VarBuilder) -> Result<Self> {
        if hidden.is_empty() || hidden.contains(&0) {
            return Err(Error::Config(format!(
                "flow.hidden must list at least one positive width, got {hidden:?}"
            )));
        }
        match shape {
            [d] => {
                let mut sizes = vec![*d];
                sizes.extend(hidden);
                sizes.push(k * d);
                let last = sizes.len() - 2;
                // A zero bias for the head, created before the MLP so that it reuses it.
                vb.pp(format!("l{last}"))
                    .get_with_hints(k * d, "bias", Init::Const(0.0))?;
                let net = Mlp::with_small_head(&sizes, Act::Relu, HEAD_GAIN, vb)?;
                Ok(Self::Mlp { net, d: *d, k })
            }
            [c, _, _] => {
                let mut convs = Vec::new();
                let mut c_in = *c;
                for (i, &h) in hidden.iter().enumerate() {
                    let (ks, pad) = if i == 0 { (3, 1) } else { (1, 0) };
                    convs.push(Conv::new(c_in, h, ks, 1, pad, vb.pp(format!("conv{i}")))?);
                    c_in = h;
                }
                let last = vb.pp(format!("conv{}", hidden.len()));
                let std = HEAD_GAIN / ((c_in * 9) as f64).sqrt();
                last.get_with_hints(
                    (k * c, c_in, 3, 3),
                    "weight",
                    Init::Randn {
                        mean: 0.0,
                        stdev: std,
                    },
                )?;
                last.get_with_hints(k * c, "bias", Init::Const(0.0))?;
                convs.push(Conv::new(c_in, k * c, 3, 1, 1, last)?);
                Ok(Self::Cnn { convs, c: *c, k })
            }
            _ => Err(Error::Config(format!(
                "coupling networks take points [D] or images [C, H, W], got shape {shape:?}"
            ))),
        }
    }

    /// The conditioner of a coupling with this mask. With `narrow` and a channel mask it is
    /// [`CouplingNet::Halves`]: on the masked input `b * x` the full net's weights on the
    /// zeroed half multiply zeros and its outputs for the conditioning half are discarded,
    /// so dropping both gives the same family of functions for about a third fewer FLOPs
    /// (3x3 convs C -> 64 -> 64 -> kC: 11k multiply-adds per pixel at C = 4, 7.5k halved).
    pub fn for_mask(
        shape: &[usize],
        hidden: &[usize],
        k: usize,
        kind: MaskKind,
        parity: bool,
        narrow: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        if !(narrow && kind == MaskKind::Channel) {
            return Self::new(shape, hidden, k, vb);
        }
        let c = shape.first().copied().unwrap_or(0);
        if c < 2 || c % 2 != 0 {
            return Err(Error::Config(format!(
                "the channel mask splits the first dimension into halves and needs an even \
                 number, got shape {shape:?}"
            )));
        }
        let mut inner = shape.to_vec();
        inner[0] = c / 2;
        Ok(Self::Halves {
            net: Box::new(Self::new(&inner, hidden, k, vb)?),
            half: c / 2,
            // Mask::new: b = 1 on the first half unless `parity`.
            cond_first: !parity,
        })
    }

    /// A halved conditioner applied without masks: `x` split into its conditioning and
    /// transformed halves along dimension 1 and the net's outputs for the transformed half
    /// alone, `[B, k, h, ...]`; `None` for the other conditioners. Couplings use this to
    /// transform only the half that changes (RealNVP's Eq. 4-5 directly, instead of the
    /// masked Eq. 9 over all channels), which skips the mask products and the zero outputs.
    pub fn split(&self, x: &Tensor) -> Result<Option<HalfSplit>> {
        let Self::Halves {
            net,
            half,
            cond_first,
        } = self
        else {
            return Ok(None);
        };
        let (ca, tb) = if *cond_first { (0, *half) } else { (*half, 0) };
        let cond = x.narrow(1, ca, *half)?;
        let p = net.forward(&cond)?;
        Ok(Some(HalfSplit {
            cond,
            transformed: x.narrow(1, tb, *half)?,
            p,
            cond_first: *cond_first,
        }))
    }

    /// `[B, ...shape]` -> `[B, k, ...shape]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        Ok(match self {
            Self::Halves {
                net,
                half,
                cond_first,
            } => {
                let start = if *cond_first { 0 } else { *half };
                let p = net.forward(&x.narrow(1, start, *half)?)?; // [B, k, h, ...]
                let zero = p.zeros_like()?;
                if *cond_first {
                    Tensor::cat(&[&zero, &p], 2)?
                } else {
                    Tensor::cat(&[&p, &zero], 2)?
                }
            }
            Self::Mlp { net, d, k } => net.forward(&x.reshape((b, *d))?)?.reshape((b, *k, *d))?,
            Self::Cnn { convs, c, k } => {
                let (_, _, h, w) = x.dims4()?;
                let mut y = x.clone();
                for (i, conv) in convs.iter().enumerate() {
                    y = conv.forward(&y)?;
                    if i + 1 < convs.len() {
                        y = genlab_nn::relu(&y)?;
                    }
                }
                y.reshape((b, *k, *c, h, w))? // [B, k C, H, W] -> [B, k, C, H, W]
            }
        })
    }
}

/// Parameter `i` of `k` from a conditioner output `[B, k, ...]`: `[B, ...]`.
/// An input split by a halved conditioner ([`CouplingNet::split`]).
pub struct HalfSplit {
    /// The conditioning half (passed through unchanged) and the transformed half,
    /// `[B, h, ...]` each.
    pub cond: Tensor,
    pub transformed: Tensor,
    /// The conditioner's outputs for the transformed half, `[B, k, h, ...]`.
    pub p: Tensor,
    cond_first: bool,
}

impl HalfSplit {
    /// The whole example again, with `new` in place of the transformed half.
    pub fn join(&self, new: &Tensor) -> Result<Tensor> {
        let parts = if self.cond_first {
            [&self.cond, new]
        } else {
            [new, &self.cond]
        };
        Ok(Tensor::cat(&parts, 1)?)
    }
}

pub(crate) fn param(p: &Tensor, i: usize) -> Result<Tensor> {
    Ok(p.narrow(1, i, 1)?.squeeze(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn ones(m: &Mask) -> Vec<f64> {
        m.b.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn masks_match_realnvp_figure_3() {
        let like = Tensor::zeros(1, DType::F64, &Device::Cpu).unwrap();
        let m = Mask::new(MaskKind::Checkerboard, &[1, 2, 3], false, &like).unwrap();
        assert_eq!(ones(&m), [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        let m = Mask::new(MaskKind::Channel, &[4, 1, 1], true, &like).unwrap();
        assert_eq!(ones(&m), [0.0, 0.0, 1.0, 1.0]);
        let m = Mask::new(MaskKind::Checkerboard, &[3], true, &like).unwrap();
        assert_eq!(ones(&m), [0.0, 1.0, 0.0]);
        let nb: Vec<f64> = m.not_b.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(nb, [1.0, 0.0, 1.0]);
    }

    #[test]
    fn an_odd_feature_count_is_a_config_error_for_the_channel_mask() {
        let like = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
        let e = Mask::new(MaskKind::Channel, &[3], false, &like)
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::Config(_)) && e.to_string().contains("even"),
            "{e}"
        );
        let e = Mask::new(MaskKind::Channel, &[1, 4, 4], false, &like)
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("channels") && e.to_string().contains("got 1"),
            "{e}"
        );
        let e = Mask::new(MaskKind::Checkerboard, &[1], false, &like)
            .err()
            .unwrap();
        assert!(e.to_string().contains("at least 2"), "{e}");
    }

    /// Exact equality of the halved conditioner and the full one on the masked input: the
    /// full net's weights are sliced into the halved one, and both run in f64.
    const HALVES_TOL: f64 = 1e-12;

    #[test]
    fn the_halved_conditioner_is_the_full_one_without_its_dead_weights() {
        use crate::flow::testing::{perturb, randn64, vb64};
        let (k, hidden) = (2, [6, 5]); // widths unlike c, c/2, k c and k c/2
        for shape in [vec![4usize], vec![4, 3, 3]] {
            for parity in [false, true] {
                let (pf, vb) = vb64(1);
                let full = CouplingNet::new(&shape, &hidden, k, vb).unwrap();
                perturb(&pf, 3, 0.5);
                let (ph, vb) = vb64(2);
                let halves =
                    CouplingNet::for_mask(&shape, &hidden, k, MaskKind::Channel, parity, true, vb)
                        .unwrap();
                let (c, h) = (shape[0], shape[0] / 2);
                let (cond, tr) = if parity { (h, 0) } else { (0, h) };
                let w = pf.tensors();
                for (name, v) in ph.vars() {
                    let f = &w[&name];
                    let t = if v.dims() == f.dims() {
                        f.clone()
                    } else if v.dims()[0] == f.dims()[0] {
                        f.narrow(1, cond, h).unwrap() // first layer: conditioning inputs
                    } else {
                        // Last layer: outputs are [k, C] flattened; keep the transformed C.
                        let mut kc = vec![k, c];
                        kc.extend(&f.dims()[1..]);
                        let mut kh = vec![k * h];
                        kh.extend(&f.dims()[1..]);
                        f.reshape(kc)
                            .unwrap()
                            .narrow(1, tr, h)
                            .unwrap()
                            .reshape(kh)
                            .unwrap()
                    };
                    v.set(&t.copy().unwrap()).unwrap(); // f64, as vb64 made them
                }
                let mut xs = vec![3];
                xs.extend(&shape);
                let like = Tensor::zeros(1, DType::F64, &Device::Cpu).unwrap();
                let m = Mask::new(MaskKind::Channel, &shape, parity, &like).unwrap();
                let x = randn64(5, &xs, 1.0).broadcast_mul(&m.b).unwrap();
                let a = full.forward(&x).unwrap();
                let b = halves.forward(&x).unwrap();
                assert_eq!(a.dims(), b.dims());
                let flat = |t: Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
                let (at, bt) = (
                    flat(a.narrow(2, tr, h).unwrap()),
                    flat(b.narrow(2, tr, h).unwrap()),
                );
                for (u, v) in at.iter().zip(&bt) {
                    assert!((u - v).abs() < HALVES_TOL, "{shape:?} {parity}: {u} vs {v}");
                }
                assert!(flat(b.narrow(2, cond, h).unwrap())
                    .iter()
                    .all(|v| *v == 0.0));
                // Fewer weights: the first layer's inputs and the last layer's outputs halve.
                assert!(ph.num_params() < pf.num_params());
            }
        }
    }

    /// `split` (what the couplings use) is `forward` without the zero half: the same
    /// conditioner outputs for the transformed half, and `join` puts the halves back.
    #[test]
    fn split_is_the_halved_forward_on_the_transformed_half() {
        use crate::flow::testing::{perturb, randn64, vb64};
        for shape in [vec![4usize], vec![4, 3, 3]] {
            for parity in [false, true] {
                let (ps, vb) = vb64(1);
                let net =
                    CouplingNet::for_mask(&shape, &[5], 2, MaskKind::Channel, parity, true, vb)
                        .unwrap();
                perturb(&ps, 3, 0.5);
                let mut xs = vec![3];
                xs.extend(&shape);
                let x = randn64(4, &xs, 1.0);
                let h = net.split(&x).unwrap().expect("a halved conditioner splits");
                let (cond, tr) = if parity { (2, 0) } else { (0, 2) };
                let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
                assert_eq!(flat(&h.cond), flat(&x.narrow(1, cond, 2).unwrap()));
                assert_eq!(flat(&h.transformed), flat(&x.narrow(1, tr, 2).unwrap()));
                let full = net.forward(&x).unwrap();
                assert_eq!(flat(&h.p), flat(&full.narrow(2, tr, 2).unwrap()));
                assert_eq!(flat(&h.join(&h.transformed).unwrap()), flat(&x));
                // Other conditioners do not split.
                let (_, vb) = vb64(1);
                let plain = CouplingNet::new(&shape, &[5], 2, vb).unwrap();
                assert!(plain.split(&x).unwrap().is_none());
            }
        }
    }
}
