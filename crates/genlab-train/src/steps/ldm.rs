//! Training step for latent diffusion (Rombach et al. 2022, arXiv:2112.10752): the DDPM's
//! L_simple on `s * E(x)` of a frozen first stage (a genlab autoencoder run, or the
//! pretrained TAEF2), AdamW, clipping, EMA; previews and samples are decoded images. See
//! `genlab_models::diffusion::ldm`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};

use genlab_core::{Error, Result, Rng};
use genlab_data::{make_batch, Batch, Dataset};
use genlab_models::autoencoder::taef2::Taef2;
use genlab_models::autoencoder::Autoencoder;
use genlab_models::diffusion::ldm::{latent_scale, FirstStage, Ldm, LdmConfig, TextCondition};
use genlab_models::diffusion::{Ddpm, DdpmConfig, NetConfig};
use genlab_models::{DataSpace, Sample};
use genlab_nn::UNetConfig;

use super::autoencoder::autoencoder_config;
use super::weights::TrainedWeights;
use crate::registry::{config_value, load_weights, parse_config, Capabilities, ModelEntry, NONE};
use crate::run::TrainConfig;
use crate::step::TrainStep;
use crate::text_encoders::{open_text_encoder, TextEncoder};

/// Training images the latent scale factor is measured on (LDM uses one batch).
const SCALE_EXAMPLES: usize = 5000;
/// Images per encoder call while measuring it, for 28x28 images (fewer for larger ones, so
/// that a call's activations stay near the same size).
const SCALE_BATCH: usize = 500;
/// The pixels per image [`SCALE_BATCH`] is sized for.
const SCALE_BATCH_PIXELS: usize = 28 * 28;

/// Caption templates of single digits (`captions = "digits"`); `{}` is the digit's word or
/// numeral.
pub const DIGIT_TEMPLATES: &[&str] = &[
    "a handwritten {}",
    "the digit {}",
    "a {}",
    "{}",
    "a picture of the number {}",
    "a hand-drawn {}",
];

/// One training caption for an image of class `label` from the source `captions`:
/// `digits` (MNIST classes 0-9, [`DIGIT_TEMPLATES`]) or `pairs` (the two-digit canvas,
/// label 10 * left + right, `genlab_data::pairs`' training templates).
pub fn caption(captions: &str, label: u32, rng: &mut Rng) -> Result<String> {
    match captions {
        "digits" if label < 10 => {
            let names = genlab_data::captions::digit_names(label as u8);
            let t = DIGIT_TEMPLATES[rng.below(DIGIT_TEMPLATES.len() as u64) as usize];
            Ok(t.replace("{}", &names[rng.below(2) as usize]))
        }
        "pairs" => {
            let (l, r) = genlab_data::pairs::label_digits(label)?;
            genlab_data::pairs::random_pair_caption(l, r, rng)
        }
        "digits" => Err(Error::Data(format!(
            "captions = \"digits\" needs digit labels 0-9, got {label}"
        ))),
        other => Err(Error::setting(
            "ldm.text.captions",
            format!("unknown caption source `{other}` (known: digits, pairs)"),
        )),
    }
}

/// The text side of a text-conditioned LDM: the frozen encoder and the token states of
/// every caption seen so far (training draws from a few hundred distinct captions).
pub struct PromptEncoder {
    pub cfg: TextCondition,
    encoder: Box<dyn TextEncoder>,
    cache: Mutex<HashMap<String, (Tensor, Tensor)>>,
    device: Device,
}

