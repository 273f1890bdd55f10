//! The actor-critic networks shared by the policy-gradient agents (REINFORCE, A2C, A3C,
//! PPO) and the on-policy rollout buffer with generalized advantage estimation.
//!
//! The actor maps an observation to logits (discrete actions: a categorical distribution)
//! or to the mean of a diagonal Gaussian whose log standard deviation is a free parameter
//! vector (continuous actions, as SB3's `ActorCriticPolicy`); the critic is a separate MLP
//! with one output, V(s). Each agent computes, per sample, the derivative of its loss with
//! respect to log pi(a|s), the entropy weight and the derivative with respect to V(s); the
//! chain rule through the distribution is written out here (see `dist.rs`).
//!
//! GAE: Schulman et al., "High-dimensional continuous control using generalized advantage
//! estimation", ICLR 2016, arXiv:1506.02438, eq. 16: A_t = sum_l (gamma lambda)^l delta_{t+l},
//! delta_t = r_t + gamma V(s_{t+1}) - V(s_t), cut at episode ends (SB3's
//! `RolloutBuffer.compute_returns_and_advantage`).

use serde::{Deserialize, Serialize};

use genlab_core::{Result, Rng};

use crate::dist::{
    argmax, entropy, gaussian_entropy, gaussian_log_prob, sample_categorical, softmax,
};
use crate::env::{Action, Episode, Space, VecEnv};
use crate::nn::{Activation, Cache, Init, Mlp};
use crate::optim::{Optimizer, OptimizerKind};
use crate::saved::Saved;

/// Network shape of an actor-critic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// Hidden widths of the actor and of the critic (SB3: 64, 64).
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// Orthogonal initialisation (SB3's `ortho_init`); PyTorch's default otherwise.
    pub ortho_init: bool,
    /// Initial log standard deviation of a Gaussian policy.
    pub log_std_init: f32,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            hidden: vec![64, 64],
            activation: Activation::Tanh, // SB3's on-policy default
            ortho_init: true,
            log_std_init: 0.0,
        }
    }
}

/// Actor and critic with their gradients and optimizers.
#[derive(Clone)]
pub struct ActorCritic {
    pub pi: Mlp,
    pub vf: Mlp,
    /// Gaussian log standard deviations (empty for a discrete policy).
    pub log_std: Vec<f32>,
    pub discrete: bool,
    pub n_act: usize,
    pub low: Vec<f32>,
    pub high: Vec<f32>,
    pub g_pi: Vec<f32>,
    pub g_vf: Vec<f32>,
    pub g_std: Vec<f32>,
    pub opt_pi: Optimizer,
    pub opt_vf: Optimizer,
    pub opt_std: Optimizer,
    c_pi: Cache,
    c_vf: Cache,
    // Per-sample results of `evaluate`, kept for `backward`.
    probs: Vec<f32>,
    logits_lse: Vec<f32>,
    acts: Vec<f32>,
}

impl ActorCritic {
    pub fn new(
        obs_dim: usize,
        space: &Space,
        net: &NetConfig,
        opt: OptimizerKind,
        rng: &mut Rng,
    ) -> Self {
        let (discrete, n_act, low, high) = match space {
            Space::Discrete(n) => (true, *n, vec![], vec![]),
            Space::Box { low, high } => (false, low.len(), low.clone(), high.clone()),
        };
        let sizes = |out: usize| {
            let mut s = vec![obs_dim];
            s.extend(&net.hidden);
            s.push(out);
            s
        };
        let init = |out_gain: f64| {
            if net.ortho_init {
                Init::Orthogonal {
                    hidden: 2f64.sqrt(),
                    output: out_gain,
                }
            } else {
                Init::Torch
            }
        };
        let pi = Mlp::new(&sizes(n_act), net.activation, init(0.01), rng);
        let vf = Mlp::new(&sizes(1), net.activation, init(1.0), rng);
        let log_std = if discrete {
            vec![]
        } else {
            vec![net.log_std_init; n_act]
        };
        Self {
            g_pi: vec![0.0; pi.num_params()],
            g_vf: vec![0.0; vf.num_params()],
            g_std: vec![0.0; log_std.len()],
            opt_pi: Optimizer::new(opt, pi.num_params()),
            opt_vf: Optimizer::new(opt, vf.num_params()),
            opt_std: Optimizer::new(opt, log_std.len()),
            pi,
            vf,
            log_std,
            discrete,
            n_act,
            low,
            high,
            c_pi: Cache::default(),
            c_vf: Cache::default(),
            probs: Vec::new(),
            logits_lse: Vec::new(),
            acts: Vec::new(),
        }
    }

