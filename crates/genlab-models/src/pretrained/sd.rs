//! Stable Diffusion 1.x / 2.x checkpoints in diffusers' folder layout, loaded into genlab's
//! own networks.
//!
//! Rombach, Blattmann, Lorenz, Esser & Ommer 2022, "High-Resolution Image Synthesis with
//! Latent Diffusion Models" (arXiv:2112.10752): a text-conditioned U-Net denoising the
//! latents of a KL autoencoder (f = 8, 4 channels), with CLIP's text encoder (ViT-L/14's for
//! 1.x, OpenCLIP ViT-H/14's for 2.x) supplying the cross-attention context.
//!
//! A diffusers folder (`StableDiffusionPipeline.save_pretrained`, or a Hugging Face
//! repository) holds `model_index.json` and one folder per component:
//!
//! ```text
//! unet/          config.json (UNet2DConditionModel)  diffusion_pytorch_model[.fp16].safetensors
//! vae/           config.json (AutoencoderKL)         diffusion_pytorch_model[.fp16].safetensors
//! text_encoder/  config.json (CLIPTextModel)         model[.fp16].safetensors
//! tokenizer/     vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json
//! scheduler/     scheduler_config.json
//! ```
//!
//! (`.bin` PyTorch files and sharded `*.safetensors.index.json` weights are read too.) The
//! U-Net's parameter names are genlab's [`CondUNet`]'s already; the VAE's are genlab's
//! [`Autoencoder`]'s except the middle attention, whose separate `to_q`/`to_k`/`to_v`
//! linear layers (or the older `query`/`key`/`value`/`proj_attn`) become the packed 1x1
//! `qkv` convolution of [`genlab_nn::AttentionBlock`] ([`vae_from_diffusers`]).
//!
//! What is refused, by name: SDXL (two text encoders, `addition_embed_type`), SD3 / FLUX
//! (a `transformer/` instead of a `unet/`), and U-Net or VAE options genlab's networks do
//! not implement (each listed in the message).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::Value;

use genlab_core::{Error, Result};
use genlab_nn::{CondUNet, CondUNetConfig};

use super::TensorMap;
use crate::autoencoder::{Autoencoder, AutoencoderConfig, RecLoss};
use crate::sample::DataSpace;

/// The components a Stable Diffusion folder must have.
pub const COMPONENTS: [&str; 5] = ["unet", "vae", "text_encoder", "tokenizer", "scheduler"];

/// Reads a JSON file (config.json, model_index.json, ...), naming the file in any error.
pub fn read_json(path: &Path) -> Result<Value> {
    genlab_core::io::read_json(path)
}

/// Recognises the pipelines genlab cannot run from `model_index.json`'s `_class_name` (or
/// the component folders) and refuses them by name.
pub fn check_pipeline(dir: &Path) -> Result<()> {
    let index = dir.join("model_index.json");
    let class = if index.is_file() {
        read_json(&index)?
            .get("_class_name")
            .and_then(|v| v.as_str())
            .map(|s| s.to_string())
    } else {
        None
    };
    let refuse = |what: &str| {
        Err(Error::Config(format!(
            "{} is a {what} checkpoint; genlab runs Stable Diffusion 1.x and 2.x \
             (StableDiffusionPipeline) only",
            dir.display()
        )))
    };
    if let Some(c) = &class {
        if c.contains("XL") {
            return refuse(&format!("Stable Diffusion XL ({c})"));
        }
        if c.contains("StableDiffusion3") {
            return refuse(&format!("Stable Diffusion 3 ({c})"));
        }
        if c.contains("Flux") {
            return refuse(&format!("FLUX ({c})"));
        }
    }
    if dir.join("text_encoder_2").is_dir() {
        return refuse("Stable Diffusion XL (it has text_encoder_2/)");
    }
    if dir.join("transformer").is_dir() && !dir.join("unet").is_dir() {
        return refuse("diffusion-transformer (SD3 / FLUX style: transformer/ instead of unet/)");
    }
    let missing: Vec<&str> = COMPONENTS
        .iter()
        .copied()
        .filter(|c| !dir.join(c).is_dir())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Config(format!(
            "{} is not a complete Stable Diffusion folder: missing {} (expected the folders {} \
             beside model_index.json, as diffusers' save_pretrained writes them)",
            dir.display(),
            missing.join(", "),
            COMPONENTS.join(", ")
        )));
    }
    Ok(())
}

