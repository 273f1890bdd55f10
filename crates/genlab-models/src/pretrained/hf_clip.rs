//! CLIP in the Hugging Face transformers layout (`CLIPTextModel`,
//! `CLIPTextModelWithProjection`, `CLIPVisionModel`, `CLIPVisionModelWithProjection`,
//! `CLIPModel`), loaded into genlab's own towers.
//!
//! Paper: Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision" (CLIP, arXiv:2103.00020), Sec. 2.4; the vision tower is Dosovitskiy et al.
//! 2021 (ViT, arXiv:2010.11929) with CLIP's extra LayerNorm before the blocks.
//!
//! No network of its own: the text tower is [`TextTransformer`] and the image tower
//! [`VisionTransformer`] (their blocks are genlab-nn's one [`genlab_nn::transformer::TransformerBlock`]),
//! configured from transformers' `config.json` (activation, `layer_norm_eps`,
//! `intermediate_size`) and fed through a key-rename table ([`hf_key`]): genlab asks for
//! `blocks.3.attn.qkv.weight`, the loader reads `encoder.layers.3.self_attn.{q,k,v}_proj.weight`,
//! the three projections concatenated (rows q, k, v). Missing, unexpected and mis-shaped
//! keys are reported in transformers' names by [`TensorMap::build`]; a layer whose q/k/v
//! are incomplete shows as the missing `...self_attn.{q,k,v}_proj.weight` plus the parts
//! present as unexpected.
//!
//! Key layouts accepted: transformers 4.x wrote `CLIPTextModel` / `CLIPVisionModel` under
//! `text_model.` / `vision_model.` (every Stable Diffusion `text_encoder/`); transformers 5
//! writes the bare names (`embeddings.token_embedding.weight`). `CLIPModel` keeps the
//! prefixes and adds `text_projection.weight`, `visual_projection.weight`, `logit_scale`.
//! The buffer `embeddings.position_ids` of old files is ignored.
//!
//! Outputs are transformers': `last_hidden_state` after `final_layer_norm`; the pooled text
//! feature at the end-of-text token (configs with `eos_token_id == 2`, written before
//! transformers PR #24773, pool at the argmax of the ids, the rule transformers keeps for
//! them; the others at the first position holding `eos_token_id`, position 0 if none);
//! the image feature is `post_layernorm` of the class token; `text_embeds` /
//! `image_embeds` are the bias-free projections; `logits_per_image = exp(logit_scale) ·
//! cos(image_embeds, text_embeds)`. Checked to 1e-4 against transformers 5.25.0 on tiny
//! random models (`scripts/reference/hf_clip_fixture.py`, `tests/hf_clip.rs`).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result};
use genlab_nn::text_transformer::pool_at;
use genlab_nn::transformer::MlpAct;
use genlab_nn::{TextTransformer, TextTransformerConfig, VisionTransformer, VitConfig};

use super::TensorMap;

/// transformers' default `eos_token_id` of CLIP (`<|endoftext|>` in CLIP's vocabulary).
pub const DEFAULT_EOS: u32 = 49407;
/// The `eos_token_id` of configs written before transformers PR #24773, which pool at the
/// argmax of the ids.
pub const LEGACY_EOS: i64 = 2;

fn default_projection() -> Option<usize> {
    Some(512)
}

/// transformers' `CLIPTextConfig` (from `config.json`; a `CLIPModel` config's
/// `text_config`). Unknown fields are tolerated: upstream files carry many.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HfClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    /// `quick_gelu`, `gelu` (exact), `gelu_new` / `gelu_pytorch_tanh` (tanh form).
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    #[serde(default = "default_projection")]
    pub projection_dim: Option<usize>,
    pub bos_token_id: Option<i64>,
    pub eos_token_id: Option<i64>,
    pub pad_token_id: Option<i64>,
}

