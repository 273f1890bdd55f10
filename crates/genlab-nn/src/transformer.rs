//! Transformer blocks over token sequences `[B, N, C]`: layer normalisation, multi-head
//! self-attention with an optional additive mask, the two-layer MLP, and the residual block
//! in its pre-norm and post-norm arrangements.
//!
//! Vaswani et al. 2017, "Attention Is All You Need" (arXiv:1706.03762): Eq. 1 (scaled
//! dot-product attention), Sec. 3.2.2 (multi-head), Sec. 3.3 (position-wise MLP). The
//! original block is post-norm, `x = LN(x + Sublayer(x))` (BERT, Devlin et al. 2019,
//! arXiv:1810.04805, keeps it); GPT-2 / CLIP / ViT use pre-norm, `x = x + Sublayer(LN(x))`
//! (Radford et al. 2019; Radford et al. 2021, arXiv:2103.00020; Dosovitskiy et al. 2021,
//! arXiv:2010.11929). [`TransformerBlockConfig::pre_norm`] picks one.
//!
//! Every op passes gradients: LayerNorm and the softmax are genlab-kernels' custom ops
//! (candle 0.11.1's fused `LayerNorm`, `softmax_last_dim` and `sdpa` pass none). Unmasked
//! attention runs the fused, memory-lean `genlab_kernels::attention`; with a mask the
//! scores `[B, H, N, N]` are materialised, the mask added, and the row softmax applied.
//!
//! Parameter names (under the block's prefix): `ln1.{weight,bias}`, `attn.qkv.{weight,bias}`
//! (`[3C, C]`: rows q, then k, then v; head `h` owns rows `h·d .. (h+1)·d` of each part),
//! `attn.out.{weight,bias}`, `ln2.{weight,bias}`, `mlp.fc1`, `mlp.fc2`. Checkpoints with
//! separate q/k/v projections (BERT, Hugging Face CLIP) load by concatenating them.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::Linear;

/// The additive mask value of a blocked position: `exp` of it underflows to exactly zero
/// after the row maximum is subtracted, and it stays finite (no `inf - inf` NaN).
pub const MASKED: f32 = -1e9;

/// Layer normalisation over the last dimension (Ba, Kiros & Hinton 2016,
/// arXiv:1607.06450), with learned `weight` (init 1) and `bias` (init 0).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }

    /// `[..., C]` -> `[..., C]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        genlab_kernels::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// The MLP's nonlinearity.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MlpAct {
    /// `x Φ(x)` with the exact normal CDF (BERT, ViT, open_clip's text tower).
    #[default]
    GeluErf,
    /// The tanh approximation of GELU (Hendrycks & Gimpel 2016, arXiv:1606.08415, Sec. 2).
    GeluTanh,
    /// `x σ(1.702 x)`, OpenAI CLIP's "QuickGELU".
    QuickGelu,
}

impl MlpAct {
    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            MlpAct::GeluErf => genlab_kernels::gelu_erf(x),
            MlpAct::GeluTanh => genlab_kernels::gelu_tanh(x),
            MlpAct::QuickGelu => genlab_kernels::quick_gelu(x),
        }
    }
}

/// Multi-head self-attention with packed `qkv` and output projections.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    dim: usize,
    heads: usize,
    qkv: Linear,
    out: Linear,
}