/// Loads a diffusers component folder's weights (`diffusion_pytorch_model.*`, see
/// [`super::weight_files`]).
pub fn load_component(dir: &Path, device: &Device) -> Result<TensorMap> {
    super::load_component(dir, DIFFUSERS_STEM, DIFFUSERS_STEM, device)
}

/// The file stem of diffusers' model weights.
pub const DIFFUSERS_STEM: &str = "diffusion_pytorch_model";

fn field<'a>(cfg: &'a Value, key: &str) -> Option<&'a Value> {
    cfg.get(key).filter(|v| !v.is_null())
}

fn usize_field(cfg: &Value, key: &str, what: &str) -> Result<Option<usize>> {
    match field(cfg, key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(|u| Some(u as usize)).ok_or_else(|| {
            Error::Config(format!("{what}: `{key}` must be a whole number, got {v}"))
        }),
    }
}

fn usize_list(v: &Value, key: &str, what: &str) -> Result<Vec<usize>> {
    match v {
        Value::Number(_) => Ok(vec![v.as_u64().unwrap_or(0) as usize]),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_u64().map(|u| u as usize).ok_or_else(|| {
                    Error::Config(format!("{what}: `{key}` must hold whole numbers, got {x}"))
                })
            })
            .collect(),
        _ => Err(Error::Config(format!(
            "{what}: `{key}` must be a number or a list, got {v}"
        ))),
    }
}

fn str_list(cfg: &Value, key: &str, what: &str) -> Result<Vec<String>> {
    field(cfg, key)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .ok_or_else(|| Error::Config(format!("{what}: `{key}` is missing or not a list")))
}

