//! CLIP's tokenizer as Hugging Face transformers runs it (`CLIPTokenizer`, transformers 5,
//! backed by the `tokenizers` library), from the files of a `tokenizer/` folder:
//! `vocab.json`, `merges.txt`, and `tokenizer_config.json` / `special_tokens_map.json`
//! (special tokens, `model_max_length`). Stable Diffusion 1.x pads with `<|endoftext|>`,
//! 2.x with `!`.
//!
//! Papers: Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision" (CLIP, arXiv:2103.00020), Sec. 2.4; Sennrich, Haddow & Birch 2016
//! (arXiv:1508.07909) for BPE. The BPE itself is the one of [`super::clip_bpe`]
//! ([`BpeTable`]); only the text handling around it differs from open_clip's, and is
//! transformers' (checked id for id against `scripts/reference/hf_clip_fixture.py`'s
//! fixture, `crates/genlab-models/tests/hf_clip.rs`):
//!
//! 1. special tokens (bos, eos, unk, pad) are cut out of the text first: a token given as a
//!    plain string, or as an object with `"normalized": false`, is matched in the raw text;
//!    one with `"normalized": true` in the normalised text (so SD 2.x's `<|EndOfText|>` is
//!    the end token and SD 1.x's is text). Leftmost match first, the longest at a tie. A
//!    literal `!` is therefore SD 2.x's pad id, as in transformers;
//! 2. normalisation: NFC, every whitespace run -> one space, lowercase character by
//!    character (no ftfy, no HTML unescaping, no final-sigma rule: unlike open_clip);
//! 3. pre-tokenising with `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
//!    [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` (case-sensitive, whitespace dropped), then
//!    GPT-2's byte-level split of each piece (which only splits the literal
//!    `<|endoftext|>` pieces), then byte-level BPE with `</w>` on each word's last symbol;
//! 4. `encode_padded`: `[bos] + ids[..max_len - 2] + [eos]`, padded with the pad id to
//!    `model_max_length` (`padding="max_length", truncation=True`).

use std::collections::HashMap;
use std::path::Path;

use genlab_core::{Error, Result};
use unicode_normalization_alignments::UnicodeNormalization;

use super::clip_bpe::BpeTable;

/// transformers' CLIP pre-tokenizer regex.
const PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// GPT-2's byte-level split (`tokenizers`' ByteLevel pre-tokenizer) on text without
/// whitespace, which the pieces above never contain.
const BYTE_LEVEL_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+";
/// CLIPTokenizer's defaults when the folder names no special tokens.
const DEFAULT_BOS: &str = "<|startoftext|>";
const DEFAULT_EOS: &str = "<|endoftext|>";
/// `model_max_length` when the folder gives none (CLIP's context).
pub const DEFAULT_MAX_LENGTH: usize = 77;

/// One special token: its text, id, and whether it is matched after normalisation.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Special {
    content: String,
    id: u32,
    normalized: bool,
}

/// transformers' `CLIPTokenizer` read from a folder.
pub struct HfClipTokenizer {
    bpe: BpeTable,
    specials: Vec<Special>,
    bos: u32,
    eos: u32,
    pad: u32,
    max_len: usize,
    pattern: regex::Regex,
    byte_level: regex::Regex,
    whitespace: regex::Regex,
}

