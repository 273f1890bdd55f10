//! Causal text transformer in CLIP's arrangement (Radford et al. 2021, "Learning
//! Transferable Visual Models From Natural Language Supervision", arXiv:2103.00020,
//! Sec. 2.4; the GPT-2 block of Radford et al. 2019): token and learned position
//! embeddings, pre-norm [`TransformerBlock`]s under a causal mask, a final LayerNorm, and
//! the feature of the end-of-text token (the highest-numbered token in CLIP's vocabulary,
//! whose position the tokenizer reports) as the sequence's representation.
//!
//! Parameter names: `token_embed [vocab, width]`, `pos_embed [context, width]`,
//! `blocks.{i}`, `ln_final`.

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::transformer::{LayerNorm, MlpAct, TransformerBlock, TransformerBlockConfig};

/// Initial standard deviations of CLIP's token (0.02) and position (0.01) embeddings.
pub const TOKEN_INIT_STD: f64 = 0.02;
pub const POS_INIT_STD: f64 = 0.01;

/// Shape of a [`TextTransformer`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TextTransformerConfig {
    pub vocab: usize,
    /// Longest token sequence (with start and end tokens).
    pub context: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_ratio: usize,
    /// MLP hidden width when it is not a multiple of `width` (Hugging Face's
    /// `intermediate_size`); `None`: `mlp_ratio · width`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_hidden: Option<usize>,
    pub act: MlpAct,
    /// LayerNorm epsilon of every block and of `ln_final` (CLIP's 1e-5).
    pub eps: f64,
}

impl Default for TextTransformerConfig {
    fn default() -> Self {
        Self {
            vocab: 49408, // CLIP's byte-level BPE vocabulary
            context: 32,  // digit captions are under 20 tokens; CLIP's 77 costs 2.4x more
            width: 128,
            layers: 4,
            heads: 4,
            mlp_ratio: 4,
            mlp_hidden: None,
            act: MlpAct::GeluErf,
            eps: 1e-5,
        }
    }
}

impl TextTransformerConfig {
    pub fn validate(&self) -> genlab_core::Result<()> {
        let bad = |problem: String| genlab_core::Error::Setting {
            setting: "text".into(),
            problem,
        };
        if self.vocab == 0 || self.context < 2 || self.width == 0 || self.layers == 0 {
            return Err(bad(
                "vocab, width and layers must be positive and the context at least 2".into(),
            ));
        }
        if self.mlp_ratio == 0 || self.heads == 0 || self.width % self.heads != 0 {
            return Err(bad(format!(
                "heads ({}) must divide the width ({}) and mlp_ratio be positive",
                self.heads, self.width
            )));
        }
        if self.mlp_hidden == Some(0) || !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(bad(format!(
                "mlp_hidden ({:?}) and eps ({}) must be positive",
                self.mlp_hidden, self.eps
            )));
        }
        Ok(())
    }

    pub fn block(&self) -> TransformerBlockConfig {
        TransformerBlockConfig {
            dim: self.width,
            heads: self.heads,
            mlp_hidden: self.mlp_hidden.unwrap_or(self.mlp_ratio * self.width),
            pre_norm: true,
            act: self.act,
            eps: self.eps,
        }
    }

    /// Forward FLOPs per sequence of `n` tokens.
    pub fn flops(&self, n: usize) -> u64 {
        self.layers as u64 * crate::transformer::block_flops(&self.block(), n)
    }
}

#[derive(Debug, Clone)]
pub struct TextTransformer {
    cfg: TextTransformerConfig,
    token_embed: Tensor,
    pos_embed: Tensor,
    blocks: Vec<TransformerBlock>,
    ln_final: LayerNorm,
}

