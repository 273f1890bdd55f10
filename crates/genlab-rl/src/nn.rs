//! The small networks of the agents: multilayer perceptrons with a hand-written backward
//! pass, all parameters in one flat `f32` vector.
//!
//! No paper (backpropagation: Rumelhart, Hinton & Williams 1986). Why not candle's
//! autograd: the agents' networks are tiny (4-64-64-2) and run thousands of times per
//! second at batch 1 while acting; candle's per-op graph bookkeeping and allocation cost
//! more than the arithmetic there (measured in docs/rl.md). Here a forward pass writes into
//! preallocated buffers, the backward pass is three GEMMs per layer through the `gemm`
//! crate (the one candle uses, AVX-512 kernels on), and optimizers, target-network copies
//! and Polyak averaging are loops over one slice. `tests/mlp_reference.rs` checks the
//! gradients against candle's autograd and central finite differences.
//!
//! Layout: layer `l` maps `sizes[l]` to `sizes[l + 1]` with `W_l` `[out, in]` row-major
//! (PyTorch's `nn.Linear` layout) followed by `b_l` `[out]`; hidden layers apply the
//! activation, the last layer is linear.

use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result, Rng};

/// Hidden-layer nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Tanh,
}

/// How the weights start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// PyTorch's `nn.Linear` default: W and b uniform in +-1/sqrt(fan_in).
    Torch,
    /// Orthogonal weights (Saxe et al. 2014, arXiv:1312.6120) with gain `hidden` on the
    /// hidden layers and `output` on the last, zero biases (SB3's on-policy default).
    Orthogonal { hidden: f64, output: f64 },
}

/// A multilayer perceptron with its parameters in one vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub sizes: Vec<usize>,
    pub act: Activation,
    pub params: Vec<f32>,
}

/// Activations kept by a forward pass for the backward pass.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    pub batch: usize,
    /// `inputs[l]` is layer `l`'s input `[batch, sizes[l]]` (post-activation of `l - 1`).
    inputs: Vec<Vec<f32>>,
    /// The network output `[batch, sizes.last()]`.
    pub out: Vec<f32>,
    /// Scratch for the backward pass.
    dz: Vec<f32>,
    dprev: Vec<f32>,
}

/// `dst[m, n] (+)= lhs[m, k] @ rhs[k, n]` with strided operands (`x[r * rs + c * cs]`).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    accumulate: bool,
) {
    assert_eq!(dst.len(), m * n, "matmul: destination size");
    let last = |(d, rs, cs): (&[f32], usize, usize), r: usize, c: usize| {
        if r > 0 && c > 0 {
            assert!(
                (r - 1) * rs + (c - 1) * cs < d.len(),
                "matmul: operand view"
            );
        }
    };
    last(lhs, m, k);
    last(rhs, k, n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    if m * n * k <= SMALL_MATMUL {
        // Below this size the GEMM crate's packing costs more than the arithmetic.
        let (l, lrs, lcs) = lhs;
        let (r, rrs, rcs) = rhs;
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f32;
                for p in 0..k {
                    s += l[i * lrs + p * lcs] * r[p * rrs + j * rcs];
                }
                let d = &mut dst[i * n + j];
                *d = if accumulate { *d + s } else { s };
            }
        }
        return;
    }
    // Big products (TD3's 400 x 300 critics at batch 256) use the rayon pool, whose size is
    // `genlab --threads N` (one thread by default: no split).
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m * n * k >= PAR_MATMUL {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the operand views were bounds-checked above for the strides passed; `dst` is
    // [m, n] contiguous, exclusively borrowed and so aliases neither operand. gemm computes
    // dst := alpha * dst + beta * lhs @ rhs, reading dst only when `read_dst` is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Products with at least this many multiply-adds are split over threads.
const PAR_MATMUL: usize = 4 << 20;

/// Products with at most this many multiply-adds use the plain loop.
const SMALL_MATMUL: usize = 8 * 1024;

/// An orthogonal `[rows, cols]` matrix (Gram-Schmidt on Gaussian draws), times `gain`.
fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut Rng) -> Vec<f32> {
    // Orthonormalise the rows of the taller orientation's transpose as PyTorch does: the
    // result has orthonormal rows (rows <= cols) or columns (rows > cols).
    let (r, c) = if rows <= cols {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(r);
    while q.len() < r {
        let mut v: Vec<f64> = (0..c).map(|_| rng.normal()).collect();
        for u in &q {
            let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            for (x, y) in v.iter_mut().zip(u) {
                *x -= d * y;
            }
        }
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n > 1e-8 {
            q.push(v.into_iter().map(|x| x / n).collect());
        }
    }
    let mut out = vec![0f32; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            let v = if rows <= cols { q[i][j] } else { q[j][i] };
            out[i * cols + j] = (gain * v) as f32;
        }
    }
    out
}

