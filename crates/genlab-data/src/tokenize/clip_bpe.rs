//! CLIP's byte-level BPE tokenizer, with its real 49,408-token vocabulary.
//!
//! Papers: Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision" (CLIP, arXiv:2103.00020), section 2.4: "lower-cased byte pair encoding (BPE)
//! representation of the text with a 49,152 vocab size ... bracketed with \[SOS\] and \[EOS\]
//! tokens"; Sennrich, Haddow & Birch 2016, "Neural Machine Translation of Rare Words with
//! Subword Units" (arXiv:1508.07909) for BPE; Radford et al. 2019 (GPT-2) for the byte-level
//! alphabet.
//!
//! Semantics are those of open_clip 3.3.0's `SimpleTokenizer` (copied from OpenAI's CLIP,
//! MIT) and `open_clip.tokenize`, checked id for id against a fixture written by
//! `scripts/reference/clip_tokenizer_fixture.py`:
//!
//! 1. cleaning (`_clean_lower`): `ftfy.fix_text` (see below), `html.unescape` twice
//!    ([`html_unescape`]), strip, whitespace runs -> one space (Python's `str.split()`
//!    whitespace), lowercase (full Unicode lowercasing, final sigma included);
//! 2. pre-tokenising with the regex
//!    `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//!    (case-insensitive literals): contractions, letter runs, single digits, punctuation runs;
//!    whitespace is dropped. A literal `<start_of_text>` / `<end_of_text>` in the text
//!    becomes the special id, as in open_clip;
//! 3. each piece's UTF-8 bytes -> the printable byte alphabet (`bytes_to_unicode`), the last
//!    symbol marked with `</w>`, then BPE: repeatedly merge every occurrence of the adjacent
//!    pair with the lowest rank in the merges file (line 1 onwards; line 0 is a header;
//!    48,894 merges);
//! 4. ids: 256 bytes, 256 bytes + `</w>`, the merges in file order, `<start_of_text>`
//!    (49406), `<end_of_text>` (49407).
//!
//! **ftfy.** open_clip runs `ftfy.fix_text` first; genlab does not carry ftfy. It applies the
//! fixes of ftfy 6.3.1 that are character tables: Latin ligatures (`ﬁ` -> `fi`), full- and
//! half-width forms (`ＡＢ！` -> `AB!`, as CJK text often has), curly quotes -> straight
//! quotes, deletion of control characters, then NFC (Unicode 9 tables); the tables are
//! `assets/ftfy_char_maps.txt`, written from ftfy by `scripts/reference/ftfy_char_maps.py`.
//! Text that ftfy repairs otherwise (mojibake, C1 controls read as Windows-1252, terminal
//! escape sequences, a third HTML unescape of text without `<`) can tokenize differently.
//!
//! The BPE itself ([`BpeTable`]: byte symbols, ranked merges, the id table) is shared with
//! [`super::hf_clip::HfClipTokenizer`], which reads it from a transformers `tokenizer/`
//! folder and applies transformers' text handling around it instead of open_clip's.
//!
//! **Context and truncation** ([`ClipTokenizer::encode_padded`]): `[SOT] + ids + [EOT]`,
//! zero-padded to `context`. Longer sequences are cut as open_clip 3.3.0's `tokenize` cuts
//! them: the first `context` ids are kept and the last is overwritten with EOT, i.e. SOT, the
//! first `context - 2` text ids, EOT; [`Encoded::truncated`] says so, and the caller warns.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, OnceLock};

use genlab_core::{Error, Result};
use unicode_normalization_alignments::UnicodeNormalization;

use super::html_unescape::html_unescape;

