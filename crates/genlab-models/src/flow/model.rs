//! The `Flow` model: a stack of flow steps on points, or a multi-scale flow on images,
//! with a standard normal base, exact log-likelihood and one-pass (or, for MAF,
//! D-pass) sampling.
//!
//! Points (`[D]`, the RealNVP / Glow recipe on vectors; Dinh et al. 2016,
//! arXiv:1605.08803; Kingma & Dhariwal 2018, arXiv:1807.03039, Sec. 3 and Fig. 2a): `layers`
//! steps of [ActNorm] -> [invertible linear map] -> coupling, the coupling masks (or the
//! MAF/IAF orderings) alternating from step to step.
//!
//! Images (`[C, H, W]` in [0, 1]): uniform dequantisation to y in [0, 1)^D, centring
//! (y - 1/2, Glow's preprocessing, log-det 0), then the multi-scale architecture of
//! RealNVP Sec. 3.6 with Glow steps: `scales` times {squeeze, `layers` steps, factor out
//! half} (no factor-out after the last scale). Likelihoods of images are reported in
//! the discrete data's units (see [`super::dequantize`]): `log p(y) - D ln L` nats, so that
//! bits/dim = nll / (D ln 2) is the standard figure.
//!
//! log p(x) = log N(f(x); 0, I) + log |det df/dx| (+ the dequantisation constant), exact
//! for points.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

use super::{
    standard_normal_log_prob, ActNorm, AdditiveCoupling, AffineCoupling, Assignments, Chain,
    Dequantizer, ElementwiseAffine, Iaf, InvLinear, Maf, MaskKind, MultiScale, SplineCoupling,
    Transform, VariationalDequantizer,
};
use crate::figure::Figure;
use crate::likelihood::{LikelihoodKind, LikelihoodOptions, LogLikelihood, LogLikelihoodResult};
use crate::sample::{DataSpace, Sample, SampleRequest, SampleResult};

/// A mean |log-det| above this many nats per dimension means the flow has diverged (it
/// maps a unit of volume to e^50 or e^-50 per coordinate): reported as a numeric failure.
pub const MAX_LOGDET_PER_DIM: f64 = 50.0;

/// Cells per side of the density picture of a 2-D flow.
const DENSITY_GRID: usize = 200;

/// The transformation inside every flow step.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Coupling {
    /// RealNVP affine coupling (Dinh et al. 2016).
    Affine,
    /// NICE additive coupling (Dinh et al. 2014), volume preserving; a final elementwise
    /// scaling layer is added.
    Additive,
    /// Rational-quadratic spline coupling (Durkan et al. 2019).
    Spline,
    /// Masked autoregressive flow (Papamakarios et al. 2017); points only.
    Maf,
    /// Inverse autoregressive flow (Kingma et al. 2016); points only.
    Iaf,
}

/// How image pixels are dequantised.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DequantizationKind {
    /// u ~ U[0, 1)^D (RealNVP, Glow).
    #[default]
    Uniform,
    /// u ~ q(u | x), learned (Ho et al. 2019).
    Variational,
}

/// The mixing layer before each coupling.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mixing {
    /// None: only the alternating masks mix dimensions (RealNVP).
    None,
    /// Glow's invertible linear map / 1x1 convolution, LU-parametrised.
    InvLinear,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    pub coupling: Coupling,
    /// Flow steps (per scale for images).
    pub layers: usize,
    /// Conditioner widths: MLP hidden sizes for points, CNN channels for images (the first
    /// a 3x3 conv, the others 1x1).
    pub hidden: Vec<usize>,
    /// Coupling mask (ignored by maf and iaf).
    pub mask: MaskKind,
    /// An ActNorm layer at the start of every step (data-dependent init on the first batch).
    pub actnorm: bool,
    pub mixing: Mixing,
    /// Images: number of squeeze levels (sides must be divisible by 2^scales).
    pub scales: usize,
    /// Bound of the log-scales of affine couplings and MAF/IAF (soft clamp).
    pub scale_clamp: f64,
    /// Spline coupling: bins K and the half-width B of the interval [-B, B].
    pub spline_bins: usize,
    pub spline_bound: f64,
    /// Images: values per pixel (256 for 8-bit data), for dequantisation and bits/dim.
    pub levels: u32,
    /// Images: uniform noise, or a learned q(u | x) (Flow++'s variational dequantisation,
    /// a tighter bound; its conditioner has the couplings' `hidden` widths).
    pub dequantization: DequantizationKind,
    /// Images: model each factored-out half by a Gaussian whose mean and scale come from the
    /// half that stays, instead of N(0, I) (RealNVP). Glow (Kingma & Dhariwal 2018) does
    /// this in its released code (`split2d_prior`: one zero-initialised 3x3 conv). Here it
    /// is one more affine coupling before each factor-out, the kept half conditioning the
    /// other through the couplings' own conditioner: z' = (z - mu(h)) / sigma(h) is exactly
    /// an affine coupling with s = -log sigma, t = -mu / sigma. Saved configs without the
    /// key load as `false`.
    pub split_prior: bool,
    /// Channel masks: each coupling's conditioner reads only the conditioning half of the
    /// channels and computes outputs only for the transformed half (`CouplingNet::Halves`):
    /// the same family of functions as the full conditioner on the masked input, about a
    /// third fewer FLOPs. Saved configs without the key load as `false` (the full
    /// conditioner their weights were trained with). Ignored by checkerboard masks.
    #[serde(default)]
    pub narrow_conditioner: bool,
    pub data: DataSpace,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self::for_data(&DataSpace {
            shape: vec![2],
            images: false,
        })
    }
}

