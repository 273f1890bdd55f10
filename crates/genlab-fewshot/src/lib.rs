//! genlab-fewshot: few-shot learning and meta-learning on genlab's core.
//!
//! - [`classes`]: class-indexed data ([`ClassSet`]) and its disjoint meta-train /
//!   meta-validation / meta-test splits, opened from a source name by [`sources`] (the glyph
//!   set split by alphabet, MNIST and the 8x8 digits split by class, a synthetic set for
//!   tests);
//! - [`episode`]: N-way K-shot episodes with Q queries, sampled reproducibly;
//! - [`sinusoid`]: the sine-wave regression tasks of MAML;
//! - [`embed`]: the conv-4 embedding of the metric-based methods;
//! - [`methods`]: the methods (Siamese, Matching, Prototypical and Relation networks, a VAE
//!   generative classifier, MAML, Reptile, MAML's pretrain baseline), one file each, behind one [`methods::Method`] trait, and
//!   their registry;
//! - [`stats`]: mean accuracy with its 95% confidence interval;
//! - [`train`]: meta-training (checkpoints, exact resume, meta-validation log) and the
//!   standard evaluation over test episodes.

pub mod classes;
pub mod embed;
pub mod episode;
pub mod methods;
pub mod sinusoid;
pub mod sources;
pub mod stats;
pub mod train;

pub use classes::{ClassSet, Splits};
pub use episode::{Episode, EpisodeShape};
pub use stats::{mean_ci95, MeanCi};