/// diffusers' `UNet2DConditionModel` config.json -> [`CondUNetConfig`]; options genlab's
/// U-Net does not implement are refused together, by name.
pub fn unet_config(cfg: &Value) -> Result<CondUNetConfig> {
    let what = "unet/config.json";
    let mut unsupported = Vec::new();
    let mut want = |key: &str, ok: &dyn Fn(&Value) -> bool, label: &str| {
        if let Some(v) = field(cfg, key) {
            if !ok(v) {
                unsupported.push(format!("{key} = {v} ({label})"));
            }
        }
    };
    let is = |s: &'static str| move |v: &Value| v.as_str() == Some(s);
    want(
        "addition_embed_type",
        &|_| false,
        "SDXL's extra conditioning",
    );
    want(
        "class_embed_type",
        &|_| false,
        "only plain class embeddings are supported",
    );
    want("time_cond_proj_dim", &|_| false, "LCM's guidance embedding");
    want("encoder_hid_dim", &|_| false, "a projected context");
    want("act_fn", &is("silu"), "SiLU only");
    want(
        "mid_block_type",
        &is("UNetMidBlock2DCrossAttn"),
        "the cross-attention mid block only",
    );
    want(
        "resnet_time_scale_shift",
        &is("default"),
        "additive time embedding only",
    );
    want(
        "time_embedding_type",
        &is("positional"),
        "sinusoidal time only",
    );
    want("attention_type", &is("default"), "plain attention only");
    want(
        "center_input_sample",
        &|v| v == &Value::Bool(false),
        "not implemented",
    );
    want(
        "dual_cross_attention",
        &|v| v == &Value::Bool(false),
        "not implemented",
    );
    want(
        "only_cross_attention",
        &|v| v == &Value::Bool(false),
        "not implemented",
    );
    want(
        "class_embeddings_concat",
        &|v| v == &Value::Bool(false),
        "not implemented",
    );
    want("conv_in_kernel", &|v| v.as_u64() == Some(3), "3x3 only");
    want("conv_out_kernel", &|v| v.as_u64() == Some(3), "3x3 only");
    want(
        "downsample_padding",
        &|v| v.as_u64() == Some(1),
        "padding 1 only",
    );
    want(
        "mid_block_scale_factor",
        &|v| v.as_f64() == Some(1.0),
        "1 only",
    );
    want(
        "resnet_out_scale_factor",
        &|v| v.as_f64() == Some(1.0),
        "1 only",
    );
    want(
        "time_embedding_dim",
        &|_| false,
        "the default 4x width only",
    );
    want("timestep_post_act", &|_| false, "not implemented");
    want(
        "reverse_transformer_layers_per_block",
        &|_| false,
        "not implemented",
    );
    if !unsupported.is_empty() {
        return Err(Error::Config(format!(
            "{what}: options genlab's U-Net does not implement: {}",
            unsupported.join("; ")
        )));
    }
    let down = str_list(cfg, "down_block_types", what)?;
    let up = str_list(cfg, "up_block_types", what)?;
    let mut cross = Vec::new();
    for b in &down {
        cross.push(match b.as_str() {
            "CrossAttnDownBlock2D" => true,
            "DownBlock2D" => false,
            other => {
                return Err(Error::Config(format!(
                    "{what}: down block `{other}` is not supported (CrossAttnDownBlock2D, \
                     DownBlock2D)"
                )))
            }
        });
    }
    let mirrored: Vec<&str> = cross
        .iter()
        .rev()
        .map(|&c| if c { "CrossAttnUpBlock2D" } else { "UpBlock2D" })
        .collect();
    if up.iter().map(|s| s.as_str()).collect::<Vec<_>>() != mirrored {
        return Err(Error::Config(format!(
            "{what}: up_block_types {up:?} must mirror down_block_types {down:?} ({mirrored:?})"
        )));
    }
    let block_out_channels = usize_list(
        field(cfg, "block_out_channels")
            .ok_or_else(|| Error::Config(format!("{what}: `block_out_channels` is missing")))?,
        "block_out_channels",
        what,
    )?;
    // diffusers' SD configs write the head count as `attention_head_dim` (a historical
    // misnomer that diffusers keeps); `num_attention_heads`, when set, wins.
    let heads_v = field(cfg, "num_attention_heads")
        .or_else(|| field(cfg, "attention_head_dim"))
        .cloned()
        .unwrap_or(Value::from(8));
    let num_attention_heads = usize_list(&heads_v, "attention_head_dim", what)?;
    let layers = match field(cfg, "transformer_layers_per_block") {
        None => 1,
        Some(v) => {
            let l = usize_list(v, "transformer_layers_per_block", what)?;
            if l.iter().any(|&x| x != l[0]) {
                return Err(Error::Config(format!(
                    "{what}: transformer_layers_per_block {l:?} differs between levels \
                     (genlab's U-Net takes one count)"
                )));
            }
            l[0]
        }
    };
    let cross_attention_dim = match field(cfg, "cross_attention_dim") {
        None => 1280,
        Some(v) => {
            let l = usize_list(v, "cross_attention_dim", what)?;
            if l.iter().any(|&x| x != l[0]) {
                return Err(Error::Config(format!(
                    "{what}: cross_attention_dim {l:?} differs between levels"
                )));
            }
            l[0]
        }
    };
    let c = CondUNetConfig {
        in_channels: usize_field(cfg, "in_channels", what)?.unwrap_or(4),
        out_channels: usize_field(cfg, "out_channels", what)?.unwrap_or(4),
        block_out_channels,
        layers_per_block: usize_field(cfg, "layers_per_block", what)?.unwrap_or(2),
        cross_attention: cross,
        num_attention_heads,
        cross_attention_dim,
        transformer_layers_per_block: layers,
        norm_num_groups: usize_field(cfg, "norm_num_groups", what)?.unwrap_or(32),
        norm_eps: field(cfg, "norm_eps")
            .and_then(|v| v.as_f64())
            .unwrap_or(1e-5),
        use_linear_projection: field(cfg, "use_linear_projection")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        flip_sin_to_cos: field(cfg, "flip_sin_to_cos")
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
        freq_shift: field(cfg, "freq_shift")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0),
        num_class_embeds: usize_field(cfg, "num_class_embeds", what)?.unwrap_or(0),
    };
    c.validate()?;
    Ok(c)
}

