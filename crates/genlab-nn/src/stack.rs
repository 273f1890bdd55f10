//! A plain multilayer perceptron: [`Linear`] layers with an activation between them (none
//! after the last). The building block of the VAE and GAN networks for vector data.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::activation::leaky_relu;
use crate::Linear;

/// The nonlinearity between layers.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Act {
    #[default]
    Relu,
    /// Leaky ReLU with slope 0.2 (Radford et al. 2016's discriminators).
    LeakyRelu,
}

/// Negative slope of [`Act::LeakyRelu`] (DCGAN, Radford, Metz & Chintala 2016, Sec. 3).
pub const LEAKY_SLOPE: f64 = 0.2;

impl Act {
    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Act::Relu => crate::relu(x),
            Act::LeakyRelu => leaky_relu(x, LEAKY_SLOPE),
        }
    }

    /// The derivative at `x`, as a constant mask.
    pub fn grad(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Act::Relu => crate::activation::relu_grad(x),
            Act::LeakyRelu => crate::activation::leaky_relu_grad(x, LEAKY_SLOPE),
        }
    }
}

/// `sizes[0] -> sizes[1] -> ... -> sizes[n]`, layers named `l0`, `l1`, ...
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
    act: Act,
}

impl Mlp {
    pub fn new(sizes: &[usize], act: Act, vb: VarBuilder) -> candle_core::Result<Self> {
        Self::build(sizes, act, None, vb)
    }

    /// Like [`Mlp::new`], with the last layer's weights drawn with std `gain / sqrt(fan_in)`
    /// (a small gain starts a distribution head near its neutral value).
    pub fn with_small_head(
        sizes: &[usize],
        act: Act,
        gain: f64,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Self::build(sizes, act, Some(gain), vb)
    }

    fn build(
        sizes: &[usize],
        act: Act,
        head_gain: Option<f64>,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        if sizes.len() < 2 {
            candle_core::bail!("an MLP needs at least an input and an output size, got {sizes:?}");
        }
        let n = sizes.len() - 1;
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let vb = vb.pp(format!("l{i}"));
                match head_gain {
                    Some(g) if i + 1 == n => {
                        Linear::with_weight_std(w[0], w[1], g / (w[0] as f64).sqrt(), vb)
                    }
                    _ => Linear::new(w[0], w[1], vb),
                }
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { layers, act })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.forward_trace(x)?.0)
    }

    /// The output and the pre-activations of every hidden layer (for explicit gradients).
    pub fn forward_trace(&self, x: &Tensor) -> candle_core::Result<(Tensor, Vec<Tensor>)> {
        let mut h = x.clone();
        let mut pre = Vec::with_capacity(self.layers.len() - 1);
        for (i, l) in self.layers.iter().enumerate() {
            let p = l.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = self.act.apply(&p)?;
                pre.push(p);
            } else {
                h = p;
            }
        }
        Ok((h, pre))
    }

    /// The gradient of `sum(out * g_out)` with respect to the input, as a differentiable
    /// graph in the weights (a vector-Jacobian product written with forward ops): `g_out`
    /// `[B, out]`, `pre` from [`Mlp::forward_trace`] on the same input.
    pub fn input_grad(&self, g_out: &Tensor, pre: &[Tensor]) -> candle_core::Result<Tensor> {
        let mut g = g_out.clone();
        for (i, l) in self.layers.iter().enumerate().rev() {
            if i + 1 < self.layers.len() {
                g = (g * self.act.grad(&pre[i])?)?;
            }
            g = g.matmul(l.weight())?; // [B, out] x [out, in]
        }
        Ok(g)
    }

    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }
}
