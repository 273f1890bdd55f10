//! Time-conditioned MLP noise predictor for low-dimensional (toy) data.
//!
//! The ε-prediction network of Ho et al. 2020, "Denoising Diffusion Probabilistic Models"
//! (arXiv:2006.11239), reduced to a multilayer perceptron for 2-D toy distributions such as
//! the 8 gaussians. The timestep enters through the sinusoidal embedding of Vaswani et al.
//! 2017 (arXiv:1706.03762) followed by a 2-layer SiLU MLP, the same time pathway as the
//! DDPM U-Net; its output is projected and *added* to every hidden layer of the data MLP
//! (the way the U-Net's ResNet blocks receive it). SiLU (Elfwing et al. 2018,
//! arXiv:1702.03118) is the activation throughout.
//!
//! ```text
//! temb = silu(lin2(silu(lin1(sinusoidal(t)))))             [B, hidden]
//! h    = silu(in(x) + temb_proj[0](temb))                   hidden layer 1
//! h    = silu(hidden[i-1](h) + temb_proj[i](temb))          hidden layers 2..=layers
//! out  = out(h)                                             [B, D]
//! ```
//!
//! Parameter names: `time.lin1`, `time.lin2`, `in`, `hidden.{i}`, `temb_proj.{i}`, `out`.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::linear::{silu, Linear};
use serde::{Deserialize, Serialize};

use crate::embedding::{timestep_embedding, DEFAULT_MAX_PERIOD};

/// Sizes of [`MlpDenoiser`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MlpDenoiserConfig {
    /// Width of every hidden layer.
    pub hidden: usize,
    /// Number of hidden layers (each receives the time embedding).
    pub layers: usize,
    /// Size of the sinusoidal timestep embedding (even).
    pub time_dim: usize,
}

impl Default for MlpDenoiserConfig {
    fn default() -> Self {
        Self {
            // 256: ample capacity for 2-D mixtures, still ~0.2M parameters (fast on CPU).
            hidden: 256,
            // 3: enough depth to bend space around 8 modes; deeper adds little on 2-D data.
            layers: 3,
            // 64: 32 frequencies resolve 1000 timesteps comfortably.
            time_dim: 64,
        }
    }
}

impl MlpDenoiserConfig {
    /// Checks the sizes; `Config` errors say which field is wrong.
    pub fn validate(&self) -> genlab_core::Result<()> {
        if self.hidden == 0 {
            return Err(genlab_core::Error::Config(
                "mlp.hidden must be at least 1".into(),
            ));
        }
        if self.layers == 0 {
            return Err(genlab_core::Error::Config(
                "mlp.layers must be at least 1 hidden layer".into(),
            ));
        }
        if self.time_dim == 0 || self.time_dim % 2 != 0 {
            return Err(genlab_core::Error::Config(format!(
                "mlp.time_dim must be a positive even number (half cos, half sin), got {}",
                self.time_dim
            )));
        }
        Ok(())
    }
}

/// ε-prediction MLP: `x` `[B, D]`, `t` `[B]` -> `[B, D]`.
#[derive(Debug, Clone)]
pub struct MlpDenoiser {
    time_dim: usize,
    data_dim: usize,
    time_lin1: Linear,
    time_lin2: Linear,
    input: Linear,
    hidden: Vec<Linear>,
    temb_proj: Vec<Linear>,
    out: Linear,
}

impl MlpDenoiser {
    /// Creates the parameters under `vb` (names in the module docs).
    pub fn new(
        cfg: &MlpDenoiserConfig,
        data_dim: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        cfg.validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        if data_dim == 0 {
            candle_core::bail!("MlpDenoiser: data_dim must be at least 1");
        }
        let h = cfg.hidden;
        let time_lin1 = Linear::new(cfg.time_dim, h, vb.pp("time").pp("lin1"))?;
        let time_lin2 = Linear::new(h, h, vb.pp("time").pp("lin2"))?;
        let input = Linear::new(data_dim, h, vb.pp("in"))?;
        let hidden = (0..cfg.layers - 1)
            .map(|i| Linear::new(h, h, vb.pp("hidden").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let temb_proj = (0..cfg.layers)
            .map(|i| Linear::new(h, h, vb.pp("temb_proj").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let out = Linear::new(h, data_dim, vb.pp("out"))?;
        Ok(Self {
            time_dim: cfg.time_dim,
            data_dim,
            time_lin1,
            time_lin2,
            input,
            hidden,
            temb_proj,
            out,
        })
    }

    /// `x` `[B, D]`, `t` `[B]` f32 (diffusion timestep as a float, e.g. 0..999) -> `[B, D]`.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, t, None)
    }

    /// Width of the time embedding, which a condition embedding added to it must have.
    pub fn temb_dim(&self) -> usize {
        self.time_lin2.out_features()
    }

    /// [`MlpDenoiser::forward`] with `extra` (`[B, temb_dim]`, e.g. a class embedding) added
    /// to the time embedding before its last activation (as diffusers adds its class
    /// embedding).
    pub fn forward_with(
        &self,
        x: &Tensor,
        t: &Tensor,
        extra: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, d) = x.dims2()?;
        if d != self.data_dim {
            candle_core::bail!(
                "MlpDenoiser: x has {d} features, the model expects {}",
                self.data_dim
            );
        }
        if t.dims() != [b] {
            candle_core::bail!("MlpDenoiser: t must have shape [{b}], got {:?}", t.dims());
        }
        // [B] -> [B, time_dim] -> [B, hidden]
        let temb = timestep_embedding(t, self.time_dim, DEFAULT_MAX_PERIOD)?;
        let temb = silu(&self.time_lin1.forward(&temb)?)?;
        let temb = self.time_lin2.forward(&temb)?;
        let temb = match extra {
            Some(e) => silu(&(temb + e)?)?,
            None => silu(&temb)?,
        };
        // [B, D] -> [B, hidden]
        let mut h = silu(&(self.input.forward(x)? + self.temb_proj[0].forward(&temb)?)?)?;
        for (lin, proj) in self.hidden.iter().zip(&self.temb_proj[1..]) {
            h = silu(&(lin.forward(&h)? + proj.forward(&temb)?)?)?;
        }
        // [B, hidden] -> [B, D]
        self.out.forward(&h)
    }
}
