//! The Stable Diffusion text-to-image pipeline on genlab's networks and samplers.
//!
//! Rombach et al. 2022 (arXiv:2112.10752) with classifier-free guidance (Ho & Salimans 2022,
//! arXiv:2207.12598): prompts -> CLIP tokens (77, padded) -> the text encoder's last hidden
//! state as the U-Net's cross-attention context; the negative prompt (default: the empty
//! prompt) gives the unconditional half of each guided step; any sampler of genlab's zoo runs
//! on the noise schedule and prediction type of the checkpoint's `scheduler_config.json`;
//! the final latents are divided by the VAE's scaling factor and decoded to [0, 1].
//!
//! The pipeline is a [`Sample`]: its condition is the prompts' hidden states (`tokens`) and,
//! optionally, the negative prompts' (`negative_tokens`), so `genlab txt2img --model` shares
//! the rest of `genlab txt2img`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use genlab_core::{Condition, Error, Result, Rng};
use genlab_nn::CondUNet;
use genlab_sampling::guidance::{ClassifierFree, ConditionalDenoiser, Conditioned};
use genlab_sampling::scheduler_json::SchedulerJson;
use genlab_sampling::{build_sampler, NoiseSchedule, Prediction, SamplerOptions};

use genlab_data::tokenize::HfClipTokenizer;

use super::hf_clip::{HfClipText, HfClipTextConfig};
use super::sd::{self, SdVae, SingleFileKind};
use super::{ldm_keys, TensorMap};
use crate::sample::{DataSpace, Sample, SampleRequest, SampleResult};

/// How to read a checkpoint that does not say everything itself.
#[derive(Clone, Debug, Default)]
pub struct SdLoadOptions {
    /// For a single file: a diffusers folder whose config.json files (and tokenizer,
    /// scheduler) describe it, as diffusers' `from_single_file(config=...)`.
    pub config_dir: Option<PathBuf>,
    /// Overrides the prediction type (a single SD 2.x file does not say whether it is the
    /// 768-v model, v-prediction, or the 512 base, epsilon).
    pub prediction: Option<Prediction>,
}

/// A loaded Stable Diffusion 1.x / 2.x checkpoint.
pub struct StableDiffusion {
    pub unet: CondUNet,
    pub vae: SdVae,
    pub text: HfClipText,
    pub tokenizer: HfClipTokenizer,
    pub scheduler: SchedulerJson,
    schedule: NoiseSchedule,
    prediction: Prediction,
    /// The empty prompt's hidden states `[1, 77, D]`, the unconditional context.
    empty: Tensor,
    data: DataSpace,
    /// What was loaded, for messages and sidecars.
    pub source: String,
    device: Device,
}

/// SD 1.x's and 2.x's scheduler when a single file carries none: scaled-linear betas
/// 0.00085..0.012 over 1000 steps, "leading" spacing with offset 1 (the original configs and
/// the published scheduler_config.json files).
fn default_scheduler(prediction: Prediction) -> Result<SchedulerJson> {
    let p = match prediction {
        Prediction::V => "v_prediction",
        Prediction::X0 => "sample",
        _ => "epsilon",
    };
    format!(
        r#"{{"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
            "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
            "prediction_type": "{p}", "timestep_spacing": "leading"}}"#
    )
    .parse()
}

impl StableDiffusion {
    /// Loads a diffusers folder or an original single file (`.safetensors` / `.ckpt`).
    pub fn load(path: &Path, opts: &SdLoadOptions, device: &Device) -> Result<Self> {
        if path.is_dir() {
            Self::load_dir(path, opts, device)
        } else if path.is_file() {
            Self::load_single_file(path, opts, device)
        } else {
            Err(Error::InvalidInput(format!(
                "{} does not exist: give a Stable Diffusion folder (diffusers layout: \
                 model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) or a \
                 single .safetensors / .ckpt file",
                path.display()
            )))
        }
    }

