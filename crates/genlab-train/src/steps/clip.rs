//! Training step for CLIP (Radford et al. 2021, arXiv:2103.00020): each image of the batch
//! is paired with the dataset's own caption when it has them (`clip.caption_source =
//! "auto"` or `"dataset"`: a folder's `captions.jsonl` or class names, the two-digit
//! canvases' drawn templates, carried in `Batch::captions`), or else with a caption drawn
//! from `genlab_data::captions` (its digit and measured stroke, slant and size, in one of
//! several templates with synonyms); the captions are tokenized with CLIP's byte-level BPE,
//! and both towers train on the symmetric contrastive loss with AdamW, gradient clipping
//! and an EMA copy (the one evaluated).
//!
//! After training the held-out set gets zero-shot accuracy with prompt templates that never
//! appear in training (where its classes have names) and, on captioned data, retrieval
//! recall@1; the figures show a similarity matrix and a 2-D projection of the test-image
//! embeddings coloured by class.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};
use genlab_data::captions::{self, Thresholds};
use genlab_data::tokenize::ClipTokenizer;
use genlab_data::{Batch, Dataset};
use genlab_models::clip::{Clip, ClipConfig};
use genlab_models::{Figure, Sample};

use super::weights::TrainedWeights;
use crate::clip_eval::{self, batch_facts, image_embeddings, text_embeddings, tokenize};
use crate::optim::AdamWConfig;
use crate::registry::{config_value, parse_config, Capabilities, ModelEntry, NONE};
use crate::run::{LrDecay, TrainConfig};
use crate::step::TrainStep;

/// MNIST's framing of a digit in its image (20 of 28 pixels): images of another size are
/// fitted into the same fraction of the model's input.
pub const MNIST_FRAME: f64 = 20.0 / 28.0;
/// Held-out examples for the embedding scatter.
const FIGURE_EXAMPLES: usize = 2000;
/// Image-caption pairs of the retrieval reported after training (as `genlab eval`'s default).
const RETRIEVAL_PAIRS: usize = 1000;
/// Image-caption pairs in the similarity-matrix figure.
const MATRIX_PAIRS: usize = 16;

/// Where the training captions come from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CaptionSource {
    /// The dataset's own captions when it has them (`captions.jsonl` or class sub-folders
    /// of a `folder:`, the two-digit canvases of `mnist-pairs`), else `attributes`.
    #[default]
    Auto,
    /// Made from the digit label and measured stroke, slant and size
    /// (`genlab_data::captions`; labels 0-9 only).
    Attributes,
    /// The dataset's captions ([`genlab_data::Dataset::draw_caption`]); an error when it
    /// has none.
    Dataset,
}

/// The `clip` model section: the network and how captions are made.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClipRunConfig {
    pub model: ClipConfig,
    /// Bin edges of the measured properties the attribute captions name.
    pub captions: Thresholds,
    /// `auto` (default), `attributes` or `dataset`: see [`CaptionSource`].
    pub caption_source: CaptionSource,
}

impl ClipRunConfig {
    pub fn validate(&self) -> Result<()> {
        self.model.validate()
    }
}

pub struct ClipStep {
    w: TrainedWeights,
    net: Clip,
    ema_net: Clip,
    tok: ClipTokenizer,
    thresholds: Thresholds,
    source: CaptionSource,
}

impl ClipStep {
    pub fn new(
        cfg: &ClipRunConfig,
        train: &TrainConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let (w, net, ema_net) =
            TrainedWeights::new(train, seed, device, |s| Clip::new(&cfg.model, s.vb()))?;
        Ok(Self {
            w,
            net,
            ema_net,
            tok: ClipTokenizer::new()?,
            thresholds: cfg.captions,
            source: cfg.caption_source,
        })
    }

    /// One caption per image of `batch`: the dataset's (drawn by the trainer) or, for
    /// attribute captions, drawn here with `rng`.
    fn captions(&self, batch: &Batch, rng: &mut Rng) -> Result<Vec<String>> {
        match (self.source, &batch.captions) {
            (CaptionSource::Auto | CaptionSource::Dataset, Some(c)) => return Ok(c.clone()),
            (CaptionSource::Dataset, None) => {
                return Err(Error::Data(
                    "clip.caption_source = \"dataset\" but this dataset has no captions (a \
                     folder: needs a captions.jsonl or class sub-folders; mnist-pairs has them); \
                     use \"attributes\" for digit labels"
                        .into(),
                ))
            }
            _ => {}
        }
        let labels = batch
            .labels
            .as_ref()
            .ok_or_else(|| {
                Error::Data(
                    "CLIP trains on captions: this dataset has neither captions nor class \
                     labels to make them from (use mnist, digits, mnist-pairs, or a folder: with \
                     a captions.jsonl or class sub-folders)"
                        .into(),
                )
            })?
            .to_vec1::<u32>()?;
        if let Some(&bad) = labels.iter().find(|&&l| l > 9) {
            return Err(Error::Data(format!(
                "attribute captions name a digit 0-9, got label {bad}; this dataset needs \
                 clip.caption_source = \"dataset\" (or \"auto\") with captions of its own"
            )));
        }
        let facts = batch_facts(&batch.x, &labels, &self.thresholds)?;
        Ok(facts.iter().map(|f| captions::caption(f, rng)).collect())
    }

