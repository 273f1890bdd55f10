//! Optimizers on flat parameter vectors: Adam (Kingma & Ba 2015, arXiv:1412.6980,
//! Algorithm 1, with PyTorch's placement of epsilon outside the square root), RMSprop
//! (Tieleman & Hinton 2012, lecture 6.5, as `torch.optim.RMSprop`: SB3's A2C optimizer)
//! and gradient clipping by global norm (Pascanu et al. 2013, arXiv:1211.5063).
//!
//! The state (moments and step count) is saved in checkpoints, so a resumed run takes the
//! same steps. `tests` check Adam against genlab-train's `AdamW` (with zero weight decay)
//! on the same gradients.

use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result};

/// Optimizer moments below this are flushed to zero (see [`Adam::step`]).
const TINY: f32 = 1e-30;

/// Adam's moments and step count.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u64,
}

impl Adam {
    pub fn new(n: usize, eps: f64) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// One step: `params -= lr * m_hat / (sqrt(v_hat) + eps)`.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f64) {
        self.t += 1;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        // lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), as torch.optim.Adam computes it.
        let step = (lr / bc1) as f32;
        let sbc2 = bc2.sqrt() as f32;
        let eps = self.eps as f32;
        let n = params.len();
        let (m, v) = (&mut self.m[..n], &mut self.v[..n]);
        let grad = &grad[..n];
        for i in 0..n {
            let g = grad[i];
            // Moments below TINY are flushed to zero: squared small gradients are otherwise
            // subnormal floats, which cost ~100 cycles per operation on x86 (this loop was
            // two thirds of a DQN update before the flush); they change no update by more
            // than lr * 1e-30 / eps.
            let mi = b1 * m[i] + (1.0 - b1) * g;
            let vi = b2 * v[i] + (1.0 - b2) * g * g;
            let mi = if mi.abs() < TINY { 0.0 } else { mi };
            let vi = if vi < TINY { 0.0 } else { vi };
            m[i] = mi;
            v[i] = vi;
            params[i] -= step * mi / (vi.sqrt() / sbc2 + eps);
        }
    }
}

/// RMSprop's running mean of squared gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct RmsProp {
    pub alpha: f64,
    pub eps: f64,
    pub v: Vec<f32>,
}

impl RmsProp {
    pub fn new(n: usize, alpha: f64, eps: f64) -> Self {
        Self {
            alpha,
            eps,
            v: vec![0.0; n],
        }
    }

    pub fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f64) {
        let (a, eps, lr) = (self.alpha as f32, self.eps as f32, lr as f32);
        for ((p, g), v) in params.iter_mut().zip(grad).zip(&mut self.v) {
            let vi = a * *v + (1.0 - a) * g * g;
            *v = if vi < TINY { 0.0 } else { vi }; // as in Adam::step
            *p -= lr * g / (v.sqrt() + eps);
        }
    }
}

/// Which optimizer an agent uses, with its epsilon.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase", tag = "kind")]
pub enum OptimizerKind {
    Adam { eps: f64 },
    Rmsprop { alpha: f64, eps: f64 },
}