impl SelfAttention {
    /// `heads` must divide `dim`.
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        if heads == 0 || dim % heads != 0 {
            candle_core::bail!(
                "attention: heads ({heads}) must be positive and divide the width ({dim})"
            );
        }
        Ok(Self {
            dim,
            heads,
            qkv: Linear::new(dim, 3 * dim, vb.pp("qkv"))?,
            out: Linear::new(dim, dim, vb.pp("out"))?,
        })
    }

    /// Like [`SelfAttention::new`], with Xavier-uniform weights and zero biases
    /// ([`Linear::xavier`]: DiT's and timm's initialisation).
    pub fn xavier(dim: usize, heads: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        if heads == 0 || dim % heads != 0 {
            candle_core::bail!(
                "attention: heads ({heads}) must be positive and divide the width ({dim})"
            );
        }
        Ok(Self {
            dim,
            heads,
            qkv: Linear::xavier(dim, 3 * dim, vb.pp("qkv"))?,
            out: Linear::xavier(dim, dim, vb.pp("out"))?,
        })
    }

    /// `x [B, N, C]` -> `[B, N, C]`. `mask`, when given, is added to the scores before the
    /// softmax and must broadcast to `[B, H, N, N]` (see [`causal_mask`],
    /// [`key_padding_mask`]).
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        if c != self.dim {
            candle_core::bail!("attention: tokens have width {c}, expected {}", self.dim);
        }
        let (h, d) = (self.heads, c / self.heads);
        let scale = 1.0 / (d as f64).sqrt();
        let Some(mask) = mask else {
            // The packed qkv [B, N, 3C] read in place by one fused op.
            let o = genlab_kernels::attention_qkv_tokens(&self.qkv.forward(x)?, h, scale, false)?;
            return self.out.forward(&o);
        };
        // [B, N, 3C] -> [B, N, 3, H, d] -> [3, B, H, N, d]
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, n, 3, h, d))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        // each part [B, H, N, d] -> [BH, N, d]
        let part = |p: usize| qkv.get(p)?.reshape((b * h, n, d));
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        // [BH, N, d] @ [BH, d, N] -> [BH, N, N] -> [B, H, N, N] (+ mask)
        let s = (q.matmul(&k.t()?)? * scale)?
            .reshape((b, h, n, n))?
            .broadcast_add(mask)?;
        // [B, H, N, N] -> [BH, N, N] @ [BH, N, d] -> [BH, N, d]
        let o = genlab_kernels::softmax_last_dim(&s)?
            .reshape((b * h, n, n))?
            .matmul(&v)?;
        // [BH, N, d] -> [B, H, N, d] -> [B, N, H, d] -> [B, N, C]
        let o = o
            .reshape((b, h, n, d))?
            .transpose(1, 2)?
            .reshape((b, n, c))?;
        self.out.forward(&o)
    }

    /// Causal self-attention, `x [B, N, C]` -> `[B, N, C]`: token `i` attends tokens
    /// `0..=i`. Equals [`SelfAttention::forward`] with [`causal_mask`], without building the
    /// mask or the `[B, H, N, N]` scores (one fused op on the packed qkv).
    pub fn forward_causal(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, _, c) = x.dims3()?;
        if c != self.dim {
            candle_core::bail!("attention: tokens have width {c}, expected {}", self.dim);
        }
        let d = c / self.heads;
        let scale = 1.0 / (d as f64).sqrt();
        let o =
            genlab_kernels::attention_qkv_tokens(&self.qkv.forward(x)?, self.heads, scale, true)?;
        self.out.forward(&o)
    }
}

/// Additive causal mask `[1, 1, N, N]`: token `i` sees tokens `0..=i` (GPT, CLIP's text
/// tower).
pub fn causal_mask(n: usize, device: &Device) -> candle_core::Result<Tensor> {
    let v: Vec<f32> = (0..n * n)
        .map(|k| if k % n > k / n { MASKED } else { 0.0 })
        .collect();
    Tensor::from_vec(v, (1, 1, n, n), device)
}

/// Additive mask `[B, 1, 1, N]` from a `[B, N]` attention mask (1 = real token, 0 =
/// padding): padded keys are hidden from every query (BERT's extended attention mask).
pub fn key_padding_mask(valid: &Tensor) -> candle_core::Result<Tensor> {
    let (b, n) = valid.dims2()?;
    // (valid - 1) · (-MASKED): 0 where valid, MASKED where padding.
    ((valid.to_dtype(DType::F32)? - 1.0)? * (-MASKED as f64))?.reshape((b, 1, 1, n))
}

/// Position-wise MLP `fc2(act(fc1(x)))`.
#[derive(Debug, Clone)]
pub struct TransformerMlp {
    fc1: Linear,
    fc2: Linear,
    act: MlpAct,
}

impl TransformerMlp {
    pub fn new(
        dim: usize,
        hidden: usize,
        act: MlpAct,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            fc1: Linear::new(dim, hidden, vb.pp("fc1"))?,
            fc2: Linear::new(hidden, dim, vb.pp("fc2"))?,
            act,
        })
    }

    /// Like [`TransformerMlp::new`], with Xavier-uniform weights and zero biases.
    pub fn xavier(
        dim: usize,
        hidden: usize,
        act: MlpAct,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            fc1: Linear::xavier(dim, hidden, vb.pp("fc1"))?,
            fc2: Linear::xavier(hidden, dim, vb.pp("fc2"))?,
            act,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward(&self.act.apply(&self.fc1.forward(x)?)?)
    }
}

