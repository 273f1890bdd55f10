//! The FID Inception-v3 network, in pytorch-fid's layout.
//!
//! Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception Architecture for
//! Computer Vision", 2015 (arXiv:1512.00567), as used for FID by Heusel et al. 2017
//! (arXiv:1706.08500, TTUR) through TensorFlow's `inception-2015-12-05` graph, ported to
//! PyTorch by pytorch-fid (`pytorch_fid.inception.fid_inception_v3` with the `InceptionV3`
//! wrapper, `resize_input=True, normalize_input=True`, output block 3).
//!
//! What makes this network "the FID Inception" rather than torchvision's, all reproduced here:
//! - `Mixed_5b..d`, `Mixed_6b..e`, `Mixed_7b` (FIDInceptionA/C/E_1) average-pool their pool
//!   branch with `count_include_pad=False` (TensorFlow's average pool ignores the padding);
//! - `Mixed_7c` (FIDInceptionE_2) max-pools its pool branch instead of average-pooling;
//! - BatchNorm eps is 0.001 (torchvision's `BasicConv2d`), applied here folded into the
//!   convolution (`w * gamma / sqrt(var + eps)`, `beta - mean * gamma / sqrt(var + eps)`);
//! - the input is resized to 299x299 bilinearly with `align_corners=False` and no
//!   antialiasing (`F.interpolate` as pytorch-fid calls it), then scaled from [0, 1] to
//!   [-1, 1] (`2x - 1`);
//! - the classifier has 1008 classes (TensorFlow's graph), used here only for the
//!   Inception Score: `softmax(pool3 @ fc.weight^T)` **without `fc.bias`**, as the
//!   original Inception Score code computes it (Salimans et al. 2016, arXiv:1606.03498,
//!   openai/improved-gan: `tf.matmul(pool3, softmax/logits/MatMul's weight)`), and as
//!   torch-fidelity and torchmetrics do (their `logits_unbiased` feature).
//!
//! Features are the 2048-d global average pool ("pool3") after `Mixed_7c`.
//!
//! Weights: `pt_inception-2015-12-05-6726825d.pth` from pytorch-fid's GitHub release
//! ([`WEIGHTS_URL`]), or a `.safetensors` file with the same keys (`Conv2d_1a_3x3.conv.weight`,
//! `Conv2d_1a_3x3.bn.running_mean`, `Mixed_5b.branch1x1.conv.weight`, ..., `fc.weight`).
//! They cannot be downloaded from genlab's build machines; [`default_weights_path`] says
//! where genlab looks for them.
//!
//! Tested against pytorch-fid itself on weights made by a formula
//! (`scripts/reference/inception_fixture.py`, `tests/inception.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use genlab_core::pth::{self, PthFormat};
use genlab_core::{Error, Result};

use super::{Extracted, FeatureExtractor};
use crate::FeatureMatrix;

/// The file pytorch-fid downloads (TensorFlow's 2015-12-05 Inception, ported).
pub const WEIGHTS_FILE: &str = "pt_inception-2015-12-05-6726825d.pth";
/// Where users on the open internet get [`WEIGHTS_FILE`].
pub const WEIGHTS_URL: &str =
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";
/// Side of the square the input is resized to (the network's native resolution).
pub const INPUT_SIZE: usize = 299;
/// Dimension of the pool3 features.
pub const FEATURE_DIM: usize = 2048;
/// Classes of the TensorFlow graph's classifier (1000 ImageNet classes + 8 unused).
pub const NUM_CLASSES: usize = 1008;
/// BatchNorm epsilon of torchvision's `BasicConv2d` (TensorFlow's value).
pub const BN_EPS: f64 = 1e-3;
/// Images per internal forward pass: bounds peak memory (tens of MB of activations per
/// image); on one thread 8 ran 64 images 10-15% faster than 16 or 32 (caches).
pub const DEFAULT_BATCH_SIZE: usize = 8;
/// Input values may leave [0, 1] by this much (rounding in a sampler or a resize) before
/// [`FeatureExtractor::extract`] refuses them; anything further is a wrong scaling
/// (e.g. [-1, 1] or 0..255 images), which would silently give a wrong FID.
pub const INPUT_RANGE_SLACK: f32 = 1e-3;

/// Where genlab looks for the FID Inception weights by default:
/// `$GENLAB_DATA/weights/pt_inception-2015-12-05-6726825d.pth`, where the data root is
/// `$GENLAB_DATA`, else `$XDG_CACHE_HOME/genlab`, else `~/.cache/genlab` (the rule of
/// `genlab_data::fetch::data_dir`, repeated here because metrics do not depend on data).
pub fn default_weights_path() -> PathBuf {
    genlab_core::paths::weights_dir().join(WEIGHTS_FILE)
}

