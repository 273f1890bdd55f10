//! BYOL: Bootstrap Your Own Latent (Grill et al. 2020, "Bootstrap your own latent: A new
//! approach to self-supervised Learning", arXiv:2006.07733): no negatives. The online
//! network (encoder `f`, projector `g`, predictor `q`) predicts the target network's
//! projection of the other view; the target (`f'`, `g'`) is an exponential moving average
//! of the online weights and passes no gradient (section 3.1).
//!
//! - loss (eq. 2, symmetrised as eq. 3-4): `2 - 2 cos(q(g(f(v))), g'(f'(v')))`, averaged over
//!   the batch, plus the same with the views swapped ([`byol_loss`]);
//! - target update after every optimizer step `k` of `K`: `xi <- tau xi + (1 - tau) theta`
//!   with `tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2` (section 3.2, [`tau_at`]),
//!   [`genlab_train::ema::Ema`] without its warm-up and with this decay;
//! - projector and predictor: linear, batch norm, ReLU, linear (section 3.3), 4096/256
//!   scaled to 128/64 for a 128-wide encoder; batch norm with the batch's statistics
//!   ([`BatchNorm`], training mode: the heads are not part of the kept representation).
//!
//! The target store holds a copy of the predictor too, never used, so that both stores have
//! the same names as `Ema` requires (a few thousand extra multiply-adds per step).
//! Augmentation: [`crate::augment::simclr`] for both views. BYOL's asymmetric blur and
//! solarisation are left out: the blur (sigma 0.1-2.0 px at 224 px) is at most a quarter
//! pixel on 28-pixel digits, and solarising a digit turns its stroke dark on a white ground,
//! which no test digit looks like.

use std::cell::{Cell, RefCell};

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use genlab_core::{Error, ParamStore, Result, Rng};
use genlab_nn::{relu, Classifier, Linear};
use genlab_train::ema::Ema;
use serde::{Deserialize, Serialize};

use super::{parse_config, two_views, Method, MethodEntry, Spec};
use genlab_nn::norm::l2_normalize;

pub const ENTRY: MethodEntry = MethodEntry {
    name: "byol",
    paper: "Grill et al. 2020, arXiv:2006.07733",
    description:
        "predict a moving-average target network's projection of the other view (no negatives)",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build,
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `tau_base` of the target's moving average. 0.99 rather than the paper's 0.996 (its
    /// Table 5a: 0.99 is within 0.4 points of 0.996): a run here is 500-2,000 steps, not
    /// hundreds of thousands, and over 500 scheduled steps the target keeps
    /// `prod tau_k ~ exp(-(1 - tau_base) 500 / 2)` of its random initialisation, 37% at
    /// 0.996 and 8% at 0.99 (docs/labels.md has the digits runs at 0.9 and 0.99).
    pub tau_base: f64,
    /// Width of the projector's hidden layer and of its output (the predictor's output).
    pub projection: [usize; 2],
    /// Width of the predictor's hidden layer.
    pub predictor_hidden: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tau_base: 0.99,
            projection: [128, 64],
            predictor_hidden: 128,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.tau_base) {
            return Err(Error::setting("method.tau_base", "must lie in [0, 1]"));
        }
        if self.projection.contains(&0) || self.predictor_hidden == 0 {
            return Err(Error::setting(
                "method.projection",
                "widths must be positive (also method.predictor_hidden)",
            ));
        }
        Ok(())
    }
}

/// The target's decay after step `k` of `total` (section 3.2): `tau_base` at 0, rising by a
/// half cosine to 1 at `total`.
pub fn tau_at(tau_base: f64, k: usize, total: usize) -> f64 {
    if total == 0 {
        return tau_base;
    }
    let c = (std::f64::consts::PI * k as f64 / total as f64).cos();
    1.0 - (1.0 - tau_base) * (c + 1.0) / 2.0
}

/// `mean_i (2 - 2 cos(p_i, z_i))` over the rows of `p`, `z` `[N, d]` (eq. 2).
pub fn byol_loss(p: &Tensor, z: &Tensor) -> Result<Tensor> {
    let cos = (l2_normalize(p)? * l2_normalize(z)?)?.sum(1)?;
    Ok(cos.affine(-2.0, 2.0)?.mean_all()?)
}

/// Batch normalisation over the rows of `[N, F]` with the batch's mean and (biased)
/// variance, then a learnt per-feature scale and shift (Ioffe & Szegedy 2015,
/// arXiv:1502.03167, Algorithm 1; training mode only). Differentiable.
pub struct BatchNorm {
    gamma: Tensor,
    beta: Tensor,
}

/// PyTorch's and Haiku's default epsilon.
const BN_EPS: f64 = 1e-5;