/// The autoencoder of a Stable Diffusion checkpoint: genlab's [`Autoencoder`] in its
/// upstream layout, its weights (renamed once), and the latent scaling.
#[derive(Clone, Debug)]
pub struct SdVae {
    /// The config with a placeholder image size; [`SdVae::at_size`] sets it.
    pub config: AutoencoderConfig,
    /// diffusers' `scaling_factor` (SD: 0.18215): the diffusion model sees `z * scale`.
    pub scaling_factor: f64,
    /// `shift_factor` (0 for SD 1.x / 2.x): the diffusion model sees `(z - shift) * scale`.
    pub shift_factor: f64,
    weights: TensorMap,
    device: Device,
}

impl SdVae {
    /// Reads `vae/config.json` and the weights of a diffusers `AutoencoderKL` folder.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = read_json(&dir.join("config.json"))?;
        let map = load_component(dir, device)?;
        Self::from_diffusers(&cfg, &map, device)
    }

    /// From a parsed config.json and diffusers-named weights.
    pub fn from_diffusers(cfg: &Value, map: &TensorMap, device: &Device) -> Result<Self> {
        let (config, scaling_factor, shift_factor) = vae_config(cfg)?;
        let weights = vae_from_diffusers(map)?;
        let vae = Self {
            config,
            scaling_factor,
            shift_factor,
            weights,
            device: device.clone(),
        };
        // Build once at the placeholder size so key problems surface at load time.
        vae.at_size(vae.config.factor(), vae.config.factor())?;
        Ok(vae)
    }

    /// The autoencoder for `h x w` images (multiples of the factor f; 8 for SD).
    pub fn at_size(&self, h: usize, w: usize) -> Result<Autoencoder> {
        let mut cfg = self.config.clone();
        cfg.data.shape = vec![cfg.data.shape[0], h, w];
        cfg.validate()?;
        self.weights.build(
            "the Stable Diffusion VAE",
            &self.device,
            |_| false,
            |vb| Autoencoder::new(&cfg, vb).map_err(|e| candle_core::Error::Msg(e.to_string())),
        )
    }

    /// Latents as the diffusion model sees them -> images `[B, 3, h, w]` in [0, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = latents.dims4()?;
        let f = self.config.factor();
        let ae = self.at_size(h * f, w * f)?;
        let z = ((latents / self.scaling_factor)? + self.shift_factor)?;
        ae.decode(&z)
    }

    /// Images `[B, 3, H, W]` in [0, 1] -> the posterior mean, scaled as the diffusion model
    /// sees latents.
    pub fn encode_mean(&self, images: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = images.dims4()?;
        let ae = self.at_size(h, w)?;
        let z = ae.encode(images)?.mean;
        Ok(((z - self.shift_factor)? * self.scaling_factor)?)
    }
}

