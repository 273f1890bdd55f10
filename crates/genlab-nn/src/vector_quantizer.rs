//! Vector quantiser of VQ-VAE and VQGAN: a codebook of `K` vectors of size `D`, the
//! nearest-code lookup, the straight-through gradient, the codebook and commitment losses,
//! and the exponential-moving-average codebook updates.
//!
//! van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning"
//! (arXiv:1711.00937), Sec. 3.1-3.2 and App. A.1; Razavi, van den Oord & Vinyals 2019,
//! "Generating Diverse High-Fidelity Images with VQ-VAE-2" (arXiv:1906.00446), Sec. 3.1
//! (EMA updates with Laplace smoothing); used as is by Esser, Rombach & Ommer 2021,
//! "Taming Transformers" (VQGAN, arXiv:2012.09841).
//!
//! For an encoder output `z [B, D, H, W]` every position's vector `z_j` is replaced by its
//! nearest code `e_k`, `k = argmin_i ||z_j - e_i||²` (ties go to the lowest index):
//! - **straight-through** (Eq. 1-3 of van den Oord et al.): the decoder gets
//!   `z + sg[z_q - z]`, equal to `z_q` forward and the identity on `z` backward;
//! - **loss** (Eq. 3): `||sg[z] - z_q||² + β ||z - sg[z_q]||²`, each a mean over the
//!   `B·D·H·W` elements (as VQGAN's `torch.mean`). In EMA mode the codebook term is dropped:
//!   the codebook is not trained by gradients;
//! - **EMA** (App. A.1), a step [`VectorQuantizer::ema_update`] the training step calls after
//!   its optimiser step, with the batch's `z` and indices: with `n_i` the number of vectors
//!   assigned to code `i` and `s_i` their sum,
//!   `N_i <- γ N_i + (1 - γ) n_i`, `m_i <- γ m_i + (1 - γ) s_i`, then Laplace smoothing
//!   `Ñ_i = (N_i + ε) / (n + K ε) · n` with `n = Σ N_i` (Razavi et al.'s Sonnet code), and
//!   `e_i = m_i / Ñ_i`.
//!
//! **Initial EMA state.** The Sonnet code starts `N = 0`, `m = 0` and removes the zero
//! bias of the averages; the common PyTorch port starts `N = 0`, `m = e`, which sends every
//! code unused in the first step to `m / ε` (far from all data, dead for good). Here the state
//! starts as one pseudo-assignment per code at its own initial value, `N_i = 1`, `m_i = e_i`,
//! which the smoothing maps back to exactly `e_i`: an unused code stays where it is while
//! `γ^t` dominates `ε` and then shrinks towards the origin, never flies off.
//!
//! **Dead codes** (on by default, `dead_code_threshold = 0` turns it off): after each EMA
//! update every code whose `N_i` is below the threshold is restarted at a vector of the batch
//! drawn with the caller's RNG (the random restarts of Dhariwal et al. 2020, Jukebox,
//! arXiv:2005.00341), its state reset to one pseudo-assignment there. `N_i` counts
//! assignments per batch, so 1.0 restarts the codes used less than about once a batch.
//!
//! Parameter names: `codebook` `[K, D]` (uniform on `±1/K`, the VQ-VAE init); in EMA mode
//! also `ema_cluster_size` `[K]` and `ema_embed_sum` `[K, D]`. In EMA mode all three are
//! buffers that only [`VectorQuantizer::ema_update`] changes: the optimiser must skip the
//! names [`VectorQuantizer::buffer_names`] returns (they still belong in checkpoints).
//!
//! [`CodebookUsage`] accumulates code counts over a dataset: the fraction of codes used and
//! the perplexity `exp(-Σ p_i log p_i)` (K for uniform use, 1 when one code takes all).

use candle_core::{DType, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use genlab_core::Rng;

/// Settings of [`VectorQuantizer`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VqConfig {
    /// Number of codes `K`.
    pub codebook_size: usize,
    /// Commitment weight `β`.
    pub beta: f64,
    /// Codebook updated by moving averages (true) or by the gradient of the codebook loss.
    pub ema: bool,
    /// EMA decay `γ`.
    pub decay: f64,
    /// Laplace smoothing `ε` of the EMA cluster sizes.
    pub eps: f64,
    /// Restart codes whose EMA cluster size falls below this (assignments per batch) at
    /// batch vectors; 0 is off. EMA mode only.
    pub dead_code_threshold: f64,
}