impl Mlp {
    /// A network with layer widths `sizes` (input first), drawing its weights from `rng`.
    pub fn new(sizes: &[usize], act: Activation, init: Init, rng: &mut Rng) -> Self {
        let mut params = Vec::new();
        let n = sizes.len() - 1;
        for l in 0..n {
            let (i, o) = (sizes[l], sizes[l + 1]);
            match init {
                Init::Torch => {
                    let bound = 1.0 / (i as f64).sqrt();
                    for _ in 0..o * i + o {
                        params.push((bound * (2.0 * rng.uniform() - 1.0)) as f32);
                    }
                }
                Init::Orthogonal { hidden, output } => {
                    let gain = if l + 1 == n { output } else { hidden };
                    params.extend(orthogonal(o, i, gain, rng));
                    params.extend(std::iter::repeat_n(0.0, o));
                }
            }
        }
        Self {
            sizes: sizes.to_vec(),
            act,
            params,
        }
    }

    pub fn n_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    pub fn in_dim(&self) -> usize {
        self.sizes[0]
    }

    pub fn out_dim(&self) -> usize {
        *self.sizes.last().expect("an MLP has layers")
    }

    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// Offsets of `W_l` and `b_l` in `params`.
    fn offsets(&self, l: usize) -> (usize, usize) {
        let mut off = 0;
        for j in 0..l {
            off += self.sizes[j + 1] * self.sizes[j] + self.sizes[j + 1];
        }
        (off, off + self.sizes[l + 1] * self.sizes[l])
    }