    /// Loss, logits and the loss value (checked finite).
    /// Also the fraction of the batch's captions cut to the text context, when they are the
    /// dataset's (the attribute captions always fit).
    fn forward_loss(
        &self,
        batch: &Batch,
        rng: &mut Rng,
    ) -> Result<(Tensor, Tensor, f64, Option<f64>)> {
        let texts = self.captions(batch, rng)?;
        let t = tokenize(
            &self.tok,
            &texts,
            self.net.config().text.context,
            self.w.device(),
        )?;
        let (loss, logits) = self.net.loss(&batch.x, &t.ids, &t.eot)?;
        let v = loss.to_scalar::<f32>()? as f64;
        if !v.is_finite() {
            return Err(Error::Numeric(format!("the CLIP loss is {v}")));
        }
        let own = batch.captions.is_some() && self.source != CaptionSource::Attributes;
        let cut = own.then(|| t.truncated as f64 / texts.len().max(1) as f64);
        Ok((loss, logits, v, cut))
    }
}

/// Fraction of rows whose largest entry is on the diagonal.
fn diagonal_accuracy(logits: &Tensor) -> Result<f64> {
    let b = logits.dim(0)?;
    let pred = logits.argmax(1)?.to_vec1::<u32>()?;
    Ok(pred
        .iter()
        .enumerate()
        .filter(|(i, &p)| *i as u32 == p)
        .count() as f64
        / b as f64)
}

impl TrainStep for ClipStep {
    super::weights::delegate_to_weights!();

    fn step(&mut self, batch: &Batch, rng: &mut Rng, lr: f64) -> Result<Vec<(String, f64)>> {
        let (loss, logits, v, cut) = self.forward_loss(batch, rng)?;
        let acc = diagonal_accuracy(&logits.detach())?;
        let norm = self.w.apply(&loss.backward()?, lr)?;
        let mut m = vec![
            ("loss".into(), v),
            ("batch_accuracy".into(), acc),
            ("logit_scale".into(), self.net.scale_value()?),
            ("grad_norm".into(), norm),
        ];
        if let Some(cut) = cut {
            // Captions longer than the context are cut as CLIP cuts them; the log says how
            // many (a fraction of the batch).
            m.push(("captions_truncated".into(), cut));
        }
        Ok(m)
    }

    fn loss_and_grads(&self, batch: &Batch, rng: &mut Rng) -> Result<(f64, GradStore)> {
        let (loss, _, v, _) = self.forward_loss(batch, rng)?;
        Ok((v, loss.backward()?))
    }

    fn sampler(&self) -> Option<&dyn Sample> {
        None
    }

    fn evaluate(&self, held_out: &dyn Dataset) -> Result<Vec<(String, f64)>> {
        let device = self.w.device();
        let mut out = Vec::new();
        // Zero-shot where the classes have names (digits, class folders, digit pairs).
        if clip_eval::class_naming(held_out).is_ok() {
            let zs = clip_eval::zero_shot(
                &self.ema_net,
                &self.tok,
                held_out,
                &[],
                None,
                MNIST_FRAME,
                device,
            )?;
            out.push(("zero_shot_accuracy".into(), zs.accuracy));
        }
        // Retrieval with the captions the model trained on, where the data has its own.
        if self.source != CaptionSource::Attributes
            && !held_out.is_empty()
            && held_out.caption(0).is_some()
        {
            let r = clip_eval::retrieval(
                &self.ema_net,
                &self.tok,
                held_out,
                RETRIEVAL_PAIRS,
                &self.thresholds,
                MNIST_FRAME,
                device,
            )?;
            out.push(("image_to_text_r1".into(), r.image_to_text[0]));
            out.push(("text_to_image_r1".into(), r.text_to_image[0]));
        }
        Ok(out)
    }

