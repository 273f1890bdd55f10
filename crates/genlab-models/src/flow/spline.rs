//! Rational-quadratic spline coupling layer.
//!
//! Durkan, Bekasov, Murray & Papamakarios 2019, "Neural Spline Flows", arXiv:1906.04032,
//! Sec. 3.1 (after Gregory & Delbourgo 1982). A monotonic spline on [-B, B] with K bins,
//! knots (x^k, y^k), k = 0..K, and positive derivatives delta^k at the knots (1 at the two
//! ends, so that it joins the identity used outside [-B, B]: "linear tails"). In bin k,
//! with xi = (x - x^k) / w^k in [0, 1], w^k = x^{k+1} - x^k, h^k = y^{k+1} - y^k and
//! s^k = h^k / w^k:
//!
//! ```text
//! g(x) = y^k + h^k [s^k xi^2 + delta^k xi (1 - xi)]
//!              / [s^k + (delta^{k+1} + delta^k - 2 s^k) xi (1 - xi)]           (Sec. 3.1)
//! g'(x) = (s^k)^2 [delta^{k+1} xi^2 + 2 s^k xi (1 - xi) + delta^k (1 - xi)^2]
//!              / [s^k + (delta^{k+1} + delta^k - 2 s^k) xi (1 - xi)]^2         (App. A)
//! ```
//!
//! The inverse solves the quadratic a xi^2 + b xi + c = 0 for xi (App. A):
//!
//! ```text
//! a = h^k (s^k - delta^k) + (y - y^k)(delta^{k+1} + delta^k - 2 s^k)
//! b = h^k delta^k - (y - y^k)(delta^{k+1} + delta^k - 2 s^k)
//! c = -s^k (y - y^k),     xi = 2c / (-b - sqrt(b^2 - 4ac))
//! ```
//!
//! Parameters per element (Sec. 3.1): K unnormalised widths and heights (softmax, plus a
//! minimum of 1e-3 of the interval each, as in the authors' code) and K - 1 unnormalised
//! interior derivatives (softplus, minimum 1e-3). The derivative offset makes raw zeros
//! give delta = 1, so a small conditioner output starts every spline near the identity.
//! In a coupling layer (Sec. 3.3) the conditioner sees the masked input; both directions
//! cost one conditioner evaluation.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use genlab_core::{Error, Result};
use genlab_nn::softplus;

use super::{sum_per_example, CouplingNet, Mask, MaskKind, Transform};

/// Smallest bin width, as a fraction of the interval (the authors' default).
pub const MIN_BIN_WIDTH: f64 = 1e-3;
/// Smallest bin height, as a fraction of the interval.
pub const MIN_BIN_HEIGHT: f64 = 1e-3;
/// Smallest knot derivative.
pub const MIN_DERIVATIVE: f64 = 1e-3;

/// Number of conditioner outputs per element for K bins: K widths, K heights, K - 1
/// interior derivatives.
pub fn params_per_element(bins: usize) -> usize {
    3 * bins - 1
}

/// Sum over the bin axis (dim 1) of `t * onehot`: the value of the selected bin.
fn pick(t: &Tensor, onehot: &Tensor) -> Result<Tensor> {
    Ok((t * onehot)?.sum(1)?)
}

/// Normalised bin sizes: `[B, K, ...]`, summing to `2 * bound` along dim 1.
fn bin_sizes(raw: &Tensor, min: f64, bound: f64) -> Result<Tensor> {
    let k = raw.dim(1)?;
    let sm = candle_nn::ops::softmax(raw, 1)?;
    Ok(sm.affine((1.0 - min * k as f64) * 2.0 * bound, min * 2.0 * bound)?)
}

/// Left knot positions `-bound + cumsum(sizes) - sizes` `[B, K, ...]`.
fn left_knots(sizes: &Tensor, bound: f64) -> Result<Tensor> {
    // cumsum along dim 1, moved last and made contiguous (candle's cumsum is a matmul that
    // needs a contiguous operand): [B, K, ...] -> [B, ..., K] -> back.
    let r = sizes.rank();
    let cum = if r == 2 {
        sizes.contiguous()?.cumsum(1)?
    } else {
        sizes
            .transpose(1, r - 1)?
            .contiguous()?
            .cumsum(r - 1)?
            .transpose(1, r - 1)?
    };
    Ok(((cum - sizes)? - bound)?)
}

