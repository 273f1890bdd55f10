//! Fully connected layer on genlab-kernels' fused GEMM kernels.
//!
//! Same parameters and initialisation as `candle_nn::linear` (`weight [out, in]`: Kaiming
//! normal, `bias [out]`: uniform ±1/√in, PyTorch's scheme for the bias), so checkpoints are
//! interchangeable; the forward and backward run `genlab_kernels::linear` (one GEMM forward,
//! two GEMMs and a column sum backward) instead of candle's matmul + broadcast add.

use candle_core::Tensor;
use candle_nn::VarBuilder;

/// `y = x Wᵀ + b` over the last dimension of `x`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Parameters `weight [c_out, c_in]` and `bias [c_out]` under `vb`.
    pub fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        if c_in == 0 || c_out == 0 {
            candle_core::bail!("linear: sizes must be positive, got {c_in} -> {c_out}");
        }
        let inner = candle_nn::linear(c_in, c_out, vb)?;
        Ok(Self {
            weight: inner.weight().clone(),
            bias: inner.bias().expect("candle_nn::linear has a bias").clone(),
        })
    }

    /// Like [`Linear::new`], with weights drawn from N(0, std^2) (bias as usual).
    pub fn with_weight_std(
        c_in: usize,
        c_out: usize,
        std: f64,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        if c_in == 0 || c_out == 0 {
            candle_core::bail!("linear: sizes must be positive, got {c_in} -> {c_out}");
        }
        let weight = vb.get_with_hints(
            (c_out, c_in),
            "weight",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        let bound = 1.0 / (c_in as f64).sqrt();
        let bias = vb.get_with_hints(
            c_out,
            "bias",
            candle_nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        Ok(Self { weight, bias })
    }

    /// Like [`Linear::new`], with the weight from Glorot & Bengio's uniform
    /// `±sqrt(6 / (in + out))` ("Xavier", 2010) and a zero bias: DiT's and timm's
    /// initialisation of transformer layers.
    pub fn xavier(c_in: usize, c_out: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        if c_in == 0 || c_out == 0 {
            candle_core::bail!("linear: sizes must be positive, got {c_in} -> {c_out}");
        }
        let a = (6.0 / (c_in + c_out) as f64).sqrt();
        let weight = vb.get_with_hints(
            (c_out, c_in),
            "weight",
            candle_nn::Init::Uniform { lo: -a, up: a },
        )?;
        let bias = vb.get_with_hints(c_out, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    /// Like [`Linear::new`], with weight and bias zero: an output that starts switched off
    /// (DiT's adaLN-Zero modulations and final layer).
    pub fn zeros(c_in: usize, c_out: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        if c_in == 0 || c_out == 0 {
            candle_core::bail!("linear: sizes must be positive, got {c_in} -> {c_out}");
        }
        let weight = vb.get_with_hints((c_out, c_in), "weight", candle_nn::Init::Const(0.0))?;
        let bias = vb.get_with_hints(c_out, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    /// `[..., c_in]` -> `[..., c_out]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        genlab_kernels::linear(x, &self.weight, &self.bias)
    }

    /// Output features (`c_out`).
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

/// SiLU through genlab-kernels' one-pass kernels (candle's `silu` on other devices/dtypes).
pub fn silu(x: &Tensor) -> candle_core::Result<Tensor> {
    genlab_kernels::silu(x)
}

/// ReLU through genlab-kernels' one-pass kernels (candle's `relu` on other devices/dtypes).
pub fn relu(x: &Tensor) -> candle_core::Result<Tensor> {
    genlab_kernels::relu(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};
    use genlab_core::{ParamStore, Rng};

    /// Same function as candle_nn's layer with the same parameters.
    const TOL: f32 = 1e-5;

    #[test]
    fn same_parameters_and_function_as_candle_nn() {
        let ps = ParamStore::new(3, &Device::Cpu);
        let ours = Linear::new(5, 7, ps.vb().pp("l")).unwrap();
        let names: Vec<String> = ps.vars().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["l.bias", "l.weight"]);
        let theirs = candle_nn::Linear::new(ours.weight().clone(), Some(ours.bias().clone()));
        let x = Rng::new(1).normal_tensor(&[3, 4, 5], &Device::Cpu).unwrap();
        let d = (ours.forward(&x).unwrap() - theirs.forward(&x).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < TOL, "{d}");
    }
}
