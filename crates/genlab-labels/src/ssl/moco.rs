//! MoCo v2: momentum contrast (He, Fan, Wu, Xie & Girshick 2020, "Momentum Contrast for
//! Unsupervised Visual Representation Learning", arXiv:1911.05722) with the improvements of
//! Chen, Fan, Girshick & He 2020 ("Improved Baselines with Momentum Contrastive Learning",
//! arXiv:2003.04297): an MLP projection head and SimCLR's augmentation.
//!
//! Two views of each image ([`crate::augment::simclr`]): the query `q = g_q(f_q(x_q))`
//! from the trained encoder and head, the key `k = g_k(f_k(x_k))` from their momentum copy,
//! which passes no gradient and follows the trained weights after every optimizer step,
//! `theta_k <- m theta_k + (1 - m) theta_q` (MoCo eq. 2, [`genlab_train::ema::Ema`] without
//! its warm-up). The negatives are a FIFO queue of the last `K` keys ([`Queue`]); the loss is
//! InfoNCE (MoCo eq. 1, [`info_nce`]) with `q`, `k` and the queue L2-normalised,
//!
//! ```text
//! L = -log( exp(q.k+ / t) / (exp(q.k+ / t) + sum_{j < K} exp(q.k_j / t)) )
//! ```
//!
//! averaged over the batch. After each step the batch's keys are enqueued and the oldest
//! dequeued (MoCo Algorithm 1); the queue starts as random unit vectors, as in the authors'
//! code. MoCo v2's blur is left out: its sigma of 0.1-2.0 pixels on 224-pixel images is at
//! most 0.25 pixel on 28-pixel digits, nothing a bilinear crop does not already do. The
//! symmetrised loss (`symmetric`, both views as queries; off in MoCo v2, on in MoCo v3)
//! averages the two directions and enqueues both views' keys.

use std::cell::RefCell;

use candle_core::Tensor;
use genlab_core::{Error, ParamStore, Result, Rng};
use genlab_nn::classifier::log_softmax;
use genlab_nn::{Act, Classifier, Mlp};
use genlab_train::ema::Ema;
use serde::{Deserialize, Serialize};

use super::{parse_config, two_views, Method, MethodEntry, Spec};
use genlab_nn::norm::l2_normalize;

pub const ENTRY: MethodEntry = MethodEntry {
    name: "moco",
    paper: "He et al. 2020, arXiv:1911.05722; MoCo v2: Chen et al. 2020, arXiv:2003.04297",
    description: "contrast each query with its key from a momentum encoder and a queue of past keys (InfoNCE)",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build,
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// InfoNCE temperature (0.2: MoCo v2, section 2).
    pub temperature: f64,
    /// Momentum `m` of the key encoder and head. 0.99 rather than the paper's 0.999 (MoCo
    /// section 4.1 ablation: 0.99 is within 1.2 points of 0.999 over 200 ImageNet epochs):
    /// a run here is 500-2,000 steps, and at 0.999 the key encoder still holds
    /// 0.999^2000 = 14% of its random initialisation at the end (on the 8x8 digits, 500
    /// steps: linear probe 97.40% at 0.999, 98.33% at 0.99). On MNIST with group norm over
    /// 4,000 steps 0.999 is the better one (98.21%, the target's run; docs/labels.md).
    pub momentum: f64,
    /// Keys in the queue. 256 (one batch), not the 4,096-65,536 of the paper: on MNIST
    /// with this encoder a queue of 4,096 keys does not learn (InfoNCE stays near
    /// ln 4097; linear probe 79.65% after 2,000 steps, the random encoder's level), while
    /// 256 reaches 94.01% in 300 steps (docs/labels.md).
    pub queue: usize,
    /// Width of the projection head's hidden layer and of its output (SimCLR's 128/64 here).
    pub projection: [usize; 2],
    /// Both views as queries, the loss averaged over the two directions.
    pub symmetric: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            temperature: 0.2,
            momentum: 0.99,
            queue: 256,
            projection: [128, 64],
            symmetric: false,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<()> {
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return Err(Error::setting("method.temperature", "must be positive"));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::setting("method.momentum", "must lie in [0, 1]"));
        }
        if self.queue == 0 {
            return Err(Error::setting(
                "method.queue",
                "needs at least one key (the negatives)",
            ));
        }
        if self.projection.contains(&0) {
            return Err(Error::setting(
                "method.projection",
                "widths must be positive",
            ));
        }
        Ok(())
    }
}

