//! TAEF2: a tiny pretrained autoencoder (about 1.3 M parameters per half) for the latent
//! space of FLUX.2's image autoencoder, loaded from its PyTorch checkpoints.
//!
//! Ollin Boer Bohan, "TAESD: Tiny AutoEncoder for Stable Diffusion" (2023, the `taesd`
//! project, github.com/madebyollin/taesd, MIT; no paper): a distilled stand-in for a large
//! VAE, built only from 3x3 convolutions and ReLUs. TAEF2 maps RGB in [0, 1] at `H x W`
//! (multiples of 8) to a deterministic latent of 32 channels at `H/8 x W/8`, and back.
//! The convolutions are He et al. 2016's residual blocks (arXiv:1512.03385); some blocks
//! carry a GroupNorm branch (Wu & He 2018, arXiv:1803.08494).
//!
//! The layout is read off the state dicts (PyTorch `nn.Sequential` indices as key
//! prefixes; every `conv` is 3x3 with padding 1):
//!
//! ```text
//! Block(64):  x <- x + pool(x)                       (blocks with `pool.*` keys only;
//!             pool = 1x1 conv 64->256 (no bias), GroupNorm(4, 256), ReLU, 1x1 conv 256->64)
//!             y  = ReLU(conv.4(ReLU(conv.2(ReLU(conv.0(x))))) + x)
//! encoder:    0 conv 3->64, 1 Block, 2 conv s2 (no bias), 3-5 Block x3,
//!             6 conv s2, 7-9 Block x3, 10 conv s2, 11-13 Block(pool) x3, 14 conv 64->32
//! decoder:    0 tanh(z / 3) * 3, 1 conv 32->64, 2 ReLU, 3-5 Block(pool) x3,
//!             6 upsample x2 (nearest), 7 conv (no bias), 8-10 Block x3, 11 upsample,
//!             12 conv, 13-15 Block x3, 16 upsample, 17 conv, 18 Block, 19 conv 64->3
//! ```
//!
//! The encoder's latents have a spread of a few units; diffusion models trained on the
//! TAESD family's latents use `x / (2 * 3) + 0.5` clamped to [0, 1] ([`scale_latents`],
//! the `scale_latents` of taesd.py) and its inverse ([`unscale_latents`]). genlab's LDM
//! instead measures `1 / std` over the training latents (like every first stage).
//!
//! Weights load with genlab's own PyTorch-zip reader (float16 -> float32); a file whose
//! keys differ from this layout is refused with the missing and unexpected keys listed.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use genlab_core::{Error, Result};
use genlab_nn::GroupNorm;

/// Latent channels.
pub const TAEF2_LATENT_CHANNELS: usize = 32;
/// Downsampling factor (three stride-2 convolutions).
pub const TAEF2_FACTOR: usize = 8;
/// Image channels (RGB).
pub const TAEF2_IMAGE_CHANNELS: usize = 3;
/// File names of the two checkpoints (as the taesd repository names them).
pub const TAEF2_ENCODER_FILE: &str = "taef2_encoder.pth";
pub const TAEF2_DECODER_FILE: &str = "taef2_decoder.pth";
/// `scale_latents`: `z / (2 * LATENT_MAGNITUDE) + LATENT_SHIFT` (taesd.py's constants).
pub const LATENT_MAGNITUDE: f64 = 3.0;
pub const LATENT_SHIFT: f64 = 0.5;
/// The decoder's input clamp `tanh(z / c) * c`.
const DECODER_CLAMP: f64 = 3.0;
/// Width of every hidden layer.
const WIDTH: usize = 64;
/// The pool branch: hidden width multiplier and GroupNorm groups / epsilon (PyTorch default).
const POOL_MULT: usize = 4;
const POOL_GROUPS: usize = 4;
const POOL_GN_EPS: f64 = 1e-5;
/// How many missing / unexpected keys an error lists.
const KEYS_SHOWN: usize = 5;

