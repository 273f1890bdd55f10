//! Reference tests of the Wasserstein distances.
//!
//! Fixtures: `scripts/reference/wasserstein_fixtures.py` (POT `ot.emd2`, `ot.sinkhorn2`
//! with `method="sinkhorn_log"`, `ot.sliced_wasserstein_distance` with stored directions,
//! `scipy.stats.wasserstein_distance`), float32 inputs computed on in float64. Closed forms:
//! self-distance 0, point masses, one point against many, translations, duplication
//! invariance, and the ordering sliced <= exact <= Sinkhorn.

use genlab_core::{io::read_npy, Rng};
use genlab_metrics::wasserstein::{
    cost_matrix, exact, sinkhorn, sliced, wasserstein, Method, WassersteinOptions,
};
use genlab_metrics::FeatureMatrix;
use serde_json::Value;
use std::path::PathBuf;

/// Exact solvers vs `ot.emd2` (both exact LP solutions: only rounding differs).
const EXACT_REL_TOL: f64 = 1e-9;
/// Sinkhorn vs `ot.sinkhorn2` (same iterations and stopping rule; the stopping point
/// leaves ~1e-7 relative marginal error, and both stop at the same check).
const SINKHORN_REL_TOL: f64 = 1e-6;
/// Sliced with stored directions vs POT, and 1-D vs scipy/POT (exact formulas).
const SLICED_REL_TOL: f64 = 1e-9;
/// Closed forms computed in floating point (sums of a few hundred terms).
const CLOSED_FORM_TOL: f64 = 1e-12;
/// Monte Carlo check of the sliced directions: allowed deviation in standard errors.
const MC_SIGMAS: f64 = 5.0;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wasserstein")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("wasserstein.json"))
        .expect("tests/fixtures/wasserstein/wasserstein.json (run the fixture script)");
    serde_json::from_str(&text).expect("valid JSON")
}

fn load(name: &Value) -> FeatureMatrix {
    let name = name.as_str().expect("file name");
    let a = read_npy(&fixtures().join(name)).expect("read fixture");
    let (rows, cols) = match a.shape[..] {
        [r] => (r, 1),
        [r, c] => (r, c),
        _ => panic!("{name}: unexpected shape {:?}", a.shape),
    };
    FeatureMatrix::from_f32(rows, cols, &a.data, name).expect("finite fixture")
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

fn opts(method: Method, p: u32) -> WassersteinOptions {
    WassersteinOptions {
        method,
        p,
        ..Default::default()
    }
}

fn gaussian(rng: &mut Rng, n: usize, d: usize, shift: f64) -> FeatureMatrix {
    let data = (0..n * d).map(|_| shift + rng.normal()).collect();
    FeatureMatrix::new(n, d, data, "gaussian").unwrap()
}

fn shifted(x: &FeatureMatrix, v: &[f64]) -> FeatureMatrix {
    let d = x.cols();
    let data = x
        .data()
        .iter()
        .enumerate()
        .map(|(k, a)| a + v[k % d])
        .collect();
    FeatureMatrix::new(x.rows(), d, data, "shifted").unwrap()
}

#[test]
fn exact_matches_ot_emd2_for_equal_and_unequal_sizes() {
    let r = reference();
    let cases = r["exact"].as_array().unwrap();
    assert!(cases.len() >= 8);
    let mut seen_eq = false;
    let mut seen_neq = false;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (x, y) = (load(&case["x"]), load(&case["y"]));
        let p = case["p"].as_u64().unwrap() as u32;
        let want_cost = case["cost"].as_f64().unwrap();
        let want = case["value"].as_f64().unwrap();
        let got = wasserstein(&x, &y, &opts(Method::Exact, p)).unwrap();
        assert!(got.method.starts_with("exact"), "{}", got.method);
        assert_eq!((got.p, got.converged), (p, true));
        assert!(
            rel(got.value, want) < EXACT_REL_TOL,
            "{name} p={p}: {} vs ot.emd2 {want}",
            got.value
        );
        // Both exact solvers on the same cost matrix.
        let (n, m) = (x.rows(), y.rows());
        let c = cost_matrix(&x, &y, p).unwrap();
        let ns = exact::network_simplex(&c, n, m).unwrap();
        assert!(
            rel(ns.cost, want_cost) < EXACT_REL_TOL,
            "{name} p={p} network simplex: {} vs {want_cost}",
            ns.cost
        );
        if n == m {
            seen_eq = true;
            let a = exact::assignment(&c, n).unwrap();
            assert!(
                rel(a.cost, want_cost) < EXACT_REL_TOL,
                "{name} p={p} assignment: {} vs {want_cost}",
                a.cost
            );
        } else {
            seen_neq = true;
        }
    }
    assert!(seen_eq && seen_neq);
}