/// The vocabulary file `bpe_simple_vocab_16e6.txt.gz` (MIT, OpenAI CLIP; from the
/// open-clip-torch 3.3.0 wheel; `assets/README.md`).
const VOCAB_GZ: &[u8] = include_bytes!("../../assets/bpe_simple_vocab_16e6.txt.gz");
/// Its sha256, checked at load.
pub const VOCAB_SHA256: &str = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a";
/// open_clip keeps `merges[1:49152-256-2+1]`: 48,894 merges after the header line.
const N_MERGES: usize = 49152 - 256 - 2;
/// Per-word cache bound (entries); cleared when full.
const CACHE_LIMIT: usize = 1 << 16;

const SOT_TEXT: &str = "<start_of_text>";
const EOT_TEXT: &str = "<end_of_text>";

/// The pre-tokenizer regex of open_clip's `SimpleTokenizer`, whose `re.IGNORECASE` (Python
/// `regex` module) folds the literals (`'S`, `'ſ`) and the negated class but not the
/// positive `\p{L}` / `\p{N}` classes. Rust's `(?i)` folds every class, so the flag is scoped
/// to reproduce that: U+0345 (a combining mark whose case variants include ι) then matches
/// no alternative and is dropped, as in open_clip.
const PATTERN: &str = r"(?i:<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d)|[\p{L}]+|[\p{N}]|(?i:[^\s\p{L}\p{N}]+)";

/// A tokenized text at a fixed context length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// `context` ids: `[SOT, ..., EOT, 0, 0, ...]` (0 pads, as in open_clip).
    pub ids: Vec<u32>,
    /// Position of EOT (the token CLIP's text encoder pools).
    pub eot_index: usize,
    /// Whether text ids were cut to fit `context` (the caller should warn).
    pub truncated: bool,
}

/// CLIP's tokenizer. Cheap to share: `&self` methods, a per-word cache behind a mutex.
pub struct ClipTokenizer {
    bpe: BpeTable,
    pattern: regex::Regex,
}