impl TextTransformer {
    pub fn new(cfg: &TextTransformerConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let init = |stdev| candle_nn::Init::Randn { mean: 0.0, stdev };
        let token_embed =
            vb.get_with_hints((cfg.vocab, cfg.width), "token_embed", init(TOKEN_INIT_STD))?;
        let pos_embed =
            vb.get_with_hints((cfg.context, cfg.width), "pos_embed", init(POS_INIT_STD))?;
        let block = cfg.block();
        let blocks = (0..cfg.layers)
            .map(|i| TransformerBlock::new(&block, vb.pp(format!("blocks.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            token_embed,
            pos_embed,
            blocks,
            ln_final: LayerNorm::new(cfg.width, cfg.eps, vb.pp("ln_final"))?,
        })
    }

    pub fn config(&self) -> &TextTransformerConfig {
        &self.cfg
    }

    /// Every token's feature after `ln_final`: `ids [B, N]` (u32, `N <= context`) ->
    /// `[B, N, width]`.
    pub fn forward_tokens(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.hidden_after(ids, self.blocks.len())?;
        self.ln_final.forward(&x)
    }

    /// `ln_final` alone (for a hidden state from [`Self::hidden_after`]).
    pub fn final_norm(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.ln_final.forward(x)
    }

    /// Every token's feature after the first `layers` blocks, before `ln_final`
    /// (`layers = 0`: the embeddings; Stable Diffusion's "clip skip" reads `layers - 1`).
    pub fn hidden_after(&self, ids: &Tensor, layers: usize) -> candle_core::Result<Tensor> {
        if layers > self.blocks.len() {
            candle_core::bail!(
                "text transformer: {layers} layers asked for, the model has {}",
                self.blocks.len()
            );
        }
        let (b, n) = ids.dims2()?;
        if n == 0 || n > self.cfg.context {
            candle_core::bail!(
                "text transformer: {n} tokens per sequence, the model takes 1 to {}",
                self.cfg.context
            );
        }
        let max = ids.max_all()?.to_scalar::<u32>()? as usize;
        if max >= self.cfg.vocab {
            candle_core::bail!(
                "text transformer: token id {max} is outside the vocabulary of {}",
                self.cfg.vocab
            );
        }
        let w = self.cfg.width;
        // [B·N] ids -> [B·N, width] -> [B, N, width]
        let x = self
            .token_embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, n, w))?
            .broadcast_add(&self.pos_embed.narrow(0, 0, n)?)?;
        let mut x = x;
        for blk in &self.blocks[..layers] {
            x = blk.forward_causal(&x)?;
        }
        Ok(x)
    }

    /// `ids [B, N]` -> `[B, width]`: the feature at each sequence's end-of-text position
    /// (`eot[b] < N`).
    pub fn forward(&self, ids: &Tensor, eot: &[usize]) -> candle_core::Result<Tensor> {
        let (b, n) = ids.dims2()?;
        if eot.len() != b || eot.iter().any(|&e| e >= n) {
            candle_core::bail!(
                "text transformer: {} end-of-text positions for {b} sequences of {n} tokens",
                eot.len()
            );
        }
        let x = self.forward_tokens(ids)?;
        pool_at(&x, eot, ids.device())
    }
}

/// Row `pos[b]` of every sequence: `[B, N, C]` -> `[B, C]`.
pub fn pool_at(x: &Tensor, pos: &[usize], device: &Device) -> candle_core::Result<Tensor> {
    let (b, n, c) = x.dims3()?;
    let idx: Vec<u32> = pos
        .iter()
        .enumerate()
        .map(|(i, &p)| (i * n + p) as u32)
        .collect();
    // [B, N, C] -> [B·N, C] -> rows b·N + pos[b]
    x.reshape((b * n, c))?
        .index_select(&Tensor::new(idx.as_slice(), device)?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_core::ParamStore;

    fn tiny() -> TextTransformerConfig {
        TextTransformerConfig {
            vocab: 20,
            context: 6,
            width: 8,
            layers: 2,
            heads: 2,
            ..Default::default()
        }
    }

    /// Causality: a token's feature does not change when later tokens change.
    #[test]
    fn features_are_causal() {
        let ps = ParamStore::new(1, &Device::Cpu);
        let t = TextTransformer::new(&tiny(), ps.vb()).unwrap();
        let a = Tensor::new(&[[1u32, 5, 7, 2, 9]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[1u32, 5, 7, 11, 3]], &Device::Cpu).unwrap();
        let fa = t.forward_tokens(&a).unwrap().to_vec3::<f32>().unwrap();
        let fb = t.forward_tokens(&b).unwrap().to_vec3::<f32>().unwrap();
        for i in 0..3 {
            for k in 0..8 {
                assert!((fa[0][i][k] - fb[0][i][k]).abs() < 1e-6);
            }
        }
        assert!((0..8).any(|k| (fa[0][3][k] - fb[0][3][k]).abs() > 1e-4));
    }

    #[test]
    fn pooling_picks_the_end_positions_and_bad_input_is_refused() {
        let ps = ParamStore::new(2, &Device::Cpu);
        let t = TextTransformer::new(&tiny(), ps.vb()).unwrap();
        let ids = Tensor::new(&[[1u32, 4, 2, 0], [1, 3, 3, 2]], &Device::Cpu).unwrap();
        let all = t.forward_tokens(&ids).unwrap().to_vec3::<f32>().unwrap();
        let pooled = t.forward(&ids, &[2, 3]).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(pooled[0], all[0][2]);
        assert_eq!(pooled[1], all[1][3]);
        assert!(t.forward(&ids, &[4, 0]).is_err());
        let long = Tensor::zeros((1, 7), candle_core::DType::U32, &Device::Cpu).unwrap();
        assert!(t.forward_tokens(&long).is_err());
        let oov = Tensor::new(&[[25u32]], &Device::Cpu).unwrap();
        assert!(t.forward_tokens(&oov).is_err());
    }
}