    /// Width of one stored action (1 for discrete).
    pub fn act_width(&self) -> usize {
        if self.discrete {
            1
        } else {
            self.n_act
        }
    }

    /// Acts on `obs` `[n, obs_dim]`: writes actions `[n, act_width]` (sampled, or the mode
    /// when `!sample`), their log-probabilities and the values V(s).
    #[allow(clippy::too_many_arguments)]
    pub fn act(
        &mut self,
        obs: &[f32],
        n: usize,
        sample: bool,
        rng: &mut Rng,
        actions: &mut Vec<f32>,
        logp: &mut Vec<f32>,
        values: &mut Vec<f32>,
    ) {
        actions.clear();
        logp.clear();
        values.clear();
        values.extend_from_slice(self.vf.forward(obs, n, &mut self.c_vf));
        let out = self.pi.forward(obs, n, &mut self.c_pi);
        let k = self.n_act;
        if self.discrete {
            let mut p = vec![0f32; k];
            for row in out.chunks_exact(k) {
                let lse = softmax(row, &mut p);
                let a = if sample {
                    sample_categorical(&p, rng)
                } else {
                    argmax(row)
                };
                actions.push(a as f32);
                logp.push(row[a] - lse);
            }
        } else {
            for row in out.chunks_exact(k) {
                let start = actions.len();
                for (m, ls) in row.iter().zip(&self.log_std) {
                    let a = if sample {
                        m + ls.exp() * rng.normal() as f32
                    } else {
                        *m
                    };
                    actions.push(a);
                }
                logp.push(gaussian_log_prob(&actions[start..], row, &self.log_std));
            }
        }
    }

    /// Clips a Gaussian action to the action box (what the environment receives).
    pub fn clip_action(&self, a: &[f32], out: &mut Vec<f32>) {
        out.clear();
        if self.discrete {
            out.extend_from_slice(a);
        } else {
            out.extend(
                a.iter()
                    .zip(self.low.iter().zip(&self.high))
                    .map(|(x, (l, h))| x.clamp(*l, *h)),
            );
        }
    }

    /// Forward pass for an update: log pi(a|s), entropy and V(s) of each of `n` samples.
    pub fn evaluate(
        &mut self,
        obs: &[f32],
        actions: &[f32],
        n: usize,
        logp: &mut Vec<f32>,
        ent: &mut Vec<f32>,
        values: &mut Vec<f32>,
    ) {
        logp.clear();
        ent.clear();
        values.clear();
        values.extend_from_slice(self.vf.forward(obs, n, &mut self.c_vf));
        let out = self.pi.forward(obs, n, &mut self.c_pi);
        let k = self.n_act;
        self.acts.clear();
        self.acts.extend_from_slice(actions);
        if self.discrete {
            self.probs.resize(n * k, 0.0);
            self.logits_lse.clear();
            for (i, row) in out.chunks_exact(k).enumerate() {
                let p = &mut self.probs[i * k..(i + 1) * k];
                let lse = softmax(row, p);
                self.logits_lse.push(lse);
                let a = actions[i] as usize;
                logp.push(row[a] - lse);
                ent.push(entropy(row, p, lse));
            }
        } else {
            let h = gaussian_entropy(&self.log_std);
            for (i, row) in out.chunks_exact(k).enumerate() {
                logp.push(gaussian_log_prob(
                    &actions[i * k..(i + 1) * k],
                    row,
                    &self.log_std,
                ));
                ent.push(h);
            }
        }
    }

