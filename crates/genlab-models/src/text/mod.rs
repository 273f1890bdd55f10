//! Text encoders: networks that turn token ids into embeddings. [`bert`]: BERT with
//! sentence-transformers' mean pooling (all-MiniLM-L6-v2 as a frozen encoder). Tokenizers
//! live in `genlab_data::tokenize`; the pairing of a tokenizer with its network, by name, is
//! `genlab_train::text_encoders`.

pub mod bert;

pub use bert::{hf_to_genlab, l2_normalize, mean_pool, BertConfig, BertEncoder};
