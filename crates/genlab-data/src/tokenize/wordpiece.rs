//! WordPiece tokenization of BERT-style text encoders, configured by a HuggingFace
//! `tokenizer.json`.
//!
//! Papers: Wu et al. 2016, "Google's Neural Machine Translation System" (WordPiece,
//! arXiv:1609.08144); Devlin et al. 2018, "BERT" (arXiv:1810.04805), section 3 and appendix A
//! (the basic tokenizer: text cleaning, CJK characters as words, lower-casing and accent
//! stripping, punctuation splitting; then greedy longest-match-first WordPiece).
//!
//! The pipeline follows HuggingFace `tokenizers` 0.23 (the library that reads these files),
//! checked id for id against a fixture written by `scripts/reference/wordpiece_fixture.py`:
//!
//! 1. added tokens (`[CLS]`, `[SEP]`, `[PAD]`, `[MASK]`, `[UNK]`, ...) are matched in the raw
//!    text first, longest first, and become their ids;
//! 2. `BertNormalizer` on the rest: `clean_text` (drop NUL, U+FFFD and control characters,
//!    whitespace -> space), `handle_chinese_chars` (spaces around CJK ideographs),
//!    `strip_accents` (NFD, then drop non-spacing marks; `null` means "as `lowercase`"),
//!    `lowercase` (per character);
//! 3. `BertPreTokenizer`: split on whitespace (removed), then on punctuation (ASCII punctuation
//!    or Unicode P*; each mark is its own word);
//! 4. WordPiece: greedy longest-match-first, continuation pieces prefixed (`##`), a word
//!    longer than `max_input_chars_per_word` characters or with no segmentation is `[UNK]`;
//! 5. the post-processor's single-sequence template (`TemplateProcessing`, or
//!    `BertProcessing`): `[CLS] ... [SEP]`, with type ids;
//! 6. truncation to `max_len` ids including the special tokens (the first ones kept), and
//!    batch padding to the longest with the attention mask.
//!
//! Other kinds of `tokenizer.json` (a BPE or Unigram model, another normalizer or
//! pre-tokenizer) are refused with a clear error rather than tokenized differently.

use std::collections::HashMap;
use std::path::Path;

use genlab_core::{Error, Result};
use serde_json::Value;
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

/// `BertNormalizer` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BertNormalizer {
    pub clean_text: bool,
    pub handle_chinese_chars: bool,
    /// `None`: strip accents when lower-casing (BERT's uncased models).
    pub strip_accents: Option<bool>,
    pub lowercase: bool,
}

/// One tokenized text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordPieceEncoding {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Whether ids were cut to fit the maximum length (the caller should warn).
    pub truncated: bool,
}

/// An item of the single-sequence template.
#[derive(Debug, Clone)]
enum Piece {
    Special(Vec<u32>, u32),
    Sequence(u32),
}

/// A WordPiece tokenizer read from a `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct WordPieceTokenizer {
    vocab: HashMap<String, u32>,
    id_to_token: Vec<String>,
    unk_id: u32,
    prefix: String,
    max_input_chars_per_word: usize,
    normalizer: Option<BertNormalizer>,
    /// Added tokens (content, id), longest first.
    added: Vec<(String, u32)>,
    template: Vec<Piece>,
    /// The file's own truncation length, if it sets one.
    default_max_len: Option<usize>,
    pad_id: u32,
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::Data(format!("tokenizer.json: {what}"))
}

fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_bert_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

fn is_cjk(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

impl BertNormalizer {
    /// The normalized text.
    pub fn normalize(&self, text: &str) -> String {
        let mut s: String = if self.clean_text {
            text.chars()
                .filter(|&c| !(c == '\0' || c == '\u{fffd}' || is_bert_control(c)))
                .map(|c| if is_bert_whitespace(c) { ' ' } else { c })
                .collect()
        } else {
            text.to_string()
        };
        if self.handle_chinese_chars {
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                if is_cjk(c) {
                    out.push(' ');
                    out.push(c);
                    out.push(' ');
                } else {
                    out.push(c);
                }
            }
            s = out;
        }
        if self.strip_accents.unwrap_or(self.lowercase) {
            s = s
                .nfd()
                .map(|(c, _)| c)
                .filter(|c| !c.is_mark_nonspacing())
                .collect();
        }
        if self.lowercase {
            // Per character, as `tokenizers` does (no final-sigma context).
            s = s.chars().flat_map(char::to_lowercase).collect();
        }
        s
    }
}