impl Default for HfClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            projection_dim: Some(512),
            bos_token_id: Some(49406),
            eos_token_id: Some(DEFAULT_EOS as i64),
            pad_token_id: Some(1),
        }
    }
}

/// transformers' `CLIPVisionConfig` (unknown fields tolerated).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HfClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    #[serde(default = "default_projection")]
    pub projection_dim: Option<usize>,
}

impl Default for HfClipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            projection_dim: Some(512),
        }
    }
}

/// transformers' `CLIPConfig` (a `CLIPModel`'s `config.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HfClipConfig {
    pub text_config: HfClipTextConfig,
    pub vision_config: HfClipVisionConfig,
    pub projection_dim: usize,
    pub logit_scale_init_value: f64,
}

impl Default for HfClipConfig {
    fn default() -> Self {
        Self {
            text_config: HfClipTextConfig::default(),
            vision_config: HfClipVisionConfig::default(),
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
        }
    }
}

fn read_config(path: &Path) -> Result<serde_json::Value> {
    genlab_core::io::read_json(path)
}

fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value, path: &Path) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::Checkpoint(format!(
            "{}: not a transformers CLIP config: {e}",
            path.display()
        ))
    })
}

/// A `CLIPModel` config's `projection_dim` replaces its towers' own.
fn with_top_projection(v: &serde_json::Value, key: &str) -> serde_json::Value {
    let mut sub = v.get(key).cloned().unwrap_or(serde_json::json!({}));
    let top = v.get("projection_dim").cloned();
    if let (Some(obj), Some(p)) = (sub.as_object_mut(), top) {
        obj.insert("projection_dim".into(), p);
    }
    sub
}

impl HfClipTextConfig {
    /// A `CLIPTextConfig` `config.json`, or a `CLIPModel` one (its `text_config`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let v = read_config(path)?;
        let cfg: Self = if v.get("text_config").is_some() {
            parse(with_top_projection(&v, "text_config"), path)?
        } else {
            parse(v, path)?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.tower().validate()?;
        act(&self.hidden_act)?;
        if self.projection_dim == Some(0) {
            return Err(Error::setting("projection_dim", "must be positive"));
        }
        Ok(())
    }

    fn tower(&self) -> TextTransformerConfig {
        TextTransformerConfig {
            vocab: self.vocab_size,
            context: self.max_position_embeddings,
            width: self.hidden_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            mlp_ratio: 4,
            mlp_hidden: Some(self.intermediate_size),
            act: act(&self.hidden_act).unwrap_or_default(),
            eps: self.layer_norm_eps,
        }
    }

    fn pooling(&self) -> Result<Pooling> {
        match self.eos_token_id {
            Some(LEGACY_EOS) => Ok(Pooling::ArgmaxId),
            None => Ok(Pooling::FirstEos(DEFAULT_EOS)),
            Some(e) => u32::try_from(e)
                .map(Pooling::FirstEos)
                .map_err(|_| Error::setting("eos_token_id", format!("{e} is not a token id"))),
        }
    }
}

impl HfClipVisionConfig {
    /// A `CLIPVisionConfig` `config.json`, or a `CLIPModel` one (its `vision_config`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let v = read_config(path)?;
        let cfg: Self = if v.get("vision_config").is_some() {
            parse(with_top_projection(&v, "vision_config"), path)?
        } else {
            parse(v, path)?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.tower().validate()?;
        act(&self.hidden_act)?;
        if self.projection_dim == Some(0) {
            return Err(Error::setting("projection_dim", "must be positive"));
        }
        Ok(())
    }

    fn tower(&self) -> VitConfig {
        VitConfig {
            input: [self.num_channels, self.image_size, self.image_size],
            patch: self.patch_size,
            width: self.hidden_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            mlp_ratio: 4,
            mlp_hidden: Some(self.intermediate_size),
            act: act(&self.hidden_act).unwrap_or_default(),
            eps: self.layer_norm_eps,
        }
    }

