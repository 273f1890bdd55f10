//! DQN: deep Q-learning with experience replay and a target network.
//!
//! Mnih et al., "Human-level control through deep reinforcement learning", Nature 2015
//! (arXiv:1312.5602 for the 2013 workshop version): minimise the Huber loss between
//! Q(s, a) and y = r + gamma (1 - terminated) max_a' Q_target(s', a') over uniformly
//! replayed transitions (Algorithm 1); the target network is a copy refreshed every C steps.
//! Options: Double DQN (van Hasselt, Guez & Silver 2016, arXiv:1509.06461, eq. 4: the online
//! network picks a', the target network values it) and dueling heads (Wang et al. 2016,
//! arXiv:1511.06581, eq. 9: Q = V + A - mean(A), here with linear V and A heads on a shared
//! trunk). Schedule and defaults follow Stable-Baselines3's `DQN` with the
//! rl-baselines3-zoo presets: epsilon decays linearly to its final value over a fraction of
//! the run, `gradient_steps` updates every `train_freq` steps, gradients clipped to norm 10.

use serde::{Deserialize, Serialize};

use genlab_core::{Result, Rng};

use crate::agents::{
    check_finite, config_error, parse_config, Agent, AlgoEntry, Report, Spec, Supports,
};
use crate::dist::argmax;
use crate::env::{Action, EnvCopyState, VecEnv};
use crate::nn::{Activation, Cache, Init, Mlp};
use crate::optim::{clip_grad_norm, Optimizer, OptimizerKind};
use crate::replay::{Batch, Replay};
use crate::saved::Saved;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Hidden layer widths (zoo: 256, 256).
    pub hidden: Vec<usize>,
    pub lr: f64,
    pub gamma: f64,
    pub batch_size: usize,
    pub buffer_size: usize,
    /// Environment steps before the first update.
    pub learning_starts: u64,
    /// Environment steps between rounds of updates.
    pub train_freq: u64,
    /// Updates per round.
    pub gradient_steps: usize,
    /// Environment steps between target-network copies.
    pub target_update_interval: u64,
    /// Fraction of the run over which epsilon decays from 1 to its final value.
    pub exploration_fraction: f64,
    pub exploration_final_eps: f64,
    pub max_grad_norm: f64,
    pub double_q: bool,
    pub dueling: bool,
    /// Environment copies stepped together.
    pub n_envs: usize,
}

impl Default for Config {
    /// SB3's DQN defaults, with the zoo's CartPole-v1 network and schedule.
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            lr: 2.3e-3,
            gamma: 0.99,
            batch_size: 64,
            buffer_size: 100_000,
            learning_starts: 1000,
            train_freq: 256,
            gradient_steps: 128,
            target_update_interval: 10,
            exploration_fraction: 0.16,
            exploration_final_eps: 0.04,
            max_grad_norm: 10.0, // SB3's default
            double_q: false,     // the Nature DQN; `double_q = true` for Double DQN
            dueling: false,
            n_envs: 1,
        }
    }
}

/// rl-baselines3-zoo's tuned DQN hyperparameters per task.
pub fn preset(env: &str) -> Config {
    let d = Config::default();
    match env {
        "acrobot" => Config {
            lr: 6.3e-4,
            batch_size: 128,
            buffer_size: 50_000,
            learning_starts: 0,
            target_update_interval: 250,
            train_freq: 4,
            gradient_steps: 4, // zoo: -1, one update per environment step collected
            exploration_fraction: 0.12,
            exploration_final_eps: 0.1,
            ..d
        },
        "mountain-car" => Config {
            lr: 4e-3,
            batch_size: 128,
            buffer_size: 10_000,
            learning_starts: 1000,
            gamma: 0.98,
            target_update_interval: 600,
            train_freq: 16,
            gradient_steps: 8,
            exploration_fraction: 0.2,
            exploration_final_eps: 0.07,
            ..d
        },
        _ => d,
    }
}

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "dqn",
    paper: "Mnih et al. 2015 (arXiv:1312.5602); Double DQN van Hasselt et al. 2016 (arXiv:1509.06461); dueling Wang et al. 2016 (arXiv:1511.06581)",
    description: "deep Q-network: replay buffer, target network, optional Double DQN and dueling heads",
    supports: Supports {
        discrete_actions: true,
        continuous_actions: false,
        tabular: false,
        multi_agent: false,
    },
    defaults: |env| serde_json::to_value(preset(env)).expect("config serialises"),
    build: |spec| Ok(Box::new(Dqn::new(spec)?)),
};

pub struct Dqn {
    cfg: Config,
    envs: VecEnv,
    n_actions: usize,
    q: Mlp,
    target: Mlp,
    opt: Optimizer,
    replay: Replay,
    rng: Rng,
    steps: u64,
    total_steps: u64,
    updates: u64,
    // Scratch.
    cache: Cache,
    tcache: Cache,
    grad: Vec<f32>,
    batch: Batch,
    prev_obs: Vec<f32>,
}

