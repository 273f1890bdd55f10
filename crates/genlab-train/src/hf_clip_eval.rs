//! A pretrained CLIP in the Hugging Face transformers layout as a feature extractor
//! (`genlab eval --features hf-clip:DIR`) and a zero-shot digit classifier (`genlab eval
//! --metrics zero-shot --ckpt hf-clip:DIR`), the way the paper evaluates it (Radford et al.
//! 2021, "Learning Transferable Visual Models From Natural Language Supervision",
//! arXiv:2103.00020, Sec. 3.1.4: prompt ensembles, the class embedding is the normalised
//! mean of its prompts' normalised text embeddings).
//!
//! `DIR` is a `CLIPModel` folder (`config.json`, `model.safetensors`) with its tokenizer
//! files (`vocab.json`, `merges.txt`, ...) either beside them (a Hub repository such as
//! openai/clip-vit-base-patch32) or in `DIR/tokenizer/`. Images (NCHW in [0, 1], grey
//! repeated to RGB) are bicubic-resized to the model's square input and normalised with
//! CLIP's mean and std, as `CLIPImageProcessor` does for square images.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use genlab_core::{Error, Result};
use genlab_data::captions;
use genlab_data::tokenize::HfClipTokenizer;
use genlab_data::{make_batch, Dataset};
use genlab_metrics::features::{Extracted, FeatureExtractor};
use genlab_metrics::FeatureMatrix;
use genlab_models::pretrained::hf_clip::{HfClip, HfClipVisionConfig, CLIP_MEAN, CLIP_STD};

use crate::clip_eval::{ZeroShot, EVAL_BATCH};

/// The spec prefix: `hf-clip:DIR`.
pub const PREFIX: &str = "hf-clip:";

/// The folder of an `hf-clip:DIR` spec, if `spec` is one.
pub fn spec_dir(spec: &str) -> Option<PathBuf> {
    spec.strip_prefix(PREFIX).map(PathBuf::from)
}

/// The tokenizer folder of a CLIPModel folder: `DIR/tokenizer/` or `DIR` itself.
fn tokenizer_dir(dir: &Path) -> PathBuf {
    let sub = dir.join("tokenizer");
    if sub.join("vocab.json").is_file() {
        sub
    } else {
        dir.to_path_buf()
    }
}

/// The model's square input side and channels (for image folders), from its config.
pub fn input(dir: &Path) -> Result<(usize, usize)> {
    let cfg = HfClipVisionConfig::from_file(&dir.join("config.json"))?;
    Ok((cfg.image_size, cfg.num_channels))
}

/// A CLIPModel with its tokenizer, ready to classify digits zero-shot.
pub struct HfClipDigits {
    pub clip: HfClip,
    pub tok: HfClipTokenizer,
    /// `[classes, E]`, unit rows.
    classes: Tensor,
    templates: Vec<String>,
    label: String,
}

impl HfClipDigits {
    /// Loads `dir` and embeds the ten digits' prompts (`templates`, each with one `{}`;
    /// empty: [`captions::ZERO_SHOT_TEMPLATES`]).
    pub fn open(dir: &Path, templates: &[String]) -> Result<Self> {
        let clip = HfClip::load_dir(dir, &Device::Cpu)?;
        let tok = HfClipTokenizer::load_dir(&tokenizer_dir(dir))?;
        let templates: Vec<String> = if templates.is_empty() {
            captions::ZERO_SHOT_TEMPLATES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            templates.to_vec()
        };
        for t in &templates {
            if t.matches("{}").count() != 1 {
                return Err(Error::setting(
                    "prompts",
                    format!("each prompt template needs exactly one `{{}}`, got `{t}`"),
                ));
            }
        }
        let refs: Vec<&str> = templates.iter().map(|s| s.as_str()).collect();
        let mut rows = Vec::new();
        for d in 0..10u8 {
            let prompts = captions::zero_shot_prompts(d, &refs);
            let ids: Vec<u32> = prompts.iter().flat_map(|p| tok.encode_padded(p)).collect();
            let ids = Tensor::from_vec(ids, (prompts.len(), tok.model_max_length()), &Device::Cpu)?;
            let e = unit(&clip.text.text_embeds(&ids)?)?;
            rows.push(unit(&e.mean_keepdim(0)?)?.squeeze(0)?);
        }
        Ok(Self {
            clip,
            tok,
            classes: Tensor::stack(&rows, 0)?,
            templates,
            label: dir.display().to_string(),
        })
    }