    /// The input `[C, H, W]` the tower takes.
    pub fn input(&self) -> [usize; 3] {
        [self.num_channels, self.image_size, self.image_size]
    }
}

impl HfClipConfig {
    /// A `CLIPModel` `config.json`; the top-level `projection_dim` is both towers'.
    pub fn from_file(path: &Path) -> Result<Self> {
        let v = read_config(path)?;
        if v.get("text_config").is_none() || v.get("vision_config").is_none() {
            return Err(Error::Checkpoint(format!(
                "{}: not a CLIPModel config (no text_config and vision_config)",
                path.display()
            )));
        }
        let mut cfg: Self = parse(v, path)?;
        cfg.text_config.projection_dim = Some(cfg.projection_dim);
        cfg.vision_config.projection_dim = Some(cfg.projection_dim);
        cfg.text_config.validate()?;
        cfg.vision_config.validate()?;
        Ok(cfg)
    }
}

/// transformers' activation names -> genlab's MLP nonlinearity.
fn act(name: &str) -> Result<MlpAct> {
    match name {
        "quick_gelu" => Ok(MlpAct::QuickGelu),
        "gelu" => Ok(MlpAct::GeluErf),
        "gelu_new" | "gelu_pytorch_tanh" => Ok(MlpAct::GeluTanh),
        other => Err(Error::setting(
            "hidden_act",
            format!("{other:?} is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)"),
        )),
    }
}

/// Where the pooled text feature is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pooling {
    /// The first position of the largest id (legacy configs).
    ArgmaxId,
    /// The first position of this id (0 if absent).
    FirstEos(u32),
}

impl Pooling {
    fn positions(self, ids: &Tensor) -> Result<Vec<usize>> {
        let rows = ids.to_vec2::<u32>()?;
        Ok(rows
            .iter()
            .map(|r| match self {
                Pooling::ArgmaxId => {
                    let m = r.iter().copied().max().unwrap_or(0);
                    r.iter().position(|&x| x == m).unwrap_or(0)
                }
                Pooling::FirstEos(e) => r.iter().position(|&x| x == e).unwrap_or(0),
            })
            .collect())
    }
}

/// genlab's parameter name -> transformers' (under `base`, e.g. `text_model.`): the one
/// rename table of both towers. Names without a rule pass through.
pub fn hf_key(genlab: &str, base: &str) -> String {
    const TOWER: &[(&str, &str)] = &[
        ("token_embed", "embeddings.token_embedding.weight"),
        ("patch_embed.weight", "embeddings.patch_embedding.weight"),
        ("class_token", "embeddings.class_embedding"),
        ("pos_embed", "embeddings.position_embedding.weight"),
        ("ln_final.", "final_layer_norm."),
        ("ln_pre.", "pre_layrnorm."),
        ("ln_post.", "post_layernorm."),
    ];
    const BLOCK: &[(&str, &str)] = &[
        ("ln1.", "layer_norm1."),
        ("ln2.", "layer_norm2."),
        ("attn.qkv.", "self_attn.{q,k,v}_proj."),
        ("attn.out.", "self_attn.out_proj."),
        ("mlp.", "mlp."),
    ];
    let swap = |name: &str, table: &[(&str, &str)]| -> Option<String> {
        table.iter().find_map(|(from, to)| {
            if from.ends_with('.') {
                name.strip_prefix(from).map(|r| format!("{to}{r}"))
            } else {
                (name == *from).then(|| to.to_string())
            }
        })
    };
    if let Some(rest) = genlab.strip_prefix("blocks.") {
        if let Some((i, inner)) = rest.split_once('.') {
            if let Some(m) = swap(inner, BLOCK) {
                return format!("{base}encoder.layers.{i}.{m}");
            }
        }
    } else if let Some(m) = swap(genlab, TOWER) {
        return format!("{base}{m}");
    }
    genlab.to_string()
}

