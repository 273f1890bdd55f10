//! Text-to-image with a text-conditioned latent diffusion run (`ldm.text`): prompts
//! encoded by the run's frozen text encoder, classifier-free guidance (from the empty
//! prompt, or from a negative prompt), any sampler of the zoo, decoded images. Rombach et
//! al. 2022 (arXiv:2112.10752), Sec. 4.3; guidance: Ho & Salimans 2022 (arXiv:2207.12598).

use std::path::Path;

use candle_core::Device;

use genlab_core::{Condition, Error, Result, Rng};
use genlab_models::diffusion::LdmConfig;
use genlab_models::{Sample, SampleRequest, SampleResult};
use genlab_sampling::SamplerOptions;

use crate::steps::ldm::{ldm_config, PromptEncoder};

/// A loaded text-to-image model.
pub struct TextToImage {
    pub model: Box<dyn Sample>,
    pub prompts: PromptEncoder,
    pub cfg: LdmConfig,
    pub run: crate::RunConfig,
    pub step: u64,
}

/// How to generate.
#[derive(Clone, Debug)]
pub struct Txt2ImgOptions {
    pub sampler: String,
    pub options: SamplerOptions,
    /// Classifier-free guidance scale (1: the conditional model as it is).
    pub guidance: f64,
    pub negative_prompt: Option<String>,
    pub batch_size: usize,
}

/// Loads an `ldm` run trained with `ldm.text` (EMA weights) onto `device`.
pub fn load_txt2img(path: &Path, device: &Device) -> Result<TextToImage> {
    let saved =
        crate::registry::read_run(path, &["ldm"], "a text-conditioned latent diffusion model")?;
    let cfg = ldm_config(&saved.run.model_config)?;
    let text = cfg.text.clone().ok_or_else(|| {
        Error::InvalidInput(format!(
            "{} is a latent diffusion model without text conditioning (ldm.text); sample it with \
             `genlab sample --ckpt {}`",
            path.display(),
            path.display()
        ))
    })?;
    let loaded = crate::registry::load_model(path, true, device)?;
    Ok(TextToImage {
        model: loaded.model,
        prompts: PromptEncoder::new(&text, device)?,
        cfg,
        run: saved.run,
        step: saved.step,
    })
}

impl TextToImage {
    /// Whether the model learnt an unconditional mode (prompt dropout) to guide from.
    pub fn can_guide(&self) -> bool {
        self.cfg.ddpm.label_dropout > 0.0
    }

    /// The condition of one image per prompt in `prompts`, and the prompts that were cut
    /// to the encoder's `max_tokens`.
    pub fn condition(
        &self,
        prompts: &[String],
        negative: Option<&str>,
    ) -> Result<(Condition, Vec<String>)> {
        let (t, m, cut) = self.prompts.encode(prompts)?;
        let mut truncated: Vec<String> = prompts
            .iter()
            .zip(&cut)
            .filter(|(_, c)| **c)
            .map(|(p, _)| p.clone())
            .collect();
        let mut cond = Condition {
            tokens: Some(t),
            token_mask: Some(m),
            ..Condition::none()
        };
        if let Some(neg) = negative {
            let (nt, nm, ncut) = self.prompts.encode(&[neg.to_string()])?;
            if ncut[0] {
                truncated.push(neg.to_string());
            }
            let n = prompts.len();
            cond.negative_tokens = Some(nt.repeat((n, 1, 1))?);
            cond.negative_token_mask = Some(nm.repeat((n, 1))?);
        }
        truncated.dedup();
        Ok((cond, truncated))
    }

    /// One image per prompt of `prompts` (repeat a prompt for several images).
    pub fn generate(
        &self,
        prompts: &[String],
        o: &Txt2ImgOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult> {
        if prompts.is_empty() {
            return Err(Error::InvalidInput("no prompts to generate from".into()));
        }
        let (condition, _) = self.condition(prompts, o.negative_prompt.as_deref())?;
        let guidance = if o.guidance == 1.0 && o.negative_prompt.is_none() {
            None
        } else {
            Some(o.guidance)
        };
        let req = SampleRequest {
            n: prompts.len(),
            sampler: o.sampler.clone(),
            options: o.options.clone(),
            batch_size: o.batch_size,
            condition,
            guidance,
            classifier: None,
        };
        self.model.sample(&req, rng, progress)
    }
}
