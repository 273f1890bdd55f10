//! The classifier being trained continually, its optimizer, and the losses the methods
//! combine, each written with its gradient with respect to the logits.
//!
//! Every loss takes, per example, the output units it is computed over (`ranges[r]`): a
//! task's head in Task-IL, the shared outputs in Domain-IL, the classes seen so far in
//! Class-IL. Units outside the range get no gradient. Losses are means over the batch, as in
//! PyTorch's `reduction='mean'` and van de Ven & Tolias's code.
//!
//! - [`cross_entropy`]: softmax cross-entropy, `-log softmax(z)_y`;
//! - [`distill`]: knowledge distillation (Hinton, Vinyals & Dean 2015, arXiv:1503.02531,
//!   Section 2): `-T^2 sum_k p_k log q_k` with `p = softmax(target / T)`, `q = softmax(z / T)`,
//!   target probabilities padded with zeros when the range has more units than the target
//!   (van de Ven & Tolias's `loss_fn_kd`); gradient `T (q - p)` per example;
//! - [`binary_ce`]: the sum over units of the binary cross-entropy with logits (iCaRL,
//!   Rebuffi et al. 2017, arXiv:1611.07725, Algorithm 3), gradient `sigmoid(z) - t`.

use std::ops::Range;

use genlab_core::{Error, Result, Rng};
use genlab_rl::nn::{Activation, Cache, Init, Mlp};
use genlab_rl::optim::Adam;

/// PyTorch's Adam epsilon (`torch.optim.Adam` default), as in the reference code.
pub const ADAM_EPS: f64 = 1e-8;