impl Dqn {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        if cfg.batch_size == 0 || cfg.n_envs == 0 || cfg.train_freq == 0 {
            return Err(config_error(
                "batch_size, n_envs and train_freq",
                "must be at least 1",
            ));
        }
        if cfg.buffer_size < cfg.batch_size {
            return Err(config_error(
                "buffer_size",
                format!(
                    "({}) must hold at least one batch (batch_size = {})",
                    cfg.buffer_size, cfg.batch_size
                ),
            ));
        }
        let entry = spec.env;
        let envs = VecEnv::new(
            || entry.make_single().expect("single"),
            cfg.n_envs,
            spec.seed,
        );
        let obs_dim = envs.obs_len;
        let n_actions = envs.copies[0].env.action_space().net_width();
        let mut init_rng = Rng::derive(spec.seed, "init");
        let mut sizes = vec![obs_dim];
        sizes.extend(&cfg.hidden);
        sizes.push(n_actions + cfg.dueling as usize);
        let q = Mlp::new(&sizes, Activation::Relu, Init::Torch, &mut init_rng);
        let target = q.clone();
        let opt = Optimizer::new(OptimizerKind::Adam { eps: 1e-8 }, q.num_params());
        Ok(Self {
            replay: Replay::new(cfg.buffer_size, obs_dim, 1),
            grad: vec![0.0; q.num_params()],
            prev_obs: vec![0.0; obs_dim],
            cfg,
            envs,
            n_actions,
            q,
            target,
            opt,
            rng: Rng::derive(spec.seed, "agent"),
            steps: 0,
            total_steps: spec.total_steps,
            updates: 0,
            cache: Cache::default(),
            tcache: Cache::default(),
            batch: Batch::default(),
        })
    }

    /// Linear decay from 1 to the final epsilon over `exploration_fraction` of the run.
    fn epsilon(&self) -> f64 {
        let frac = self.steps as f64 / (self.cfg.exploration_fraction * self.total_steps as f64);
        if frac >= 1.0 {
            self.cfg.exploration_final_eps
        } else {
            1.0 + frac * (self.cfg.exploration_final_eps - 1.0)
        }
    }

    /// Q-values `[batch, n_actions]` from the network output (dueling: V + A - mean A).
    fn q_values(out: &[f32], n: usize, dueling: bool, q: &mut Vec<f32>) {
        q.clear();
        if !dueling {
            q.extend_from_slice(out);
            return;
        }
        for row in out.chunks_exact(n + 1) {
            let (v, a) = (row[0], &row[1..]);
            let mean = a.iter().sum::<f32>() / n as f32;
            q.extend(a.iter().map(|x| v + x - mean));
        }
    }

    fn greedy(&mut self, obs: &[f32]) -> usize {
        let out = self.q.forward(obs, 1, &mut self.cache).to_vec();
        let mut q = Vec::new();
        Self::q_values(&out, self.n_actions, self.cfg.dueling, &mut q);
        argmax(&q)
    }

    fn update(&mut self) -> Result<f64> {
        let (n, b) = (self.n_actions, self.cfg.batch_size);
        let dueling = self.cfg.dueling;
        self.replay.sample(b, &mut self.rng, &mut self.batch);
        // Targets y = r + gamma (1 - done) Q_target(s', a*).
        let mut tq = Vec::new();
        let tout = self
            .target
            .forward(&self.batch.next_obs, b, &mut self.tcache);
        Self::q_values(tout, n, dueling, &mut tq);
        let mut best = Vec::with_capacity(b);
        if self.cfg.double_q {
            let mut oq = Vec::new();
            let oout = self.q.forward(&self.batch.next_obs, b, &mut self.cache);
            Self::q_values(oout, n, dueling, &mut oq);
            best.extend(oq.chunks_exact(n).map(argmax));
        } else {
            best.extend(tq.chunks_exact(n).map(argmax));
        }
        let gamma = self.cfg.gamma as f32;
        let y: Vec<f32> = (0..b)
            .map(|i| self.batch.rew[i] + gamma * (1.0 - self.batch.done[i]) * tq[i * n + best[i]])
            .collect();
        // Online Q(s, a) and the Huber loss's gradient.
        let out = self.q.forward(&self.batch.obs, b, &mut self.cache).to_vec();
        let mut q = Vec::new();
        Self::q_values(&out, n, dueling, &mut q);
        let w = n + dueling as usize;
        let mut dout = vec![0f32; b * w];
        let mut loss = 0.0f64;
        for i in 0..b {
            let a = self.batch.act[i] as usize;
            let d = q[i * n + a] - y[i];
            // smooth_l1 (beta 1), mean over the batch.
            let (l, g) = if d.abs() < 1.0 {
                (0.5 * d * d, d)
            } else {
                (d.abs() - 0.5, d.signum())
            };
            loss += l as f64;
            let g = g / b as f32;
            if dueling {
                // dQ_a/dV = 1, dQ_a/dA_j = [j = a] - 1/n.
                let row = &mut dout[i * w..(i + 1) * w];
                row[0] = g;
                for (j, r) in row[1..].iter_mut().enumerate() {
                    *r = g * ((j == a) as u8 as f32 - 1.0 / n as f32);
                }
            } else {
                dout[i * w + a] = g;
            }
        }
        loss /= b as f64;
        check_finite("the DQN loss", loss)?;
        self.grad.fill(0.0);
        self.q
            .backward(&mut self.cache, &dout, &mut self.grad, None);
        let norm = clip_grad_norm(&mut self.grad, self.cfg.max_grad_norm);
        check_finite("the DQN gradient norm", norm)?;
        self.opt.step(&mut self.q.params, &self.grad, self.cfg.lr);
        self.updates += 1;
        Ok(loss)
    }
}

