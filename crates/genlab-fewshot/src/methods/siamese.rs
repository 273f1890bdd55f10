//! Siamese networks: Koch, Zemel & Salakhutdinov 2015, "Siamese Neural Networks for
//! One-shot Image Recognition", ICML Deep Learning Workshop (no arXiv id).
//!
//! Twin embeddings h1 = f(x1), h2 = f(x2) (shared weights) are compared by a weighted L1
//! distance, `p = σ(Σ_j α_j |h1_j - h2_j| + b)`, the probability that the two images show
//! the same class (section 3.1); training minimises the binary cross-entropy of pairs
//! (section 3.1, eq. 2). One-shot classification picks the support example the query is
//! most likely to match (section 4.3, eq. 4: `C* = argmax_c p(c)`); with K shots a class's
//! score is the mean of its shots' logits. Pairs here come from episodes: every query with
//! every support example, the positive and negative pairs weighted equally (the paper
//! samples them in equal numbers). The paper's embedding is a larger 105x105 conv net; this
//! one is the conv-4, so the comparison with the other methods is about the objective.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use genlab_core::{ParamStore, Result};
use genlab_nn::Linear;

use super::{parse_config, MetaLoss, Method, MethodEntry, Spec, Task, TaskKind};
use crate::embed::{Conv4, Conv4Config};

/// Settings of [`Siamese`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub embedding: Conv4Config,
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "siamese",
    paper: "Koch, Zemel & Salakhutdinov 2015, Siamese Neural Networks for One-shot Image Recognition, ICML DL Workshop",
    description: "pair verification by a weighted L1 distance of twin embeddings; one-shot by the best-matching support",
    kind: TaskKind::Classification,
    double_backward: |_| false,
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(Siamese::new(spec)?)),
};

/// See the module documentation.
pub struct Siamese {
    store: ParamStore,
    net: Conv4,
    head: Linear,
}

impl Siamese {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        let store = ParamStore::new(spec.seed, &spec.device);
        let net = Conv4::new(&cfg.embedding, &spec.input, store.vb().pp("embed"))?;
        let head = Linear::new(net.out_dim(), 1, store.vb().pp("head"))?;
        Ok(Self { store, net, head })
    }

    /// Same-class logits `[M, NK]` of every (query, support) pair.
    fn pair_logits(&self, ep: &crate::Episode) -> Result<Tensor> {
        let zs = self.net.forward(&ep.support)?; // [NK, D]
        let zq = self.net.forward(&ep.query)?; // [M, D]
        let (m, d) = zq.dims2()?;
        let nk = zs.dim(0)?;
        // |h1 - h2| of every pair: [M, 1, D] - [1, NK, D] -> [M*NK, D].
        let diff = zq
            .unsqueeze(1)?
            .broadcast_sub(&zs.unsqueeze(0)?)?
            .abs()?
            .reshape((m * nk, d))?;
        Ok(self.head.forward(&diff)?.reshape((m, nk))?)
    }

    /// Class scores `[M, N]`: the mean logit over each class's shots.
    fn class_scores(&self, ep: &crate::Episode, logits: &Tensor) -> Result<Tensor> {
        let m = logits.dim(0)?;
        Ok(logits
            .reshape((m, ep.shape.ways, ep.shape.shots))?
            .mean(2)?)
    }
}

impl Method for Siamese {
    fn meta_loss(&mut self, tasks: &[Task]) -> Result<MetaLoss> {
        super::mean_over_episodes(tasks, "siamese", |ep| {
            let logits = self.pair_logits(ep)?; // [M, NK]
                                                // Same class: the support's label equals the query's.
            let same = ep
                .query_labels
                .unsqueeze(1)?
                .broadcast_eq(&ep.support_labels.unsqueeze(0)?)?
                .to_dtype(candle_core::DType::F32)?;
            let p = candle_nn::ops::sigmoid(&logits)?;
            let eps = 1e-7;
            let n_pos = same.sum_all()?.to_scalar::<f32>()? as f64;
            let pos = (same.mul(&(p.clone() + eps)?.log()?)?.sum_all()? / n_pos)?;
            let diff = same.ones_like()?.sub(&same)?;
            let n_neg = diff.sum_all()?.to_scalar::<f32>()? as f64;
            let neg = (diff
                .mul(&(p.ones_like()?.sub(&p)? + eps)?.log()?)?
                .sum_all()?
                / n_neg)?;
            // Binary cross-entropy, positives and negatives weighted equally.
            let loss = ((pos + neg)? * -0.5)?;
            Ok((
                loss,
                super::accuracy(&self.class_scores(ep, &logits)?, &ep.query_labels)?,
            ))
        })
    }

    fn evaluate(&self, task: &Task) -> Result<f64> {
        let ep = super::episode(task, "siamese")?;
        let logits = self.pair_logits(ep)?.detach();
        super::accuracy(&self.class_scores(ep, &logits)?, &ep.query_labels)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }
}