    fn load_dir(dir: &Path, opts: &SdLoadOptions, device: &Device) -> Result<Self> {
        sd::check_pipeline(dir)?;
        let unet = sd::load_unet_dir(&dir.join("unet"), device)?;
        let vae = SdVae::load_dir(&dir.join("vae"), device)?;
        let text = HfClipText::load_dir(&dir.join("text_encoder"), device)?;
        let tokenizer = HfClipTokenizer::load_dir(&dir.join("tokenizer"))?;
        let scheduler =
            SchedulerJson::from_file(&dir.join("scheduler").join("scheduler_config.json"))?;
        Self::assemble(unet, vae, text, tokenizer, scheduler, opts, dir, device)
    }

    fn load_single_file(path: &Path, opts: &SdLoadOptions, device: &Device) -> Result<Self> {
        let map = TensorMap::load(path, device)?;
        let kind = sd::single_file_kind(&map)?;
        let (unet_cfg, vae_json) = match &opts.config_dir {
            Some(d) => (
                sd::unet_config(&sd::read_json(&d.join("unet/config.json"))?)?,
                sd::read_json(&d.join("vae/config.json"))?,
            ),
            None => (sd::infer_unet_config(&map)?, sd::infer_vae_config(&map)?),
        };
        unet_cfg.validate().map_err(|e| match &opts.config_dir {
            Some(_) => e,
            None => Error::Config(format!(
                "{}: the U-Net config inferred from the tensor shapes with Stable Diffusion's \
                 standard settings (32 GroupNorm groups, 8 or 64-wide heads) does not fit: {e}; \
                 pass --config DIR, a diffusers folder with this checkpoint's config files",
                path.display()
            )),
        })?;
        let layout = ldm_keys::VaeLayout {
            levels: vae_json["block_out_channels"]
                .as_array()
                .map(|a| a.len())
                .unwrap_or(1),
            layers_per_block: vae_json["layers_per_block"].as_u64().unwrap_or(1) as usize,
        };
        let table = ldm_keys::pairs(&unet_cfg, layout);
        let diff = ldm_keys::to_diffusers(&map, &table)?;
        let unet = sd::unet_from_map(&unet_cfg, &diff.sub("unet."), device)?;
        let vae = SdVae::from_diffusers(&vae_json, &diff.sub("vae."), device)?;
        let text_cfg = match (&opts.config_dir, kind) {
            (Some(d), _) => HfClipTextConfig::from_file(&d.join("text_encoder/config.json"))?,
            (None, SingleFileKind::Sd1) => sd1_text_config(&clip_from_single_file(&map)?)?,
            (None, SingleFileKind::Sd2) => sd2_text_config(&map.sub(ldm_keys::OPEN_CLIP_PREFIX))?,
        };
        let clip = match kind {
            SingleFileKind::Sd1 => clip_from_single_file(&map)?,
            SingleFileKind::Sd2 => ldm_keys::open_clip_to_transformers(
                &map.sub(ldm_keys::OPEN_CLIP_PREFIX),
                text_cfg.num_hidden_layers,
            )?,
        };
        let text = HfClipText::from_map(&text_cfg, &clip, device)?;
        let (tokenizer, scheduler) = match &opts.config_dir {
            Some(d) => (
                HfClipTokenizer::load_dir(&d.join("tokenizer"))?,
                SchedulerJson::from_file(&d.join("scheduler/scheduler_config.json"))?,
            ),
            None => {
                // diffusers' from_single_file takes a 2.x file for the 768-v model unless
                // told otherwise; --prediction-type epsilon serves the 512 base.
                let (pad, prediction) = match kind {
                    SingleFileKind::Sd1 => ("<|endoftext|>", Prediction::Epsilon),
                    SingleFileKind::Sd2 => ("!", Prediction::V),
                };
                (
                    embedded_tokenizer(pad)?,
                    default_scheduler(opts.prediction.unwrap_or(prediction))?,
                )
            }
        };
        Self::assemble(unet, vae, text, tokenizer, scheduler, opts, path, device)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        unet: CondUNet,
        vae: SdVae,
        text: HfClipText,
        tokenizer: HfClipTokenizer,
        scheduler: SchedulerJson,
        opts: &SdLoadOptions,
        path: &Path,
        device: &Device,
    ) -> Result<Self> {
        let schedule = scheduler.schedule()?;
        let prediction = opts.prediction.unwrap_or(scheduler.prediction());
        let ctx_dim = unet.config().cross_attention_dim;
        let mut sd = Self {
            unet,
            vae,
            text,
            tokenizer,
            scheduler,
            schedule,
            prediction,
            empty: Tensor::zeros((1, 1, ctx_dim), DType::F32, device)?,
            data: DataSpace {
                shape: vec![3, 512, 512],
                images: true,
            },
            source: path.display().to_string(),
            device: device.clone(),
        };
        let (empty, _) = sd.encode_prompts(&[String::new()])?;
        if empty.dim(2)? != ctx_dim {
            return Err(Error::Checkpoint(format!(
                "{}: the text encoder makes {}-wide states but the U-Net cross-attends to \
                 {ctx_dim}",
                sd.source,
                empty.dim(2)?
            )));
        }
        sd.empty = empty;
        Ok(sd)
    }

