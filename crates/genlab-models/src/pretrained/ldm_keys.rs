//! Stable Diffusion's original single-file checkpoint layout (CompVis' `ldm` code, the
//! `.ckpt` / `.safetensors` files most users have) and diffusers' names, both ways, from one
//! table.
//!
//! The original module tree (Rombach et al. 2022, arXiv:2112.10752; the `ldm` repository's
//! `openaimodel.py` U-Net and `model.py` autoencoder) under three prefixes:
//!
//! ```text
//! model.diffusion_model.   time_embed.{0,2}, input_blocks.{k}.{0 resnet | 1 transformer},
//!                          input_blocks.{k}.0.op (downsampler), middle_block.{0,1,2},
//!                          output_blocks.{k}.{0 resnet | 1 transformer | 1 or 2 .conv}, out.{0,2}
//! first_stage_model.       encoder.down.{i}.block.{j}, encoder.down.{i}.downsample.conv,
//!                          {en,de}coder.mid.{block_1, attn_1, block_2}, decoder.up.{b}.block.{j},
//!                          decoder.up.{b}.upsample.conv, {en,de}coder.norm_out, quant_conv, ...
//! cond_stage_model.        transformer.text_model.* (SD 1.x: transformers' CLIPTextModel)
//! ```
//!
//! Input block `k = 1 + i (n + 1) + j` is down level `i`'s resnet `j` (n = layers per block;
//! `k = 1 + i (n + 1) + n` is its downsampler), output block `k = i (n + 1) + j` is diffusers'
//! up block `i`'s resnet `j`, and the autoencoder's `decoder.up.{b}` counts from the highest
//! resolution, so diffusers' up block `i` is `b = L - 1 - i`. Inside a U-Net resnet
//! `in_layers.{0,2}`, `emb_layers.1`, `out_layers.{0,3}`, `skip_connection` are `norm1`,
//! `conv1`, `time_emb_proj`, `norm2`, `conv2`, `conv_shortcut`; inside an autoencoder resnet
//! `nin_shortcut` is `conv_shortcut`; the autoencoder's middle attention has `norm`,
//! `q`/`k`/`v`/`proj_out` as 1x1 convolutions where diffusers has `group_norm`,
//! `to_q`/`to_k`/`to_v`/`to_out.0` linear layers. The spatial transformers and everything
//! else keep their names.
//!
//! [`pairs`] lists (diffusers prefix, original prefix, kind) for a given U-Net and
//! autoencoder shape; [`to_diffusers`] and [`to_original`] rename a whole map with it.

use candle_core::Tensor;

use genlab_core::{Error, Result};
use genlab_nn::CondUNetConfig;

use super::TensorMap;

/// Prefix of the U-Net in an original checkpoint.
pub const UNET_PREFIX: &str = "model.diffusion_model.";
/// Prefix of the autoencoder.
pub const VAE_PREFIX: &str = "first_stage_model.";
/// Prefix of SD 1.x's CLIP text encoder (transformers' names follow).
pub const CLIP_PREFIX: &str = "cond_stage_model.transformer.";
/// Prefix of SD 2.x's OpenCLIP text encoder (open_clip's names follow).
pub const OPEN_CLIP_PREFIX: &str = "cond_stage_model.model.";

/// How the names inside a matched prefix change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The same below the prefix.
    Same,
    /// A U-Net resnet (`in_layers.0` <-> `norm1`, ...).
    UnetResnet,
    /// An autoencoder resnet (`nin_shortcut` <-> `conv_shortcut`).
    VaeResnet,
    /// The autoencoder's middle attention (1x1 convolutions <-> linear layers).
    VaeAttention,
}

/// (diffusers name, original name) below a prefix, per kind.
fn subs(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Same => &[],
        Kind::UnetResnet => &[
            ("norm1", "in_layers.0"),
            ("conv1", "in_layers.2"),
            ("time_emb_proj", "emb_layers.1"),
            ("norm2", "out_layers.0"),
            ("conv2", "out_layers.3"),
            ("conv_shortcut", "skip_connection"),
        ],
        Kind::VaeResnet => &[("conv_shortcut", "nin_shortcut")],
        Kind::VaeAttention => &[
            ("group_norm", "norm"),
            ("to_q", "q"),
            ("to_k", "k"),
            ("to_v", "v"),
            ("to_out.0", "proj_out"),
        ],
    }
}

/// The shape of the autoencoder that the table needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaeLayout {
    pub levels: usize,
    pub layers_per_block: usize,
}

