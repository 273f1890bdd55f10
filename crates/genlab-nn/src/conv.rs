//! Convolution layers: [`Conv`] (2-D convolution) and [`ConvTranspose`] (2-D transposed
//! convolution), square kernels, dilation 1, groups 1, with a bias.
//!
//! The computation is genlab-kernels' im2col + GEMM kernels (Chellapilla, Puri & Simard
//! 2006; see `genlab_kernels::conv2d` and `genlab_kernels::conv_transpose2d`), which carry
//! their own backward passes: candle 0.11.1's CPU `conv2d` backward runs the input gradient
//! through a naive transposed convolution and the weight gradient through a convolution
//! with an image-sized kernel (the U-Net's fwd+bwd ran 5x slower).
//!
//! This file only holds the layers: parameter creation (by `candle_nn::conv2d` /
//! `candle_nn::conv_transpose2d`, so names are `weight` and `bias` and the initialisation is
//! PyTorch's), argument checks, and the fallback to candle's own op on a non-CPU device or a
//! non-f32 input, which computes the same function (`forward_reference`, what the tests
//! compare against). Layouts are PyTorch's: NCHW activations, `Conv` weight
//! `[C_out, C_in, k, k]`, `ConvTranspose` weight `[C_in, C_out, k, k]`, bias `[C_out]`.

use candle_core::{DType, Module, Tensor};
use candle_nn::{
    conv2d, conv_transpose2d, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig,
    VarBuilder,
};

/// Checks the layer arguments shared by [`Conv`] and [`ConvTranspose`].
fn check_config(
    what: &str,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
) -> candle_core::Result<()> {
    if c_in == 0 || c_out == 0 || k == 0 || stride == 0 {
        candle_core::bail!(
            "{what}: channels ({c_in} -> {c_out}), kernel ({k}) and stride ({stride}) must be positive"
        );
    }
    Ok(())
}

/// Whether `x` runs through genlab-kernels (CPU f32) rather than candle's op.
fn use_kernels(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// A square-kernel 2-D convolution with bias (`groups = 1`, `dilation = 1`).
#[derive(Debug, Clone)]
pub struct Conv {
    inner: Conv2d,
    c_in: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv {
    /// Parameters `weight` `[c_out, c_in, k, k]` and `bias` `[c_out]` under `vb`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        check_config("conv", c_in, c_out, k, stride)?;
        let cfg = Conv2dConfig {
            padding: pad,
            stride,
            // dilation 1, groups 1: the only case the fast kernels implement (and all we use).
            ..Default::default()
        };
        Ok(Self {
            inner: conv2d(c_in, c_out, k, cfg, vb)?,
            c_in,
            k,
            stride,
            pad,
        })
    }

    /// `[B, C_in, H, W]` -> `[B, C_out, (H + 2p - k)/s + 1, (W + 2p - k)/s + 1]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !use_kernels(x) {
            return self.forward_reference(x);
        }
        let (b, c, h, w) = x.dims4()?;
        if c != self.c_in {
            candle_core::bail!("conv: input has {c} channels, expected {}", self.c_in);
        }
        if h + 2 * self.pad < self.k || w + 2 * self.pad < self.k || b == 0 {
            candle_core::bail!(
                "conv: input {b}x{c}x{h}x{w} is empty or smaller than the {k}x{k} kernel",
                k = self.k
            );
        }
        genlab_kernels::conv2d(
            x,
            self.inner.weight(),
            self.inner.bias(),
            self.stride,
            self.pad,
        )
    }

    /// The kernel `[c_out, c_in, k, k]`.
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    /// `(stride, padding)`.
    pub fn stride_pad(&self) -> (usize, usize) {
        (self.stride, self.pad)
    }

    /// candle's own convolution with the same parameters (the reference the tests compare to).
    pub fn forward_reference(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.inner.forward(x)
    }
}