/// One entry of an `nn.Sequential`.
#[derive(Clone, Copy, Debug)]
enum Spec {
    /// 3x3 convolution, padding 1.
    Conv {
        c_in: usize,
        c_out: usize,
        stride: usize,
        bias: bool,
    },
    /// A residual block of width 64, with or without the GroupNorm pool branch.
    Block {
        pool: bool,
    },
    Relu,
    /// Nearest-neighbour upsampling x2.
    Up,
    /// `tanh(x / 3) * 3`.
    Clamp,
}

const fn conv(c_in: usize, c_out: usize) -> Spec {
    Spec::Conv {
        c_in,
        c_out,
        stride: 1,
        bias: true,
    }
}
const DOWN: Spec = Spec::Conv {
    c_in: WIDTH,
    c_out: WIDTH,
    stride: 2,
    bias: false,
};
const UP_CONV: Spec = Spec::Conv {
    c_in: WIDTH,
    c_out: WIDTH,
    stride: 1,
    bias: false,
};
const B: Spec = Spec::Block { pool: false };
const BP: Spec = Spec::Block { pool: true };

/// The encoder, index by index.
const ENCODER: &[Spec] = &[
    conv(TAEF2_IMAGE_CHANNELS, WIDTH),
    B,
    DOWN,
    B,
    B,
    B,
    DOWN,
    B,
    B,
    B,
    DOWN,
    BP,
    BP,
    BP,
    conv(WIDTH, TAEF2_LATENT_CHANNELS),
];

/// The decoder, index by index.
const DECODER: &[Spec] = &[
    Spec::Clamp,
    conv(TAEF2_LATENT_CHANNELS, WIDTH),
    Spec::Relu,
    BP,
    BP,
    BP,
    Spec::Up,
    UP_CONV,
    B,
    B,
    B,
    Spec::Up,
    UP_CONV,
    B,
    B,
    B,
    Spec::Up,
    UP_CONV,
    B,
    conv(WIDTH, TAEF2_IMAGE_CHANNELS),
];

/// The state-dict keys of a layout.
fn keys_of(spec: &[Spec]) -> Vec<String> {
    let mut keys = Vec::new();
    for (i, s) in spec.iter().enumerate() {
        match s {
            Spec::Conv { bias, .. } => {
                keys.push(format!("{i}.weight"));
                if *bias {
                    keys.push(format!("{i}.bias"));
                }
            }
            Spec::Block { pool } => {
                for j in [0, 2, 4] {
                    keys.push(format!("{i}.conv.{j}.weight"));
                    keys.push(format!("{i}.conv.{j}.bias"));
                }
                if *pool {
                    keys.push(format!("{i}.pool.0.weight"));
                    keys.push(format!("{i}.pool.1.weight"));
                    keys.push(format!("{i}.pool.1.bias"));
                    keys.push(format!("{i}.pool.3.weight"));
                }
            }
            Spec::Relu | Spec::Up | Spec::Clamp => {}
        }
    }
    keys
}

/// The state-dict keys of the TAEF2 encoder checkpoint.
pub fn encoder_keys() -> Vec<String> {
    keys_of(ENCODER)
}

/// The state-dict keys of the TAEF2 decoder checkpoint.
pub fn decoder_keys() -> Vec<String> {
    keys_of(DECODER)
}

/// A 3x3 (or 1x1) convolution with an optional bias: genlab-kernels on CPU f32, candle's
/// op elsewhere.
#[derive(Clone, Debug)]
struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        bias: bool,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let fan_in = (c_in * k * k) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb.get_with_hints((c_out, c_in, k, k), "weight", init)?;
        let bias = if bias {
            Some(vb.get_with_hints(c_out, "bias", init)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            stride,
            pad: k / 2,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            return genlab_kernels::conv2d(
                x,
                &self.weight,
                self.bias.as_ref(),
                self.stride,
                self.pad,
            );
        }
        let y = x.conv2d(&self.weight, self.pad, self.stride, 1, 1)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
            None => Ok(y),
        }
    }
}

/// The optional GroupNorm branch of a block.
#[derive(Clone, Debug)]
struct Pool {
    expand: Conv,
    norm: GroupNorm,
    project: Conv,
}

#[derive(Clone, Debug)]
struct Block {
    convs: [Conv; 3],
    pool: Option<Pool>,
}