/// Every (diffusers prefix, original prefix, kind) of a U-Net and an autoencoder; the
/// original prefixes carry [`UNET_PREFIX`] / [`VAE_PREFIX`], the diffusers ones the
/// component name (`unet.`, `vae.`).
pub fn pairs(unet: &CondUNetConfig, vae: VaeLayout) -> Vec<(String, String, Kind)> {
    let mut p: Vec<(String, String, Kind)> = Vec::new();
    let mut add = |d: String, o: String, k: Kind| p.push((d, o, k));
    let (u, du) = (UNET_PREFIX, "unet.");
    let levels = unet.block_out_channels.len();
    let n = unet.layers_per_block;
    for (d, o) in [
        ("time_embedding.linear_1", "time_embed.0"),
        ("time_embedding.linear_2", "time_embed.2"),
        ("conv_in", "input_blocks.0.0"),
        ("conv_norm_out", "out.0"),
        ("conv_out", "out.2"),
        ("class_embedding", "label_emb"),
    ] {
        add(format!("{du}{d}"), format!("{u}{o}"), Kind::Same);
    }
    for i in 0..levels {
        for j in 0..n {
            let k = 1 + i * (n + 1) + j;
            add(
                format!("{du}down_blocks.{i}.resnets.{j}"),
                format!("{u}input_blocks.{k}.0"),
                Kind::UnetResnet,
            );
            if unet.cross_attention[i] {
                add(
                    format!("{du}down_blocks.{i}.attentions.{j}"),
                    format!("{u}input_blocks.{k}.1"),
                    Kind::Same,
                );
            }
        }
        if i + 1 < levels {
            let k = 1 + i * (n + 1) + n;
            add(
                format!("{du}down_blocks.{i}.downsamplers.0.conv"),
                format!("{u}input_blocks.{k}.0.op"),
                Kind::Same,
            );
        }
    }
    add(
        format!("{du}mid_block.resnets.0"),
        format!("{u}middle_block.0"),
        Kind::UnetResnet,
    );
    add(
        format!("{du}mid_block.attentions.0"),
        format!("{u}middle_block.1"),
        Kind::Same,
    );
    add(
        format!("{du}mid_block.resnets.1"),
        format!("{u}middle_block.2"),
        Kind::UnetResnet,
    );
    for i in 0..levels {
        let cross = unet.cross_attention[levels - 1 - i];
        for j in 0..=n {
            let k = i * (n + 1) + j;
            add(
                format!("{du}up_blocks.{i}.resnets.{j}"),
                format!("{u}output_blocks.{k}.0"),
                Kind::UnetResnet,
            );
            if cross {
                add(
                    format!("{du}up_blocks.{i}.attentions.{j}"),
                    format!("{u}output_blocks.{k}.1"),
                    Kind::Same,
                );
            }
        }
        if i + 1 < levels {
            let k = i * (n + 1) + n;
            let slot = if cross { 2 } else { 1 };
            add(
                format!("{du}up_blocks.{i}.upsamplers.0.conv"),
                format!("{u}output_blocks.{k}.{slot}.conv"),
                Kind::Same,
            );
        }
    }
    let (v, dv) = (VAE_PREFIX, "vae.");
    for c in ["quant_conv", "post_quant_conv"] {
        add(format!("{dv}{c}"), format!("{v}{c}"), Kind::Same);
    }
    for side in ["encoder", "decoder"] {
        for (d, o, k) in [
            ("conv_in", "conv_in", Kind::Same),
            ("conv_out", "conv_out", Kind::Same),
            ("conv_norm_out", "norm_out", Kind::Same),
            ("mid_block.resnets.0", "mid.block_1", Kind::VaeResnet),
            ("mid_block.resnets.1", "mid.block_2", Kind::VaeResnet),
            ("mid_block.attentions.0", "mid.attn_1", Kind::VaeAttention),
        ] {
            add(format!("{dv}{side}.{d}"), format!("{v}{side}.{o}"), k);
        }
    }
    let (l, m) = (vae.levels, vae.layers_per_block);
    for i in 0..l {
        for j in 0..m {
            add(
                format!("{dv}encoder.down_blocks.{i}.resnets.{j}"),
                format!("{v}encoder.down.{i}.block.{j}"),
                Kind::VaeResnet,
            );
        }
        if i + 1 < l {
            add(
                format!("{dv}encoder.down_blocks.{i}.downsamplers.0.conv"),
                format!("{v}encoder.down.{i}.downsample.conv"),
                Kind::Same,
            );
        }
        let b = l - 1 - i;
        for j in 0..=m {
            add(
                format!("{dv}decoder.up_blocks.{i}.resnets.{j}"),
                format!("{v}decoder.up.{b}.block.{j}"),
                Kind::VaeResnet,
            );
        }
        if i + 1 < l {
            add(
                format!("{dv}decoder.up_blocks.{i}.upsamplers.0.conv"),
                format!("{v}decoder.up.{b}.upsample.conv"),
                Kind::Same,
            );
        }
    }
    p
}

