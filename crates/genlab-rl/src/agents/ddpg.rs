//! DDPG: deep deterministic policy gradient.
//!
//! Lillicrap et al., "Continuous control with deep reinforcement learning", ICLR 2016,
//! arXiv:1509.02971, Algorithm 1: a deterministic actor mu(s) and a critic Q(s, a) learned
//! off-policy from replay; the critic regresses y = r + gamma (1 - terminated)
//! Q'(s', mu'(s')) (eq. 5-6), the actor follows the deterministic policy gradient
//! grad_a Q(s, a)|a=mu(s) grad_theta mu(s) (eq. 6, Silver et al. 2014), and the target
//! networks trail by Polyak averaging with rate tau. Exploration adds Gaussian noise to the
//! actor's action (as SB3 and the TD3 paper do, rather than the original Ornstein-Uhlenbeck
//! process); the first `learning_starts` steps act uniformly at random.
//!
//! This file also holds the engine that TD3 (`td3.rs`) extends: twin critics with the
//! minimum in the target, delayed actor updates and target policy smoothing are its three
//! settings (`n_critics`, `policy_delay`, `target_noise`); DDPG is the engine with one
//! critic, no delay and no smoothing. Actions are handled in [-1, 1] (tanh output) and
//! scaled to the environment's box when stepping, as SB3 does.

use serde::{Deserialize, Serialize};

use genlab_core::{Result, Rng};

use crate::agents::{
    check_finite, config_error, parse_config, Agent, AlgoEntry, Report, Spec, Supports,
};
use crate::env::{Action, EnvCopyState, VecEnv};
use crate::nn::{Activation, Cache, Init, Mlp};
use crate::optim::{Optimizer, OptimizerKind};
use crate::replay::{Batch, Replay};
use crate::saved::Saved;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Hidden widths of actor and critics (zoo Pendulum: 400, 300).
    pub hidden: Vec<usize>,
    pub lr: f64,
    pub gamma: f64,
    pub tau: f64,
    pub batch_size: usize,
    pub buffer_size: usize,
    pub learning_starts: u64,
    /// Environment steps between rounds of updates, and updates per round.
    pub train_freq: u64,
    pub gradient_steps: usize,
    /// Std of the Gaussian exploration noise (in [-1, 1] action units).
    pub action_noise: f64,
    /// Critics (2 for TD3's clipped double Q).
    pub n_critics: usize,
    /// Critic updates per actor and target update.
    pub policy_delay: u64,
    /// Target policy smoothing noise std and clip (0: none).
    pub target_noise: f64,
    pub target_noise_clip: f64,
    pub n_envs: usize,
}

impl Default for Config {
    /// SB3's DDPG with the zoo's Pendulum-v1 settings.
    fn default() -> Self {
        Self {
            hidden: vec![400, 300],
            lr: 1e-3,
            gamma: 0.98,
            tau: 0.005,
            batch_size: 256,
            buffer_size: 200_000,
            learning_starts: 10_000,
            train_freq: 1,
            gradient_steps: 1,
            action_noise: 0.1,
            n_critics: 1,
            policy_delay: 1,
            target_noise: 0.0,
            target_noise_clip: 0.0,
            n_envs: 1,
        }
    }
}

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "ddpg",
    paper: "Lillicrap et al. 2016 (arXiv:1509.02971)",
    description:
        "deep deterministic policy gradient: deterministic actor, Q critic, replay, Polyak targets",
    supports: Supports {
        discrete_actions: false,
        continuous_actions: true,
        tabular: false,
        multi_agent: false,
    },
    defaults: |_| serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(Engine::new(spec, "ddpg")?)),
};

/// The deterministic actor-critic of DDPG and TD3.
pub struct Engine {
    name: &'static str,
    cfg: Config,
    envs: VecEnv,
    act_dim: usize,
    low: Vec<f32>,
    high: Vec<f32>,
    actor: Mlp,
    actor_t: Mlp,
    critics: Vec<Mlp>,
    critics_t: Vec<Mlp>,
    opt_actor: Optimizer,
    opt_critics: Vec<Optimizer>,
    replay: Replay,
    rng: Rng,
    steps: u64,
    updates: u64,
    // Scratch.
    ca: Cache,
    cc: Cache,
    ct: Cache,
    g_actor: Vec<f32>,
    g_critic: Vec<f32>,
    batch: Batch,
    x: Vec<f32>,
    prev_obs: Vec<f32>,
}

/// `[obs | act]` rows for a critic.
fn concat(obs: &[f32], act: &[f32], d: usize, a: usize, out: &mut Vec<f32>) {
    out.clear();
    for (o, u) in obs.chunks_exact(d).zip(act.chunks_exact(a)) {
        out.extend_from_slice(o);
        out.extend_from_slice(u);
    }
}