/// An optimizer of either kind for one parameter vector.
#[derive(Clone, Debug, PartialEq)]
pub enum Optimizer {
    Adam(Adam),
    RmsProp(RmsProp),
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, n: usize) -> Self {
        match kind {
            OptimizerKind::Adam { eps } => Optimizer::Adam(Adam::new(n, eps)),
            OptimizerKind::Rmsprop { alpha, eps } => {
                Optimizer::RmsProp(RmsProp::new(n, alpha, eps))
            }
        }
    }

    pub fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f64) {
        match self {
            Optimizer::Adam(a) => a.step(params, grad, lr),
            Optimizer::RmsProp(r) => r.step(params, grad, lr),
        }
    }

    /// The state vectors (named) and step count, for checkpoints.
    pub fn state(&self) -> (Vec<(&'static str, &[f32])>, u64) {
        match self {
            Optimizer::Adam(a) => (vec![("m", &a.m[..]), ("v", &a.v[..])], a.t),
            Optimizer::RmsProp(r) => (vec![("v", &r.v[..])], 0),
        }
    }

    pub fn load(&mut self, get: &mut dyn FnMut(&str) -> Result<Vec<f32>>, t: u64) -> Result<()> {
        let check = |dst: &mut Vec<f32>, src: Vec<f32>| {
            if dst.len() != src.len() {
                return Err(Error::Checkpoint(format!(
                    "optimizer state has {} values, the network {}",
                    src.len(),
                    dst.len()
                )));
            }
            *dst = src;
            Ok(())
        };
        match self {
            Optimizer::Adam(a) => {
                check(&mut a.m, get("m")?)?;
                check(&mut a.v, get("v")?)?;
                a.t = t;
            }
            Optimizer::RmsProp(r) => check(&mut r.v, get("v")?)?,
        }
        Ok(())
    }
}

/// Scales `grad` so that its L2 norm is at most `max_norm` (no-op for `max_norm <= 0`);
/// returns the norm before clipping. A non-finite norm is returned as is (the caller stops).
pub fn clip_grad_norm(grad: &mut [f32], max_norm: f64) -> f64 {
    let norm = grad
        .iter()
        .map(|g| (*g as f64) * (*g as f64))
        .sum::<f64>()
        .sqrt();
    if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
        // PyTorch's clip_grad_norm_: coefficient max_norm / (norm + 1e-6).
        let c = (max_norm / (norm + 1e-6)) as f32;
        grad.iter_mut().for_each(|g| *g *= c);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_core::candle::{Device, Tensor, Var};

    /// Two float32 implementations of the same update agree to rounding.
    const ADAM_TOL: f32 = 1e-6;

    #[test]
    fn adam_matches_genlab_train_adamw_without_decay() {
        let mut rng = genlab_core::Rng::new(4);
        let n = 37;
        let init = rng.normal_vec(n);
        let var = Var::from_vec(init.clone(), n, &Device::Cpu).unwrap();
        let cfg = genlab_train::optim::AdamWConfig {
            weight_decay: 0.0,
            eps: 1e-8,
            ..Default::default()
        };
        let mut reference =
            genlab_train::optim::AdamW::new(vec![("p".into(), var.clone())], cfg).unwrap();
        let mut ours = Adam::new(n, 1e-8);
        let mut p = init;
        for _ in 0..5 {
            let g = rng.normal_vec(n);
            // d/dp sum(p * g) = g
            let loss = (var.as_tensor() * Tensor::from_vec(g.clone(), n, &Device::Cpu).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            reference.step(&grads, 1e-2, 1.0).unwrap();
            ours.step(&mut p, &g, 1e-2);
        }
        let want = var.as_tensor().to_vec1::<f32>().unwrap();
        for (a, b) in p.iter().zip(&want) {
            assert!((a - b).abs() < ADAM_TOL, "{a} vs {b}");
        }
    }

    #[test]
    fn rmsprop_first_step_is_lr_over_sqrt_one_minus_alpha() {
        let mut r = RmsProp::new(1, 0.99, 0.0);
        let mut p = [1.0f32];
        r.step(&mut p, &[2.0], 0.1);
        // v = 0.01 * 4, step = 0.1 * 2 / sqrt(0.04) = 1
        assert!((p[0] - 0.0).abs() < 1e-5, "{}", p[0]);
    }

    #[test]
    fn clipping_caps_the_norm_and_keeps_the_direction() {
        let mut g = [3.0f32, 4.0];
        let n = clip_grad_norm(&mut g, 1.0);
        assert!((n - 5.0).abs() < 1e-9);
        assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5);
        let mut small = [0.1f32, 0.0];
        clip_grad_norm(&mut small, 1.0);
        assert_eq!(small, [0.1, 0.0]);
    }
}