impl PromptEncoder {
    pub fn new(cfg: &TextCondition, device: &Device) -> Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            encoder: open_text_encoder(&cfg.encoder, &Device::Cpu)?,
            cache: Mutex::new(HashMap::new()),
            device: device.clone(),
        })
    }

    /// Token states `[B, L, D]` and mask `[B, L]` of `texts` on the model's device, and
    /// which texts were cut to `max_tokens`.
    pub fn encode(&self, texts: &[String]) -> Result<(Tensor, Tensor, Vec<bool>)> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::Numeric("the prompt cache lock is poisoned".into()))?;
        let missing: Vec<&str> = texts
            .iter()
            .filter(|t| !cache.contains_key(t.as_str()))
            .map(|t| t.as_str())
            .collect();
        let mut truncated_new = HashMap::new();
        if !missing.is_empty() {
            let ts = self.encoder.token_states(&missing, self.cfg.max_tokens)?;
            for (i, t) in missing.iter().enumerate() {
                let st = ts.states.get(i)?.to_device(&self.device)?;
                let m = ts.mask.get(i)?.to_device(&self.device)?;
                cache.insert(t.to_string(), (st, m));
                truncated_new.insert(t.to_string(), ts.truncated[i]);
            }
        }
        let (mut st, mut m) = (Vec::new(), Vec::new());
        for t in texts {
            let (a, b) = &cache[t.as_str()];
            st.push(a.clone());
            m.push(b.clone());
        }
        let truncated = texts
            .iter()
            .map(|t| truncated_new.get(t).copied().unwrap_or(false))
            .collect();
        Ok((Tensor::stack(&st, 0)?, Tensor::stack(&m, 0)?, truncated))
    }
}

pub struct LdmStep {
    w: TrainedWeights,
    model: Ldm,
    ema_model: Ldm,
    prompts: Option<PromptEncoder>,
}

/// Loads the first stage of an LDM config onto `device`: TAEF2 (its weights from
/// `ldm.weights`, else the cache or a local copy), or the autoencoder run at the LDM's image
/// size when `any_image_size` allows another size than it was trained on.
pub fn ldm_autoencoder(cfg: &LdmConfig, device: &Device) -> Result<FirstStage> {
    if cfg.uses_taef2() {
        return open_taef2(cfg.weights.as_deref().map(Path::new), &cfg.data, device);
    }
    Ok(FirstStage::Trained(Box::new(trained_autoencoder(
        cfg, device,
    )?)))
}

/// TAEF2 from the folder `weights` (else the genlab cache, else a local copy) as the first
/// stage of images `data`.
pub fn open_taef2(weights: Option<&Path>, data: &DataSpace, device: &Device) -> Result<FirstStage> {
    let dir = genlab_data::taef2::find_taef2(weights)?;
    FirstStage::taef2(Taef2::load_dir(&dir, device)?, data)
}

/// The first stage named `spec`: `taef2` at images `data` (weights as in [`open_taef2`]),
/// or the run directory of a genlab autoencoder, at the image shape it was trained on
/// (`data` is not used), with the name of the dataset it was trained on.
pub fn open_first_stage(
    spec: &str,
    weights: Option<&Path>,
    data: Option<&DataSpace>,
    device: &Device,
) -> Result<(FirstStage, Option<String>)> {
    if spec.trim() == genlab_models::diffusion::ldm::TAEF2_FIRST_STAGE {
        let data = data.ok_or_else(|| {
            Error::InvalidInput("TAEF2 needs an image size (it encodes any RGB size)".into())
        })?;
        return Ok((open_taef2(weights, data, device)?, None));
    }
    if weights.is_some() {
        return Err(Error::setting(
            "weights",
            "names TAEF2's weights folder; an autoencoder run brings its own weights",
        ));
    }
    let (ae, run) = super::autoencoder::load_autoencoder(Path::new(spec), device)?;
    Ok((FirstStage::Trained(Box::new(ae)), Some(run.data)))
}

fn trained_autoencoder(cfg: &LdmConfig, device: &Device) -> Result<Autoencoder> {
    let saved = crate::registry::read_run(
        Path::new(&cfg.autoencoder),
        &[super::autoencoder::ENTRY.name],
        "an autoencoder (ldm.autoencoder)",
    )?;
    let mut ae_cfg = autoencoder_config(&saved.run.model_config)?;
    if ae_cfg.data != cfg.data {
        let same_channels = ae_cfg.data.shape.first() == cfg.data.shape.first();
        if !cfg.any_image_size || !same_channels {
            return Err(Error::Config(format!(
                "the autoencoder {} was trained on `{}` images of shape {:?}; this LDM's images                  are {:?}{}",
                cfg.autoencoder,
                saved.run.data,
                ae_cfg.data.shape,
                cfg.data.shape,
                if same_channels {
                    " (it is fully convolutional: --set ldm.any_image_size=true uses it at this                      size anyway)"
                } else {
                    ""
                }
            )));
        }
        ae_cfg.data = cfg.data.clone();
    }
    load_weights(&saved.ema_weights(), device, |vb| {
        Autoencoder::new(&ae_cfg, vb)
    })
}