impl Engine {
    pub fn new(spec: &Spec, name: &'static str) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        if cfg.batch_size == 0
            || cfg.n_envs == 0
            || cfg.train_freq == 0
            || cfg.n_critics == 0
            || cfg.policy_delay == 0
        {
            return Err(config_error(
                "batch_size, n_envs, train_freq, n_critics and policy_delay",
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
        let (low, high) = match envs.copies[0].env.action_space() {
            crate::env::Space::Box { low, high } => (low, high),
            crate::env::Space::Discrete(_) => unreachable!("checked by the registry"),
        };
        let (d, a) = (envs.obs_len, low.len());
        let mut init = Rng::derive(spec.seed, "init");
        let sizes = |i: usize, o: usize| {
            let mut s = vec![i];
            s.extend(&cfg.hidden);
            s.push(o);
            s
        };
        let actor = Mlp::new(&sizes(d, a), Activation::Relu, Init::Torch, &mut init);
        let critics: Vec<Mlp> = (0..cfg.n_critics)
            .map(|_| Mlp::new(&sizes(d + a, 1), Activation::Relu, Init::Torch, &mut init))
            .collect();
        let adam = OptimizerKind::Adam { eps: 1e-8 };
        Ok(Self {
            name,
            replay: Replay::new(cfg.buffer_size, d, a),
            g_actor: vec![0.0; actor.num_params()],
            g_critic: vec![0.0; critics[0].num_params()],
            opt_actor: Optimizer::new(adam, actor.num_params()),
            opt_critics: critics
                .iter()
                .map(|c| Optimizer::new(adam, c.num_params()))
                .collect(),
            actor_t: actor.clone(),
            critics_t: critics.clone(),
            actor,
            critics,
            prev_obs: vec![0.0; d],
            cfg,
            envs,
            act_dim: a,
            low,
            high,
            rng: Rng::derive(spec.seed, "agent"),
            steps: 0,
            updates: 0,
            ca: Cache::default(),
            cc: Cache::default(),
            ct: Cache::default(),
            batch: Batch::default(),
            x: Vec::new(),
        })
    }

    /// mu(s) in [-1, 1] for `n` observations.
    fn policy(net: &Mlp, obs: &[f32], n: usize, cache: &mut Cache, out: &mut Vec<f32>) {
        out.clear();
        out.extend(net.forward(obs, n, cache).iter().map(|z| z.tanh()));
    }

    /// A [-1, 1] action scaled to the environment's box.
    fn to_env(&self, a: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            a.iter()
                .zip(self.low.iter().zip(&self.high))
                .map(|(x, (l, h))| l + (x + 1.0) * 0.5 * (h - l)),
        );
    }

    fn update(&mut self) -> Result<f64> {
        let (b, d, a) = (self.cfg.batch_size, self.envs.obs_len, self.act_dim);
        self.replay.sample(b, &mut self.rng, &mut self.batch);
        // Target y = r + gamma (1 - done) min_i Q'_i(s', clip(mu'(s') + eps, -1, 1)).
        let mut next_a = Vec::new();
        Self::policy(
            &self.actor_t,
            &self.batch.next_obs,
            b,
            &mut self.ct,
            &mut next_a,
        );
        if self.cfg.target_noise > 0.0 {
            let (s, c) = (self.cfg.target_noise, self.cfg.target_noise_clip);
            for v in &mut next_a {
                let e = (s * self.rng.normal()).clamp(-c, c) as f32;
                *v = (*v + e).clamp(-1.0, 1.0);
            }
        }
        concat(&self.batch.next_obs, &next_a, d, a, &mut self.x);
        let mut q_next = vec![f32::INFINITY; b];
        for t in &self.critics_t {
            for (m, q) in q_next.iter_mut().zip(t.forward(&self.x, b, &mut self.ct)) {
                *m = m.min(*q);
            }
        }
        let gamma = self.cfg.gamma as f32;
        let y: Vec<f32> = (0..b)
            .map(|i| self.batch.rew[i] + gamma * (1.0 - self.batch.done[i]) * q_next[i])
            .collect();
        // Critics: sum over critics of MSE(Q_i(s, a), y).
        concat(&self.batch.obs, &self.batch.act, d, a, &mut self.x);
        let mut loss = 0.0f64;
        let mut dq = vec![0f32; b];
        for k in 0..self.critics.len() {
            let q = self.critics[k].forward(&self.x, b, &mut self.cc);
            for i in 0..b {
                let e = q[i] - y[i];
                loss += (e * e) as f64 / b as f64;
                dq[i] = 2.0 * e / b as f32;
            }
            self.g_critic.fill(0.0);
            self.critics[k].backward(&mut self.cc, &dq, &mut self.g_critic, None);
            self.opt_critics[k].step(&mut self.critics[k].params, &self.g_critic, self.cfg.lr);
        }
        check_finite(&format!("the {} critic loss", self.name), loss)?;
        self.updates += 1;
        if self.updates.is_multiple_of(self.cfg.policy_delay) {
            // Actor: minimise -mean Q_1(s, mu(s)).
            let mut mu = Vec::new();
            let out_z = self
                .actor
                .forward(&self.batch.obs, b, &mut self.ca)
                .to_vec();
            mu.extend(out_z.iter().map(|z| z.tanh()));
            concat(&self.batch.obs, &mu, d, a, &mut self.x);
            let q = self.critics[0].forward(&self.x, b, &mut self.cc).to_vec();
            let actor_loss = -q.iter().map(|v| *v as f64).sum::<f64>() / b as f64;
            check_finite(&format!("the {} actor loss", self.name), actor_loss)?;
            let dq = vec![-1.0 / b as f32; b];
            let mut dx = Vec::new();
            self.critics[0].backward_opt(&mut self.cc, &dq, None, Some(&mut dx));
            // dL/dz = dL/da (the action part of the critic's input) * (1 - tanh^2).
            let mut dz = vec![0f32; b * a];
            for i in 0..b {
                for j in 0..a {
                    let m = mu[i * a + j];
                    dz[i * a + j] = dx[i * (d + a) + d + j] * (1.0 - m * m);
                }
            }
            self.g_actor.fill(0.0);
            self.actor
                .backward(&mut self.ca, &dz, &mut self.g_actor, None);
            self.opt_actor
                .step(&mut self.actor.params, &self.g_actor, self.cfg.lr);
            let tau = self.cfg.tau as f32;
            for (t, c) in self.critics_t.iter_mut().zip(&self.critics) {
                t.polyak_from(c, tau);
            }
            self.actor_t.polyak_from(&self.actor, tau);
        }
        Ok(loss)
    }
}

impl Agent for Engine {
    fn env_steps(&self) -> u64 {
        self.steps
    }

    fn train_unit(&mut self, report: &mut Report) -> Result<()> {
        let (d, a) = (self.envs.obs_len, self.act_dim);
        let mut act = Vec::with_capacity(a);
        let mut env_act = Vec::with_capacity(a);
        for i in 0..self.envs.len() {
            self.prev_obs.copy_from_slice(self.envs.obs_of(i));
            if self.steps < self.cfg.learning_starts {
                act.clear();
                act.extend((0..a).map(|_| (2.0 * self.rng.uniform() - 1.0) as f32));
            } else {
                let obs = self.prev_obs.clone();
                Self::policy(&self.actor, &obs, 1, &mut self.ca, &mut act);
                for v in &mut act {
                    *v = (*v + (self.cfg.action_noise * self.rng.normal()) as f32).clamp(-1.0, 1.0);
                }
            }
            self.to_env(&act, &mut env_act);
            let (t, ep) = self.envs.step_one(i, Action::Continuous(&env_act));
            let next = if ep.is_some() {
                &self.envs.final_obs[i * d..(i + 1) * d]
            } else {
                self.envs.obs_of(i)
            };
            self.replay
                .push(&self.prev_obs, &act, t.reward as f32, next, t.terminated);
            report.episodes.extend(ep);
        }
        let before = self.steps;
        self.steps += self.envs.len() as u64;
        let crossed = self.steps / self.cfg.train_freq != before / self.cfg.train_freq;
        if self.steps > self.cfg.learning_starts && crossed {
            let mut sum = 0.0;
            for _ in 0..self.cfg.gradient_steps {
                sum += self.update()?;
            }
            if self.cfg.gradient_steps > 0 {
                report
                    .metrics
                    .push(("critic_loss", sum / self.cfg.gradient_steps as f64));
            }
        }
        Ok(())
    }

    fn act(&mut self, obs: &[f32], action: &mut Vec<f32>) {
        let mut a = Vec::new();
        Self::policy(&self.actor, obs, 1, &mut self.ca, &mut a);
        self.to_env(&a, action);
    }

    fn save(&self) -> Saved {
        let mut s = Saved::default();
        s.put_net("actor", &self.actor);
        s.put_net("actor_target", &self.actor_t);
        s.put_opt("opt_actor", &self.opt_actor);
        for (k, (c, t)) in self.critics.iter().zip(&self.critics_t).enumerate() {
            s.put_net(&format!("critic{k}"), c);
            s.put_net(&format!("critic{k}_target"), t);
            s.put_opt(&format!("opt_critic{k}"), &self.opt_critics[k]);
        }
        self.replay.save(&mut s, "replay");
        s.put_json("envs", self.envs.save());
        s.put_json("rng", self.rng.state());
        s.put_json("steps", self.steps);
        s.put_json("updates", self.updates);
        s
    }

    fn load(&mut self, mut s: Saved) -> Result<()> {
        s.take_net("actor", &mut self.actor)?;
        s.take_net("actor_target", &mut self.actor_t)?;
        s.take_opt("opt_actor", &mut self.opt_actor)?;
        for k in 0..self.critics.len() {
            s.take_net(&format!("critic{k}"), &mut self.critics[k])?;
            s.take_net(&format!("critic{k}_target"), &mut self.critics_t[k])?;
            s.take_opt(&format!("opt_critic{k}"), &mut self.opt_critics[k])?;
        }
        self.replay.load(&mut s, "replay")?;
        let envs: Vec<EnvCopyState> = s.get_json("envs")?;
        self.envs.load(&envs)?;
        self.rng = Rng::from_state(s.get_json("rng")?);
        self.steps = s.get_json("steps")?;
        self.updates = s.get_json("updates")?;
        Ok(())
    }
}