/// A special token's entry in `tokenizer_config.json` / `special_tokens_map.json`: a plain
/// string (normalized = false) or an AddedToken object.
fn special_entry(v: &serde_json::Value) -> Option<(String, bool)> {
    match v {
        serde_json::Value::String(s) => Some((s.clone(), false)),
        serde_json::Value::Object(o) => {
            let content = o.get("content")?.as_str()?.to_string();
            let normalized = o
                .get("normalized")
                .and_then(|n| n.as_bool())
                .unwrap_or(false);
            Some((content, normalized))
        }
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Data(format!("reading {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Data(format!("{} is not valid JSON: {e}", path.display())))
}

impl HfClipTokenizer {
    /// Reads `dir/vocab.json` and `dir/merges.txt` (both required), and the special tokens
    /// and `model_max_length` from `dir/tokenizer_config.json`, then
    /// `dir/special_tokens_map.json` (which wins), where present.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let need = |name: &str| -> Result<std::path::PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::Data(format!(
                    "CLIP tokenizer folder {}: {name} is missing (a transformers tokenizer \
                     folder has vocab.json and merges.txt, and tokenizer_config.json)",
                    dir.display()
                )))
            }
        };
        let vocab_path = need("vocab.json")?;
        let merges_path = need("merges.txt")?;
        let vocab: HashMap<String, u32> =
            serde_json::from_value(read_json(&vocab_path)?).map_err(|e| {
                Error::Data(format!(
                    "{}: not a map of token -> id: {e}",
                    vocab_path.display()
                ))
            })?;
        let merges_text = std::fs::read_to_string(&merges_path)
            .map_err(|e| Error::Data(format!("reading {}: {e}", merges_path.display())))?;
        let mut settings: HashMap<String, serde_json::Value> = HashMap::new();
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let p = dir.join(name);
            if p.is_file() {
                if let serde_json::Value::Object(o) = read_json(&p)? {
                    settings.extend(o);
                }
            }
        }
        let max_len = match settings.get("model_max_length") {
            None => DEFAULT_MAX_LENGTH,
            // transformers' "no limit" sentinel (int(1e30)): CLIP's context applies.
            Some(v) if v.as_f64().is_some_and(|x| x >= 1e15) => DEFAULT_MAX_LENGTH,
            Some(v) => v
                .as_u64()
                .filter(|n| (2..=1 << 20).contains(n))
                .ok_or_else(|| {
                    Error::Data(format!(
                        "{}: model_max_length {v} is not a length of at least 2",
                        dir.display()
                    ))
                })? as usize,
        };
        let token = |key: &str, default: &str| -> (String, bool) {
            settings
                .get(key)
                .and_then(special_entry)
                .unwrap_or((default.to_string(), false))
        };
        Self::from_parts(
            vocab,
            &merges_text,
            [
                token("bos_token", DEFAULT_BOS),
                token("eos_token", DEFAULT_EOS),
                token("unk_token", DEFAULT_EOS),
                token("pad_token", DEFAULT_EOS),
            ],
            max_len,
            &dir.display().to_string(),
        )
    }

    /// From the vocabulary, the text of `merges.txt`, the special tokens (bos, eos, unk, pad:
    /// content and "normalized") and the context; `what` names the source in messages.
    pub fn from_parts(
        vocab: HashMap<String, u32>,
        merges_text: &str,
        specials: [(String, bool); 4],
        max_len: usize,
        what: &str,
    ) -> Result<Self> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for (i, line) in merges_text.lines().enumerate() {
            if line.starts_with("#version") || line.is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => pairs.push((a, b)),
                _ => {
                    return Err(Error::Data(format!(
                        "{what}: line {} of merges.txt is not two symbols: {line:?}",
                        i + 1
                    )))
                }
            }
        }
        let bpe = BpeTable::new(&vocab, &pairs, &format!("{what}/merges.txt"))?;
        // Later entries win for one text (transformers registers pad after eos).
        let mut list: Vec<Special> = Vec::new();
        let mut ids = [0u32; 4];
        for (k, (content, normalized)) in specials.iter().enumerate() {
            let id = *vocab.get(content).ok_or_else(|| {
                Error::Data(format!(
                    "{what}: the special token {content:?} is not in vocab.json"
                ))
            })?;
            ids[k] = id;
            list.retain(|s| s.content != *content);
            list.push(Special {
                content: content.clone(),
                id,
                normalized: *normalized,
            });
        }
        let re = |p: &str| {
            regex::Regex::new(p).map_err(|e| Error::Data(format!("CLIP tokenizer regex: {e}")))
        };
        Ok(Self {
            bpe,
            specials: list,
            bos: ids[0],
            eos: ids[1],
            pad: ids[3],
            max_len,
            pattern: re(PATTERN)?,
            byte_level: re(BYTE_LEVEL_PATTERN)?,
            whitespace: re(r"\s+")?,
        })
    }

    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// `model_max_length` (77 for every CLIP).
    pub fn model_max_length(&self) -> usize {
        self.max_len
    }

    /// Number of ids of the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.bpe.len()
    }

    /// Splits `text` at the special tokens of one kind (`normalized` or not): special ids
    /// and the text between them, in order.
    fn split_specials<'a>(&self, text: &'a str, normalized: bool) -> Vec<Result<u32, &'a str>> {
        let mut out = Vec::new();
        let mut rest = text;
        let specials: Vec<&Special> = self
            .specials
            .iter()
            .filter(|s| s.normalized == normalized && !s.content.is_empty())
            .collect();
        loop {
            // The leftmost match; the longest among those starting there.
            let hit = specials
                .iter()
                .filter_map(|s| rest.find(&s.content).map(|p| (p, s)))
                .min_by_key(|(p, s)| (*p, std::cmp::Reverse(s.content.len())));
            match hit {
                Some((p, s)) => {
                    if p > 0 {
                        out.push(Err(&rest[..p]));
                    }
                    out.push(Ok(s.id));
                    rest = &rest[p + s.content.len()..];
                }
                None => {
                    if !rest.is_empty() {
                        out.push(Err(rest));
                    }
                    return out;
                }
            }
        }
    }

    /// transformers' normaliser: NFC, whitespace runs -> " ", per-character lowercase.
    fn normalize(&self, text: &str) -> String {
        let nfc: String = text.chars().nfc().map(|(c, _)| c).collect();
        self.whitespace
            .replace_all(&nfc, " ")
            .chars()
            .flat_map(char::to_lowercase)
            .collect()
    }

    /// Token ids of `text` without bos/eos, padding or truncation.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for part in self.split_specials(text, false) {
            let raw = match part {
                Ok(id) => {
                    ids.push(id);
                    continue;
                }
                Err(raw) => raw,
            };
            let norm = self.normalize(raw);
            for part in self.split_specials(&norm, true) {
                match part {
                    Ok(id) => ids.push(id),
                    Err(t) => {
                        for piece in self.pattern.find_iter(t) {
                            for word in self.byte_level.find_iter(piece.as_str()) {
                                ids.extend(self.bpe.encode_word(word.as_str()));
                            }
                        }
                    }
                }
            }
        }
        ids
    }

    /// `[bos] + encode(text)[..max_len - 2] + [eos]`, padded with the pad id to
    /// `model_max_length`: transformers' `tokenizer(text, padding="max_length",
    /// truncation=True, max_length=model_max_length)["input_ids"]`.
    pub fn encode_padded(&self, text: &str) -> Vec<u32> {
        let body = self.encode(text);
        let keep = body.len().min(self.max_len - 2);
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.bos);
        ids.extend_from_slice(&body[..keep]);
        ids.push(self.eos);
        ids.resize(self.max_len, self.pad);
        ids
    }

    /// Whether `text` loses tokens to truncation in [`Self::encode_padded`] (the caller
    /// should warn).
    pub fn truncates(&self, text: &str) -> bool {
        self.encode(text).len() + 2 > self.max_len
    }

    /// The ids' text (special tokens included as their text), `</w>` -> space, trimmed.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.bpe.decode(ids).trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::clip_bpe::bytes_to_unicode;

    /// A vocabulary of the 512 byte symbols, two merges and the two special tokens.
    fn tiny(pad: (&str, bool)) -> HfClipTokenizer {
        let mut vocab: Vec<String> = Vec::new();
        for (_, c) in bytes_to_unicode() {
            vocab.push(c.to_string());
        }
        for (_, c) in bytes_to_unicode() {
            vocab.push(format!("{c}</w>"));
        }
        vocab.extend(["hi</w>".into(), "hi".into()]);
        vocab.extend([DEFAULT_BOS.to_string(), DEFAULT_EOS.to_string()]);
        let map = vocab
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        HfClipTokenizer::from_parts(
            map,
            "#version: 0.2\nh i</w>\nh i\n",
            [
                (DEFAULT_BOS.into(), true),
                (DEFAULT_EOS.into(), true),
                (DEFAULT_EOS.into(), false),
                (pad.0.into(), pad.1),
            ],
            6,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn merges_pad_and_truncate() {
        let t = tiny((DEFAULT_EOS, false));
        assert_eq!((t.bos_id(), t.eos_id(), t.pad_id()), (514, 515, 515));
        assert_eq!(t.encode("HI"), vec![512]);
        assert_eq!(t.encode_padded("hi"), vec![514, 512, 515, 515, 515, 515]);
        // 5 words -> 4 kept (max_len 6 - bos - eos)
        assert_eq!(
            t.encode_padded("hi hi hi hi hi"),
            vec![514, 512, 512, 512, 512, 515]
        );
        assert!(t.truncates("hi hi hi hi hi"));
        assert_eq!(
            t.decode(&t.encode_padded("hi  HI")[..3]),
            "<|startoftext|>hi hi"
        );
    }

    #[test]
    fn plain_string_pad_is_matched_in_the_raw_text() {
        let t = tiny(("!", false));
        assert_eq!(t.pad_id(), 0);
        // "!" is the special pad token: cut out before BPE, so never "!</w>" (id 256)
        assert_eq!(t.encode("hi!"), vec![512, 0]);
        assert_eq!(tiny((DEFAULT_EOS, false)).encode("hi!"), vec![512, 256]);
    }

    #[test]
    fn missing_files_and_bad_merges_are_named() {
        let dir = std::env::temp_dir().join(format!("genlab-hfclip-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = HfClipTokenizer::load_dir(&dir).err().unwrap().to_string();
        assert!(e.contains("vocab.json is missing"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
        let vocab: HashMap<String, u32> = [("a".to_string(), 0)].into_iter().collect();
        let specials = [
            ("a".to_string(), false),
            ("a".to_string(), false),
            ("a".to_string(), false),
            ("a".to_string(), false),
        ];
        let e = HfClipTokenizer::from_parts(vocab, "a b c\n", specials, 77, "t")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 1 of merges.txt"), "{e}");
    }
}