/// diffusers' `AutoencoderKL` config.json -> (genlab's config, scaling_factor, shift_factor).
pub fn vae_config(cfg: &Value) -> Result<(AutoencoderConfig, f64, f64)> {
    let what = "vae/config.json";
    let mut unsupported = Vec::new();
    for (key, ok) in [
        (
            "act_fn",
            field(cfg, "act_fn").is_none_or(|v| v.as_str() == Some("silu")),
        ),
        (
            "use_quant_conv",
            field(cfg, "use_quant_conv").is_none_or(|v| v == &Value::Bool(true)),
        ),
        (
            "use_post_quant_conv",
            field(cfg, "use_post_quant_conv").is_none_or(|v| v == &Value::Bool(true)),
        ),
        ("latents_mean", field(cfg, "latents_mean").is_none()),
    ] {
        if !ok {
            unsupported.push(format!("{key} = {}", cfg[key]));
        }
    }
    for key in ["down_block_types", "up_block_types"] {
        let want = if key.starts_with("down") {
            "DownEncoderBlock2D"
        } else {
            "UpDecoderBlock2D"
        };
        if let Some(v) = field(cfg, key) {
            if v.as_array()
                .is_none_or(|a| a.iter().any(|b| b.as_str() != Some(want)))
            {
                unsupported.push(format!("{key} = {v} (only {want})"));
            }
        }
    }
    let channels = usize_field(cfg, "in_channels", what)?.unwrap_or(3);
    if usize_field(cfg, "out_channels", what)?.unwrap_or(3) != channels {
        unsupported.push("out_channels differs from in_channels".into());
    }
    if !unsupported.is_empty() {
        return Err(Error::Config(format!(
            "{what}: options genlab's autoencoder does not implement: {}",
            unsupported.join("; ")
        )));
    }
    let levels = usize_list(
        field(cfg, "block_out_channels").unwrap_or(&Value::from(vec![64])),
        "block_out_channels",
        what,
    )?;
    let config = AutoencoderConfig {
        channels: levels,
        layers_per_block: usize_field(cfg, "layers_per_block", what)?.unwrap_or(1),
        latent_channels: usize_field(cfg, "latent_channels", what)?.unwrap_or(4),
        groups: usize_field(cfg, "norm_num_groups", what)?.unwrap_or(32),
        mid_attention: field(cfg, "mid_block_add_attention")
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
        rec_loss: RecLoss::L1,
        kl_weight: 1e-6,
        vq: None,
        data: DataSpace {
            shape: vec![channels, 8, 8],
            images: true,
        },
        upstream_layout: true,
    };
    let scale = field(cfg, "scaling_factor")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.18215);
    let shift = field(cfg, "shift_factor")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let mut placeholder = config.clone();
    let f = placeholder.factor();
    placeholder.data.shape = vec![channels, f, f];
    placeholder.validate()?;
    Ok((config, scale, shift))
}

/// Renames a diffusers `AutoencoderKL` state dict to genlab's [`Autoencoder`] names: the
/// middle attentions' `group_norm`, `to_q`/`to_k`/`to_v` (`[C, C]` linear or `[C, C, 1, 1]`)
/// and `to_out.0` (or the pre-0.14 `query`/`key`/`value`/`proj_attn`) become `norm`, the
/// packed `qkv` 1x1 convolution (`[3C, C, 1, 1]`, q then k then v) and `proj`. Everything
/// else keeps its name.
pub fn vae_from_diffusers(map: &TensorMap) -> Result<TensorMap> {
    let mut out = map.rename(|k| {
        let is_attn = k.contains(".mid_block.attentions.0.");
        (!is_attn).then(|| k.to_string())
    })?;
    for side in ["encoder", "decoder"] {
        let p = format!("{side}.mid_block.attentions.0.");
        if !map.has_prefix(&p) {
            continue;
        }
        let pick = |names: [&str; 2], suffix: &str| -> Result<Tensor> {
            for n in names {
                if let Some(t) = map.get(&format!("{p}{n}.{suffix}")) {
                    return Ok(t.clone());
                }
            }
            Err(Error::Checkpoint(format!(
                "{}: missing key {p}{}.{suffix}",
                map.source, names[0]
            )))
        };
        let conv = |t: Tensor| -> Result<Tensor> {
            Ok(match t.rank() {
                2 => {
                    let (o, i) = t.dims2()?;
                    t.reshape((o, i, 1, 1))?
                }
                _ => t,
            })
        };
        let q = conv(pick(["to_q", "query"], "weight")?)?;
        let k = conv(pick(["to_k", "key"], "weight")?)?;
        let v = conv(pick(["to_v", "value"], "weight")?)?;
        let dst = format!("{side}.mid_block.attentions.0.");
        out.insert(format!("{dst}qkv.weight"), Tensor::cat(&[&q, &k, &v], 0)?);
        let (qb, kb, vb) = (
            pick(["to_q", "query"], "bias")?,
            pick(["to_k", "key"], "bias")?,
            pick(["to_v", "value"], "bias")?,
        );
        out.insert(format!("{dst}qkv.bias"), Tensor::cat(&[&qb, &kb, &vb], 0)?);
        out.insert(
            format!("{dst}proj.weight"),
            conv(pick(["to_out.0", "proj_attn"], "weight")?)?,
        );
        out.insert(
            format!("{dst}proj.bias"),
            pick(["to_out.0", "proj_attn"], "bias")?,
        );
        out.insert(
            format!("{dst}norm.weight"),
            pick(["group_norm", "group_norm"], "weight")?,
        );
        out.insert(
            format!("{dst}norm.bias"),
            pick(["group_norm", "group_norm"], "bias")?,
        );
        // Keys of the attention not consumed above are reported as unexpected.
        let used = [
            "to_q",
            "to_k",
            "to_v",
            "to_out.0",
            "query",
            "key",
            "value",
            "proj_attn",
            "group_norm",
        ];
        for key in map.keys() {
            if let Some(rest) = key.strip_prefix(&p) {
                if !used.iter().any(|u| rest.starts_with(&format!("{u}."))) {
                    out.insert(key.to_string(), map.get(key).expect("listed key").clone());
                }
            }
        }
    }
    Ok(out)
}