impl FlowConfig {
    /// Presets: an 8-step Glow-style spline-coupling MLP stack for points; a multi-scale
    /// Glow (ActNorm, 1x1 conv, affine coupling with channel masks) for images.
    pub fn for_data(data: &DataSpace) -> Self {
        if data.images {
            // As many squeezes (up to 2) as the sides allow: 28 -> 14 -> 7.
            let scales = match data.shape.as_slice() {
                [_, h, w] => (1..=2)
                    .rev()
                    .find(|s| h % (1 << s) == 0 && w % (1 << s) == 0)
                    .unwrap_or(1),
                _ => 2,
            };
            Self {
                coupling: Coupling::Affine,
                // Glow uses 32 per scale; 8 is what a CPU affords (MNIST: 1.540 bits/dim
                // against 1.689 with 4 steps, docs/flows.md)
                layers: 8,
                hidden: vec![64, 64], // Glow's NN() has 512 channels; 64 for the same reason
                mask: MaskKind::Channel, // Glow's choice after the squeeze
                actnorm: true,
                mixing: Mixing::InvLinear,
                scales,
                scale_clamp: 2.0, // exp(+-2) per step is ample after the first few steps
                spline_bins: 8,   // Durkan et al. use 4-10 bins on images
                spline_bound: 3.0,
                levels: 256, // 8-bit pixels
                // Flow++'s learned q(u | x): MNIST at 12,000 steps 1.541 bits/dim against
                // 1.637 uniform, for 1.25x the time per step (docs/flows.md)
                dequantization: DequantizationKind::Variational,
                split_prior: true,
                narrow_conditioner: true,
                data: data.clone(),
            }
        } else {
            Self {
                // Splines fit multimodal 2-D densities closer than affine couplings at the
                // same depth: on eight gaussians (5000 steps) the test NLL lies 0.007 nats
                // above the true density's against 0.074 for affine (docs/flows.md).
                coupling: Coupling::Spline,
                layers: 8,              // 8 couplings separate the 8 gaussians cleanly
                hidden: vec![128, 128], // small enough for a CPU, large enough for 2-D mixtures
                mask: MaskKind::Checkerboard, // alternate features: works for any D >= 2
                actnorm: true,
                mixing: Mixing::InvLinear,
                scales: 0, // unused for points
                scale_clamp: 2.0,
                spline_bins: 8,    // Durkan et al.'s tabular experiments use 4-10 bins
                spline_bound: 4.0, // ActNorm keeps standardised data mostly inside +-4
                levels: 256,       // unused for points
                dequantization: DequantizationKind::Uniform, // unused for points
                split_prior: false, // points are not factored out
                narrow_conditioner: true, // used if mask = channel
                data: data.clone(),
            }
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.data.shape.is_empty() || self.data.shape.contains(&0) {
            return bad(format!("flow: empty data shape {:?}", self.data.shape));
        }
        if self.layers == 0 {
            return bad("flow.layers must be at least 1".into());
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return bad(format!(
                "flow.hidden must list at least one positive width, got {:?}",
                self.hidden
            ));
        }
        if !(self.scale_clamp > 0.0 && self.scale_clamp.is_finite()) {
            return bad(format!(
                "flow.scale_clamp must be positive, got {}",
                self.scale_clamp
            ));
        }
        match (self.data.images, self.data.shape.len()) {
            (true, 3) => {
                if matches!(self.coupling, Coupling::Maf | Coupling::Iaf) {
                    return bad(format!(
                        "flow.coupling = {:?} is for points; image flows use affine, additive \
                         or spline couplings",
                        self.coupling
                    ));
                }
                Dequantizer::new(self.levels)?;
            }
            (false, 1) if self.split_prior => {
                return bad(
                    "flow.split_prior is for multi-scale image flows; points have no \
                     factored-out half"
                        .into(),
                )
            }
            (false, 1) if self.dequantization == DequantizationKind::Variational => {
                return bad(
                    "flow.dequantization = variational is for images; points are not \
                     dequantised"
                        .into(),
                )
            }
            (false, 1) => {}
            _ => {
                return bad(format!(
                    "flows take points [D] or images [C, H, W], got shape {:?} (images: {})",
                    self.data.shape, self.data.images
                ))
            }
        }
        Ok(())
    }

    fn dim(&self) -> usize {
        self.data.shape.iter().product()
    }
}

/// One flow step on examples of `shape`: [actnorm] [mixing] coupling.
fn step(
    cfg: &FlowConfig,
    shape: &[usize],
    i: usize,
    vb: VarBuilder,
) -> Result<Vec<Box<dyn Transform>>> {
    let mut v: Vec<Box<dyn Transform>> = Vec::new();
    let c = shape[0];
    if cfg.actnorm {
        v.push(Box::new(ActNorm::new(c, vb.pp("actnorm"))?));
    }
    if cfg.mixing == Mixing::InvLinear {
        v.push(Box::new(InvLinear::new(c, vb.pp("mix"))?));
    }
    let parity = i % 2 == 1;
    let h = &cfg.hidden;
    let vbc = vb.pp("coupling");
    v.push(match cfg.coupling {
        Coupling::Affine => Box::new(AffineCoupling::new(
            shape,
            cfg.mask,
            parity,
            h,
            cfg.scale_clamp,
            cfg.narrow_conditioner,
            vbc,
        )?),
        Coupling::Additive => Box::new(AdditiveCoupling::new(
            shape,
            cfg.mask,
            parity,
            h,
            cfg.narrow_conditioner,
            vbc,
        )?),
        Coupling::Spline => Box::new(SplineCoupling::new(
            shape,
            cfg.mask,
            parity,
            h,
            cfg.spline_bins,
            cfg.spline_bound,
            cfg.narrow_conditioner,
            vbc,
        )?),
        Coupling::Maf => Box::new(Maf::new(c, h, parity, cfg.scale_clamp, vbc)?),
        Coupling::Iaf => Box::new(Iaf::new(c, h, parity, cfg.scale_clamp, vbc)?),
    });
    Ok(v)
}

/// Mean terms of the negative log-likelihood on a batch.
pub struct FlowTerms {
    /// The training loss: mean NLL in nats per example (with autograd graph).
    pub loss: Tensor,
    /// The loss as a number, the mean log-det of the flow, and bits/dim.
    pub nll: f64,
    pub logdet: f64,
    pub bpd: f64,
}

pub struct Flow {
    cfg: FlowConfig,
    body: Box<dyn Transform>,
    deq: Option<Dequantizer>,
    var_deq: Option<VariationalDequantizer>,
    device: Device,
    dtype: DType,
}

impl Flow {
    pub fn new(cfg: &FlowConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let shape = cfg.data.shape.clone();
        let body: Box<dyn Transform> = if cfg.data.images {
            let vb = vb.pp("flow");
            Box::new(MultiScale::new(&shape, cfg.scales, |s, sq| {
                let mut steps = Vec::new();
                for i in 0..cfg.layers {
                    steps.extend(step(cfg, &sq, i, vb.pp(format!("scale{s}.step{i}")))?);
                }
                if cfg.split_prior && s + 1 < cfg.scales {
                    // The first half of the channels stays (multiscale::factor_out) and
                    // conditions the second: parity false.
                    steps.push(Box::new(AffineCoupling::new(
                        &sq,
                        MaskKind::Channel,
                        false,
                        &cfg.hidden,
                        cfg.scale_clamp,
                        cfg.narrow_conditioner,
                        vb.pp(format!("scale{s}.prior")),
                    )?));
                }
                Ok(Chain(steps))
            })?)
        } else {
            let mut steps = Vec::new();
            for i in 0..cfg.layers {
                steps.extend(step(cfg, &shape, i, vb.pp(format!("flow.step{i}")))?);
            }
            if cfg.coupling == Coupling::Additive {
                // NICE's final diagonal scaling: additive couplings alone preserve volume.
                steps.push(Box::new(ElementwiseAffine::new(
                    &shape,
                    vb.pp("flow.scale"),
                )?));
            }
            Box::new(Chain(steps))
        };
        let var_deq = if cfg.data.images && cfg.dequantization == DequantizationKind::Variational {
            Some(VariationalDequantizer::new(
                &shape,
                &cfg.hidden,
                cfg.levels,
                vb.pp("deq"),
            )?)
        } else {
            None
        };
        Ok(Self {
            var_deq,
            deq: if cfg.data.images {
                Some(Dequantizer::new(cfg.levels)?)
            } else {
                None
            },
            cfg: cfg.clone(),
            body,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &FlowConfig {
        &self.cfg
    }

    /// The invertible map from the flow's input space to the base space.
    pub fn body(&self) -> &dyn Transform {
        self.body.as_ref()
    }

    /// Whether the model has layers with a data-dependent initialisation (ActNorm).
    pub fn needs_data_init(&self) -> bool {
        self.cfg.actnorm
    }

    /// Data -> the flow's input `[B, ...]` and what is added to its log-density per
    /// example `[B]` (images: dequantised, centred, `-D ln L`, minus log q(u | x) when the
    /// dequantisation is variational; points: as they are, 0).
    pub fn prepare(&self, x: &Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        self.cfg.data.check_batch(x, "the flow")?;
        let x = x.to_device(&self.device)?.to_dtype(self.dtype)?;
        let b = x.dim(0)?;
        let zeros = Tensor::zeros(b, self.dtype, &self.device)?;
        Ok(match (&self.deq, &self.var_deq) {
            (Some(q), Some(v)) => {
                let d = v.dequantize(&x, rng)?;
                let c = (d.log_q.neg()? + q.log_jacobian(self.cfg.dim()))?;
                ((d.y - 0.5)?, c)
            }
            (Some(q), None) => (
                (q.dequantize(&x, rng)? - 0.5)?,
                (zeros + q.log_jacobian(self.cfg.dim()))?,
            ),
            (None, _) => (x, zeros),
        })
    }

    /// log p(x) `[B]` (nats, the data's units) and the flow's log-det `[B]`.
    pub fn log_prob(&self, x: &Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let (h, c) = self.prepare(x, rng)?;
        let (z, ld) = self.body.forward(&h)?;
        let lp = ((standard_normal_log_prob(&z)? + &ld)? + c)?;
        Ok((lp, ld))
    }

    /// The loss and its diagnostics on a batch; a NaN/infinite NLL or an exploding log-det
    /// is an `Error::Numeric`.
    pub fn terms(&self, x: &Tensor, rng: &mut Rng) -> Result<FlowTerms> {
        let (lp, ld) = self.log_prob(x, rng)?;
        let loss = lp.mean_all()?.neg()?;
        let nll = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let logdet = ld.mean_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let d = self.cfg.dim();
        if !nll.is_finite() || !logdet.is_finite() {
            return Err(Error::Numeric(format!(
                "the flow NLL is {nll} (mean log-det {logdet})"
            )));
        }
        if logdet.abs() > MAX_LOGDET_PER_DIM * d as f64 {
            return Err(Error::Numeric(format!(
                "the flow's mean log-det is {logdet:.3e} nats over {d} dimensions (more than \
                 {MAX_LOGDET_PER_DIM} per dimension): the flow has diverged"
            )));
        }
        Ok(FlowTerms {
            loss,
            nll,
            logdet,
            bpd: super::bits_per_dim(nll, d),
        })
    }

    /// ActNorm's data-dependent initial values from the batch `x` (one fixed dequantisation
    /// draw), as (variable name, value) pairs for the caller to write into its stores.
    pub fn data_init(&self, x: &Tensor) -> Result<Assignments> {
        let (h, _) = self.prepare(x, &mut Rng::derive(0, "flow.data-init"))?;
        Ok(self.body.data_init(&h)?.1)
    }

    /// Pictures of the model: for 2-D points, the density p(x) as a heat map on a square
    /// grid covering `x` (the held-out points) with a 10% margin, to compare with the
    /// samples; nothing for other data.
    pub fn figures(&self, x: &Tensor) -> Result<Vec<Figure>> {
        if self.cfg.data.images || self.cfg.data.shape != [2] || x.dim(0)? == 0 {
            return Ok(Vec::new());
        }
        let pts: Vec<Vec<f32>> = x.to_dtype(DType::F32)?.to_vec2()?;
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for p in &pts {
            for k in 0..2 {
                lo[k] = lo[k].min(p[k] as f64);
                hi[k] = hi[k].max(p[k] as f64);
            }
        }
        let half = 0.55 * (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-6);
        let c = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
        let bounds = [c[0] - half, c[0] + half, c[1] - half, c[1] + half];
        let n = DENSITY_GRID;
        let cell = 2.0 * half / n as f64;
        let mut grid = Vec::with_capacity(2 * n * n);
        for j in 0..n {
            for i in 0..n {
                grid.push((bounds[0] + (i as f64 + 0.5) * cell) as f32);
                grid.push((bounds[2] + (j as f64 + 0.5) * cell) as f32);
            }
        }
        let grid = Tensor::from_vec(grid, (n * n, 2), &self.device)?;
        let mut values = Vec::with_capacity(n * n);
        let mut rng = Rng::new(0); // unused for points (no dequantisation)
        for start in (0..n * n).step_by(4096) {
            let len = 4096.min(n * n - start);
            let (lp, _) = self.log_prob(&grid.narrow(0, start, len)?, &mut rng)?;
            let lp: Vec<f64> = lp.to_dtype(DType::F64)?.to_vec1()?;
            values.extend(lp.into_iter().map(f64::exp));
        }
        Ok(vec![Figure::Density {
            name: "density".into(),
            values,
            nx: n,
            ny: n,
            bounds,
            caption: format!(
                "the flow's exact density p(x) on [{:.2}, {:.2}] x [{:.2}, {:.2}] \
                 (linear colour scale, yellow = highest)",
                bounds[0], bounds[1], bounds[2], bounds[3]
            ),
        }])
    }

    /// Network evaluations per sample: D per MAF layer, 1 per other layer.
    fn sample_nfe(&self) -> usize {
        let per = match self.cfg.coupling {
            Coupling::Maf => self.cfg.data.shape[0],
            _ => 1,
        };
        let scales = if self.cfg.data.images {
            self.cfg.scales
        } else {
            1
        };
        self.cfg.layers * scales * per
    }

    fn sample_batch(&self, n: usize, temperature: f64, rng: &mut Rng) -> Result<Tensor> {
        let z = rng
            .normal_tensor(&[n, self.cfg.dim()], &self.device)?
            .to_dtype(self.dtype)?;
        let z = if temperature == 1.0 {
            z
        } else {
            (z * temperature)?
        };
        let z = if self.cfg.data.images {
            z
        } else {
            z.reshape((n, self.cfg.data.shape[0]))?
        };
        let h = self.body.inverse(&z)?.detach();
        let x = match &self.deq {
            Some(q) => q.quantize(&(h + 0.5)?)?,
            None => h,
        };
        let mut shape = vec![n];
        shape.extend(&self.cfg.data.shape);
        Ok(x.reshape(shape)?.to_dtype(DType::F32)?)
    }
}

impl Sample for Flow {
    fn sample(
        &self,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult> {
        crate::sample::require_no_condition(req, "flow")?;
        let t = req.options.temperature;
        if !(t > 0.0 && t.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "the sampling temperature must be a finite number > 0, got {t}"
            )));
        }
        let x = crate::sample::sample_in_batches(req, rng, progress, |nb, _, rng| {
            let x = self.sample_batch(nb, t, rng)?;
            if !x.sum_all()?.to_scalar::<f32>()?.is_finite() {
                return Err(Error::Numeric(
                    "the flow's inverse produced non-finite samples".into(),
                ));
            }
            Ok(x)
        })?;
        Ok(SampleResult {
            x,
            nfe: self.sample_nfe(),
        })
    }

    fn data_space(&self) -> &DataSpace {
        &self.cfg.data
    }

    fn as_likelihood(&self) -> Option<&dyn LogLikelihood> {
        Some(self)
    }
}

impl LogLikelihood for Flow {
    /// Exact log p(x) for points. For images, log p(y) - D ln L at one uniform
    /// dequantisation draw per example: the standard estimate of a lower bound on the
    /// discrete log-likelihood, hence `LowerBound` (`opts.samples` is not used).
    fn log_likelihood(
        &self,
        x: &Tensor,
        _labels: Option<&Tensor>,
        opts: &LikelihoodOptions,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<LogLikelihoodResult> {
        let n = x.dim(0)?;
        let bs = opts.batch_size.max(1);
        let mut nats = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            let m = bs.min(n - i);
            let (lp, _) = self.log_prob(&x.narrow(0, i, m)?, rng)?;
            let v: Vec<f64> = lp.detach().to_dtype(DType::F64)?.to_vec1()?;
            if let Some((j, bad)) = v.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(Error::Numeric(format!(
                    "the flow log-likelihood of example {} is {bad}",
                    i + j
                )));
            }
            nats.extend(v);
            i += m;
            progress(i, n);
        }
        let (kind, method) = if self.cfg.data.images {
            (
                LikelihoodKind::LowerBound,
                format!(
                    "flow change of variables on {} dequantised pixels ({} levels, one \
                     draw per example; Theis et al. 2016 bound on the discrete likelihood)",
                    match self.cfg.dequantization {
                        DequantizationKind::Uniform => "uniformly",
                        DequantizationKind::Variational => "variationally (Flow++)",
                    },
                    self.cfg.levels
                ),
            )
        } else {
            (
                LikelihoodKind::Exact,
                format!(
                    "flow change of variables ({:?} coupling, exact)",
                    self.cfg.coupling
                ),
            )
        };
        Ok(LogLikelihoodResult { nats, kind, method })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;
    use genlab_core::ParamStore;