impl LdmStep {
    pub fn new(cfg: &LdmConfig, train: &TrainConfig, seed: u64, device: &Device) -> Result<Self> {
        let ae = ldm_autoencoder(cfg, device)?;
        let (w, ddpm, ema_ddpm) =
            TrainedWeights::new(train, seed, device, |s| Ddpm::new(&cfg.ddpm, s.vb()))?;
        let prompts = match &cfg.text {
            Some(t) => Some(PromptEncoder::new(t, device)?),
            None => None,
        };
        Ok(Self {
            w,
            model: Ldm::new(cfg, ddpm, ae.clone())?,
            ema_model: Ldm::new(cfg, ema_ddpm, ae)?,
            prompts,
        })
    }
}

impl TrainStep for LdmStep {
    super::weights::delegate_to_weights!();

    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let (loss_v, grads) = self.loss_and_grads(batch, rng)?;
        let norm = self.w.apply(&grads, lr)?;
        Ok(vec![("loss".into(), loss_v), ("grad_norm".into(), norm)])
    }

    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)> {
        let loss = match &self.prompts {
            Some(p) => {
                let labels: Vec<u32> = batch
                    .labels
                    .as_ref()
                    .ok_or_else(|| {
                        Error::Data(
                            "a text-conditioned LDM makes its captions from class labels; this \
                             dataset has none"
                                .into(),
                        )
                    })?
                    .to_vec1()?;
                let texts = labels
                    .iter()
                    .map(|&l| caption(&p.cfg.captions, l, rng))
                    .collect::<Result<Vec<_>>>()?;
                let (t, m, _) = p.encode(&texts)?;
                self.model.loss(&batch.x, None, Some((&t, &m)), rng)?
            }
            None => self
                .model
                .loss(&batch.x, batch.labels.as_ref(), None, rng)?,
        };
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            return Err(Error::Numeric(format!("the loss is {loss_v}")));
        }
        Ok((loss_v, loss.backward()?))
    }

    fn sampler(&self) -> Option<&dyn Sample> {
        Some(&self.ema_model)
    }
}

/// Parses and checks an `ldm` model config.
pub fn ldm_config(v: &serde_json::Value) -> Result<LdmConfig> {
    parse_config(v, "ldm", LdmConfig::validate)
}

/// The preset: the DDPM of images with a U-Net sized for small latents (7x7 for MNIST at
/// f = 4): base 64 channels, levels [1, 2] (7 -> 4), two blocks per level, attention at
/// the lowest level. Its `data` is the image space until the run is prepared.
fn default_config(d: &DataSpace) -> Result<serde_json::Value> {
    if !d.images || d.shape.len() != 3 {
        return Err(Error::Config(format!(
            "latent diffusion is for images [C, H, W]; the data have shape {:?}",
            d.shape
        )));
    }
    let mut ddpm = DdpmConfig::for_data(d);
    ddpm.net = NetConfig::Unet(UNetConfig {
        // 64: at 7x7 a wide network is still cheap (49 positions).
        base_channels: 64,
        // [1, 2]: 7 -> 4; a third level would be 2x2.
        channel_mult: vec![1, 2],
        // 2: DDPM's count per level.
        num_res_blocks: 2,
        attention_at_lowest: true,
        // 4 heads of 32 channels at the lowest level.
        heads: 4,
        groups: 8,
    });
    config_value(&LdmConfig {
        autoencoder: String::new(),
        scale_factor: None,
        ddpm,
        data: d.clone(),
        text: None,
        any_image_size: false,
        weights: None,
    })
}