impl Default for VqConfig {
    fn default() -> Self {
        Self {
            // 256 codes: a byte per latent position; van den Oord et al. use 512 on
            // ImageNet, far more than ten digits need.
            codebook_size: 256,
            // β = 0.25: the paper's value (Sec. 4.1), also VQGAN's.
            beta: 0.25,
            ema: true,
            // γ = 0.99: App. A.1.
            decay: 0.99,
            // ε = 1e-5: Razavi et al.'s Sonnet `VectorQuantizerEMA` default.
            eps: 1e-5,
            // 1.0: restart codes used less than about once a batch (Jukebox's threshold).
            // On the clustered toy of tests/vq_learns.rs, EMA without restarts leaves
            // clusters sharing codes (perplexity 10 of 16); with them every code is used.
            dead_code_threshold: 1.0,
        }
    }
}

impl VqConfig {
    pub fn validate(&self) -> genlab_core::Result<()> {
        let bad = |m: String| Err(genlab_core::Error::Config(m));
        if self.codebook_size < 2 || self.codebook_size > u32::MAX as usize {
            return bad(format!(
                "vq.codebook_size must be at least 2, got {}",
                self.codebook_size
            ));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return bad(format!(
                "vq.beta must be a finite number >= 0, got {}",
                self.beta
            ));
        }
        if !(self.decay >= 0.0 && self.decay < 1.0) {
            return bad(format!("vq.decay must be in [0, 1), got {}", self.decay));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!(
                "vq.eps must be a finite number > 0, got {}",
                self.eps
            ));
        }
        if !(self.dead_code_threshold.is_finite() && self.dead_code_threshold >= 0.0) {
            return bad(format!(
                "vq.dead_code_threshold must be a finite number >= 0 (0 is off), got {}",
                self.dead_code_threshold
            ));
        }
        Ok(())
    }
}

/// What [`VectorQuantizer::forward`] returns.
#[derive(Debug, Clone)]
pub struct VqOutput {
    /// `[B, D, H, W]`: the codes, with the straight-through gradient to `z`.
    pub z_q: Tensor,
    /// Scalar: codebook + β commitment loss (commitment only in EMA mode).
    pub loss: Tensor,
    /// `[B, H, W]` u32: the chosen code at each position.
    pub indices: Tensor,
    /// Perplexity of the batch's code use, in `[1, K]`.
    pub perplexity: f64,
    /// Fraction of the `K` codes used in the batch.
    pub usage: f64,
}

/// What one [`VectorQuantizer::ema_update`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmaStats {
    /// Codes restarted at batch vectors (0 unless `dead_code_threshold > 0`).
    pub restarted: usize,
}

/// Counts per code, accumulated over batches: used fraction and perplexity.
#[derive(Debug, Clone, PartialEq)]
pub struct CodebookUsage {
    counts: Vec<u64>,
}

impl CodebookUsage {
    /// An empty count for `k` codes.
    pub fn new(k: usize) -> Self {
        Self { counts: vec![0; k] }
    }

    /// Adds code indices (any shape, u32).
    pub fn add(&mut self, indices: &Tensor) -> genlab_core::Result<()> {
        let idx: Vec<u32> = indices.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
        self.add_indices(&idx)
    }

    /// Adds code indices; one outside `0..K` is an error (and nothing is added).
    pub fn add_indices(&mut self, idx: &[u32]) -> genlab_core::Result<()> {
        let k = self.counts.len();
        if let Some(bad) = idx.iter().find(|&&i| i as usize >= k) {
            return Err(genlab_core::Error::InvalidInput(format!(
                "code index {bad} is out of range for a codebook of {k} codes"
            )));
        }
        for &i in idx {
            self.counts[i as usize] += 1;
        }
        Ok(())
    }

    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Number of indices counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Fraction of codes used at least once (0 when nothing was counted).
    pub fn used_fraction(&self) -> f64 {
        if self.counts.is_empty() {
            return 0.0;
        }
        self.counts.iter().filter(|&&c| c > 0).count() as f64 / self.counts.len() as f64
    }

    /// `exp(-Σ p_i ln p_i)` with `p_i = count_i / total`: the effective number of codes
    /// (0 when nothing was counted).
    pub fn perplexity(&self) -> f64 {
        perplexity(&self.counts)
    }
}