    /// Backward pass for the last [`ActorCritic::evaluate`]: adds to the gradients the loss
    /// whose derivatives are `dlogp[i]` = dL/d log pi(a_i|s_i), `dent` = dL/d entropy_i
    /// (the same for every sample) and `dvalue[i]` = dL/d V(s_i).
    pub fn backward(&mut self, dlogp: &[f32], dent: f32, dvalue: &[f32]) {
        let n = dlogp.len();
        let k = self.n_act;
        let mut dout = vec![0f32; n * k];
        if self.discrete {
            let logits = self.c_pi.out.clone();
            for i in 0..n {
                let p = &self.probs[i * k..(i + 1) * k];
                let z = &logits[i * k..(i + 1) * k];
                let lse = self.logits_lse[i];
                let h = entropy(z, p, lse);
                let a = self.acts[i] as usize;
                for j in 0..k {
                    // d logp/dz_j = [j = a] - p_j; dH/dz_j = -p_j (log p_j + H).
                    let dl = (j == a) as u8 as f32 - p[j];
                    let dh = -p[j] * ((z[j] - lse) + h);
                    dout[i * k + j] = dlogp[i] * dl + dent * dh;
                }
            }
        } else {
            let mu = self.c_pi.out.clone();
            for i in 0..n {
                for j in 0..k {
                    let s = self.log_std[j].exp();
                    let z = (self.acts[i * k + j] - mu[i * k + j]) / s;
                    // d logp/d mu = z / sigma; d logp/d log sigma = z^2 - 1; dH/d log sigma = 1.
                    dout[i * k + j] = dlogp[i] * z / s;
                    self.g_std[j] += dlogp[i] * (z * z - 1.0) + dent;
                }
            }
        }
        self.pi
            .backward(&mut self.c_pi, &dout, &mut self.g_pi, None);
        self.vf
            .backward(&mut self.c_vf, dvalue, &mut self.g_vf, None);
    }

    pub fn zero_grad(&mut self) {
        self.g_pi.fill(0.0);
        self.g_vf.fill(0.0);
        self.g_std.fill(0.0);
    }

    /// Clips the global gradient norm (all parameters together, as SB3) and steps; returns
    /// the norm before clipping.
    pub fn step(&mut self, lr: f64, max_grad_norm: f64) -> f64 {
        let sq = |g: &[f32]| g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
        let norm = (sq(&self.g_pi) + sq(&self.g_vf) + sq(&self.g_std)).sqrt();
        if max_grad_norm > 0.0 && norm.is_finite() && norm > max_grad_norm {
            let c = (max_grad_norm / (norm + 1e-6)) as f32;
            for g in [&mut self.g_pi, &mut self.g_vf, &mut self.g_std] {
                g.iter_mut().for_each(|x| *x *= c);
            }
        }
        self.opt_pi.step(&mut self.pi.params, &self.g_pi, lr);
        self.opt_vf.step(&mut self.vf.params, &self.g_vf, lr);
        if !self.log_std.is_empty() {
            self.opt_std.step(&mut self.log_std, &self.g_std, lr);
        }
        norm
    }

    pub fn save(&self, s: &mut Saved, name: &str) {
        s.put_net(&format!("{name}.pi"), &self.pi);
        s.put_net(&format!("{name}.vf"), &self.vf);
        s.put(format!("{name}.log_std"), &self.log_std);
        s.put_opt(&format!("{name}.opt_pi"), &self.opt_pi);
        s.put_opt(&format!("{name}.opt_vf"), &self.opt_vf);
        s.put_opt(&format!("{name}.opt_std"), &self.opt_std);
    }

    pub fn load(&mut self, s: &mut Saved, name: &str) -> Result<()> {
        s.take_net(&format!("{name}.pi"), &mut self.pi)?;
        s.take_net(&format!("{name}.vf"), &mut self.vf)?;
        let ls = s.take(&format!("{name}.log_std"))?;
        if ls.len() != self.log_std.len() {
            return Err(genlab_core::Error::Checkpoint(
                "log_std has the wrong size".into(),
            ));
        }
        self.log_std = ls;
        s.take_opt(&format!("{name}.opt_pi"), &mut self.opt_pi)?;
        s.take_opt(&format!("{name}.opt_vf"), &mut self.opt_vf)?;
        s.take_opt(&format!("{name}.opt_std"), &mut self.opt_std)?;
        Ok(())
    }
}

/// One on-policy rollout: `[T, N]` steps of `N` environment copies.
#[derive(Default, Clone)]
pub struct Rollout {
    pub t: usize,
    pub n: usize,
    pub obs_dim: usize,
    pub act_w: usize,
    pub obs: Vec<f32>,
    pub actions: Vec<f32>,
    pub rewards: Vec<f32>,
    /// 1 where the observation is the first of an episode.
    pub starts: Vec<f32>,
    pub values: Vec<f32>,
    pub logp: Vec<f32>,
    pub advantages: Vec<f32>,
    pub returns: Vec<f32>,
}

impl Rollout {
    pub fn clear(&mut self, n: usize, obs_dim: usize, act_w: usize) {
        self.t = 0;
        self.n = n;
        self.obs_dim = obs_dim;
        self.act_w = act_w;
        for v in [
            &mut self.obs,
            &mut self.actions,
            &mut self.rewards,
            &mut self.starts,
            &mut self.values,
            &mut self.logp,
        ] {
            v.clear();
        }
    }

