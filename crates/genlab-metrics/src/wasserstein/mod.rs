//! Wasserstein (earth mover's) distance between two empirical sets.
//!
//! For real samples `x_1..x_n` and fake samples `y_1..y_m` (uniform weights `1/n`, `1/m`,
//! `n != m` allowed) and the Euclidean ground distance,
//!
//! ```text
//! W_p = ( min_{pi in U(a, b)}  sum_ij pi_ij ||x_i - y_j||^p )^(1/p),   p in {1, 2}
//! ```
//!
//! where `U(a, b)` is the set of couplings with row sums `1/n` and column sums `1/m`
//! (Kantorovich's problem; Peyre & Cuturi, "Computational Optimal Transport", 2019,
//! arXiv:1803.00567, section 2.3, eq. 2.11). Three ways to compute it, one per file:
//!
//! | method | file | what it returns |
//! |---|---|---|
//! | exact | [`exact`] | `W_p` itself, by the network simplex (as `ot.emd2`); a shortest augmenting path assignment solver for `n == m` is the cross-check |
//! | Sinkhorn | [`sinkhorn`] | `<pi_eps, C>^(1/p)` for the entropic plan `pi_eps` (as `ot.sinkhorn2`); an upper bound on `W_p` |
//! | sliced | [`sliced`] | `(mean_k W_p^p(theta_k . x, theta_k . y))^(1/p)` over random unit directions (as `ot.sliced_wasserstein_distance`); a lower bound on `W_p` |
//!
//! [`wasserstein`] is the entry point; [`Method::Auto`] picks exact for small sets and
//! says in [`WassersteinResult::method`] what it used.

pub mod exact;
pub mod sinkhorn;
pub mod sliced;

use crate::matrix::{check_pair, FeatureMatrix};
use crate::suite::{Computed, Inputs};
use genlab_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Default exact-size threshold: 3000 x 3000 cells is a 72 MB cost matrix and a few
/// seconds of network simplex on one core.
pub const DEFAULT_EXACT_MAX: usize = 3000;

/// Regularisation [`Method::Auto`] uses for sets too large for the exact solver: 5% of the
/// mean cost keeps the entropic bias small while Sinkhorn still converges in tens to
/// hundreds of iterations.
pub const AUTO_SINKHORN_REG: f64 = 0.05;

/// Largest cost matrix [`Method::Auto`] hands to Sinkhorn (5000 x 5000, 200 MB); beyond it
/// Auto falls back to the sliced distance, which needs no cost matrix.
pub const AUTO_SINKHORN_MAX_CELLS: usize = 25_000_000;

/// Projections [`Method::Auto`] uses for the sliced fallback (Monte Carlo error of the
/// mean over directions about 1/sqrt(128) ~ 9% of its spread).
pub const AUTO_SLICED_PROJECTIONS: usize = 128;

/// Largest cost matrix Exact or Sinkhorn will allocate (400M cells = 3.2 GB of f64);
/// larger requests get an error that suggests the sliced distance.
pub const MAX_COST_CELLS: usize = 400_000_000;

/// How to compute the distance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Method {
    /// 1-D data: exact quantile formula; `n * m <= exact_max^2`: exact; else Sinkhorn with
    /// [`AUTO_SINKHORN_REG`] up to [`AUTO_SINKHORN_MAX_CELLS`] cells; else sliced with
    /// [`AUTO_SLICED_PROJECTIONS`] directions and seed 0.
    Auto,
    /// Exact linear-programming solution (network simplex, any n and m). Needs the n x m
    /// cost matrix; 3000 + 3000 points take about 3 s on one core, and the time grows
    /// faster than n m.
    Exact,
    /// Log-domain Sinkhorn; `reg` is relative to the mean of the cost matrix
    /// (`epsilon = reg * mean_ij ||x_i - y_j||^p`).
    Sinkhorn { reg: f64 },
    /// Sliced Wasserstein over `projections` random unit directions drawn from
    /// `Rng::new(seed)`.
    Sliced { projections: usize, seed: u64 },
}