/// The error for absent weights: names the file, why it is not fetched, and where it goes.
fn missing_weights_error(path: &Path) -> Error {
    Error::Checkpoint(format!(
        "FID Inception weights not found at {}. Expected pytorch-fid's file {WEIGHTS_FILE} \
         (or a .safetensors with the same keys). genlab cannot download it on this machine; \
         get it from {WEIGHTS_URL} and put it at $GENLAB_DATA/weights/{WEIGHTS_FILE} \
         (here: {}) or pass its path",
        path.display(),
        default_weights_path().display()
    ))
}

/// Tensors by state_dict key; keys are taken out as the network is built, so what is left
/// at the end is unexpected.
struct Store {
    map: HashMap<String, Tensor>,
    source: String,
}

impl Store {
    fn take(&mut self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.map.remove(key).ok_or_else(|| {
            Error::Checkpoint(format!(
                "{}: missing key `{key}` (expected shape {shape:?}); the FID Inception needs \
                 the keys of pytorch-fid's fid_inception_v3() state_dict ({WEIGHTS_FILE})",
                self.source
            ))
        })?;
        if t.dims() != shape {
            return Err(Error::Checkpoint(format!(
                "{}: key `{key}` has shape {:?}, expected {shape:?}",
                self.source,
                t.dims()
            )));
        }
        Ok(t)
    }

    /// f64 values of `key`, checked to have `shape` and to be finite.
    fn take_f64(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f64>> {
        let v = self
            .take(key, shape)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::Checkpoint(format!(
                "{}: key `{key}` holds a non-finite value",
                self.source
            )));
        }
        Ok(v)
    }
}

/// torchvision's `BasicConv2d` (conv without bias, BatchNorm eps 0.001, ReLU) with the
/// BatchNorm folded into the convolution's weight and a bias.
#[derive(Debug, Clone)]
struct ConvBn {
    conv: ConvKind,
}

/// How a folded convolution runs.
#[derive(Debug, Clone)]
enum ConvKind {
    /// Square kernels (1x1, 3x3, 5x5; symmetric padding): genlab-kernels' im2col + GEMM
    /// kernel, 1.5-2x faster than candle 0.11.1's CPU `conv2d` on these layers (the stem's
    /// 3x3 convolutions most), the same function (it falls back to candle off the CPU).
    Square(genlab_nn::Conv),
    /// 1x7, 7x1, 1x3, 3x1 kernels with their asymmetric padding: candle's `conv2d` on an
    /// explicitly padded input (candle pads both dims equally).
    Factorised {
        /// Cout x Cin x kh x kw, f32.
        weight: Tensor,
        /// 1 x Cout x 1 x 1, f32.
        bias: Tensor,
        stride: usize,
        /// (height, width) zero padding.
        pad: (usize, usize),
    },
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn load(
        s: &mut Store,
        prefix: &str,
        cin: usize,
        cout: usize,
        kernel: (usize, usize),
        stride: usize,
        pad: (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        let (kh, kw) = kernel;
        let w = s.take_f64(&format!("{prefix}.conv.weight"), &[cout, cin, kh, kw])?;
        let gamma = s.take_f64(&format!("{prefix}.bn.weight"), &[cout])?;
        let beta = s.take_f64(&format!("{prefix}.bn.bias"), &[cout])?;
        let mean = s.take_f64(&format!("{prefix}.bn.running_mean"), &[cout])?;
        let var = s.take_f64(&format!("{prefix}.bn.running_var"), &[cout])?;
        if let Some(o) = var.iter().position(|&v| v + BN_EPS <= 0.0) {
            return Err(Error::Checkpoint(format!(
                "{}: `{prefix}.bn.running_var`[{o}] = {} makes var + eps <= 0",
                s.source, var[o]
            )));
        }
        // BatchNorm(conv(x)) = conv(x) * scale + shift, per output channel.
        let per_out = cin * kh * kw;
        let mut wf = Vec::with_capacity(w.len());
        let mut bf = Vec::with_capacity(cout);
        for o in 0..cout {
            let scale = gamma[o] / (var[o] + BN_EPS).sqrt();
            wf.extend(
                w[o * per_out..(o + 1) * per_out]
                    .iter()
                    .map(|&x| (x * scale) as f32),
            );
            bf.push((beta[o] - mean[o] * scale) as f32);
        }
        let weight = Tensor::from_vec(wf, (cout, cin, kh, kw), device)?;
        let conv = if kh == kw && pad.0 == pad.1 {
            let bias = Tensor::from_vec(bf, cout, device)?;
            let tensors =
                HashMap::from([("weight".to_string(), weight), ("bias".to_string(), bias)]);
            let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, device);
            ConvKind::Square(genlab_nn::Conv::new(cin, cout, kh, stride, pad.0, vb)?)
        } else {
            ConvKind::Factorised {
                weight,
                bias: Tensor::from_vec(bf, (1, cout, 1, 1), device)?,
                stride,
                pad,
            }
        };
        Ok(Self { conv })
    }