    /// GAE(gamma, lambda) advantages and returns (advantage + value), given the values of
    /// the observations after the last step and whether they start new episodes.
    pub fn compute_gae(
        &mut self,
        last_values: &[f32],
        last_starts: &[f32],
        gamma: f32,
        lambda: f32,
    ) {
        let (t, n) = (self.t, self.n);
        self.advantages = vec![0.0; t * n];
        for e in 0..n {
            let mut last = 0.0f32;
            for s in (0..t).rev() {
                let (next_nonterminal, next_value) = if s == t - 1 {
                    (1.0 - last_starts[e], last_values[e])
                } else {
                    (
                        1.0 - self.starts[(s + 1) * n + e],
                        self.values[(s + 1) * n + e],
                    )
                };
                let i = s * n + e;
                let delta =
                    self.rewards[i] + gamma * next_value * next_nonterminal - self.values[i];
                last = delta + gamma * lambda * next_nonterminal * last;
                self.advantages[i] = last;
            }
        }
        self.returns = self
            .advantages
            .iter()
            .zip(&self.values)
            .map(|(a, v)| a + v)
            .collect();
    }
}

/// Collects `steps` steps of every copy of `envs` with the sampling policy into `ro`, then
/// computes GAE. `starts[i]` says whether copy `i`'s current observation begins an episode
/// (kept across rollouts). A time-limit truncation is bootstrapped as SB3 does: the reward
/// of the cut step gets gamma V(final observation) added.
#[allow(clippy::too_many_arguments)]
pub fn collect(
    ac: &mut ActorCritic,
    envs: &mut VecEnv,
    starts: &mut [f32],
    steps: usize,
    gamma: f32,
    lambda: f32,
    rng: &mut Rng,
    ro: &mut Rollout,
    episodes: &mut Vec<Episode>,
) {
    let n = envs.len();
    let d = envs.obs_len;
    let w = ac.act_width();
    ro.clear(n, d, w);
    let (mut acts, mut logp, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let mut clipped = Vec::new();
    let (mut tv_a, mut tv_l, mut tv_v) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..steps {
        ac.act(&envs.obs, n, true, rng, &mut acts, &mut logp, &mut values);
        ro.obs.extend_from_slice(&envs.obs);
        ro.actions.extend_from_slice(&acts);
        ro.values.extend_from_slice(&values);
        ro.logp.extend_from_slice(&logp);
        ro.starts.extend_from_slice(starts);
        for i in 0..n {
            ac.clip_action(&acts[i * w..(i + 1) * w], &mut clipped);
            let action = if ac.discrete {
                Action::Discrete(clipped[0] as usize)
            } else {
                Action::Continuous(&clipped)
            };
            let (t, ep) = envs.step_one(i, action);
            let mut r = t.reward as f32;
            if t.truncated && !t.terminated {
                let fo = envs.final_obs[i * d..(i + 1) * d].to_vec();
                ac.act(&fo, 1, false, rng, &mut tv_a, &mut tv_l, &mut tv_v);
                r += gamma * tv_v[0];
            }
            ro.rewards.push(r);
            starts[i] = (t.terminated || t.truncated) as u8 as f32;
            episodes.extend(ep);
        }
        ro.t += 1;
    }
    ac.act(&envs.obs, n, false, rng, &mut acts, &mut logp, &mut values);
    ro.compute_gae(&values, starts, gamma, lambda);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gae_with_lambda_one_is_the_discounted_return_minus_value() {
        let mut r = Rollout::default();
        r.clear(1, 1, 1);
        r.t = 3;
        r.rewards = vec![1.0, 2.0, 3.0];
        r.values = vec![0.5, 0.25, 0.125];
        r.starts = vec![1.0, 0.0, 0.0];
        r.compute_gae(&[4.0], &[0.0], 0.5, 1.0);
        // G_0 = 1 + 0.5*2 + 0.25*3 + 0.125*4 = 3.25
        assert!((r.returns[0] - 3.25).abs() < 1e-6, "{:?}", r.returns);
        assert!((r.advantages[0] - 2.75).abs() < 1e-6);
        // An episode start cuts the bootstrap: the last step's next value is ignored.
        r.compute_gae(&[4.0], &[1.0], 0.5, 1.0);
        assert!((r.returns[2] - 3.0).abs() < 1e-6);
    }
}
