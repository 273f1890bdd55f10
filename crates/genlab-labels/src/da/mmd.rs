//! Deep adaptation networks (Long, Cao, Wang & Jordan 2015, "Learning Transferable Features
//! with Deep Adaptation Networks", ICML, arXiv:1502.02791, section 3): the network's last
//! layers are pulled together across domains by a multi-kernel maximum mean discrepancy
//! (MK-MMD, Gretton et al. 2012) added to the source cross-entropy,
//!
//! ```text
//! loss = CE(source) + lambda_p sum_layers MMD^2_k(source features, target features)
//! k(a, b) = (1/U) sum_u exp(-|a - b|^2 / gamma_u)
//! ```
//!
//! **Estimator**: the unbiased quadratic-time U-statistic of Gretton et al. 2012 (eq. 3),
//! for source rows `x_1..x_m` and target rows `y_1..y_n`,
//!
//! ```text
//! MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
//!         - 2/(mn) sum_{i, j} k(x_i, y_j)
//! ```
//!
//! computed as one weighted sum over the kernel matrix of the stacked batch. (DAN uses the
//! linear-time estimate to keep its cost linear in the batch; with 64 + 64 rows the
//! quadratic one is cheap and has lower variance.)
//!
//! **Bandwidths**: a fixed family around the median heuristic: `gamma_u = factor_u * g`,
//! factors 1/4, 1/2, 1, 2, 4 (DAN's family is also powers of 2 around a base), where `g` is
//! the median of the squared pairwise distances of the stacked batch (computed each step,
//! treated as a constant: no gradient), or a fixed `base` when set. The kernel weights are
//! equal (DAN learns them by a quadratic program; not done here).
//!
//! **Layers**: DAN adapts fc6-fc8 of AlexNet; here the dense features (128, after ReLU and
//! dropout) and the logits, each with its own median. `lambda_p` is `lambda` times Ganin et
//! al.'s ramp `2 / (1 + exp(-10 p)) - 1` when `ramp` is on (DAN keeps lambda constant; the
//! ramp keeps the penalty off the untrained network's features).

use candle_core::{DType, Tensor, Var};
use genlab_core::{Error, Result, Rng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{parse_config, ramp, Adaptation, BuildCtx, Labels, MethodEntry, Outputs};

pub const ENTRY: MethodEntry = MethodEntry {
    name: "mmd",
    paper: "Long et al. 2015 (DAN), arXiv:1502.02791",
    description: "multi-kernel Gaussian MMD^2 (unbiased, median-heuristic bandwidths x 1/4..4) \
                  between source and target features and logits",
    defaults: || serde_json::to_value(Config::default()).expect("config serialises"),
    labels: Labels::Source,
    build: Some(build),
    check: |v| parse_config::<Config>(v).and_then(|c| c.check()),
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Weight of the MMD penalty.
    pub lambda: f64,
    /// Multiply lambda by Ganin et al.'s 2/(1+exp(-10 p)) - 1.
    pub ramp: bool,
    /// Bandwidth multipliers of the kernel family.
    pub factors: Vec<f64>,
    /// Fixed base bandwidth (squared distance); `null`: the batch's median (heuristic).
    pub base: Option<f64>,
    /// Also align the logits (DAN's fc8), not just the dense features.
    pub logits: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            lambda: 1.0,
            ramp: true,
            factors: vec![0.25, 0.5, 1.0, 2.0, 4.0],
            base: None,
            logits: true,
        }
    }
}

impl Config {
    fn check(&self) -> Result<()> {
        if self.factors.is_empty() || self.factors.iter().any(|&f| !(f > 0.0 && f.is_finite())) {
            return Err(Error::setting(
                "method.factors",
                format!(
                    "needs positive finite bandwidth multipliers, got {:?}",
                    self.factors
                ),
            ));
        }
        if matches!(self.base, Some(b) if !(b > 0.0 && b.is_finite())) {
            return Err(Error::setting(
                "method.base",
                "must be positive (or null: median)",
            ));
        }
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(Error::setting("method.lambda", "must be non-negative"));
        }
        Ok(())
    }
}

/// Squared Euclidean distances `[N, N]` between the rows of `z [N, D]`:
/// `|a|^2 + |b|^2 - 2 a.b`.
pub fn sq_dists(z: &Tensor) -> Result<Tensor> {
    let n2 = z.sqr()?.sum_keepdim(1)?; // [N, 1]
    let dot = z.matmul(&z.t()?)?;
    Ok(n2.broadcast_add(&n2.t()?)?.sub(&dot.affine(2.0, 0.0)?)?)
}

