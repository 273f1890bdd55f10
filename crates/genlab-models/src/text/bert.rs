//! BERT text encoder with sentence-transformers' mean pooling, for pretrained frozen text
//! encoders such as all-MiniLM-L6-v2.
//!
//! Papers: Devlin et al. 2018, "BERT: Pre-training of Deep Bidirectional Transformers for
//! Language Understanding" (arXiv:1810.04805), section 3 (input = token + position + segment
//! embeddings, LayerNorm; post-LN transformer encoder with GELU); Reimers & Gurevych 2019,
//! "Sentence-BERT" (arXiv:1908.10084), section 3 (MEAN pooling of the output tokens); Wang
//! et al. 2020, "MiniLM" (arXiv:2002.10957) for the 6-layer, 384-wide model that
//! all-MiniLM-L6-v2 fine-tunes.
//!
//! The blocks are genlab-nn's [`TransformerBlock`] in its post-norm arrangement
//! (`x = LN1(x + Attn(x)); x = LN2(x + MLP(x))`, GELU with the exact erf), so there is one
//! attention and one LayerNorm in genlab. Upstream checkpoints load through a rename table
//! ([`hf_to_genlab`]): Hugging Face `BertModel` keys (`encoder.layer.N.attention.self.query`,
//! ...) become the block's names, with the separate query/key/value projections stacked into
//! the packed `qkv` (rows q, k, v).
//!
//! The attention mask hides padded keys from every query (BERT's extended attention mask,
//! [`key_padding_mask`]); mean pooling averages the real tokens only
//! (`sum(h · m) / max(sum(m), 1e-9)`, sentence-transformers' `Pooling`), and the optional L2
//! normalisation is `x / max(‖x‖, 1e-12)` (its `Normalize` module, torch's `F.normalize`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use genlab_core::{Error, Result};
use genlab_nn::transformer::{
    key_padding_mask, LayerNorm, MlpAct, TransformerBlock, TransformerBlockConfig,
};
use serde::{Deserialize, Serialize};

/// Shape of a BERT encoder (Hugging Face `BertConfig` names in the comments).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BertConfig {
    /// `vocab_size`: rows of the word embedding.
    pub vocab_size: usize,
    /// `hidden_size`.
    pub hidden: usize,
    /// `num_hidden_layers`.
    pub layers: usize,
    /// `num_attention_heads`.
    pub heads: usize,
    /// `intermediate_size`: the MLP width.
    pub intermediate: usize,
    /// `max_position_embeddings`: the longest input.
    pub max_positions: usize,
    /// `type_vocab_size`: segment embeddings.
    pub type_vocab: usize,
    /// `layer_norm_eps`.
    pub eps: f64,
    /// `hidden_act` ("gelu" in Hugging Face is the exact erf GELU).
    pub act: MlpAct,
}

impl Default for BertConfig {
    fn default() -> Self {
        Self::minilm_l6()
    }
}

impl BertConfig {
    /// all-MiniLM-L6-v2 (its config.json): 30,522 tokens, 6 layers, width 384, 12 heads, MLP
    /// 1,536, 512 positions, 2 segment types, eps 1e-12, GELU.
    pub fn minilm_l6() -> Self {
        Self {
            vocab_size: 30522,
            hidden: 384,
            layers: 6,
            heads: 12,
            intermediate: 1536,
            max_positions: 512,
            type_vocab: 2,
            eps: 1e-12,
            act: MlpAct::GeluErf,
        }
    }

    fn block(&self) -> TransformerBlockConfig {
        TransformerBlockConfig {
            dim: self.hidden,
            heads: self.heads,
            mlp_hidden: self.intermediate,
            pre_norm: false,
            act: self.act,
            eps: self.eps,
        }
    }
}

/// A BERT encoder: embeddings, LayerNorm, post-norm transformer blocks.
#[derive(Debug, Clone)]
pub struct BertEncoder {
    cfg: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_ln: LayerNorm,
    blocks: Vec<TransformerBlock>,
}