/// Loads the U-Net of a diffusers folder (`unet/`): config.json and its weights.
pub fn load_unet_dir(dir: &Path, device: &Device) -> Result<CondUNet> {
    let cfg = unet_config(&read_json(&dir.join("config.json"))?)?;
    let map = load_component(dir, device)?;
    unet_from_map(&cfg, &map, device)
}

/// Builds the U-Net from diffusers-named weights (genlab's names are diffusers').
pub fn unet_from_map(cfg: &CondUNetConfig, map: &TensorMap, device: &Device) -> Result<CondUNet> {
    map.build(
        "the Stable Diffusion U-Net",
        device,
        |_| false,
        |vb| CondUNet::new(cfg, vb),
    )
}

/// What an original single-file checkpoint holds, recognised from its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SingleFileKind {
    /// SD 1.x: transformers' CLIP text encoder under `cond_stage_model.transformer.`.
    Sd1,
    /// SD 2.x: OpenCLIP's text encoder under `cond_stage_model.model.`.
    Sd2,
}

/// Recognises an original checkpoint's family from its keys; SDXL, SD3 and FLUX files are
/// refused by name.
pub fn single_file_kind(map: &TensorMap) -> Result<SingleFileKind> {
    let refuse = |what: &str| {
        Err(Error::Config(format!(
            "{} is a {what} checkpoint; genlab runs Stable Diffusion 1.x and 2.x only",
            map.source
        )))
    };
    if map.has_prefix("conditioner.embedders.") {
        return refuse("Stable Diffusion XL");
    }
    if map.has_prefix("model.diffusion_model.joint_blocks.") {
        return refuse("Stable Diffusion 3");
    }
    if map.has_prefix("double_blocks.") || map.has_prefix("model.diffusion_model.double_blocks.") {
        return refuse("FLUX");
    }
    if !map.has_prefix(super::ldm_keys::UNET_PREFIX) {
        return Err(Error::Checkpoint(format!(
            "{} is not a Stable Diffusion checkpoint: it has no `{}` keys (the U-Net of the \
             original single-file layout)",
            map.source,
            super::ldm_keys::UNET_PREFIX
        )));
    }
    if map.has_prefix(super::ldm_keys::OPEN_CLIP_PREFIX) {
        Ok(SingleFileKind::Sd2)
    } else if map.has_prefix(super::ldm_keys::CLIP_PREFIX) {
        Ok(SingleFileKind::Sd1)
    } else {
        Err(Error::Checkpoint(format!(
            "{}: no text encoder found (expected `{}` or `{}` keys)",
            map.source,
            super::ldm_keys::CLIP_PREFIX,
            super::ldm_keys::OPEN_CLIP_PREFIX
        )))
    }
}

fn dim(map: &TensorMap, key: &str, i: usize) -> Result<usize> {
    let t = map
        .get(key)
        .ok_or_else(|| Error::Checkpoint(format!("{}: missing key {key}", map.source)))?;
    t.dims()
        .get(i)
        .copied()
        .ok_or_else(|| Error::Checkpoint(format!("{}: {key} has too few dimensions", map.source)))
}