    fn figures(&self, held: &dyn Dataset) -> Result<Vec<Figure>> {
        let device = self.w.device();
        let mut figs = Vec::new();
        let captioned = self.source != CaptionSource::Attributes
            && !held.is_empty()
            && held.caption(0).is_some();
        if held.num_classes().is_none() && !captioned {
            return Ok(figs);
        }
        let mut idx: Vec<usize> = Vec::new();
        if captioned {
            // The first examples whose captions differ.
            let mut seen = std::collections::HashSet::new();
            for i in 0..held.len().min(5000) {
                if idx.len() == MATRIX_PAIRS {
                    break;
                }
                if let Some(c) = held.caption(i) {
                    if seen.insert(c) {
                        idx.push(i);
                    }
                }
            }
        } else {
            // One example per digit where possible.
            for want in 0..MATRIX_PAIRS as u32 {
                let digit = want % 10;
                if let Some(i) = (0..held.len().min(5000))
                    .find(|&i| held.label(i) == Some(digit) && !idx.contains(&i))
                {
                    idx.push(i);
                }
            }
        }
        if idx.is_empty() {
            return Ok(figs);
        }
        let input = self.net.config().input();
        let texts = clip_eval::example_captions(held, &idx, &self.thresholds)?;
        let (img, _) = image_embeddings(&self.ema_net, held, &idx, MNIST_FRAME, device)?;
        let txt = text_embeddings(&self.ema_net, &self.tok, &texts, device)?;
        let sim = genlab_models::clip::cosine_matrix(&img, &txt)?.to_vec2::<f32>()?;
        let n = idx.len();
        // Density rows start at the lowest y: put image 0 on the top row.
        let values: Vec<f64> = (0..n)
            .rev()
            .flat_map(|i| sim[i].iter().map(|&v| v as f64).collect::<Vec<_>>())
            .collect();
        figs.push(Figure::Density {
            name: "similarity".into(),
            values,
            nx: n,
            ny: n,
            bounds: [0.0, n as f64, 0.0, n as f64],
            caption: format!(
                "cosine similarity of {n} test images (rows, top to bottom) and their captions \
                 (columns): {}",
                texts.join(" | ")
            ),
        });
        let b = genlab_data::make_batch(held, &idx, device)?;
        figs.push(Figure::Images {
            name: "similarity-images".into(),
            x: clip_eval::fit_images(&b.x, input, MNIST_FRAME)?,
            ncol: n,
            caption: "the images of the similarity matrix, in row order".into(),
        });
        // Embedding projection: the two leading principal components.
        let m = held.len().min(FIGURE_EXAMPLES);
        let all: Vec<usize> = (0..m).collect();
        let (emb, labels) = image_embeddings(&self.ema_net, held, &all, MNIST_FRAME, device)?;
        if labels.len() != m {
            return Ok(figs); // no classes to colour by
        }
        let points = pca_2d(&emb.to_dtype(DType::F64)?.to_vec2::<f64>()?);
        figs.push(Figure::Scatter {
            name: "embedding".into(),
            points,
            labels,
            caption: format!(
                "{m} held-out image embeddings (unit-normalised), projected on their two leading \
                 principal components, coloured by class"
            ),
        });
        Ok(figs)
    }
}