/// Options of [`wasserstein`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WassersteinOptions {
    /// Algorithm (default Auto: exact whenever it is affordable).
    pub method: Method,
    /// Order p of W_p, 1 or 2 (default 1: the earth mover's distance).
    pub p: u32,
    /// Auto uses Exact when `n * m <= exact_max^2` (default [`DEFAULT_EXACT_MAX`]).
    pub exact_max: usize,
}

impl Default for WassersteinOptions {
    fn default() -> Self {
        Self {
            method: Method::Auto,
            p: 1,
            exact_max: DEFAULT_EXACT_MAX,
        }
    }
}

/// A computed distance and how it was computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WassersteinResult {
    /// The distance (already raised to 1/p).
    pub value: f64,
    /// What was computed, e.g. "exact (network simplex)",
    /// "sinkhorn (reg 0.05, relative to mean cost)", "sliced (128 projections, seed 0)".
    pub method: String,
    /// Order p.
    pub p: u32,
    /// False only when Sinkhorn stopped at its iteration limit before its marginals met
    /// [`sinkhorn::MARGINAL_TOL`]; exact and sliced always report true.
    pub converged: bool,
}

/// Wasserstein distance `W_p` between the rows of `real` and the rows of `fake`, with the
/// Euclidean ground distance and uniform weights (see the module documentation).
pub fn wasserstein(
    real: &FeatureMatrix,
    fake: &FeatureMatrix,
    opts: &WassersteinOptions,
) -> Result<WassersteinResult> {
    check_pair(real, fake, 1)?;
    let p = opts.p;
    if p != 1 && p != 2 {
        return Err(Error::InvalidInput(format!(
            "Wasserstein order p = {p} is not supported; expected 1 or 2"
        )));
    }
    let (n, m) = (real.rows(), fake.rows());
    let method = match opts.method {
        Method::Auto => {
            if real.cols() == 1 {
                let (value, method) = one_dimensional(real, fake, p);
                return Ok(WassersteinResult {
                    value,
                    method,
                    p,
                    converged: true,
                });
            }
            let cells = n.saturating_mul(m);
            if cells <= opts.exact_max.saturating_mul(opts.exact_max) {
                Method::Exact
            } else if cells <= AUTO_SINKHORN_MAX_CELLS {
                Method::Sinkhorn {
                    reg: AUTO_SINKHORN_REG,
                }
            } else {
                Method::Sliced {
                    projections: AUTO_SLICED_PROJECTIONS,
                    seed: 0,
                }
            }
        }
        ref other => other.clone(),
    };
    match method {
        Method::Exact => {
            let cost = cost_matrix(real, fake, p)?;
            let sol = exact::emd(&cost, n, m)?;
            Ok(WassersteinResult {
                value: root(sol.cost, p),
                method: format!("exact ({})", sol.algorithm),
                p,
                converged: true,
            })
        }
        Method::Sinkhorn { reg } => {
            if !(reg > 0.0 && reg.is_finite()) {
                return Err(Error::InvalidInput(format!(
                    "Sinkhorn regularisation reg = {reg} must be a positive finite number \
                     (it is relative to the mean cost; 0.05 is a usual value)"
                )));
            }
            let cost = cost_matrix(real, fake, p)?;
            let mean = cost.iter().sum::<f64>() / cost.len() as f64;
            if mean == 0.0 {
                // Every real point equals every fake point: the only plan costs 0.
                return Ok(WassersteinResult {
                    value: 0.0,
                    method: format!("sinkhorn (reg {reg}, relative to mean cost)"),
                    p,
                    converged: true,
                });
            }
            let out = sinkhorn::sinkhorn_log(
                &cost,
                n,
                m,
                reg * mean,
                sinkhorn::MAX_ITER,
                sinkhorn::MARGINAL_TOL,
            )?;
            Ok(WassersteinResult {
                value: root(out.cost, p),
                method: format!("sinkhorn (reg {reg}, relative to mean cost)"),
                p,
                converged: out.converged,
            })
        }
        Method::Sliced { projections, seed } => {
            if projections == 0 {
                return Err(Error::InvalidInput(
                    "sliced Wasserstein needs at least 1 projection, got 0 (128 is a usual \
                     value)"
                        .into(),
                ));
            }
            let dirs = sliced::random_directions(real.cols(), projections, seed);
            let value = sliced::sliced_with_directions(real, fake, &dirs, p)?;
            Ok(WassersteinResult {
                value,
                method: format!("sliced ({projections} projections, seed {seed})"),
                p,
                converged: true,
            })
        }
        Method::Auto => unreachable!("Auto was resolved above"),
    }
}

