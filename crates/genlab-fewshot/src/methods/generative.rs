//! A generative-modelling approach: a VAE (Kingma & Welling 2014, "Auto-Encoding Variational
//! Bayes", arXiv:1312.6114; genlab's [`genlab_models::vae::Vae`]) trained on the base
//! classes, novel classes modelled from their K shots in its latent space, classification
//! by likelihood (the idea of few-shot generative classifiers such as Edwards & Storkey
//! 2017, "Towards a Neural Statistician", arXiv:1606.02185, in its simplest form).
//!
//! Meta-training is plain VAE training: the loss is the negative ELBO (Kingma & Welling
//! eq. 3) of every image of the batch's episodes, whatever their labels. At test time each
//! image x is encoded to q(z|x) = N(μ(x), diag σ²(x)); a novel class c is the Gaussian
//! N(m_c, diag v_c) with m_c the mean of its shots' μ and v_c the mean of their σ² plus,
//! with K > 1, the shots' sample variance of μ; a query is assigned the class under which
//! its μ is most likely, `argmax_c log N(μ(x); m_c, v_c)`. The reparameterisation noise of
//! a training step is seeded from the step's episodes (their first pixels), so a resumed
//! run draws the same noise.

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use genlab_core::{ParamStore, Result, Rng};
use genlab_models::vae::{Vae, VaeConfig};
use genlab_models::DataSpace;

use super::{parse_config, MetaLoss, Method, MethodEntry, Spec, Task, TaskKind};

/// Settings of [`Generative`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Dimension of z.
    pub latent: usize,
    /// Hidden widths of the encoder (the decoder mirrors them).
    pub hidden: Vec<usize>,
    /// Floor on a class's latent variance (keeps the log-density finite).
    pub min_var: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // 32: genlab's MNIST VAE preset.
            latent: 32,
            // [512, 256]: genlab's MNIST VAE preset.
            hidden: vec![512, 256],
            // 1e-3: far below the encoder's typical posterior variances (~1e-2 and up).
            min_var: 1e-3,
        }
    }
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "generative",
    paper: "VAE (Kingma & Welling 2014, arXiv:1312.6114) on base classes; novel classes as latent Gaussians from their shots",
    description: "a genlab VAE trained on the base classes; each novel class a Gaussian in latent space; queries by likelihood",
    kind: TaskKind::Classification,
    double_backward: |_| false,
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(Generative::new(spec)?)),
};

/// See the module documentation.
pub struct Generative {
    cfg: Config,
    store: ParamStore,
    vae: Vae,
}

impl Generative {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        let store = ParamStore::new(spec.seed, &spec.device);
        let mut vc = VaeConfig::for_data(&DataSpace {
            shape: spec.input.clone(),
            images: true,
        });
        vc.latent = cfg.latent;
        vc.net = genlab_models::vae::VaeNet::Mlp {
            hidden: cfg.hidden.clone(),
        };
        let vae = Vae::new(&vc, store.vb().pp("vae"))?;
        Ok(Self { cfg, store, vae })
    }

    /// Log-densities `[M, N]` of the queries' latent means under each class's Gaussian.
    fn class_log_density(&self, ep: &crate::Episode) -> Result<Tensor> {
        let (n, k) = (ep.shape.ways, ep.shape.shots);
        let (mu_s, lv_s) = self.vae.encode(&self.vae.prepare(&ep.support)?, &None)?; // [NK, L]
        let l = mu_s.dim(1)?;
        let mu_s = mu_s.reshape((n, k, l))?;
        let m = mu_s.mean(1)?; // [N, L]
        let mut v = lv_s.exp()?.reshape((n, k, l))?.mean(1)?; // mean posterior variance
        if k > 1 {
            let spread = mu_s.broadcast_sub(&m.unsqueeze(1)?)?.sqr()?.sum(1)? / (k - 1) as f64;
            v = (v + spread?)?;
        }
        let v = v.clamp(self.cfg.min_var, f64::INFINITY)?; // [N, L]
        let (mu_q, _) = self.vae.encode(&self.vae.prepare(&ep.query)?, &None)?; // [M, L]
                                                                                // log N(μ; m_c, v_c) = -½ Σ_l [ln 2π v + (μ - m)² / v].
        let d2 = mu_q.unsqueeze(1)?.broadcast_sub(&m.unsqueeze(0)?)?.sqr()?; // [M, N, L]
        let quad = d2.broadcast_div(&v.unsqueeze(0)?)?;
        let logdet = (v.log()? + (2.0 * std::f64::consts::PI).ln())?.unsqueeze(0)?;
        Ok((quad.broadcast_add(&logdet)?.sum(D::Minus1)? * -0.5)?)
    }
}