    /// x: N x Cin x H x W -> N x Cout x H' x W'.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.conv {
            ConvKind::Square(conv) => conv.forward(x)?,
            ConvKind::Factorised {
                weight,
                bias,
                stride,
                pad: (ph, pw),
            } => {
                let x = x.pad_with_zeros(2, *ph, *ph)?.pad_with_zeros(3, *pw, *pw)?;
                x.conv2d(weight, 0, *stride, 1, 1)?.broadcast_add(bias)?
            }
        };
        Ok(y.relu()?)
    }
}

/// 3x3, stride 1, padding 1 average pool that divides by the number of non-padding pixels
/// (`count_include_pad=False`, the FID blocks' patch). x: N x C x H x W -> same shape.
///
/// On the CPU a direct loop (window sum / pixels inside, as torch computes it), several times
/// faster than candle's pad + `avg_pool2d` + rescale, which is the path elsewhere.
fn avg_pool_3x3_same_exclude_pad(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return avg_pool_3x3_same_exclude_pad_candle(x);
    }
    let (n, c, h, w) = x.dims4()?;
    let src = x.flatten_all()?.to_vec1::<f32>()?;
    let mut dst = vec![0f32; src.len()];
    for (plane, out) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(h * w)) {
        for i in 0..h {
            let rows = i.saturating_sub(1)..(i + 2).min(h);
            for j in 0..w {
                let cols = j.saturating_sub(1)..(j + 2).min(w);
                let mut sum = 0f32;
                for r in rows.clone() {
                    sum += plane[r * w + cols.start..r * w + cols.end]
                        .iter()
                        .sum::<f32>();
                }
                out[i * w + j] = sum / (rows.len() * cols.len()) as f32;
            }
        }
    }
    Ok(Tensor::from_vec(dst, (n, c, h, w), x.device())?)
}

/// [`avg_pool_3x3_same_exclude_pad`] from candle ops (any device).
fn avg_pool_3x3_same_exclude_pad_candle(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let mean9 = x
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .avg_pool2d_with_stride(3, 1)?;
    // mean9 = window sum / 9; multiply by 9 / (pixels of the window inside the image).
    let inside = |i: usize, n: usize| (i.min(1) + 1 + usize::from(i + 1 < n)) as f32;
    let mut factor = Vec::with_capacity(h * w);
    for i in 0..h {
        for j in 0..w {
            factor.push(9.0 / (inside(i, h) * inside(j, w)));
        }
    }
    let factor = Tensor::from_vec(factor, (1, 1, h, w), x.device())?;
    Ok(mean9.broadcast_mul(&factor)?)
}

/// 3x3, stride 1, padding 1 max pool (FIDInceptionE_2's pool branch). Replicating the edge
/// equals padding with -inf here: every replicated value is already inside its window.
fn max_pool_3x3_same(x: &Tensor) -> Result<Tensor> {
    Ok(x.pad_with_same(2, 1, 1)?
        .pad_with_same(3, 1, 1)?
        .max_pool2d_with_stride(3, 1)?)
}

/// 3x3, stride 2, no padding max pool (floor mode).
fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    Ok(x.max_pool2d_with_stride(3, 2)?)
}

fn cat(parts: &[Tensor]) -> Result<Tensor> {
    Ok(Tensor::cat(parts, 1)?)
}

/// FIDInceptionA (Mixed_5b/c/d): 64 + 64 + 96 + pool_features channels.
#[derive(Debug, Clone)]
struct BlockA {
    b1x1: ConvBn,
    b5x5: [ConvBn; 2],
    b3x3dbl: [ConvBn; 3],
    pool: ConvBn,
}

