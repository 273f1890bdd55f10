//! Trained representations read from run directories, for the one evaluation of
//! representations (linear probe and k-NN, [`crate::eval::probe_frozen`]) and for transfer
//! ([`crate::transfer`]):
//!
//! | run | features |
//! |---|---|
//! | `genlab ssl train` | the self-supervised encoder's feature layer |
//! | `genlab train --model classifier` | the supervised digit classifier's feature layer (its EMA weights) |
//! | `genlab train --model vae` | the posterior mean of q(z\|x), the generative baseline (Kingma & Welling 2014, arXiv:1312.6114) |
//!
//! The first two are genlab-nn's [`Classifier`] feature stack, so they can also be
//! fine-tuned ([`Representation::classifier_weights`]); a VAE's features are probed only.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use genlab_core::{Error, ParamStore, Result};
use genlab_models::vae::Vae;
use genlab_nn::{Classifier, ClassifierConfig};

use crate::ssl::SslConfig;

/// What kind of run a representation came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A self-supervised run (`genlab ssl train --method M`).
    Ssl { method: String },
    /// A supervised digit classifier (`genlab train --model classifier`).
    Classifier,
    /// A VAE (`genlab train --model vae`).
    Vae,
}

enum Net {
    Classifier {
        net: Classifier,
        weights: HashMap<String, Tensor>,
    },
    Vae(Box<Vae>),
}

/// A frozen feature map `[B, C, H, W]` in [0, 1] -> `[B, dim]`.
pub struct Representation {
    pub kind: Kind,
    /// The data it was trained on (a `genlab-labels` data name or a `genlab train` spec).
    pub data: String,
    /// Input `[C, H, W]`.
    pub input: [usize; 3],
    pub dim: usize,
    net: Net,
}

/// The training data spec without its split (`mnist:train` -> `mnist`).
fn base_name(spec: &str) -> &str {
    spec.split(':').next().unwrap_or(spec)
}

impl Representation {
    /// Reads the run at `run` (a directory), whichever of the three kinds it is.
    pub fn load(run: &Path, device: &Device) -> Result<Self> {
        let cfg_file = run.join("config.json");
        if cfg_file.exists() {
            if let Ok(cfg) = genlab_core::io::read_json::<SslConfig>(&cfg_file) {
                return Self::load_ssl(run, &cfg, device);
            }
        }
        let saved = genlab_train::registry::read_run(
            run,
            &["classifier", "vae"],
            "a representation (an ssl run, a classifier or a VAE)",
        )?;
        let data = saved.run.data.clone();
        let weights = saved.ema_weights();
        match saved.run.model.as_str() {
            "classifier" => {
                let cfg =
                    genlab_train::steps::classifier::classifier_config(&saved.run.model_config)?;
                Self::classifier(Kind::Classifier, data, cfg, weights, device)
            }
            _ => {
                let cfg = genlab_train::steps::vae::vae_config(&saved.run.model_config)?;
                if cfg.num_classes > 0 {
                    return Err(Error::InvalidInput(format!(
                        "{} is a class-conditional VAE: its encoder needs the label, so its \
                         features cannot represent unlabelled images (train one without \
                         model.num_classes)",
                        run.display()
                    )));
                }
                let [c, h, w] = cfg.data.shape[..] else {
                    return Err(Error::InvalidInput(format!(
                        "{} is a VAE of {:?} points, not of images",
                        run.display(),
                        cfg.data.shape
                    )));
                };
                let vae = genlab_train::registry::load_weights(&weights, device, |vb| {
                    Vae::new(&cfg, vb)
                })?;
                Ok(Self {
                    kind: Kind::Vae,
                    data,
                    input: [c, h, w],
                    dim: cfg.latent,
                    net: Net::Vae(Box::new(vae)),
                })
            }
        }
    }

    fn load_ssl(run: &Path, cfg: &SslConfig, device: &Device) -> Result<Self> {
        let shape = crate::Data::open(&cfg.data)?.shape;
        let [c, h, w] = shape[..] else {
            return Err(Error::InvalidInput(format!(
                "ssl run {} was trained on data of shape {shape:?}, not images",
                run.display()
            )));
        };
        let file = run.join("checkpoint.safetensors");
        if !file.exists() {
            return Err(Error::Checkpoint(format!(
                "no encoder at {} (is the ssl run finished?)",
                file.display()
            )));
        }
        let saved = genlab_core::io::load_safetensors(&file, device)?;
        let weights: HashMap<String, Tensor> = saved
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("encoder.").map(|k| (k.to_string(), v)))
            .collect();
        let enc = ClassifierConfig {
            input: [c, h, w],
            ..cfg.encoder.clone()
        };
        Self::classifier(
            Kind::Ssl {
                method: cfg.method.clone(),
            },
            cfg.data.clone(),
            enc,
            weights,
            device,
        )
    }

    fn classifier(
        kind: Kind,
        data: String,
        cfg: ClassifierConfig,
        weights: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let ps = ParamStore::new(0, device);
        let net = Classifier::new(&cfg, ps.vb())?;
        ps.load(&weights)?;
        Ok(Self {
            kind,
            data,
            input: cfg.input,
            dim: cfg.features,
            net: Net::Classifier {
                net,
                weights: ps.tensors(),
            },
        })
    }

    /// Features `[B, dim]` of images `[B, C, H, W]` in [0, 1], detached.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1..] != self.input {
            return Err(Error::InvalidInput(format!(
                "this representation takes images [N, {}, {}, {}], got {dims:?}",
                self.input[0], self.input[1], self.input[2]
            )));
        }
        Ok(match &self.net {
            Net::Classifier { net, .. } => net.features(x)?.detach(),
            Net::Vae(v) => v.encode(&v.prepare(x)?, &None)?.0.detach(),
        })
    }

    /// What the features are, in words (for reports).
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Ssl { method } => format!(
                "the {method} encoder's {}-d feature layer (trained on {}, no labels)",
                self.dim, self.data
            ),
            Kind::Classifier => format!(
                "the {}-d feature layer of a classifier trained with labels on {}",
                self.dim,
                base_name(&self.data)
            ),
            Kind::Vae => format!(
                "the {}-d posterior mean of a VAE trained on {}",
                self.dim,
                base_name(&self.data)
            ),
        }
    }

    /// The config and weights (names as in [`Classifier`], head included) of a
    /// classifier-shaped representation, to fine-tune; a VAE is refused.
    pub fn classifier_weights(&self) -> Result<(ClassifierConfig, HashMap<String, Tensor>)> {
        match &self.net {
            Net::Classifier { net, weights } => Ok((net.config().clone(), weights.clone())),
            Net::Vae(_) => Err(Error::InvalidInput(
                "a VAE's features can be probed (mode `probe`) but not fine-tuned as a \
                 classifier: fine-tuning needs an ssl run or a classifier run"
                    .into(),
            )),
        }
    }
}