/// Renames `key` from one side of the table to the other (`forward`: diffusers ->
/// original); `None` when no prefix matches.
fn rename(table: &[(String, String, Kind)], key: &str, forward: bool) -> Option<(String, Kind)> {
    for (d, o, kind) in table {
        let (from, to) = if forward { (d, o) } else { (o, d) };
        let Some(rest) = key
            .strip_prefix(from.as_str())
            .and_then(|r| r.strip_prefix('.'))
        else {
            continue;
        };
        let mut rest = rest.to_string();
        for (a, b) in subs(*kind) {
            let (x, y) = if forward { (a, b) } else { (b, a) };
            if let Some(r) = rest.strip_prefix(&format!("{x}.")) {
                rest = format!("{y}.{r}");
                break;
            }
        }
        return Some((format!("{to}.{rest}"), *kind));
    }
    None
}

/// Attention projections: `[C, C]` linear (diffusers) <-> `[C, C, 1, 1]` conv (original).
fn reshape_attention(t: &Tensor, to_conv: bool) -> Result<Tensor> {
    Ok(match (t.rank(), to_conv) {
        (2, true) => {
            let (o, i) = t.dims2()?;
            t.reshape((o, i, 1, 1))?
        }
        (4, false) => {
            let (o, i, _, _) = t.dims4()?;
            t.reshape((o, i))?
        }
        _ => t.clone(),
    })
}

fn convert(map: &TensorMap, table: &[(String, String, Kind)], forward: bool) -> Result<TensorMap> {
    let mut out = TensorMap::from_tensors(Default::default(), map.source.clone())?;
    let mut unknown = Vec::new();
    for key in map.keys() {
        let t = map.get(key).expect("listed key");
        match rename(table, key, forward) {
            Some((name, kind)) => {
                let t = if kind == Kind::VaeAttention && !name.contains("norm") {
                    reshape_attention(t, forward)?
                } else {
                    t.clone()
                };
                out.insert(name, t);
            }
            None => unknown.push(key.to_string()),
        }
    }
    if !unknown.is_empty() {
        let shown: Vec<&str> = unknown
            .iter()
            .take(super::LISTED_KEYS)
            .map(|s| s.as_str())
            .collect();
        return Err(Error::Checkpoint(format!(
            "{}: {} keys have no {} name ({}{})",
            map.source,
            unknown.len(),
            if forward { "original" } else { "diffusers" },
            shown.join(", "),
            if unknown.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        )));
    }
    Ok(out)
}

/// An original checkpoint's U-Net and autoencoder tensors (with their prefixes) -> diffusers
/// names under `unet.` / `vae.`. Every key under the two prefixes must be known.
pub fn to_diffusers(map: &TensorMap, table: &[(String, String, Kind)]) -> Result<TensorMap> {
    let mut parts = map.rename(|k| {
        (k.starts_with(UNET_PREFIX) || k.starts_with(VAE_PREFIX)).then(|| k.to_string())
    })?;
    parts.source = map.source.clone();
    convert(&parts, table, false)
}

/// diffusers names under `unet.` / `vae.` -> the original layout.
pub fn to_original(map: &TensorMap, table: &[(String, String, Kind)]) -> Result<TensorMap> {
    convert(map, table, true)
}

