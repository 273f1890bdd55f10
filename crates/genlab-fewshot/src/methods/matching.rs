//! Matching Networks: Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra 2016, "Matching
//! Networks for One Shot Learning", arXiv:1606.04080.
//!
//! A query x̂ is labelled by attention over the support set, `ŷ = Σ_i a(x̂, x_i) y_i`
//! (eq. 1), with `a(x̂, x_i) = exp(c(f(x̂), g(x_i))) / Σ_j exp(c(f(x̂), g(x_j)))` (eq. 2), `c`
//! the cosine similarity and `y_i` one-hot. Training maximises `log P(y | x̂, S)` of the
//! queries over episodes (eq. 6). Here `f = g` is the conv-4 embedding without the paper's
//! full-context embeddings (the "no FCE" variant of its Omniglot table, which Snell et al.
//! 2017 also compare against); the cosine is scaled by `temperature`, the inverse softmax
//! temperature (1 in the paper's formula).

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use genlab_core::{ParamStore, Result};

use super::{parse_config, MetaLoss, Method, MethodEntry, Spec, Task, TaskKind};
use crate::embed::{Conv4, Conv4Config};

/// Settings of [`Matching`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub embedding: Conv4Config,
    /// Factor on the cosine similarities before the softmax.
    pub temperature: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            embedding: Conv4Config::default(),
            // 10: cosines lie in [-1, 1]; unscaled, the attention can never be sharp, and
            // training is slow (a common choice in reimplementations).
            temperature: 10.0,
        }
    }
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "matching",
    paper: "Vinyals et al. 2016, Matching Networks for One Shot Learning, arXiv:1606.04080",
    description:
        "softmax attention over cosine similarities to the support set (no full-context embeddings)",
    kind: TaskKind::Classification,
    double_backward: |_| false,
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(Matching::new(spec)?)),
};

/// See the module documentation.
pub struct Matching {
    cfg: Config,
    store: ParamStore,
    net: Conv4,
}

/// Rows scaled to unit length.
fn unit_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    x.broadcast_div(&(x.sqr()?.sum_keepdim(1)? + 1e-8)?.sqrt()?)
}

impl Matching {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        let store = ParamStore::new(spec.seed, &spec.device);
        let net = Conv4::new(&cfg.embedding, &spec.input, store.vb().pp("embed"))?;
        Ok(Self { cfg, store, net })
    }

    /// `log P(y = k | x̂, S)` `[M, N]` of the queries.
    fn log_probs(&self, ep: &crate::Episode) -> Result<Tensor> {
        let zs = unit_rows(&self.net.forward(&ep.support)?)?; // [NK, D]
        let zq = unit_rows(&self.net.forward(&ep.query)?)?; // [M, D]
        let cos = zq.matmul(&zs.t()?)?.affine(self.cfg.temperature, 0.0)?; // [M, NK]
        let a = candle_nn::ops::softmax(&cos, D::Minus1)?; // eq. 2
        let n = ep.shape.ways;
        let onehot = one_hot(&ep.support_labels, n)?; // [NK, N]
        let p = a.matmul(&onehot)?; // eq. 1: [M, N]
        Ok((p + 1e-8)?.log()?)
    }
}

/// One-hot rows `[B, n]` of u32 labels `[B]`.
pub(crate) fn one_hot(labels: &Tensor, n: usize) -> candle_core::Result<Tensor> {
    let b = labels.dim(0)?;
    let classes = Tensor::arange(0u32, n as u32, labels.device())?.reshape((1, n))?;
    labels
        .reshape((b, 1))?
        .broadcast_eq(&classes)?
        .to_dtype(DType::F32)
}

impl Method for Matching {
    fn meta_loss(&mut self, tasks: &[Task]) -> Result<MetaLoss> {
        super::mean_over_episodes(tasks, "matching", |ep| {
            let lp = self.log_probs(ep)?;
            Ok((
                candle_nn::loss::nll(&lp, &ep.query_labels)?,
                super::accuracy(&lp, &ep.query_labels)?,
            ))
        })
    }

    fn evaluate(&self, task: &Task) -> Result<f64> {
        let ep = super::episode(task, "matching")?;
        super::accuracy(&self.log_probs(ep)?.detach(), &ep.query_labels)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn one_hot_rows() {
        let l = Tensor::new(&[2u32, 0, 1], &Device::Cpu).unwrap();
        let o = one_hot(&l, 3).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(
            o,
            vec![vec![0., 0., 1.], vec![1., 0., 0.], vec![0., 1., 0.]]
        );
    }
}