/// The byte-level BPE of CLIP's vocabulary, shared by open_clip's tokenizer
/// ([`ClipTokenizer`]) and transformers' ([`super::hf_clip::HfClipTokenizer`]): the byte
/// symbols' ids, the merges with their ranks, and the id -> string table.
pub struct BpeTable {
    byte_ids: [u32; 256],
    byte_end_ids: [u32; 256],
    /// (left id, right id) -> (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// id -> its string in the byte alphabet (with `</w>` where it has one; empty for an id
    /// the vocabulary skips).
    decoder: Vec<String>,
    byte_decoder: HashMap<char, u8>,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl BpeTable {
    /// From a string -> id vocabulary and the merges in rank order; `what` names the files
    /// in messages. Every byte symbol (with and without `</w>`), every merge's two symbols
    /// and their concatenation must be in the vocabulary.
    pub fn new(
        encoder: &HashMap<String, u32>,
        merges: &[(&str, &str)],
        what: &str,
    ) -> Result<Self> {
        let id = |s: &str| -> Result<u32> {
            encoder.get(s).copied().ok_or_else(|| {
                Error::Data(format!(
                    "{what}: symbol {s:?} is neither a byte nor an earlier merge of the vocabulary"
                ))
            })
        };
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let key = (id(a)?, id(b)?);
            let merged = id(&format!("{a}{b}"))?;
            // A repeated pair keeps its last rank, as Python's dict and tokenizers' map do.
            table.insert(key, (rank as u32, merged));
        }
        let byte_chars = bytes_to_unicode();
        let mut byte_ids = [0u32; 256];
        let mut byte_end_ids = [0u32; 256];
        for &(b, c) in &byte_chars {
            byte_ids[b as usize] = id(&c.to_string())?;
            byte_end_ids[b as usize] = id(&format!("{c}</w>"))?;
        }
        let n = encoder.values().map(|&i| i as usize + 1).max().unwrap_or(0);
        if n > 2 * encoder.len() + 1024 {
            return Err(Error::Data(format!(
                "{what}: the vocabulary's ids run up to {} for {} entries (not a CLIP vocabulary)",
                n - 1,
                encoder.len()
            )));
        }
        let mut decoder = vec![String::new(); n];
        for (s, &i) in encoder {
            decoder[i as usize] = s.clone();
        }
        Ok(Self {
            byte_ids,
            byte_end_ids,
            merges: table,
            decoder,
            byte_decoder: byte_chars.iter().map(|&(b, c)| (c, b)).collect(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Number of ids (one more than the largest).
    pub fn len(&self) -> usize {
        self.decoder.len()
    }

    pub fn is_empty(&self) -> bool {
        self.decoder.is_empty()
    }

    /// The string of an id in the byte alphabet (`None` outside the vocabulary).
    pub fn token(&self, id: u32) -> Option<&str> {
        self.decoder
            .get(id as usize)
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    }

    /// BPE of one pre-token (non-empty UTF-8 bytes).
    fn bpe(&self, piece: &[u8]) -> Vec<u32> {
        let last = piece.len() - 1;
        let mut word: Vec<u32> = piece[..last]
            .iter()
            .map(|&b| self.byte_ids[b as usize])
            .collect();
        word.push(self.byte_end_ids[piece[last] as usize]);
        while word.len() > 1 {
            // The adjacent pair with the lowest rank (ranks are unique).
            let best = word
                .windows(2)
                .filter_map(|w| self.merges.get(&(w[0], w[1])).map(|&m| (m, (w[0], w[1]))))
                .min_by_key(|((rank, _), _)| *rank);
            let Some(((_, merged), (a, b))) = best else {
                break;
            };
            // Merge every occurrence, left to right, without overlaps.
            let mut next = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == a && word[i + 1] == b {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(word[i]);
                    i += 1;
                }
            }
            word = next;
        }
        word
    }

    /// The ids of one pre-token (a word of the pre-tokenizer), cached; empty for "".
    pub fn encode_word(&self, piece: &str) -> Vec<u32> {
        if piece.is_empty() {
            return Vec::new();
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache.get(piece) {
            return hit.clone();
        }
        let word = self.bpe(piece.as_bytes());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(piece.to_string(), word.clone());
        word
    }

    /// The ids' strings joined, mapped back to bytes, decoded as UTF-8 (invalid sequences ->
    /// U+FFFD), `</w>` -> space. Ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if let Some(s) = self.decoder.get(id as usize) {
                for c in s.chars() {
                    if let Some(&b) = self.byte_decoder.get(&c) {
                        bytes.push(b);
                    }
                }
            }
        }
        String::from_utf8_lossy(&bytes).replace("</w>", " ")
    }
}

/// GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the others are shifted
/// to 256 + n, so every byte is a visible, non-space character. In Python's dict order
/// (the printable bytes first, then the others in byte order), which is the order of the
/// first 256 ids.
pub fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut bytes: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = bytes.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    bytes
        .iter()
        .zip(chars)
        .map(|(&b, c)| (b as u8, char::from_u32(c).unwrap_or('\0')))
        .collect()
}

/// Python's `str.isspace()`: Unicode White_Space plus the separators U+001C..U+001F.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// ftfy's character tables (`KIND<TAB>HEX<TAB>[HEX ...]`, see the module header).
const FTFY_MAPS: &str = include_str!("../../assets/ftfy_char_maps.txt");

/// Character -> replacement (`None`: deleted): ftfy's ligature, width and control tables.
fn ftfy_maps() -> &'static HashMap<char, Option<String>> {
    static MAPS: OnceLock<HashMap<char, Option<String>>> = OnceLock::new();
    MAPS.get_or_init(|| {
        FTFY_MAPS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let mut f = l.split('\t');
                let (kind, cp, value) = (f.next()?, f.next()?, f.next().unwrap_or(""));
                let c = char::from_u32(u32::from_str_radix(cp, 16).ok()?)?;
                if kind == "control" {
                    return Some((c, None));
                }
                let v: Option<String> = value
                    .split(' ')
                    .map(|h| u32::from_str_radix(h, 16).ok().and_then(char::from_u32))
                    .collect();
                Some((c, Some(v?)))
            })
            .collect()
    })
}

