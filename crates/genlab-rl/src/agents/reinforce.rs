//! REINFORCE with a learned baseline.
//!
//! Williams, "Simple statistical gradient-following algorithms for connectionist
//! reinforcement learning", Machine Learning 8, 1992: the Monte-Carlo policy gradient
//! grad J = E[sum_t (G_t - b(s_t)) grad log pi(a_t|s_t)] with G_t the discounted return
//! from t to the end of the episode (Sutton & Barto 2018, section 13.4, "REINFORCE with
//! baseline"); the baseline b = V(s) is a critic fitted to G_t by least squares. One
//! update per `episodes_per_update` complete episodes of one environment; no bootstrap at
//! a time-limit cut (the return simply stops there), as in the original method.

use serde::{Deserialize, Serialize};

use genlab_core::{Result, Rng};

use crate::agents::{
    check_finite, config_error, parse_config, Agent, AlgoEntry, Report, Spec, Supports,
};
use crate::env::{Action, EnvCopyState, VecEnv};
use crate::optim::OptimizerKind;
use crate::policy::{ActorCritic, NetConfig};
use crate::saved::Saved;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub net: NetConfig,
    pub lr: f64,
    pub gamma: f64,
    pub episodes_per_update: usize,
    pub vf_coef: f64,
    pub ent_coef: f64,
    /// Normalise the advantages G_t - V(s_t) of each update.
    pub normalize_advantage: bool,
    pub max_grad_norm: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            lr: 1e-3,
            gamma: 0.99,
            episodes_per_update: 2,
            vf_coef: 0.5,
            ent_coef: 0.0,
            normalize_advantage: true,
            max_grad_norm: 0.5,
        }
    }
}

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "reinforce",
    paper: "Williams 1992",
    description: "Monte-Carlo policy gradient with a learned value baseline",
    supports: Supports {
        discrete_actions: true,
        continuous_actions: true,
        tabular: false,
        multi_agent: false,
    },
    defaults: |_| serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(Reinforce::new(spec)?)),
};

pub struct Reinforce {
    cfg: Config,
    envs: VecEnv,
    ac: ActorCritic,
    rng: Rng,
    steps: u64,
}

impl Reinforce {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        if cfg.episodes_per_update == 0 {
            return Err(config_error("episodes_per_update", "must be at least 1"));
        }
        let entry = spec.env;
        let envs = VecEnv::new(|| entry.make_single().expect("single"), 1, spec.seed);
        let space = envs.copies[0].env.action_space();
        let mut init = Rng::derive(spec.seed, "init");
        let ac = ActorCritic::new(
            envs.obs_len,
            &space,
            &cfg.net,
            OptimizerKind::Adam { eps: 1e-8 },
            &mut init,
        );
        Ok(Self {
            cfg,
            envs,
            ac,
            rng: Rng::derive(spec.seed, "agent"),
            steps: 0,
        })
    }
}

impl Agent for Reinforce {
    fn env_steps(&self) -> u64 {
        self.steps
    }

    /// Plays `episodes_per_update` whole episodes, then takes one gradient step.
    fn train_unit(&mut self, report: &mut Report) -> Result<()> {
        let w = self.ac.act_width();
        let (mut obs, mut acts, mut returns) = (Vec::new(), Vec::new(), Vec::new());
        let (mut a, mut l, mut v, mut clipped) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.cfg.episodes_per_update {
            let mut rewards = Vec::new();
            loop {
                let o = self.envs.obs_of(0).to_vec();
                self.ac
                    .act(&o, 1, true, &mut self.rng, &mut a, &mut l, &mut v);
                self.ac.clip_action(&a, &mut clipped);
                let action = if self.ac.discrete {
                    Action::Discrete(clipped[0] as usize)
                } else {
                    Action::Continuous(&clipped)
                };
                let (t, ep) = self.envs.step_one(0, action);
                obs.extend_from_slice(&o);
                acts.extend_from_slice(&a[..w]);
                rewards.push(t.reward as f32);
                self.steps += 1;
                if let Some(ep) = ep {
                    report.episodes.push(ep);
                    break;
                }
            }
            // G_t = r_t + gamma G_{t+1}.
            let mut g = 0.0f32;
            let start = returns.len();
            returns.resize(start + rewards.len(), 0.0);
            for (k, r) in rewards.iter().enumerate().rev() {
                g = r + self.cfg.gamma as f32 * g;
                returns[start + k] = g;
            }
        }
        let n = returns.len();
        let (mut logp, mut ent, mut val) = (Vec::new(), Vec::new(), Vec::new());
        self.ac
            .evaluate(&obs, &acts, n, &mut logp, &mut ent, &mut val);
        let mut adv: Vec<f32> = returns.iter().zip(&val).map(|(g, v)| g - v).collect();
        if self.cfg.normalize_advantage && n > 1 {
            let m = adv.iter().sum::<f32>() / n as f32;
            let sd = (adv.iter().map(|x| (x - m).powi(2)).sum::<f32>() / (n - 1) as f32).sqrt();
            adv.iter_mut().for_each(|x| *x = (*x - m) / (sd + 1e-8));
        }
        let (mut pl, mut vl) = (0.0f64, 0.0f64);
        let mut dlogp = vec![0f32; n];
        let mut dval = vec![0f32; n];
        for i in 0..n {
            pl -= (adv[i] * logp[i]) as f64;
            dlogp[i] = -adv[i] / n as f32;
            let e = val[i] - returns[i];
            vl += (e * e) as f64;
            dval[i] = self.cfg.vf_coef as f32 * 2.0 * e / n as f32;
        }
        check_finite("the REINFORCE loss", pl + vl)?;
        self.ac.zero_grad();
        self.ac
            .backward(&dlogp, -(self.cfg.ent_coef as f32) / n as f32, &dval);
        let norm = self.ac.step(self.cfg.lr, self.cfg.max_grad_norm);
        check_finite("the REINFORCE gradient norm", norm)?;
        report.metrics.push(("policy_loss", pl / n as f64));
        report.metrics.push(("value_loss", vl / n as f64));
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
        s.put_json("rng", self.rng.state());
        s.put_json("steps", self.steps);
        s
    }

    fn load(&mut self, mut s: Saved) -> Result<()> {
        self.ac.load(&mut s, "ac")?;
        let envs: Vec<EnvCopyState> = s.get_json("envs")?;
        self.envs.load(&envs)?;
        self.rng = Rng::from_state(s.get_json("rng")?);
        self.steps = s.get_json("steps")?;
        Ok(())
    }
}
