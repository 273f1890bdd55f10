//! Invertible linear map (points) / invertible 1x1 convolution (images), LU-parametrised.
//!
//! Kingma & Dhariwal 2018, "Glow: Generative Flow with Invertible 1x1 Convolutions",
//! arXiv:1807.03039, Sec. 3.2:
//!
//! ```text
//! z_{i,j} = W x_{i,j}    (W: c x c, the same at every position i, j)
//! log |det dz/dx| = h * w * log |det W|                                  (Eq. 9)
//! W = P L (U + diag(s)),  log |det W| = sum(log |s|)                      (Eq. 10)
//! ```
//!
//! P is a fixed permutation, L unit lower triangular, U strictly upper triangular, s a
//! vector; all start from the LU decomposition of a random rotation (Glow's
//! initialisation), P and sign(s) stay fixed. Computing log|det W| costs O(c) instead of
//! O(c^3). The trainable variables `lower`, `upper` and `log_scale` are the offsets of
//! L, U and log|s| from that initial decomposition (zero at start): the initial factors
//! are constants recomputed from the layer's name (a seeded rotation) or from the matrix
//! given to [`InvLinear::from_matrix`], so checkpoints hold only the offsets.
//!
//! Cost: the forward is one c x c matrix product per position; the inverse inverts W once
//! per call (O(c^3) on the host, in f64) and then one product per position.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};

use genlab_core::{Error, Result, Rng};

use super::{constant, Transform};

/// A pivot below this fraction of the largest entry makes a matrix singular (f64 LU).
pub const SINGULAR_TOL: f64 = 1e-10;

pub struct InvLinear {
    n: usize,
    perm: Tensor,  // P [n, n]
    l0: Tensor,    // strict lower part of the initial L [n, n]
    u0: Tensor,    // strict upper part of the initial U [n, n]
    logs0: Tensor, // log |s| of the initial decomposition [n]
    sign: Tensor,  // sign(s) [n]
    lower_mask: Tensor,
    upper_mask: Tensor,
    eye: Tensor,
    lower: Tensor,
    upper: Tensor,
    log_scale: Tensor,
}

/// `A = P L U` of a row-major `n x n` matrix with partial pivoting: returns `(piv, lu)`
/// with `P[piv[i], i] = 1`, L's strict lower and U's upper part (diagonal included) packed
/// in `lu`. A singular (or non-finite) matrix is a `Config` error.
pub fn lu_decompose(a: &[f64], n: usize) -> Result<(Vec<usize>, Vec<f64>)> {
    let scale = a.iter().fold(0f64, |m, v| m.max(v.abs()));
    if a.len() != n * n || !a.iter().all(|v| v.is_finite()) || scale == 0.0 {
        return Err(Error::Config(format!(
            "invertible linear map: the initial matrix must be a finite, nonzero {n}x{n} matrix"
        )));
    }
    let mut lu = a.to_vec();
    let mut piv: Vec<usize> = (0..n).collect();
    for k in 0..n {
        let p = (k..n)
            .max_by(|&i, &j| lu[i * n + k].abs().total_cmp(&lu[j * n + k].abs()))
            .expect("k < n");
        if lu[p * n + k].abs() <= SINGULAR_TOL * scale {
            return Err(Error::Config(format!(
                "invertible linear map: the initial {n}x{n} matrix is singular (pivot {k} is \
                 {:e}); a flow needs an invertible map",
                lu[p * n + k]
            )));
        }
        if p != k {
            for j in 0..n {
                lu.swap(k * n + j, p * n + j);
            }
            piv.swap(k, p);
        }
        for i in k + 1..n {
            let f = lu[i * n + k] / lu[k * n + k];
            lu[i * n + k] = f;
            for j in k + 1..n {
                lu[i * n + j] -= f * lu[k * n + j];
            }
        }
    }
    Ok((piv, lu))
}

/// The inverse of a row-major `n x n` matrix by Gauss-Jordan elimination with partial
/// pivoting, in f64.
pub fn invert(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect();
    for k in 0..n {
        let p = (k..n)
            .max_by(|&i, &j| m[i * n + k].abs().total_cmp(&m[j * n + k].abs()))
            .expect("k < n");
        let pivot = m[p * n + k];
        if pivot == 0.0 || !pivot.is_finite() {
            return Err(Error::Numeric(format!(
                "invertible linear map: W became singular (pivot {k} is {})",
                m[p * n + k]
            )));
        }
        for j in 0..n {
            m.swap(k * n + j, p * n + j);
            inv.swap(k * n + j, p * n + j);
        }
        let d = m[k * n + k];
        for j in 0..n {
            m[k * n + j] /= d;
            inv[k * n + j] /= d;
        }
        for i in 0..n {
            if i != k {
                let f = m[i * n + k];
                if f != 0.0 {
                    for j in 0..n {
                        m[i * n + j] -= f * m[k * n + j];
                        inv[i * n + j] -= f * inv[k * n + j];
                    }
                }
            }
        }
    }
    Ok(inv)
}

