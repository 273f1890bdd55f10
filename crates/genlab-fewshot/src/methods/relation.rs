//! Relation Network: Sung, Yang, Zhang, Xiang, Torr & Hospedales 2018, "Learning to
//! Compare: Relation Network for Few-Shot Learning", arXiv:1711.06025.
//!
//! An embedding module fφ gives feature maps; a class's map is the element-wise sum of its
//! shots' maps (section 3.3, K-shot); each query's map is concatenated with each class's
//! along the channels, and the relation module gφ scores the pair:
//! `r_ij = gφ(C(fφ(x_i), fφ(x_j)))` in [0, 1] (eq. 1). Training regresses the scores to
//! 1 for matching pairs and 0 otherwise, `Σ (r_ij - 1(y_i == y_j))²` (eq. 2, MSE). The
//! paper's Omniglot architecture: four conv blocks of 64 filters, pooling in the first two
//! only (28 -> 7), then a relation module of two conv blocks with pooling (7 -> 3 -> 1),
//! a fully connected layer of 8 units with ReLU and one with a sigmoid (section 4.1,
//! Figure 2). Here the embedding is the conv-4 with two pooled blocks (`embedding.blocks
//! = 2`); GroupNorm stands in for BatchNorm as everywhere in this crate.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use genlab_core::{ParamStore, Result};
use genlab_nn::Linear;

use super::{parse_config, MetaLoss, Method, MethodEntry, Spec, Task, TaskKind};
use crate::embed::{Conv4, Conv4Config};

/// Settings of [`Relation`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The embedding module (its output maps feed the relation module).
    pub embedding: Conv4Config,
    /// Conv blocks of the relation module.
    pub relation_blocks: usize,
    /// Width of the relation module's hidden fully connected layer.
    pub hidden: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // Two pooled blocks: 28x28 -> 7x7 maps, the paper's embedding output size.
            embedding: Conv4Config {
                blocks: 2,
                ..Conv4Config::default()
            },
            // 2: the paper's relation module (7 -> 3 -> 1).
            relation_blocks: 2,
            // 8: the paper's.
            hidden: 8,
        }
    }
}

pub const ENTRY: MethodEntry = MethodEntry {
    name: "relation",
    paper: "Sung et al. 2018, Learning to Compare: Relation Network for Few-Shot Learning, arXiv:1711.06025",
    description: "a learned relation module scores (query, class) feature-map pairs, trained by MSE to 0/1",
    kind: TaskKind::Classification,
    double_backward: |_| false,
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build: |spec| Ok(Box::new(Relation::new(spec)?)),
};

/// See the module documentation.
pub struct Relation {
    store: ParamStore,
    embed: Conv4,
    relate: Conv4,
    fc1: Linear,
    fc2: Linear,
}

impl Relation {
    pub fn new(spec: &Spec) -> Result<Self> {
        let cfg: Config = parse_config(spec.config)?;
        let store = ParamStore::new(spec.seed, &spec.device);
        let vb = store.vb();
        let embed = Conv4::new(&cfg.embedding, &spec.input, vb.pp("embed"))?;
        // The embedding's output maps: [channels, side, side].
        let mut side = [spec.input[1], spec.input[2]];
        for _ in 0..cfg.embedding.blocks {
            side = [side[0] / 2, side[1] / 2];
        }
        let c = cfg.embedding.channels;
        let rel_cfg = Conv4Config {
            blocks: cfg.relation_blocks,
            ..cfg.embedding.clone()
        };
        let relate = Conv4::new(&rel_cfg, &[2 * c, side[0], side[1]], vb.pp("relate"))?;
        let fc1 = Linear::new(relate.out_dim(), cfg.hidden, vb.pp("fc1"))?;
        let fc2 = Linear::new(cfg.hidden, 1, vb.pp("fc2"))?;
        Ok(Self {
            store,
            embed,
            relate,
            fc1,
            fc2,
        })
    }

    /// Relation scores `[M, N]` in [0, 1] of every query with every class.
    fn scores(&self, ep: &crate::Episode) -> Result<Tensor> {
        let n = ep.shape.ways;
        let fs = self.embed.forward_map(&ep.support)?; // [NK, C, h, w]
        let (_, c, h, w) = fs.dims4()?;
        // Class-major shots: [NK, C, h, w] -> [N, K, C, h, w] -> sum over K.
        let classes = fs.reshape((n, (), c, h, w))?.sum(1)?; // [N, C, h, w]
        let fq = self.embed.forward_map(&ep.query)?; // [M, C, h, w]
        let m = fq.dim(0)?;
        // Every (query, class) pair, concatenated along channels: [M*N, 2C, h, w].
        let q = fq.unsqueeze(1)?.broadcast_as((m, n, c, h, w))?;
        let k = classes.unsqueeze(0)?.broadcast_as((m, n, c, h, w))?;
        let pairs = Tensor::cat(&[&k, &q], 2)?.reshape((m * n, 2 * c, h, w))?;
        let r = self.relate.forward(&pairs)?; // [M*N, D]
        let r = genlab_nn::relu(&self.fc1.forward(&r)?)?;
        let r = candle_nn::ops::sigmoid(&self.fc2.forward(&r)?)?; // [M*N, 1], eq. 1
        Ok(r.reshape((m, n))?)
    }
}

impl Method for Relation {
    fn meta_loss(&mut self, tasks: &[Task]) -> Result<MetaLoss> {
        super::mean_over_episodes(tasks, "relation", |ep| {
            let r = self.scores(ep)?;
            let target = super::matching::one_hot(&ep.query_labels, ep.shape.ways)?;
            // Eq. 2: squared error of the scores to 1 (same class) and 0.
            let loss = r.sub(&target)?.sqr()?.mean_all()?;
            Ok((loss, super::accuracy(&r, &ep.query_labels)?))
        })
    }

    fn evaluate(&self, task: &Task) -> Result<f64> {
        let ep = super::episode(task, "relation")?;
        super::accuracy(&self.scores(ep)?.detach(), &ep.query_labels)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }
}
