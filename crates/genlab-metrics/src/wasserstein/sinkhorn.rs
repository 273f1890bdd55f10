//! Entropic optimal transport by Sinkhorn iterations in the log domain.
//!
//! Cuturi, "Sinkhorn distances: lightspeed computation of optimal transport", NeurIPS 2013
//! (arXiv:1306.0895), computed with log-sum-exp updates of the scaled dual potentials as
//! in Peyre & Cuturi, "Computational Optimal Transport", 2019 (arXiv:1803.00567), section
//! 4.4 (log-domain Sinkhorn), which stay finite for small regularisation:
//!
//! ```text
//! v_j <- log b_j - LSE_i(u_i - C_ij / eps)          (column update)
//! u_i <- log a_i - LSE_j(v_j - C_ij / eps)          (row update)
//! pi_ij = exp(u_i + v_j - C_ij / eps)
//! ```
//!
//! with `a_i = 1/n`, `b_j = 1/m`, in exactly the order of POT's `ot.bregman.sinkhorn_log`
//! (v first, then u; the column-marginal error `||pi^T 1 - b||_2` is checked after
//! iterations 0, 10, 20, ...). After a row update the row marginals are exact, so the
//! column error is the whole error.
//!
//! **Returned quantity**: the transport cost `<pi_eps, C> = sum_ij pi_ij C_ij` of the
//! entropic plan, without the entropy term. This is what `ot.sinkhorn2` returns. Because
//! `pi_eps` is a feasible coupling, it is an upper bound on the exact optimum
//! `min_pi <pi, C>` and tends to it as `eps -> 0`.

use genlab_core::{Error, Result};

/// Convergence tolerance on the L2 norm of the column-marginal error (POT's default
/// `stopThr`). With b_j = 1/m, `||b||_2 = 1/sqrt(m)`, so this is ~1e-7 relative or less.
pub const MARGINAL_TOL: f64 = 1e-9;

/// Iteration limit of [`crate::wasserstein::wasserstein`] (POT's default is 1000; small
/// relative regularisations need more). The result says `converged: false` if reached.
pub const MAX_ITER: usize = 10_000;

/// The error is checked every this many iterations (as POT does), because a check costs
/// one pass over the matrix.
pub const CHECK_EVERY: usize = 10;

/// Result of [`sinkhorn_log`].
#[derive(Debug, Clone, PartialEq)]
pub struct SinkhornOutput {
    /// `<pi_eps, C>`: the transport cost of the entropic plan (see the module docs).
    pub cost: f64,
    /// Whether the column-marginal error fell below the tolerance.
    pub converged: bool,
    /// Iterations run (the index of the last iteration, as POT's `log["niter"]`).
    pub iterations: usize,
    /// `||pi^T 1 - b||_2` of the returned plan.
    pub marginal_error: f64,
}