/// Perplexity of a histogram (0 for an empty one).
fn perplexity(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum();
    h.exp()
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct VectorQuantizer {
    cfg: VqConfig,
    dim: usize,
    codebook: Var,
    /// `(N [K], m [K, D])` in EMA mode.
    ema: Option<(Var, Var)>,
    prefix: String,
}

/// A variable handle on a parameter the `VarBuilder` made (shared storage when the builder
/// is a `ParamStore`; a private copy when it reads fixed tensors, where nothing updates it).
fn var(t: Tensor) -> candle_core::Result<Var> {
    Var::from_tensor(&t)
}

impl VectorQuantizer {
    /// A codebook of `cfg.codebook_size` vectors of size `dim` (the latent channels).
    pub fn new(cfg: &VqConfig, dim: usize, vb: VarBuilder) -> genlab_core::Result<Self> {
        cfg.validate()?;
        if dim == 0 {
            return Err(genlab_core::Error::Config(
                "vq: the code dimension (latent channels) must be positive".into(),
            ));
        }
        let k = cfg.codebook_size;
        let bound = 1.0 / k as f64;
        let codebook = var(vb.get_with_hints(
            (k, dim),
            "codebook",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?)?;
        let ema = if cfg.ema {
            // A builder that already holds the sums (weights read from a checkpoint) keeps
            // them; a fresh one starts at one pseudo-assignment per code (module docs).
            let fresh = !vb.contains_tensor("ema_embed_sum");
            let n = var(vb.get_with_hints(k, "ema_cluster_size", Init::Const(1.0))?)?;
            let m = var(vb.get_with_hints((k, dim), "ema_embed_sum", Init::Const(0.0))?)?;
            if fresh {
                m.set(&codebook.as_tensor().copy()?)?;
            }
            Some((n, m))
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            dim,
            codebook,
            ema,
            prefix: vb.prefix(),
        })
    }

    pub fn config(&self) -> &VqConfig {
        &self.cfg
    }

    /// The codebook `[K, D]` (a live view of the variable).
    pub fn codebook(&self) -> &Tensor {
        self.codebook.as_tensor()
    }

    /// Overwrites the codebook (and, in EMA mode, resets the EMA state to one
    /// pseudo-assignment per code there).
    pub fn set_codebook(&self, e: &Tensor) -> genlab_core::Result<()> {
        let k = self.cfg.codebook_size;
        if e.dims() != [k, self.dim] {
            return Err(genlab_core::Error::InvalidInput(format!(
                "codebook must be [{k}, {}], got {:?}",
                self.dim,
                e.dims()
            )));
        }
        let e = e.to_dtype(DType::F32)?.copy()?;
        self.codebook.set(&e)?;
        if let Some((n, m)) = &self.ema {
            n.set(&Tensor::ones(k, DType::F32, e.device())?)?;
            m.set(&e.copy()?)?;
        }
        Ok(())
    }

    /// Full names (with the builder's prefix) of the tensors the optimiser must not update:
    /// in EMA mode the codebook and its EMA state, otherwise none.
    pub fn buffer_names(&self) -> Vec<String> {
        if self.ema.is_none() {
            return Vec::new();
        }
        ["codebook", "ema_cluster_size", "ema_embed_sum"]
            .iter()
            .map(|n| {
                if self.prefix.is_empty() {
                    n.to_string()
                } else {
                    format!("{}.{n}", self.prefix)
                }
            })
            .collect()
    }

    /// `z [N, D]` (detached) -> nearest code index `[N]` u32.
    fn nearest(&self, flat: &Tensor) -> candle_core::Result<Tensor> {
        let e = self.codebook.as_tensor().detach();
        // ||z||² - 2 z·e + ||e||²  -> [N, K]
        let d = flat
            .sqr()?
            .sum_keepdim(1)?
            .broadcast_add(&e.sqr()?.sum(1)?.unsqueeze(0)?)?
            .broadcast_sub(&(flat.matmul(&e.t()?)? * 2.0)?)?;
        d.argmin(1)
    }

    /// `z [B, D, H, W]` -> codes, loss, indices and the batch's code statistics.
    pub fn forward(&self, z: &Tensor) -> genlab_core::Result<VqOutput> {
        let dims = z.dims();
        if dims.len() != 4 || dims[1] != self.dim || dims.contains(&0) {
            return Err(genlab_core::Error::InvalidInput(format!(
                "vq: expected latents [B, {}, H, W] (non-empty), got {dims:?}",
                self.dim
            )));
        }
        let (b, d, h, w) = z.dims4()?;
        let flat = z.detach().permute((0, 2, 3, 1))?.reshape((b * h * w, d))?;
        let idx = self.nearest(&flat)?;
        let e = if self.ema.is_some() {
            self.codebook.as_tensor().detach()
        } else {
            self.codebook.as_tensor().clone()
        };
        let q = e
            .index_select(&idx, 0)?
            .reshape((b, h, w, d))?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        let commit = (z - q.detach())?.sqr()?.mean_all()?;
        let mut loss = (commit * self.cfg.beta)?;
        if self.ema.is_none() {
            let codebook = (z.detach() - &q)?.sqr()?.mean_all()?;
            loss = (loss + codebook)?;
        }
        let z_q = (z + (&q - z)?.detach())?;
        let idx_v: Vec<u32> = idx.to_vec1()?;
        let mut usage = CodebookUsage::new(self.cfg.codebook_size);
        usage.add_indices(&idx_v)?;
        Ok(VqOutput {
            z_q,
            loss,
            indices: idx.reshape((b, h, w))?,
            perplexity: usage.perplexity(),
            usage: usage.used_fraction(),
        })
    }

    /// The codes `[B, D, H, W]` of indices `[B, H, W]` (decoding from indices).
    pub fn lookup(&self, indices: &Tensor) -> genlab_core::Result<Tensor> {
        let (b, h, w) = indices.dims3()?;
        let k = self.cfg.codebook_size;
        let flat: Vec<u32> = indices.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
        if let Some(bad) = flat.iter().find(|&&i| i as usize >= k) {
            return Err(genlab_core::Error::InvalidInput(format!(
                "code index {bad} is out of range for a codebook of {k} codes"
            )));
        }
        let idx = Tensor::from_vec(flat, b * h * w, indices.device())?;
        Ok(self
            .codebook
            .as_tensor()
            .detach()
            .index_select(&idx, 0)?
            .reshape((b, h, w, self.dim))?
            .permute((0, 3, 1, 2))?
            .contiguous()?)
    }

    /// One EMA step of the codebook from a batch: `z [B, D, H, W]` (the encoder output the
    /// batch's forward quantised) and its `indices [B, H, W]` (module docs). An error in
    /// gradient mode. `rng` draws the batch vectors dead codes restart at.
    pub fn ema_update(
        &self,
        z: &Tensor,
        indices: &Tensor,
        rng: &mut Rng,
    ) -> genlab_core::Result<EmaStats> {
        let Some((n_var, m_var)) = &self.ema else {
            return Err(genlab_core::Error::InvalidInput(
                "vq: ema_update called on a quantiser trained by gradients (vq.ema = false)".into(),
            ));
        };
        let (k, d) = (self.cfg.codebook_size, self.dim);
        let (b, zd, h, w) = z.dims4()?;
        if zd != d || indices.dims() != [b, h, w] {
            return Err(genlab_core::Error::InvalidInput(format!(
                "vq: ema_update needs z [B, {d}, H, W] and indices [B, H, W], got {:?} and {:?}",
                z.dims(),
                indices.dims()
            )));
        }
        let flat: Vec<f32> = z
            .detach()
            .to_dtype(DType::F32)?
            .permute((0, 2, 3, 1))?
            .flatten_all()?
            .to_vec1()?;
        let idx: Vec<u32> = indices.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
        if let Some(bad) = idx.iter().find(|&&i| i as usize >= k) {
            return Err(genlab_core::Error::InvalidInput(format!(
                "code index {bad} is out of range for a codebook of {k} codes"
            )));
        }
        let mut counts = vec![0f64; k];
        let mut sums = vec![0f64; k * d];
        for (j, &i) in idx.iter().enumerate() {
            let i = i as usize;
            counts[i] += 1.0;
            for c in 0..d {
                sums[i * d + c] += flat[j * d + c] as f64;
            }
        }
        let g = self.cfg.decay;
        let mut n: Vec<f64> = n_var
            .as_tensor()
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?
            .iter()
            .zip(&counts)
            .map(|(&old, &c)| g * old + (1.0 - g) * c)
            .collect();
        let mut m: Vec<f64> = m_var
            .as_tensor()
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?
            .iter()
            .zip(&sums)
            .map(|(&old, &s)| g * old + (1.0 - g) * s)
            .collect();
        let total: f64 = n.iter().sum();
        let eps = self.cfg.eps;
        let mut e = vec![0f64; k * d];
        for i in 0..k {
            let smoothed = (n[i] + eps) / (total + k as f64 * eps) * total;
            for c in 0..d {
                e[i * d + c] = m[i * d + c] / smoothed;
            }
        }
        let mut restarted = 0;
        if self.cfg.dead_code_threshold > 0.0 && !idx.is_empty() {
            for i in 0..k {
                if n[i] < self.cfg.dead_code_threshold {
                    let j = rng.below(idx.len() as u64) as usize;
                    n[i] = 1.0;
                    for c in 0..d {
                        let v = flat[j * d + c] as f64;
                        m[i * d + c] = v;
                        e[i * d + c] = v;
                    }
                    restarted += 1;
                }
            }
        }
        let dev = z.device();
        let to = |v: Vec<f64>, shape: &[usize]| -> candle_core::Result<Tensor> {
            Tensor::from_vec(
                v.into_iter().map(|x| x as f32).collect::<Vec<_>>(),
                shape,
                dev,
            )
        };
        n_var.set(&to(n, &[k])?)?;
        m_var.set(&to(m, &[k, d])?)?;
        self.codebook.set(&to(e, &[k, d])?)?;
        Ok(EmaStats { restarted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use genlab_core::ParamStore;

    /// f32 arithmetic on small sums against f64 references.
    const TOL: f64 = 1e-5;

    fn vq(k: usize, d: usize, ema: bool, seed: u64) -> (ParamStore, VectorQuantizer) {
        let ps = ParamStore::new(seed, &Device::Cpu);
        // No dead-code restarts: these tests check the closed forms.
        let cfg = VqConfig {
            codebook_size: k,
            ema,
            dead_code_threshold: 0.0,
            ..Default::default()
        };
        let q = VectorQuantizer::new(&cfg, d, ps.vb().pp("vq")).unwrap();
        (ps, q)
    }

    fn randn(rng: &mut Rng, dims: &[usize]) -> Tensor {
        let n = dims.iter().product();
        Tensor::from_vec(rng.normal_vec(n), dims, &Device::Cpu).unwrap()
    }

    fn vals(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn nearest_codes_match_brute_force() {
        let (k, d) = (37, 3);
        let (_ps, q) = vq(k, d, true, 1);
        let mut rng = Rng::new(5);
        let e = randn(&mut rng, &[k, d]);
        q.set_codebook(&e).unwrap();
        let z = randn(&mut rng, &[2, d, 5, 4]);
        let out = q.forward(&z).unwrap();
        assert_eq!(out.indices.dims(), &[2, 5, 4]);
        let idx: Vec<u32> = out.indices.flatten_all().unwrap().to_vec1().unwrap();
        let ev = vals(&e);
        let zv = vals(&z.permute((0, 2, 3, 1)).unwrap());
        let zq = vals(&out.z_q.permute((0, 2, 3, 1)).unwrap());
        for (j, &i) in idx.iter().enumerate() {
            let dist = |c: usize| -> f64 {
                (0..d)
                    .map(|t| (zv[j * d + t] - ev[c * d + t]).powi(2))
                    .sum()
            };
            let best = (0..k).map(dist).fold(f64::INFINITY, f64::min);
            // f32 distances may swap near-ties; the chosen code must be (near-)nearest.
            assert!(dist(i as usize) <= best + TOL, "position {j}");
            for t in 0..d {
                assert!((zq[j * d + t] - ev[i as usize * d + t]).abs() < TOL);
            }
        }
    }

    #[test]
    fn straight_through_gradient_is_the_identity_on_z() {
        for ema in [true, false] {
            let (d, k) = (4, 8);
            let (_ps, q) = vq(k, d, ema, 2);
            let mut rng = Rng::new(9);
            let z = Var::from_tensor(&randn(&mut rng, &[2, d, 3, 3])).unwrap();
            let wgt = randn(&mut rng, &[2, d, 3, 3]);
            let out = q.forward(z.as_tensor()).unwrap();
            let obj = (&out.z_q * &wgt).unwrap().sum_all().unwrap();
            let g = obj.backward().unwrap();
            let gz = vals(g.get(z.as_tensor()).unwrap());
            for (a, b) in gz.iter().zip(vals(&wgt)) {
                assert!((a - b).abs() < TOL, "ema {ema}: {a} vs {b}");
            }
        }
    }

    /// K = 2 codes in D = 2; four positions (B = 1, H = 2, W = 2) with known assignments.
    fn tiny() -> (Tensor, Tensor, [[f64; 2]; 4], [usize; 4]) {
        let e = Tensor::new(&[[0f32, 0.0], [2.0, 2.0]], &Device::Cpu).unwrap();
        // positions (h, w) in row-major order: vectors and their nearest code.
        let zs = [[0.5, -0.5], [1.5, 2.5], [3.0, 1.0], [-1.0, 0.0]];
        let near = [0, 1, 1, 0];
        let mut data = vec![0f32; 8];
        for (p, v) in zs.iter().enumerate() {
            for c in 0..2 {
                data[c * 4 + p] = v[c] as f32; // [1, D, 2, 2]
            }
        }
        let z = Tensor::from_vec(data, (1, 2, 2, 2), &Device::Cpu).unwrap();
        (e, z, zs, near)
    }

    #[test]
    fn loss_and_its_gradients_match_a_hand_computation() {
        let (e, z, zs, near) = tiny();
        let ev = [[0.0, 0.0], [2.0, 2.0]];
        let sq: f64 = zs
            .iter()
            .zip(near)
            .map(|(v, i)| (v[0] - ev[i][0]).powi(2) + (v[1] - ev[i][1]).powi(2))
            .sum();
        let mse = sq / 8.0; // mean over B·D·H·W = 8 elements
        let beta = VqConfig::default().beta;
        for ema in [false, true] {
            let (ps, q) = vq(2, 2, ema, 3);
            q.set_codebook(&e).unwrap();
            let zv = Var::from_tensor(&z).unwrap();
            let out = q.forward(zv.as_tensor()).unwrap();
            let idx: Vec<u32> = out.indices.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(idx, near.map(|i| i as u32));
            let want = if ema { beta * mse } else { (1.0 + beta) * mse };
            let got = out.loss.to_scalar::<f32>().unwrap() as f64;
            assert!((got - want).abs() < TOL, "ema {ema}: {got} vs {want}");
            let g = out.loss.backward().unwrap();
            // d/dz of β mean((z - sg[e])²) = 2β (z - e) / 8.
            let gz = vals(
                &g.get(zv.as_tensor())
                    .unwrap()
                    .permute((0, 2, 3, 1))
                    .unwrap(),
            );
            for (p, v) in zs.iter().enumerate() {
                for c in 0..2 {
                    let want = 2.0 * beta * (v[c] - ev[near[p]][c]) / 8.0;
                    assert!((gz[p * 2 + c] - want).abs() < TOL);
                }
            }
            let cb = ps
                .vars()
                .into_iter()
                .find(|(n, _)| n == "vq.codebook")
                .unwrap()
                .1;
            match g.get(cb.as_tensor()) {
                // EMA mode: the codebook gets no gradient.
                None => assert!(ema),
                Some(gc) => {
                    assert!(!ema);
                    // d/de_i of mean((sg[z] - e)²) = Σ_{j -> i} 2 (e_i - z_j) / 8.
                    let gc = vals(gc);
                    for i in 0..2 {
                        for c in 0..2 {
                            let want: f64 = (0..4)
                                .filter(|&p| near[p] == i)
                                .map(|p| 2.0 * (ev[i][c] - zs[p][c]) / 8.0)
                                .sum();
                            assert!((gc[i * 2 + c] - want).abs() < TOL);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn one_ema_update_matches_the_closed_form() {
        let (e, z, zs, near) = tiny();
        let (_ps, q) = vq(2, 2, true, 4);
        q.set_codebook(&e).unwrap();
        let out = q.forward(&z).unwrap();
        q.ema_update(&z, &out.indices, &mut Rng::new(0)).unwrap();
        let cfg = VqConfig::default();
        let (g, eps, k) = (cfg.decay, cfg.eps, 2.0);
        let ev = [[0.0, 0.0], [2.0, 2.0]];
        // State before: N_i = 1, m_i = e_i. Both codes get two vectors.
        let mut n = [0.0; 2];
        let mut m = [[0.0; 2]; 2];
        for i in 0..2 {
            let assigned: Vec<usize> = (0..4).filter(|&p| near[p] == i).collect();
            n[i] = g * 1.0 + (1.0 - g) * assigned.len() as f64;
            for c in 0..2 {
                let s: f64 = assigned.iter().map(|&p| zs[p][c]).sum();
                m[i][c] = g * ev[i][c] + (1.0 - g) * s;
            }
        }
        let total = n[0] + n[1];
        let got = vals(q.codebook());
        for i in 0..2 {
            let smoothed = (n[i] + eps) / (total + k * eps) * total;
            for c in 0..2 {
                let want = m[i][c] / smoothed;
                assert!((got[i * 2 + c] - want).abs() < TOL, "{i},{c}");
            }
        }
        // Hand values: N = 0.99·1 + 0.01·2 = 1.01 for both codes, so Ñ = 1.01;
        // m_0 = 0.99·0 + 0.01·(-0.5, -0.5), m_1 = 0.99·(2, 2) + 0.01·(4.5, 3.5) = (2.025, 2.015).
        let hand = [-0.005, -0.005, 2.025, 2.015].map(|v| v / 1.01);
        for (a, b) in got.iter().zip(hand) {
            assert!((a - b).abs() < TOL, "{a} vs {b}");
        }
    }

    /// On a fixed batch the EMA codebook converges to the k-means (Lloyd) fixed point:
    /// each code the mean of the vectors assigned to it, up to the smoothing's
    /// `n / (n + K ε)` factor, which is computed here too.
    #[test]
    fn repeated_ema_updates_reach_the_cluster_means() {
        let (k, d) = (2, 2);
        let ps = ParamStore::new(0, &Device::Cpu);
        let cfg = VqConfig {
            codebook_size: k,
            decay: 0.9,
            dead_code_threshold: 0.0,
            ..Default::default()
        };
        let q = VectorQuantizer::new(&cfg, d, ps.vb()).unwrap();
        q.set_codebook(&Tensor::new(&[[-1f32, 0.0], [1.0, 0.0]], &Device::Cpu).unwrap())
            .unwrap();
        let mut rng = Rng::new(4);
        // 3 points around (-3, 1) and 5 around (2, -2): [1, 2, 1, 8].
        let pts: Vec<[f64; 2]> = (0..8)
            .map(|j| {
                let c = if j < 3 { [-3.0, 1.0] } else { [2.0, -2.0] };
                [c[0] + 0.3 * rng.normal(), c[1] + 0.3 * rng.normal()]
            })
            .collect();
        let mut data = vec![0f32; 16];
        for (j, p) in pts.iter().enumerate() {
            data[j] = p[0] as f32;
            data[8 + j] = p[1] as f32;
        }
        let z = Tensor::from_vec(data, (1, 2, 1, 8), &Device::Cpu).unwrap();
        for _ in 0..400 {
            let out = q.forward(&z).unwrap();
            q.ema_update(&z, &out.indices, &mut rng).unwrap();
        }
        let e = vals(q.codebook());
        let eps = cfg.eps;
        for (i, (lo, hi)) in [(0usize, 3usize), (3, 8)].into_iter().enumerate() {
            let cnt = (hi - lo) as f64;
            let smoothed = (cnt + eps) / (8.0 + k as f64 * eps) * 8.0;
            for c in 0..2 {
                let sum: f64 = pts[lo..hi].iter().map(|p| p[c]).sum();
                let want = sum / smoothed;
                assert!(
                    (e[i * 2 + c] - want).abs() < 1e-4,
                    "code {i}: {} vs {want}",
                    e[i * 2 + c]
                );
            }
        }
    }

    #[test]
    fn initial_ema_state_keeps_the_codebook_and_unused_codes_stay_put() {
        let (k, d) = (16, 2);
        let (_ps, q) = vq(k, d, true, 6);
        let before = vals(q.codebook());
        // every vector at code 0's position: only code 0 is used.
        let mut rng = Rng::new(1);
        let c0 = q.codebook().get(0).unwrap();
        let z = c0
            .reshape((1, d, 1, 1))
            .unwrap()
            .repeat((4, 1, 3, 3))
            .unwrap()
            .contiguous()
            .unwrap();
        let out = q.forward(&z).unwrap();
        q.ema_update(&z, &out.indices, &mut rng).unwrap();
        let after = vals(q.codebook());
        // Unused codes: e = γ e / Ñ with Ñ ≈ γ: they move by about ε relative.
        for i in 1..k {
            for c in 0..d {
                let (a, b) = (before[i * d + c], after[i * d + c]);
                assert!((a - b).abs() < 1e-3 * a.abs().max(1e-3), "code {i}");
            }
        }
    }

    #[test]
    fn dead_codes_restart_at_batch_vectors() {
        let (k, d) = (8, 2);
        let ps = ParamStore::new(0, &Device::Cpu);
        let cfg = VqConfig {
            codebook_size: k,
            dead_code_threshold: 1.0,
            ..Default::default()
        };
        let q = VectorQuantizer::new(&cfg, d, ps.vb()).unwrap();
        let mut rng = Rng::new(3);
        let z = randn(&mut rng, &[2, d, 2, 2]);
        let out = q.forward(&z).unwrap();
        let stats = q.ema_update(&z, &out.indices, &mut rng).unwrap();
        // N_i = γ + (1 - γ) n_i < 1 exactly for the unused codes.
        let used = CodebookUsage::new(k);
        let mut used = used;
        used.add(&out.indices).unwrap();
        let unused = used.counts().iter().filter(|&&c| c == 0).count();
        assert_eq!(stats.restarted, unused);
        let zs = vals(&z.permute((0, 2, 3, 1)).unwrap());
        let e = vals(q.codebook());
        for i in (0..k).filter(|&i| used.counts()[i] == 0) {
            let hit = (0..8).any(|j| (0..d).all(|c| (e[i * d + c] - zs[j * d + c]).abs() < TOL));
            assert!(hit, "code {i} was not restarted at a batch vector");
        }
        assert_eq!(
            q.buffer_names(),
            ["codebook", "ema_cluster_size", "ema_embed_sum"]
        );
    }

    /// Weights read back from a checkpoint keep their EMA state (a fresh store starts it
    /// from the codebook).
    #[test]
    fn ema_state_survives_a_reload() {
        let (k, d) = (4, 2);
        let (ps, q) = vq(k, d, true, 8);
        let mut rng = Rng::new(2);
        let z = randn(&mut rng, &[2, d, 2, 2]);
        let out = q.forward(&z).unwrap();
        q.ema_update(&z, &out.indices, &mut rng).unwrap();
        let saved: std::collections::HashMap<String, Tensor> = ps
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.copy().unwrap()))
            .collect();
        let vb = VarBuilder::from_tensors(saved.clone(), DType::F32, &Device::Cpu);
        let cfg = q.config().clone();
        let back = VectorQuantizer::new(&cfg, d, vb.pp("vq")).unwrap();
        let (_, m) = back.ema.as_ref().unwrap();
        assert_eq!(vals(m.as_tensor()), vals(&saved["vq.ema_embed_sum"]));
        assert_eq!(vals(back.codebook()), vals(&saved["vq.codebook"]));
        // ...and a fresh store resumed with `load` gets them too.
        let (ps2, q2) = vq(k, d, true, 9);
        ps2.load(&saved).unwrap();
        let (_, m2) = q2.ema.as_ref().unwrap();
        assert_eq!(vals(m2.as_tensor()), vals(&saved["vq.ema_embed_sum"]));
    }

    #[test]
    fn perplexity_of_uniform_and_one_hot_use() {
        let k = 16;
        let mut u = CodebookUsage::new(k);
        let all: Vec<u32> = (0..k as u32).cycle().take(10 * k).collect();
        u.add_indices(&all).unwrap();
        assert!((u.perplexity() - k as f64).abs() < 1e-9);
        assert_eq!(u.used_fraction(), 1.0);
        let mut one = CodebookUsage::new(k);
        one.add_indices(&[3; 50]).unwrap();
        assert!((one.perplexity() - 1.0).abs() < 1e-12);
        assert_eq!(one.used_fraction(), 1.0 / k as f64);
        // Two codes with p = 1/4, 3/4: exp(H) by hand.
        let mut two = CodebookUsage::new(k);
        two.add_indices(&[0, 1, 1, 1]).unwrap();
        let h: f64 = -(0.25f64 * 0.25f64.ln() + 0.75 * 0.75f64.ln());
        assert!((two.perplexity() - h.exp()).abs() < 1e-12);
        assert_eq!(CodebookUsage::new(k).perplexity(), 0.0);
        assert!(one.add_indices(&[16]).is_err());
        assert_eq!(one.total(), 50);
    }

    #[test]
    fn config_and_bad_input_give_errors() {
        let cfg: VqConfig = serde_json::from_str(r#"{"codebook_size": 64, "ema": false}"#).unwrap();
        assert_eq!((cfg.codebook_size, cfg.ema, cfg.beta), (64, false, 0.25));
        assert!(serde_json::from_str::<VqConfig>(r#"{"codebok_size": 64}"#).is_err());
        for bad in [
            VqConfig {
                codebook_size: 1,
                ..Default::default()
            },
            VqConfig {
                decay: 1.0,
                ..Default::default()
            },
            VqConfig {
                beta: -1.0,
                ..Default::default()
            },
            VqConfig {
                eps: 0.0,
                ..Default::default()
            },
            VqConfig {
                dead_code_threshold: f64::NAN,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let (_ps, q) = vq(4, 3, false, 0);
        let z = Tensor::zeros((1, 2, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let err = q.forward(&z).unwrap_err().to_string();
        assert!(err.contains("[B, 3, H, W]"), "{err}");
        let idx = Tensor::zeros((1, 2, 2), DType::U32, &Device::Cpu).unwrap();
        assert!(q.ema_update(&z, &idx, &mut Rng::new(0)).is_err());
        assert!(q.buffer_names().is_empty());
        let bad_idx = Tensor::new(&[[[9u32]]], &Device::Cpu).unwrap();
        assert!(q.lookup(&bad_idx).is_err());
    }
}