    fn points(coupling: Coupling, d: usize) -> FlowConfig {
        let mut cfg = FlowConfig::for_data(&DataSpace {
            shape: vec![d],
            images: false,
        });
        cfg.coupling = coupling;
        cfg.layers = 4;
        cfg.hidden = vec![16, 16];
        cfg.spline_bins = 4;
        cfg
    }

    fn images(shape: &[usize]) -> FlowConfig {
        let mut cfg = FlowConfig::for_data(&DataSpace {
            shape: shape.to_vec(),
            images: true,
        });
        cfg.layers = 2;
        cfg.hidden = vec![4, 4];
        cfg
    }

    /// An f64 flow with every parameter moved off its near-identity start.
    fn build64(cfg: &FlowConfig, seed: u64) -> (ParamStore, Flow) {
        let (ps, vb) = vb64(seed);
        let f = Flow::new(cfg, vb).unwrap();
        perturb(&ps, seed + 100, 0.3);
        (ps, f)
    }

    #[test]
    fn composed_models_invert_and_their_log_det_matches_the_jacobian() {
        for c in [
            Coupling::Affine,
            Coupling::Additive,
            Coupling::Spline,
            Coupling::Maf,
            Coupling::Iaf,
        ] {
            let (_, f) = build64(&points(c, 2), 1);
            check_transform(
                &format!("{c:?} flow on points"),
                f.body(),
                &randn64(2, &[5, 2], 1.5),
            );
            let mut cfg = points(c, 4);
            cfg.mask = MaskKind::Channel;
            let (_, f) = build64(&cfg, 2);
            check_transform(
                &format!("{c:?} flow on 4-D points"),
                f.body(),
                &randn64(2, &[3, 4], 1.0),
            );
        }
        // The image preset (Glow steps in a 2-scale RealNVP architecture) on 1x4x4 and
        // 3x4x4 images, and with spline and additive couplings and checkerboard masks.
        for (shape, c, mask) in [
            (vec![1, 4, 4], Coupling::Affine, MaskKind::Channel),
            (vec![3, 4, 4], Coupling::Affine, MaskKind::Channel),
            (vec![1, 4, 4], Coupling::Spline, MaskKind::Checkerboard),
            (vec![1, 4, 4], Coupling::Additive, MaskKind::Checkerboard),
        ] {
            let mut cfg = images(&shape);
            cfg.coupling = c;
            cfg.mask = mask;
            let (_, f) = build64(&cfg, 3);
            let mut s = vec![2];
            s.extend(&shape);
            check_transform(
                &format!("{c:?} image flow {shape:?}"),
                f.body(),
                &randn64(4, &s, 0.3),
            );
        }
    }