/// Shape and arrangement of one [`TransformerBlock`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransformerBlockConfig {
    pub dim: usize,
    pub heads: usize,
    /// MLP hidden width (4 · dim in every paper above).
    pub mlp_hidden: usize,
    /// Pre-norm (GPT-2, CLIP, ViT) or post-norm (the original transformer, BERT).
    pub pre_norm: bool,
    pub act: MlpAct,
    /// LayerNorm epsilon (1e-5 in CLIP and PyTorch's default; BERT uses 1e-12).
    pub eps: f64,
}

impl Default for TransformerBlockConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            heads: 4,
            mlp_hidden: 256,
            pre_norm: true,
            act: MlpAct::GeluErf,
            eps: 1e-5,
        }
    }
}

/// One residual transformer block: attention then MLP, each with a LayerNorm.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    ln1: LayerNorm,
    attn: SelfAttention,
    ln2: LayerNorm,
    mlp: TransformerMlp,
    pre_norm: bool,
}

impl TransformerBlock {
    pub fn new(cfg: &TransformerBlockConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        if cfg.mlp_hidden == 0 {
            candle_core::bail!("transformer block: the MLP width must be positive");
        }
        Ok(Self {
            ln1: LayerNorm::new(cfg.dim, cfg.eps, vb.pp("ln1"))?,
            attn: SelfAttention::new(cfg.dim, cfg.heads, vb.pp("attn"))?,
            ln2: LayerNorm::new(cfg.dim, cfg.eps, vb.pp("ln2"))?,
            mlp: TransformerMlp::new(cfg.dim, cfg.mlp_hidden, cfg.act, vb.pp("mlp"))?,
            pre_norm: cfg.pre_norm,
        })
    }

    /// `x [B, N, C]` -> `[B, N, C]`; `mask` as in [`SelfAttention::forward`].
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        self.forward_with(x, |h| self.attn.forward(h, mask))
    }

    /// [`TransformerBlock::forward`] with causal self-attention
    /// ([`SelfAttention::forward_causal`]).
    pub fn forward_causal(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, |h| self.attn.forward_causal(h))
    }

    /// The block around a given attention.
    fn forward_with(
        &self,
        x: &Tensor,
        attn: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        if self.pre_norm {
            let x = (x + attn(&self.ln1.forward(x)?)?)?;
            &x + self.mlp.forward(&self.ln2.forward(&x)?)?
        } else {
            let x = self.ln1.forward(&(x + attn(x)?)?)?;
            self.ln2.forward(&(&x + self.mlp.forward(&x)?)?)
        }
    }
}

/// Counts the FLOPs of one block's forward on `n` tokens (multiply-adds x 2): the
/// projections, the two attention products and the MLP.
pub fn block_flops(cfg: &TransformerBlockConfig, n: usize) -> u64 {
    let (c, n, m) = (cfg.dim as u64, n as u64, cfg.mlp_hidden as u64);
    2 * (n * c * 3 * c + 2 * n * n * c + n * c * c + 2 * n * c * m)
}

