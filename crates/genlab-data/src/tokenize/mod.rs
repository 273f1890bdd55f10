//! Tokenizers of the text encoders genlab trains or loads: CLIP's byte-level BPE with its
//! real vocabulary ([`ClipTokenizer`], embedded, no network) and BERT-style WordPiece read
//! from a HuggingFace `tokenizer.json` ([`WordPieceTokenizer`]). Both are our own code and
//! are checked id for id against their upstream implementations (fixtures under
//! `tests/fixtures/tokenize/`, written by the scripts named in each file).

pub mod clip_bpe;
pub mod html_unescape;
pub mod wordpiece;

pub use clip_bpe::{ClipTokenizer, Encoded};
pub use wordpiece::{BertNormalizer, WordPieceEncoding, WordPieceTokenizer};