    /// f32 round trip through the full default models (8 steps of 2 x 128 MLPs on points;
    /// the image preset): each step adds a few ulps of O(1) values.
    const INV_TOL_F32: f64 = 1e-5;

    #[test]
    fn default_presets_invert_in_f32() {
        let space = DataSpace {
            shape: vec![2],
            images: false,
        };
        let ps = ParamStore::new(1, &Device::Cpu);
        let f = Flow::new(&FlowConfig::for_data(&space), ps.vb()).unwrap();
        let x = Rng::new(3)
            .normal_tensor(&[64, 2], &Device::Cpu)
            .unwrap()
            .affine(2.0, 0.0)
            .unwrap();
        let (z, _) = f.body().forward(&x).unwrap();
        let err = max_abs_diff(&x, &f.body().inverse(&z).unwrap());
        eprintln!("points preset f32 round trip: {err:.2e}");
        assert!(err < INV_TOL_F32, "{err}");
        let space = DataSpace {
            shape: vec![1, 8, 8],
            images: true,
        };
        let ps = ParamStore::new(1, &Device::Cpu);
        let f = Flow::new(&FlowConfig::for_data(&space), ps.vb()).unwrap();
        let x = Rng::new(3)
            .uniform_tensor(-0.5, 0.5, &[4, 1, 8, 8], &Device::Cpu)
            .unwrap();
        let (z, _) = f.body().forward(&x).unwrap();
        let err = max_abs_diff(&x, &f.body().inverse(&z).unwrap());
        eprintln!("image preset f32 round trip: {err:.2e}");
        assert!(err < INV_TOL_F32, "{err}");
    }