/// Exact W_p for 1-D data by the quantile formula (Auto only).
fn one_dimensional(real: &FeatureMatrix, fake: &FeatureMatrix, p: u32) -> (f64, String) {
    let value = sliced::wasserstein_1d(real.data(), fake.data(), p);
    (value, "exact (1-D quantile functions)".to_string())
}

/// `x^(1/p)` for p in {1, 2}; tiny negative rounding noise is clamped to 0.
fn root(x: f64, p: u32) -> f64 {
    let x = x.max(0.0);
    if p == 1 {
        x
    } else {
        x.sqrt()
    }
}

/// `C_ij = ||x_i - y_j||^p`, n x m row-major, computed from differences (not from
/// `|x|^2 + |y|^2 - 2 x.y`, which cancels badly for nearby points).
pub fn cost_matrix(real: &FeatureMatrix, fake: &FeatureMatrix, p: u32) -> Result<Vec<f64>> {
    check_pair(real, fake, 1)?;
    let (n, m) = (real.rows(), fake.rows());
    let cells = n.checked_mul(m).filter(|&c| c <= MAX_COST_CELLS);
    let Some(cells) = cells else {
        return Err(Error::InvalidInput(format!(
            "a {n} x {m} cost matrix is more than {MAX_COST_CELLS} cells; use \
             Method::Sliced for sets this large"
        )));
    };
    let mut cost = vec![0.0; cells];
    for (i, row) in cost.chunks_exact_mut(m).enumerate() {
        let x = real.row(i);
        for (j, c) in row.iter_mut().enumerate() {
            let d2 = sq_dist(x, fake.row(j));
            *c = if p == 2 { d2 } else { d2.sqrt() };
        }
    }
    Ok(cost)
}

/// Squared Euclidean distance with four independent accumulators (vectorises).
fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let ca = a.chunks_exact(4);
    let cb = b.chunks_exact(4);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        s += d * d;
    }
    s
}

impl Method {
    /// The method called `name` (auto, exact, sinkhorn, sliced), with Auto's settings for
    /// Sinkhorn's regularisation and the sliced projections; `seed` draws the sliced
    /// directions.
    pub fn parse(name: &str, seed: u64) -> Result<Method> {
        Ok(match name {
            "auto" => Method::Auto,
            "exact" => Method::Exact,
            "sinkhorn" => Method::Sinkhorn {
                reg: AUTO_SINKHORN_REG,
            },
            "sliced" => Method::Sliced {
                projections: AUTO_SLICED_PROJECTIONS,
                seed,
            },
            other => {
                return Err(Error::InvalidInput(format!(
                    "unknown Wasserstein method `{other}`; expected auto, exact, sinkhorn or sliced"
                )))
            }
        })
    }
}