/// A seed from an episode's first pixels (the same episode, the same noise).
fn episode_seed(ep: &crate::Episode) -> Result<u64> {
    let first: Vec<f32> = ep
        .support
        .flatten_all()?
        .narrow(0, 0, 64.min(ep.support.elem_count()))?
        .to_vec1()?;
    Ok(first.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
        (h ^ v.to_bits() as u64).wrapping_mul(0x1000_0000_01b3)
    }))
}

impl Method for Generative {
    fn meta_loss(&mut self, tasks: &[Task]) -> Result<MetaLoss> {
        super::mean_over_episodes(tasks, "generative", |ep| {
            let x = Tensor::cat(&[&ep.support, &ep.query], 0)?;
            let mut rng = Rng::derive(episode_seed(ep)?, "vae-noise");
            let terms = self.vae.elbo(&x, None, &mut rng)?;
            let acc = super::accuracy(&self.class_log_density(ep)?.detach(), &ep.query_labels)?;
            Ok((terms.loss, acc))
        })
    }

    fn evaluate(&self, task: &Task) -> Result<f64> {
        let ep = super::episode(task, "generative")?;
        super::accuracy(&self.class_log_density(ep)?.detach(), &ep.query_labels)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// f32 against f64 brute force.
    const TOL: f64 = 1e-3;

    #[test]
    fn class_log_density_matches_a_brute_force_gaussian() {
        let set = crate::sources::synthetic(6, 6, 6, 2);
        let shape = crate::EpisodeShape {
            ways: 3,
            shots: 2,
            queries: 2,
        };
        let ep =
            crate::episode::sample_episode(&set, shape, &mut Rng::new(1), &Device::Cpu).unwrap();
        let cfg = serde_json::json!({"latent": 3, "hidden": [16], "min_var": 1e-3});
        let g = Generative::new(&Spec {
            input: vec![1, 6, 6],
            seed: 0,
            config: &cfg,
            device: Device::Cpu,
        })
        .unwrap();
        let got = g.class_log_density(&ep).unwrap().to_vec2::<f32>().unwrap();
        let (mu_s, lv_s) = g
            .vae
            .encode(&g.vae.prepare(&ep.support).unwrap(), &None)
            .unwrap();
        let (mu_q, _) = g
            .vae
            .encode(&g.vae.prepare(&ep.query).unwrap(), &None)
            .unwrap();
        let (mu_s, lv_s, mu_q) = (
            mu_s.to_vec2::<f32>().unwrap(),
            lv_s.to_vec2::<f32>().unwrap(),
            mu_q.to_vec2::<f32>().unwrap(),
        );
        for (qi, q) in mu_q.iter().enumerate() {
            for c in 0..3 {
                let mut lp = 0f64;
                for l in 0..3 {
                    let a = (mu_s[2 * c][l] as f64, mu_s[2 * c + 1][l] as f64);
                    let m = (a.0 + a.1) / 2.0;
                    let post =
                        ((lv_s[2 * c][l] as f64).exp() + (lv_s[2 * c + 1][l] as f64).exp()) / 2.0;
                    let spread = (a.0 - m).powi(2) + (a.1 - m).powi(2); // / (K - 1) = 1
                    let v = (post + spread).max(1e-3);
                    lp += -0.5
                        * ((2.0 * std::f64::consts::PI * v).ln() + (q[l] as f64 - m).powi(2) / v);
                }
                assert!(
                    (got[qi][c] as f64 - lp).abs() < TOL * (1.0 + lp.abs()),
                    "{} vs {lp}",
                    got[qi][c]
                );
            }
        }
    }
}