/// A random rotation: Gram-Schmidt on the columns of a standard normal matrix.
pub fn random_rotation(n: usize, rng: &mut Rng) -> Vec<f64> {
    let mut cols: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..n).map(|_| rng.normal()).collect())
        .collect();
    for k in 0..n {
        for j in 0..k {
            let dot: f64 = cols[k].iter().zip(&cols[j]).map(|(a, b)| a * b).sum();
            let cj = cols[j].clone();
            for (a, b) in cols[k].iter_mut().zip(&cj) {
                *a -= dot * b;
            }
        }
        let norm = cols[k].iter().map(|v| v * v).sum::<f64>().sqrt();
        for a in cols[k].iter_mut() {
            *a /= norm;
        }
    }
    (0..n * n).map(|i| cols[i % n][i / n]).collect()
}

impl InvLinear {
    /// A map on `n` channels starting from a random rotation drawn from the layer's name
    /// (the same name always gives the same rotation: the initial factors need no storage).
    pub fn new(n: usize, vb: VarBuilder) -> Result<Self> {
        if n == 0 {
            return Err(Error::Config("invertible linear map: 0 channels".into()));
        }
        let mut rng = Rng::derive(0, &format!("flow.inv_linear:{}", vb.prefix()));
        Self::from_matrix(&random_rotation(n, &mut rng), n, vb)
    }

    /// A map on `n` channels starting from `w0` (row-major `n x n`); a singular `w0` is a
    /// `Config` error.
    pub fn from_matrix(w0: &[f64], n: usize, vb: VarBuilder) -> Result<Self> {
        let (piv, lu) = lu_decompose(w0, n)?;
        let dev = vb.device().clone();
        let dt = vb.dtype();
        let mk = |v: Vec<f64>, shape: &[usize]| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, shape, &Device::Cpu)?
                .to_dtype(dt)?
                .to_device(&dev)?)
        };
        let mut p = vec![0.0; n * n];
        for (i, &r) in piv.iter().enumerate() {
            p[r * n + i] = 1.0;
        }
        let part = |f: &dyn Fn(usize, usize) -> bool| -> Vec<f64> {
            (0..n * n)
                .map(|k| if f(k / n, k % n) { lu[k] } else { 0.0 })
                .collect()
        };
        let mask = |f: &dyn Fn(usize, usize) -> bool| -> Vec<f64> {
            (0..n * n)
                .map(|k| if f(k / n, k % n) { 1.0 } else { 0.0 })
                .collect()
        };
        let diag: Vec<f64> = (0..n).map(|i| lu[i * n + i]).collect();
        Ok(Self {
            n,
            perm: mk(p, &[n, n])?,
            l0: mk(part(&|i, j| i > j), &[n, n])?,
            u0: mk(part(&|i, j| i < j), &[n, n])?,
            logs0: mk(diag.iter().map(|d| d.abs().ln()).collect(), &[n])?,
            sign: mk(diag.iter().map(|d| d.signum()).collect(), &[n])?,
            lower_mask: mk(mask(&|i, j| i > j), &[n, n])?,
            upper_mask: mk(mask(&|i, j| i < j), &[n, n])?,
            eye: mk(mask(&|i, j| i == j), &[n, n])?,
            lower: vb.get_with_hints((n, n), "lower", Init::Const(0.0))?,
            upper: vb.get_with_hints((n, n), "upper", Init::Const(0.0))?,
            log_scale: vb.get_with_hints(n, "log_scale", Init::Const(0.0))?,
        })
    }

    /// log |s| `[n]`.
    fn log_s(&self) -> Result<Tensor> {
        Ok((&self.logs0 + &self.log_scale)?)
    }

    /// W = P L (U + diag(sign exp(log|s|))) `[n, n]` (Eq. 10).
    pub fn weight(&self) -> Result<Tensor> {
        let l = ((&self.l0 + &self.lower)? * &self.lower_mask)?.add(&self.eye)?;
        let s = (&self.sign * self.log_s()?.exp()?)?;
        let u = (((&self.u0 + &self.upper)? * &self.upper_mask)?
            + self.eye.broadcast_mul(&s.unsqueeze(0)?)?)?;
        Ok(self.perm.matmul(&l)?.matmul(&u)?)
    }

    /// Applies `m [n, n]` to every position: `[B, n]` or `[B, n, H, W]`.
    fn apply(&self, x: &Tensor, m: &Tensor) -> Result<Tensor> {
        if x.rank() < 2 || x.dim(1)? != self.n {
            return Err(Error::InvalidInput(format!(
                "invertible linear map on {} channels, got input {:?}",
                self.n,
                x.dims()
            )));
        }
        let mt = m.t()?;
        Ok(match x.rank() {
            2 => x.matmul(&mt)?,
            4 => {
                let (b, c, h, w) = x.dims4()?;
                x.permute((0, 2, 3, 1))? // [B, H, W, C]
                    .reshape((b * h * w, c))?
                    .matmul(&mt)?
                    .reshape((b, h, w, c))?
                    .permute((0, 3, 1, 2))? // [B, C, H, W]
                    .contiguous()?
            }
            r => {
                return Err(Error::InvalidInput(format!(
                    "invertible linear map: inputs of rank 2 or 4, got rank {r}"
                )))
            }
        })
    }
}

