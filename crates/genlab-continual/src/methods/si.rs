//! Synaptic intelligence: Zenke, Poole & Ganguli 2017, "Continual Learning Through Synaptic
//! Intelligence", arXiv:1703.04200.
//!
//! While task `mu` is trained each parameter's contribution to the change in loss is summed
//! along the optimizer's path, `w_k += -g_k * (theta_k(t+1) - theta_k(t))` (the discretised
//! path integral of Eq. 3, `g` the gradient of the step). At the task's end
//! `Omega_k += w_k / (Delta_k^2 + xi)` with `Delta_k` the parameter's change over the task
//! (Eq. 5), and the loss gains the surrogate `c * sum_k Omega_k (theta_k - theta*_k)^2`
//! anchored at the task's final parameters (Eq. 4). As in van de Ven & Tolias's code
//! (arXiv:1904.07734, our targets' reference), `g` is the gradient of the whole loss (surrogate
//! included) and `c` and `xi = 0.1` are their grid-searched per-scenario values.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use genlab_core::{Result, Rng};

use super::{
    add_cross_entropy, parse_config, setting_error, Ctx, MemoryItem, Method, MethodEntry, Spec,
    ALL_SCENARIOS,
};
use crate::benchmark::{BenchmarkEntry, Examples, Kind, Scenario};
use crate::learner::Learner;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Strength of the surrogate loss (the reference's grid-searched value for the scenario).
    pub c: f64,
    /// Damping `xi` of Eq. 5, bounding Omega when a parameter barely moved (reference: 0.1).
    pub epsilon: f64,
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "si",
    paper: "Zenke, Poole & Ganguli 2017, arXiv:1703.04200",
    description: "synaptic intelligence: importance from each parameter's path integral",
    scenarios: ALL_SCENARIOS,
    task_free: false,
    defaults,
    build,
};

fn defaults(b: &BenchmarkEntry, s: Scenario) -> Value {
    let c = match (b.kind == Kind::Split, s) {
        (true, Scenario::Task) => 50.0,
        (true, Scenario::Domain) => 500.0,
        (true, Scenario::Class) => 0.5,
        (false, Scenario::Class) => 0.1,
        (false, _) => 5.0,
    };
    serde_json::to_value(Config { c, epsilon: 0.1 }).expect("serialisable")
}

fn build(spec: &Spec) -> Result<Box<dyn Method>> {
    let c: Config = parse_config(spec.config)?;
    if !(c.c >= 0.0 && c.c.is_finite()) {
        return Err(setting_error("c", format!("must be >= 0, got {}", c.c)));
    }
    if c.epsilon.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(setting_error(
            "epsilon",
            format!("must be > 0, got {}", c.epsilon),
        ));
    }
    let n = spec.sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
    Ok(Box::new(Si::new(c, n)))
}

/// `w += -grad * (after - before)`: one step of the path integral.
pub fn accumulate_path(w: &mut [f32], grad: &[f32], before: &[f32], after: &[f32]) {
    for i in 0..w.len() {
        w[i] -= grad[i] * (after[i] - before[i]);
    }
}

/// `omega += w / ((current - anchor)^2 + epsilon)` (Eq. 5).
pub fn update_omega(omega: &mut [f32], w: &[f32], anchor: &[f32], current: &[f32], eps: f64) {
    for i in 0..omega.len() {
        let d = (current[i] - anchor[i]) as f64;
        omega[i] += (w[i] as f64 / (d * d + eps)) as f32;
    }
}

pub struct Si {
    cfg: Config,
    omega: Vec<f32>,
    /// Parameters at the end of the previous task (the surrogate's anchor), set at the start.
    anchor: Option<Vec<f32>>,
    w: Vec<f32>,
}

impl Si {
    pub fn new(cfg: Config, n: usize) -> Self {
        Self {
            cfg,
            omega: vec![0.0; n],
            anchor: None,
            w: vec![0.0; n],
        }
    }
}

impl Method for Si {
    fn begin_task(&mut self, _: &Ctx, learner: &mut Learner, _: &mut Rng) -> Result<()> {
        if self.anchor.is_none() {
            self.anchor = Some(learner.net.params.clone());
        }
        self.w.fill(0.0);
        Ok(())
    }

    fn train_step(
        &mut self,
        ctx: &Ctx,
        learner: &mut Learner,
        batch: &Examples,
        _: &mut Rng,
    ) -> Result<f64> {
        learner.zero_grad();
        let mut loss = add_cross_entropy(ctx, learner, batch, 1.0);
        let anchor = self.anchor.as_ref().expect("set in begin_task");
        let c = self.cfg.c;
        for (((p, a), om), g) in learner
            .net
            .params
            .iter()
            .zip(anchor)
            .zip(&self.omega)
            .zip(learner.grad.iter_mut())
        {
            let d = (p - a) as f64;
            let om = *om as f64;
            loss += c * om * d * d;
            *g += (2.0 * c * om * d) as f32;
        }
        let before = learner.net.params.clone();
        learner.step()?;
        accumulate_path(&mut self.w, &learner.grad, &before, &learner.net.params);
        Ok(loss)
    }

    fn end_task(&mut self, _: &Ctx, learner: &mut Learner, _: &mut Rng) -> Result<()> {
        let anchor = self.anchor.as_ref().expect("set in begin_task");
        update_omega(
            &mut self.omega,
            &self.w,
            anchor,
            &learner.net.params,
            self.cfg.epsilon,
        );
        self.anchor = Some(learner.net.params.clone());
        Ok(())
    }

    fn memory(&self) -> Vec<MemoryItem> {
        vec![MemoryItem {
            what: "importance, anchor and path integral".into(),
            floats: 3 * self.omega.len(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gradient descent with a * lr = 0.01 on a quadratic overestimates the loss decrease by
    /// a factor 1 / (1 - a lr / 2), about 0.5%.
    const PATH_TOL: f64 = 0.01;

    #[test]
    fn path_integral_on_a_quadratic_equals_the_loss_decrease() {
        // L = sum_k a_k / 2 (theta_k - c_k)^2, plain gradient descent.
        let a = [1.0f32, 4.0, 0.25];
        let c = [2.0f32, -1.0, 3.0];
        let lr = 0.0025f32;
        let mut theta = vec![0.0f32; 3];
        let start = theta.clone();
        let mut w = vec![0f32; 3];
        for _ in 0..4000 {
            let g: Vec<f32> = (0..3).map(|k| a[k] * (theta[k] - c[k])).collect();
            let before = theta.clone();
            for k in 0..3 {
                theta[k] -= lr * g[k];
            }
            accumulate_path(&mut w, &g, &before, &theta);
        }
        for k in 0..3 {
            let l = |t: f32| 0.5 * (a[k] * (t - c[k]) * (t - c[k])) as f64;
            let decrease = l(start[k]) - l(theta[k]);
            assert!(
                (w[k] as f64 - decrease).abs() <= PATH_TOL * decrease,
                "parameter {k}: path integral {} vs loss decrease {decrease}",
                w[k]
            );
        }
        // Eq. 5 by hand for the first parameter.
        let mut omega = vec![0f32; 3];
        update_omega(&mut omega, &w, &start, &theta, 0.1);
        let d = (theta[0] - start[0]) as f64;
        assert!((omega[0] as f64 - w[0] as f64 / (d * d + 0.1)).abs() < 1e-5);
    }
}