/// `genlab eval`'s Wasserstein distance, warning when an iterative method did not converge.
pub fn compute(x: &Inputs) -> Result<Computed> {
    let (a, b) = x.features("wasserstein")?;
    let r = wasserstein(a, b, &x.opts.wasserstein)?;
    let detail = serde_json::json!({ "method": r.method, "p": r.p, "converged": r.converged });
    Ok(
        Computed::new(r.value, None, &detail).warn_if(!r.converged, || {
            format!("wasserstein: {} did not converge", r.method)
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fm(rows: &[Vec<f64>]) -> FeatureMatrix {
        FeatureMatrix::from_rows(rows, "t").unwrap()
    }

    #[test]
    fn bad_inputs_are_invalid_input_errors() {
        let a = fm(&[vec![0.0, 1.0], vec![1.0, 0.0]]);
        let b = fm(&[vec![0.0, 1.0, 2.0]]);
        let empty = FeatureMatrix::new(0, 2, vec![], "empty").unwrap();
        let opts = WassersteinOptions::default();
        let cases: Vec<(FeatureMatrix, WassersteinOptions, &str)> = vec![
            (b.clone(), opts.clone(), "dimensions differ"),
            (empty, opts.clone(), "at least 1"),
            (
                a.clone(),
                WassersteinOptions {
                    p: 3,
                    ..opts.clone()
                },
                "expected 1 or 2",
            ),
            (
                a.clone(),
                WassersteinOptions {
                    method: Method::Sinkhorn { reg: 0.0 },
                    ..opts.clone()
                },
                "positive finite",
            ),
            (
                a.clone(),
                WassersteinOptions {
                    method: Method::Sinkhorn { reg: f64::NAN },
                    ..opts.clone()
                },
                "positive finite",
            ),
            (
                a.clone(),
                WassersteinOptions {
                    method: Method::Sliced {
                        projections: 0,
                        seed: 0,
                    },
                    ..opts.clone()
                },
                "at least 1 projection",
            ),
        ];
        for (other, o, needle) in cases {
            let err = wasserstein(&a, &other, &o).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
        }
    }

    #[test]
    fn cost_matrix_matches_definition() {
        let a = fm(&[vec![0.0, 0.0, 0.0, 0.0, 0.0], vec![1.0, 2.0, 3.0, 4.0, 5.0]]);
        let b = fm(&[vec![1.0, 1.0, 1.0, 1.0, 1.0]]);
        let c1 = cost_matrix(&a, &b, 1).unwrap();
        let c2 = cost_matrix(&a, &b, 2).unwrap();
        assert_eq!(c2, vec![5.0, 30.0]);
        assert_eq!(c1, vec![5f64.sqrt(), 30f64.sqrt()]);
    }

    #[test]
    fn auto_picks_by_size_and_dimension() {
        let mut rng = genlab_core::Rng::new(1);
        let mut set = |n: usize, d: usize| {
            FeatureMatrix::new(n, d, (0..n * d).map(|_| rng.normal()).collect(), "s").unwrap()
        };
        let (a, b) = (set(20, 3), set(30, 3));
        let small = WassersteinOptions::default();
        let tiny_max = WassersteinOptions {
            exact_max: 10,
            ..small.clone()
        };
        assert!(wasserstein(&a, &b, &small)
            .unwrap()
            .method
            .starts_with("exact"));
        assert!(wasserstein(&a, &b, &tiny_max)
            .unwrap()
            .method
            .starts_with("sinkhorn"));
        let (a1, b1) = (set(20, 1), set(30, 1));
        assert_eq!(
            wasserstein(&a1, &b1, &tiny_max).unwrap().method,
            "exact (1-D quantile functions)"
        );
    }

    #[test]
    fn options_roundtrip_through_json_and_reject_unknown_fields() {
        let o = WassersteinOptions {
            method: Method::Sliced {
                projections: 64,
                seed: 3,
            },
            p: 2,
            exact_max: 100,
        };
        let s = serde_json::to_string(&o).unwrap();
        let back: WassersteinOptions = serde_json::from_str(&s).unwrap();
        assert_eq!(back, o);
        assert!(serde_json::from_str::<WassersteinOptions>(r#"{"q": 1}"#).is_err());
        let d: WassersteinOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(d, WassersteinOptions::default());
    }
}