/// One-hot bin membership `[B, K, ...]` of `v [B, ...]` given left knots (no gradient).
fn bins_of(v: &Tensor, left: &Tensor) -> Result<Tensor> {
    let k = left.dim(1)?;
    // c_j = [v >= left_j]: 1 for every bin up to v's; onehot_j = c_j - c_{j+1}.
    let c = v
        .detach()
        .unsqueeze(1)?
        .broadcast_ge(&left.detach())?
        .to_dtype(v.dtype())?;
    let next = Tensor::cat(
        &[&c.narrow(1, 1, k - 1)?, &c.narrow(1, 0, 1)?.zeros_like()?],
        1,
    )?;
    Ok((c - next)?)
}

/// The elementwise spline: `x [B, ...]` with parameters `p [B, 3K - 1, ...]` ->
/// `(y, log g'(x))` (forward) or `(x, -log g'(x))` with `inverse` (the log-derivative of
/// the map applied). Identity outside [-bound, bound].
pub fn rq_spline(x: &Tensor, p: &Tensor, bound: f64, inverse: bool) -> Result<(Tensor, Tensor)> {
    let np = p.dim(1)?;
    if np < 5 || (np + 1) % 3 != 0 {
        return Err(Error::InvalidInput(format!(
            "rational-quadratic spline: {np} parameters per element is not 3K - 1 for K >= 2"
        )));
    }
    let k = (np + 1) / 3;
    let w = bin_sizes(&p.narrow(1, 0, k)?, MIN_BIN_WIDTH, bound)?;
    let h = bin_sizes(&p.narrow(1, k, k)?, MIN_BIN_HEIGHT, bound)?;
    let shift = (1.0 - MIN_DERIVATIVE).exp_m1().ln(); // softplus(shift) = 1 - MIN_DERIVATIVE
    let inner = (softplus(&(p.narrow(1, 2 * k, k - 1)? + shift)?)? + MIN_DERIVATIVE)?;
    let one = inner.narrow(1, 0, 1)?.ones_like()?;
    let d = Tensor::cat(&[&one, &inner, &one], 1)?; // [B, K + 1, ...]
    let (xl, yl) = (left_knots(&w, bound)?, left_knots(&h, bound)?);

    let inside = x.detach().abs()?.le(bound)?.to_dtype(x.dtype())?;
    let v = x.clamp(-bound, bound)?;
    let onehot = bins_of(&v, if inverse { &yl } else { &xl })?;
    let (wk, hk) = (pick(&w, &onehot)?, pick(&h, &onehot)?);
    let (xk, yk) = (pick(&xl, &onehot)?, pick(&yl, &onehot)?);
    let dk = pick(&d.narrow(1, 0, k)?, &onehot)?;
    let dk1 = pick(&d.narrow(1, 1, k)?, &onehot)?;
    let sk = (&hk / &wk)?;
    let curv = ((&dk1 + &dk)? - (&sk * 2.0)?)?; // delta^{k+1} + delta^k - 2 s^k

    let xi = if inverse {
        let dy = (&v - &yk)?;
        let a = ((&hk * (&sk - &dk)?)? + (&dy * &curv)?)?;
        let b = ((&hk * &dk)? - (&dy * &curv)?)?;
        let c = (sk.neg()? * &dy)?;
        let disc = (b.sqr()? - (a * &c)?.affine(4.0, 0.0)?)?.relu()?; // >= 0 up to rounding
        ((c * 2.0)? / (b.neg()? - disc.sqrt()?)?)?
    } else {
        ((&v - &xk)? / &wk)?
    };
    let t = (&xi * (1.0 - &xi)?)?; // xi (1 - xi)
    let den = (&sk + (&curv * &t)?)?;
    let deriv_num = ((&dk1 * xi.sqr()?)? + (&sk * &t)?.affine(2.0, 0.0)?)?
        .add(&(&dk * (1.0 - &xi)?.sqr()?)?)?;
    let log_deriv = ((sk.sqr()? * deriv_num)?.log()? - (den.sqr()?).log()?)?;
    let out = if inverse {
        (&xk + (&xi * &wk)?)?
    } else {
        let num = (&hk * ((&sk * xi.sqr()?)? + (&dk * &t)?)?)?;
        (&yk + (num / &den)?)?
    };
    let outside = (1.0 - &inside)?;
    let y = ((&inside * out)? + (&outside * x)?)?;
    let ld = (&inside * log_deriv)?;
    Ok((y, if inverse { ld.neg()? } else { ld }))
}

pub struct SplineCoupling {
    net: CouplingNet,
    mask: Mask,
    bound: f64,
}

