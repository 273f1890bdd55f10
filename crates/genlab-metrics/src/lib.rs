//! genlab-metrics: how good are generated samples?
//!
//! Every metric is a pure function on f64 feature matrices ([`FeatureMatrix`]), checked
//! against an independent reference (scipy, scikit-learn, POT, torchmetrics' formula, or a
//! closed form; fixtures made by `scripts/reference/`). Feature extractors, which turn
//! images into those matrices, live in [`features`].
//!
//! | metric | module | reference |
//! |---|---|---|
//! | FID | [`fid`] | Heusel et al. 2017 |
//! | KID, kernel MMD | [`kernel`] | Binkowski et al. 2018; Gretton et al. 2012 |
//! | Inception Score, Mode Score | [`score`] | Salimans et al. 2016; Che et al. 2017 |
//! | Wasserstein (exact, Sinkhorn, sliced) | [`wasserstein`] | Bonneel et al. 2011; Cuturi 2013 |
//! | 1-NN two-sample test | [`nn1`] | Lopez-Paz & Oquab 2017; Xu et al. 2018 |
//! | PSNR of paired images (reconstructions) | [`psnr`] | closed form |
//! | video: per-frame digit identity, billiard motion error | [`video`] | LeCun et al. 1998; Srivastava et al. 2015 |

pub mod class_accuracy;
pub mod features;
pub mod fid;
pub mod kernel;
pub mod linalg;
pub mod matrix;
pub mod nn1;
pub mod psnr;
pub mod score;
pub mod ssim;
pub mod stats;
pub mod suite;
pub mod video;
pub mod wasserstein;

pub use matrix::{check_pair, FeatureMatrix};
