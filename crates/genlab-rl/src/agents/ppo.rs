//! PPO: proximal policy optimization with the clipped surrogate objective.
//!
//! Schulman et al., "Proximal policy optimization algorithms", 2017, arXiv:1707.06347:
//! maximise L^CLIP = E[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)] (eq. 7) with
//! r_t = pi(a_t|s_t) / pi_old(a_t|s_t), minus c1 (V(s_t) - R_t)^2 plus c2 times the entropy
//! (eq. 9), over several epochs of minibatches of a rollout of N copies x T steps, with
//! GAE advantages (Algorithm 1). As SB3's `PPO`: advantages normalised per minibatch, one
//! Adam (eps 1e-5) over actor, critic and log std, gradients clipped to a global norm,
//! learning rate and clip range decaying linearly to 0 over the run when `linear_decay` is
//! on (the zoo's `lin_` schedules).

use serde::{Deserialize, Serialize};

use genlab_core::{Result, Rng};

use crate::agents::{
    check_finite, config_error, parse_config, Agent, AlgoEntry, Report, Spec, Supports,
};
use crate::env::{EnvCopyState, VecEnv};
use crate::optim::OptimizerKind;
use crate::policy::{collect, ActorCritic, NetConfig, Rollout};
use crate::saved::Saved;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub net: NetConfig,
    pub n_envs: usize,
    /// Steps per copy per rollout.
    pub n_steps: usize,
    pub batch_size: usize,
    pub n_epochs: usize,
    pub lr: f64,
    pub gamma: f64,
    pub gae_lambda: f64,
    pub clip_range: f64,
    /// Learning rate and clip range decay linearly to 0 over the run.
    pub linear_decay: bool,
    pub ent_coef: f64,
    pub vf_coef: f64,
    pub max_grad_norm: f64,
}

impl Default for Config {
    /// rl-baselines3-zoo's CartPole-v1 PPO (lin_1e-3, lin_0.2).
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            n_envs: 8,
            n_steps: 32,
            batch_size: 256,
            n_epochs: 20,
            lr: 1e-3,
            gamma: 0.98,
            gae_lambda: 0.8,
            clip_range: 0.2,
            linear_decay: true,
            ent_coef: 0.0,
            vf_coef: 0.5,       // SB3's default
            max_grad_norm: 0.5, // SB3's default
        }
    }
}

/// Zoo presets per task (SB3 defaults elsewhere).
pub fn preset(env: &str) -> Config {
    let d = Config::default();
    match env {
        "cartpole" => d,
        "pendulum" => Config {
            // The zoo's Pendulum-v1 PPO without gSDE.
            n_envs: 4,
            n_steps: 1024,
            batch_size: 64,
            n_epochs: 10,
            gamma: 0.9,
            gae_lambda: 0.95,
            linear_decay: false,
            net: NetConfig {
                log_std_init: -2.0,
                ..NetConfig::default()
            },
            ..d
        },
        _ => Config {
            // SB3's PPO defaults.
            n_envs: 8,
            n_steps: 256,
            batch_size: 64,
            n_epochs: 10,
            lr: 3e-4,
            gamma: 0.99,
            gae_lambda: 0.95,
            linear_decay: false,
            ..d
        },
    }
}

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "ppo",
    paper: "Schulman et al. 2017 (arXiv:1707.06347); GAE Schulman et al. 2016 (arXiv:1506.02438)",
    description: "proximal policy optimization: clipped surrogate objective, GAE, minibatch epochs",
    supports: Supports {
        discrete_actions: true,
        continuous_actions: true,
        tabular: false,
        multi_agent: false,
    },
    defaults: |env| serde_json::to_value(preset(env)).expect("config serialises"),
    build: |spec| Ok(Box::new(Ppo::new(spec)?)),
};

pub struct Ppo {
    cfg: Config,
    envs: VecEnv,
    ac: ActorCritic,
    rng: Rng,
    starts: Vec<f32>,
    steps: u64,
    total_steps: u64,
    ro: Rollout,
}

impl Ppo {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        if cfg.n_envs == 0 || cfg.n_steps == 0 || cfg.batch_size == 0 || cfg.n_epochs == 0 {
            return Err(config_error(
                "n_envs, n_steps, batch_size and n_epochs",
                "must be at least 1",
            ));
        }
        let entry = spec.env;
        let envs = VecEnv::new(
            || entry.make_single().expect("single"),
            cfg.n_envs,
            spec.seed,
        );
        let space = envs.copies[0].env.action_space();
        let mut init = Rng::derive(spec.seed, "init");
        let ac = ActorCritic::new(
            envs.obs_len,
            &space,
            &cfg.net,
            OptimizerKind::Adam { eps: 1e-5 },
            &mut init,
        );
        Ok(Self {
            starts: vec![1.0; cfg.n_envs],
            cfg,
            envs,
            ac,
            rng: Rng::derive(spec.seed, "agent"),
            steps: 0,
            total_steps: spec.total_steps,
            ro: Rollout::default(),
        })
    }
}