    /// Forward pass on `x` `[batch, in]`; the output is `cache.out` `[batch, out]`.
    pub fn forward<'c>(&self, x: &[f32], batch: usize, cache: &'c mut Cache) -> &'c [f32] {
        debug_assert_eq!(x.len(), batch * self.in_dim());
        let n = self.n_layers();
        cache.batch = batch;
        cache.inputs.resize_with(n, Vec::new);
        cache.inputs[0].clear();
        cache.inputs[0].extend_from_slice(x);
        for l in 0..n {
            let (i, o) = (self.sizes[l], self.sizes[l + 1]);
            let (wo, bo) = self.offsets(l);
            let w = &self.params[wo..bo];
            let b = &self.params[bo..bo + o];
            let mut z = if l + 1 == n {
                std::mem::take(&mut cache.out)
            } else {
                std::mem::take(&mut cache.inputs[l + 1])
            };
            z.clear();
            z.resize(batch * o, 0.0);
            for row in z.chunks_exact_mut(o) {
                row.copy_from_slice(b);
            }
            // z [B, o] += x [B, i] @ W^T [i, o]
            matmul(
                &mut z,
                batch,
                o,
                i,
                (&cache.inputs[l], i, 1),
                (w, 1, i),
                true,
            );
            if l + 1 == n {
                cache.out = z;
            } else {
                match self.act {
                    Activation::Relu => z.iter_mut().for_each(|v| *v = v.max(0.0)),
                    Activation::Tanh => z.iter_mut().for_each(|v| *v = v.tanh()),
                }
                cache.inputs[l + 1] = z;
            }
        }
        &cache.out
    }

    /// Backward pass for the forward pass in `cache`: adds d loss / d params to `grad`
    /// (same layout as `params`) given `dout` = d loss / d output `[batch, out]`, and
    /// writes d loss / d input `[batch, in]` into `dx` when asked.
    pub fn backward(
        &self,
        cache: &mut Cache,
        dout: &[f32],
        grad: &mut [f32],
        dx: Option<&mut Vec<f32>>,
    ) {
        self.backward_opt(cache, dout, Some(grad), dx)
    }

    /// [`Mlp::backward`] that may skip the parameter gradients (`grad = None`): the input
    /// gradient alone, as DDPG's actor update needs from the critic.
    pub fn backward_opt(
        &self,
        cache: &mut Cache,
        dout: &[f32],
        mut grad: Option<&mut [f32]>,
        mut dx: Option<&mut Vec<f32>>,
    ) {
        let batch = cache.batch;
        let n = self.n_layers();
        debug_assert_eq!(dout.len(), batch * self.out_dim());
        let mut dz = std::mem::take(&mut cache.dz);
        let mut dprev = std::mem::take(&mut cache.dprev);
        dz.clear();
        dz.extend_from_slice(dout);
        for l in (0..n).rev() {
            let (i, o) = (self.sizes[l], self.sizes[l + 1]);
            let (wo, bo) = self.offsets(l);
            let x = &cache.inputs[l];
            if let Some(grad) = grad.as_deref_mut() {
                // dW [o, i] += dz^T [o, B] @ x [B, i]
                matmul(&mut grad[wo..bo], o, i, batch, (&dz, 1, o), (x, i, 1), true);
                let db = &mut grad[bo..bo + o];
                for row in dz.chunks_exact(o) {
                    for (g, d) in db.iter_mut().zip(row) {
                        *g += d;
                    }
                }
            }
            if l == 0 && dx.is_none() {
                break;
            }
            // dx [B, i] = dz [B, o] @ W [o, i]
            dprev.clear();
            dprev.resize(batch * i, 0.0);
            let w = &self.params[wo..bo];
            matmul(&mut dprev, batch, i, o, (&dz, o, 1), (w, i, 1), false);
            if l == 0 {
                if let Some(d) = dx.as_deref_mut() {
                    d.clear();
                    d.extend_from_slice(&dprev);
                }
                break;
            }
            // Through the activation whose output is this layer's input.
            match self.act {
                Activation::Relu => {
                    for (g, h) in dprev.iter_mut().zip(x) {
                        if *h <= 0.0 {
                            *g = 0.0;
                        }
                    }
                }
                Activation::Tanh => {
                    for (g, h) in dprev.iter_mut().zip(x) {
                        *g *= 1.0 - h * h;
                    }
                }
            }
            std::mem::swap(&mut dz, &mut dprev);
        }
        cache.dz = dz;
        cache.dprev = dprev;
    }

    /// `self <- tau * other + (1 - tau) * self` (Polyak averaging of a target network).
    pub fn polyak_from(&mut self, other: &Mlp, tau: f32) {
        for (t, s) in self.params.iter_mut().zip(&other.params) {
            *t += tau * (s - *t);
        }
    }

    /// Replaces the parameters, checking their count.
    pub fn set_params(&mut self, name: &str, p: &[f32]) -> Result<()> {
        if p.len() != self.params.len() {
            return Err(Error::Checkpoint(format!(
                "network `{name}` has {} parameters, the checkpoint holds {}",
                self.params.len(),
                p.len()
            )));
        }
        self.params.copy_from_slice(p);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain loop and GEMM paths agree to float32 summation-order noise.
    const MATMUL_TOL: f32 = 1e-4;

    #[test]
    fn small_and_gemm_matmul_paths_agree() {
        let mut rng = Rng::new(1);
        let (m, n, k) = (40, 33, 17); // above SMALL_MATMUL: the GEMM path
        let a: Vec<f32> = rng.normal_vec(m * k);
        let b: Vec<f32> = rng.normal_vec(n * k);
        let mut fast = vec![0f32; m * n];
        // b as [n, k] used transposed: rhs (r, c) = b[c * k + r]
        matmul(&mut fast, m, n, k, (&a, k, 1), (&b, 1, k), false);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                assert!((fast[i * n + j] - want).abs() < MATMUL_TOL);
            }
        }
    }

    #[test]
    fn orthogonal_init_has_orthonormal_rows() {
        let mut rng = Rng::new(2);
        let w = orthogonal(8, 20, 1.0, &mut rng);
        for i in 0..8 {
            for j in 0..8 {
                let d: f32 = (0..20).map(|c| w[i * 20 + c] * w[j * 20 + c]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-5, "{i},{j}: {d}");
            }
        }
    }

    #[test]
    fn polyak_moves_a_fraction_of_the_way() {
        let mut rng = Rng::new(3);
        let a = Mlp::new(&[2, 3, 1], Activation::Relu, Init::Torch, &mut rng);
        let mut t = Mlp::new(&[2, 3, 1], Activation::Relu, Init::Torch, &mut rng);
        let before = t.params.clone();
        t.polyak_from(&a, 0.25);
        for ((x, b), s) in t.params.iter().zip(&before).zip(&a.params) {
            assert!((x - (0.75 * b + 0.25 * s)).abs() < 1e-6);
        }
        assert!(t.set_params("t", &[0.0]).is_err());
    }
}