impl Agent for Dqn {
    fn env_steps(&self) -> u64 {
        self.steps
    }

    fn train_unit(&mut self, report: &mut Report) -> Result<()> {
        let eps = self.epsilon();
        for i in 0..self.envs.len() {
            self.prev_obs.copy_from_slice(self.envs.obs_of(i));
            let a = if self.rng.uniform() < eps {
                self.rng.below(self.n_actions as u64) as usize
            } else {
                let o = self.prev_obs.clone();
                self.greedy(&o)
            };
            let (t, ep) = self.envs.step_one(i, Action::Discrete(a));
            let l = self.envs.obs_len;
            let next = if ep.is_some() {
                &self.envs.final_obs[i * l..(i + 1) * l]
            } else {
                self.envs.obs_of(i)
            };
            self.replay.push(
                &self.prev_obs,
                &[a as f32],
                t.reward as f32,
                next,
                t.terminated,
            );
            report.episodes.extend(ep);
        }
        let before = self.steps;
        self.steps += self.envs.len() as u64;
        let now = self.steps;
        let crossed = |every: u64| now / every != before / every;
        if self.steps > self.cfg.learning_starts && crossed(self.cfg.train_freq) {
            let mut sum = 0.0;
            for _ in 0..self.cfg.gradient_steps {
                sum += self.update()?;
            }
            if self.cfg.gradient_steps > 0 {
                report
                    .metrics
                    .push(("loss", sum / self.cfg.gradient_steps as f64));
            }
        }
        if crossed(self.cfg.target_update_interval) {
            self.target.params.copy_from_slice(&self.q.params);
        }
        Ok(())
    }

    fn act(&mut self, obs: &[f32], action: &mut Vec<f32>) {
        let a = self.greedy(obs);
        action.clear();
        action.push(a as f32);
    }

    fn save(&self) -> Saved {
        let mut s = Saved::default();
        s.put_net("q", &self.q);
        s.put_net("target", &self.target);
        s.put_opt("opt", &self.opt);
        self.replay.save(&mut s, "replay");
        s.put_json("envs", self.envs.save());
        s.put_json("rng", self.rng.state());
        s.put_json("steps", self.steps);
        s.put_json("updates", self.updates);
        s
    }

    fn load(&mut self, mut s: Saved) -> Result<()> {
        s.take_net("q", &mut self.q)?;
        s.take_net("target", &mut self.target)?;
        s.take_opt("opt", &mut self.opt)?;
        self.replay.load(&mut s, "replay")?;
        let envs: Vec<EnvCopyState> = s.get_json("envs")?;
        self.envs.load(&envs)?;
        self.rng = Rng::from_state(s.get_json("rng")?);
        self.steps = s.get_json("steps")?;
        self.updates = s.get_json("updates")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dueling_q_is_value_plus_centred_advantage() {
        // One row: V = 1, A = (2, 4) -> Q = 1 + (2, 4) - 3 = (0, 2).
        let mut q = Vec::new();
        Dqn::q_values(&[1.0, 2.0, 4.0], 2, true, &mut q);
        assert_eq!(q, vec![0.0, 2.0]);
        Dqn::q_values(&[1.0, 2.0], 2, false, &mut q);
        assert_eq!(q, vec![1.0, 2.0]);
    }

    #[test]
    fn presets_follow_the_zoo_per_task() {
        assert_eq!(preset("cartpole").train_freq, 256);
        assert_eq!(preset("acrobot").target_update_interval, 250);
        assert_eq!(preset("mountain-car").gamma, 0.98);
    }
}
