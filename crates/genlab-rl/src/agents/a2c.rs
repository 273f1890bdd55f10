//! A2C: advantage actor-critic, the synchronous variant of A3C.
//!
//! Mnih et al., "Asynchronous methods for deep reinforcement learning", ICML 2016,
//! arXiv:1602.01783 (A3C's update, Algorithm S3, made synchronous over N environment copies
//! as in OpenAI Baselines' A2C): every `n_steps` steps of all copies, one gradient step on
//! -mean(A_t log pi(a_t|s_t)) + c_v mean((R_t - V(s_t))^2) - c_e mean(H(pi(.|s_t))) with
//! n-step (or GAE) advantages. As SB3's `A2C`: RMSprop (alpha 0.99, eps 1e-5), learning
//! rate 7e-4, 5 steps, gradients clipped to norm 0.5, no advantage normalisation; the
//! zoo's CartPole-v1 preset uses 8 copies and no entropy bonus.

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
    pub n_steps: usize,
    pub lr: f64,
    pub gamma: f64,
    /// 1: plain n-step returns.
    pub gae_lambda: f64,
    pub ent_coef: f64,
    pub vf_coef: f64,
    pub max_grad_norm: f64,
    pub normalize_advantage: bool,
    pub optimizer: OptimizerKind,
}

impl Default for Config {
    /// SB3's A2C with the zoo's CartPole-v1 settings.
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            n_envs: 8,
            n_steps: 5,
            lr: 7e-4,
            gamma: 0.99,
            gae_lambda: 1.0,
            ent_coef: 0.0,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            normalize_advantage: false,
            optimizer: OptimizerKind::Rmsprop {
                alpha: 0.99,
                eps: 1e-5,
            },
        }
    }
}

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "a2c",
    paper: "Mnih et al. 2016 (arXiv:1602.01783), synchronous",
    description: "advantage actor-critic over N synchronous environment copies",
    supports: Supports {
        discrete_actions: true,
        continuous_actions: true,
        tabular: false,
        multi_agent: false,
    },
    defaults: |_| serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(A2c::new(spec)?)),
};

/// The A2C loss's per-sample derivatives on a rollout (shared with A3C's workers):
/// fills `dlogp` and `dval` and returns (policy loss, value loss).
pub(crate) fn a2c_derivatives(
    ro: &Rollout,
    logp: &[f32],
    val: &[f32],
    vf_coef: f32,
    normalize: bool,
    dlogp: &mut Vec<f32>,
    dval: &mut Vec<f32>,
) -> (f64, f64) {
    let b = logp.len();
    let mut adv = ro.advantages.clone();
    if normalize && b > 1 {
        let m = adv.iter().sum::<f32>() / b as f32;
        let sd = (adv.iter().map(|a| (a - m).powi(2)).sum::<f32>() / (b - 1) as f32).sqrt();
        adv.iter_mut().for_each(|a| *a = (*a - m) / (sd + 1e-8));
    }
    dlogp.clear();
    dval.clear();
    let (mut pl, mut vl) = (0.0f64, 0.0f64);
    for i in 0..b {
        pl -= (adv[i] * logp[i]) as f64;
        dlogp.push(-adv[i] / b as f32);
        let e = val[i] - ro.returns[i];
        vl += (e * e) as f64;
        dval.push(vf_coef * 2.0 * e / b as f32);
    }
    (pl / b as f64, vl / b as f64)
}

pub struct A2c {
    cfg: Config,
    envs: VecEnv,
    ac: ActorCritic,
    rng: Rng,
    starts: Vec<f32>,
    steps: u64,
    ro: Rollout,
}

impl A2c {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        if cfg.n_envs == 0 || cfg.n_steps == 0 {
            return Err(config_error("n_envs and a2c.n_steps", "must be at least 1"));
        }
        let entry = spec.env;
        let envs = VecEnv::new(
            || entry.make_single().expect("single"),
            cfg.n_envs,
            spec.seed,
        );
        let space = envs.copies[0].env.action_space();
        let mut init = Rng::derive(spec.seed, "init");
        let ac = ActorCritic::new(envs.obs_len, &space, &cfg.net, cfg.optimizer, &mut init);
        Ok(Self {
            starts: vec![1.0; cfg.n_envs],
            cfg,
            envs,
            ac,
            rng: Rng::derive(spec.seed, "agent"),
            steps: 0,
            ro: Rollout::default(),
        })
    }
}

impl Agent for A2c {
    fn env_steps(&self) -> u64 {
        self.steps
    }

    fn train_unit(&mut self, report: &mut Report) -> Result<()> {
        let c = self.cfg.clone();
        collect(
            &mut self.ac,
            &mut self.envs,
            &mut self.starts,
            c.n_steps,
            c.gamma as f32,
            c.gae_lambda as f32,
            &mut self.rng,
            &mut self.ro,
            &mut report.episodes,
        );
        self.steps += (c.n_steps * c.n_envs) as u64;
        let n = self.ro.t * self.ro.n;
        let (mut logp, mut ent, mut val) = (Vec::new(), Vec::new(), Vec::new());
        self.ac.evaluate(
            &self.ro.obs,
            &self.ro.actions,
            n,
            &mut logp,
            &mut ent,
            &mut val,
        );
        let (mut dlogp, mut dval) = (Vec::new(), Vec::new());
        let (pl, vl) = a2c_derivatives(
            &self.ro,
            &logp,
            &val,
            c.vf_coef as f32,
            c.normalize_advantage,
            &mut dlogp,
            &mut dval,
        );
        check_finite("the A2C loss", pl + vl)?;
        self.ac.zero_grad();
        self.ac
            .backward(&dlogp, -(c.ent_coef as f32) / n as f32, &dval);
        let norm = self.ac.step(c.lr, c.max_grad_norm);
        check_finite("the A2C gradient norm", norm)?;
        report.metrics.push(("policy_loss", pl));
        report.metrics.push(("value_loss", vl));
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