    /// A midpoint Riemann sum on a 0.05 grid over [-10, 10]^2 of a smooth density whose tails
    /// (log-scales clamped to +-0.5 per layer) leave little mass outside the box.
    const MASS_TOL: f64 = 1e-3;

    #[test]
    fn the_density_of_a_2d_flow_integrates_to_one() {
        for c in [Coupling::Affine, Coupling::Spline, Coupling::Maf] {
            let mut cfg = points(c, 2);
            cfg.scale_clamp = 0.5;
            let (ps, vb) = vb64(5);
            let f = Flow::new(&cfg, vb).unwrap();
            perturb(&ps, 105, 0.15);
            let (lo, step, n) = (-10.0, 0.05, 400usize);
            let mut pts = Vec::with_capacity(2 * n * n);
            for i in 0..n {
                for j in 0..n {
                    pts.push(lo + step * (i as f64 + 0.5));
                    pts.push(lo + step * (j as f64 + 0.5));
                }
            }
            let x = Tensor::from_vec(pts, (n * n, 2), &Device::Cpu).unwrap();
            let (lp, _) = f.log_prob(&x, &mut Rng::new(0)).unwrap();
            let lp: Vec<f64> = lp.to_vec1().unwrap();
            let mass: f64 = lp.iter().map(|v| v.exp()).sum::<f64>() * step * step;
            eprintln!("{c:?}: integral of p over [-10, 10]^2 = {mass:.6}");
            assert!((mass - 1.0).abs() < MASS_TOL, "{c:?}: {mass}");
        }
    }