/// The last-axis mean and variance reference used by tests (f64), so the blocks can be
/// checked against a plain computation.
#[cfg(test)]
fn ln_ref(row: &[f32], eps: f64) -> Vec<f64> {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    row.iter()
        .map(|&v| (v as f64 - mean) / (var + eps).sqrt())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;
    use genlab_core::ParamStore;

    /// f32 sums over a few dozen terms against an f64 reference.
    const TOL: f64 = 1e-4;

    fn rand(seed: u64, shape: &[usize]) -> Tensor {
        let mut rng = genlab_core::Rng::new(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn to_vec(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// Brute-force multi-head attention in f64 straight from the packed weights.
    fn attention_ref(
        x: &[f32],
        (b, n, c, h): (usize, usize, usize, usize),
        wqkv: &[f32],
        bqkv: &[f32],
        wo: &[f32],
        bo: &[f32],
        mask: impl Fn(usize, usize, usize) -> f64,
    ) -> Vec<f64> {
        let d = c / h;
        let lin = |inp: &[f64], w: &[f32], bias: &[f32], o: usize| -> Vec<f64> {
            (0..o)
                .map(|r| {
                    bias[r] as f64
                        + (0..inp.len())
                            .map(|k| w[r * inp.len() + k] as f64 * inp[k])
                            .sum::<f64>()
                })
                .collect()
        };
        let mut out = vec![0f64; b * n * c];
        for bi in 0..b {
            let toks: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    let row: Vec<f64> = x[(bi * n + i) * c..(bi * n + i + 1) * c]
                        .iter()
                        .map(|&v| v as f64)
                        .collect();
                    lin(&row, wqkv, bqkv, 3 * c)
                })
                .collect();
            for i in 0..n {
                let mut heads_out = vec![0f64; c];
                for hh in 0..h {
                    let q = &toks[i][hh * d..(hh + 1) * d];
                    let s: Vec<f64> = (0..n)
                        .map(|j| {
                            let k = &toks[j][c + hh * d..c + (hh + 1) * d];
                            q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (d as f64).sqrt()
                                + mask(bi, i, j)
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (j, ej) in e.iter().enumerate() {
                        let v = &toks[j][2 * c + hh * d..2 * c + (hh + 1) * d];
                        for t in 0..d {
                            heads_out[hh * d + t] += ej / z * v[t];
                        }
                    }
                }
                let o = lin(&heads_out, wo, bo, c);
                out[(bi * n + i) * c..(bi * n + i + 1) * c].copy_from_slice(&o);
            }
        }
        out
    }

    fn check_attention(masked: bool) {
        let (b, n, c, h) = (2, 5, 8, 2);
        let ps = ParamStore::new(3, &Device::Cpu);
        let attn = SelfAttention::new(c, h, ps.vb()).unwrap();
        let x = rand(1, &[b, n, c]);
        let valid = Tensor::from_vec(
            vec![1f32, 1., 1., 0., 0., 1., 1., 1., 1., 1.],
            (b, n),
            &Device::Cpu,
        )
        .unwrap();
        let mask = if masked {
            Some(
                causal_mask(n, &Device::Cpu)
                    .unwrap()
                    .broadcast_add(&key_padding_mask(&valid).unwrap())
                    .unwrap(),
            )
        } else {
            None
        };
        let y = to_vec(&attn.forward(&x, mask.as_ref()).unwrap());
        let vals = to_vec(&valid);
        let want = attention_ref(
            &to_vec(&x),
            (b, n, c, h),
            &to_vec(attn.qkv.weight()),
            &to_vec(attn.qkv.bias()),
            &to_vec(attn.out.weight()),
            &to_vec(attn.out.bias()),
            |bi, i, j| {
                if !masked {
                    0.0
                } else if j > i || vals[bi * n + j] == 0.0 {
                    MASKED as f64
                } else {
                    0.0
                }
            },
        );
        for (a, w) in y.iter().zip(&want) {
            assert!((*a as f64 - w).abs() < TOL, "{a} vs {w}");
        }
    }

    #[test]
    fn attention_matches_brute_force() {
        check_attention(false);
    }

    #[test]
    fn masked_attention_matches_brute_force() {
        check_attention(true);
    }

    /// The fused causal path equals the additive-mask path, values and the gradients of
    /// the input and of every weight.
    #[test]
    fn causal_block_equals_masked_block() {
        for pre_norm in [true, false] {
            let cfg = TransformerBlockConfig {
                dim: 8,
                heads: 2,
                mlp_hidden: 16,
                pre_norm,
                ..Default::default()
            };
            let ps = ParamStore::new(4, &Device::Cpu);
            let blk = TransformerBlock::new(&cfg, ps.vb()).unwrap();
            let x = candle_core::Var::from_tensor(&rand(5, &[3, 6, 8])).unwrap();
            let r = rand(6, &[3, 6, 8]);
            let mask = causal_mask(6, &Device::Cpu).unwrap();
            let fused = blk.forward_causal(&x).unwrap();
            let masked = blk.forward(&x, Some(&mask)).unwrap();
            let diff = |a: &Tensor, b: &Tensor| {
                (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            assert!(diff(&fused, &masked) < 1e-5, "values, pre_norm {pre_norm}");
            let g1 = (&fused * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (&masked * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let mut vars: Vec<candle_core::Var> = ps.vars().into_iter().map(|(_, v)| v).collect();
            vars.push(x.clone());
            for v in &vars {
                let (a, b) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                let scale = b
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    diff(a, b) < 1e-5 * scale.max(1.0),
                    "gradient of {:?}, pre_norm {pre_norm}: {} (largest {scale})",
                    v.dims(),
                    diff(a, b)
                );
            }
        }
    }

    #[test]
    fn layer_norm_matches_reference() {
        let ps = ParamStore::new(0, &Device::Cpu);
        let ln = LayerNorm::new(6, 1e-5, ps.vb()).unwrap();
        let x = rand(2, &[3, 6]);
        let y = to_vec(&ln.forward(&x).unwrap());
        let xv = to_vec(&x);
        for r in 0..3 {
            let want = ln_ref(&xv[r * 6..(r + 1) * 6], 1e-5);
            for k in 0..6 {
                assert!((y[r * 6 + k] as f64 - want[k]).abs() < TOL);
            }
        }
    }

    #[test]
    fn activations_match_closed_forms() {
        let x = Tensor::new(&[-2.0f32, -0.5, 0.0, 0.7, 3.0], &Device::Cpu).unwrap();
        let xs = to_vec(&x);
        let q = to_vec(&MlpAct::QuickGelu.apply(&x).unwrap());
        for (v, y) in xs.iter().zip(&q) {
            let want = *v as f64 / (1.0 + (-1.702 * *v as f64).exp());
            assert!((*y as f64 - want).abs() < TOL);
        }
        // GELU(0.7) with the exact CDF: 0.7 · Φ(0.7) = 0.7 · 0.758036...
        let g = to_vec(&MlpAct::GeluErf.apply(&x).unwrap());
        assert!((g[3] as f64 - 0.7 * 0.758_036_347_776_927).abs() < TOL);
    }

    /// Every parameter of a block gets a gradient in both arrangements, with and without a
    /// mask (candle's fused LayerNorm / softmax would leave some at zero).
    #[test]
    fn every_block_parameter_gets_a_gradient() {
        for pre_norm in [true, false] {
            for masked in [false, true] {
                let ps = ParamStore::new(5, &Device::Cpu);
                let cfg = TransformerBlockConfig {
                    dim: 8,
                    heads: 2,
                    mlp_hidden: 16,
                    pre_norm,
                    ..Default::default()
                };
                let blk = TransformerBlock::new(&cfg, ps.vb()).unwrap();
                let x = Var::from_tensor(&rand(4, &[2, 4, 8])).unwrap();
                let mask = masked.then(|| causal_mask(4, &Device::Cpu).unwrap());
                let y = blk.forward(x.as_tensor(), mask.as_ref()).unwrap();
                let w = rand(6, &[2, 4, 8]);
                let g = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
                assert!(g.get(x.as_tensor()).is_some());
                for (name, v) in ps.vars() {
                    let gv = g
                        .get(v.as_tensor())
                        .unwrap_or_else(|| panic!("no grad for {name}"));
                    let s = gv
                        .abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap();
                    assert!(
                        s > 0.0,
                        "zero gradient for {name} (pre_norm {pre_norm}, masked {masked})"
                    );
                }
            }
        }
    }

    /// The block's input gradient against central finite differences (f32, so a loose but
    /// named tolerance).
    #[test]
    fn block_gradient_matches_finite_differences() {
        const FD_TOL: f64 = 2e-2;
        let ps = ParamStore::new(7, &Device::Cpu);
        let cfg = TransformerBlockConfig {
            dim: 4,
            heads: 2,
            mlp_hidden: 8,
            ..Default::default()
        };
        let blk = TransformerBlock::new(&cfg, ps.vb()).unwrap();
        let mask = causal_mask(3, &Device::Cpu).unwrap();
        let w = rand(8, &[1, 3, 4]);
        let f = |x: &Tensor| -> f64 {
            (blk.forward(x, Some(&mask)).unwrap() * &w)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let x0 = rand(9, &[1, 3, 4]);
        let xv = Var::from_tensor(&x0).unwrap();
        let g = (blk.forward(xv.as_tensor(), Some(&mask)).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx = to_vec(g.get(xv.as_tensor()).unwrap());
        let base = to_vec(&x0);
        let eps = 1e-2f32;
        for k in 0..base.len() {
            let mut p = base.clone();
            p[k] += eps;
            let mut m = base.clone();
            m[k] -= eps;
            let fp = f(&Tensor::from_vec(p, (1, 3, 4), &Device::Cpu).unwrap());
            let fm = f(&Tensor::from_vec(m, (1, 3, 4), &Device::Cpu).unwrap());
            let fd = (fp - fm) / (2.0 * eps as f64);
            assert!(
                (fd - gx[k] as f64).abs() < FD_TOL,
                "x[{k}]: fd {fd} vs grad {}",
                gx[k]
            );
        }
    }
}
