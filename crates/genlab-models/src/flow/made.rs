//! MADE: masked autoencoder for distribution estimation, the autoregressive conditioner of
//! MAF and IAF.
//!
//! Germain, Gregor, Murray & Larochelle 2015, "MADE: Masked Autoencoder for Distribution
//! Estimation", arXiv:1502.03509, Sec. 4: give every input a degree m(d) (its position in
//! the ordering, 1..D), every hidden unit k of layer l a degree m^l(k) in 1..D-1, and mask
//! the weights so that an output of degree d sees only inputs of degree < d:
//!
//! ```text
//! hidden layers:  M^l[k, k'] = 1[m^l(k) >= m^{l-1}(k')]
//! output layer:   M^V[d, k]  = 1[m(d) > m^L(k)]
//! ```
//!
//! Here the hidden degrees cycle deterministically, m^l(k) = (k mod (D - 1)) + 1 (MADE
//! draws them at random; a fixed assignment keeps the model a function of its config), and
//! `reverse` flips the input ordering (MAF reverses it between layers, Papamakarios et al.
//! 2017, Sec. 3.2). With `k` parameters per dimension the output is `[B, k, D]`, output
//! unit `p D + d` having the degree of input d. Layers are [`genlab_nn::Linear`] whose
//! weights are multiplied by the fixed mask in every forward; ReLU between layers.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use genlab_core::{Error, Result};
use genlab_nn::Linear;

use super::constant;
use super::masks::HEAD_GAIN;

pub struct Made {
    layers: Vec<(Linear, Tensor)>,
    d: usize,
    k: usize,
}

/// Degrees of the inputs: 1..=D in order, or D..=1 if `reverse`.
pub fn input_degrees(d: usize, reverse: bool) -> Vec<usize> {
    (0..d)
        .map(|i| if reverse { d - i } else { i + 1 })
        .collect()
}

/// Degrees of `width` hidden units: cycling through 1..=max(D-1, 1).
pub fn hidden_degrees(width: usize, d: usize) -> Vec<usize> {
    (0..width).map(|j| j % (d - 1).max(1) + 1).collect()
}

/// The masks of every layer (`[out, in]`, row-major), in order.
pub fn made_masks(d: usize, hidden: &[usize], k: usize, reverse: bool) -> Vec<Vec<f64>> {
    let m0 = input_degrees(d, reverse);
    let mut prev = m0.clone();
    let mut masks = Vec::new();
    for &w in hidden {
        let m = hidden_degrees(w, d);
        masks.push(
            m.iter()
                .flat_map(|&a| prev.iter().map(move |&b| (a >= b) as u8 as f64))
                .collect(),
        );
        prev = m;
    }
    let out: Vec<usize> = (0..k * d).map(|o| m0[o % d]).collect();
    masks.push(
        out.iter()
            .flat_map(|&a| prev.iter().map(move |&b| (a > b) as u8 as f64))
            .collect(),
    );
    masks
}

impl Made {
    pub fn new(
        d: usize,
        hidden: &[usize],
        k: usize,
        reverse: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        if d < 2 {
            return Err(Error::Config(format!(
                "an autoregressive flow needs at least 2 dimensions, got {d}"
            )));
        }
        if hidden.is_empty() || hidden.contains(&0) || k == 0 {
            return Err(Error::Config(format!(
                "flow.hidden must list at least one positive width for MADE, got {hidden:?}"
            )));
        }
        let like = Tensor::zeros(1, vb.dtype(), vb.device())?;
        let masks = made_masks(d, hidden, k, reverse);
        let mut sizes = vec![d];
        sizes.extend(hidden);
        sizes.push(k * d);
        let n = sizes.len() - 1;
        let mut layers = Vec::new();
        for (i, (w, m)) in sizes.windows(2).zip(masks).enumerate() {
            let vbi = vb.pp(format!("l{i}"));
            let lin = if i + 1 == n {
                // Small head, zero bias: the flow starts near the identity.
                vbi.get_with_hints(w[1], "bias", Init::Const(0.0))?;
                Linear::with_weight_std(w[0], w[1], HEAD_GAIN / (w[0] as f64).sqrt(), vbi)?
            } else {
                Linear::new(w[0], w[1], vbi)?
            };
            layers.push((lin, constant(m, &[w[1], w[0]], &like)?));
        }
        Ok(Self { layers, d, k })
    }

    /// `x [B, D]` -> `[B, k, D]`; output `[:, p, i]` depends only on inputs of lower degree.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        if x.dims() != [b, self.d] {
            return Err(Error::InvalidInput(format!(
                "MADE built for [B, {}], got {:?}",
                self.d,
                x.dims()
            )));
        }
        let mut h = x.clone();
        for (i, (lin, mask)) in self.layers.iter().enumerate() {
            h = genlab_kernels::linear(&h, &(lin.weight() * mask)?, lin.bias())?;
            if i + 1 < self.layers.len() {
                h = genlab_nn::relu(&h)?;
            }
        }
        Ok(h.reshape((b, self.k, self.d))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;
    use candle_core::Var;

    #[test]
    fn made_outputs_depend_only_on_earlier_inputs() {
        // Brute force: the Jacobian of output (p, i) w.r.t. the input has nonzeros only at
        // inputs of smaller degree, and the connectivity is as permissive as MADE allows
        // (every earlier input reaches every output through some path).
        for reverse in [false, true] {
            let (ps, vb) = vb64(2);
            let made = Made::new(4, &[16, 16], 2, reverse, vb).unwrap();
            perturb(&ps, 1, 1.0);
            let deg = input_degrees(4, reverse);
            let x = Var::from_tensor(&randn64(3, &[5, 4], 1.0)).unwrap();
            let y = made.forward(x.as_tensor()).unwrap();
            for p in 0..2 {
                for i in 0..4 {
                    let g = y.narrow(1, p, 1).unwrap().narrow(2, i, 1).unwrap();
                    let g = g.sum_all().unwrap().backward().unwrap();
                    let gx: Vec<Vec<f64>> = g
                        .get(&x)
                        .map(|t| t.to_vec2().unwrap())
                        .unwrap_or_else(|| vec![vec![0.0; 4]; 5]);
                    for j in 0..4 {
                        let dep = gx.iter().any(|r| r[j] != 0.0);
                        assert_eq!(
                            dep,
                            deg[j] < deg[i],
                            "reverse {reverse}: output ({p}, {i}) vs input {j}"
                        );
                    }
                }
            }
        }
    }
}
