//! A3C: asynchronous advantage actor-critic.
//!
//! Mnih et al., "Asynchronous methods for deep reinforcement learning", ICML 2016,
//! arXiv:1602.01783, Algorithm S3: worker threads, each with its own environment and a
//! local copy of the network, repeatedly (1) copy the shared parameters, (2) act for up to
//! t_max steps, (3) compute the n-step advantage actor-critic gradient on their own
//! rollout and (4) apply it to the shared parameters with a shared optimizer (RMSprop
//! statistics shared across threads, as in the paper's "shared RMSProp"). Workers run
//! concurrently on OS threads, so each one's gradient is computed on parameters that the
//! others may already have moved (the asynchrony the paper relies on). The shared update
//! itself holds a mutex (the paper's Hogwild-style lock-free writes would need unsafe
//! shared mutation in Rust; the lock is held only for the copy and the optimizer step).
//!
//! Because thread interleaving decides the order of updates, two runs with the same seed
//! may differ: A3C is the one genlab agent that is not bit-reproducible (every other one
//! is). Threads are joined every `unit_steps` environment steps, where checkpoints are
//! taken.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

use crate::agents::a2c::a2c_derivatives;
use crate::agents::{
    check_finite, config_error, parse_config, Agent, AlgoEntry, Report, Spec, Supports,
};
use crate::env::{EnvCopyState, Episode, VecEnv};
use crate::optim::OptimizerKind;
use crate::policy::{collect, ActorCritic, NetConfig, Rollout};
use crate::saved::Saved;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub net: NetConfig,
    /// Worker threads (one environment each).
    pub n_workers: usize,
    /// t_max: steps per worker rollout.
    pub n_steps: usize,
    pub lr: f64,
    pub gamma: f64,
    pub ent_coef: f64,
    pub vf_coef: f64,
    pub max_grad_norm: f64,
    pub optimizer: OptimizerKind,
    /// Environment steps between joins of the threads (checkpoint granularity).
    pub unit_steps: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            n_workers: 2, // the development machine's core count
            n_steps: 5,   // the paper's t_max
            lr: 7e-4,
            gamma: 0.99,
            ent_coef: 0.0,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            optimizer: OptimizerKind::Rmsprop {
                alpha: 0.99,
                eps: 1e-5,
            },
            unit_steps: 2000,
        }
    }
}

pub const ENTRY: AlgoEntry = AlgoEntry {
    name: "a3c",
    paper: "Mnih et al. 2016 (arXiv:1602.01783)",
    description: "asynchronous advantage actor-critic: worker threads updating shared parameters",
    supports: Supports {
        discrete_actions: true,
        continuous_actions: true,
        tabular: false,
        multi_agent: false,
    },
    defaults: |_| serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(A3c::new(spec)?)),
};

struct Worker {
    local: ActorCritic,
    envs: VecEnv,
    starts: Vec<f32>,
    rng: Rng,
    ro: Rollout,
}

pub struct A3c {
    cfg: Config,
    shared: ActorCritic,
    workers: Vec<Worker>,
    steps: u64,
}

impl A3c {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        if cfg.n_workers == 0 || cfg.n_steps == 0 || cfg.unit_steps == 0 {
            return Err(config_error(
                "n_workers, n_steps and unit_steps",
                "must be at least 1",
            ));
        }
        let entry = spec.env;
        let mk = |w: usize| {
            VecEnv::new(
                || entry.make_single().expect("single"),
                1,
                spec.seed ^ (w as u64).wrapping_mul(0x9E37_79B9),
            )
        };
        let first = mk(0);
        let space = first.copies[0].env.action_space();
        let mut init = Rng::derive(spec.seed, "init");
        let shared = ActorCritic::new(first.obs_len, &space, &cfg.net, cfg.optimizer, &mut init);
        let mut workers = Vec::new();
        let mut first = Some(first);
        for w in 0..cfg.n_workers {
            workers.push(Worker {
                local: shared.clone(),
                envs: first.take().unwrap_or_else(|| mk(w)),
                starts: vec![1.0],
                rng: Rng::derive(spec.seed, &format!("worker-{w}")),
                ro: Rollout::default(),
            });
        }
        Ok(Self {
            cfg,
            shared,
            workers,
            steps: 0,
        })
    }
}