impl SplineCoupling {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shape: &[usize],
        mask: MaskKind,
        parity: bool,
        hidden: &[usize],
        bins: usize,
        bound: f64,
        narrow: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        if bins < 2 {
            return Err(Error::Config(format!(
                "flow.spline_bins must be at least 2, got {bins}"
            )));
        }
        if !(bound > 0.0 && bound.is_finite()) {
            return Err(Error::Config(format!(
                "flow.spline_bound must be positive, got {bound}"
            )));
        }
        let like = Tensor::zeros(1, vb.dtype(), vb.device())?;
        Ok(Self {
            mask: Mask::new(mask, shape, parity, &like)?,
            net: CouplingNet::for_mask(
                shape,
                hidden,
                params_per_element(bins),
                mask,
                parity,
                narrow,
                vb.pp("net"),
            )?,
            bound,
        })
    }
}

impl Transform for SplineCoupling {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let p = self.net.forward(&x.broadcast_mul(&self.mask.b)?)?;
        let (y, ld) = rq_spline(x, &p, self.bound, false)?;
        let z = (x.broadcast_mul(&self.mask.b)? + y.broadcast_mul(&self.mask.not_b)?)?;
        Ok((z, sum_per_example(&ld.broadcast_mul(&self.mask.not_b)?)?))
    }

    fn inverse(&self, z: &Tensor) -> Result<Tensor> {
        let p = self.net.forward(&z.broadcast_mul(&self.mask.b)?)?;
        let (x, _) = rq_spline(z, &p, self.bound, true)?;
        Ok((z.broadcast_mul(&self.mask.b)? + x.broadcast_mul(&self.mask.not_b)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;
    use candle_core::{DType, Device};

    /// f64 evaluation of the closed forms.
    const TOL: f64 = 1e-12;

    #[test]
    fn zero_parameters_give_the_identity_and_knots_are_interpolated() {
        let x = Tensor::new(&[-3.0f64, -1.5, -0.2, 0.0, 0.7, 1.99, 2.5], &Device::Cpu)
            .unwrap()
            .reshape((7, 1))
            .unwrap();
        let p = Tensor::zeros((7, 11, 1), DType::F64, &Device::Cpu).unwrap(); // K = 4
        let (y, ld) = rq_spline(&x, &p, 2.0, false).unwrap();
        assert!(max_abs_diff(&x, &y) < TOL);
        assert!(
            ld.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
                < TOL
        );
        // Random parameters: the spline passes through its knots (x^k, y^k), by hand.
        let p = randn64(4, &[1, 11, 1], 1.0);
        let pv: Vec<f64> = p.flatten_all().unwrap().to_vec1().unwrap();
        let norm = |r: &[f64], min: f64| -> Vec<f64> {
            let m = r.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = r.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter()
                .map(|v| (min + (1.0 - 4.0 * min) * v / s) * 4.0)
                .collect()
        };
        let (w, h) = (
            norm(&pv[0..4], MIN_BIN_WIDTH),
            norm(&pv[4..8], MIN_BIN_HEIGHT),
        );
        let (mut xk, mut yk) = (-2.0, -2.0);
        for k in 0..4 {
            let xt = Tensor::new(&[[xk]], &Device::Cpu).unwrap();
            let (y, _) = rq_spline(&xt, &p, 2.0, false).unwrap();
            let y = y.flatten_all().unwrap().to_vec1::<f64>().unwrap()[0];
            assert!((y - yk).abs() < 1e-10, "knot {k}: {y} vs {yk}");
            xk += w[k];
            yk += h[k];
        }
    }

    #[test]
    fn spline_coupling_inverts_and_its_log_det_matches_the_jacobian() {
        for kind in [MaskKind::Checkerboard, MaskKind::Channel] {
            for narrow in [false, true] {
                let (ps, vb) = vb64(1);
                let t = SplineCoupling::new(&[4], kind, false, &[8], 5, 2.0, narrow, vb).unwrap();
                perturb(&ps, 3, 0.5);
                // Scale 1.5: some inputs fall in the linear tails beyond +-2.
                check_transform("spline points", &t, &randn64(2, &[6, 4], 1.5));
                let (ps, vb) = vb64(1);
                let t =
                    SplineCoupling::new(&[2, 2, 2], kind, true, &[4], 3, 2.0, narrow, vb).unwrap();
                perturb(&ps, 3, 0.5);
                check_transform("spline images", &t, &randn64(2, &[2, 2, 2, 2], 1.0));
            }
        }
    }
}
