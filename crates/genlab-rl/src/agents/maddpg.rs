//! MADDPG: multi-agent DDPG with centralised critics and decentralised actors.
//!
//! Lowe et al., "Multi-agent actor-critic for mixed cooperative-competitive environments",
//! NeurIPS 2017, arXiv:1706.02275, Algorithm 1: each agent i has an actor mu_i(o_i) that
//! sees only its own observation, and a critic Q_i(x, a_1, ..., a_N) that sees every
//! agent's observation x and action (eq. 5-6); the critic regresses
//! y_i = r_i + gamma Q'_i(x', mu'_1(o'_1), ..., mu'_N(o'_N)), the actor follows
//! grad mu_i(o_i) grad_{a_i} Q_i(x, a_1, ..., a_i = mu_i(o_i), ..., a_N) with the other
//! agents' actions taken from the replayed sample; targets trail by Polyak averaging.
//! Defaults are the paper's (section 5 and its code): two 64-unit ReLU layers, Adam at
//! 1e-2, gamma 0.95, batch 1024, tau 0.01, one update of every agent per 100 steps,
//! gradients clipped to 0.5, learning from 1024 x 25 steps on. Actions are the
//! continuous form of the particle world (five values in [0, 1], a squashed tanh here)
//! with Gaussian exploration noise, instead of the paper's Gumbel-softmax.
//!
//! The same engine with `centralised = false` gives each critic only its own agent's
//! observation and action: independent DDPG learners (`independent.rs`).

use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

use crate::agents::{
    check_finite, config_error, parse_config, Agent, AlgoEntry, Report, Spec, Supports,
};
use crate::envs::{Maker, MultiEnv};
use crate::nn::{Activation, Cache, Init, Mlp};
use crate::optim::{clip_grad_norm, Optimizer, OptimizerKind};
use crate::replay::{Batch, Replay};
use crate::saved::Saved;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub hidden: Vec<usize>,
    pub lr: f64,
    pub gamma: f64,
    pub tau: f64,
    pub batch_size: usize,
    pub buffer_size: usize,
    pub learning_starts: u64,
    /// Joint steps between updates (each update trains every agent once).
    pub train_freq: u64,
    /// Std of the Gaussian exploration noise on the [0, 1] actions.
    pub action_noise: f64,
    pub max_grad_norm: f64,
    /// Critics see every agent (MADDPG) or only their own (independent learners).
    pub centralised: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            hidden: vec![64, 64],
            lr: 1e-2,
            gamma: 0.95,
            tau: 0.01,
            batch_size: 1024,
            buffer_size: 1_000_000,
            learning_starts: 1024 * 25,
            train_freq: 100,
            action_noise: 0.1,
            max_grad_norm: 0.5,
            centralised: true,
        }
    }
}

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "maddpg",
    paper: "Lowe et al. 2017 (arXiv:1706.02275)",
    description: "multi-agent DDPG: centralised critics, decentralised actors",
    supports: Supports {
        discrete_actions: false,
        continuous_actions: true,
        tabular: false,
        multi_agent: true,
    },
    defaults: |_| serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(MultiDdpg::new(spec)?)),
};

pub struct MultiDdpg {
    cfg: Config,
    env: Box<dyn MultiEnv>,
    n: usize,
    od: usize,
    ad: usize,
    obs: Vec<f32>,
    ep_return: f64,
    ep_len: usize,
    env_rng: Rng,
    actors: Vec<Mlp>,
    actors_t: Vec<Mlp>,
    critics: Vec<Mlp>,
    critics_t: Vec<Mlp>,
    opt_a: Vec<Optimizer>,
    opt_c: Vec<Optimizer>,
    /// Joint transitions; the per-agent rewards ride in the action slot after the joint
    /// action (`act_dim = n * ad + n`).
    replay: Replay,
    rng: Rng,
    steps: u64,
    cache: Cache,
    batch: Batch,
}

/// Squashes actor outputs to [0, 1].
fn squash(z: f32) -> f32 {
    0.5 * (z.tanh() + 1.0)
}