/// Hugging Face `BertModel` key -> genlab key, for one encoder layer's part.
const LAYER_RENAMES: &[(&str, &str)] = &[
    ("attention.output.dense", "attn.out"),
    ("attention.output.LayerNorm", "ln1"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
    ("output.LayerNorm", "ln2"),
];

/// Renames a Hugging Face `BertModel` state dict into the names [`BertEncoder::new`] reads:
/// embeddings keep their names; `encoder.layer.N.*` becomes `encoder.layer.N.{ln1, attn.qkv,
/// attn.out, ln2, mlp.fc1, mlp.fc2}` with `attention.self.{query,key,value}` stacked into
/// `attn.qkv` (`[3C, C]`, rows q, k, v). Unused keys (`pooler.*`, `embeddings.position_ids`)
/// are dropped. A missing key is an error naming it.
pub fn hf_to_genlab(
    map: &HashMap<String, Tensor>,
    cfg: &BertConfig,
) -> Result<HashMap<String, Tensor>> {
    let get = |k: &str| -> Result<Tensor> {
        map.get(k)
            .cloned()
            .ok_or_else(|| Error::Checkpoint(format!("BERT checkpoint: no tensor {k}")))
    };
    let mut out = HashMap::new();
    for name in [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ] {
        out.insert(name.to_string(), get(name)?);
    }
    for l in 0..cfg.layers {
        let hf = format!("encoder.layer.{l}");
        for p in ["weight", "bias"] {
            let parts = ["query", "key", "value"]
                .iter()
                .map(|q| get(&format!("{hf}.attention.self.{q}.{p}")))
                .collect::<Result<Vec<_>>>()?;
            // three [C, C] (or [C]) -> [3C, C] (or [3C]): rows q, then k, then v
            out.insert(
                format!("{hf}.attn.qkv.{p}"),
                Tensor::cat(&parts, 0).map_err(Error::from)?,
            );
            for (from, to) in LAYER_RENAMES {
                out.insert(format!("{hf}.{to}.{p}"), get(&format!("{hf}.{from}.{p}"))?);
            }
        }
    }
    Ok(out)
}

impl BertEncoder {
    /// Builds the encoder under `vb` with genlab's names (see [`hf_to_genlab`]); fresh
    /// weights when `vb` is a `VarMap`, loaded ones when it holds a checkpoint.
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.layers == 0 || cfg.hidden == 0 || cfg.vocab_size == 0 || cfg.max_positions == 0 {
            return Err(Error::Config(format!(
                "BERT: layers, width, vocabulary and positions must be positive: {cfg:?}"
            )));
        }
        let e = vb.pp("embeddings");
        let init = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let word =
            e.get_with_hints((cfg.vocab_size, cfg.hidden), "word_embeddings.weight", init)?;
        let position = e.get_with_hints(
            (cfg.max_positions, cfg.hidden),
            "position_embeddings.weight",
            init,
        )?;
        let token_type = e.get_with_hints(
            (cfg.type_vocab, cfg.hidden),
            "token_type_embeddings.weight",
            init,
        )?;
        let emb_ln = LayerNorm::new(cfg.hidden, cfg.eps, e.pp("LayerNorm"))?;
        let block = cfg.block();
        let blocks = (0..cfg.layers)
            .map(|l| TransformerBlock::new(&block, vb.pp(format!("encoder.layer.{l}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            word,
            position,
            token_type,
            emb_ln,
            blocks,
        })
    }

    /// Loads a Hugging Face `BertModel` safetensors file (e.g. all-MiniLM-L6-v2's
    /// `model.safetensors`) with the shape `cfg`.
    pub fn load_hf(cfg: &BertConfig, path: &Path, device: &Device) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Data(format!(
                "BERT weights not found: {}",
                path.display()
            )));
        }
        let map = candle_core::safetensors::load(path, device).map_err(|e| {
            Error::Checkpoint(format!(
                "{} is not a valid safetensors file: {e}",
                path.display()
            ))
        })?;
        let renamed = hf_to_genlab(&map, cfg)
            .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
        let vb = VarBuilder::from_tensors(renamed, DType::F32, device);
        Self::new(cfg, vb).map_err(|e| {
            Error::Checkpoint(format!(
                "{} does not fit the BERT shape {cfg:?}: {e}",
                path.display()
            ))
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Token states `[B, N, C]` of `ids [B, N]` (u32) with `mask [B, N]` (1 = token,
    /// 0 = padding; f32). Segment ids are all 0 (single sentences).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, n) = ids.dims2()?;
        if n > self.cfg.max_positions {
            return Err(Error::InvalidInput(format!(
                "BERT: {n} tokens, the model has {} positions",
                self.cfg.max_positions
            )));
        }
        if mask.dims2()? != (b, n) {
            return Err(Error::InvalidInput(format!(
                "BERT: mask shape {:?}, expected [{b}, {n}]",
                mask.dims()
            )));
        }
        let c = self.cfg.hidden;
        // [B, N] -> [B·N] -> rows of the table [B·N, C] -> [B, N, C]
        let words = self
            .word
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, n, c))?;
        // [N, C] -> [1, N, C], broadcast over the batch; segment 0 for every token
        let pos = self.position.narrow(0, 0, n)?.unsqueeze(0)?;
        let seg = self.token_type.narrow(0, 0, 1)?.unsqueeze(0)?;
        let x = words.broadcast_add(&pos)?.broadcast_add(&seg)?;
        let mut x = self.emb_ln.forward(&x)?;
        // [B, 1, 1, N]: padded keys hidden from every query
        let additive = key_padding_mask(mask)?;
        for block in &self.blocks {
            x = block.forward(&x, Some(&additive))?;
        }
        Ok(x)
    }
}