/// The median of the off-diagonal squared distances (no gradient), the heuristic base
/// bandwidth. At least a tiny positive number, so that a collapsed batch does not divide
/// by zero.
pub fn median_bandwidth(d2: &Tensor) -> Result<f64> {
    let n = d2.dim(0)?;
    let v = d2.detach().to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let mut off: Vec<f64> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| v[i][j].max(0.0))
        .collect();
    if off.is_empty() {
        return Ok(1.0);
    }
    off.sort_by(f64::total_cmp);
    let m = off.len();
    let med = if m % 2 == 1 {
        off[m / 2]
    } else {
        0.5 * (off[m / 2 - 1] + off[m / 2])
    };
    Ok(med.max(1e-12))
}

/// The unbiased MMD^2 between rows `x [m, D]` and `y [n, D]` (m, n >= 2) under the kernel
/// `(1/U) sum_u exp(-|a - b|^2 / gammas[u])` (see the module documentation).
pub fn mmd2_unbiased(x: &Tensor, y: &Tensor, gammas: &[f64]) -> Result<Tensor> {
    let (m, n) = (x.dim(0)?, y.dim(0)?);
    if m < 2 || n < 2 || gammas.is_empty() {
        return Err(Error::InvalidInput(format!(
            "the unbiased MMD needs 2 rows per side and a bandwidth; got {m}, {n}, {} bandwidths",
            gammas.len()
        )));
    }
    let d2 = sq_dists(&Tensor::cat(&[x, y], 0)?)?;
    mmd2_from_dists(&d2, m, gammas)
}

fn mmd2_from_dists(d2: &Tensor, m: usize, gammas: &[f64]) -> Result<Tensor> {
    let big = d2.dim(0)?;
    let n = big - m;
    let mut k = d2.affine(-1.0 / gammas[0], 0.0)?.exp()?;
    for &g in &gammas[1..] {
        k = (k + d2.affine(-1.0 / g, 0.0)?.exp()?)?;
    }
    // The U-statistic's weights: within-domain pairs off the diagonal, and the cross pairs.
    let (wx, wy, wxy) = (
        1.0 / (m * (m - 1)) as f64,
        1.0 / (n * (n - 1)) as f64,
        -1.0 / (m * n) as f64,
    );
    let mut w = vec![0f64; big * big];
    for i in 0..big {
        for j in 0..big {
            w[i * big + j] = match (i < m, j < m) {
                _ if i == j => 0.0,
                (true, true) => wx,
                (false, false) => wy,
                _ => wxy,
            } / gammas.len() as f64;
        }
    }
    let w = Tensor::from_vec(w, (big, big), d2.device())?.to_dtype(d2.dtype())?;
    Ok(k.mul(&w)?.sum_all()?)
}

/// MMD^2 with the configured family: base bandwidth from the stacked batch's median (or the
/// fixed base) times the factors.
fn layer_mmd(c: &Config, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let d2 = sq_dists(&Tensor::cat(&[x, y], 0)?)?;
    let base = match c.base {
        Some(b) => b,
        None => median_bandwidth(&d2)?,
    };
    let gammas: Vec<f64> = c.factors.iter().map(|f| f * base).collect();
    mmd2_from_dists(&d2, x.dim(0)?, &gammas)
}

struct Mmd {
    c: Config,
}

fn build(v: &Value, _ctx: &BuildCtx) -> Result<Box<dyn Adaptation>> {
    let c: Config = parse_config(v)?;
    c.check()?;
    Ok(Box::new(Mmd { c }))
}

impl Adaptation for Mmd {
    fn vars(&self) -> Vec<(String, Var)> {
        Vec::new()
    }