    #[test]
    fn the_density_figure_is_the_flow_density_on_its_grid() {
        let cfg = points(Coupling::Affine, 2);
        let (ps, vb) = vb64(6);
        let f = Flow::new(&cfg, vb).unwrap();
        perturb(&ps, 106, 0.15);
        // Held-out points spanning [-9, 9]^2: the grid covers [-9.9, 9.9]^2.
        let held = Tensor::new(&[[-9.0f64, -9.0], [9.0, 9.0], [0.5, -2.0]], &Device::Cpu).unwrap();
        let figs = f.figures(&held).unwrap();
        let Some(Figure::Density {
            values,
            nx,
            ny,
            bounds,
            ..
        }) = figs.first()
        else {
            panic!("no density figure");
        };
        assert_eq!(
            (*nx, *ny, values.len()),
            (DENSITY_GRID, DENSITY_GRID, DENSITY_GRID.pow(2))
        );
        for (b, want) in bounds.iter().zip([-9.9, 9.9, -9.9, 9.9]) {
            assert!((b - want).abs() < 1e-9, "{bounds:?}");
        }
        let cell = (bounds[1] - bounds[0]) / *nx as f64;
        let mass: f64 = values.iter().sum::<f64>() * cell * cell;
        assert!((mass - 1.0).abs() < MASS_TOL, "{mass}");
        // Orientation: row j is y, column i is x.
        let (i, j) = (37usize, 151usize);
        let at = Tensor::new(
            &[[
                bounds[0] + (i as f64 + 0.5) * cell,
                bounds[2] + (j as f64 + 0.5) * cell,
            ]],
            &Device::Cpu,
        )
        .unwrap();
        let want = f
            .log_prob(&at, &mut Rng::new(0))
            .unwrap()
            .0
            .to_vec1::<f64>()
            .unwrap()[0]
            .exp();
        let got = values[j * nx + i];
        assert!(
            (got - want).abs() <= 1e-5 * want.max(1e-12),
            "{got} vs {want}"
        );
        // No held-out points, no picture.
        assert!(f
            .figures(&held.narrow(0, 0, 0).unwrap())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_configs_and_inputs_are_clear_errors() {
        let mut cfg = points(Coupling::Affine, 3);
        cfg.mask = MaskKind::Channel;
        let e = Flow::new(&cfg, vb64(0).1).err().unwrap();
        assert!(
            matches!(e, Error::Config(_)) && e.to_string().contains("even"),
            "{e}"
        );
        let e = Flow::new(&points(Coupling::Affine, 1), vb64(0).1)
            .err()
            .unwrap();
        assert!(e.to_string().contains("at least 2"), "{e}");
        let mut cfg = images(&[1, 6, 6]);
        cfg.scales = 2;
        let e = Flow::new(&cfg, vb64(0).1).err().unwrap();
        assert!(e.to_string().contains("divisible by 4"), "{e}");
        let mut cfg = images(&[1, 4, 4]);
        cfg.coupling = Coupling::Maf;
        let e = Flow::new(&cfg, vb64(0).1).err().unwrap();
        assert!(e.to_string().contains("for points"), "{e}");
        let mut cfg = images(&[1, 4, 4]);
        cfg.levels = 1;
        assert!(matches!(Flow::new(&cfg, vb64(0).1), Err(Error::Config(_))));
        // Images outside [0, 1] and wrong shapes.
        let ps = ParamStore::new(0, &Device::Cpu);
        let f = Flow::new(&images(&[1, 4, 4]), ps.vb()).unwrap();
        let x = Tensor::full(1.5f32, (2, 1, 4, 4), &Device::Cpu).unwrap();
        let e = f.log_prob(&x, &mut Rng::new(0)).err().unwrap();
        assert!(
            matches!(e, Error::InvalidInput(_)) && e.to_string().contains("[0, 1]"),
            "{e}"
        );
        let x = Tensor::full(0.5f32, (2, 1, 4, 5), &Device::Cpu).unwrap();
        let e = f.log_prob(&x, &mut Rng::new(0)).err().unwrap();
        assert!(e.to_string().contains("built for [1, 4, 4]"), "{e}");
        // An unknown key in a saved config.
        let mut v = serde_json::to_value(FlowConfig::default()).unwrap();
        v["depth"] = 3.into();
        assert!(serde_json::from_value::<FlowConfig>(v).is_err());
        // The split prior needs a factored-out half.
        let mut cfg = points(Coupling::Affine, 2);
        cfg.split_prior = true;
        let e = Flow::new(&cfg, vb64(0).1).err().unwrap();
        assert!(e.to_string().contains("split_prior"), "{e}");
    }

    #[test]
    fn the_split_prior_is_one_coupling_per_factor_out_and_old_configs_load_without_it() {
        let count = |cfg: &FlowConfig| {
            let (ps, vb) = vb64(0);
            Flow::new(cfg, vb).unwrap();
            ps.vars().len()
        };
        let mut cfg = images(&[1, 8, 8]);
        cfg.scales = 3;
        let with = count(&cfg);
        cfg.split_prior = false;
        let without = count(&cfg);
        // Two factor-outs in three scales, each one more conditioner.
        let one = {
            let (ps, vb) = vb64(0);
            let narrow = cfg.narrow_conditioner;
            AffineCoupling::new(
                &[4, 4, 4],
                MaskKind::Channel,
                false,
                &[4, 4],
                2.0,
                narrow,
                vb,
            )
            .unwrap();
            ps.vars().len()
        };
        assert_eq!(with, without + 2 * one);
        // A config saved before the key existed (an image flow) loads without the prior.
        let mut v = serde_json::to_value(images(&[1, 4, 4])).unwrap();
        v.as_object_mut().unwrap().remove("split_prior");
        let old: FlowConfig = serde_json::from_value(v).unwrap();
        assert!(!old.split_prior);
    }

    #[test]
    fn old_configs_load_with_the_full_conditioner_they_were_trained_with() {
        let cfg = images(&[1, 4, 4]);
        assert!(cfg.narrow_conditioner); // the preset
        let mut v = serde_json::to_value(&cfg).unwrap();
        v.as_object_mut().unwrap().remove("narrow_conditioner");
        let old: FlowConfig = serde_json::from_value(v).unwrap();
        assert!(!old.narrow_conditioner);
        // Different weight shapes: a checkpoint of one does not load into the other.
        let (pn, vb) = vb64(0);
        Flow::new(&cfg, vb).unwrap();
        let (pf, vb) = vb64(0);
        Flow::new(&old, vb).unwrap();
        assert!(pn.num_params() < pf.num_params());
        assert!(pf.load(&pn.tensors()).is_err());
    }

    #[test]
    fn samples_have_the_data_shape_and_images_are_pixels_in_range() {
        let ps = ParamStore::new(0, &Device::Cpu);
        let f = Flow::new(&images(&[1, 4, 4]), ps.vb()).unwrap();
        let req = SampleRequest {
            n: 5,
            sampler: String::new(),
            options: Default::default(),
            batch_size: 2,
            ..Default::default()
        };
        let s = f.sample(&req, &mut Rng::new(1), &mut |_, _| {}).unwrap();
        assert_eq!(s.x.dims(), [5, 1, 4, 4]);
        let v: Vec<f32> = s.x.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|&p| (0.0..=1.0).contains(&p)));
        assert!(v
            .iter()
            .all(|&p| ((p * 255.0).round() - p * 255.0).abs() < 1e-4));
        let ps = ParamStore::new(0, &Device::Cpu);
        let f = Flow::new(&points(Coupling::Maf, 2), ps.vb()).unwrap();
        let s = f.sample(&req, &mut Rng::new(1), &mut |_, _| {}).unwrap();
        assert_eq!((s.x.dims(), s.nfe), (&[5usize, 2][..], 8));
        let r = f
            .as_likelihood()
            .unwrap()
            .log_likelihood(
                &s.x,
                None,
                &LikelihoodOptions::default(),
                &mut Rng::new(0),
                &mut |_, _| {},
            )
            .unwrap();
        assert_eq!((r.nats.len(), r.kind), (5, LikelihoodKind::Exact));
    }