/// Log-domain Sinkhorn on an n x m row-major cost matrix with uniform marginals and
/// absolute regularisation `eps` (the `reg` of `ot.sinkhorn2`). Stops when the column
/// marginal error is below `tol` (checked every [`CHECK_EVERY`] iterations) or after
/// `max_iter` iterations.
pub fn sinkhorn_log(
    cost: &[f64],
    n: usize,
    m: usize,
    eps: f64,
    max_iter: usize,
    tol: f64,
) -> Result<SinkhornOutput> {
    if n == 0 || m == 0 || n.checked_mul(m) != Some(cost.len()) {
        return Err(Error::InvalidInput(format!(
            "Sinkhorn: cost matrix has {} values, expected {n} x {m} with n, m >= 1",
            cost.len()
        )));
    }
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::InvalidInput(format!(
            "Sinkhorn: regularisation eps = {eps} must be positive and finite"
        )));
    }
    if max_iter == 0 {
        return Err(Error::InvalidInput(
            "Sinkhorn: max_iter must be at least 1".into(),
        ));
    }
    let inv = 1.0 / eps;
    let log_a = -(n as f64).ln();
    let log_b = -(m as f64).ln();
    let b = 1.0 / m as f64;
    let mut u = vec![0.0f64; n];
    let mut v = vec![0.0f64; m];
    // Column maxima max_i(u_i - C_ij / eps) of the current u: the shifts of the column
    // log-sum-exp. The row update refreshes them while each row is still in cache, which
    // saves one pass over the matrix per iteration.
    let mut col_max = vec![f64::NEG_INFINITY; m];
    for row in cost.chunks_exact(m) {
        update_col_max(row, 0.0, inv, &mut col_max);
    }
    // Column log-sum-exp LSE_i(u_i - C_ij / eps) of the current u.
    let mut col_lse = vec![0.0f64; m];
    let mut converged = false;
    let mut last = 0;
    let mut err = f64::INFINITY;
    for it in 0..=max_iter {
        column_lse(cost, m, inv, &u, &col_max, &mut col_lse);
        if (it > 0 && (it - 1) % CHECK_EVERY == 0) || it == max_iter {
            // Error of the plan after iteration it - 1: column sums are exp(v_j + L_j).
            err = col_lse
                .iter()
                .zip(&v)
                .map(|(l, vj)| ((vj + l).exp() - b).powi(2))
                .sum::<f64>()
                .sqrt();
            if !err.is_finite() {
                return Err(Error::Numeric(format!(
                    "Sinkhorn: marginal error became {err} after {} iterations (eps {eps})",
                    it.saturating_sub(1)
                )));
            }
            if err < tol {
                converged = true;
                break;
            }
        }
        if it == max_iter {
            break;
        }
        // Column update (POT: v = logb - logsumexp(Mr + u[:, None], 0)).
        for (vj, l) in v.iter_mut().zip(&col_lse) {
            *vj = log_b - l;
        }
        // Row update (POT: u = loga - logsumexp(Mr + v[None, :], 1)).
        col_max.fill(f64::NEG_INFINITY);
        for (ui, row) in u.iter_mut().zip(cost.chunks_exact(m)) {
            *ui = log_a - row_lse(row, &v, inv);
            update_col_max(row, *ui, inv, &mut col_max);
        }
        last = it;
    }
    // <pi, C> with pi_ij = exp(u_i + v_j - C_ij / eps).
    let mut total = 0.0f64;
    for (ui, row) in u.iter().zip(cost.chunks_exact(m)) {
        let mut acc = [0.0f64; 4];
        let (rc, vc) = (row.chunks_exact(4), v.chunks_exact(4));
        let (rr, vr) = (rc.remainder(), vc.remainder());
        for (c, vj) in rc.zip(vc) {
            for k in 0..4 {
                acc[k] += fast_exp(ui + vj[k] - c[k] * inv) * c[k];
            }
        }
        let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for (c, vj) in rr.iter().zip(vr) {
            s += fast_exp(ui + vj - c * inv) * c;
        }
        total += s;
    }
    Ok(SinkhornOutput {
        cost: total,
        converged,
        iterations: last,
        marginal_error: err,
    })
}

/// `col_max_j = max(col_max_j, u_i - C_ij * inv)` for one row i.
fn update_col_max(row: &[f64], ui: f64, inv: f64, col_max: &mut [f64]) {
    for (mx, c) in col_max.iter_mut().zip(row) {
        let x = ui - c * inv;
        *mx = if x > *mx { x } else { *mx };
    }
}

/// `out_j = LSE_i(u_i - C_ij * inv)` given the column maxima, streaming over rows.
fn column_lse(cost: &[f64], m: usize, inv: f64, u: &[f64], col_max: &[f64], out: &mut [f64]) {
    out.fill(0.0);
    for (ui, row) in u.iter().zip(cost.chunks_exact(m)) {
        for ((s, c), mx) in out.iter_mut().zip(row).zip(col_max) {
            *s += fast_exp(ui - c * inv - mx);
        }
    }
    for (s, mx) in out.iter_mut().zip(col_max) {
        *s = mx + s.ln();
    }
}

