//! AdamW with its state exposed for checkpoints, and global-norm gradient clipping.
//!
//! Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", arXiv:1711.05101,
//! Algorithm 2 (Adam with decoupled weight decay), bias-corrected moments as in Kingma &
//! Ba 2015 (arXiv:1412.6980, Algorithm 1). candle_nn's AdamW keeps its moments private, so
//! a resumed run could not continue exactly: ours saves `m`, `v` and the step count.
//!
//! CPU f32 variables take a fused path: one pass per variable reads the gradient and
//! rewrites the moments and the weight in place (candle's `InplaceOp2`), split over rayon's
//! threads for large variables. Written as candle tensor ops the same update allocated ~10
//! temporaries per variable. Their moments are plain `Vec<f32>` owned by the optimizer:
//! an in-place op can mutate one tensor only (the weight), and moments held as tensors would
//! alias the clones handed out by [`AdamW::state`], so a checkpoint snapshot would change
//! under the next step. Other devices and dtypes keep the tensor-op update
//! ([`AdamW::new_reference`] forces it everywhere: the tests' reference, the benchmark's
//! baseline). Scalars are computed in f64 and applied in f32, the same arithmetic in the
//! same order on both paths.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::{
    backprop::GradStore, CpuStorage, DType, InplaceOp2, Layout, Storage, Tensor, Var,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result};

/// AdamW hyper-parameters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,        // Kingma & Ba's default
            beta2: 0.999,      // Kingma & Ba's default
            eps: 1e-8,         // Kingma & Ba's default
            weight_decay: 0.0, // DDPM trains without decay (Ho et al. 2020, App. B)
        }
    }
}

/// Below this many elements a fused pass runs on the calling thread: handing ~32k
/// elements (~0.5 MB of operands) to other threads costs about what the pass itself does.
pub(crate) const PAR_MIN_ELEMS: usize = 32 * 1024;

/// The chunk length to split an `n`-element pass over rayon's threads, or `None` to run it
/// inline (small pass, or a single thread).
pub(crate) fn par_chunk_len(n: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    (n >= PAR_MIN_ELEMS && threads > 1).then(|| n.div_ceil(threads))
}

/// Whether `t` can be read or written as one f32 slice in host memory.
pub(crate) fn is_host_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous()
}

/// The f32 elements of a contiguous CPU storage, in layout order.
pub(crate) fn host_f32<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(d), Some((a, b))) => Ok(&d[a..b]),
        _ => candle_core::bail!("expected a contiguous f32 CPU tensor"),
    }
}

/// Mutable [`host_f32`].
pub(crate) fn host_f32_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(d), Some((a, b))) => Ok(&mut d[a..b]),
        _ => candle_core::bail!("expected a contiguous f32 CPU tensor"),
    }
}

/// Sum of squares of f32 values, accumulated in f64 over 8 independent lanes (so the loop
/// vectorises; the order is fixed, so the result is deterministic).
fn sum_squares_f32(xs: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            let x = x as f64;
            *a += x * x;
        }
    }
    let mut s: f64 = acc.iter().sum();
    for &x in tail {
        s += x as f64 * x as f64;
    }
    s
}