impl MultiDdpg {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        if cfg.batch_size == 0 || cfg.train_freq == 0 {
            return Err(config_error(
                "batch_size and train_freq",
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
        let Maker::Multi(make) = spec.env.make else {
            return Err(Error::InvalidInput(format!(
                "`{}` is not multi-agent",
                spec.env.name
            )));
        };
        let mut env = make(true);
        let (n, od) = (env.n_agents(), env.obs_dim());
        let ad = env.action_space().net_width();
        let mut env_rng = Rng::derive(spec.seed, "env-0");
        let mut obs = vec![0f32; n * od];
        env.reset(&mut env_rng, &mut obs);
        let mut init = Rng::derive(spec.seed, "init");
        let sizes = |i: usize, o: usize| {
            let mut s = vec![i];
            s.extend(&cfg.hidden);
            s.push(o);
            s
        };
        let cin = if cfg.centralised {
            n * (od + ad)
        } else {
            od + ad
        };
        let actors: Vec<Mlp> = (0..n)
            .map(|_| Mlp::new(&sizes(od, ad), Activation::Relu, Init::Torch, &mut init))
            .collect();
        let critics: Vec<Mlp> = (0..n)
            .map(|_| Mlp::new(&sizes(cin, 1), Activation::Relu, Init::Torch, &mut init))
            .collect();
        let adam = OptimizerKind::Adam { eps: 1e-8 };
        Ok(Self {
            opt_a: actors
                .iter()
                .map(|m| Optimizer::new(adam, m.num_params()))
                .collect(),
            opt_c: critics
                .iter()
                .map(|m| Optimizer::new(adam, m.num_params()))
                .collect(),
            actors_t: actors.clone(),
            critics_t: critics.clone(),
            actors,
            critics,
            replay: Replay::new(cfg.buffer_size, n * od, n * ad + n),
            cfg,
            env,
            n,
            od,
            ad,
            obs,
            ep_return: 0.0,
            ep_len: 0,
            env_rng,
            rng: Rng::derive(spec.seed, "agent"),
            steps: 0,
            cache: Cache::default(),
            batch: Batch::default(),
        })
    }

    /// Every agent's squashed action from its own observation in `obs` `[b, n * od]`.
    fn joint_actions(&mut self, target: bool, obs: &[f32], b: usize, out: &mut Vec<f32>) {
        let (n, od, ad) = (self.n, self.od, self.ad);
        out.clear();
        out.resize(b * n * ad, 0.0);
        let mut oi = Vec::with_capacity(b * od);
        for i in 0..n {
            oi.clear();
            for r in 0..b {
                oi.extend_from_slice(&obs[r * n * od + i * od..r * n * od + (i + 1) * od]);
            }
            let net = if target {
                &self.actors_t[i]
            } else {
                &self.actors[i]
            };
            let z = net.forward(&oi, b, &mut self.cache);
            for r in 0..b {
                for k in 0..ad {
                    out[r * n * ad + i * ad + k] = squash(z[r * ad + k]);
                }
            }
        }
    }

    /// Critic `i`'s input rows from joint observations and actions.
    fn critic_input(
        &self,
        i: usize,
        obs: &[f32],
        act: &[f32],
        b: usize,
        aw: usize,
        out: &mut Vec<f32>,
    ) {
        let (n, od, ad) = (self.n, self.od, self.ad);
        out.clear();
        for r in 0..b {
            let o = &obs[r * n * od..(r + 1) * n * od];
            let a = &act[r * aw..r * aw + n * ad];
            if self.cfg.centralised {
                out.extend_from_slice(o);
                out.extend_from_slice(a);
            } else {
                out.extend_from_slice(&o[i * od..(i + 1) * od]);
                out.extend_from_slice(&a[i * ad..(i + 1) * ad]);
            }
        }
    }

    fn update(&mut self) -> Result<f64> {
        let (n, od, ad, b) = (self.n, self.od, self.ad, self.cfg.batch_size);
        let aw = n * ad + n;
        self.replay.sample(b, &mut self.rng, &mut self.batch);
        let batch = std::mem::take(&mut self.batch);
        let mut next_a = Vec::new();
        self.joint_actions(true, &batch.next_obs, b, &mut next_a);
        let mut x = Vec::new();
        let mut total = 0.0;
        let gamma = self.cfg.gamma as f32;
        for i in 0..n {
            // Critic i.
            self.critic_input(i, &batch.next_obs, &next_a, b, n * ad, &mut x);
            let qn = self.critics_t[i].forward(&x, b, &mut self.cache).to_vec();
            let y: Vec<f32> = (0..b)
                .map(|r| batch.act[r * aw + n * ad + i] + gamma * (1.0 - batch.done[r]) * qn[r])
                .collect();
            self.critic_input(i, &batch.obs, &batch.act, b, aw, &mut x);
            let q = self.critics[i].forward(&x, b, &mut self.cache).to_vec();
            let mut loss = 0.0f64;
            let dq: Vec<f32> = (0..b)
                .map(|r| {
                    let e = q[r] - y[r];
                    loss += (e * e) as f64 / b as f64;
                    2.0 * e / b as f32
                })
                .collect();
            check_finite("the MADDPG critic loss", loss)?;
            total += loss;
            let mut g = vec![0f32; self.critics[i].num_params()];
            self.critics[i].backward(&mut self.cache, &dq, &mut g, None);
            clip_grad_norm(&mut g, self.cfg.max_grad_norm);
            self.opt_c[i].step(&mut self.critics[i].params, &g, self.cfg.lr);
            // Actor i: a_i = mu_i(o_i), the others' actions from the sample.
            let mut oi = Vec::with_capacity(b * od);
            for r in 0..b {
                oi.extend_from_slice(&batch.obs[r * n * od + i * od..r * n * od + (i + 1) * od]);
            }
            let mut ca = Cache::default();
            let z = self.actors[i].forward(&oi, b, &mut ca).to_vec();
            let mut act = batch.act.clone();
            for r in 0..b {
                for k in 0..ad {
                    act[r * aw + i * ad + k] = squash(z[r * ad + k]);
                }
            }
            self.critic_input(i, &batch.obs, &act, b, aw, &mut x);
            let q = self.critics[i].forward(&x, b, &mut self.cache).to_vec();
            check_finite("the MADDPG actor loss", q.iter().map(|v| *v as f64).sum())?;
            let mut dx = Vec::new();
            self.critics[i].backward_opt(
                &mut self.cache,
                &vec![-1.0 / b as f32; b],
                None,
                Some(&mut dx),
            );
            let cw = x.len() / b;
            let a_off = if self.cfg.centralised {
                n * od + i * ad
            } else {
                od
            };
            let mut dz = vec![0f32; b * ad];
            for r in 0..b {
                for k in 0..ad {
                    let t = z[r * ad + k].tanh();
                    dz[r * ad + k] = dx[r * cw + a_off + k] * 0.5 * (1.0 - t * t);
                }
            }
            let mut g = vec![0f32; self.actors[i].num_params()];
            self.actors[i].backward(&mut ca, &dz, &mut g, None);
            clip_grad_norm(&mut g, self.cfg.max_grad_norm);
            self.opt_a[i].step(&mut self.actors[i].params, &g, self.cfg.lr);
        }
        let tau = self.cfg.tau as f32;
        for i in 0..n {
            self.actors_t[i].polyak_from(&self.actors[i], tau);
            self.critics_t[i].polyak_from(&self.critics[i], tau);
        }
        self.batch = batch;
        Ok(total / n as f64)
    }
}

impl Agent for MultiDdpg {
    fn env_steps(&self) -> u64 {
        self.steps
    }