impl Block {
    fn new(pool: bool, vb: VarBuilder) -> candle_core::Result<Self> {
        let c = |j: usize| Conv::new(WIDTH, WIDTH, 3, 1, true, vb.pp(format!("conv.{j}")));
        let pool = if pool {
            let hidden = WIDTH * POOL_MULT;
            Some(Pool {
                expand: Conv::new(WIDTH, hidden, 1, 1, false, vb.pp("pool.0"))?,
                norm: GroupNorm::new(POOL_GROUPS, hidden, POOL_GN_EPS, false, vb.pp("pool.1"))?,
                project: Conv::new(hidden, WIDTH, 1, 1, false, vb.pp("pool.3"))?,
            })
        } else {
            None
        };
        Ok(Self {
            convs: [c(0)?, c(2)?, c(4)?],
            pool,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = match &self.pool {
            Some(p) => {
                let h = p.norm.forward(&p.expand.forward(x)?)?;
                (x + p.project.forward(&genlab_nn::relu(&h)?)?)?
            }
            None => x.clone(),
        };
        let h = genlab_nn::relu(&self.convs[0].forward(&x)?)?;
        let h = genlab_nn::relu(&self.convs[1].forward(&h)?)?;
        let h = self.convs[2].forward(&h)?;
        genlab_nn::relu(&(h + x)?)
    }
}

#[derive(Clone, Debug)]
enum Layer {
    Conv(Conv),
    Block(Box<Block>),
    Relu,
    Up,
    Clamp,
}

/// An `nn.Sequential` of [`Layer`]s, parameters under `"{index}."`.
#[derive(Clone, Debug)]
struct Sequential(Vec<Layer>);

impl Sequential {
    fn new(spec: &[Spec], vb: VarBuilder) -> candle_core::Result<Self> {
        let mut layers = Vec::with_capacity(spec.len());
        for (i, s) in spec.iter().enumerate() {
            let vb = vb.pp(i.to_string());
            layers.push(match *s {
                Spec::Conv {
                    c_in,
                    c_out,
                    stride,
                    bias,
                } => Layer::Conv(Conv::new(c_in, c_out, 3, stride, bias, vb)?),
                Spec::Block { pool } => Layer::Block(Box::new(Block::new(pool, vb)?)),
                Spec::Relu => Layer::Relu,
                Spec::Up => Layer::Up,
                Spec::Clamp => Layer::Clamp,
            });
        }
        Ok(Self(layers))
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for l in &self.0 {
            h = match l {
                Layer::Conv(c) => c.forward(&h)?,
                Layer::Block(b) => b.forward(&h)?,
                Layer::Relu => genlab_nn::relu(&h)?,
                Layer::Up => {
                    let (_, _, hh, ww) = h.dims4()?;
                    genlab_nn::upsample_nearest(&h, 2 * hh, 2 * ww)?
                }
                Layer::Clamp => (h.affine(1.0 / DECODER_CLAMP, 0.0)?.tanh()? * DECODER_CLAMP)?,
            };
        }
        Ok(h)
    }
}

/// `scale_latents`: raw latents -> [0, 1] (`z / 6 + 0.5`, clamped), the scaling diffusion
/// models on the TAESD family's latents use.
pub fn scale_latents(z: &Tensor) -> Result<Tensor> {
    Ok(z.affine(1.0 / (2.0 * LATENT_MAGNITUDE), LATENT_SHIFT)?
        .clamp(0f32, 1f32)?)
}

/// `unscale_latents`: the inverse of [`scale_latents`] on [0, 1] (`(x - 0.5) * 6`).
pub fn unscale_latents(x: &Tensor) -> Result<Tensor> {
    Ok(x.affine(
        2.0 * LATENT_MAGNITUDE,
        -LATENT_SHIFT * 2.0 * LATENT_MAGNITUDE,
    )?)
}

/// The latent shape `[32, H/8, W/8]` of `H x W` images (multiples of 8).
pub fn latent_shape(h: usize, w: usize) -> Result<[usize; 3]> {
    if h == 0 || w == 0 || !h.is_multiple_of(TAEF2_FACTOR) || !w.is_multiple_of(TAEF2_FACTOR) {
        return Err(Error::InvalidInput(format!(
            "TAEF2 needs images whose height and width are positive multiples of {TAEF2_FACTOR}, \
             got {h}x{w}"
        )));
    }
    Ok([TAEF2_LATENT_CHANNELS, h / TAEF2_FACTOR, w / TAEF2_FACTOR])
}

/// Checks that `found` holds exactly the keys `expected`: one error listing the first few
/// missing and unexpected keys and their counts.
pub fn check_keys<'a>(
    what: &str,
    found: impl IntoIterator<Item = &'a String>,
    expected: &[String],
) -> Result<()> {
    let found: BTreeSet<&str> = found.into_iter().map(|s| s.as_str()).collect();
    let want: BTreeSet<&str> = expected.iter().map(|s| s.as_str()).collect();
    // In layout order for missing keys, sorted for unexpected ones.
    let missing: Vec<&str> = expected
        .iter()
        .map(|s| s.as_str())
        .filter(|k| !found.contains(k))
        .collect();
    let unexpected: Vec<&str> = found
        .iter()
        .copied()
        .filter(|k| !want.contains(k))
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    let list = |v: &[&str]| {
        let shown: Vec<&str> = v.iter().take(KEYS_SHOWN).copied().collect();
        let more = if v.len() > KEYS_SHOWN { ", ..." } else { "" };
        format!("{} ({}{more})", v.len(), shown.join(", "))
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing keys: {}", list(&missing)));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected keys: {}", list(&unexpected)));
    }
    Err(Error::Data(format!(
        "{what} does not have the TAEF2 layout ({} keys expected): {}",
        expected.len(),
        parts.join("; ")
    )))
}