    #[test]
    fn temperature_scales_the_base_noise_of_the_same_draws() {
        // At temperature T the flow inverts T z for the same draws z: invert by hand.
        let ps = ParamStore::new(0, &Device::Cpu);
        let f = Flow::new(&points(Coupling::Affine, 2), ps.vb()).unwrap();
        let mut req = SampleRequest {
            n: 4,
            sampler: String::new(),
            options: Default::default(),
            batch_size: 4,
            ..Default::default()
        };
        req.options.temperature = 0.7;
        let got = f.sample(&req, &mut Rng::new(3), &mut |_, _| {}).unwrap().x;
        let z = (Rng::new(3).normal_tensor(&[4, 2], &Device::Cpu).unwrap() * 0.7).unwrap();
        let want = f.body.inverse(&z.to_dtype(f.dtype).unwrap()).unwrap();
        let d: f32 = (got - want.to_dtype(DType::F32).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-6, "{d}");
        req.options.temperature = 0.0;
        let e = f
            .sample(&req, &mut Rng::new(3), &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("temperature"), "{e}");
    }

    /// The dequantised pixels are drawn in f32, so the two paths agree to f32 rounding of
    /// ~120-nat values over 9 layers (1.2e-6 measured with the split prior): 1e-7 relative.
    const IMAGE_NLL_TOL: f64 = 1e-5;