/// The U-Net config of an original checkpoint, read from its tensor shapes. Head counts are
/// not in the weights: SD 1.x uses 8 heads on every level, SD 2.x 64-wide heads (recognised
/// by its linear `proj_in`), as in the original inference configs (v1-inference.yaml,
/// v2-inference.yaml).
pub fn infer_unet_config(map: &TensorMap) -> Result<CondUNetConfig> {
    let u = super::ldm_keys::UNET_PREFIX;
    let in_channels = dim(map, &format!("{u}input_blocks.0.0.weight"), 1)?;
    let out_channels = dim(map, &format!("{u}out.2.weight"), 0)?;
    // The first downsampler sits at input block n + 1.
    let n = (1..64)
        .find(|k| map.contains(&format!("{u}input_blocks.{k}.0.op.weight")))
        .map(|k| k - 1)
        .ok_or_else(|| Error::Checkpoint(format!("{}: no downsampler in the U-Net", map.source)))?;
    let mut channels = Vec::new();
    let mut cross = Vec::new();
    let mut i = 0;
    while map.contains(&format!(
        "{u}input_blocks.{}.0.in_layers.0.weight",
        1 + i * (n + 1)
    )) {
        let k = 1 + i * (n + 1);
        channels.push(dim(
            map,
            &format!("{u}input_blocks.{k}.0.out_layers.3.weight"),
            0,
        )?);
        cross.push(map.has_prefix(&format!("{u}input_blocks.{k}.1.")));
        i += 1;
    }
    let first_attn = (0..channels.len())
        .find(|&i| cross[i])
        .map(|i| 1 + i * (n + 1))
        .ok_or_else(|| Error::Checkpoint(format!("{}: no cross-attention", map.source)))?;
    let a = format!("{u}input_blocks.{first_attn}.1.");
    let context = dim(
        map,
        &format!("{a}transformer_blocks.0.attn2.to_k.weight"),
        1,
    )?;
    let linear = map
        .get(&format!("{a}proj_in.weight"))
        .is_some_and(|t| t.rank() == 2);
    let layers = (0..64)
        .take_while(|l| map.has_prefix(&format!("{a}transformer_blocks.{l}.")))
        .count();
    let heads = if linear {
        channels.iter().map(|c| (c / 64).max(1)).collect()
    } else {
        vec![8]
    };
    let cfg = CondUNetConfig {
        in_channels,
        out_channels,
        block_out_channels: channels,
        layers_per_block: n,
        cross_attention: cross,
        num_attention_heads: heads,
        cross_attention_dim: context,
        transformer_layers_per_block: layers,
        norm_num_groups: 32,
        norm_eps: 1e-5,
        use_linear_projection: linear,
        flip_sin_to_cos: true,
        freq_shift: 0.0,
        num_class_embeds: if map.contains(&format!("{u}label_emb.weight")) {
            dim(map, &format!("{u}label_emb.weight"), 0)?
        } else {
            0
        },
    };
    // Not validated here: the caller may still override what the weights do not say.
    Ok(cfg)
}

/// The autoencoder layout of an original checkpoint, from its tensor shapes (32 GroupNorm
/// groups and SD's scaling factor 0.18215, as in the original configs).
pub fn infer_vae_config(map: &TensorMap) -> Result<serde_json::Value> {
    let v = super::ldm_keys::VAE_PREFIX;
    let mut channels = Vec::new();
    while map.contains(&format!(
        "{v}encoder.down.{}.block.0.conv1.weight",
        channels.len()
    )) {
        let i = channels.len();
        channels.push(dim(
            map,
            &format!("{v}encoder.down.{i}.block.0.conv1.weight"),
            0,
        )?);
    }
    let layers = (0..16)
        .take_while(|j| map.contains(&format!("{v}encoder.down.0.block.{j}.conv1.weight")))
        .count();
    let latent = dim(map, &format!("{v}post_quant_conv.weight"), 0)?;
    let image = dim(map, &format!("{v}encoder.conv_in.weight"), 1)?;
    Ok(serde_json::json!({
        "block_out_channels": channels,
        "layers_per_block": layers,
        "latent_channels": latent,
        "in_channels": image,
        "out_channels": image,
        "norm_num_groups": 32,
        "scaling_factor": 0.18215,
    }))
}