    fn loss(
        &mut self,
        o: &Outputs,
        p: f64,
        _rng: &mut Rng,
    ) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let lambda = self.c.lambda * if self.c.ramp { ramp(p, 10.0) } else { 1.0 };
        let mut total = layer_mmd(&self.c, o.source_features, o.target_features)?;
        let mut logged = vec![("mmd_features", super::scalar(&total)?)];
        if self.c.logits {
            let l = layer_mmd(&self.c, o.source_logits, o.target_logits)?;
            logged.push(("mmd_logits", super::scalar(&l)?));
            total = (total + l)?;
        }
        logged.push(("lambda", lambda));
        Ok((total.affine(lambda, 0.0)?, logged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn rows(rng: &mut Rng, n: usize, d: usize, shift: f64) -> Vec<f64> {
        (0..n * d).map(|_| rng.normal() + shift).collect()
    }

    /// The U-statistic written as the three double sums of its definition, in f64.
    fn brute(x: &[f64], y: &[f64], d: usize, gammas: &[f64]) -> f64 {
        let k = |a: &[f64], b: &[f64]| {
            let s: f64 = a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum();
            gammas.iter().map(|g| (-s / g).exp()).sum::<f64>() / gammas.len() as f64
        };
        let (m, n) = (x.len() / d, y.len() / d);
        let row = |v: &'_ [f64], i: usize| v[i * d..(i + 1) * d].to_vec();
        let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
        for i in 0..m {
            for j in 0..m {
                if i != j {
                    sxx += k(&row(x, i), &row(x, j));
                }
            }
            for j in 0..n {
                sxy += k(&row(x, i), &row(y, j));
            }
        }
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    syy += k(&row(y, i), &row(y, j));
                }
            }
        }
        sxx / (m * (m - 1)) as f64 + syy / (n * (n - 1)) as f64 - 2.0 * sxy / (m * n) as f64
    }

    /// Against the brute-force double sums in f64 (same and shifted distributions, unequal
    /// sizes): 1e-10 in f64, 1e-5 in f32.
    #[test]
    fn mmd2_matches_the_brute_force_double_sum() {
        const F64_TOL: f64 = 1e-10;
        const F32_TOL: f64 = 1e-5;
        let dev = Device::Cpu;
        let mut rng = Rng::new(4);
        let d = 3;
        for (m, n, shift) in [(5, 7, 0.0), (6, 4, 1.5)] {
            let (x, y) = (rows(&mut rng, m, d, 0.0), rows(&mut rng, n, d, shift));
            let gammas = [0.5, 2.0, 8.0];
            let want = brute(&x, &y, d, &gammas);
            let xt = Tensor::from_vec(x.clone(), (m, d), &dev).unwrap();
            let yt = Tensor::from_vec(y.clone(), (n, d), &dev).unwrap();
            let got = mmd2_unbiased(&xt, &yt, &gammas)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!((got - want).abs() < F64_TOL, "{got} vs {want}");
            let got32 = mmd2_unbiased(
                &xt.to_dtype(DType::F32).unwrap(),
                &yt.to_dtype(DType::F32).unwrap(),
                &gammas,
            )
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
            assert!((got32 - want).abs() < F32_TOL, "{got32} vs {want}");
            if shift > 0.0 {
                assert!(want > 0.01, "a shift of 1.5 sd must show: {want}");
            }
        }
        assert!(mmd2_unbiased(
            &Tensor::zeros((1, 3), DType::F64, &dev).unwrap(),
            &Tensor::zeros((3, 3), DType::F64, &dev).unwrap(),
            &[1.0]
        )
        .is_err());
    }

    /// The gradient with respect to both samples against central finite differences in f64
    /// (bandwidths fixed): relative 1e-6.
    #[test]
    fn mmd2_gradient_matches_finite_differences() {
        const H: f64 = 1e-5;
        const REL_TOL: f64 = 1e-6;
        let dev = Device::Cpu;
        let mut rng = Rng::new(9);
        let (m, n, d) = (4, 5, 2);
        let x = rows(&mut rng, m, d, 0.0);
        let y = rows(&mut rng, n, d, 0.7);
        let gammas = [0.5, 1.0, 4.0];
        let xv = Var::from_vec(x.clone(), (m, d), &dev).unwrap();
        let yv = Var::from_vec(y.clone(), (n, d), &dev).unwrap();
        let g = mmd2_unbiased(xv.as_tensor(), yv.as_tensor(), &gammas)
            .unwrap()
            .backward()
            .unwrap();
        let gx = g
            .get(&xv)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let gy = g
            .get(&yv)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let f = |x: &[f64], y: &[f64]| brute(x, y, d, &gammas);
        for i in 0..x.len() {
            let (mut a, mut b) = (x.clone(), x.clone());
            a[i] += H;
            b[i] -= H;
            let fd = (f(&a, &y) - f(&b, &y)) / (2.0 * H);
            assert!(
                (gx[i] - fd).abs() <= REL_TOL * fd.abs().max(1e-3),
                "x {i}: {} vs {fd}",
                gx[i]
            );
        }
        for i in 0..y.len() {
            let (mut a, mut b) = (y.clone(), y.clone());
            a[i] += H;
            b[i] -= H;
            let fd = (f(&x, &a) - f(&x, &b)) / (2.0 * H);
            assert!(
                (gy[i] - fd).abs() <= REL_TOL * fd.abs().max(1e-3),
                "y {i}: {} vs {fd}",
                gy[i]
            );
        }
    }

    #[test]
    fn the_median_heuristic_is_the_median_pairwise_squared_distance() {
        let dev = Device::Cpu;
        // Points 0, 1, 3 on a line: squared distances 1, 9, 4 -> median 4.
        let z = Tensor::new(&[[0f64], [1.0], [3.0]], &dev).unwrap();
        let d2 = sq_dists(&z).unwrap();
        assert_eq!(median_bandwidth(&d2).unwrap(), 4.0);
        let bad = Config {
            factors: vec![1.0, -2.0],
            ..Config::default()
        };
        assert!(bad.check().is_err());
    }
}