/// SD 2.x's OpenCLIP text encoder (the tensors under [`OPEN_CLIP_PREFIX`], prefix removed)
/// -> transformers' `CLIPTextModel` names, keeping the first `layers` residual blocks (SD
/// 2.x reads the penultimate layer: its diffusers text encoder has 23 of OpenCLIP's 24).
/// `attn.in_proj_{weight,bias}` (q, k, v stacked) are split into `q_proj`/`k_proj`/
/// `v_proj`; `ln_1`, `ln_2`, `mlp.c_fc`, `mlp.c_proj`, `ln_final`, `positional_embedding`
/// become `layer_norm1`, `layer_norm2`, `mlp.fc1`, `mlp.fc2`, `final_layer_norm`,
/// `embeddings.position_embedding.weight`. `text_projection`, `logit_scale` and the later
/// blocks are dropped.
pub fn open_clip_to_transformers(map: &TensorMap, layers: usize) -> Result<TensorMap> {
    let mut out = TensorMap::from_tensors(Default::default(), map.source.clone())?;
    let get = |k: &str| -> Result<Tensor> {
        map.get(k)
            .cloned()
            .ok_or_else(|| Error::Checkpoint(format!("{}: missing key {k}", map.source)))
    };
    let t = "text_model.";
    out.insert(
        format!("{t}embeddings.token_embedding.weight"),
        get("token_embedding.weight")?,
    );
    out.insert(
        format!("{t}embeddings.position_embedding.weight"),
        get("positional_embedding")?,
    );
    out.insert(
        format!("{t}final_layer_norm.weight"),
        get("ln_final.weight")?,
    );
    out.insert(format!("{t}final_layer_norm.bias"), get("ln_final.bias")?);
    for i in 0..layers {
        let r = format!("transformer.resblocks.{i}.");
        let h = format!("{t}encoder.layers.{i}.");
        let w = get(&format!("{r}attn.in_proj_weight"))?;
        let b = get(&format!("{r}attn.in_proj_bias"))?;
        let d = w.dim(1)?;
        if w.dims() != [3 * d, d] {
            return Err(Error::Checkpoint(format!(
                "{}: {r}attn.in_proj_weight has shape {:?}, expected [3 * width, width]",
                map.source,
                w.dims()
            )));
        }
        for (j, q) in ["q", "k", "v"].iter().enumerate() {
            out.insert(
                format!("{h}self_attn.{q}_proj.weight"),
                w.narrow(0, j * d, d)?,
            );
            out.insert(
                format!("{h}self_attn.{q}_proj.bias"),
                b.narrow(0, j * d, d)?,
            );
        }
        for (a, z) in [
            ("attn.out_proj", "self_attn.out_proj"),
            ("ln_1", "layer_norm1"),
            ("ln_2", "layer_norm2"),
            ("mlp.c_fc", "mlp.fc1"),
            ("mlp.c_proj", "mlp.fc2"),
        ] {
            for p in ["weight", "bias"] {
                out.insert(format!("{h}{z}.{p}"), get(&format!("{r}{a}.{p}"))?);
            }
        }
    }
    Ok(out)
}

/// How many residual blocks an OpenCLIP text tower has (prefix removed).
pub fn open_clip_blocks(map: &TensorMap) -> usize {
    (0..1024)
        .take_while(|i| map.has_prefix(&format!("transformer.resblocks.{i}.")))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd15_shapes_name_the_known_original_keys() {
        let unet = CondUNetConfig {
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: 2,
            cross_attention: vec![true, true, true, false],
            ..CondUNetConfig::default()
        };
        let t = pairs(
            &unet,
            VaeLayout {
                levels: 4,
                layers_per_block: 2,
            },
        );
        let fwd = |k: &str| rename(&t, k, true).unwrap().0;
        // Facts of SD 1.5's v1-5-pruned checkpoint's key list.
        assert_eq!(
            fwd("unet.down_blocks.0.downsamplers.0.conv.weight"),
            "model.diffusion_model.input_blocks.3.0.op.weight"
        );
        assert_eq!(
            fwd("unet.down_blocks.3.resnets.1.time_emb_proj.bias"),
            "model.diffusion_model.input_blocks.11.0.emb_layers.1.bias"
        );
        assert_eq!(
            fwd("unet.up_blocks.0.upsamplers.0.conv.weight"),
            "model.diffusion_model.output_blocks.2.1.conv.weight"
        );
        assert_eq!(
            fwd("unet.up_blocks.1.upsamplers.0.conv.weight"),
            "model.diffusion_model.output_blocks.5.2.conv.weight"
        );
        assert_eq!(
            fwd("unet.up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight"),
            "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight"
        );
        assert_eq!(
            fwd("vae.decoder.up_blocks.0.resnets.2.conv_shortcut.weight"),
            "first_stage_model.decoder.up.3.block.2.nin_shortcut.weight"
        );
        assert_eq!(
            fwd("vae.encoder.mid_block.attentions.0.to_out.0.bias"),
            "first_stage_model.encoder.mid.attn_1.proj_out.bias"
        );
        // And back.
        for (d, o, _) in &t {
            let k = format!("{o}.weight");
            let (back, _) = rename(&t, &k, false).unwrap();
            assert!(
                back.starts_with(d.as_str()),
                "{k} -> {back}, expected under {d}"
            );
        }
    }
}