    /// The image size to generate (sides multiples of the VAE's factor, 8 for SD).
    pub fn set_size(&mut self, height: usize, width: usize) -> Result<()> {
        let f = self.vae.config.factor();
        if height == 0 || width == 0 || !height.is_multiple_of(f) || !width.is_multiple_of(f) {
            return Err(Error::setting(
                "size",
                format!(
                    "must be positive multiples of {f} (the VAE's factor), got {height}x{width}"
                ),
            ));
        }
        self.data.shape = vec![3, height, width];
        Ok(())
    }

    pub fn prediction(&self) -> Prediction {
        self.prediction
    }

    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// Prompts -> (the text encoder's last hidden states `[B, 77, D]`, which prompts were
    /// cut to fit the 77 tokens).
    pub fn encode_prompts(&self, prompts: &[String]) -> Result<(Tensor, Vec<bool>)> {
        let mut ids = Vec::new();
        let mut cut = Vec::new();
        let mut len = 0;
        for p in prompts {
            let row = self.tokenizer.encode_padded(p);
            len = row.len();
            ids.extend(row);
            cut.push(self.tokenizer.truncates(p));
        }
        let ids = Tensor::from_vec(ids, (prompts.len(), len), &self.device)?;
        let (hidden, _) = self.text.forward(&ids)?;
        Ok((hidden, cut))
    }

    /// Runs a sampler from `x_t` (latents on the VP scale, `[B, 4, h/8, w/8]`) under
    /// `cond` with guidance `scale` (None: the conditional model alone) -> final latents.
    #[allow(clippy::too_many_arguments)]
    pub fn denoise(
        &self,
        x_t: Tensor,
        cond: &Condition,
        guidance: Option<f64>,
        sampler: &str,
        opts: &SamplerOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Tensor, usize)> {
        let opts = self.scheduler.sampler_options(sampler, opts.steps, opts)?;
        let s = build_sampler(sampler, &opts)?;
        let out = match guidance {
            None => s.sample(
                &Conditioned { model: self, cond },
                &self.schedule,
                x_t,
                rng,
                progress,
            )?,
            Some(g) => s.sample(
                &ClassifierFree::new(self, cond, g)?,
                &self.schedule,
                x_t,
                rng,
                progress,
            )?,
        };
        Ok((out.x, out.nfe))
    }

    fn latent_shape(&self, n: usize) -> Vec<usize> {
        let f = self.vae.config.factor();
        let s = &self.data.shape;
        vec![n, self.unet.config().in_channels, s[1] / f, s[2] / f]
    }
}