/// Concatenates each layer's q, k, v projections (rows q, k, v) under the name the rename
/// table asks for; a layer missing one of them is left as it is (the build reports it).
fn fuse_qkv(map: &TensorMap, base: &str, layers: usize) -> Result<TensorMap> {
    let mut out = map.clone();
    for i in 0..layers {
        for w in ["weight", "bias"] {
            let key = |p: &str| format!("{base}encoder.layers.{i}.self_attn.{p}_proj.{w}");
            let parts: Vec<Tensor> = ["q", "k", "v"]
                .iter()
                .filter_map(|p| map.get(&key(p)).cloned())
                .collect();
            if parts.len() == 3 {
                if let Ok(cat) = Tensor::cat(&parts, 0) {
                    for p in ["q", "k", "v"] {
                        out.remove(&key(p));
                    }
                    out.insert(key("{q,k,v}"), cat);
                }
            }
        }
    }
    Ok(out)
}

/// `"text_model."` when the map's keys carry it (transformers 4.x, CLIPModel), else `""`.
fn detect_base(map: &TensorMap, prefix: &str) -> String {
    if map.has_prefix(prefix) {
        prefix.to_string()
    } else {
        String::new()
    }
}

fn is_buffer(k: &str) -> bool {
    k.ends_with("embeddings.position_ids")
}

/// The keys of `map` that `keep` accepts (names unchanged).
fn select(map: &TensorMap, keep: impl Fn(&str) -> bool) -> Result<TensorMap> {
    map.rename(|k| keep(k).then(|| k.to_string()))
}

fn load_weights(dir: &Path, device: &Device) -> Result<TensorMap> {
    super::load_component(dir, "model", "pytorch_model", device)
}

fn config_path(dir: &Path) -> Result<PathBuf> {
    let p = dir.join("config.json");
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::Checkpoint(format!(
            "{}: config.json is missing (a transformers model folder has config.json and \
             model.safetensors)",
            dir.display()
        )))
    }
}

/// transformers' CLIP text encoder (`CLIPTextModel`, with the projection of
/// `CLIPTextModelWithProjection` / `CLIPModel` when the weights have it).
#[derive(Debug, Clone)]
pub struct HfClipText {
    cfg: HfClipTextConfig,
    tower: TextTransformer,
    /// `text_projection.weight [projection_dim, hidden]`.
    projection: Option<Tensor>,
    pooling: Pooling,
}

impl HfClipText {
    /// `map`: transformers' names with any outer prefix already removed: keys
    /// `text_model.embeddings.token_embedding.weight`, ... (transformers 4.x's
    /// CLIPTextModel, a CLIPModel's text half) or `embeddings.token_embedding.weight`, ...
    /// (transformers 5), and `text_projection.weight` where the model has one. Every other
    /// key is an error (use [`HfClip`] for a whole CLIPModel).
    pub fn from_map(cfg: &HfClipTextConfig, map: &TensorMap, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let base = detect_base(map, "text_model.");
        let fused = fuse_qkv(map, &base, cfg.num_hidden_layers)?;
        let tcfg = cfg.tower();
        let with_proj = map.contains("text_projection.weight");
        let (hidden, proj_dim) = (cfg.hidden_size, cfg.projection_dim.unwrap_or(0));
        if with_proj && proj_dim == 0 {
            return Err(Error::Checkpoint(format!(
                "{}: has text_projection.weight but the config has no projection_dim",
                map.source
            )));
        }
        let (tower, projection) = fused.build("CLIP text model", device, is_buffer, move |vb| {
            let tower =
                TextTransformer::new(&tcfg, vb.clone().rename_f(move |n| hf_key(n, &base)))?;
            let projection = if with_proj {
                Some(vb.get((proj_dim, hidden), "text_projection.weight")?)
            } else {
                None
            };
            Ok((tower, projection))
        })?;
        Ok(Self {
            cfg: cfg.clone(),
            tower,
            projection,
            pooling: cfg.pooling()?,
        })
    }