/// ftfy's `uncurl_quotes` (`[\u02bc\u2018-\u201b]` -> ', `[\u201c-\u201f]` -> ").
fn uncurl_quotes(c: char) -> char {
    match c {
        '\u{02bc}' | '\u{2018}'..='\u{201b}' => '\'',
        '\u{201c}'..='\u{201f}' => '"',
        _ => c,
    }
}

/// open_clip's `_clean_lower` with ftfy's table fixes in place of `ftfy.fix_text` (module
/// header): ligatures and widths, quotes, control characters, NFC; then HTML unescape
/// twice, whitespace runs -> one space, strip, lowercase.
pub fn clean_text(text: &str) -> String {
    let maps = ftfy_maps();
    let mut mapped = String::with_capacity(text.len());
    for c in text.chars() {
        match maps.get(&c) {
            Some(Some(r)) => mapped.extend(r.chars().map(uncurl_quotes)),
            Some(None) => {}
            None => mapped.push(uncurl_quotes(c)),
        }
    }
    let fixed: String = mapped.chars().nfc().map(|(c, _)| c).collect();
    let unescaped = html_unescape(&html_unescape(&fixed));
    let words: Vec<&str> = unescaped
        .split(py_isspace)
        .filter(|w| !w.is_empty())
        .collect();
    words.join(" ").to_lowercase()
}

/// The text of the embedded `bpe_simple_vocab_16e6.txt` (checked against
/// [`VOCAB_SHA256`]): a header line, then the merges.
pub fn embedded_merges_text() -> Result<String> {
    let sum = crate::checksum::sha256_bytes(VOCAB_GZ);
    if sum != VOCAB_SHA256 {
        return Err(Error::Data(format!(
            "the embedded CLIP vocabulary has sha256 {sum}, expected {VOCAB_SHA256} \
             (a damaged checkout of crates/genlab-data/assets?)"
        )));
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(VOCAB_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::Data(format!("reading the CLIP vocabulary: {e}")))?;
    Ok(text)
}

/// The embedded vocabulary in transformers' form: the token -> id map of `vocab.json` and
/// the text of `merges.txt` (the 48,894 merges CLIP uses, one per line). Ids are CLIP's:
/// OpenAI's and every Stable Diffusion tokenizer folder carry the same vocabulary.
pub fn embedded_vocab_and_merges() -> Result<(HashMap<String, u32>, String)> {
    let text = embedded_merges_text()?;
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.len() < N_MERGES + 1 {
        return Err(Error::Data(
            "the embedded CLIP vocabulary is too short".into(),
        ));
    }
    let merges = &lines[1..=N_MERGES];
    let mut vocab: Vec<String> = bytes_to_unicode()
        .iter()
        .map(|(_, c)| c.to_string())
        .collect();
    vocab.extend(bytes_to_unicode().iter().map(|(_, c)| format!("{c}</w>")));
    vocab.extend(merges.iter().map(|m| m.replace(' ', "")));
    // transformers' spelling of the two special tokens.
    vocab.push("<|startoftext|>".to_string());
    vocab.push("<|endoftext|>".to_string());
    let map = vocab
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, i as u32))
        .collect();
    Ok((map, merges.join("\n")))
}

impl ClipTokenizer {
    /// Vocabulary size: 256 + 256 + 48,894 merges + 2 special tokens.
    pub const VOCAB_SIZE: usize = 49408;
    /// `<start_of_text>`.
    pub const SOT: u32 = 49406;
    /// `<end_of_text>`.
    pub const EOT: u32 = 49407;
    /// The context length of every OpenAI CLIP model.
    pub const DEFAULT_CONTEXT: usize = 77;

    /// The tokenizer with the embedded vocabulary (checked against [`VOCAB_SHA256`]).
    pub fn new() -> Result<Self> {
        Self::from_merges_text(&embedded_merges_text()?)
    }

