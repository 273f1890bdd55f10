//! The negative log-likelihood of a trained model on a dataset, summarised the way papers
//! report it: mean nats per example with its standard error, bits per dimension, and, for
//! data whose true density is known (eight gaussians), the gap to that density on the same
//! points with its paired standard error.

use std::time::Instant;

use candle_core::Device;

use genlab_core::{Error, Result, Rng};
use genlab_data::{dataset_info, make_batch, Dataset};
use genlab_models::{bits_per_dim, LikelihoodKind, LikelihoodOptions, Sample};

/// Examples per likelihood call (their importance samples are chunked inside).
const EXAMPLES_PER_CALL: usize = 500;

/// Mean and standard error of the mean (sample std with n - 1, over sqrt(n)); a single
/// value has standard error 0.
pub fn mean_and_stderr(v: &[f64]) -> (f64, f64) {
    let m = v.len() as f64;
    let mean = v.iter().sum::<f64>() / m;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (m - 1.0).max(1.0);
    (mean, (var / m).sqrt())
}

/// Settings of [`evaluate_nll`].
#[derive(Clone, Debug)]
pub struct NllOptions {
    /// Evaluate `n` evenly spaced examples instead of all of them.
    pub n: Option<usize>,
    /// Importance samples per example (IWAE bound); exact models ignore it.
    pub samples: usize,
    /// Network batch size.
    pub batch_size: usize,
    /// Seed of the estimator's noise (importance samples, dequantisation, Hutchinson probes).
    pub seed: u64,
}

/// The model's NLL minus the true density's on the same points.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReferenceGap {
    /// The true density's mean NLL on the points (nats).
    pub true_nll_nats: f64,
    /// Model NLL minus true NLL, mean over points (nats).
    pub gap_nats: f64,
    /// Standard error of that mean over the paired differences.
    pub gap_nats_stderr: f64,
}

/// What [`evaluate_nll`] measured.
#[derive(Clone, Debug)]
pub struct NllSummary {
    pub n: usize,
    pub nll_nats: f64,
    pub nll_nats_stderr: f64,
    pub bits_per_dim: f64,
    pub dims: usize,
    /// The estimator (e.g. "IWAE bound, k = 5000").
    pub method: String,
    pub kind: LikelihoodKind,
    pub seconds: f64,
    pub reference: Option<ReferenceGap>,
}

/// The dataset a run's likelihood is measured on by default: its held-out split where it
/// has one, else its training data.
pub fn default_nll_data(run_data: &str) -> Result<String> {
    Ok(dataset_info(run_data)?
        .held_out
        .unwrap_or_else(|| run_data.to_string()))
}

/// The NLL of `model` on `data` (whose spec is `spec`); `progress(done, total)` counts
/// examples.
pub fn evaluate_nll(
    model: &dyn Sample,
    spec: &str,
    data: &dyn Dataset,
    opts: &NllOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<NllSummary> {
    let ll = model
        .as_likelihood()
        .ok_or_else(|| Error::InvalidInput("this model has no likelihood to evaluate".into()))?;
    if opts.samples == 0 {
        return Err(Error::setting(
            "k",
            "must be at least 1 (importance samples per example), got 0",
        ));
    }
    if opts.n == Some(0) {
        return Err(Error::setting("n", "must be at least 1, got 0"));
    }
    let space = model.data_space();
    if data.example_shape() != space.shape {
        return Err(Error::InvalidInput(format!(
            "{spec} has examples of shape {:?}, the model was trained on {:?}",
            data.example_shape(),
            space.shape
        )));
    }
    let len = data.len();
    let n = opts.n.unwrap_or(len).min(len);
    let idx: Vec<usize> = (0..n).map(|i| i * len / n.max(1)).collect();
    let lopts = LikelihoodOptions {
        samples: opts.samples,
        batch_size: opts.batch_size,
    };
    let density = dataset_info(spec)?.log_density;
    let t0 = Instant::now();
    let mut rng = Rng::derive(opts.seed, "likelihood");
    let mut nats = Vec::with_capacity(n);
    let mut true_nats = Vec::new();
    let mut method = String::new();
    let mut kind = LikelihoodKind::Exact;
    for chunk in idx.chunks(EXAMPLES_PER_CALL) {
        let b = make_batch(data, chunk, &Device::Cpu)?;
        let done = nats.len();
        if let Some(log_p) = density {
            for p in b.x.to_vec2::<f32>()? {
                true_nats.push(log_p([p[0] as f64, p[1] as f64]));
            }
        }
        let r = ll.log_likelihood(&b.x, b.labels.as_ref(), &lopts, &mut rng, &mut |d, _| {
            progress(done + d, n)
        })?;
        nats.extend(r.nats);
        method = r.method;
        kind = r.kind;
    }
    let dims: usize = space.shape.iter().product();
    let nll: Vec<f64> = nats.iter().map(|v| -v).collect();
    let (mean, stderr) = mean_and_stderr(&nll);
    let reference = (!true_nats.is_empty()).then(|| {
        let gaps: Vec<f64> = true_nats.iter().zip(&nats).map(|(t, v)| t - v).collect();
        let (gap, gap_se) = mean_and_stderr(&gaps);
        ReferenceGap {
            true_nll_nats: -true_nats.iter().sum::<f64>() / true_nats.len() as f64,
            gap_nats: gap,
            gap_nats_stderr: gap_se,
        }
    });
    Ok(NllSummary {
        n: nats.len(),
        nll_nats: mean,
        nll_nats_stderr: stderr,
        bits_per_dim: bits_per_dim(mean, dims),
        dims,
        method,
        kind,
        seconds: t0.elapsed().as_secs_f64(),
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_stderr_match_a_hand_computation() {
        // 1, 2, 3, 4: mean 2.5, sample variance 5/3, standard error sqrt(5/3 / 4).
        let (m, se) = mean_and_stderr(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((se - (5.0f64 / 12.0).sqrt()).abs() < 1e-15);
        assert_eq!(mean_and_stderr(&[7.0]), (7.0, 0.0));
    }

    #[test]
    fn default_data_is_the_held_out_split_where_there_is_one() {
        assert_eq!(default_nll_data("mnist").unwrap(), "mnist:test");
        assert_eq!(
            default_nll_data("eight-gaussians").unwrap(),
            "eight-gaussians"
        );
    }
}