/// InfoNCE of queries `q` `[N, d]` against their positive keys `k` `[N, d]` and the negatives
/// `queue` `[K, d]` (rows unit length) at temperature `t`; `q` and `k` are normalised here.
/// The gradient reaches `q` (and `k` unless it is detached).
pub fn info_nce(q: &Tensor, k: &Tensor, queue: &Tensor, t: f64) -> Result<Tensor> {
    let q = l2_normalize(q)?;
    let k = l2_normalize(k)?;
    let pos = (&q * &k)?.sum_keepdim(1)?; // [N, 1]
    let neg = q.matmul(&queue.t()?)?; // [N, K]
    let logits = (Tensor::cat(&[pos, neg], 1)? / t)?;
    Ok(log_softmax(&logits)?.narrow(1, 0, 1)?.mean_all()?.neg()?)
}

/// A first-in first-out ring of at most `capacity` rows of `dim` values.
#[derive(Clone, Debug)]
pub struct Queue {
    dim: usize,
    capacity: usize,
    rows: Vec<f32>,
    /// The slot the next row goes to (the oldest row once full).
    next: usize,
}

impl Queue {
    pub fn new(capacity: usize, dim: usize) -> Self {
        Self {
            dim,
            capacity,
            rows: Vec::with_capacity(capacity * dim),
            next: 0,
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Appends the rows of `x` (row-major, `dim` wide), dropping the oldest beyond the
    /// capacity.
    pub fn push(&mut self, x: &[f32]) {
        for row in x.chunks_exact(self.dim) {
            if self.len() < self.capacity {
                self.rows.extend_from_slice(row);
            } else {
                let at = self.next * self.dim;
                self.rows[at..at + self.dim].copy_from_slice(row);
            }
            self.next = (self.next + 1) % self.capacity;
        }
    }

    /// The rows in slot order (the order of the negatives; it does not change the loss).
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }

    /// The rows oldest first.
    pub fn oldest_first(&self) -> Vec<f32> {
        if self.len() < self.capacity {
            return self.rows.clone();
        }
        let at = self.next * self.dim;
        [&self.rows[at..], &self.rows[..at]].concat()
    }
}

struct State {
    queue: Queue,
    /// The normalised keys of the last batch, enqueued after the optimizer step.
    pending: Vec<f32>,
}

struct MoCo<'a> {
    enc: &'a Classifier,
    head: Mlp,
    key_enc: Classifier,
    key_head: Mlp,
    /// The momentum copy: its own store, outside the optimizer. Read by the tests only (the
    /// networks and `Ema` hold its variables).
    #[cfg_attr(not(test), allow(dead_code))]
    key_params: ParamStore,
    momentum: Ema,
    cfg: Config,
    shape: [usize; 3],
    device: candle_core::Device,
    state: RefCell<State>,
}

fn build<'a>(s: &Spec<'a>) -> Result<Box<dyn Method + 'a>> {
    Ok(Box::new(MoCo::new(s)?))
}

impl<'a> MoCo<'a> {
    fn new(s: &Spec<'a>) -> Result<Self> {
        let cfg: Config = parse_config(s.config)?;
        cfg.validate()?;
        let f = s.encoder.config().features;
        let sizes = [f, cfg.projection[0], cfg.projection[1]];
        let head = Mlp::new(&sizes, Act::Relu, s.params.vb().pp("projection"))?;
        // The same names in a second store: `Ema::new` copies the trained values in.
        let key_params = ParamStore::new(0, s.device);
        let key_enc = Classifier::new(s.encoder.config(), key_params.vb().pp("encoder"))?;
        let key_head = Mlp::new(&sizes, Act::Relu, key_params.vb().pp("projection"))?;
        let mut momentum = Ema::new(&key_params, s.params, cfg.momentum)?;
        momentum.warmup = false;
        Ok(Self {
            enc: s.encoder,
            head,
            key_enc,
            key_head,
            key_params,
            momentum,
            state: RefCell::new(State {
                queue: Queue::new(cfg.queue, cfg.projection[1]),
                pending: Vec::new(),
            }),
            cfg,
            shape: s.shape,
            device: s.device.clone(),
        })
    }

    fn query(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.head.forward(&self.enc.features(x)?)?)
    }

    /// Normalised keys, cut from the graph.
    fn key(&self, x: &Tensor) -> Result<Tensor> {
        let k = self.key_head.forward(&self.key_enc.features(x)?)?;
        Ok(l2_normalize(&k.detach())?)
    }
}

