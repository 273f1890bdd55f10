//! genlab-labels: learning with few labels on genlab's core.
//!
//! - [`data`]: a pool and a test set of labelled images by name (MNIST, the 8x8 digits, a
//!   synthetic set for tests), streamed in batches;
//! - [`net`]: the CNN of Gal et al. 2017 with seeded (Monte Carlo) dropout;
//! - [`train`]: supervised fitting, probabilities (deterministic or MC dropout), features,
//!   test accuracy;
//! - [`active`]: pool-based active learning, strategies one file each in a registry, and
//!   the acquisition loop;
//! - [`semi`]: semi-supervised methods (self-training, co-training, FixMatch), one file
//!   each in a registry;
//! - [`da`]: unsupervised domain adaptation (source-only, DANN, MMD, the target-trained
//!   upper bound), one file each in a registry;
//! - [`ssl`]: self-supervised representation learning (SimCLR, MoCo v2, BYOL, rotation);
//! - [`represent`]: trained representations read from runs (ssl encoders, classifiers,
//!   VAEs) for the one evaluation and for transfer;
//! - [`transfer`]: a representation reused on other data with few labels (probe,
//!   fine-tuning, from scratch) over label counts and seeds;
//! - [`augment`]: the image augmentations those methods use;
//! - [`bench`](mod@bench): the `genlab bench` workloads of this crate's methods (the SimCLR step);
//! - [`eval`]: the one evaluation of representations (linear probe, k-NN);
//! - [`curve`]: test accuracy against labels, as JSON and a chart.

pub mod active;
pub mod augment;
pub mod bench;
pub mod curve;
pub mod da;
pub mod data;
pub mod eval;
pub mod net;
pub mod registry;
pub mod represent;
pub mod semi;
pub mod ssl;
pub mod train;
pub mod transfer;

pub use curve::{Curve, CurvePoint};
pub use data::Data;
pub use net::{Net, NetConfig};
pub use train::{FitConfig, Probs};