/// One worker's share of a unit: rollouts and shared updates until `budget` is spent.
fn work(
    w: &mut Worker,
    cfg: &Config,
    shared: &Mutex<ActorCritic>,
    budget: &AtomicU64,
) -> Result<(Vec<Episode>, u64)> {
    let mut episodes = Vec::new();
    let mut taken = 0;
    let (mut logp, mut ent, mut val, mut dlogp, mut dval) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    loop {
        let n = cfg.n_steps as u64;
        if budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(n))
            .is_err()
        {
            break;
        }
        {
            let g = shared.lock().expect("shared parameters");
            w.local.pi.params.copy_from_slice(&g.pi.params);
            w.local.vf.params.copy_from_slice(&g.vf.params);
            w.local.log_std.copy_from_slice(&g.log_std);
        }
        collect(
            &mut w.local,
            &mut w.envs,
            &mut w.starts,
            cfg.n_steps,
            cfg.gamma as f32,
            1.0,
            &mut w.rng,
            &mut w.ro,
            &mut episodes,
        );
        taken += n;
        let b = w.ro.t * w.ro.n;
        w.local
            .evaluate(&w.ro.obs, &w.ro.actions, b, &mut logp, &mut ent, &mut val);
        let (pl, vl) = a2c_derivatives(
            &w.ro,
            &logp,
            &val,
            cfg.vf_coef as f32,
            false,
            &mut dlogp,
            &mut dval,
        );
        check_finite("the A3C loss", pl + vl)?;
        w.local.zero_grad();
        w.local
            .backward(&dlogp, -(cfg.ent_coef as f32) / b as f32, &dval);
        let mut g = shared.lock().expect("shared parameters");
        g.g_pi.copy_from_slice(&w.local.g_pi);
        g.g_vf.copy_from_slice(&w.local.g_vf);
        g.g_std.copy_from_slice(&w.local.g_std);
        let norm = g.step(cfg.lr, cfg.max_grad_norm);
        check_finite("the A3C gradient norm", norm)?;
    }
    Ok((episodes, taken))
}

impl Agent for A3c {
    fn env_steps(&self) -> u64 {
        self.steps
    }

    fn train_unit(&mut self, report: &mut Report) -> Result<()> {
        let shared = Mutex::new(self.shared.clone());
        let budget = AtomicU64::new(self.cfg.unit_steps);
        let cfg = &self.cfg;
        let results: Vec<Result<(Vec<Episode>, u64)>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .map(|w| {
                    let (shared, budget) = (&shared, &budget);
                    s.spawn(move || work(w, cfg, shared, budget))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("an A3C worker panicked"))
                .collect()
        });
        self.shared = shared.into_inner().expect("shared parameters");
        for r in results {
            let (eps, taken) = r?;
            report.episodes.extend(eps);
            self.steps += taken;
        }
        Ok(())
    }

    fn act(&mut self, obs: &[f32], action: &mut Vec<f32>) {
        let (mut a, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
        let mut rng = Rng::new(0);
        self.shared
            .act(obs, 1, false, &mut rng, &mut a, &mut l, &mut v);
        self.shared.clip_action(&a, action);
    }

    fn save(&self) -> Saved {
        let mut s = Saved::default();
        self.shared.save(&mut s, "ac");
        let envs: Vec<Vec<EnvCopyState>> = self.workers.iter().map(|w| w.envs.save()).collect();
        let rngs: Vec<[u64; 4]> = self.workers.iter().map(|w| w.rng.state()).collect();
        let starts: Vec<f32> = self.workers.iter().map(|w| w.starts[0]).collect();
        s.put_json("envs", envs);
        s.put_json("rngs", rngs);
        s.put_json("starts", starts);
        s.put_json("steps", self.steps);
        s
    }

    fn load(&mut self, mut s: Saved) -> Result<()> {
        self.shared.load(&mut s, "ac")?;
        let envs: Vec<Vec<EnvCopyState>> = s.get_json("envs")?;
        let rngs: Vec<[u64; 4]> = s.get_json("rngs")?;
        let starts: Vec<f32> = s.get_json("starts")?;
        if envs.len() != self.workers.len()
            || rngs.len() != envs.len()
            || starts.len() != envs.len()
        {
            return Err(Error::Checkpoint(
                "the checkpoint has another number of A3C workers".into(),
            ));
        }
        for (i, w) in self.workers.iter_mut().enumerate() {
            w.envs.load(&envs[i])?;
            w.rng = Rng::from_state(rngs[i]);
            w.starts = vec![starts[i]];
        }
        self.steps = s.get_json("steps")?;
        Ok(())
    }
}
