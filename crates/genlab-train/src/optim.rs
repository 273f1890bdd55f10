//! AdamW with its state exposed for checkpoints, and global-norm gradient clipping.
//!
//! Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", arXiv:1711.05101,
//! Algorithm 2 (Adam with decoupled weight decay), bias-corrected moments as in Kingma &
//! Ba 2015 (arXiv:1412.6980, Algorithm 1). candle_nn's AdamW keeps its moments private, so
//! a resumed run could not continue exactly: ours saves `m`, `v` and the step count.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Tensor, Var};
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result};

/// AdamW hyper-parameters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,        // Kingma & Ba's default
            beta2: 0.999,      // Kingma & Ba's default
            eps: 1e-8,         // Kingma & Ba's default
            weight_decay: 0.0, // DDPM trains without decay (Ho et al. 2020, App. B)
        }
    }
}

/// AdamW over a fixed, ordered list of named variables.
pub struct AdamW {
    cfg: AdamWConfig,
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Number of updates applied so far (the `t` of the bias correction).
    pub t: u64,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let m = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            cfg,
            vars,
            m,
            v,
            t: 0,
        })
    }

    /// Global L2 norm of the gradients present in `grads`.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(sq.sqrt())
    }

    /// One update with learning rate `lr`; gradients are scaled by `grad_scale` first
    /// (for clipping). Variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.t += 1;
        let c = &self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let g = if grad_scale != 1.0 {
                (g * grad_scale)?
            } else {
                g.clone()
            };
            let m = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + c.eps)?)?;
            let w = var.as_tensor();
            let decayed = if c.weight_decay > 0.0 {
                (w * (1.0 - lr * c.weight_decay))?
            } else {
                w.clone()
            };
            var.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moments as named tensors (`m.NAME`, `v.NAME`), for checkpoints.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`] and the step count `t`.
    pub fn load_state(&mut self, map: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (kind, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{kind}.{name}");
                let tensor = map.get(&key).ok_or_else(|| {
                    Error::Checkpoint(format!(
                        "optimizer state `{key}` is missing from the checkpoint"
                    ))
                })?;
                if tensor.dims() != var.dims() {
                    return Err(Error::Checkpoint(format!(
                        "optimizer state `{key}` has shape {:?}, expected {:?}",
                        tensor.dims(),
                        var.dims()
                    )));
                }
                *slot = tensor.copy()?;
            }
        }
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// f32 updates agree with the f64 reference to this absolute error.
    const F32_TOL: f64 = 1e-6;

    #[test]
    fn matches_hand_computed_adamw() {
        // Reference: the algorithm written out in f64 for a scalar parameter.
        let cfg = AdamWConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        let var = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], cfg.clone()).unwrap();
        let (mut w, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
        let lr = 0.01;
        for t in 1..=5 {
            // loss = w^3 -> grad = 3 w^2
            let loss = var.as_tensor().powf(3.0).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, lr, 1.0).unwrap();
            let g = 3.0 * w * w;
            m = cfg.beta1 * m + (1.0 - cfg.beta1) * g;
            v = cfg.beta2 * v + (1.0 - cfg.beta2) * g * g;
            let mh = m / (1.0 - cfg.beta1.powi(t));
            let vh = v / (1.0 - cfg.beta2.powi(t));
            w = w * (1.0 - lr * cfg.weight_decay) - lr * mh / (vh.sqrt() + cfg.eps);
            let got = var.as_tensor().to_vec1::<f32>().unwrap()[0] as f64;
            assert!((got - w).abs() < F32_TOL, "t={t}: {got} vs {w}");
        }
    }

    #[test]
    fn state_roundtrip_continues_identically() {
        let run = |split: bool| -> Vec<f32> {
            let var = Var::new(&[0.5f32, -2.0], &Device::Cpu).unwrap();
            let mut opt =
                AdamW::new(vec![("w".into(), var.clone())], AdamWConfig::default()).unwrap();
            for i in 0..6 {
                if split && i == 3 {
                    let (st, t) = (opt.state(), opt.t);
                    opt = AdamW::new(vec![("w".into(), var.clone())], AdamWConfig::default())
                        .unwrap();
                    opt.load_state(&st, t).unwrap();
                }
                let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap(), 0.1, 1.0).unwrap();
            }
            var.as_tensor().to_vec1().unwrap()
        };
        assert_eq!(run(false), run(true));
    }
}