/// Sum of squares of a gradient: one read of its f32 slice on CPU (no temporary), candle
/// ops otherwise.
fn grad_sum_squares(g: &Tensor) -> Result<f64> {
    if g.device().is_cpu() && g.dtype() == DType::F32 {
        let contiguous;
        let g = if g.is_contiguous() {
            g
        } else {
            contiguous = g.contiguous()?;
            &contiguous
        };
        let (storage, layout) = g.storage_and_layout();
        if let Storage::Cpu(s) = &*storage {
            return Ok(sum_squares_f32(host_f32(s, layout)?));
        }
    }
    Ok(g.sqr()?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

/// The step's scalars, computed in f64 as in the tensor-op update and rounded to f32 once.
#[derive(Clone, Copy, Debug)]
struct Coeffs {
    grad_scale: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    /// 1 / (1 - beta1^t): candle divides a tensor by a scalar as a multiplication by its
    /// inverse.
    inv_bc1: f32,
    inv_bc2: f32,
    eps: f32,
    /// 1 - lr * weight_decay (exactly 1 without decay: `w * 1 == w`).
    decay: f32,
    lr: f32,
}

impl Coeffs {
    fn new(c: &AdamWConfig, t: u64, lr: f64, grad_scale: f64) -> Self {
        let bc1 = 1.0 - c.beta1.powi(t as i32);
        let bc2 = 1.0 - c.beta2.powi(t as i32);
        Self {
            grad_scale: grad_scale as f32,
            beta1: c.beta1 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            inv_bc1: (1.0 / bc1) as f32,
            inv_bc2: (1.0 / bc2) as f32,
            eps: c.eps as f32,
            decay: if c.weight_decay > 0.0 {
                (1.0 - lr * c.weight_decay) as f32
            } else {
                1.0
            },
            lr: lr as f32,
        }
    }
}

/// The AdamW update of one slice: moments first, then the decayed weight minus the step.
/// Same operations, same order, as the tensor-op path.
fn adamw_slice(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &Coeffs) {
    let n = w.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let gi = g[i] * k.grad_scale;
        let mi = m[i] * k.beta1 + gi * k.one_minus_beta1;
        let vi = v[i] * k.beta2 + (gi * gi) * k.one_minus_beta2;
        m[i] = mi;
        v[i] = vi;
        let update = (mi * k.inv_bc1) / ((vi * k.inv_bc2).sqrt() + k.eps);
        w[i] = w[i] * k.decay - update * k.lr;
    }
}

/// In-place AdamW on a weight (the destination) given its gradient; the moments ride
/// along (an in-place op mutates one tensor, and `cpu_fwd` only gets `&self`).
struct FusedAdamW<'a> {
    k: Coeffs,
    moments: RefCell<(&'a mut [f32], &'a mut [f32])>,
}

impl InplaceOp2 for FusedAdamW<'_> {
    fn name(&self) -> &'static str {
        "genlab-fused-adamw"
    }

    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        wl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let w = host_f32_mut(w, wl)?;
        let g = host_f32(g, gl)?;
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        let n = w.len();
        if g.len() != n || m.len() != n || v.len() != n {
            candle_core::bail!(
                "fused AdamW: {n} weights but {} gradients, {} and {} moments",
                g.len(),
                m.len(),
                v.len()
            );
        }
        let k = &self.k;
        match par_chunk_len(n) {
            None => adamw_slice(w, g, m, v, k),
            Some(c) => w
                .par_chunks_mut(c)
                .zip(g.par_chunks(c))
                .zip(m.par_chunks_mut(c))
                .zip(v.par_chunks_mut(c))
                .for_each(|(((w, g), m), v)| adamw_slice(w, g, m, v, k)),
        }
        Ok(())
    }
}

/// A variable's first and second moments.
enum Moments {
    /// CPU f32 variable: host vectors, updated with the weight by the fused pass.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Anything else (or [`AdamW::new_reference`]): candle tensors, replaced every step.
    Tensors { m: Tensor, v: Tensor },
}

/// AdamW over a fixed, ordered list of named variables.
pub struct AdamW {
    cfg: AdamWConfig,
    vars: Vec<(String, Var)>,
    moments: Vec<Moments>,
    /// Number of updates applied so far (the `t` of the bias correction).
    pub t: u64,
}