/// `LSE_j(v_j - C_ij * inv)` of one row (four lanes so that both passes vectorise).
fn row_lse(row: &[f64], v: &[f64], inv: f64) -> f64 {
    let (rc, vc) = (row.chunks_exact(4), v.chunks_exact(4));
    let (rr, vr) = (rc.remainder(), vc.remainder());
    let mut m4 = [f64::NEG_INFINITY; 4];
    for (c, vj) in rc.clone().zip(vc.clone()) {
        for k in 0..4 {
            let x = vj[k] - c[k] * inv;
            m4[k] = if x > m4[k] { x } else { m4[k] };
        }
    }
    let mut mx = m4[0].max(m4[1]).max(m4[2].max(m4[3]));
    for (c, vj) in rr.iter().zip(vr) {
        mx = mx.max(vj - c * inv);
    }
    let mut acc = [0.0f64; 4];
    for (c, vj) in rc.zip(vc) {
        for k in 0..4 {
            acc[k] += fast_exp(vj[k] - c[k] * inv - mx);
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (c, vj) in rr.iter().zip(vr) {
        s += fast_exp(vj - c * inv - mx);
    }
    mx + s.ln()
}

/// `exp(x)` for `x <= 700`, branch-free so that loops over it vectorise; arguments below
/// -708 give 0 (the terms are summed next to exp(0) = 1, so nothing is lost). Cody-Waite
/// reduction `x = k ln 2 + r`, `|r| <= ln 2 / 2 (+ rounding)`, then the degree-12 Taylor
/// polynomial of `exp(r)` (truncation error `r^13 / 13! < 2e-16`); 2^k is built from the
/// exponent bits. Within a few ulp of `f64::exp` (tested).
#[inline(always)]
pub(crate) fn fast_exp(x: f64) -> f64 {
    // 1.5 * 2^52: adding it rounds to an integer kept in the low mantissa bits.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    // ln 2 split as in fdlibm: LN2_HI has 11 trailing zero bits, so k * LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 6.93147180369123816490e-1
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.90821492927058770002e-10
    let xc = if x > -708.0 { x } else { -708.0 };
    let t = xc * std::f64::consts::LOG2_E + SHIFTER;
    let k = t - SHIFTER;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    // Horner form of sum_{i=0}^{12} r^i / i!.
    let mut p = 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // k sits in the low bits of t: 2^k has exponent field k + 1023.
    let ki = t.to_bits().wrapping_sub(SHIFTER.to_bits());
    let scale = f64::from_bits(ki.wrapping_add(1023) << 52);
    let y = p * scale;
    if x > -708.0 {
        y
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fast_exp against the standard library, relative.
    const EXP_TOL: f64 = 4e-16;

    #[test]
    fn fast_exp_matches_std_exp() {
        let mut worst = 0.0f64;
        let mut x = -707.9;
        while x < 5.0 {
            let rel = ((fast_exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        for x in [
            0.0,
            -0.5 * std::f64::consts::LN_2,
            -1e-300,
            -1e-17,
            1.0,
            -1.0,
        ] {
            let rel = ((fast_exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < EXP_TOL, "worst relative error {worst:e}");
        assert_eq!(fast_exp(-709.0), 0.0);
        assert_eq!(fast_exp(-1e300), 0.0);
        assert_eq!(fast_exp(f64::NEG_INFINITY), 0.0);
    }

    /// Plain (non-log) Sinkhorn with the same update order: the same iterates as long as
    /// nothing underflows, so the outputs agree to rounding.
    #[test]
    fn matches_plain_sinkhorn_for_moderate_eps() {
        let (n, m) = (7, 5);
        let mut rng = genlab_core::Rng::new(2);
        let cost: Vec<f64> = (0..n * m).map(|_| rng.uniform() * 3.0).collect();
        let eps = 0.7;
        let iters = 40; // run a fixed number: tol 0 never stops early
        let out = sinkhorn_log(&cost, n, m, eps, iters, 0.0).unwrap();
        let k: Vec<f64> = cost.iter().map(|c| (-c / eps).exp()).collect();
        let (mut a, mut b) = (vec![1.0; n], vec![1.0; m]);
        for _ in 0..iters {
            for j in 0..m {
                let s: f64 = (0..n).map(|i| a[i] * k[i * m + j]).sum();
                b[j] = (1.0 / m as f64) / s;
            }
            for i in 0..n {
                let s: f64 = (0..m).map(|j| b[j] * k[i * m + j]).sum();
                a[i] = (1.0 / n as f64) / s;
            }
        }
        let plain: f64 = (0..n * m)
            .map(|e| a[e / m] * k[e] * b[e % m] * cost[e])
            .sum();
        assert!(
            (out.cost - plain).abs() < 1e-13 * plain,
            "{} vs {plain}",
            out.cost
        );
        assert!(!out.converged);
        assert_eq!(out.iterations, iters - 1);
    }

    #[test]
    fn small_eps_stays_finite_and_approaches_the_exact_cost() {
        // eps 0.01 of costs ~10: exp(-C/eps) ~ exp(-1000) underflows to 0 in the plain
        // domain; the log domain only sees differences (range 1, i.e. 100 eps).
        let (n, m) = (6, 9);
        let mut rng = genlab_core::Rng::new(3);
        let cost: Vec<f64> = (0..n * m).map(|_| 10.0 + rng.uniform()).collect();
        assert_eq!((-cost[0] / 0.01f64).exp(), 0.0);
        let exact = crate::wasserstein::exact::network_simplex(&cost, n, m)
            .unwrap()
            .cost;
        let out = sinkhorn_log(&cost, n, m, 0.01, 100_000, MARGINAL_TOL).unwrap();
        assert!(out.converged, "{out:?}");
        assert!(out.cost.is_finite());
        // A feasible plan costs at least the optimum; entropic bias is O(eps log(nm)).
        assert!(out.cost >= exact - 1e-12, "{} < {exact}", out.cost);
        assert!(
            out.cost - exact < 0.01 * (n as f64 * m as f64).ln(),
            "{} vs {exact}",
            out.cost
        );
    }
}