/// SD 1.x's text encoder (OpenAI CLIP ViT-L/14's: 64-wide heads, quick GELU, 77 positions;
/// transformers' config for it has eos_token_id 2, so the pooled state is at the argmax id)
/// with its widths and depth read from the tensors.
fn sd1_text_config(clip: &TensorMap) -> Result<HfClipTextConfig> {
    let shape = |k: &str| -> Result<Vec<usize>> {
        clip.get(k)
            .map(|t| t.dims().to_vec())
            .ok_or_else(|| Error::Checkpoint(format!("{}: missing key {k}", clip.source)))
    };
    let tok = shape("text_model.embeddings.token_embedding.weight")?;
    let fc1 = shape("text_model.encoder.layers.0.mlp.fc1.weight")?;
    let layers = (0..256)
        .take_while(|i| clip.has_prefix(&format!("text_model.encoder.layers.{i}.")))
        .count();
    Ok(HfClipTextConfig {
        vocab_size: tok[0],
        hidden_size: tok[1],
        intermediate_size: fc1[0],
        num_hidden_layers: layers,
        num_attention_heads: (tok[1] / 64).max(1),
        max_position_embeddings: shape("text_model.embeddings.position_embedding.weight")?[0],
        hidden_act: "quick_gelu".into(),
        layer_norm_eps: 1e-5,
        projection_dim: Some(tok[1]),
        bos_token_id: Some(0),
        eos_token_id: Some(2),
        pad_token_id: Some(1),
    })
}

/// SD 2.x's text encoder (OpenCLIP ViT-H/14's text tower, GELU, 64-wide heads) read from
/// the OpenCLIP tensors (prefix removed), one block short of the tower: SD 2.x conditions on
/// the penultimate layer, as its diffusers text encoder (23 layers) does.
fn sd2_text_config(open_clip: &TensorMap) -> Result<HfClipTextConfig> {
    let shape = |k: &str| -> Result<Vec<usize>> {
        open_clip
            .get(k)
            .map(|t| t.dims().to_vec())
            .ok_or_else(|| Error::Checkpoint(format!("{}: missing key {k}", open_clip.source)))
    };
    let tok = shape("token_embedding.weight")?;
    let blocks = ldm_keys::open_clip_blocks(open_clip);
    if blocks < 2 {
        return Err(Error::Checkpoint(format!(
            "{}: an OpenCLIP text tower needs at least 2 blocks, found {blocks}",
            open_clip.source
        )));
    }
    Ok(HfClipTextConfig {
        vocab_size: tok[0],
        hidden_size: tok[1],
        intermediate_size: shape("transformer.resblocks.0.mlp.c_fc.weight")?[0],
        num_hidden_layers: blocks - 1,
        num_attention_heads: (tok[1] / 64).max(1),
        max_position_embeddings: shape("positional_embedding")?[0],
        hidden_act: "gelu".into(),
        layer_norm_eps: 1e-5,
        projection_dim: Some(512),
        bos_token_id: Some(0),
        eos_token_id: Some(2),
        pad_token_id: Some(1),
    })
}

/// A Stable Diffusion tokenizer folder rebuilt from the embedded CLIP vocabulary (every SD
/// 1.x / 2.x folder carries the same vocab.json and merges.txt): 77 tokens, padded with
/// `pad` (`<|endoftext|>` in 1.x, `!` in 2.x).
fn embedded_tokenizer(pad: &str) -> Result<HfClipTokenizer> {
    let (vocab, merges) = genlab_data::tokenize::clip_bpe::embedded_vocab_and_merges()?;
    let eos = ("<|endoftext|>".to_string(), false);
    HfClipTokenizer::from_parts(
        vocab,
        &merges,
        [
            ("<|startoftext|>".to_string(), false),
            eos.clone(),
            eos,
            (pad.to_string(), false),
        ],
        77,
        "the embedded CLIP vocabulary",
    )
}