#[test]
fn sinkhorn_matches_ot_sinkhorn2_log_domain() {
    let r = reference();
    assert_eq!(r["stop_thr"].as_f64().unwrap(), sinkhorn::MARGINAL_TOL);
    for case in r["sinkhorn"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (x, y) = (load(&case["x"]), load(&case["y"]));
        let p = case["p"].as_u64().unwrap() as u32;
        let reg = case["reg"].as_f64().unwrap();
        let want = case["value"].as_f64().unwrap();
        assert!(case["converged"].as_bool().unwrap());
        let got = wasserstein(&x, &y, &opts(Method::Sinkhorn { reg }, p)).unwrap();
        assert_eq!(
            got.method,
            format!("sinkhorn (reg {reg}, relative to mean cost)")
        );
        assert!(got.converged, "{name}");
        assert!(
            rel(got.value, want) < SINKHORN_REL_TOL,
            "{name}: {} vs ot.sinkhorn2 {want}",
            got.value
        );
        // The low-level solver with POT's absolute eps: same cost, same stopping check.
        let c = cost_matrix(&x, &y, p).unwrap();
        let eps = case["eps"].as_f64().unwrap();
        let mean = c.iter().sum::<f64>() / c.len() as f64;
        assert!(
            rel(reg * mean, eps) < 1e-12,
            "{name}: eps {} vs {eps}",
            reg * mean
        );
        let out = sinkhorn::sinkhorn_log(
            &c,
            x.rows(),
            y.rows(),
            eps,
            sinkhorn::MAX_ITER,
            sinkhorn::MARGINAL_TOL,
        )
        .unwrap();
        let want_cost = case["cost"].as_f64().unwrap();
        assert!(
            rel(out.cost, want_cost) < SINKHORN_REL_TOL,
            "{name}: {} vs {want_cost}",
            out.cost
        );
        let niter = case["niter"].as_u64().unwrap() as usize;
        assert!(
            out.iterations.abs_diff(niter) <= sinkhorn::CHECK_EVERY,
            "{name}: stopped after {} iterations, POT after {niter}",
            out.iterations
        );
        assert!(out.marginal_error < sinkhorn::MARGINAL_TOL);
    }
}

#[test]
fn sinkhorn_reports_non_convergence() {
    let mut rng = Rng::new(8);
    let (x, y) = (
        gaussian(&mut rng, 30, 2, 0.0),
        gaussian(&mut rng, 20, 2, 1.0),
    );
    let c = cost_matrix(&x, &y, 2).unwrap();
    let out = sinkhorn::sinkhorn_log(&c, 30, 20, 1e-3, 5, sinkhorn::MARGINAL_TOL).unwrap();
    assert!(!out.converged);
    assert!(out.marginal_error >= sinkhorn::MARGINAL_TOL);
    assert_eq!(out.iterations, 4);
}