impl BatchNorm {
    pub fn new(features: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            gamma: vb.get_with_hints(features, "weight", Init::Const(1.0))?,
            beta: vb.get_with_hints(features, "bias", Init::Const(0.0))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let xc = x.broadcast_sub(&x.mean_keepdim(0)?)?;
        let sd = xc.sqr()?.mean_keepdim(0)?.affine(1.0, BN_EPS)?.sqrt()?;
        Ok(xc
            .broadcast_div(&sd)?
            .broadcast_mul(&self.gamma)?
            .broadcast_add(&self.beta)?)
    }
}

/// Linear, batch norm, ReLU, linear: BYOL's projector and predictor.
struct Head {
    l0: Linear,
    bn: BatchNorm,
    l1: Linear,
}

impl Head {
    fn new(sizes: [usize; 3], vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            l0: Linear::new(sizes[0], sizes[1], vb.pp("l0"))?,
            bn: BatchNorm::new(sizes[1], vb.pp("bn"))?,
            l1: Linear::new(sizes[1], sizes[2], vb.pp("l1"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = relu(&self.bn.forward(&self.l0.forward(x)?)?)?;
        Ok(self.l1.forward(&h)?)
    }
}

/// Projector and predictor on one store.
fn heads(f: usize, c: &Config, vb: &VarBuilder) -> Result<(Head, Head)> {
    let [hid, out] = c.projection;
    let projector = Head::new([f, hid, out], vb.pp("projector"))?;
    let predictor = Head::new([out, c.predictor_hidden, out], vb.pp("predictor"))?;
    Ok((projector, predictor))
}

struct Byol<'a> {
    enc: &'a Classifier,
    projector: Head,
    predictor: Head,
    target_enc: Classifier,
    target_projector: Head,
    /// The target network: its own store, outside the optimizer. Read by the tests only (the
    /// networks and `Ema` hold its variables).
    #[cfg_attr(not(test), allow(dead_code))]
    target_params: ParamStore,
    ema: RefCell<Ema>,
    tau_base: f64,
    /// The decay of the last target update (for the tests).
    last_tau: Cell<f64>,
    shape: [usize; 3],
    device: candle_core::Device,
}

fn build<'a>(s: &Spec<'a>) -> Result<Box<dyn Method + 'a>> {
    Ok(Box::new(Byol::new(s)?))
}

impl<'a> Byol<'a> {
    fn new(s: &Spec<'a>) -> Result<Self> {
        let c: Config = parse_config(s.config)?;
        c.validate()?;
        let f = s.encoder.config().features;
        let (projector, predictor) = heads(f, &c, &s.params.vb())?;
        let target_params = ParamStore::new(0, s.device);
        let target_enc = Classifier::new(s.encoder.config(), target_params.vb().pp("encoder"))?;
        let (target_projector, _unused_predictor) = heads(f, &c, &target_params.vb())?;
        let mut ema = Ema::new(&target_params, s.params, c.tau_base)?;
        ema.warmup = false;
        Ok(Self {
            enc: s.encoder,
            projector,
            predictor,
            target_enc,
            target_projector,
            target_params,
            ema: RefCell::new(ema),
            tau_base: c.tau_base,
            last_tau: Cell::new(f64::NAN),
            shape: s.shape,
            device: s.device.clone(),
        })
    }

    fn online(&self, x: &Tensor) -> Result<Tensor> {
        let z = self.projector.forward(&self.enc.features(x)?)?;
        self.predictor.forward(&z)
    }

    fn target(&self, x: &Tensor) -> Result<Tensor> {
        let z = self
            .target_projector
            .forward(&self.target_enc.features(x)?)?;
        Ok(z.detach())
    }
}