/// SD 1.x's text encoder tensors of a single file, under transformers' names.
fn clip_from_single_file(map: &TensorMap) -> Result<TensorMap> {
    let sub = map.sub(ldm_keys::CLIP_PREFIX);
    if sub.has_prefix("text_model.") {
        Ok(sub)
    } else {
        // Older files store CLIPTextModel's inner module directly.
        sub.rename(|k| Some(format!("text_model.{k}")))
    }
}

impl ConditionalDenoiser for StableDiffusion {
    fn predict_cond(&self, x: &Tensor, t: f64, cond: &Condition) -> Result<Tensor> {
        let b = x.dim(0)?;
        let ctx = cond.tokens.as_ref().ok_or_else(|| {
            Error::InvalidInput("Stable Diffusion needs prompts (a text condition)".into())
        })?;
        if ctx.dim(0)? != b {
            return Err(Error::InvalidInput(format!(
                "{} prompt states for a batch of {b}",
                ctx.dim(0)?
            )));
        }
        let tt = Tensor::full(t as f32, b, x.device())?;
        Ok(self.unet.forward(x, &tt, Some(ctx), None, None)?)
    }

    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn null_condition(&self, cond: &Condition) -> Result<Condition> {
        let n = cond.batch_size()?.unwrap_or(1);
        let tokens = match &cond.negative_tokens {
            Some(neg) => neg.clone(),
            None => self.empty.repeat((n, 1, 1))?,
        };
        // The negative part is carried along unchanged so that both halves stack.
        Ok(Condition {
            tokens: Some(tokens),
            negative_tokens: cond.negative_tokens.clone(),
            ..Condition::none()
        })
    }
}

impl Sample for StableDiffusion {
    fn sample(
        &self,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult> {
        crate::sample::require_unit_temperature(req, "Stable Diffusion")?;
        if req.classifier.is_some() {
            return Err(Error::setting(
                "classifier",
                "guidance by a noisy classifier is not available for Stable Diffusion",
            ));
        }
        if req.condition.tokens.is_none() {
            return Err(Error::InvalidInput(
                "Stable Diffusion needs prompts (a text condition)".into(),
            ));
        }
        let bs = req.batch_size.max(1);
        let steps = req.options.steps;
        let total = steps * req.n.div_ceil(bs);
        let mut nfe = 0;
        let mut done = 0;
        let x = crate::sample::sample_in_batches(req, rng, &mut |_, _| {}, |nb, start, rng| {
            let cond = req.condition.narrow(start, nb)?;
            let x_t = rng.normal_tensor(&self.latent_shape(nb), &self.device)?;
            let (z, k) = self.denoise(
                x_t,
                &cond,
                req.guidance,
                &req.sampler,
                &req.options,
                rng,
                &mut |i, _| progress(done + i, total),
            )?;
            done += steps;
            nfe = k;
            self.vae.decode(&z)
        })?;
        Ok(SampleResult { x, nfe })
    }

    fn data_space(&self) -> &DataSpace {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_data::tokenize::ClipTokenizer;

    /// The tokenizer rebuilt for single files gives the ids of open_clip's tokenizer
    /// (checked against open_clip itself in genlab-data) on plain prompts, with SD 1.x's and
    /// 2.x's padding. (Not on a literal `!`: transformers cuts special tokens out first, so
    /// with 2.x's pad token `!` it becomes id 0, not open_clip's `!</w>`.)
    #[test]
    fn embedded_tokenizer_agrees_with_open_clip() {
        let oc = ClipTokenizer::new().unwrap();
        for (pad, pad_id) in [("<|endoftext|>", 49407u32), ("!", 0)] {
            let t = embedded_tokenizer(pad).unwrap();
            for p in [
                "a photograph of an astronaut riding a horse",
                "Two cats, sleeping; 4k, highly detailed.",
                "",
            ] {
                let want = oc.encode_padded(p, 77).unwrap();
                let got = t.encode_padded(p);
                let n = want.eot_index + 1;
                assert_eq!(&got[..n], &want.ids[..n], "{p}");
                assert!(got[n..].iter().all(|&i| i == pad_id), "{p}: {got:?}");
            }
        }
    }
}
