//! genlab-continual: continual learning on genlab's core.
//!
//! - [`benchmark`]: split and permuted MNIST (and their 8x8-digits twins for tests and
//!   demos), each in the three scenarios of van de Ven & Tolias 2019 ("Three scenarios for
//!   continual learning", arXiv:1904.07734): Task-, Domain- and Class-incremental;
//! - [`learner`]: the classifier (an MLP, 2x400 ReLU by default), its Adam optimizer and the
//!   losses on chosen output units (softmax cross-entropy, distillation, binary
//!   cross-entropy), each with its gradient with respect to the logits;
//! - [`methods`]: the methods, one file each, behind one [`methods::Method`] trait, and their
//!   registry ([`methods::METHODS`]) with the scenarios each applies to;
//! - [`train`]: the training loop over the tasks (the accuracy matrix, the per-task accuracy
//!   curves, memory per method); [`measures`]: average accuracy, backward and forward
//!   transfer, forgetting; [`report`]: the run's HTML page and pictures, and the table over
//!   seeds.

pub mod benchmark;
pub mod buffer;
pub mod learner;
pub mod measures;
pub mod methods;
pub mod mlp;
pub mod report;
pub mod train;
pub mod vae;

pub use benchmark::{Benchmark, Scenario, BENCHMARKS};
pub use methods::{Method, MethodEntry, METHODS};
pub use train::{run, RunConfig, RunResult};
