//! Tokenizers of the text encoders genlab trains or loads: CLIP's byte-level BPE with its
//! real vocabulary ([`ClipTokenizer`], embedded, no network), the same BPE read from a
//! Hugging Face CLIP `tokenizer/` folder with transformers' text handling
//! ([`HfClipTokenizer`]) and BERT-style WordPiece read
//! from a HuggingFace `tokenizer.json` ([`WordPieceTokenizer`]). Both are our own code and
//! are checked id for id against their upstream implementations (fixtures under
//! `tests/fixtures/tokenize/`, written by the scripts named in each file).

pub mod clip_bpe;
pub mod hf_clip;
pub mod html_unescape;
pub mod wordpiece;

pub use clip_bpe::{BpeTable, ClipTokenizer, Encoded};
pub use hf_clip::HfClipTokenizer;
pub use wordpiece::{BertNormalizer, WordPieceEncoding, WordPieceTokenizer};
