//! Prototypical Networks: Snell, Swersky & Zemel 2017, "Prototypical Networks for Few-shot
//! Learning", arXiv:1703.05175.
//!
//! An embedding fφ (the conv-4, [`crate::embed`]) maps each support example; a class's
//! prototype is the mean of its embedded shots, `c_k = 1/|S_k| Σ fφ(x_i)` (eq. 1); a query
//! is classified by a softmax over negative squared Euclidean distances to the prototypes,
//! `pφ(y = k | x) ∝ exp(-‖fφ(x) - c_k‖²)` (eq. 2); training minimises the query
//! cross-entropy `J(φ) = -log pφ(y = k | x)` averaged over the episode's queries
//! (Algorithm 1).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use genlab_core::{ParamStore, Result};

use super::{
    cross_entropy_and_accuracy, parse_config, MetaLoss, Method, MethodEntry, Spec, Task, TaskKind,
};
use crate::embed::{Conv4, Conv4Config};

/// Settings of [`ProtoNet`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The embedding network.
    pub embedding: Conv4Config,
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "protonet",
    paper:
        "Snell, Swersky & Zemel 2017, Prototypical Networks for Few-shot Learning, arXiv:1703.05175",
    description:
        "class prototypes = mean embedded shots; queries by softmax over negative squared distances",
    kind: TaskKind::Classification,
    double_backward: |_| false,
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(ProtoNet::new(spec)?)),
};

/// See the module documentation.
pub struct ProtoNet {
    store: ParamStore,
    net: Conv4,
}

impl ProtoNet {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        let store = ParamStore::new(spec.seed, &spec.device);
        let net = Conv4::new(&cfg.embedding, &spec.input, store.vb().pp("embed"))?;
        Ok(Self { store, net })
    }

    /// Query logits `[N*Q, N]`: minus the squared distances to the prototypes.
    pub fn logits(&self, support: &Tensor, n_ways: usize, query: &Tensor) -> Result<Tensor> {
        let zs = self.net.forward(support)?; // [N*K, D]
        let d = zs.dim(1)?;
        // Class-major support: [N*K, D] -> [N, K, D] -> mean over K (eq. 1).
        let protos = zs.reshape((n_ways, (), d))?.mean(1)?; // [N, D]
        let zq = self.net.forward(query)?; // [M, D]
        Ok(neg_sq_distances(&zq, &protos)?)
    }
}

/// `-‖a_i - b_j‖²` for `a` `[M, D]`, `b` `[N, D]` -> `[M, N]`, as `2 a·b - ‖a‖² - ‖b‖²`.
pub fn neg_sq_distances(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let aa = a.sqr()?.sum_keepdim(1)?; // [M, 1]
    let bb = b.sqr()?.sum_keepdim(1)?.t()?; // [1, N]
    let ab = a.matmul(&b.t()?)?; // [M, N]
    ab.affine(2.0, 0.0)?.broadcast_sub(&aa)?.broadcast_sub(&bb)
}

impl Method for ProtoNet {
    fn meta_loss(&mut self, tasks: &[Task]) -> Result<MetaLoss> {
        super::mean_over_episodes(tasks, "protonet", |ep| {
            let logits = self.logits(&ep.support, ep.shape.ways, &ep.query)?;
            cross_entropy_and_accuracy(&logits, &ep.query_labels)
        })
    }

    fn evaluate(&self, task: &Task) -> Result<f64> {
        let ep = super::episode(task, "protonet")?;
        let logits = self.logits(&ep.support, ep.shape.ways, &ep.query)?.detach();
        Ok(cross_entropy_and_accuracy(&logits, &ep.query_labels)?.1)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    const TOL: f64 = 1e-4;

    #[test]
    fn distances_match_brute_force() {
        let mut rng = genlab_core::Rng::new(4);
        let a = rng.normal_tensor(&[3, 5], &Device::Cpu).unwrap();
        let b = rng.normal_tensor(&[4, 5], &Device::Cpu).unwrap();
        let got = neg_sq_distances(&a, &b).unwrap().to_vec2::<f32>().unwrap();
        let (av, bv) = (a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
        for i in 0..3 {
            for j in 0..4 {
                let d: f32 = (0..5).map(|k| (av[i][k] - bv[j][k]).powi(2)).sum();
                assert!(
                    (got[i][j] + d).abs() as f64 <= TOL,
                    "{} vs {}",
                    got[i][j],
                    -d
                );
            }
        }
    }
}