impl Method for Byol<'_> {
    fn loss(&self, x: &[f32], b: usize, rng: &mut Rng) -> Result<Tensor> {
        let [x1, x2] = two_views(x, b, self.shape, &self.device, rng)?;
        let l12 = byol_loss(&self.online(&x1)?, &self.target(&x2)?)?;
        let l21 = byol_loss(&self.online(&x2)?, &self.target(&x1)?)?;
        Ok((l12 + l21)?)
    }

    fn after_step(&self, step: usize, total: usize) -> Result<()> {
        let tau = tau_at(self.tau_base, step, total);
        let mut ema = self.ema.borrow_mut();
        ema.decay = tau;
        ema.update(step as u64)?;
        self.last_tau.set(tau);
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
    fn the_loss_matches_a_brute_force_sum_and_passes_a_gradient() {
        let mut rng = Rng::new(21);
        for (n, d) in [(1, 2), (5, 3), (9, 16)] {
            let pv = rng.normal_vec(n * d);
            let zv = rng.normal_vec(n * d);
            let p = Var::from_vec(pv.clone(), (n, d), &Device::Cpu).unwrap();
            let z = Tensor::from_vec(zv.clone(), (n, d), &Device::Cpu).unwrap();
            let got = byol_loss(p.as_tensor(), &z).unwrap();
            let mut want = 0.0;
            for (a, b) in pv.chunks(d).zip(zv.chunks(d)) {
                let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
                let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                let nb = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                want += 2.0 - 2.0 * dot / (na * nb);
            }
            want /= n as f64;
            let g = got.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (g - want).abs() < TOL * want.max(1.0),
                "n={n}: {g} vs {want}"
            );
            assert!(got.backward().unwrap().get(p.as_tensor()).is_some());
        }
    }

    #[test]
    fn the_tau_schedule_rises_from_tau_base_to_one() {
        for base in [0.99, 0.996] {
            assert!((tau_at(base, 0, 1000) - base).abs() < 1e-15);
            assert!((tau_at(base, 500, 1000) - (1.0 + base) / 2.0).abs() < 1e-15);
            assert!((tau_at(base, 1000, 1000) - 1.0).abs() < 1e-15);
            // A quarter of the way: 1 - (1 - base)(1 + cos(pi/4))/2.
            let q = 1.0 - (1.0 - base) * (1.0 + 0.5f64.sqrt()) / 2.0;
            assert!((tau_at(base, 250, 1000) - q).abs() < 1e-15);
        }
    }

    #[test]
    fn batch_norm_matches_a_brute_force_standardisation() {
        let ps = ParamStore::new(1, &Device::Cpu);
        let bn = BatchNorm::new(3, ps.vb()).unwrap();
        let (gamma, beta) = ([0.5f32, -1.0, 2.0], [0.1f32, 0.0, -0.3]);
        for (name, v) in ps.vars() {
            let val = if name == "weight" { gamma } else { beta };
            v.set(&Tensor::new(&val, &Device::Cpu).unwrap()).unwrap();
        }
        let mut rng = Rng::new(2);
        let xv = rng.normal_vec(4 * 3);
        let x = Tensor::from_vec(xv.clone(), (4, 3), &Device::Cpu).unwrap();
        let got = host(&bn.forward(&x).unwrap());
        for j in 0..3 {
            let col: Vec<f64> = (0..4).map(|i| xv[i * 3 + j] as f64).collect();
            let mean = col.iter().sum::<f64>() / 4.0;
            let var = col.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / 4.0;
            for i in 0..4 {
                let want =
                    (col[i] - mean) / (var + BN_EPS).sqrt() * gamma[j] as f64 + beta[j] as f64;
                assert!((got[i * 3 + j] - want).abs() < TOL, "{i},{j}");
            }
        }
    }

    #[test]
    fn no_gradient_reaches_the_target_and_it_follows_by_the_scheduled_average() {
        let ps = ParamStore::new(3, &Device::Cpu);
        let cfg = ClassifierConfig {
            input: [1, 8, 8],
            channels: [2, 3],
            features: 5,
            ..Default::default()
        };
        let enc = Classifier::new(&cfg, ps.vb().pp("encoder")).unwrap();
        let config =
            serde_json::json!({"projection": [4, 3], "predictor_hidden": 4, "tau_base": 0.9});
        let m = Byol::new(&Spec {
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
        for (name, v) in m.target_params.vars() {
            assert!(
                grads.get(v.as_tensor()).is_none(),
                "target `{name}` got a gradient"
            );
        }
        for name in [
            "encoder.conv.0.weight",
            "projector.bn.weight",
            "predictor.l1.weight",
        ] {
            let v = ps.vars().into_iter().find(|(n, _)| n == name).unwrap().1;
            assert!(
                grads.get(v.as_tensor()).is_some(),
                "`{name}` got no gradient"
            );
        }
        // Move the online weights; one update at step 3 of 12 against its closed form.
        let before: Vec<Vec<f64>> = m
            .target_params
            .vars()
            .iter()
            .map(|(_, v)| host(v.as_tensor()))
            .collect();
        for (_, v) in ps.vars() {
            let w = Tensor::from_vec(rng.normal_vec(v.elem_count()), v.shape(), &Device::Cpu);
            v.set(&w.unwrap()).unwrap();
        }
        m.after_step(3, 12).unwrap();
        let tau = 1.0 - 0.1 * ((std::f64::consts::PI / 4.0).cos() + 1.0) / 2.0;
        assert!((m.last_tau.get() - tau).abs() < 1e-15);
        let online = ps.vars();
        for (((name, t), before), (_, w)) in m.target_params.vars().iter().zip(&before).zip(&online)
        {
            for ((got, b), w) in host(t.as_tensor())
                .iter()
                .zip(before)
                .zip(host(w.as_tensor()))
            {
                let want = tau * b + (1.0 - tau) * w;
                assert!((got - want).abs() < TOL, "{name}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let ps = ParamStore::new(3, &Device::Cpu);
        let enc = Classifier::new(&ClassifierConfig::default(), ps.vb().pp("encoder")).unwrap();
        for (config, word) in [
            (serde_json::json!({"tau_base": 1.2}), "method.tau_base"),
            (
                serde_json::json!({"projection": [0, 4]}),
                "method.projection",
            ),
        ] {
            let err = Byol::new(&Spec {
                encoder: &enc,
                shape: [1, 28, 28],
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