    #[test]
    fn image_likelihood_is_the_flow_density_of_the_dequantised_pixels_minus_d_ln_256() {
        // Recompute log p(x) by hand from the body: dequantise with the same draws, centre,
        // base density by the closed form, add the log-det and -D ln 256.
        let mut cfg = images(&[1, 4, 4]);
        cfg.dequantization = DequantizationKind::Uniform; // the preset is variational
        let (_, f) = build64(&cfg, 7);
        let x = Rng::new(2)
            .uniform_tensor(0.0, 1.0, &[3, 1, 4, 4], &Device::Cpu)
            .unwrap();
        let x = (x * 255.0)
            .unwrap()
            .round()
            .unwrap()
            .affine(1.0 / 255.0, 0.0)
            .unwrap();
        let (lp, _) = f.log_prob(&x, &mut Rng::new(9)).unwrap();
        let lp: Vec<f64> = lp.to_vec1().unwrap();
        let u = Rng::new(9)
            .uniform_tensor(0.0, 1.0, &[3, 1, 4, 4], &Device::Cpu)
            .unwrap();
        let y = ((x.affine(255.0, 0.0).unwrap().round().unwrap() + u).unwrap() / 256.0).unwrap();
        let h = (y.to_dtype(DType::F64).unwrap() - 0.5).unwrap();
        let (z, ld) = f.body().forward(&h).unwrap();
        let z: Vec<Vec<f64>> = z.to_vec2().unwrap();
        let ld: Vec<f64> = ld.to_vec1().unwrap();
        for b in 0..3 {
            let base: f64 = z[b]
                .iter()
                .map(|v| -0.5 * v * v - 0.5 * (2.0 * std::f64::consts::PI).ln())
                .sum();
            let want = base + ld[b] - 16.0 * 256f64.ln();
            assert!((lp[b] - want).abs() < IMAGE_NLL_TOL, "{} vs {want}", lp[b]);
        }
    }

    #[test]
    fn variational_dequantisation_subtracts_log_q_of_its_own_draw() {
        // Same recomputation as above with q's draw: log p = base + logdet - D ln 256 - log q.
        let mut cfg = images(&[1, 4, 4]);
        cfg.dequantization = DequantizationKind::Variational;
        let (ps, f) = build64(&cfg, 8);
        assert!(ps.vars().iter().any(|(n, _)| n.starts_with("deq.")));
        let x = (Rng::new(3)
            .uniform_tensor(0.0, 1.0, &[2, 1, 4, 4], &Device::Cpu)
            .unwrap()
            * 255.0)
            .unwrap()
            .round()
            .unwrap()
            .affine(1.0 / 255.0, 0.0)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let (lp, _) = f.log_prob(&x, &mut Rng::new(4)).unwrap();
        let lp: Vec<f64> = lp.to_vec1().unwrap();
        let d = f
            .var_deq
            .as_ref()
            .unwrap()
            .dequantize(&x, &mut Rng::new(4))
            .unwrap();
        let (z, ld) = f.body().forward(&(d.y - 0.5).unwrap()).unwrap();
        let (z, ld): (Vec<Vec<f64>>, Vec<f64>) = (z.to_vec2().unwrap(), ld.to_vec1().unwrap());
        let log_q: Vec<f64> = d.log_q.to_vec1().unwrap();
        for b in 0..2 {
            let base: f64 = z[b]
                .iter()
                .map(|v| -0.5 * v * v - 0.5 * (2.0 * std::f64::consts::PI).ln())
                .sum();
            let want = base + ld[b] - 16.0 * 256f64.ln() - log_q[b];
            assert!((lp[b] - want).abs() < IMAGE_NLL_TOL, "{} vs {want}", lp[b]);
        }
        // Sampling does not use q; points cannot ask for it.
        let s = f
            .sample(
                &SampleRequest {
                    n: 2,
                    sampler: String::new(),
                    options: Default::default(),
                    batch_size: 2,
                    ..Default::default()
                },
                &mut Rng::new(0),
                &mut |_, _| {},
            )
            .unwrap();
        assert_eq!(s.x.dims(), &[2, 1, 4, 4]);
        let mut pts = points(Coupling::Affine, 2);
        pts.dequantization = DequantizationKind::Variational;
        assert!(pts.validate().unwrap_err().to_string().contains("images"));
    }
}