/// Reads the autoencoder run, checks it was trained on these images, sets the DDPM's data
/// space to its latents and measures the scale factor on the training data (unless set).
fn prepare(v: &mut serde_json::Value, data: &dyn Dataset) -> Result<()> {
    let mut cfg: LdmConfig = serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("invalid ldm config: {e}")))?;
    // The missing-autoencoder message and the DDPM's own checks, before any file is read.
    cfg.validate()?;
    let ae = ldm_autoencoder(&cfg, &Device::Cpu)?;
    if let Some(t) = &cfg.text {
        let e = crate::text_encoders::find_text_encoder(&t.encoder)?;
        match &cfg.ddpm.net {
            NetConfig::CondUnet(u) if u.cross_attention_dim == e.dim => {}
            NetConfig::CondUnet(u) => {
                return Err(Error::Config(format!(
                    "ldm.text.encoder {} gives {}-wide token states; set \
                     ldm.ddpm.net.cond-unet.cross_attention_dim={} (it is {})",
                    t.encoder, e.dim, e.dim, u.cross_attention_dim
                )))
            }
            NetConfig::Dit(d) if d.context_dim == Some(e.dim) => {}
            NetConfig::Dit(_) => {
                return Err(Error::Config(format!(
                    "ldm.text.encoder {} gives {}-wide token states; a DiT cross-attends to \
                     them with ldm.ddpm.net.dit.context_dim={}",
                    t.encoder, e.dim, e.dim
                )))
            }
            _ => {
                return Err(Error::Config(
                    "ldm.text needs a network that cross-attends: ldm.ddpm.net = cond-unet, or \
                     a DiT with ldm.ddpm.net.dit.context_dim set"
                        .into(),
                ))
            }
        }
        caption(&t.captions, 0, &mut Rng::new(0))?;
        if data.num_classes().is_none() {
            return Err(Error::InvalidInput(format!(
                "a text-conditioned LDM makes its captions from class labels; `{}` has none",
                data.name()
            )));
        }
    }
    cfg.ddpm.data = DataSpace {
        shape: ae.latent_shape(),
        images: false,
    };
    if cfg.scale_factor.is_none() {
        let n = data.len().min(SCALE_EXAMPLES);
        let pixels: usize = cfg.data.shape.iter().skip(1).product();
        let batch = (SCALE_BATCH * SCALE_BATCH_PIXELS / pixels.max(1)).clamp(1, SCALE_BATCH);
        let mut rng = Rng::derive(0, "ldm-scale");
        let mut z = Vec::new();
        for start in (0..n).step_by(batch) {
            let idx: Vec<usize> = (start..(start + batch).min(n)).collect();
            let b = make_batch(data, &idx, &Device::Cpu)?;
            let s = ae.encode_sample(&b.x, &mut rng)?.detach();
            z.extend(s.flatten_all()?.to_vec1::<f32>()?);
        }
        cfg.scale_factor = Some(latent_scale(&z)?);
    }
    cfg.validate()?;
    *v = config_value(&cfg)?;
    Ok(())
}

/// The `ldm` registry entry.
pub const ENTRY: ModelEntry = ModelEntry {
    name: "ldm",
    prepare: Some(prepare),
    description: "latent diffusion (Rombach et al. 2022): a DDPM on a trained autoencoder's latents, decoded at the end",
    caps: Capabilities {
        trains_fresh: true,
        generates: true,
        sampler_zoo: true,
        conditional: true,
        ..NONE
    },
    default_config,
    default_train: |_| TrainConfig::for_images(),
    build_step: |v, t, seed, device| Ok(Box::new(LdmStep::new(&ldm_config(v)?, t, seed, device)?)),
    load: |v, w, device| {
        let cfg = ldm_config(v)?;
        let ae = ldm_autoencoder(&cfg, device)?;
        let ddpm = load_weights(w, device, |vb| Ddpm::new(&cfg.ddpm, vb))?;
        Ok(Box::new(Ldm::new(&cfg, ddpm, ae)?))
    },
};