/// `BertPreTokenizer`: words split on whitespace, each punctuation mark its own word.
pub fn bert_pre_tokenize(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for chunk in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        let mut start = 0;
        for (i, c) in chunk.char_indices() {
            if is_bert_punctuation(c) {
                if start < i {
                    words.push(&chunk[start..i]);
                }
                words.push(&chunk[i..i + c.len_utf8()]);
                start = i + c.len_utf8();
            }
        }
        if start < chunk.len() {
            words.push(&chunk[start..]);
        }
    }
    words
}

fn get_bool(v: &Value, key: &str, default: bool) -> Result<bool> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(format!("{key} must be true or false, not {other}"))),
    }
}

fn get_type(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

impl WordPieceTokenizer {
    /// Reads `path` (a HuggingFace `tokenizer.json` with a WordPiece model).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        Self::from_json_str(&text).map_err(|e| Error::Data(format!("{}: {e}", path.display())))
    }

    /// Parses the text of a `tokenizer.json`.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let root: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let model = root
            .get("model")
            .ok_or_else(|| bad("no \"model\": is this a HuggingFace tokenizer.json?"))?;
        match get_type(model) {
            Some("WordPiece") => {}
            other => {
                return Err(bad(format!(
                    "the model is {}, not WordPiece (only BERT-style WordPiece files are read)",
                    other.unwrap_or("untyped")
                )))
            }
        }
        let vocab_obj = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("the WordPiece model has no vocab object"))?;
        let mut vocab = HashMap::with_capacity(vocab_obj.len());
        for (token, id) in vocab_obj {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| bad(format!("vocab id of {token:?} is not an integer: {id}")))?;
            vocab.insert(token.clone(), id);
        }
        let unk = model
            .get("unk_token")
            .and_then(Value::as_str)
            .unwrap_or("[UNK]");
        let unk_id = *vocab
            .get(unk)
            .ok_or_else(|| bad(format!("the unknown token {unk:?} is not in the vocab")))?;
        let prefix = model
            .get("continuing_subword_prefix")
            .and_then(Value::as_str)
            .unwrap_or("##")
            .to_string();
        let max_input_chars_per_word = model
            .get("max_input_chars_per_word")
            .and_then(Value::as_u64)
            .unwrap_or(100) as usize;

        let normalizer = match root.get("normalizer") {
            None | Some(Value::Null) => None,
            Some(n) if get_type(n) == Some("BertNormalizer") => Some(BertNormalizer {
                clean_text: get_bool(n, "clean_text", true)?,
                handle_chinese_chars: get_bool(n, "handle_chinese_chars", true)?,
                strip_accents: match n.get("strip_accents") {
                    None | Some(Value::Null) => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(o) => {
                        return Err(bad(format!("strip_accents must be a bool or null: {o}")))
                    }
                },
                lowercase: get_bool(n, "lowercase", true)?,
            }),
            Some(n) => {
                return Err(bad(format!(
                    "normalizer {} is not supported (only BertNormalizer)",
                    get_type(n).unwrap_or("untyped")
                )))
            }
        };
        match root.get("pre_tokenizer") {
            Some(p) if get_type(p) == Some("BertPreTokenizer") => {}
            Some(p) => {
                return Err(bad(format!(
                    "pre-tokenizer {} is not supported (only BertPreTokenizer)",
                    get_type(p).unwrap_or("null")
                )))
            }
            None => return Err(bad("no pre_tokenizer (a BertPreTokenizer is expected)")),
        }

        let mut added = Vec::new();
        if let Some(list) = root.get("added_tokens").and_then(Value::as_array) {
            for t in list {
                let content = t.get("content").and_then(Value::as_str);
                let id = t
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok());
                match (content, id) {
                    (Some(c), Some(i)) if !c.is_empty() => added.push((c.to_string(), i)),
                    _ => return Err(bad(format!("an added token without content or id: {t}"))),
                }
            }
        }
        added.sort_by_key(|t| std::cmp::Reverse(t.0.len()));

        let special_ids = |name: &str| -> Result<Vec<u32>> {
            vocab
                .get(name)
                .copied()
                .or_else(|| added.iter().find(|(c, _)| c == name).map(|(_, i)| *i))
                .map(|i| vec![i])
                .ok_or_else(|| {
                    bad(format!(
                        "special token {name:?} is in neither vocab nor added tokens"
                    ))
                })
        };
        let template = match root.get("post_processor") {
            None | Some(Value::Null) => vec![Piece::Sequence(0)],
            Some(p) if get_type(p) == Some("TemplateProcessing") => {
                let specials = p.get("special_tokens").and_then(Value::as_object);
                let items = p
                    .get("single")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("TemplateProcessing without a single template"))?;
                let mut out = Vec::new();
                for item in items {
                    if let Some(s) = item.get("SpecialToken") {
                        let name = s.get("id").and_then(Value::as_str).unwrap_or("");
                        let type_id = s.get("type_id").and_then(Value::as_u64).unwrap_or(0) as u32;
                        let ids = match specials.and_then(|m| m.get(name)) {
                            Some(sp) => sp
                                .get("ids")
                                .and_then(Value::as_array)
                                .map(|a| {
                                    a.iter()
                                        .filter_map(|x| x.as_u64().map(|x| x as u32))
                                        .collect()
                                })
                                .ok_or_else(|| bad(format!("special token {name:?} has no ids")))?,
                            None => special_ids(name)?,
                        };
                        out.push(Piece::Special(ids, type_id));
                    } else if let Some(s) = item.get("Sequence") {
                        let type_id = s.get("type_id").and_then(Value::as_u64).unwrap_or(0) as u32;
                        out.push(Piece::Sequence(type_id));
                    } else {
                        return Err(bad(format!("unknown template item {item}")));
                    }
                }
                out
            }
            Some(p) if get_type(p) == Some("BertProcessing") => {
                let id_of = |key: &str| -> Result<u32> {
                    p.get(key)
                        .and_then(Value::as_array)
                        .and_then(|a| a.get(1))
                        .and_then(Value::as_u64)
                        .map(|i| i as u32)
                        .ok_or_else(|| bad(format!("BertProcessing without {key}")))
                };
                vec![
                    Piece::Special(vec![id_of("cls")?], 0),
                    Piece::Sequence(0),
                    Piece::Special(vec![id_of("sep")?], 0),
                ]
            }
            Some(p) => {
                return Err(bad(format!(
                    "post-processor {} is not supported (TemplateProcessing or BertProcessing)",
                    get_type(p).unwrap_or("untyped")
                )))
            }
        };
        let default_max_len = root
            .get("truncation")
            .and_then(|t| t.get("max_length"))
            .and_then(Value::as_u64)
            .map(|m| m as usize);
        let pad_id = root
            .get("padding")
            .and_then(|p| p.get("pad_id"))
            .and_then(Value::as_u64)
            .map(|i| i as u32)
            .or_else(|| vocab.get("[PAD]").copied())
            .unwrap_or(0);

        let size = vocab
            .values()
            .chain(added.iter().map(|(_, i)| i))
            .max()
            .map_or(0, |m| *m as usize + 1);
        let mut id_to_token = vec![String::new(); size];
        for (t, &i) in &vocab {
            id_to_token[i as usize] = t.clone();
        }
        for (t, i) in &added {
            id_to_token[*i as usize] = t.clone();
        }
        Ok(Self {
            vocab,
            id_to_token,
            unk_id,
            prefix,
            max_input_chars_per_word,
            normalizer,
            added,
            template,
            default_max_len,
            pad_id,
        })
    }

    /// Number of ids (the embedding table needs at least this many rows).
    pub fn vocab_size(&self) -> usize {
        self.id_to_token.len()
    }

    /// The file's own truncation length, if it sets one.
    pub fn default_max_len(&self) -> Option<usize> {
        self.default_max_len
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The normalizer the file configures.
    pub fn normalizer(&self) -> Option<BertNormalizer> {
        self.normalizer
    }

    /// WordPiece of one pre-tokenized word.
    fn word_pieces(&self, word: &str, out: &mut Vec<u32>) {
        if word.chars().count() > self.max_input_chars_per_word {
            out.push(self.unk_id);
            return;
        }
        let first = out.len();
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                let piece = &word[start..end];
                let id = if start > 0 {
                    self.vocab.get(&format!("{}{piece}", self.prefix))
                } else {
                    self.vocab.get(piece)
                };
                if let Some(&id) = id {
                    found = Some(id);
                    break;
                }
                end -= piece.chars().last().map_or(1, char::len_utf8);
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(first);
                    out.push(self.unk_id);
                    return;
                }
            }
        }
    }

    /// Ids of a text segment without added tokens.
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        let normalized = match &self.normalizer {
            Some(n) => n.normalize(text),
            None => text.to_string(),
        };
        for word in bert_pre_tokenize(&normalized) {
            self.word_pieces(word, out);
        }
    }

    /// Token ids of `text` without the template's special tokens and without truncation.
    pub fn encode_ids(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut plain_start = 0;
        let mut i = 0;
        while i < text.len() {
            let hit = self
                .added
                .iter()
                .find(|(content, _)| text[i..].starts_with(content.as_str()));
            if let Some((content, id)) = hit {
                self.encode_plain(&text[plain_start..i], &mut out);
                out.push(*id);
                i += content.len();
                plain_start = i;
            } else {
                i += text[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
        self.encode_plain(&text[plain_start..], &mut out);
        out
    }

    /// `text` with the template's special tokens (`[CLS] ... [SEP]`), cut to `max_len` ids
    /// (special tokens included; `None`: the file's own truncation, if any). A `max_len` too
    /// small for the special tokens is an error.
    pub fn encode(&self, text: &str, max_len: Option<usize>) -> Result<WordPieceEncoding> {
        let n_special: usize = self
            .template
            .iter()
            .map(|p| match p {
                Piece::Special(ids, _) => ids.len(),
                Piece::Sequence(_) => 0,
            })
            .sum();
        let max_len = max_len.or(self.default_max_len);
        let mut body = self.encode_ids(text);
        let mut truncated = false;
        if let Some(m) = max_len {
            if m <= n_special {
                return Err(Error::setting(
                    "max_len",
                    format!("{m} tokens leave no room for text after {n_special} special tokens"),
                ));
            }
            if body.len() + n_special > m {
                body.truncate(m - n_special);
                truncated = true;
            }
        }
        let mut ids = Vec::with_capacity(body.len() + n_special);
        let mut type_ids = Vec::with_capacity(body.len() + n_special);
        for p in &self.template {
            match p {
                Piece::Special(s, t) => {
                    ids.extend_from_slice(s);
                    type_ids.extend(std::iter::repeat_n(*t, s.len()));
                }
                Piece::Sequence(t) => {
                    ids.extend_from_slice(&body);
                    type_ids.extend(std::iter::repeat_n(*t, body.len()));
                }
            }
        }
        let attention_mask = vec![1; ids.len()];
        Ok(WordPieceEncoding {
            ids,
            type_ids,
            attention_mask,
            truncated,
        })
    }

    /// [`Self::encode`] of each text, right-padded with the pad id to the longest (mask 0).
    pub fn encode_batch(
        &self,
        texts: &[&str],
        max_len: Option<usize>,
    ) -> Result<Vec<WordPieceEncoding>> {
        let mut out: Vec<WordPieceEncoding> = texts
            .iter()
            .map(|t| self.encode(t, max_len))
            .collect::<Result<_>>()?;
        let longest = out.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        for e in &mut out {
            let n = longest - e.ids.len();
            e.ids.extend(std::iter::repeat_n(self.pad_id, n));
            e.type_ids.extend(std::iter::repeat_n(0, n));
            e.attention_mask.extend(std::iter::repeat_n(0, n));
        }
        Ok(out)
    }

    /// The tokens of `ids` joined as the WordPiece decoder joins them (continuations glued,
    /// `tokenizers`' cleanup of spaces before punctuation), added tokens skipped when
    /// `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut out = String::new();
        for &id in ids {
            if skip_special && self.added.iter().any(|(_, i)| *i == id) {
                continue;
            }
            let Some(tok) = self.id_to_token.get(id as usize) else {
                continue;
            };
            match tok.strip_prefix(self.prefix.as_str()) {
                Some(rest) if !out.is_empty() => out.push_str(rest),
                _ => {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(tok);
                }
            }
        }
        out.replace(" .", ".")
            .replace(" ?", "?")
            .replace(" !", "!")
            .replace(" ,", ",")
            .replace(" ' ", "'")
            .replace(" n't", "n't")
            .replace(" 'm", "'m")
            .replace(" do not", " don't")
            .replace(" 's", "'s")
            .replace(" 've", "'ve")
            .replace(" 're", "'re")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(model_type: &str, normalizer: &str) -> String {
        format!(
            r###"{{"added_tokens":[{{"id":0,"content":"[PAD]"}},{{"id":1,"content":"[UNK]"}},
            {{"id":2,"content":"[CLS]"}},{{"id":3,"content":"[SEP]"}}],
            "normalizer":{normalizer},"pre_tokenizer":{{"type":"BertPreTokenizer"}},
            "post_processor":{{"type":"BertProcessing","sep":["[SEP]",3],"cls":["[CLS]",2]}},
            "model":{{"type":"{model_type}","unk_token":"[UNK]","continuing_subword_prefix":"##",
            "max_input_chars_per_word":12,"vocab":{{"[PAD]":0,"[UNK]":1,"[CLS]":2,"[SEP]":3,
            "hand":4,"##writ":5,"##ten":6,"seven":7,",":8,"cafe":9,"!":10,"##s":11}}}}}}"###
        )
    }

    const LOWER: &str = r#"{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true}"#;

    #[test]
    fn greedy_longest_match_with_continuations_unk_and_template() {
        let t = WordPieceTokenizer::from_json_str(&tiny("WordPiece", LOWER)).unwrap();
        let e = t.encode("Handwritten SEVENS, Café!", None).unwrap();
        assert_eq!(e.ids, vec![2, 4, 5, 6, 7, 11, 8, 9, 10, 3]);
        assert_eq!(e.attention_mask, vec![1; 10]);
        // No segmentation -> one [UNK] for the whole word; too long -> [UNK].
        assert_eq!(t.encode_ids("handx handwrittenhand"), vec![1, 1]);
        // Added tokens in the raw text.
        assert_eq!(t.encode_ids("seven[SEP]hand"), vec![7, 3, 4]);
        let cut = t.encode("hand seven hand", Some(4)).unwrap();
        assert_eq!((cut.ids, cut.truncated), (vec![2, 4, 7, 3], true));
        assert!(t.encode("hand", Some(2)).is_err());
        let b = t.encode_batch(&["hand", ""], None).unwrap();
        assert_eq!(b[1].ids, vec![2, 3, 0]);
        assert_eq!(b[1].attention_mask, vec![1, 1, 0]);
        assert_eq!(t.decode(&e.ids, true), "handwritten sevens, cafe!");
    }

    #[test]
    fn other_kinds_of_tokenizer_json_are_refused_clearly() {
        let err = WordPieceTokenizer::from_json_str(&tiny("BPE", LOWER))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BPE, not WordPiece"), "{err}");
        let err = WordPieceTokenizer::from_json_str(&tiny("WordPiece", r#"{"type":"NFC"}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("normalizer NFC"), "{err}");
        assert!(WordPieceTokenizer::from_json_str("{").is_err());
        assert!(WordPieceTokenizer::from_json_str("{}")
            .unwrap_err()
            .to_string()
            .contains("model"));
    }

    #[test]
    fn bert_normalizer_cleans_spaces_cjk_and_strips_accents() {
        let n = BertNormalizer {
            clean_text: true,
            handle_chinese_chars: true,
            strip_accents: None,
            lowercase: true,
        };
        assert_eq!(n.normalize("Ça\tva\u{0}\u{200b}?野口"), "ca va? 野  口 ");
        let cased = BertNormalizer {
            lowercase: false,
            ..n
        };
        assert_eq!(cased.normalize("Ça"), "Ça");
        assert_eq!(
            bert_pre_tokenize("a,b  c!?"),
            vec!["a", ",", "b", "c", "!", "?"]
        );
    }
}