impl AdamW {
    /// The optimizer; contiguous CPU f32 variables get the fused in-place update.
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        Self::build(vars, cfg, true)
    }

    /// The unfused optimizer: every variable takes the tensor-op update (the
    /// implementation before fusion), with its moments as tensors. The reference of the
    /// tests and the baseline of `examples/optim_bench.rs`.
    pub fn new_reference(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        Self::build(vars, cfg, false)
    }

    fn build(vars: Vec<(String, Var)>, cfg: AdamWConfig, fused: bool) -> Result<Self> {
        let moments = vars
            .iter()
            .map(|(_, var)| -> Result<Moments> {
                Ok(if fused && is_host_f32(var.as_tensor()) {
                    let n = var.elem_count();
                    Moments::Host {
                        m: vec![0.0; n],
                        v: vec![0.0; n],
                    }
                } else {
                    let m = var.zeros_like()?;
                    Moments::Tensors { v: m.clone(), m }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg,
            vars,
            moments,
            t: 0,
        })
    }

    /// Global L2 norm of the gradients present in `grads` (one pass over each CPU f32
    /// gradient, accumulated in f64).
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var) {
                sq += grad_sum_squares(g)?;
            }
        }
        Ok(sq.sqrt())
    }

    /// [`AdamW::grad_norm`] with candle ops (per-tensor f32 sums): the implementation before
    /// fusion, for the tests.
    #[cfg(test)]
    pub(crate) fn grad_norm_reference(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(sq.sqrt())
    }

    /// One update with learning rate `lr`; gradients are scaled by `grad_scale` first
    /// (for clipping). Variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.t += 1;
        let k = Coeffs::new(&self.cfg, self.t, lr, grad_scale);
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            match &mut self.moments[i] {
                Moments::Host { m, v } => {
                    if g.dims() != var.dims() {
                        return Err(Error::InvalidInput(format!(
                            "the gradient of `{name}` has shape {:?}, the variable {:?}",
                            g.dims(),
                            var.dims()
                        )));
                    }
                    // candle's gradients are fresh contiguous f32 tensors; anything else is
                    // made so first (one copy).
                    let contiguous;
                    let g = if is_host_f32(g) {
                        g
                    } else {
                        contiguous = g
                            .to_device(var.device())?
                            .to_dtype(DType::F32)?
                            .contiguous()?;
                        &contiguous
                    };
                    let op = FusedAdamW {
                        k,
                        moments: RefCell::new((m.as_mut_slice(), v.as_mut_slice())),
                    };
                    // Errors (rather than updating wrongly) if `g` shares the weight's storage.
                    var.as_tensor().inplace_op2(g, &op)?;
                }
                Moments::Tensors { m, v } => {
                    let (m2, v2) = tensor_update(&self.cfg, self.t, var, g, m, v, lr, grad_scale)?;
                    *m = m2;
                    *v = v2;
                }
            }
        }
        Ok(())
    }

    /// Moments as named tensors (`m.NAME`, `v.NAME`), for checkpoints. Snapshots: the
    /// optimizer never writes into them.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let (m, v) = match &self.moments[i] {
                Moments::Host { m, v } => {
                    let t = |x: &[f32]| {
                        Tensor::from_slice(x, var.shape(), var.device())
                            .expect("host moments have the variable's element count")
                    };
                    (t(m), t(v))
                }
                // Replaced, never mutated, by the tensor-op update: the clones stay valid.
                Moments::Tensors { m, v } => (m.clone(), v.clone()),
            };
            out.insert(format!("m.{name}"), m);
            out.insert(format!("v.{name}"), v);
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`] and the step count `t`.
    pub fn load_state(&mut self, map: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        // The bias corrections raise the betas to the power t as an i32.
        if t >= i32::MAX as u64 {
            return Err(Error::Checkpoint(format!(
                "optimizer step count {t} is out of range (expected below {}); the checkpoint \
                 is corrupt",
                i32::MAX
            )));
        }
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let get = |kind: &str| -> Result<&Tensor> {
                let key = format!("{kind}.{name}");
                let tensor = map.get(&key).ok_or_else(|| {
                    Error::Checkpoint(format!(
                        "optimizer state `{key}` is missing from the checkpoint"
                    ))
                })?;
                if tensor.dims() != var.dims() {
                    return Err(Error::Checkpoint(format!(
                        "optimizer state `{key}` has shape {:?}, expected {:?}",
                        tensor.dims(),
                        var.dims()
                    )));
                }
                Ok(tensor)
            };
            let (tm, tv) = (get("m")?, get("v")?);
            match &mut self.moments[i] {
                Moments::Host { m, v } => {
                    let host = |t: &Tensor| -> Result<Vec<f32>> {
                        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
                    };
                    *m = host(tm)?;
                    *v = host(tv)?;
                }
                Moments::Tensors { m, v } => {
                    // On the variable's device, whichever device the checkpoint was read to.
                    *m = tm.to_device(var.device())?.copy()?;
                    *v = tv.to_device(var.device())?.copy()?;
                }
            }
        }
        self.t = t;
        Ok(())
    }
}

/// The AdamW update of one variable written as candle tensor ops (the implementation
/// before fusion): sets the variable, returns the new moments.
#[allow(clippy::too_many_arguments)]
fn tensor_update(
    c: &AdamWConfig,
    t: u64,
    var: &Var,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    lr: f64,
    grad_scale: f64,
) -> Result<(Tensor, Tensor)> {
    let bc1 = 1.0 - c.beta1.powi(t as i32);
    let bc2 = 1.0 - c.beta2.powi(t as i32);
    let g = if grad_scale != 1.0 {
        (g * grad_scale)?
    } else {
        g.clone()
    };
    let m = ((m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
    let v = ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
    let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + c.eps)?)?;
    let w = var.as_tensor();
    let decayed = if c.weight_decay > 0.0 {
        (w * (1.0 - lr * c.weight_decay))?
    } else {
        w.clone()
    };
    var.set(&(decayed - (update * lr)?)?)?;
    Ok((m, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use genlab_core::Rng;

    /// f32 updates agree with the f64 reference to this absolute error.
    const F32_TOL: f64 = 1e-6;

    #[test]
    fn matches_hand_computed_adamw() {
        // Reference: the algorithm written out in f64 for a scalar parameter.
        let cfg = AdamWConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        let var = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], cfg.clone()).unwrap();
        let (mut w, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
        let lr = 0.01;
        for t in 1..=5 {
            // loss = w^3 -> grad = 3 w^2
            let loss = var.as_tensor().powf(3.0).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, lr, 1.0).unwrap();
            let g = 3.0 * w * w;
            m = cfg.beta1 * m + (1.0 - cfg.beta1) * g;
            v = cfg.beta2 * v + (1.0 - cfg.beta2) * g * g;
            let mh = m / (1.0 - cfg.beta1.powi(t));
            let vh = v / (1.0 - cfg.beta2.powi(t));
            w = w * (1.0 - lr * cfg.weight_decay) - lr * mh / (vh.sqrt() + cfg.eps);
            let got = var.as_tensor().to_vec1::<f32>().unwrap()[0] as f64;
            assert!((got - w).abs() < F32_TOL, "t={t}: {got} vs {w}");
        }
    }

    #[test]
    fn state_roundtrip_continues_identically() {
        let run = |split: bool| -> Vec<f32> {
            let var = Var::new(&[0.5f32, -2.0], &Device::Cpu).unwrap();
            let mut opt =
                AdamW::new(vec![("w".into(), var.clone())], AdamWConfig::default()).unwrap();
            for i in 0..6 {
                if split && i == 3 {
                    let (st, t) = (opt.state(), opt.t);
                    opt = AdamW::new(vec![("w".into(), var.clone())], AdamWConfig::default())
                        .unwrap();
                    opt.load_state(&st, t).unwrap();
                }
                let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap(), 0.1, 1.0).unwrap();
            }
            var.as_tensor().to_vec1().unwrap()
        };
        assert_eq!(run(false), run(true));
    }

    /// The fused update agrees with the tensor-op one to this error, relative to
    /// max(1, |value|). The arithmetic is the same in the same order; what differs is the
    /// gradient norm behind the clipping scale (f64 accumulation vs candle's f32 sums).
    const FUSED_TOL: f32 = 1e-6;

    /// Odd sizes: a scalar, vectors shorter and longer than one SIMD register, matrices,
    /// and one variable above `PAR_MIN_ELEMS` (split over threads when there are several).
    const SHAPES: &[&[usize]] = &[&[1], &[7], &[3, 5], &[33, 17], &[1001], &[3, 11_111]];

    fn random_vars(rng: &mut Rng) -> Vec<(String, Var)> {
        SHAPES
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let t = rng.normal_tensor(s, &Device::Cpu).unwrap();
                (format!("p{i}"), Var::from_tensor(&t).unwrap())
            })
            .collect()
    }

    /// Independent copies (own storage) of `vars`.
    fn copies(vars: &[(String, Var)]) -> Vec<(String, Var)> {
        vars.iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap(),
                )
            })
            .collect()
    }

    /// A loss with uneven, sign-varying gradients: sum(c * w^3) + sum((w - 1)^2) per var
    /// (`p1` left out: a variable without a gradient must be left alone).
    fn loss(vars: &[(String, Var)], coefs: &[Tensor]) -> Tensor {
        let mut total = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap();
        for ((name, v), c) in vars.iter().zip(coefs) {
            if name == "p1" {
                continue;
            }
            let w = v.as_tensor();
            let cubic = (w.powf(3.0).unwrap() * c).unwrap().sum_all().unwrap();
            let quad = (w - 1.0).unwrap().sqr().unwrap().sum_all().unwrap();
            total = ((total + cubic).unwrap() + quad).unwrap();
        }
        total
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn assert_close(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            let tol = FUSED_TOL * b.abs().max(1.0);
            assert!(
                (a - b).abs() <= tol,
                "{what}[{i}]: fused {a} vs reference {b}"
            );
        }
    }

    /// Runs `steps` steps of the fused and the reference optimizer from the same start with
    /// weight decay and clipping; returns the fused weights and state.
    fn fused_vs_reference(steps: usize) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(5);
        let fused_vars = random_vars(&mut rng);
        let ref_vars = copies(&fused_vars);
        let coefs: Vec<Tensor> = SHAPES
            .iter()
            .map(|s| rng.normal_tensor(s, &Device::Cpu).unwrap())
            .collect();
        let cfg = AdamWConfig {
            weight_decay: 0.05,
            ..Default::default()
        };
        let mut fused = AdamW::new(fused_vars.clone(), cfg.clone()).unwrap();
        let mut reference = AdamW::new_reference(ref_vars.clone(), cfg).unwrap();
        assert!(fused
            .moments
            .iter()
            .all(|m| matches!(m, Moments::Host { .. })));
        let untouched = values(fused_vars[1].1.as_tensor());
        let mut clipped = 0;
        for step in 0..steps {
            let lr = 0.01 * (step + 1) as f64;
            let gf = loss(&fused_vars, &coefs).backward().unwrap();
            let gr = loss(&ref_vars, &coefs).backward().unwrap();
            let (nf, nr) = (
                fused.grad_norm(&gf).unwrap(),
                reference.grad_norm_reference(&gr).unwrap(),
            );
            assert!(
                (nf - nr).abs() <= 1e-5 * nr,
                "step {step}: norm {nf} vs {nr}"
            );
            // Clip every other step, at half the norm (each side clips by its own norm).
            let clip = if step % 2 == 0 {
                0.5 * nr
            } else {
                f64::INFINITY
            };
            let scale = |n: f64| if n > clip { clip / n } else { 1.0 };
            clipped += usize::from(nf > clip);
            fused.step(&gf, lr, scale(nf)).unwrap();
            reference.step(&gr, lr, scale(nr)).unwrap();
            let (sf, sr) = (fused.state(), reference.state());
            assert_eq!(sf.len(), sr.len());
            for ((name, a), (_, b)) in fused_vars.iter().zip(&ref_vars) {
                let at = format!("step {step}, {name}");
                assert_close(&at, &values(a.as_tensor()), &values(b.as_tensor()));
                for k in ["m", "v"] {
                    let key = format!("{k}.{name}");
                    assert_eq!(sf[&key].dims(), a.dims());
                    assert_close(
                        &format!("{at}, {k}"),
                        &values(&sf[&key]),
                        &values(&sr[&key]),
                    );
                }
            }
        }
        assert!(
            clipped > 0 && clipped < steps,
            "clipping should be exercised: {clipped}"
        );
        assert_eq!(values(fused_vars[1].1.as_tensor()), untouched);
        let mut out: Vec<Vec<f32>> = fused_vars
            .iter()
            .map(|(_, v)| values(v.as_tensor()))
            .collect();
        let st = fused.state();
        let mut keys: Vec<&String> = st.keys().collect();
        keys.sort();
        out.extend(keys.into_iter().map(|k| values(&st[k])));
        out
    }

    #[test]
    fn fused_update_matches_the_tensor_ops() {
        fused_vs_reference(8);
    }

    #[test]
    fn fused_update_is_the_same_on_any_number_of_threads() {
        // Splitting over threads must not change a single bit (bit-identical resume on
        // another machine).
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| fused_vs_reference(3))
        };
        assert_eq!(on(1), on(4));
    }

    #[test]
    fn non_f32_variables_take_the_tensor_path() {
        // An f64 variable beside an f32 one: the first keeps tensor moments and the
        // tensor-op update, and both follow the algorithm.
        let cfg = AdamWConfig::default();
        let w32 = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let w64 = Var::new(&[1.0f64], &Device::Cpu).unwrap();
        let vars = vec![
            ("a".to_string(), w32.clone()),
            ("b".to_string(), w64.clone()),
        ];
        let mut opt = AdamW::new(vars, cfg.clone()).unwrap();
        assert!(matches!(opt.moments[0], Moments::Host { .. }));
        assert!(matches!(opt.moments[1], Moments::Tensors { .. }));
        let (mut w, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
        for t in 1..=3 {
            let l32 = w32.as_tensor().sqr().unwrap().sum_all().unwrap();
            let l64 = w64.as_tensor().sqr().unwrap().sum_all().unwrap();
            let l = (l32.to_dtype(DType::F64).unwrap() + l64).unwrap();
            let grads = l.backward().unwrap();
            let norm = opt.grad_norm(&grads).unwrap();
            assert!(
                (norm - (2.0f64 * 4.0 * w * w).sqrt()).abs() < 1e-5,
                "{norm}"
            );
            opt.step(&grads, 0.1, 1.0).unwrap();
            let g = 2.0 * w;
            m = cfg.beta1 * m + (1.0 - cfg.beta1) * g;
            v = cfg.beta2 * v + (1.0 - cfg.beta2) * g * g;
            let mh = m / (1.0 - cfg.beta1.powi(t));
            let vh = v / (1.0 - cfg.beta2.powi(t));
            w -= 0.1 * mh / (vh.sqrt() + cfg.eps);
            let got64 = w64.as_tensor().to_vec1::<f64>().unwrap()[0];
            let got32 = w32.as_tensor().to_vec1::<f32>().unwrap()[0] as f64;
            assert!((got64 - w).abs() < 1e-12, "t={t}: {got64} vs {w}");
            assert!((got32 - w).abs() < F32_TOL, "t={t}: {got32} vs {w}");
        }
        let st = opt.state();
        assert_eq!(st["m.b"].dtype(), DType::F64);
        assert_eq!(st["m.a"].dtype(), DType::F32);
    }

    #[test]
    fn state_is_a_snapshot_and_load_state_copies() {
        // An in-place update must not reach tensors handed out earlier.
        let var = Var::new(&[0.5f32, -2.0, 3.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], AdamWConfig::default()).unwrap();
        let grads = |var: &Var| {
            var.as_tensor()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        opt.step(&grads(&var), 0.1, 1.0).unwrap();
        let st = opt.state();
        let saved: Vec<Vec<f32>> = ["m.w", "v.w"].iter().map(|k| values(&st[*k])).collect();
        opt.step(&grads(&var), 0.1, 1.0).unwrap();
        let again: Vec<Vec<f32>> = ["m.w", "v.w"].iter().map(|k| values(&st[*k])).collect();
        assert_eq!(saved, again);
        // Loading from a map and stepping leaves the map alone.
        opt.load_state(&st, 1).unwrap();
        opt.step(&grads(&var), 0.1, 1.0).unwrap();
        let after: Vec<Vec<f32>> = ["m.w", "v.w"].iter().map(|k| values(&st[*k])).collect();
        assert_eq!(saved, after);
    }
}