/// Softmax of `z / t` in f64.
fn softmax(z: &[f32], t: f64) -> Vec<f64> {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = z.iter().map(|&v| ((v as f64 - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Mean softmax cross-entropy of `labels` (output units) over each example's range; adds
/// `weight * d loss / d logits` to `dlogits`. `logits` is `[n, out]`.
pub fn cross_entropy(
    logits: &[f32],
    out: usize,
    labels: &[u32],
    ranges: &[Range<usize>],
    weight: f64,
    dlogits: &mut [f32],
) -> f64 {
    let n = labels.len();
    let mut loss = 0.0;
    for r in 0..n {
        let rg = ranges[r].clone();
        let z = &logits[r * out + rg.start..r * out + rg.end];
        let y = labels[r] as usize - rg.start;
        let p = softmax(z, 1.0);
        loss -= p[y].max(f64::MIN_POSITIVE).ln();
        for (k, pk) in p.iter().enumerate() {
            let g = pk - if k == y { 1.0 } else { 0.0 };
            dlogits[r * out + rg.start + k] += (weight * g / n as f64) as f32;
        }
    }
    loss / n as f64
}

/// Mean distillation loss towards `targets` (`[n, k]` logits of a previous model, its `k`
/// units mapped onto the first `k` of each example's range) at temperature `t`; adds
/// `weight * d loss / d logits` to `dlogits`.
#[allow(clippy::too_many_arguments)]
pub fn distill(
    logits: &[f32],
    out: usize,
    ranges: &[Range<usize>],
    targets: &[f32],
    k: usize,
    t: f64,
    weight: f64,
    dlogits: &mut [f32],
) -> f64 {
    let n = ranges.len();
    let mut loss = 0.0;
    for r in 0..n {
        let rg = ranges[r].clone();
        let z = &logits[r * out + rg.start..r * out + rg.end];
        let q = softmax(z, t);
        let mut p = softmax(&targets[r * k..(r + 1) * k], t);
        p.resize(z.len(), 0.0);
        for (j, (pj, qj)) in p.iter().zip(&q).enumerate() {
            loss -= t * t * pj * qj.max(f64::MIN_POSITIVE).ln();
            dlogits[r * out + rg.start + j] += (weight * t * (qj - pj) / n as f64) as f32;
        }
    }
    loss / n as f64
}

/// Mean over examples of the summed binary cross-entropy with logits towards `targets`
/// (`[n, range length]` probabilities); adds `weight * d loss / d logits` to `dlogits`.
pub fn binary_ce(
    logits: &[f32],
    out: usize,
    ranges: &[Range<usize>],
    targets: &[f32],
    weight: f64,
    dlogits: &mut [f32],
) -> f64 {
    let n = ranges.len();
    let mut loss = 0.0;
    let mut off = 0;
    for r in 0..n {
        let rg = ranges[r].clone();
        for (j, u) in rg.clone().enumerate() {
            let z = logits[r * out + u] as f64;
            let tj = targets[off + j] as f64;
            // log(1 + e^z) - t z, stably.
            loss += z.max(0.0) + (-z.abs()).exp().ln_1p() - tj * z;
            let s = 1.0 / (1.0 + (-z).exp());
            dlogits[r * out + u] += (weight * (s - tj) / n as f64) as f32;
        }
        off += rg.len();
    }
    loss / n as f64
}

/// The classifier and its optimizer.
#[derive(Clone, Debug)]
pub struct Learner {
    pub net: Mlp,
    pub opt: Adam,
    pub lr: f64,
    /// Gradient accumulated since [`Learner::zero_grad`], same layout as the parameters.
    pub grad: Vec<f32>,
    cache: Cache,
    dlogits: Vec<f32>,
}

impl Learner {
    /// An MLP `dim -> hidden... -> outputs` with ReLU, PyTorch's default initialisation.
    pub fn new(dim: usize, hidden: &[usize], outputs: usize, lr: f64, rng: &mut Rng) -> Self {
        let mut sizes = vec![dim];
        sizes.extend_from_slice(hidden);
        sizes.push(outputs);
        let net = Mlp::new(&sizes, Activation::Relu, Init::Torch, rng);
        let n = net.num_params();
        Self {
            net,
            opt: Adam::new(n, ADAM_EPS),
            lr,
            grad: vec![0.0; n],
            cache: Cache::default(),
            dlogits: Vec::new(),
        }
    }

    pub fn outputs(&self) -> usize {
        self.net.out_dim()
    }

    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }

    /// Forward pass on `x` `[n, dim]`; `loss(logits, dlogits)` returns the loss and fills the
    /// gradient with respect to the logits, which is then backpropagated into `grad`.
    pub fn accumulate(
        &mut self,
        x: &[f32],
        n: usize,
        loss: impl FnOnce(&[f32], &mut [f32]) -> f64,
    ) -> f64 {
        let out = self.net.out_dim();
        let logits = self.net.forward(x, n, &mut self.cache).to_vec();
        self.dlogits.clear();
        self.dlogits.resize(n * out, 0.0);
        let l = loss(&logits, &mut self.dlogits);
        let d = std::mem::take(&mut self.dlogits);
        self.net.backward(&mut self.cache, &d, &mut self.grad, None);
        self.dlogits = d;
        l
    }

    /// One Adam step on the accumulated gradient; errors on a non-finite gradient.
    pub fn step(&mut self) -> Result<()> {
        if self.grad.iter().any(|g| !g.is_finite()) {
            return Err(Error::Numeric(
                "the classifier's gradient is not finite (lower the learning rate or the \
                 regularisation strength)"
                    .into(),
            ));
        }
        self.opt.step(&mut self.net.params, &self.grad, self.lr);
        Ok(())
    }

    /// Logits `[n, outputs]` without touching the training state.
    pub fn logits(&self, x: &[f32], n: usize) -> Vec<f32> {
        crate::mlp::logits(&self.net, x, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences in f64 of an f32 loss: agreement to about 1e-3 relative.
    const FD_TOL: f64 = 2e-3;
    const FD_H: f32 = 1e-2;

    fn check_fd(f: &dyn Fn(&[f32], &mut [f32]) -> f64, z: &[f32]) {
        let mut g = vec![0f32; z.len()];
        f(z, &mut g);
        for i in 0..z.len() {
            let mut zp = z.to_vec();
            zp[i] += FD_H;
            let mut zm = z.to_vec();
            zm[i] -= FD_H;
            let mut scratch = vec![0f32; z.len()];
            let fd = (f(&zp, &mut scratch) - f(&zm, &mut scratch)) / (2.0 * FD_H as f64);
            assert!(
                (fd - g[i] as f64).abs() < FD_TOL * (1.0 + fd.abs()),
                "unit {i}: analytic {} vs finite difference {fd}",
                g[i]
            );
        }
    }

    #[test]
    fn loss_gradients_match_finite_differences() {
        let mut rng = Rng::new(5);
        let (n, out) = (3, 6);
        let z: Vec<f32> = rng.normal_vec(n * out);
        let ranges = vec![0..4, 2..4, 1..6];
        let labels = [3u32, 2, 5];
        check_fd(&|z, d| cross_entropy(z, out, &labels, &ranges, 1.0, d), &z);
        let targets: Vec<f32> = rng.normal_vec(n * 2);
        check_fd(
            &|z, d| distill(z, out, &ranges, &targets, 2, 2.0, 1.0, d),
            &z,
        );
        let bt: Vec<f32> = (0..4 + 2 + 5).map(|_| rng.uniform() as f32).collect();
        check_fd(&|z, d| binary_ce(z, out, &ranges, &bt, 1.0, d), &z);
        // The weight scales the gradient only (the returned loss is unweighted).
        let (mut g1, mut g3) = (vec![0f32; n * out], vec![0f32; n * out]);
        let l1 = cross_entropy(&z, out, &labels, &ranges, 1.0, &mut g1);
        let l3 = cross_entropy(&z, out, &labels, &ranges, 0.3, &mut g3);
        assert_eq!(l1, l3);
        for (a, b) in g1.iter().zip(&g3) {
            assert!((0.3 * a - b).abs() < 1e-7);
        }
    }

    #[test]
    fn losses_match_their_closed_forms() {
        let all = vec![0..2usize; 1];
        // Two equal logits: cross-entropy ln 2; distilling onto equal targets: T^2 ln 2.
        let z = [0.5f32, 0.5];
        let mut d = [0f32; 2];
        let ce = cross_entropy(&z, 2, &[1], &all, 1.0, &mut d);
        assert!((ce - 2f64.ln()).abs() < 1e-9);
        let kd = distill(&z, 2, &all, &[3.0, 3.0], 2, 2.0, 1.0, &mut d);
        assert!((kd - 4.0 * 2f64.ln()).abs() < 1e-9);
        // Padded target [1, 0]: cross-entropy of q = softmax(z/T) at unit 0 only... with a
        // one-unit target p = [1, 0]: -T^2 ln q_0.
        let kd1 = distill(&[1.0, -1.0], 2, &all, &[9.0], 1, 2.0, 1.0, &mut d);
        let q0 = (0.5f64).exp() / ((0.5f64).exp() + (-0.5f64).exp());
        assert!((kd1 + 4.0 * q0.ln()).abs() < 1e-9);
        // BCE at z = 0: ln 2 per unit, whatever the target.
        let b = binary_ce(&[0.0, 0.0], 2, &all, &[1.0, 0.0], 1.0, &mut d);
        assert!((b - 2.0 * 2f64.ln()).abs() < 1e-9);
    }
}
