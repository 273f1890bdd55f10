//! genlab-metrics against independent implementations on committed fixtures
//! (`scripts/reference/metrics_fixtures.py`: scipy / pytorch-fid's formula, torchmetrics'
//! KID formula, scikit-learn, scipy.stats.entropy; `scripts/reference/kid_subsets_fixture.py`:
//! torchmetrics' `KernelInceptionDistance` over 100 subsets).

use genlab_metrics::kernel::{
    kid, kid_on_subsets, mmd2_unbiased, Bandwidth, Kernel, KidOptions, KidSubset, ResolvedKernel,
};
use genlab_metrics::{fid, nn1, score, FeatureMatrix};
use std::path::PathBuf;

/// Relative agreement required in f64 (the bar).
const REL_TOL: f64 = 1e-6;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics")
}

fn load(name: &str) -> FeatureMatrix {
    let a = genlab_core::io::read_npy_f64(&dir().join(format!("{name}.npy"))).unwrap();
    assert_eq!(a.shape.len(), 2, "{name}");
    FeatureMatrix::new(a.shape[0], a.shape[1], a.data, name).unwrap()
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

fn close(got: f64, want: f64, what: &str) {
    let rel = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        rel < REL_TOL,
        "{what}: got {got}, reference {want}, relative error {rel:e}"
    );
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap()
}

#[test]
fn fid_matches_pytorch_fid_formula() {
    let e = expected();
    let r = fid::fid(&load("real16"), &load("fake16")).unwrap();
    close(r.fid, num(&e["fid16"]), "FID 16-D");
    assert_eq!((r.n_real, r.n_fake), (300, 250));
    let r = fid::fid(&load("real64"), &load("fake64")).unwrap();
    close(r.fid, num(&e["fid64"]), "FID 64-D");
}

#[test]
fn kid_matches_torchmetrics_formula_on_full_sets() {
    let e = expected();
    let full = KidOptions {
        subsets: 1,
        subset_size: usize::MAX,
        seed: 0,
    };
    let r = kid(&load("real64"), &load("fake64"), &full).unwrap();
    close(r.kid, num(&e["kid64_full"]), "KID 64-D");
    let r = kid(&load("real16").head(250), &load("fake16"), &full).unwrap();
    close(r.kid, num(&e["kid16_equal"]), "KID 16-D");
}

/// Regression (issue 19): KID's std divided by (subsets - 1); torchmetrics reports the
/// population std. 100 subsets of 50 drawn by torchmetrics (`kid_subsets.json` lists the
/// indices): every subset's MMD^2, the mean and the std must agree to [`REL_TOL`]; the old
/// std was sqrt(100/99) = 1.005 times too large, far outside it.
#[test]
fn kid_std_over_many_subsets_matches_torchmetrics_population_std() {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("kid_subsets.json")).unwrap())
            .unwrap();
    let idx = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as usize)
            .collect()
    };
    let subsets: Vec<KidSubset> = j["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| KidSubset {
            real: idx(&s["real"]),
            fake: idx(&s["fake"]),
        })
        .collect();
    assert_eq!(subsets.len(), 100);
    let (x, y) = (
        load(j["real"].as_str().unwrap().trim_end_matches(".npy")),
        load(j["fake"].as_str().unwrap().trim_end_matches(".npy")),
    );
    let r = kid_on_subsets(&x, &y, &subsets).unwrap();
    assert_eq!((r.subsets, r.subset_size), (100, 50));
    let want: Vec<f64> = j["values"].as_array().unwrap().iter().map(num).collect();
    for (i, (g, w)) in r.values.iter().zip(&want).enumerate() {
        close(*g, *w, &format!("KID subset {i}"));
    }
    close(r.kid, num(&j["kid_mean"]), "KID mean over subsets");
    close(r.std, num(&j["kid_std"]), "KID population std over subsets");
    let unbiased = num(&j["kid_std_unbiased"]);
    assert!(
        (unbiased - r.std).abs() > 1e3 * REL_TOL * r.std,
        "the fixture cannot tell the two stds apart: {unbiased} vs {}",
        r.std
    );
}

#[test]
fn rbf_mmd_with_median_bandwidth_matches_sklearn() {
    let e = expected();
    let r = mmd2_unbiased(
        &load("real16"),
        &load("fake16"),
        &Kernel::Rbf {
            bandwidth: Bandwidth::Median,
        },
    )
    .unwrap();
    match r.kernel {
        ResolvedKernel::Rbf { sigma } => close(sigma, num(&e["sigma16"]), "median bandwidth"),
        k => panic!("unexpected kernel {k:?}"),
    }
    close(r.mmd2, num(&e["mmd_rbf16"]), "RBF MMD^2");
}

#[test]
fn inception_and_mode_scores_match_the_split_formula() {
    let e = expected();
    let fake = load("probs_fake");
    let real = load("probs_real");
    let s = score::inception_score(&fake, 10).unwrap();
    close(s.mean, num(&e["is10"][0]), "IS mean");
    close(s.std, num(&e["is10"][1]), "IS std");
    let s = score::inception_score(&fake, 1).unwrap();
    close(s.mean, num(&e["is1"][0]), "IS one split");
    let s = score::mode_score(&fake, &real, 10).unwrap();
    close(s.mean, num(&e["mode10"][0]), "Mode Score mean");
    close(s.std, num(&e["mode10"][1]), "Mode Score std");
}

#[test]
fn one_nn_matches_sklearn_leave_one_out() {
    let e = expected();
    for (tag, real, fake) in [("nn16", "real16", "fake16"), ("nn64", "real64", "fake64")] {
        let r = nn1::one_nn(&load(real), &load(fake)).unwrap();
        // Counts of integers: these must agree exactly, not just to a tolerance.
        assert_eq!(r.accuracy, num(&e[tag][0]), "{tag} overall");
        assert_eq!(r.real_accuracy, num(&e[tag][1]), "{tag} real");
        assert_eq!(r.fake_accuracy, num(&e[tag][2]), "{tag} fake");
    }
}

#[test]
fn one_nn_is_near_half_for_the_same_distribution() {
    // Two independent halves of one fixture set: indistinguishable by construction.
    let x = load("real64");
    let idx_a: Vec<usize> = (0..100).collect();
    let idx_b: Vec<usize> = (100..200).collect();
    let r = nn1::one_nn(&x.select(&idx_a), &x.select(&idx_b)).unwrap();
    assert!((r.accuracy - 0.5).abs() < 0.15, "{r:?}");
}