    /// NCHW images in [0, 1] -> the model's normalised input.
    pub fn prepare(&self, images: &Tensor) -> Result<Tensor> {
        let [c, h, w] = self.clip.vision.config().input();
        let (_, ic, ih, iw) = images.dims4()?;
        let x = match (ic, c) {
            (a, b) if a == b => images.clone(),
            (1, 3) => images.repeat((1, 3, 1, 1))?,
            _ => {
                return Err(Error::InvalidInput(format!(
                    "images have {ic} channels, the CLIP model takes {c}"
                )))
            }
        };
        let x = if (ih, iw) == (h, w) {
            x
        } else {
            genlab_nn::resize::bicubic(&x, (h, w), genlab_nn::resize::BICUBIC_A_TORCH)?
                .clamp(0f32, 1f32)?
        };
        let mean = Tensor::new(&CLIP_MEAN[..c.min(3)], &Device::Cpu)?.reshape((1, c, 1, 1))?;
        let std = Tensor::new(&CLIP_STD[..c.min(3)], &Device::Cpu)?.reshape((1, c, 1, 1))?;
        Ok(x.broadcast_sub(&mean)?.broadcast_div(&std)?)
    }

    /// Unit image embeddings `[N, E]` and zero-shot digit probabilities `[N, 10]`.
    pub fn embed(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        let e = unit(&self.clip.vision.image_embeds(&self.prepare(images)?)?)?;
        let logits = (e.matmul(&self.classes.t()?)? * self.clip.logit_scale().exp())?;
        let p = genlab_nn::classifier::log_softmax(&logits)?.exp()?;
        Ok((e, p))
    }

    /// Zero-shot accuracy on the first `limit` (default all) labelled examples of `data`.
    pub fn zero_shot(&self, data: &dyn Dataset, limit: Option<usize>) -> Result<ZeroShot> {
        let classes = data.num_classes().ok_or_else(|| {
            Error::Data(format!(
                "zero-shot accuracy needs labels; `{}` has none",
                data.name()
            ))
        })?;
        if classes > 10 {
            return Err(Error::Data(format!(
                "zero-shot prompts name digits 0-9; `{}` has {classes} classes",
                data.name()
            )));
        }
        let n = limit.map_or(data.len(), |l| l.min(data.len()));
        let idx: Vec<usize> = (0..n).collect();
        let mut confusion = vec![vec![0usize; classes]; classes];
        for chunk in idx.chunks(EVAL_BATCH) {
            let b = make_batch(data, chunk, &Device::Cpu)?;
            let labels = b
                .labels
                .as_ref()
                .ok_or_else(|| Error::Data(format!("`{}` gave no labels", data.name())))?
                .to_vec1::<u32>()?;
            let (_, p) = self.embed(&b.x)?;
            let pred = p.narrow(1, 0, classes)?.argmax(1)?.to_vec1::<u32>()?;
            for (&t, &q) in labels.iter().zip(&pred) {
                confusion[t as usize][q as usize] += 1;
            }
        }
        let correct: usize = (0..classes).map(|k| confusion[k][k]).sum();
        Ok(ZeroShot {
            accuracy: correct as f64 / n.max(1) as f64,
            examples: n,
            confusion,
            templates: self.templates.clone(),
        })
    }
}

impl FeatureExtractor for HfClipDigits {
    fn id(&self) -> String {
        format!("hf-clip/image-embeds ({})", self.label)
    }

    fn feature_dim(&self) -> usize {
        self.classes.dim(1).unwrap_or(0)
    }

    fn num_classes(&self) -> Option<usize> {
        Some(10)
    }

    fn preprocessing(&self) -> String {
        let [c, h, w] = self.clip.vision.config().input();
        format!(
            "grey repeated to RGB, bicubic resize to {c}x{h}x{w}, CLIP mean/std \
             normalisation; embeddings unit-normalised; probabilities: zero-shot digits"
        )
    }

    fn extract(&self, images: &Tensor) -> Result<Extracted> {
        let n = images.dim(0)?;
        let (e, p) = self.embed(images)?;
        let f: Vec<f32> = e.flatten_all()?.to_vec1()?;
        let p: Vec<f32> = p.flatten_all()?.to_vec1()?;
        Ok(Extracted {
            features: FeatureMatrix::from_f32(n, self.feature_dim(), &f, "HF CLIP image embeds")?,
            probs: Some(FeatureMatrix::from_f32(
                n,
                10,
                &p,
                "HF CLIP zero-shot probabilities",
            )?),
        })
    }
}

fn unit(x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_div(&x.sqr()?.sum_keepdim(1)?.sqrt()?)?)
}