    fn train_unit(&mut self, report: &mut Report) -> Result<()> {
        let (n, ad) = (self.n, self.ad);
        let mut act = Vec::new();
        if self.steps < self.cfg.learning_starts {
            act.extend((0..n * ad).map(|_| self.rng.uniform() as f32));
        } else {
            let obs = self.obs.clone();
            self.joint_actions(false, &obs, 1, &mut act);
            for v in &mut act {
                *v = (*v + (self.cfg.action_noise * self.rng.normal()) as f32).clamp(0.0, 1.0);
            }
        }
        let mut next = vec![0f32; self.obs.len()];
        let mut rew = vec![0f64; n];
        let (term, trunc) = self.env.step(&act, &mut next, &mut rew);
        let mut stored = act.clone();
        stored.extend(rew.iter().map(|r| *r as f32));
        self.replay.push(&self.obs, &stored, 0.0, &next, term);
        self.ep_return += rew.iter().sum::<f64>();
        self.ep_len += 1;
        if term || trunc {
            report.episodes.push(crate::env::Episode {
                ret: self.ep_return,
                len: self.ep_len,
            });
            self.ep_return = 0.0;
            self.ep_len = 0;
            self.env.reset(&mut self.env_rng, &mut self.obs);
        } else {
            self.obs = next;
        }
        self.steps += 1;
        if self.steps > self.cfg.learning_starts && self.steps.is_multiple_of(self.cfg.train_freq) {
            let l = self.update()?;
            report.metrics.push(("critic_loss", l));
        }
        Ok(())
    }

    fn act(&mut self, obs: &[f32], action: &mut Vec<f32>) {
        self.joint_actions(false, obs, 1, action);
    }

    fn save(&self) -> Saved {
        let mut s = Saved::default();
        for i in 0..self.n {
            s.put_net(&format!("actor{i}"), &self.actors[i]);
            s.put_net(&format!("actor{i}_target"), &self.actors_t[i]);
            s.put_net(&format!("critic{i}"), &self.critics[i]);
            s.put_net(&format!("critic{i}_target"), &self.critics_t[i]);
            s.put_opt(&format!("opt_actor{i}"), &self.opt_a[i]);
            s.put_opt(&format!("opt_critic{i}"), &self.opt_c[i]);
        }
        self.replay.save(&mut s, "replay");
        s.put_json("env", self.env.state());
        s.put_json("env_rng", self.env_rng.state());
        s.put_json("episode", (self.ep_return, self.ep_len));
        s.put_json("rng", self.rng.state());
        s.put_json("steps", self.steps);
        s
    }

    fn load(&mut self, mut s: Saved) -> Result<()> {
        for i in 0..self.n {
            s.take_net(&format!("actor{i}"), &mut self.actors[i])?;
            s.take_net(&format!("actor{i}_target"), &mut self.actors_t[i])?;
            s.take_net(&format!("critic{i}"), &mut self.critics[i])?;
            s.take_net(&format!("critic{i}_target"), &mut self.critics_t[i])?;
            s.take_opt(&format!("opt_actor{i}"), &mut self.opt_a[i])?;
            s.take_opt(&format!("opt_critic{i}"), &mut self.opt_c[i])?;
        }
        self.replay.load(&mut s, "replay")?;
        let state: Vec<f64> = s.get_json("env")?;
        self.env.set_state(&state, &mut self.obs)?;
        self.env_rng = Rng::from_state(s.get_json("env_rng")?);
        (self.ep_return, self.ep_len) = s.get_json("episode")?;
        self.rng = Rng::from_state(s.get_json("rng")?);
        self.steps = s.get_json("steps")?;
        Ok(())
    }
}