impl Transform for InvLinear {
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let z = self.apply(x, &self.weight()?)?;
        let positions: usize = x.dims()[2..].iter().product();
        let ld = (self.log_s()?.sum_all()? * positions as f64)?
            .broadcast_as(x.dim(0)?)?
            .contiguous()?;
        Ok((z, ld))
    }

    fn inverse(&self, z: &Tensor) -> Result<Tensor> {
        let w: Vec<f64> = self
            .weight()?
            .detach()
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let winv = constant(invert(&w, self.n)?, &[self.n, self.n], z)?;
        self.apply(z, &winv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::testing::*;

    /// Products of a few f64 factors.
    const LU_TOL: f64 = 1e-12;

    fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        (0..n * n)
            .map(|k| (0..n).map(|t| a[(k / n) * n + t] * b[t * n + k % n]).sum())
            .collect()
    }

    #[test]
    fn lu_reconstructs_the_matrix_and_invert_is_the_inverse() {
        let a = [0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 3.0, -1.0, 4.0];
        let n = 3;
        let (piv, lu) = lu_decompose(&a, n).unwrap();
        let mut p = vec![0.0; 9];
        for (i, &r) in piv.iter().enumerate() {
            p[r * n + i] = 1.0;
        }
        let l: Vec<f64> = (0..9)
            .map(|k| match (k / n, k % n) {
                (i, j) if i > j => lu[k],
                (i, j) if i == j => 1.0,
                _ => 0.0,
            })
            .collect();
        let u: Vec<f64> = (0..9)
            .map(|k| if k / n <= k % n { lu[k] } else { 0.0 })
            .collect();
        let back = matmul(&matmul(&p, &l, n), &u, n);
        for k in 0..9 {
            assert!((back[k] - a[k]).abs() < LU_TOL, "{back:?}");
        }
        let inv = invert(&a, n).unwrap();
        let eye = matmul(&a, &inv, n);
        for k in 0..9 {
            let want = if k / n == k % n { 1.0 } else { 0.0 };
            assert!((eye[k] - want).abs() < LU_TOL, "{eye:?}");
        }
    }

    #[test]
    fn the_initial_weight_is_the_given_matrix_and_a_rotation_by_default() {
        let a = [0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 3.0, -1.0, 4.0];
        let (_, vb) = vb64(1);
        let t = InvLinear::from_matrix(&a, 3, vb).unwrap();
        let w: Vec<f64> = t
            .weight()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for k in 0..9 {
            assert!((w[k] - a[k]).abs() < LU_TOL);
        }
        let (_, vb) = vb64(1);
        let t = InvLinear::new(4, vb.pp("mix")).unwrap();
        let w: Vec<f64> = t
            .weight()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let wtw = matmul(
            &(0..16).map(|k| w[(k % 4) * 4 + k / 4]).collect::<Vec<_>>(),
            &w,
            4,
        );
        for k in 0..16 {
            let want = if k / 4 == k % 4 { 1.0 } else { 0.0 };
            assert!((wtw[k] - want).abs() < LU_TOL, "not a rotation: {wtw:?}");
        }
    }

    #[test]
    fn inv_linear_inverts_and_its_log_det_matches_the_jacobian() {
        let (ps, vb) = vb64(1);
        let t = InvLinear::new(3, vb.pp("mix")).unwrap();
        perturb(&ps, 5, 0.3);
        check_transform("inv-linear points", &t, &randn64(2, &[4, 3], 1.0));
        check_transform("inv-1x1-conv images", &t, &randn64(2, &[2, 3, 2, 2], 1.0));
    }

    #[test]
    fn a_singular_initial_matrix_is_a_config_error() {
        let (_, vb) = vb64(1);
        let e = InvLinear::from_matrix(&[1.0, 2.0, 2.0, 4.0], 2, vb)
            .err()
            .unwrap();
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(e.to_string().contains("singular"), "{e}");
        let (_, vb) = vb64(1);
        let e = InvLinear::from_matrix(&[0.0; 4], 2, vb).err().unwrap();
        assert!(matches!(e, Error::Config(_)), "{e}");
    }
}