#[test]
fn sliced_matches_pot_with_stored_directions() {
    let r = reference();
    for case in r["sliced"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (x, y, dirs) = (load(&case["x"]), load(&case["y"]), load(&case["dirs"]));
        assert_eq!(dirs.cols(), x.cols());
        let p = case["p"].as_u64().unwrap() as u32;
        let want = case["value"].as_f64().unwrap();
        let got = sliced::sliced_with_directions(&x, &y, dirs.data(), p).unwrap();
        assert!(
            rel(got, want) < SLICED_REL_TOL,
            "{name} p={p}: {got} vs POT {want}"
        );
    }
}

#[test]
fn one_d_matches_scipy_for_unequal_sizes_with_ties() {
    let r = reference();
    for case in r["one_d"].as_array().unwrap() {
        let (u, v) = (load(&case["u"]), load(&case["v"]));
        assert_ne!(u.rows(), v.rows());
        let p = case["p"].as_u64().unwrap() as u32;
        let want = case["value"].as_f64().unwrap();
        let reference = case["reference"].as_str().unwrap();
        let got = sliced::wasserstein_1d(u.data(), v.data(), p);
        assert!(
            rel(got, want) < SLICED_REL_TOL,
            "p={p}: {got} vs {reference} {want}"
        );
        // Auto on one column uses the same exact formula; Exact (LP) agrees with it.
        let auto = wasserstein(&u, &v, &opts(Method::Auto, p)).unwrap();
        assert_eq!(auto.method, "exact (1-D quantile functions)");
        assert!(rel(auto.value, want) < SLICED_REL_TOL);
        let lp = wasserstein(&u, &v, &opts(Method::Exact, p)).unwrap();
        assert!(
            rel(lp.value, want) < EXACT_REL_TOL,
            "{} vs {want}",
            lp.value
        );
    }
}

#[test]
fn distance_of_a_set_to_itself_is_zero() {
    let mut rng = Rng::new(1);
    for (n, d) in [(1, 3), (17, 1), (40, 2), (25, 64)] {
        let x = gaussian(&mut rng, n, d, 0.0);
        // Rows in another order: still the same empirical measure.
        let perm: Vec<usize> = (0..n).rev().collect();
        let y = x.select(&perm);
        for p in [1, 2] {
            for method in [
                Method::Exact,
                Method::Auto,
                Method::Sliced {
                    projections: 16,
                    seed: 2,
                },
            ] {
                let w = wasserstein(&x, &y, &opts(method.clone(), p)).unwrap();
                assert!(
                    w.value.abs() <= CLOSED_FORM_TOL,
                    "{method:?} n={n} d={d}: {w:?}"
                );
            }
        }
        // Duplicating every point leaves the measure unchanged: n != m, still 0.
        let twice: Vec<usize> = (0..2 * n).map(|k| k % n).collect();
        let w = wasserstein(&x, &x.select(&twice), &opts(Method::Exact, 2)).unwrap();
        assert!(w.value.abs() <= CLOSED_FORM_TOL, "{w:?}");
    }
}

#[test]
fn two_point_masses_at_distance_d() {
    let x = FeatureMatrix::from_rows(&[vec![1.0, 2.0, -1.0]], "x").unwrap();
    let y = FeatureMatrix::from_rows(&[vec![4.0, -2.0, -1.0]], "y").unwrap();
    let d = 5.0;
    for p in [1, 2] {
        for method in [Method::Exact, Method::Auto, Method::Sinkhorn { reg: 0.1 }] {
            let w = wasserstein(&x, &y, &opts(method.clone(), p)).unwrap();
            assert!(
                (w.value - d).abs() <= CLOSED_FORM_TOL * d,
                "{method:?} p={p}: {w:?}"
            );
        }
    }
}