impl BlockA {
    fn load(s: &mut Store, p: &str, cin: usize, pool_features: usize, d: &Device) -> Result<Self> {
        let c = |s: &mut Store, n: &str, i, o, k, pad| {
            ConvBn::load(s, &format!("{p}.{n}"), i, o, k, 1, pad, d)
        };
        Ok(Self {
            b1x1: c(s, "branch1x1", cin, 64, (1, 1), (0, 0))?,
            b5x5: [
                c(s, "branch5x5_1", cin, 48, (1, 1), (0, 0))?,
                c(s, "branch5x5_2", 48, 64, (5, 5), (2, 2))?,
            ],
            b3x3dbl: [
                c(s, "branch3x3dbl_1", cin, 64, (1, 1), (0, 0))?,
                c(s, "branch3x3dbl_2", 64, 96, (3, 3), (1, 1))?,
                c(s, "branch3x3dbl_3", 96, 96, (3, 3), (1, 1))?,
            ],
            pool: c(s, "branch_pool", cin, pool_features, (1, 1), (0, 0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.b1x1.forward(x)?;
        let b = self.b5x5[1].forward(&self.b5x5[0].forward(x)?)?;
        let mut c = x.clone();
        for conv in &self.b3x3dbl {
            c = conv.forward(&c)?;
        }
        let d = self.pool.forward(&avg_pool_3x3_same_exclude_pad(x)?)?;
        cat(&[a, b, c, d])
    }
}

/// InceptionB (Mixed_6a, unpatched): 35x35 -> 17x17, 384 + 96 + Cin channels.
#[derive(Debug, Clone)]
struct BlockB {
    b3x3: ConvBn,
    b3x3dbl: [ConvBn; 3],
}

impl BlockB {
    fn load(s: &mut Store, p: &str, cin: usize, d: &Device) -> Result<Self> {
        let c = |s: &mut Store, n: &str, i, o, k, st, pad| {
            ConvBn::load(s, &format!("{p}.{n}"), i, o, k, st, pad, d)
        };
        Ok(Self {
            b3x3: c(s, "branch3x3", cin, 384, (3, 3), 2, (0, 0))?,
            b3x3dbl: [
                c(s, "branch3x3dbl_1", cin, 64, (1, 1), 1, (0, 0))?,
                c(s, "branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1))?,
                c(s, "branch3x3dbl_3", 96, 96, (3, 3), 2, (0, 0))?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.b3x3.forward(x)?;
        let mut b = x.clone();
        for conv in &self.b3x3dbl {
            b = conv.forward(&b)?;
        }
        cat(&[a, b, max_pool_3x3_s2(x)?])
    }
}

/// FIDInceptionC (Mixed_6b..e): 4 x 192 channels, factorised 7x7 convolutions.
#[derive(Debug, Clone)]
struct BlockC {
    b1x1: ConvBn,
    b7x7: [ConvBn; 3],
    b7x7dbl: [ConvBn; 5],
    pool: ConvBn,
}

impl BlockC {
    fn load(s: &mut Store, p: &str, cin: usize, c7: usize, d: &Device) -> Result<Self> {
        let c = |s: &mut Store, n: &str, i, o, k, pad| {
            ConvBn::load(s, &format!("{p}.{n}"), i, o, k, 1, pad, d)
        };
        let (k17, p17, k71, p71) = ((1, 7), (0, 3), (7, 1), (3, 0));
        Ok(Self {
            b1x1: c(s, "branch1x1", cin, 192, (1, 1), (0, 0))?,
            b7x7: [
                c(s, "branch7x7_1", cin, c7, (1, 1), (0, 0))?,
                c(s, "branch7x7_2", c7, c7, k17, p17)?,
                c(s, "branch7x7_3", c7, 192, k71, p71)?,
            ],
            b7x7dbl: [
                c(s, "branch7x7dbl_1", cin, c7, (1, 1), (0, 0))?,
                c(s, "branch7x7dbl_2", c7, c7, k71, p71)?,
                c(s, "branch7x7dbl_3", c7, c7, k17, p17)?,
                c(s, "branch7x7dbl_4", c7, c7, k71, p71)?,
                c(s, "branch7x7dbl_5", c7, 192, k17, p17)?,
            ],
            pool: c(s, "branch_pool", cin, 192, (1, 1), (0, 0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.b1x1.forward(x)?;
        let mut b = x.clone();
        for conv in &self.b7x7 {
            b = conv.forward(&b)?;
        }
        let mut c = x.clone();
        for conv in &self.b7x7dbl {
            c = conv.forward(&c)?;
        }
        let d = self.pool.forward(&avg_pool_3x3_same_exclude_pad(x)?)?;
        cat(&[a, b, c, d])
    }
}

/// InceptionD (Mixed_7a, unpatched): 17x17 -> 8x8, 320 + 192 + Cin channels.
#[derive(Debug, Clone)]
struct BlockD {
    b3x3: [ConvBn; 2],
    b7x7x3: [ConvBn; 4],
}

impl BlockD {
    fn load(s: &mut Store, p: &str, cin: usize, d: &Device) -> Result<Self> {
        let c = |s: &mut Store, n: &str, i, o, k, st, pad| {
            ConvBn::load(s, &format!("{p}.{n}"), i, o, k, st, pad, d)
        };
        Ok(Self {
            b3x3: [
                c(s, "branch3x3_1", cin, 192, (1, 1), 1, (0, 0))?,
                c(s, "branch3x3_2", 192, 320, (3, 3), 2, (0, 0))?,
            ],
            b7x7x3: [
                c(s, "branch7x7x3_1", cin, 192, (1, 1), 1, (0, 0))?,
                c(s, "branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3))?,
                c(s, "branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0))?,
                c(s, "branch7x7x3_4", 192, 192, (3, 3), 2, (0, 0))?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.b3x3[1].forward(&self.b3x3[0].forward(x)?)?;
        let mut b = x.clone();
        for conv in &self.b7x7x3 {
            b = conv.forward(&b)?;
        }
        cat(&[a, b, max_pool_3x3_s2(x)?])
    }
}

/// Pool branch of an E block: FIDInceptionE_1 averages (without padding), E_2 takes the max.
#[derive(Debug, Clone, Copy)]
enum EPool {
    AvgExcludePad,
    Max,
}

/// FIDInceptionE_1 / E_2 (Mixed_7b / Mixed_7c): 320 + 768 + 768 + 192 = 2048 channels.
#[derive(Debug, Clone)]
struct BlockE {
    b1x1: ConvBn,
    b3x3_1: ConvBn,
    b3x3_2: [ConvBn; 2],
    b3x3dbl_12: [ConvBn; 2],
    b3x3dbl_3: [ConvBn; 2],
    pool: ConvBn,
    pool_kind: EPool,
}

impl BlockE {
    fn load(s: &mut Store, p: &str, cin: usize, pool_kind: EPool, d: &Device) -> Result<Self> {
        let c = |s: &mut Store, n: &str, i, o, k, pad| {
            ConvBn::load(s, &format!("{p}.{n}"), i, o, k, 1, pad, d)
        };
        Ok(Self {
            b1x1: c(s, "branch1x1", cin, 320, (1, 1), (0, 0))?,
            b3x3_1: c(s, "branch3x3_1", cin, 384, (1, 1), (0, 0))?,
            b3x3_2: [
                c(s, "branch3x3_2a", 384, 384, (1, 3), (0, 1))?,
                c(s, "branch3x3_2b", 384, 384, (3, 1), (1, 0))?,
            ],
            b3x3dbl_12: [
                c(s, "branch3x3dbl_1", cin, 448, (1, 1), (0, 0))?,
                c(s, "branch3x3dbl_2", 448, 384, (3, 3), (1, 1))?,
            ],
            b3x3dbl_3: [
                c(s, "branch3x3dbl_3a", 384, 384, (1, 3), (0, 1))?,
                c(s, "branch3x3dbl_3b", 384, 384, (3, 1), (1, 0))?,
            ],
            pool: c(s, "branch_pool", cin, 192, (1, 1), (0, 0))?,
            pool_kind,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.b1x1.forward(x)?;
        let b0 = self.b3x3_1.forward(x)?;
        let b1 = self.b3x3_2[0].forward(&b0)?;
        let b2 = self.b3x3_2[1].forward(&b0)?;
        let c0 = self.b3x3dbl_12[1].forward(&self.b3x3dbl_12[0].forward(x)?)?;
        let c1 = self.b3x3dbl_3[0].forward(&c0)?;
        let c2 = self.b3x3dbl_3[1].forward(&c0)?;
        let pooled = match self.pool_kind {
            EPool::AvgExcludePad => avg_pool_3x3_same_exclude_pad(x)?,
            EPool::Max => max_pool_3x3_same(x)?,
        };
        let d = self.pool.forward(&pooled)?;
        cat(&[a, b1, b2, c1, c2, d])
    }
}

/// pytorch-fid's FID Inception-v3 up to pool3, plus the 1008-way classifier when the weights
/// have one.
#[derive(Debug, Clone)]
pub struct InceptionV3 {
    stem: Vec<ConvBn>,
    mixed_5: [BlockA; 3],
    mixed_6a: BlockB,
    mixed_6: [BlockC; 4],
    mixed_7a: BlockD,
    mixed_7b: BlockE,
    mixed_7c: BlockE,
    /// 2048 x 1008 transposed `fc.weight`, if the weights have it.
    fc: Option<Tensor>,
    device: Device,
    batch_size: usize,
}

impl InceptionV3 {
    /// Loads pytorch-fid's weights: the `.pth` it downloads ([`WEIGHTS_FILE`], a zip-format
    /// torch pickle) or a `.safetensors` with the same keys. Computation runs on `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(missing_weights_error(path));
        }
        let source = path.display().to_string();
        let is_safetensors = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        let map: HashMap<String, Tensor> = if is_safetensors {
            candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
                Error::Checkpoint(format!("{source}: cannot read as safetensors: {e}"))
            })?
        } else {
            let mut magic = [0u8; 4];
            std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .map_err(|e| Error::io("read", path, e))?;
            // Zip-format (torch >= 1.6) and legacy files (what older pytorch-fid releases
            // saved) are both read by genlab's own reader.
            let tensors = match pth::detect_format(&magic) {
                PthFormat::Zip => pth::read_zip_pth(path).map_err(|e| {
                    Error::Checkpoint(format!(
                        "{source}: cannot read as a PyTorch state_dict: {e}; expected \
                         pytorch-fid's {WEIGHTS_FILE} or a .safetensors with the same keys"
                    ))
                })?,
                PthFormat::Legacy => pth::read_legacy_pth(path).map_err(|e| {
                    Error::Checkpoint(format!(
                        "{source}: not a zip-format PyTorch file (torch >= 1.6 `torch.save`), \
                         and not a legacy one either ({e}); expected pytorch-fid's \
                         {WEIGHTS_FILE} or a .safetensors with the same keys"
                    ))
                })?,
            };
            tensors
                .iter()
                .map(|t| Ok((t.name.clone(), t.to_tensor(&Device::Cpu)?)))
                .collect::<Result<_>>()?
        };
        Self::from_tensors(map, &source, device)
    }

    /// Loads from [`default_weights_path`].
    pub fn load_default(device: &Device) -> Result<Self> {
        Self::load(default_weights_path(), device)
    }

    /// Builds the network from state_dict tensors (any float dtype, any device); `source`
    /// names them in errors. Missing keys, wrong shapes and unexpected keys are errors
    /// (`*.num_batches_tracked` is ignored); `fc.weight` (and `fc.bias`, checked but unused)
    /// are optional: without them there are no probabilities.
    pub fn from_tensors(
        tensors: HashMap<String, Tensor>,
        source: &str,
        device: &Device,
    ) -> Result<Self> {
        let mut s = Store {
            map: tensors,
            source: source.to_string(),
        };
        let d = device;
        let stem = vec![
            ConvBn::load(&mut s, "Conv2d_1a_3x3", 3, 32, (3, 3), 2, (0, 0), d)?,
            ConvBn::load(&mut s, "Conv2d_2a_3x3", 32, 32, (3, 3), 1, (0, 0), d)?,
            ConvBn::load(&mut s, "Conv2d_2b_3x3", 32, 64, (3, 3), 1, (1, 1), d)?,
            ConvBn::load(&mut s, "Conv2d_3b_1x1", 64, 80, (1, 1), 1, (0, 0), d)?,
            ConvBn::load(&mut s, "Conv2d_4a_3x3", 80, 192, (3, 3), 1, (0, 0), d)?,
        ];
        let mixed_5 = [
            BlockA::load(&mut s, "Mixed_5b", 192, 32, d)?,
            BlockA::load(&mut s, "Mixed_5c", 256, 64, d)?,
            BlockA::load(&mut s, "Mixed_5d", 288, 64, d)?,
        ];
        let mixed_6a = BlockB::load(&mut s, "Mixed_6a", 288, d)?;
        let mixed_6 = [
            BlockC::load(&mut s, "Mixed_6b", 768, 128, d)?,
            BlockC::load(&mut s, "Mixed_6c", 768, 160, d)?,
            BlockC::load(&mut s, "Mixed_6d", 768, 160, d)?,
            BlockC::load(&mut s, "Mixed_6e", 768, 192, d)?,
        ];
        let mixed_7a = BlockD::load(&mut s, "Mixed_7a", 768, d)?;
        let mixed_7b = BlockE::load(&mut s, "Mixed_7b", 1280, EPool::AvgExcludePad, d)?;
        let mixed_7c = BlockE::load(&mut s, "Mixed_7c", 2048, EPool::Max, d)?;

        let fc = match (
            s.map.contains_key("fc.weight"),
            s.map.contains_key("fc.bias"),
        ) {
            (false, false) => None,
            _ => {
                if let Some(w) = s.map.get("fc.weight") {
                    if w.dims() == [1000, FEATURE_DIM] {
                        return Err(Error::Checkpoint(format!(
                            "{source}: `fc.weight` has 1000 classes: these look like \
                             torchvision's ImageNet Inception-v3, not the FID Inception \
                             ({WEIGHTS_FILE}, 1008 classes), whose features differ"
                        )));
                    }
                }
                let w = s.take("fc.weight", &[NUM_CLASSES, FEATURE_DIM])?;
                // Checked for shape, then unused: the Inception Score's logits have no bias.
                if s.map.contains_key("fc.bias") {
                    s.take("fc.bias", &[NUM_CLASSES])?;
                }
                // logits = pool3 @ W^T; W^T: 2048 x 1008.
                Some(w.to_dtype(DType::F32)?.t()?.contiguous()?.to_device(d)?)
            }
        };
        let mut unexpected: Vec<&String> = s
            .map
            .keys()
            .filter(|k| !k.ends_with("num_batches_tracked"))
            .collect();
        if !unexpected.is_empty() {
            unexpected.sort();
            let shown: Vec<&str> = unexpected.iter().take(8).map(|k| k.as_str()).collect();
            return Err(Error::Checkpoint(format!(
                "{source}: {} unexpected key(s) for the FID Inception ({WEIGHTS_FILE} layout): \
                 {}{}",
                unexpected.len(),
                shown.join(", "),
                if unexpected.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            )));
        }
        Ok(Self {
            stem,
            mixed_5,
            mixed_6a,
            mixed_6,
            mixed_7a,
            mixed_7b,
            mixed_7c,
            fc,
            device: device.clone(),
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Sets how many images go through the network at once (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Images per internal forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Whether the weights had the 1008-way classifier (needed for the Inception Score).
    pub fn has_classifier(&self) -> bool {
        self.fc.is_some()
    }

    /// The network on one batch, as pytorch-fid runs it: `images` N x C x H x W (C = 1 or
    /// 3, f32, values in [0, 1], already on this network's device) -> (N x 2048 pool3
    /// features, N x 1008 softmax probabilities if the classifier is loaded). No batching
    /// and no input checks: [`FeatureExtractor::extract`] does those.
    pub fn forward(&self, images: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let (n, c, h, w) = images.dims4()?;
        // F.interpolate(x, (299, 299), mode="bilinear", align_corners=False)
        let mut x = if (h, w) == (INPUT_SIZE, INPUT_SIZE) {
            images.clone()
        } else {
            images.upsample_bilinear2d(INPUT_SIZE, INPUT_SIZE, false)?
        };
        if c == 1 {
            // Grey -> RGB: N x 1 x 299 x 299 -> N x 3 x 299 x 299.
            x = x.repeat((1, 3, 1, 1))?;
        }
        // [0, 1] -> [-1, 1]
        x = ((x * 2.0)? - 1.0)?;
        // Block 0: N x 3 x 299 x 299 -> 32 x 149 x 149 -> 32 x 147 x 147 -> 64 x 147 x 147
        // -> max pool 64 x 73 x 73.
        for conv in &self.stem[..3] {
            x = conv.forward(&x)?;
        }
        x = max_pool_3x3_s2(&x)?;
        // Block 1: -> 80 x 73 x 73 -> 192 x 71 x 71 -> max pool 192 x 35 x 35.
        for conv in &self.stem[3..] {
            x = conv.forward(&x)?;
        }
        x = max_pool_3x3_s2(&x)?;
        // Block 2: 256, 288, 288 x 35 x 35 -> 768 x 17 x 17 (x5).
        for block in &self.mixed_5 {
            x = block.forward(&x)?;
        }
        x = self.mixed_6a.forward(&x)?;
        for block in &self.mixed_6 {
            x = block.forward(&x)?;
        }
        // Block 3: 1280 x 8 x 8 -> 2048 x 8 x 8 -> 2048 x 8 x 8 -> global average pool.
        x = self.mixed_7a.forward(&x)?;
        x = self.mixed_7b.forward(&x)?;
        x = self.mixed_7c.forward(&x)?;
        // N x 2048 x 8 x 8 -> N x 2048 x 64 -> N x 2048
        let pool3 = x.flatten_from(2)?.mean(2)?;
        debug_assert_eq!(pool3.dims(), [n, FEATURE_DIM]);
        let probs = match &self.fc {
            Some(wt) => {
                // N x 2048 @ 2048 x 1008, without fc.bias (see the module header).
                let logits = pool3.matmul(wt)?;
                Some(candle_nn::ops::softmax_last_dim(&logits)?)
            }
            None => None,
        };
        Ok((pool3, probs))
    }
}

/// Checks a chunk of input pixels: finite and within [0, 1] up to [`INPUT_RANGE_SLACK`].
fn check_pixels(chunk: &Tensor, first_image: usize) -> Result<()> {
    let (n, _, _, _) = chunk.dims4()?;
    let values = chunk.flatten_all()?.to_vec1::<f32>()?;
    let per_image = values.len() / n.max(1);
    let (lo, hi) = (-INPUT_RANGE_SLACK, 1.0 + INPUT_RANGE_SLACK);
    if let Some(i) = values.iter().position(|v| !(lo..=hi).contains(v)) {
        return Err(Error::InvalidInput(format!(
            "inception: image {} has pixel value {} outside [0, 1] (expected f32 images in \
             [0, 1]; rescale [-1, 1] images with (x + 1) / 2 and 0..255 ones with x / 255)",
            first_image + i / per_image.max(1),
            values[i]
        )));
    }
    Ok(())
}

impl FeatureExtractor for InceptionV3 {
    fn id(&self) -> String {
        "inception-v3-fid/pool3".to_string()
    }

    fn feature_dim(&self) -> usize {
        FEATURE_DIM
    }

    fn num_classes(&self) -> Option<usize> {
        self.fc.as_ref().map(|_| NUM_CLASSES)
    }

    fn preprocessing(&self) -> String {
        format!(
            "grey repeated to RGB; bilinear resize to {INPUT_SIZE}x{INPUT_SIZE} \
             (align_corners=False, no antialias, as pytorch-fid); [0, 1] scaled to [-1, 1] \
             (2x - 1)"
        )
    }

    fn extract(&self, images: &Tensor) -> Result<Extracted> {
        let (n, c, h, w) = images.dims4().map_err(|_| {
            Error::InvalidInput(format!(
                "inception: expected N x C x H x W images, got shape {:?}",
                images.dims()
            ))
        })?;
        if c != 1 && c != 3 {
            return Err(Error::InvalidInput(format!(
                "inception: images have {c} channels; expected 1 (grey) or 3 (RGB)"
            )));
        }
        if h == 0 || w == 0 {
            return Err(Error::InvalidInput(format!(
                "inception: images are {h}x{w} pixels"
            )));
        }
        let images = images.to_dtype(DType::F32)?.to_device(&self.device)?;
        let mut features = Vec::with_capacity(n * FEATURE_DIM);
        let mut probs = self
            .fc
            .as_ref()
            .map(|_| Vec::with_capacity(n * NUM_CLASSES));
        let mut start = 0;
        while start < n {
            let len = self.batch_size.min(n - start);
            let chunk = images.narrow(0, start, len)?.contiguous()?;
            check_pixels(&chunk, start)?;
            let (f, p) = self.forward(&chunk)?;
            features.extend(f.flatten_all()?.to_vec1::<f32>()?);
            if let (Some(all), Some(p)) = (probs.as_mut(), p) {
                all.extend(p.flatten_all()?.to_vec1::<f32>()?);
            }
            start += len;
        }
        Ok(Extracted {
            features: FeatureMatrix::from_f32(
                n,
                FEATURE_DIM,
                &features,
                "inception pool3 features",
            )?,
            probs: match probs {
                Some(p) => Some(FeatureMatrix::from_f32(
                    n,
                    NUM_CLASSES,
                    &p,
                    "inception class probabilities",
                )?),
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// count_include_pad=False: a constant image stays constant, edges included; the CPU
    /// loop and the candle-op version agree.
    #[test]
    fn avg_pool_excludes_padding() -> Result<()> {
        for pool in [
            avg_pool_3x3_same_exclude_pad,
            avg_pool_3x3_same_exclude_pad_candle,
        ] {
            let x = Tensor::full(2.5f32, (1, 2, 4, 5), &Device::Cpu)?;
            let y = pool(&x)?;
            assert_eq!(y.dims(), [1, 2, 4, 5]);
            for v in y.flatten_all()?.to_vec1::<f32>()? {
                assert!((v - 2.5).abs() < 1e-6, "{v}");
            }
        }
        let v: Vec<f32> = (0..2 * 3 * 5 * 4)
            .map(|i| ((i * 7919) % 23) as f32 / 7.0)
            .collect();
        let x = Tensor::from_vec(v, (2, 3, 5, 4), &Device::Cpu)?;
        let a = avg_pool_3x3_same_exclude_pad(&x)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let b = avg_pool_3x3_same_exclude_pad_candle(&x)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-5, "{p} vs {q}");
        }
        // Corner (0, 0) of the first plane: mean of x[0..2, 0..2].
        let x00 = x.flatten_all()?.to_vec1::<f32>()?;
        let want = (x00[0] + x00[1] + x00[4] + x00[5]) / 4.0;
        assert!((a[0] - want).abs() < 1e-6);
        Ok(())
    }

    /// Edge replication equals -inf padding for a 3x3 max pool, also for negative inputs.
    #[test]
    fn max_pool_same_matches_brute_force() -> Result<()> {
        let (h, w) = (4usize, 5usize);
        let v: Vec<f32> = (0..h * w)
            .map(|i| ((i * 7919) % 23) as f32 - 30.0)
            .collect();
        let x = Tensor::from_vec(v.clone(), (1, 1, h, w), &Device::Cpu)?;
        let y = max_pool_3x3_same(&x)?.flatten_all()?.to_vec1::<f32>()?;
        for i in 0..h {
            for j in 0..w {
                let mut m = f32::NEG_INFINITY;
                for di in i.saturating_sub(1)..(i + 2).min(h) {
                    for dj in j.saturating_sub(1)..(j + 2).min(w) {
                        m = m.max(v[di * w + dj]);
                    }
                }
                assert_eq!(y[i * w + j], m, "at ({i}, {j})");
            }
        }
        Ok(())
    }
}