/// Projection of the rows of `x [N, D]` on their two leading principal components (power
/// iteration with deflation on the covariance, f64).
pub fn pca_2d(x: &[Vec<f64>]) -> Vec<[f32; 2]> {
    let n = x.len();
    let d = x.first().map_or(0, |r| r.len());
    if n == 0 || d == 0 {
        return Vec::new();
    }
    let mean: Vec<f64> = (0..d)
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let mut cov = vec![vec![0f64; d]; d];
    for r in x {
        for a in 0..d {
            let da = r[a] - mean[a];
            for b in 0..d {
                cov[a][b] += da * (r[b] - mean[b]);
            }
        }
    }
    let mut comps: Vec<Vec<f64>> = Vec::new();
    for c in 0..2 {
        let mut v: Vec<f64> = (0..d).map(|j| if j % 2 == c { 1.0 } else { 0.5 }).collect();
        for _ in 0..500 {
            let mut w: Vec<f64> = (0..d)
                .map(|a| (0..d).map(|b| cov[a][b] * v[b]).sum())
                .collect();
            for p in &comps {
                let dot: f64 = w.iter().zip(p).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(p).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            v = w.iter().map(|a| a / norm).collect();
        }
        comps.push(v);
    }
    x.iter()
        .map(|r| {
            let p = |c: &Vec<f64>| {
                r.iter()
                    .zip(&mean)
                    .zip(c)
                    .map(|((v, m), w)| (v - m) * w)
                    .sum::<f64>() as f32
            };
            [p(&comps[0]), p(&comps[1])]
        })
        .collect()
}

/// A trained CLIP (EMA weights) with its config, the tokenizer, and the run it came from.
pub struct LoadedClip {
    pub net: Clip,
    pub cfg: ClipRunConfig,
    pub tok: ClipTokenizer,
    pub run: crate::RunConfig,
    pub step: u64,
}

/// Loads a `clip` run directory (or checkpoint file) onto `device`.
pub fn load_clip(path: &std::path::Path, device: &Device) -> Result<LoadedClip> {
    let saved = crate::registry::read_run(path, &["clip"], "a CLIP model")?;
    let (run, weights) = (saved.run.clone(), saved.ema_weights());
    let cfg = clip_config(&run.model_config)?;
    let net = crate::registry::load_weights(&weights, device, |vb| Clip::new(&cfg.model, vb))?;
    Ok(LoadedClip {
        net,
        cfg,
        tok: ClipTokenizer::new()?,
        run,
        step: saved.step,
    })
}

/// Parses and checks a `clip` model config.
pub fn clip_config(v: &serde_json::Value) -> Result<ClipRunConfig> {
    parse_config(v, "clip", ClipRunConfig::validate)
}

/// CLIP preset: batch 256 (the contrastive task gets harder, and better, with more
/// negatives), AdamW with the paper's beta2 0.98, eps 1e-6 and weight decay 0.2, warm-up
/// then cosine decay (Sec. 2.5 and App. F, scaled to a CPU run).
fn clip_train() -> TrainConfig {
    TrainConfig {
        steps: 3000,
        batch_size: 256,
        lr: 5e-4,
        warmup_steps: 200,
        lr_decay: LrDecay::Cosine,
        grad_clip: 1.0, // transformers with a learned temperature spike early without it
        ema_decay: 0.999,
        log_every: 50,
        ckpt_every: 500,
        adamw: AdamWConfig {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.2,
        },
    }
}

/// The `clip` registry entry.
pub const ENTRY: ModelEntry = ModelEntry {
    name: "clip",
    prepare: None,
    description: "CLIP: image and text towers trained contrastively on the data's captions (folder captions.jsonl or class names, mnist-pairs) or captions made from digit labels and measured properties; zero-shot classification, retrieval, CLIP score (not generative)",
    caps: Capabilities {
        trains_fresh: true,
        ..NONE
    },
    default_config: |d| {
        if !d.images || d.shape.len() != 3 {
            return Err(Error::InvalidInput(format!(
                "CLIP needs labelled image data, got examples of shape {:?}",
                d.shape
            )));
        }
        let input = [d.shape[0], d.shape[1], d.shape[2]];
        let mut cfg = ClipRunConfig::default();
        cfg.model.vit.input = input;
        cfg.model.cnn.input = input;
        if input[1] % cfg.model.vit.patch != 0 || input[2] % cfg.model.vit.patch != 0 {
            // Small images (the 8x8 digits): 2x2 patches, and the CNN tower would also do.
            cfg.model.vit.patch = if input[1] % 2 == 0 && input[2] % 2 == 0 { 2 } else { 1 };
        }
        config_value(&cfg)
    },
    default_train: |_| clip_train(),
    build_step: |v, t, seed, device| Ok(Box::new(ClipStep::new(&clip_config(v)?, t, seed, device)?)),
    load: |_, _, _| {
        Err(Error::InvalidInput(
            "`clip` checkpoints do not generate samples; evaluate them with `genlab eval --ckpt RUN \
             --metrics zero-shot,retrieval --data D`"
                .into(),
        ))
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_recovers_the_leading_axes() {
        // points spread along x (var 100) and y (var 1), none along z
        let mut rng = Rng::new(0);
        let pts: Vec<Vec<f64>> = (0..400)
            .map(|_| vec![10.0 * rng.normal(), rng.normal(), 0.0])
            .collect();
        let p = pca_2d(&pts);
        let var = |k: usize| p.iter().map(|q| (q[k] as f64).powi(2)).sum::<f64>() / 400.0;
        assert!(
            var(0) > 50.0 && var(1) < 2.0 && var(1) > 0.5,
            "{} {}",
            var(0),
            var(1)
        );
        for (q, r) in p.iter().zip(&pts) {
            assert!(((q[0] as f64).abs() - r[0].abs()).abs() < 0.5);
        }
    }
}