#[test]
fn one_point_against_many_has_a_single_coupling() {
    let mut rng = Rng::new(6);
    let x = gaussian(&mut rng, 1, 4, 0.0);
    let y = gaussian(&mut rng, 13, 4, 2.0);
    for p in [1, 2] {
        let want_pow: f64 = (0..13)
            .map(|j| {
                let d2: f64 = x
                    .row(0)
                    .iter()
                    .zip(y.row(j))
                    .map(|(a, b)| (a - b).powi(2))
                    .sum();
                d2.powf(p as f64 / 2.0)
            })
            .sum::<f64>()
            / 13.0;
        let want = want_pow.powf(1.0 / p as f64);
        for (a, b) in [(&x, &y), (&y, &x)] {
            let w = wasserstein(a, b, &opts(Method::Exact, p)).unwrap();
            assert_eq!(w.method, "exact (network simplex)");
            assert!(
                rel(w.value, want) < CLOSED_FORM_TOL,
                "p={p}: {} vs {want}",
                w.value
            );
        }
    }
}

#[test]
fn translation_by_v_gives_its_length() {
    let mut rng = Rng::new(3);
    // 1-D: every method that is exact in 1-D, including sliced (directions are +-1).
    let x = gaussian(&mut rng, 50, 1, 0.0);
    let v = -1.75;
    let y = shifted(&x, &[v]);
    for p in [1, 2] {
        for method in [
            Method::Exact,
            Method::Auto,
            Method::Sliced {
                projections: 5,
                seed: 9,
            },
        ] {
            let w = wasserstein(&x, &y, &opts(method.clone(), p)).unwrap();
            assert!(
                rel(w.value, v.abs()) < CLOSED_FORM_TOL,
                "{method:?} p={p}: {w:?}"
            );
        }
    }
    // d-D: the translation coupling is optimal for W_1 and W_2 (Kantorovich duality with
    // f(x) = <x, v/|v|> gives the matching lower bound).
    let x = gaussian(&mut rng, 60, 5, 0.0);
    let v = [0.5, -1.0, 0.25, 2.0, 0.0];
    let len = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let y = shifted(&x, &v);
    for p in [1, 2] {
        let w = wasserstein(&x, &y, &opts(Method::Exact, p)).unwrap();
        assert!(
            rel(w.value, len) < CLOSED_FORM_TOL,
            "p={p}: {} vs {len}",
            w.value
        );
        // Unequal sizes: x against two copies of its translate.
        let twice: Vec<usize> = (0..120).map(|k| k % 60).collect();
        let w = wasserstein(&x, &y.select(&twice), &opts(Method::Exact, p)).unwrap();
        assert_eq!(w.method, "exact (network simplex)");
        assert!(
            rel(w.value, len) < CLOSED_FORM_TOL,
            "p={p}: {} vs {len}",
            w.value
        );
    }
}

#[test]
fn sliced_translation_is_the_mean_projected_shift() {
    let mut rng = Rng::new(4);
    let d = 5;
    let x = gaussian(&mut rng, 40, d, 0.0);
    let v = [1.0, -2.0, 0.5, 0.0, 2.0];
    let v2: f64 = v.iter().map(|a| a * a).sum();
    let y = shifted(&x, &v);
    let (k, seed) = (4000, 11);
    let dirs = sliced::random_directions(d, k, seed);
    let shifts: Vec<f64> = dirs
        .chunks_exact(d)
        .map(|t| t.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>())
        .collect();
    for p in [1u32, 2] {
        // Exactly: each projection is a 1-D translation by theta_k . v.
        let want = (shifts.iter().map(|s| s.abs().powi(p as i32)).sum::<f64>() / k as f64)
            .powf(1.0 / p as f64);
        let w = wasserstein(
            &x,
            &y,
            &opts(
                Method::Sliced {
                    projections: k,
                    seed,
                },
                p,
            ),
        )
        .unwrap();
        assert_eq!(w.method, format!("sliced ({k} projections, seed {seed})"));
        assert!(
            rel(w.value, want) < CLOSED_FORM_TOL,
            "p={p}: {} vs {want}",
            w.value
        );
    }
    // Uniform directions: E[(theta . v)^2] = |v|^2 / d. Var of (theta . v)^2 is
    // |v|^4 (3 / (d (d + 2)) - 1 / d^2) for theta uniform on the sphere.
    let mean_sq = shifts.iter().map(|s| s * s).sum::<f64>() / k as f64;
    let se = (v2 * v2 * (3.0 / (d * (d + 2)) as f64 - 1.0 / (d * d) as f64) / k as f64).sqrt();
    assert!(
        (mean_sq - v2 / d as f64).abs() < MC_SIGMAS * se,
        "{mean_sq} vs {} (se {se})",
        v2 / d as f64
    );
}