/// A square-kernel 2-D transposed convolution with bias (`output_padding = 0`,
/// `dilation = 1`, `groups = 1`): the adjoint of a [`Conv`] with the same kernel, stride
/// and padding, e.g. `k 4, s 2, p 1` doubles the spatial size.
#[derive(Debug, Clone)]
pub struct ConvTranspose {
    inner: ConvTranspose2d,
    c_in: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl ConvTranspose {
    /// Parameters `weight` `[c_in, c_out, k, k]` and `bias` `[c_out]` under `vb`, both
    /// `Uniform(±1/(sqrt(c_out)·k))` as `candle_nn::conv_transpose2d` initialises them.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        check_config("conv_transpose", c_in, c_out, k, stride)?;
        let cfg = ConvTranspose2dConfig {
            padding: pad,
            stride,
            output_padding: 0,
            dilation: 1,
        };
        Ok(Self {
            inner: conv_transpose2d(c_in, c_out, k, cfg, vb)?,
            c_in,
            k,
            stride,
            pad,
        })
    }

    /// `[B, C_in, H, W]` -> `[B, C_out, (H - 1)s - 2p + k, (W - 1)s - 2p + k]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !use_kernels(x) {
            return self.forward_reference(x);
        }
        let (b, c, h, w) = x.dims4()?;
        if c != self.c_in {
            candle_core::bail!(
                "conv_transpose: input has {c} channels, expected {}",
                self.c_in
            );
        }
        let out = |n: usize| (n.max(1) - 1) * self.stride + self.k;
        if b == 0 || h == 0 || w == 0 || out(h) <= 2 * self.pad || out(w) <= 2 * self.pad {
            candle_core::bail!(
                "conv_transpose: input {b}x{c}x{h}x{w} is empty or too small for padding {}",
                self.pad
            );
        }
        genlab_kernels::conv_transpose2d(
            x,
            self.inner.weight(),
            self.inner.bias(),
            self.stride,
            self.pad,
        )
    }

    /// candle's own transposed convolution plus bias (the reference the tests compare to).
    pub fn forward_reference(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.inner.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use genlab_core::{ParamStore, Rng};

    /// Relative agreement with candle's op (f32 sums in a different order).
    const TOL: f32 = 1e-4;

    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// Parameters as candle_nn::conv_transpose2d creates them; forward and the gradients of
    /// the input, weight and bias equal candle's transposed convolution.
    #[test]
    fn conv_transpose_matches_candle() {
        // (c_in, c_out, k, stride, pad, h, w)
        for (ci, co, k, s, p, h, w) in [
            (5, 3, 4, 2, 1, 7, 5),
            (3, 6, 3, 1, 1, 5, 6),
            (2, 3, 3, 2, 0, 4, 3),
        ] {
            let store = ParamStore::new(1, &Device::Cpu);
            let layer = ConvTranspose::new(ci, co, k, s, p, store.vb()).unwrap();
            let vars = store.vars();
            let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
            assert!(
                names.contains(&"weight") && names.contains(&"bias"),
                "{names:?}"
            );
            let bound = 1.0 / (co as f32).sqrt() / k as f32;
            for (name, v) in &vars {
                let want: &[usize] = if name == "weight" {
                    &[ci, co, k, k]
                } else {
                    &[co]
                };
                assert_eq!(v.dims(), want, "{name}");
                let m = v
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(m <= bound, "{name}: {m} outside candle_nn's bound {bound}");
            }
            let x = Var::from_tensor(
                &Rng::new(2)
                    .normal_tensor(&[3, ci, h, w], &Device::Cpu)
                    .unwrap(),
            )
            .unwrap();
            let what = format!("conv_transpose {ci}->{co} k{k} s{s} p{p} on {h}x{w}");
            let yf = layer.forward(x.as_tensor()).unwrap();
            let yr = layer.forward_reference(x.as_tensor()).unwrap();
            assert_eq!(
                yf.dims(),
                &[3, co, (h - 1) * s + k - 2 * p, (w - 1) * s + k - 2 * p]
            );
            let d = max_rel_diff(&yf, &yr);
            assert!(d < TOL, "{what}: outputs differ by {d}");
            let r = Rng::new(7).normal_tensor(yr.dims(), &Device::Cpu).unwrap();
            let gf = (yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (yr * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let mut all = vars.clone();
            all.push(("input".into(), x.clone()));
            for (name, v) in all {
                let d = max_rel_diff(
                    gf.get(v.as_tensor()).unwrap(),
                    gr.get(v.as_tensor()).unwrap(),
                );
                assert!(d < TOL, "{what}: gradient of {name} differs by {d}");
            }
        }
        let store = ParamStore::new(1, &Device::Cpu);
        assert!(ConvTranspose::new(0, 3, 3, 1, 0, store.vb()).is_err());
    }
}