    /// Builds the tokenizer from the text of a `bpe_simple_vocab_16e6.txt`-style file (a
    /// header line, then one `left right` merge per line; the first 48,894 are used).
    pub fn from_merges_text(text: &str) -> Result<Self> {
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.len() < N_MERGES + 1 {
            return Err(Error::Data(format!(
                "a CLIP merges file needs a header and {N_MERGES} merges; this one has {} lines",
                lines.len()
            )));
        }
        let byte_chars = bytes_to_unicode();
        let mut vocab: Vec<String> = byte_chars.iter().map(|(_, c)| c.to_string()).collect();
        vocab.extend(byte_chars.iter().map(|(_, c)| format!("{c}</w>")));
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(N_MERGES);
        for (i, line) in lines[1..=N_MERGES].iter().enumerate() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => {
                    pairs.push((a, b));
                    vocab.push(format!("{a}{b}"));
                }
                _ => {
                    return Err(Error::Data(format!(
                        "line {} of the CLIP merges file is not two symbols: {line:?}",
                        i + 2
                    )))
                }
            }
        }
        vocab.push(SOT_TEXT.to_string());
        vocab.push(EOT_TEXT.to_string());
        // Python's dict(zip(vocab, range(...))): a repeated string keeps its last id.
        let mut encoder: HashMap<String, u32> = HashMap::with_capacity(vocab.len());
        for (i, s) in vocab.iter().enumerate() {
            encoder.insert(s.clone(), i as u32);
        }
        if vocab.len() != Self::VOCAB_SIZE
            || encoder.get(SOT_TEXT) != Some(&Self::SOT)
            || encoder.get(EOT_TEXT) != Some(&Self::EOT)
        {
            return Err(Error::Data(format!(
                "CLIP vocabulary: {} entries, expected {} with the special tokens at {} and {}",
                vocab.len(),
                Self::VOCAB_SIZE,
                Self::SOT,
                Self::EOT
            )));
        }
        let bpe = BpeTable::new(&encoder, &pairs, "CLIP merges file")?;
        let pattern = regex::Regex::new(PATTERN)
            .map_err(|e| Error::Data(format!("CLIP pre-tokenizer regex: {e}")))?;
        Ok(Self { bpe, pattern })
    }

    /// Token ids of `text`, without start/end tokens and without truncation.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let cleaned = clean_text(text);
        let mut ids = Vec::new();
        for m in self.pattern.find_iter(&cleaned) {
            let piece = m.as_str();
            match piece {
                SOT_TEXT => ids.push(Self::SOT),
                EOT_TEXT => ids.push(Self::EOT),
                _ => ids.extend(self.bpe.encode_word(piece)),
            }
        }
        ids
    }

    /// `[SOT] + encode(text) + [EOT]` zero-padded to `context`, cut as open_clip 3.3.0's
    /// `tokenize` cuts (module header: SOT, the first `context - 2` text ids, EOT). Empty text
    /// is `[SOT, EOT, 0, ...]`. A `context` below 2 (no room for SOT and EOT) is an error.
    pub fn encode_padded(&self, text: &str, context: usize) -> Result<Encoded> {
        if context < 2 {
            return Err(Error::setting(
                "context",
                format!("{context} tokens leave no room for the start and end tokens (at least 2)"),
            ));
        }
        let body = self.encode(text);
        let truncated = body.len() + 2 > context;
        let keep = body.len().min(context - 2);
        let mut ids = Vec::with_capacity(context);
        ids.push(Self::SOT);
        ids.extend_from_slice(&body[..keep]);
        ids.push(Self::EOT);
        let eot_index = ids.len() - 1;
        ids.resize(context, 0);
        Ok(Encoded {
            ids,
            eot_index,
            truncated,
        })
    }

    /// [`Self::encode_padded`] of each text.
    pub fn encode_batch(&self, texts: &[&str], context: usize) -> Result<Vec<Encoded>> {
        texts
            .iter()
            .map(|t| self.encode_padded(t, context))
            .collect()
    }

    /// open_clip's `decode`: the ids' strings joined, mapped back to bytes, decoded as UTF-8
    /// (invalid sequences -> U+FFFD), `</w>` -> space. Special tokens come out as their text
    /// and padding (id 0) as `!`, as in open_clip: pass `ids[1..eot_index]` (or use
    /// [`Self::decode_text`]) for the text alone. Ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.bpe.decode(ids)
    }

    /// The text between SOT and EOT of an [`Encoded`], decoded and trimmed.
    pub fn decode_text(&self, e: &Encoded) -> String {
        let end = e.eot_index.min(e.ids.len());
        let start = usize::from(e.ids.first() == Some(&Self::SOT)).min(end);
        self.decode(&e.ids[start..end]).trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_vocabulary_has_the_published_checksum_and_size() {
        assert_eq!(VOCAB_GZ.len(), 1_356_917);
        assert_eq!(crate::checksum::sha256_bytes(VOCAB_GZ), VOCAB_SHA256);
        let t = ClipTokenizer::new().unwrap();
        assert_eq!(t.bpe.len(), ClipTokenizer::VOCAB_SIZE);
        assert_eq!(t.bpe.token(ClipTokenizer::SOT), Some(SOT_TEXT));
        assert_eq!(t.bpe.token(ClipTokenizer::EOT), Some(EOT_TEXT));
    }

    #[test]
    fn byte_alphabet_is_a_bijection_onto_printable_characters() {
        let pairs = bytes_to_unicode();
        let mut seen: Vec<char> = pairs.iter().map(|p| p.1).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        let mut bytes: Vec<u8> = pairs.iter().map(|p| p.0).collect();
        bytes.sort();
        bytes.dedup();
        assert_eq!(bytes.len(), 256);
        assert!(pairs
            .iter()
            .all(|(_, c)| !c.is_whitespace() && !c.is_control()));
        // id 0 is '!', the first printable byte; the space is GPT-2's "Ġ" (U+0120).
        assert_eq!(pairs[0], (b'!', '!'));
        assert!(pairs.contains(&(b' ', '\u{120}')));
    }

    #[test]
    fn padding_truncation_and_empty_text() {
        let t = ClipTokenizer::new().unwrap();
        let e = t.encode_padded("", 77).unwrap();
        assert_eq!(&e.ids[..3], &[ClipTokenizer::SOT, ClipTokenizer::EOT, 0]);
        assert_eq!((e.eot_index, e.truncated), (1, false));
        let body = t.encode("one two three four five");
        assert_eq!(body.len(), 5);
        let fits = t.encode_padded("one two three four five", 7).unwrap();
        assert!(!fits.truncated);
        assert_eq!(fits.eot_index, 6);
        let cut = t.encode_padded("one two three four five", 5).unwrap();
        assert!(cut.truncated);
        assert_eq!(cut.ids.len(), 5);
        assert_eq!(&cut.ids[1..4], &body[..3]);
        assert_eq!((cut.ids[4], cut.eot_index), (ClipTokenizer::EOT, 4));
        assert!(t.encode_padded("x", 1).is_err());
        let two = t.encode_padded("x", 2).unwrap();
        assert_eq!(two.ids, vec![ClipTokenizer::SOT, ClipTokenizer::EOT]);
        assert!(two.truncated);
    }

    #[test]
    fn decode_inverts_encode_up_to_cleaning() {
        let t = ClipTokenizer::new().unwrap();
        let e = t
            .encode_padded("A Handwritten  SEVEN, leaning right!", 77)
            .unwrap();
        assert_eq!(t.decode_text(&e), "a handwritten seven , leaning right !");
        assert_eq!(t.decode(&[ClipTokenizer::SOT]), SOT_TEXT);
        assert_eq!(t.decode(&[u32::MAX]), "");
    }
}