#[test]
fn sliced_is_below_exact_and_sinkhorn_cost_decreases_to_exact() {
    let mut rng = Rng::new(12);
    let x = gaussian(&mut rng, 45, 3, 0.0);
    let y = gaussian(&mut rng, 35, 3, 0.7);
    let p = 2;
    let exact = wasserstein(&x, &y, &opts(Method::Exact, p)).unwrap().value;
    let sw = wasserstein(
        &x,
        &y,
        &opts(
            Method::Sliced {
                projections: 64,
                seed: 0,
            },
            p,
        ),
    )
    .unwrap()
    .value;
    assert!(sw <= exact, "sliced {sw} > exact {exact}");
    let mut prev = f64::INFINITY;
    for reg in [1.0, 0.3, 0.1, 0.03, 0.01] {
        let s = wasserstein(&x, &y, &opts(Method::Sinkhorn { reg }, p)).unwrap();
        assert!(s.converged, "reg {reg}");
        // A feasible plan costs at least the optimum; the entropic cost grows with eps.
        assert!(
            s.value >= exact * (1.0 - CLOSED_FORM_TOL),
            "reg {reg}: {} < {exact}",
            s.value
        );
        assert!(s.value <= prev, "reg {reg}: {} > {prev}", s.value);
        prev = s.value;
    }
    assert!(rel(prev, exact) < 0.01, "reg 0.01: {prev} vs exact {exact}");
}

#[test]
fn duplicating_a_set_does_not_change_the_distance() {
    // n == m (assignment) against 2n vs 3n (network simplex) on the same measures.
    let mut rng = Rng::new(21);
    let x = gaussian(&mut rng, 30, 8, 0.0);
    let y = gaussian(&mut rng, 30, 8, 0.4);
    let c = cost_matrix(&x, &y, 1).unwrap();
    let base = exact::assignment(&c, 30).unwrap().cost;
    let x2 = x.select(&(0..60).map(|k| k % 30).collect::<Vec<_>>());
    let y3 = y.select(&(0..90).map(|k| k % 30).collect::<Vec<_>>());
    let w = wasserstein(&x2, &y3, &opts(Method::Exact, 1)).unwrap();
    assert!(rel(w.value, base) < EXACT_REL_TOL, "{} vs {base}", w.value);
}

#[test]
fn seeded_sliced_is_reproducible() {
    let mut rng = Rng::new(5);
    let x = gaussian(&mut rng, 30, 6, 0.0);
    let y = gaussian(&mut rng, 20, 6, 0.5);
    let run = |seed| {
        wasserstein(
            &x,
            &y,
            &opts(
                Method::Sliced {
                    projections: 32,
                    seed,
                },
                2,
            ),
        )
        .unwrap()
        .value
    };
    assert_eq!(run(7).to_bits(), run(7).to_bits());
    assert_ne!(run(7), run(8));
}

#[test]
fn auto_uses_exact_below_the_threshold() {
    let mut rng = Rng::new(2);
    let x = gaussian(&mut rng, 40, 3, 0.0);
    let y = gaussian(&mut rng, 50, 3, 0.5);
    let auto = wasserstein(&x, &y, &WassersteinOptions::default()).unwrap();
    let ex = wasserstein(&x, &y, &opts(Method::Exact, 1)).unwrap();
    assert_eq!(auto, ex);
    let big = WassersteinOptions {
        exact_max: 20,
        ..Default::default()
    };
    let s = wasserstein(&x, &y, &big).unwrap();
    assert!(s.method.starts_with("sinkhorn (reg 0.05"), "{}", s.method);
}