impl Method for MoCo<'_> {
    fn loss(&self, x: &[f32], b: usize, rng: &mut Rng) -> Result<Tensor> {
        let [x1, x2] = two_views(x, b, self.shape, &self.device, rng)?;
        let mut st = self.state.borrow_mut();
        let dim = self.cfg.projection[1];
        if st.queue.is_empty() {
            let mut r = rng.normal_vec(self.cfg.queue * dim);
            for row in r.chunks_exact_mut(dim) {
                let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                row.iter_mut().for_each(|v| *v /= n);
            }
            st.queue.push(&r);
        }
        let neg = Tensor::from_vec(
            st.queue.rows().to_vec(),
            (st.queue.len(), dim),
            &self.device,
        )?;
        let t = self.cfg.temperature;
        let k2 = self.key(&x2)?;
        let (loss, keys) = if self.cfg.symmetric {
            let k1 = self.key(&x1)?;
            let l = ((info_nce(&self.query(&x1)?, &k2, &neg, t)?
                + info_nce(&self.query(&x2)?, &k1, &neg, t)?)?
                * 0.5)?;
            (l, Tensor::cat(&[&k2, &k1], 0)?)
        } else {
            (info_nce(&self.query(&x1)?, &k2, &neg, t)?, k2)
        };
        st.pending = keys.flatten_all()?.to_vec1::<f32>()?;
        Ok(loss)
    }

    fn after_step(&self, step: usize, _total: usize) -> Result<()> {
        self.momentum.update(step as u64)?;
        let mut st = self.state.borrow_mut();
        let keys = std::mem::take(&mut st.pending);
        st.queue.push(&keys);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use genlab_nn::ClassifierConfig;

    /// f32 arithmetic against f64 references.
    const TOL: f64 = 1e-5;

    fn brute(q: &[Vec<f64>], k: &[Vec<f64>], queue: &[Vec<f64>], t: f64) -> f64 {
        let unit = |a: &[f64]| {
            let n = a.iter().map(|x| x * x).sum::<f64>().sqrt();
            a.iter().map(|x| x / n).collect::<Vec<_>>()
        };
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let mut total = 0.0;
        for (qi, ki) in q.iter().zip(k) {
            let (qi, ki) = (unit(qi), unit(ki));
            let pos = (dot(&qi, &ki) / t).exp();
            let den = pos + queue.iter().map(|n| (dot(&qi, n) / t).exp()).sum::<f64>();
            total += -(pos / den).ln();
        }
        total / q.len() as f64
    }

    fn rows(v: &[f32], d: usize) -> Vec<Vec<f64>> {
        v.chunks(d)
            .map(|r| r.iter().map(|&x| x as f64).collect())
            .collect()
    }

    #[test]
    fn info_nce_matches_a_brute_force_sum_and_passes_a_gradient_to_queries_only() {
        let mut rng = Rng::new(11);
        for (n, k, d, t) in [(1, 1, 2, 0.2), (4, 7, 3, 0.5), (6, 32, 8, 0.07)] {
            let qv = rng.normal_vec(n * d);
            let kv = rng.normal_vec(n * d);
            let mut negv = rng.normal_vec(k * d);
            for r in negv.chunks_mut(d) {
                let s = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                r.iter_mut().for_each(|x| *x /= s);
            }
            let q = Var::from_vec(qv.clone(), (n, d), &Device::Cpu).unwrap();
            let kvar = Var::from_vec(kv.clone(), (n, d), &Device::Cpu).unwrap();
            let neg = Tensor::from_vec(negv.clone(), (k, d), &Device::Cpu).unwrap();
            let got = info_nce(q.as_tensor(), &kvar.as_tensor().detach(), &neg, t).unwrap();
            let want = brute(&rows(&qv, d), &rows(&kv, d), &rows(&negv, d), t);
            let g = got.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (g - want).abs() < TOL * want.abs().max(1.0),
                "n={n} K={k}: {g} vs {want}"
            );
            let grads = got.backward().unwrap();
            assert!(grads.get(q.as_tensor()).is_some());
            assert!(grads.get(kvar.as_tensor()).is_none());
        }
    }

    #[test]
    fn the_queue_is_first_in_first_out_and_wraps_around() {
        let mut q = Queue::new(5, 2);
        let r = |i: usize| [i as f32, 10.0 + i as f32];
        q.push(&[r(0), r(1), r(2)].concat());
        assert_eq!(q.len(), 3);
        assert_eq!(q.oldest_first(), [r(0), r(1), r(2)].concat());
        // Four more: 0 and 1 drop out, the ring wraps to slots 0 and 1.
        q.push(&[r(3), r(4), r(5), r(6)].concat());
        assert_eq!(q.len(), 5);
        assert_eq!(q.oldest_first(), [r(2), r(3), r(4), r(5), r(6)].concat());
        assert_eq!(q.rows(), [r(5), r(6), r(2), r(3), r(4)].concat());
        // More than the capacity at once keeps the newest five.
        q.push(&(7..14).flat_map(r).collect::<Vec<_>>());
        assert_eq!(q.oldest_first(), (9..14).flat_map(r).collect::<Vec<_>>());
    }

    fn tiny(params: &ParamStore) -> Classifier {
        let cfg = ClassifierConfig {
            input: [1, 8, 8],
            channels: [2, 3],
            features: 5,
            ..Default::default()
        };
        Classifier::new(&cfg, params.vb().pp("encoder")).unwrap()
    }

    fn host(t: &Tensor) -> Vec<f64> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    #[test]
    fn no_gradient_reaches_the_key_network_and_it_follows_by_momentum() {
        let ps = ParamStore::new(3, &Device::Cpu);
        let enc = tiny(&ps);
        let config = serde_json::json!({"queue": 6, "projection": [4, 3], "momentum": 0.9});
        let m = MoCo::new(&Spec {
            encoder: &enc,
            shape: [1, 8, 8],
            params: &ps,
            config: &config,
            device: &Device::Cpu,
        })
        .unwrap();
        let mut rng = Rng::new(5);
        let x: Vec<f32> = (0..4 * 64).map(|_| rng.uniform() as f32).collect();
        let loss = m.loss(&x, 4, &mut rng).unwrap();
        let grads = loss.backward().unwrap();
        for (name, v) in m.key_params.vars() {
            assert!(
                grads.get(v.as_tensor()).is_none(),
                "key `{name}` got a gradient"
            );
        }
        let trained = ["encoder.fc.weight", "projection.l1.weight"];
        for (name, v) in ps.vars() {
            if trained.contains(&name.as_str()) {
                assert!(
                    grads.get(v.as_tensor()).is_some(),
                    "`{name}` got no gradient"
                );
            }
        }
        // The key copy starts equal to the trained weights; move those, then three momentum
        // updates against the closed form k_n = w + m^n (k_0 - w).
        let k0: Vec<Vec<f64>> = m
            .key_params
            .vars()
            .iter()
            .map(|(_, v)| host(v.as_tensor()))
            .collect();
        for (_, v) in ps.vars() {
            let n = v.elem_count();
            let w = Tensor::from_vec(rng.normal_vec(n), v.shape(), &Device::Cpu).unwrap();
            v.set(&w).unwrap();
        }
        let w: Vec<Vec<f64>> = ps.vars().iter().map(|(_, v)| host(v.as_tensor())).collect();
        for step in 0..3 {
            m.after_step(step, 10).unwrap();
        }
        let mm = 0.9f64.powi(3);
        for (((name, v), k0), w) in m.key_params.vars().iter().zip(&k0).zip(&w) {
            for ((got, k0), w) in host(v.as_tensor()).iter().zip(k0).zip(w) {
                let want = w + mm * (k0 - w);
                assert!((got - want).abs() < TOL, "{name}: {got} vs {want}");
            }
        }
        // The queue: 6 random unit keys, then the batch's 4 keys after the step.
        let st = m.state.borrow();
        assert_eq!(st.queue.len(), 6);
        for row in st.queue.rows().chunks(3) {
            let n: f32 = row.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn keys_enter_the_queue_after_the_step() {
        let ps = ParamStore::new(4, &Device::Cpu);
        let enc = tiny(&ps);
        let config = serde_json::json!({"queue": 5, "projection": [4, 3], "symmetric": true});
        let m = MoCo::new(&Spec {
            encoder: &enc,
            shape: [1, 8, 8],
            params: &ps,
            config: &config,
            device: &Device::Cpu,
        })
        .unwrap();
        let mut rng = Rng::new(6);
        let x: Vec<f32> = (0..2 * 64).map(|_| rng.uniform() as f32).collect();
        m.loss(&x, 2, &mut rng).unwrap();
        let pending = m.state.borrow().pending.clone();
        assert_eq!(pending.len(), 2 * 2 * 3, "both views' keys when symmetric");
        m.after_step(0, 1).unwrap();
        let st = m.state.borrow();
        // Capacity 5: one of the 5 random keys is left, then the 4 new ones (3 wide).
        let newest = st.queue.oldest_first().split_off(3);
        assert_eq!(newest, pending);
        assert!(st.pending.is_empty());
    }

    #[test]
    fn bad_settings_are_refused() {
        let ps = ParamStore::new(4, &Device::Cpu);
        let enc = tiny(&ps);
        for (config, word) in [
            (serde_json::json!({"queue": 0}), "method.queue"),
            (
                serde_json::json!({"temperature": 0.0}),
                "method.temperature",
            ),
            (serde_json::json!({"momentum": 1.5}), "method.momentum"),
        ] {
            let err = MoCo::new(&Spec {
                encoder: &enc,
                shape: [1, 8, 8],
                params: &ps,
                config: &config,
                device: &Device::Cpu,
            })
            .err()
            .expect("refused");
            assert!(err.to_string().contains(word), "{err}");
        }
    }
}