/// Reads one checkpoint as f32 tensors on `device`, checked against `expected` keys.
fn load_checked(
    path: &Path,
    expected: &[String],
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let map = genlab_core::pth::load_pth(path, device)?;
    check_keys(&path.display().to_string(), map.keys(), expected)?;
    map.into_iter()
        .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?)))
        .collect()
}

/// The TAEF2 encoder: images `[B, 3, H, W]` in [0, 1] -> latents `[B, 32, H/8, W/8]`.
#[derive(Clone, Debug)]
pub struct Taef2Encoder(Sequential);

impl Taef2Encoder {
    /// Parameters under `vb` with the checkpoint's names (`0.weight`, `1.conv.0.bias`, ...).
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self(Sequential::new(ENCODER, vb)?))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != TAEF2_IMAGE_CHANNELS {
            return Err(Error::InvalidInput(format!(
                "TAEF2 encodes RGB images [B, 3, H, W], got shape {dims:?}"
            )));
        }
        latent_shape(dims[2], dims[3])?;
        Ok(self.0.forward(x)?)
    }
}

/// The TAEF2 decoder: latents `[B, 32, h, w]` -> images `[B, 3, 8h, 8w]` (about [0, 1]).
#[derive(Clone, Debug)]
pub struct Taef2Decoder(Sequential);

impl Taef2Decoder {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self(Sequential::new(DECODER, vb)?))
    }

    /// Not clamped (what the parity fixture records).
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let dims = z.dims();
        if dims.len() != 4 || dims[1] != TAEF2_LATENT_CHANNELS || dims[2] == 0 || dims[3] == 0 {
            return Err(Error::InvalidInput(format!(
                "TAEF2 decodes latents [B, {TAEF2_LATENT_CHANNELS}, h, w], got shape {dims:?}"
            )));
        }
        Ok(self.0.forward(z)?)
    }
}

/// Both halves of TAEF2 (cloning shares the weights).
#[derive(Clone, Debug)]
pub struct Taef2 {
    pub encoder: Taef2Encoder,
    pub decoder: Taef2Decoder,
    device: Device,
}

impl Taef2 {
    /// From two var builders (random weights from a `ParamStore` in tests).
    pub fn new(encoder: VarBuilder, decoder: VarBuilder) -> Result<Self> {
        let device = encoder.device().clone();
        Ok(Self {
            encoder: Taef2Encoder::new(encoder)?,
            decoder: Taef2Decoder::new(decoder)?,
            device,
        })
    }