    /// A transformers model folder: `config.json` and `model.safetensors` (or
    /// `model.fp16.safetensors`, a sharded `model.safetensors.index.json`,
    /// `pytorch_model.bin`), float16 or float32. A CLIPModel folder loads its text half.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = HfClipTextConfig::from_file(&config_path(dir)?)?;
        let map = load_weights(dir, device)?;
        let map = if map.has_prefix("vision_model.") {
            select(&map, |k| {
                k.starts_with("text_model.") || k == "text_projection.weight"
            })?
        } else {
            map
        };
        Self::from_map(&cfg, &map, device)
    }

    pub fn config(&self) -> &HfClipTextConfig {
        &self.cfg
    }

    /// Whether `text_embeds` is available (the weights had `text_projection`).
    pub fn has_projection(&self) -> bool {
        self.projection.is_some()
    }

    /// `ids [B, L]` u32 -> (`last_hidden_state [B, L, D]` after `final_layer_norm`,
    /// `pooled [B, D]` at the end-of-text token).
    pub fn forward(&self, ids: &Tensor) -> Result<(Tensor, Tensor)> {
        let last = self.tower.forward_tokens(ids)?;
        let pos = self.pooling.positions(ids)?;
        let pooled = pool_at(&last, &pos, ids.device())?;
        Ok((last, pooled))
    }

    /// transformers' `hidden_states[n]`: the hidden state after layer `n` (0: the
    /// embeddings), before `final_layer_norm`. Stable Diffusion's "clip skip k" uses
    /// `final_norm(hidden_state(ids, layers - k + 1))`.
    pub fn hidden_state(&self, ids: &Tensor, n: usize) -> Result<Tensor> {
        Ok(self.tower.hidden_after(ids, n)?)
    }

    /// `final_layer_norm` alone.
    pub fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.tower.final_norm(x)?)
    }

    /// The pooled feature projected (`text_embeds`, not normalised): `[B, projection_dim]`.
    pub fn text_embeds(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, pooled) = self.forward(ids)?;
        self.project(&pooled)
    }

    /// `pooled [B, D]` -> `[B, projection_dim]`.
    pub fn project(&self, pooled: &Tensor) -> Result<Tensor> {
        let p = self.projection.as_ref().ok_or_else(|| {
            Error::Checkpoint(
                "this CLIP text model has no text_projection (a CLIPTextModel); \
                 text_embeds needs CLIPTextModelWithProjection or CLIPModel weights"
                    .into(),
            )
        })?;
        Ok(pooled.matmul(&p.t()?)?)
    }
}

/// transformers' CLIP image encoder (`CLIPVisionModel`, with the projection of
/// `CLIPVisionModelWithProjection` / `CLIPModel` when the weights have it).
#[derive(Debug, Clone)]
pub struct HfClipVision {
    cfg: HfClipVisionConfig,
    tower: VisionTransformer,
    /// `visual_projection.weight [projection_dim, hidden]`.
    projection: Option<Tensor>,
}

impl HfClipVision {
    /// `map`: keys `vision_model.embeddings.class_embedding`, ... (or without the
    /// `vision_model.` prefix, transformers 5's CLIPVisionModel), and
    /// `visual_projection.weight` where the model has one.
    pub fn from_map(cfg: &HfClipVisionConfig, map: &TensorMap, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let base = detect_base(map, "vision_model.");
        let mut fused = fuse_qkv(map, &base, cfg.num_hidden_layers)?;
        // Conv2d(C, D, p, stride p, bias=False) weight [D, C, p, p] -> genlab's [D, C·p·p]
        // (the same element order, vit.rs).
        let pk = format!("{base}embeddings.patch_embedding.weight");
        if let Some(w) = fused.get(&pk).cloned() {
            if let Ok((d, c, p1, p2)) = w.dims4() {
                fused.insert(pk, w.reshape((d, c * p1 * p2))?);
            }
        }
        let vcfg = cfg.tower();
        let with_proj = map.contains("visual_projection.weight");
        let (hidden, proj_dim) = (cfg.hidden_size, cfg.projection_dim.unwrap_or(0));
        if with_proj && proj_dim == 0 {
            return Err(Error::Checkpoint(format!(
                "{}: has visual_projection.weight but the config has no projection_dim",
                map.source
            )));
        }
        let (tower, projection) =
            fused.build("CLIP vision model", device, is_buffer, move |vb| {
                let tower =
                    VisionTransformer::new(&vcfg, vb.clone().rename_f(move |n| hf_key(n, &base)))?;
                let projection = if with_proj {
                    Some(vb.get((proj_dim, hidden), "visual_projection.weight")?)
                } else {
                    None
                };
                Ok((tower, projection))
            })?;
        Ok(Self {
            cfg: cfg.clone(),
            tower,
            projection,
        })
    }