impl Agent for Ppo {
    fn env_steps(&self) -> u64 {
        self.steps
    }

    fn train_unit(&mut self, report: &mut Report) -> Result<()> {
        let c = &self.cfg;
        let (gamma, lam) = (c.gamma as f32, c.gae_lambda as f32);
        collect(
            &mut self.ac,
            &mut self.envs,
            &mut self.starts,
            c.n_steps,
            gamma,
            lam,
            &mut self.rng,
            &mut self.ro,
            &mut report.episodes,
        );
        // SB3 sets the schedules from the progress after this rollout's steps.
        self.steps += (c.n_steps * c.n_envs) as u64;
        let remaining = if c.linear_decay {
            (1.0 - self.steps as f64 / self.total_steps.max(1) as f64).max(0.0)
        } else {
            1.0
        };
        let (lr, clip) = (c.lr * remaining, (c.clip_range * remaining) as f32);
        let total = self.ro.t * self.ro.n;
        let (d, w) = (self.ro.obs_dim, self.ro.act_w);
        let mut idx: Vec<usize> = (0..total).collect();
        let (mut obs, mut act, mut logp, mut ent, mut val) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut pl_sum, mut vl_sum, mut n_mb) = (0.0f64, 0.0f64, 0usize);
        for _ in 0..c.n_epochs {
            self.rng.shuffle(&mut idx);
            for mb in idx.chunks(c.batch_size) {
                let b = mb.len();
                obs.clear();
                act.clear();
                for &i in mb {
                    obs.extend_from_slice(&self.ro.obs[i * d..(i + 1) * d]);
                    act.extend_from_slice(&self.ro.actions[i * w..(i + 1) * w]);
                }
                // Normalised advantages (torch's unbiased std, + 1e-8).
                let adv: Vec<f32> = mb.iter().map(|&i| self.ro.advantages[i]).collect();
                let m = adv.iter().sum::<f32>() / b as f32;
                let sd = if b > 1 {
                    (adv.iter().map(|a| (a - m).powi(2)).sum::<f32>() / (b - 1) as f32).sqrt()
                } else {
                    0.0
                };
                let adv: Vec<f32> = adv.iter().map(|a| (a - m) / (sd + 1e-8)).collect();
                self.ac
                    .evaluate(&obs, &act, b, &mut logp, &mut ent, &mut val);
                let mut dlogp = vec![0f32; b];
                let mut dval = vec![0f32; b];
                let (mut pl, mut vl) = (0.0f64, 0.0f64);
                for (k, &i) in mb.iter().enumerate() {
                    let ratio = (logp[k] - self.ro.logp[i]).exp();
                    let a = adv[k];
                    let clipped = ratio.clamp(1.0 - clip, 1.0 + clip);
                    let (u, cl) = (ratio * a, clipped * a);
                    pl -= u.min(cl) as f64;
                    // d/dlogp of -min(r A, clip(r) A): -r A where the unclipped term counts.
                    if u <= cl || (ratio > 1.0 - clip && ratio < 1.0 + clip) {
                        dlogp[k] = -a * ratio / b as f32;
                    }
                    let e = val[k] - self.ro.returns[i];
                    vl += (e * e) as f64;
                    dval[k] = (c.vf_coef as f32) * 2.0 * e / b as f32;
                }
                let (pl, vl) = (pl / b as f64, vl / b as f64);
                check_finite("the PPO loss", pl + vl)?;
                self.ac.zero_grad();
                // Entropy bonus: loss -= ent_coef * mean(H).
                self.ac
                    .backward(&dlogp, -(c.ent_coef as f32) / b as f32, &dval);
                let norm = self.ac.step(lr, c.max_grad_norm);
                check_finite("the PPO gradient norm", norm)?;
                pl_sum += pl;
                vl_sum += vl;
                n_mb += 1;
            }
        }
        report.metrics.push(("policy_loss", pl_sum / n_mb as f64));
        report.metrics.push(("value_loss", vl_sum / n_mb as f64));
        Ok(())
    }

    fn act(&mut self, obs: &[f32], action: &mut Vec<f32>) {
        let (mut a, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
        self.ac
            .act(obs, 1, false, &mut self.rng, &mut a, &mut l, &mut v);
        self.ac.clip_action(&a, action);
    }

    fn save(&self) -> Saved {
        let mut s = Saved::default();
        self.ac.save(&mut s, "ac");
        s.put_json("envs", self.envs.save());
        s.put_json("starts", &self.starts);
        s.put_json("rng", self.rng.state());
        s.put_json("steps", self.steps);
        s
    }

    fn load(&mut self, mut s: Saved) -> Result<()> {
        self.ac.load(&mut s, "ac")?;
        let envs: Vec<EnvCopyState> = s.get_json("envs")?;
        self.envs.load(&envs)?;
        self.starts = s.get_json("starts")?;
        self.rng = Rng::from_state(s.get_json("rng")?);
        self.steps = s.get_json("steps")?;
        Ok(())
    }
}