    /// Loads the two `.pth` checkpoints (float16 or float32) as float32 on `device`.
    pub fn load(encoder: &Path, decoder: &Path, device: &Device) -> Result<Self> {
        let enc = load_checked(encoder, &encoder_keys(), device)?;
        let dec = load_checked(decoder, &decoder_keys(), device)?;
        Self::new(
            VarBuilder::from_tensors(enc, DType::F32, device),
            VarBuilder::from_tensors(dec, DType::F32, device),
        )
    }

    /// Loads `dir/taef2_encoder.pth` and `dir/taef2_decoder.pth`.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        Self::load(
            &dir.join(TAEF2_ENCODER_FILE),
            &dir.join(TAEF2_DECODER_FILE),
            device,
        )
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Images in [0, 1] -> raw latents (deterministic).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.encoder.forward(x)
    }

    /// Raw latents -> images, not clamped.
    pub fn decode_raw(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.forward(z)
    }

    /// Raw latents -> images in [0, 1] (clamped).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.decode_raw(z)?.clamp(0f32, 1f32)?)
    }

    /// Images in [0, 1] -> reconstructions in [0, 1].
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        self.decode(&self.encode(x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_core::ParamStore;

    #[test]
    fn the_layouts_have_the_checkpoint_key_counts() {
        // 79 keys each in the published files (genlab-core's pth test lists them).
        assert_eq!(encoder_keys().len(), 79);
        assert_eq!(decoder_keys().len(), 79);
        assert!(encoder_keys().contains(&"11.pool.3.weight".to_string()));
        assert!(!encoder_keys().contains(&"2.bias".to_string()));
        assert!(decoder_keys().contains(&"19.bias".to_string()));
    }

    #[test]
    fn random_weights_give_the_documented_shapes() {
        let (e, d) = (
            ParamStore::new(0, &Device::Cpu),
            ParamStore::new(1, &Device::Cpu),
        );
        let t = Taef2::new(e.vb(), d.vb()).unwrap();
        let mut names: Vec<String> = e.vars().into_iter().map(|(n, _)| n).collect();
        names.sort();
        let mut want = encoder_keys();
        want.sort();
        assert_eq!(names, want);
        let x = Tensor::zeros((2, 3, 16, 24), DType::F32, &Device::Cpu).unwrap();
        let z = t.encode(&x).unwrap();
        assert_eq!(z.dims(), &[2, 32, 2, 3]);
        assert_eq!(t.decode(&z).unwrap().dims(), x.dims());
        let bad = Tensor::zeros((1, 3, 12, 16), DType::F32, &Device::Cpu).unwrap();
        let e = t.encode(&bad).unwrap_err().to_string();
        assert!(e.contains("multiples of 8") && e.contains("12x16"), "{e}");
        let grey = Tensor::zeros((1, 1, 16, 16), DType::F32, &Device::Cpu).unwrap();
        assert!(t.encode(&grey).unwrap_err().to_string().contains("RGB"));
    }

    #[test]
    fn key_errors_list_the_first_few_and_the_count() {
        let mut keys = encoder_keys();
        keys.retain(|k| !k.starts_with("13."));
        keys.push("extra.weight".into());
        let e = check_keys("enc.pth", keys.iter(), &encoder_keys())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing keys: 10 (13.conv.0.weight"), "{e}");
        assert!(e.contains(", ...)"), "{e}");
        assert!(e.contains("unexpected keys: 1 (extra.weight)"), "{e}");
        assert!(check_keys("x", encoder_keys().iter(), &encoder_keys()).is_ok());
    }

    #[test]
    fn scaling_maps_three_sigma_to_the_unit_interval_and_back() {
        let z = Tensor::new(&[-3.0f32, 0.0, 3.0, 1.2], &Device::Cpu).unwrap();
        let s: Vec<f32> = scale_latents(&z).unwrap().to_vec1().unwrap();
        assert_eq!(s[..3], [0.0, 0.5, 1.0]);
        assert!((s[3] - 0.7).abs() < 1e-6);
        let back: Vec<f32> = unscale_latents(&scale_latents(&z).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, b) in back.iter().zip([-3.0f32, 0.0, 3.0, 1.2]) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