    /// A transformers model folder (as [`HfClipText::load_dir`]); a CLIPModel folder loads
    /// its vision half.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = HfClipVisionConfig::from_file(&config_path(dir)?)?;
        let map = load_weights(dir, device)?;
        let map = if map.has_prefix("text_model.") {
            select(&map, |k| {
                k.starts_with("vision_model.") || k == "visual_projection.weight"
            })?
        } else {
            map
        };
        Self::from_map(&cfg, &map, device)
    }

    pub fn config(&self) -> &HfClipVisionConfig {
        &self.cfg
    }

    pub fn has_projection(&self) -> bool {
        self.projection.is_some()
    }

    /// `images [B, C, H, W]`, already normalised with CLIP's mean and std -> the pooled
    /// feature `[B, D]` (`post_layernorm` of the class token, transformers' `pooler_output`).
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.tower.forward(images)?)
    }

    /// The projected image embedding `[B, projection_dim]` (`image_embeds`, not normalised).
    pub fn image_embeds(&self, images: &Tensor) -> Result<Tensor> {
        let pooled = self.forward(images)?;
        let p = self.projection.as_ref().ok_or_else(|| {
            Error::Checkpoint(
                "this CLIP vision model has no visual_projection (a CLIPVisionModel); \
                 image_embeds needs CLIPVisionModelWithProjection or CLIPModel weights"
                    .into(),
            )
        })?;
        Ok(pooled.matmul(&p.t()?)?)
    }
}

/// transformers' `CLIPModel`: both towers with their projections and the learned
/// temperature, for zero-shot classification and features.
#[derive(Debug, Clone)]
pub struct HfClip {
    pub text: HfClipText,
    pub vision: HfClipVision,
    /// `logit_scale` (a scalar; the logits are scaled by its exponential).
    logit_scale: f64,
}

/// CLIP's image normalisation (OpenAI's mean and std, transformers'
/// `CLIPImageProcessor` defaults): `x' = (x - mean) / std` per RGB channel on [0, 1] pixels.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_55, 0.261_302_6, 0.275_777_1];

