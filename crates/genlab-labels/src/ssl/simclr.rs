//! SimCLR (Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive
//! Learning of Visual Representations", arXiv:2002.05709): two random views of each image
//! ([`crate::augment::simclr`]), the encoder, a projection head `g` (dense, ReLU, dense;
//! section 2.1), and the NT-Xent loss ([`super::nt_xent`]) between the projections. The
//! representation kept is the encoder's output before `g` (section 4.2).

use candle_core::Tensor;
use genlab_core::{Result, Rng};
use genlab_nn::{Act, Classifier, Mlp};
use serde::{Deserialize, Serialize};

use super::nt_xent::nt_xent;
use super::{parse_config, two_views, Method, MethodEntry, Spec};

pub const ENTRY: MethodEntry = MethodEntry {
    name: "simclr",
    paper: "Chen, Kornblith, Norouzi & Hinton 2020, arXiv:2002.05709",
    description:
        "contrast two augmented views of each image against the rest of the batch (NT-Xent)",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    build,
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// NT-Xent temperature (0.5: the paper's CIFAR-10 setting, appendix B.9).
    pub temperature: f64,
    /// Width of the projection head's hidden layer and of its output.
    pub projection: [usize; 2],
}

impl Default for Config {
    fn default() -> Self {
        Self {
            temperature: 0.5,
            // 128/64: the paper's 2048/128 scaled to a 128-wide encoder.
            projection: [128, 64],
        }
    }
}

/// The SimCLR pretext task. It owns a handle on the encoder (a [`Classifier`] clone shares
/// the trained variables), so the `simclr-step` bench workload can keep it.
pub(crate) struct SimClr {
    enc: Classifier,
    head: Mlp,
    shape: [usize; 3],
    tau: f64,
    device: candle_core::Device,
}

fn build<'a>(s: &Spec<'a>) -> Result<Box<dyn Method + 'a>> {
    Ok(Box::new(SimClr::new(s)?))
}

impl SimClr {
    pub(crate) fn new(s: &Spec<'_>) -> Result<Self> {
        let c: Config = parse_config(s.config)?;
        let f = s.encoder.config().features;
        let head = Mlp::new(
            &[f, c.projection[0], c.projection[1]],
            Act::Relu,
            s.params.vb().pp("projection"),
        )?;
        Ok(SimClr {
            enc: s.encoder.clone(),
            head,
            shape: s.shape,
            tau: c.temperature,
            device: s.device.clone(),
        })
    }
}

impl Method for SimClr {
    fn loss(&self, x: &[f32], b: usize, rng: &mut Rng) -> Result<Tensor> {
        let z: Vec<Tensor> = two_views(x, b, self.shape, &self.device, rng)?
            .iter()
            .map(|t| -> Result<Tensor> { Ok(self.head.forward(&self.enc.features(t)?)?) })
            .collect::<Result<_>>()?;
        nt_xent(&z[0], &z[1], self.tau)
    }
}
