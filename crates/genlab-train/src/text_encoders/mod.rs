//! Pretrained, frozen text encoders by name: a tokenizer (genlab-data) paired with its
//! network (genlab-models), text in, one embedding per text out. Adding one: a file here
//! implementing [`TextEncoder`] and one [`TextEncoderEntry`] in [`TEXT_ENCODERS`].

pub mod minilm;

use candle_core::{Device, Tensor};
use genlab_core::{Error, Result};

/// Embeddings of a batch of texts.
#[derive(Debug, Clone)]
pub struct TextEmbeddings {
    /// `[B, dim]`, f32.
    pub embeddings: Tensor,
    /// Per text: whether its tokens were cut to the encoder's maximum length (warn).
    pub truncated: Vec<bool>,
}

/// Per-token states of a batch of texts, padded to one length: what cross-attention reads.
#[derive(Debug, Clone)]
pub struct TokenStates {
    /// `[B, L, dim]`, f32 (zeros at padding).
    pub states: Tensor,
    /// `[B, L]`, 1 for a real token, 0 for padding.
    pub mask: Tensor,
    /// Per text: whether it was cut to `L` tokens.
    pub truncated: Vec<bool>,
}

/// A frozen text encoder.
pub trait TextEncoder: Send + Sync {
    /// The last layer's state of every token of `texts` (special tokens included), cut or
    /// padded to exactly `len` tokens.
    fn token_states(&self, texts: &[&str], len: usize) -> Result<TokenStates>;
    /// Width of one embedding.
    fn dim(&self) -> usize;
    /// Longest input in tokens (special tokens included); longer texts are cut.
    fn max_tokens(&self) -> usize;
    /// Embeds `texts` (empty texts are valid).
    fn embed(&self, texts: &[&str]) -> Result<TextEmbeddings>;
}

/// One registered encoder.
pub struct TextEncoderEntry {
    pub name: &'static str,
    pub description: &'static str,
    /// Embedding width, known before loading (for checking a model's condition width).
    pub dim: usize,
    /// The `genlab data fetch` item that provides its files, if any.
    pub fetch: Option<&'static str>,
    /// Loads it from the weights folder of the data root.
    pub load: fn(&Device) -> Result<Box<dyn TextEncoder>>,
}

/// Every pretrained text encoder.
pub const TEXT_ENCODERS: &[TextEncoderEntry] = &[TextEncoderEntry {
    name: "minilm",
    description: "all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): BERT 6 layers, width \
                  384, WordPiece, mean pooling + L2 normalisation, 256 tokens",
    dim: minilm::DIM,
    fetch: Some("minilm"),
    load: |device| Ok(Box::new(minilm::MiniLm::load_default(device)?)),
}];

/// The entry called `name`; an unknown name lists the known ones.
pub fn find_text_encoder(name: &str) -> Result<&'static TextEncoderEntry> {
    TEXT_ENCODERS
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Error::unknown("text encoder", name, TEXT_ENCODERS.iter().map(|e| e.name)))
}

/// Loads the encoder called `name`.
pub fn open_text_encoder(name: &str, device: &Device) -> Result<Box<dyn TextEncoder>> {
    (find_text_encoder(name)?.load)(device)
}

/// Checks that encoder `name` gives embeddings of the width a model expects (`what` names
/// the model's input in the error).
pub fn check_text_encoder_width(name: &str, expected: usize, what: &str) -> Result<()> {
    let e = find_text_encoder(name)?;
    if e.dim != expected {
        return Err(Error::InvalidInput(format!(
            "text encoder {name} gives {}-wide embeddings, but {what} expects {expected}",
            e.dim
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_and_width_mismatches_are_clear_errors() {
        let err = find_text_encoder("gpt9").err().unwrap().to_string();
        assert!(err.contains("minilm"), "{err}");
        check_text_encoder_width("minilm", 384, "the model").unwrap();
        let err = check_text_encoder_width("minilm", 512, "the U-Net's context")
            .unwrap_err()
            .to_string();
        assert!(err.contains("384") && err.contains("512"), "{err}");
    }
}