/// Mean of the token states over the real tokens: `h [B, N, C]`, `mask [B, N]` -> `[B, C]`
/// (sentence-transformers' mean pooling; an all-padding row gives zeros).
pub fn mean_pool(h: &Tensor, mask: &Tensor) -> Result<Tensor> {
    // [B, N] -> [B, N, 1]
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let sum = h.broadcast_mul(&m)?.sum(1)?; // [B, C]
    let count = m.sum(1)?.clamp(1e-9, f64::MAX)?; // [B, 1]
    Ok(sum.broadcast_div(&count)?)
}

/// Rows divided by their L2 norm (at least 1e-12), as torch's `F.normalize(x, dim=1)`.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 arithmetic against an f64 loop.
    const TOL_POOL: f32 = 1e-6;

    #[test]
    fn mean_pool_ignores_padding_and_normalize_gives_unit_rows() {
        let dev = Device::Cpu;
        let h = Tensor::from_vec(
            vec![1f32, 2., 3., 4., 100., 100., -1., 0., 1., 2., 3., 5.],
            (2, 3, 2),
            &dev,
        )
        .unwrap();
        let m = Tensor::from_vec(vec![1f32, 1., 0., 1., 1., 1.], (2, 3), &dev).unwrap();
        let p = mean_pool(&h, &m).unwrap().to_vec2::<f32>().unwrap();
        let want = [
            [2.0, 3.0],
            [(-1.0 + 1.0 + 3.0) / 3.0, (0.0 + 2.0 + 5.0) / 3.0],
        ];
        for (r, w) in p.iter().zip(want) {
            for (a, b) in r.iter().zip(w) {
                assert!((a - b).abs() < TOL_POOL, "{a} vs {b}");
            }
        }
        let z = Tensor::zeros((1, 3), DType::F32, &dev).unwrap();
        assert_eq!(
            mean_pool(&h.narrow(0, 0, 1).unwrap(), &z)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap(),
            vec![vec![0.0, 0.0]]
        );
        let n = l2_normalize(&Tensor::new(&[[3f32, 4.], [0., 0.]], &dev).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(n, vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
    }

    /// The f32 encoder against a plain f64 BERT written from the paper's equations.
    const TOL_REFERENCE: f64 = 1e-4;

    /// erf with absolute error < 1.2e-7 (Numerical Recipes' `erfcc` Chebyshev fit).
    fn erf(x: f64) -> f64 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let poly = -z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
        let erfc = t * poly.exp();
        if x >= 0.0 {
            1.0 - erfc
        } else {
            erfc - 1.0
        }
    }

    struct RefBert<'a> {
        w: &'a HashMap<String, (Vec<f64>, Vec<usize>)>,
        eps: f64,
        heads: usize,
    }

    impl RefBert<'_> {
        fn t(&self, k: &str) -> &[f64] {
            &self.w[k].0
        }
        /// y = x Wᵀ + b for one row.
        fn linear(&self, p: &str, x: &[f64]) -> Vec<f64> {
            let (w, shape) = &self.w[&format!("{p}.weight")];
            let b = self.t(&format!("{p}.bias"));
            (0..shape[0])
                .map(|o| {
                    b[o] + (0..shape[1])
                        .map(|i| w[o * shape[1] + i] * x[i])
                        .sum::<f64>()
                })
                .collect()
        }
        fn ln(&self, p: &str, x: &[f64]) -> Vec<f64> {
            let n = x.len() as f64;
            let mean = x.iter().sum::<f64>() / n;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let (g, b) = (self.t(&format!("{p}.weight")), self.t(&format!("{p}.bias")));
            x.iter()
                .enumerate()
                .map(|(i, v)| (v - mean) / (var + self.eps).sqrt() * g[i] + b[i])
                .collect()
        }
        fn forward(&self, ids: &[u32], valid: &[bool], layers: usize) -> Vec<Vec<f64>> {
            let c = self.w["embeddings.LayerNorm.weight"].0.len();
            let mut x: Vec<Vec<f64>> = ids
                .iter()
                .enumerate()
                .map(|(p, &id)| {
                    let e: Vec<f64> = (0..c)
                        .map(|j| {
                            self.t("embeddings.word_embeddings.weight")[id as usize * c + j]
                                + self.t("embeddings.position_embeddings.weight")[p * c + j]
                                + self.t("embeddings.token_type_embeddings.weight")[j]
                        })
                        .collect();
                    self.ln("embeddings.LayerNorm", &e)
                })
                .collect();
            let d = c / self.heads;
            for l in 0..layers {
                let p = format!("encoder.layer.{l}");
                let q: Vec<_> = x
                    .iter()
                    .map(|r| self.linear(&format!("{p}.attention.self.query"), r))
                    .collect();
                let k: Vec<_> = x
                    .iter()
                    .map(|r| self.linear(&format!("{p}.attention.self.key"), r))
                    .collect();
                let v: Vec<_> = x
                    .iter()
                    .map(|r| self.linear(&format!("{p}.attention.self.value"), r))
                    .collect();
                let n = x.len();
                let mut ctx = vec![vec![0.0; c]; n];
                for h in 0..self.heads {
                    for i in 0..n {
                        let s: Vec<f64> = (0..n)
                            .map(|j| {
                                if !valid[j] {
                                    return f64::NEG_INFINITY;
                                }
                                (0..d)
                                    .map(|e| q[i][h * d + e] * k[j][h * d + e])
                                    .sum::<f64>()
                                    / (d as f64).sqrt()
                            })
                            .collect();
                        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                        for j in 0..n {
                            let a = (s[j] - m).exp() / z;
                            for e in 0..d {
                                ctx[i][h * d + e] += a * v[j][h * d + e];
                            }
                        }
                    }
                }
                x = (0..n)
                    .map(|i| {
                        let o = self.linear(&format!("{p}.attention.output.dense"), &ctx[i]);
                        let r: Vec<f64> = o.iter().zip(&x[i]).map(|(a, b)| a + b).collect();
                        let a = self.ln(&format!("{p}.attention.output.LayerNorm"), &r);
                        let hdn: Vec<f64> = self
                            .linear(&format!("{p}.intermediate.dense"), &a)
                            .iter()
                            .map(|&u| 0.5 * u * (1.0 + erf(u / 2f64.sqrt())))
                            .collect();
                        let o2 = self.linear(&format!("{p}.output.dense"), &hdn);
                        let r2: Vec<f64> = o2.iter().zip(&a).map(|(a, b)| a + b).collect();
                        self.ln(&format!("{p}.output.LayerNorm"), &r2)
                    })
                    .collect();
            }
            x
        }
    }

    #[test]
    fn hugging_face_keys_load_and_match_a_plain_f64_bert() {
        let cfg = BertConfig {
            vocab_size: 13,
            hidden: 8,
            layers: 2,
            heads: 2,
            intermediate: 12,
            max_positions: 7,
            type_vocab: 2,
            eps: 1e-12,
            act: MlpAct::GeluErf,
        };
        let (c, m) = (cfg.hidden, cfg.intermediate);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            (
                "embeddings.word_embeddings.weight".into(),
                vec![cfg.vocab_size, c],
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![cfg.max_positions, c],
            ),
            ("embeddings.token_type_embeddings.weight".into(), vec![2, c]),
            ("embeddings.LayerNorm.weight".into(), vec![c]),
            ("embeddings.LayerNorm.bias".into(), vec![c]),
            ("pooler.dense.weight".into(), vec![c, c]),
        ];
        for l in 0..cfg.layers {
            let p = format!("encoder.layer.{l}");
            for (name, o, i) in [
                ("attention.self.query", c, c),
                ("attention.self.key", c, c),
                ("attention.self.value", c, c),
                ("attention.output.dense", c, c),
                ("intermediate.dense", m, c),
                ("output.dense", c, m),
            ] {
                shapes.push((format!("{p}.{name}.weight"), vec![o, i]));
                shapes.push((format!("{p}.{name}.bias"), vec![o]));
            }
            for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
                shapes.push((format!("{p}.{name}.weight"), vec![c]));
                shapes.push((format!("{p}.{name}.bias"), vec![c]));
            }
        }
        let mut rng = genlab_core::Rng::new(7);
        let dev = Device::Cpu;
        let mut reference = HashMap::new();
        let mut tensors = HashMap::new();
        for (k, shape) in shapes {
            let n: usize = shape.iter().product();
            let is_gain = k.ends_with("LayerNorm.weight");
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    let u = rng.normal() as f32 * 0.5;
                    if is_gain {
                        1.0 + 0.2 * u
                    } else {
                        u
                    }
                })
                .collect();
            reference.insert(
                k.clone(),
                (v.iter().map(|&x| x as f64).collect(), shape.clone()),
            );
            tensors.insert(k, Tensor::from_vec(v, shape, &dev).unwrap());
        }
        let renamed = hf_to_genlab(&tensors, &cfg).unwrap();
        let bert =
            BertEncoder::new(&cfg, VarBuilder::from_tensors(renamed, DType::F32, &dev)).unwrap();
        let r = RefBert {
            w: &reference,
            eps: cfg.eps,
            heads: cfg.heads,
        };
        // Two rows, the second padded after 3 tokens: padded keys must not matter.
        let ids = [[1u32, 5, 7, 12, 3, 2], [4, 9, 0, 0, 0, 0]];
        let valid = [[true; 6], [true, true, true, false, false, false]];
        let id_t = Tensor::new(&ids, &dev).unwrap();
        let mask_t =
            Tensor::new(&valid.map(|r| r.map(|v| if v { 1f32 } else { 0.0 })), &dev).unwrap();
        let got = bert
            .forward(&id_t, &mask_t)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        let mut worst = 0f64;
        for b in 0..2 {
            let want = r.forward(&ids[b], &valid[b], cfg.layers);
            for (i, row) in want.iter().enumerate() {
                if !valid[b][i] {
                    continue;
                }
                for (a, w) in got[b][i].iter().zip(row) {
                    worst = worst.max((*a as f64 - w).abs());
                }
            }
        }
        assert!(worst < TOL_REFERENCE, "max |diff| {worst}");
        // A missing key is named.
        let mut short = tensors.clone();
        short.remove("encoder.layer.1.attention.self.key.bias");
        let err = hf_to_genlab(&short, &cfg).unwrap_err().to_string();
        assert!(
            err.contains("encoder.layer.1.attention.self.key.bias"),
            "{err}"
        );
    }
}