impl HfClip {
    /// A CLIPModel state dict (keys `text_model.*`, `vision_model.*`,
    /// `text_projection.weight`, `visual_projection.weight`, `logit_scale`).
    pub fn from_map(cfg: &HfClipConfig, map: &TensorMap, device: &Device) -> Result<Self> {
        let text_map = select(map, |k| {
            k.starts_with("text_model.") || k == "text_projection.weight"
        })?;
        let vision_map = select(map, |k| {
            k.starts_with("vision_model.") || k == "visual_projection.weight"
        })?;
        let stray: Vec<&str> = map
            .keys()
            .into_iter()
            .filter(|k| {
                !(text_map.contains(k)
                    || vision_map.contains(k)
                    || *k == "logit_scale"
                    || is_buffer(k))
            })
            .collect();
        if !stray.is_empty() {
            return Err(Error::Checkpoint(format!(
                "CLIP model does not match {}: {} unexpected keys ({}{})",
                map.source,
                stray.len(),
                stray
                    .iter()
                    .take(super::LISTED_KEYS)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", "),
                if stray.len() > super::LISTED_KEYS {
                    ", ..."
                } else {
                    ""
                }
            )));
        }
        for (m, key) in [
            (&text_map, "text_projection.weight"),
            (&vision_map, "visual_projection.weight"),
        ] {
            if !m.contains(key) {
                return Err(Error::Checkpoint(format!(
                    "CLIP model does not match {}: 1 missing keys ({key})",
                    map.source
                )));
            }
        }
        let text = HfClipText::from_map(&cfg.text_config, &text_map, device)?;
        let vision = HfClipVision::from_map(&cfg.vision_config, &vision_map, device)?;
        let logit_scale = match map.get("logit_scale") {
            Some(t) if t.elem_count() == 1 => t
                .flatten_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?[0],
            Some(t) => {
                return Err(Error::Checkpoint(format!(
                    "{}: logit_scale has shape {:?}, expected a scalar",
                    map.source,
                    t.dims()
                )))
            }
            None => {
                return Err(Error::Checkpoint(format!(
                    "CLIP model does not match {}: 1 missing keys (logit_scale)",
                    map.source
                )))
            }
        };
        if text.projection.as_ref().map(|p| p.dim(0).ok())
            != vision.projection.as_ref().map(|p| p.dim(0).ok())
        {
            return Err(Error::Checkpoint(format!(
                "{}: the text and image projections have different widths",
                map.source
            )));
        }
        Ok(Self {
            text,
            vision,
            logit_scale,
        })
    }

    /// A CLIPModel folder: `config.json` + `model.safetensors` (or the other names
    /// [`HfClipText::load_dir`] accepts).
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = HfClipConfig::from_file(&config_path(dir)?)?;
        let map = load_weights(dir, device)?;
        Self::from_map(&cfg, &map, device)
    }

    pub fn logit_scale(&self) -> f64 {
        self.logit_scale
    }

    /// transformers' `logits_per_image [B_img, B_txt]`: `exp(logit_scale)` times the cosine
    /// of each image embedding with each text embedding (`logits_per_text` is its transpose).
    pub fn logits_per_image(&self, images: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let img = l2_normalize(&self.vision.image_embeds(images)?)?;
        let txt = l2_normalize(&self.text.text_embeds(ids)?)?;
        Ok((img.matmul(&txt.t()?)? * self.logit_scale.exp())?)
    }
}

/// Rows divided by their L2 norm (transformers' `_get_vector_norm`, no epsilon).
fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_div(&x.sqr()?.sum_keepdim(1)?.sqrt()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_table_maps_both_towers() {
        assert_eq!(
            hf_key("blocks.3.attn.qkv.weight", "text_model."),
            "text_model.encoder.layers.3.self_attn.{q,k,v}_proj.weight"
        );
        assert_eq!(
            hf_key("blocks.0.ln2.bias", ""),
            "encoder.layers.0.layer_norm2.bias"
        );
        assert_eq!(
            hf_key("ln_pre.weight", "vision_model."),
            "vision_model.pre_layrnorm.weight"
        );
        assert_eq!(
            hf_key("token_embed", "text_model."),
            "text_model.embeddings.token_embedding.weight"
        );
        assert_eq!(
            hf_key("text_projection.weight", ""),
            "text_projection.weight"
        );
    }

    #[test]
    fn pooling_rules() {
        let ids = Tensor::new(&[[5u32, 9, 7, 9], [1, 2, 3, 4]], &Device::Cpu).unwrap();
        assert_eq!(Pooling::ArgmaxId.positions(&ids).unwrap(), vec![1, 3]);
        assert_eq!(Pooling::FirstEos(7).positions(&ids).unwrap(), vec![2, 0]);
    }

    #[test]
    fn unknown_activation_is_refused() {
        let cfg = HfClipTextConfig {
            hidden_act: "relu".into(),
            ..Default::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("relu"), "{e}");
    }
}
