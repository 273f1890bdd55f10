//! The FID Inception-v3 against pytorch-fid itself.
//!
//! `scripts/reference/inception_fixture.py` ran pytorch-fid's `InceptionV3` (FID variant,
//! pool3) with weights given by a formula and wrote the features and softmax probabilities
//! of a few formula images, plus the state_dict layout, to
//! `tests/fixtures/inception/formula_weights.json`. This test recomputes the same weights
//! (bit-exact: integer hash, then f64 -> f32), writes them to a temporary safetensors file,
//! loads it through the public loader and compares.
//!
//! `GENLAB_INCEPTION_PTH=/tmp/inception_formula.pth cargo test --release -p genlab-metrics
//! --test inception -- --ignored` checks the `.pth` path with the full file the script writes
//! with `--pth` (95 MB, not committed).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use genlab_core::Error;
use genlab_metrics::features::inception::{
    InceptionV3, FEATURE_DIM, NUM_CLASSES, WEIGHTS_FILE, WEIGHTS_URL,
};
use genlab_metrics::features::FeatureExtractor;
use serde_json::Value;

/// Max |rust - torch| over a case's features, relative to the largest |torch| feature. Both
/// are f32 through ~50 layers with different summation orders and BatchNorm folded here.
const FEATURE_REL_TOL: f64 = 1e-4;
/// Max |rust - torch| over a case's probabilities, relative to the largest probability.
const PROB_REL_TOL: f64 = 1e-4;
/// Same network, same images, different internal batch sizes: only summation order differs.
const BATCHING_REL_TOL: f64 = 1e-5;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inception")
}

fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let text = std::fs::read_to_string(fixture_dir().join("formula_weights.json"))
            .expect("read fixture");
        serde_json::from_str(&text).expect("parse fixture")
    })
}

// ---- the formula of scripts/reference/inception_fixture.py ----

use common::uniform;

fn formula_tensor(key: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    if key.ends_with("num_batches_tracked") {
        return Tensor::zeros(shape, DType::I64, &Device::Cpu).unwrap();
    }
    let s = uniform(key, n).into_iter().map(|u| 2.0 * u - 1.0);
    let v: Vec<f64> = if key.ends_with(".conv.weight") {
        let fan_in: usize = shape[1..].iter().product();
        let a = (6.0 / fan_in as f64).sqrt();
        s.map(|s| s * a).collect()
    } else if key.ends_with(".bn.weight") || key.ends_with(".bn.running_var") {
        s.map(|s| 1.0 + 0.1 * s).collect()
    } else if key.ends_with(".bn.bias") || key.ends_with(".bn.running_mean") || key == "fc.bias" {
        s.map(|s| 0.1 * s).collect()
    } else if key == "fc.weight" {
        let a = (75.0 / shape[1] as f64).sqrt();
        s.map(|s| s * a).collect()
    } else {
        panic!("no formula for {key}")
    };
    let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The formula weights for every key of pytorch-fid's state_dict (as the fixture lists it).
fn formula_weights() -> &'static HashMap<String, Tensor> {
    static W: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    W.get_or_init(|| {
        fixture()["state_dict"]
            .as_array()
            .expect("state_dict list")
            .iter()
            .map(|e| {
                let key = e[0].as_str().unwrap().to_string();
                let shape: Vec<usize> = e[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                let t = formula_tensor(&key, &shape);
                (key, t)
            })
            .collect()
    })
}

fn save_safetensors(map: &HashMap<String, Tensor>, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    candle_core::safetensors::save(map, &path).expect("write safetensors");
    path
}

/// The network loaded through the public loader from a temporary safetensors file.
fn network() -> &'static InceptionV3 {
    static N: OnceLock<InceptionV3> = OnceLock::new();
    N.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = save_safetensors(formula_weights(), dir.path(), "formula.safetensors");
        InceptionV3::load(&path, &Device::Cpu).expect("load formula weights")
    })
}

fn case(name: &str) -> &'static Value {
    fixture()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

fn case_images(name: &str) -> Tensor {
    let shape: Vec<usize> = case(name)["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let n = shape.iter().product();
    let v: Vec<f32> = uniform(&format!("image:{name}"), n)
        .into_iter()
        .map(|u| u as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn rows(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect()
}

/// max |a - b| / max |b|.
fn rel_max_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    err / scale
}

fn check_case(net: &InceptionV3, name: &str) {
    let out = net.extract(&case_images(name)).unwrap();
    let want_f = rows(&case(name)["features"]);
    let want_p = rows(&case(name)["probs"]);
    assert_eq!(out.features.cols(), FEATURE_DIM);
    assert_eq!(out.features.rows() * FEATURE_DIM, want_f.len());
    let probs = out.probs.expect("formula weights have fc");
    assert_eq!(probs.cols(), NUM_CLASSES);
    for r in 0..probs.rows() {
        let sum: f64 = probs.row(r).iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{name} row {r} sums to {sum}");
    }
    let ef = rel_max_err(out.features.data(), &want_f);
    let ep = rel_max_err(probs.data(), &want_p);
    println!("{name}: features rel max err {ef:.3e}, probs rel max err {ep:.3e}");
    assert!(ef <= FEATURE_REL_TOL, "{name}: features rel err {ef:e}");
    assert!(ep <= PROB_REL_TOL, "{name}: probs rel err {ep:e}");
}

#[test]
fn matches_pytorch_fid_on_formula_weights() {
    let net = network();
    assert_eq!(net.id(), "inception-v3-fid/pool3");
    assert_eq!(net.feature_dim(), 2048);
    assert_eq!(net.num_classes(), Some(1008));
    // 2 x 3 x 32 x 32 (upsampling), 1 x 1 x 40 x 40 (grey), 1 x 3 x 320 x 304 (downsampling).
    for name in ["rgb32", "grey40", "rgb320x304"] {
        check_case(net, name);
    }
}

/// Internal batching does not change the result.
#[test]
fn batch_size_one_matches_whole_batch() {
    let images = case_images("rgb32");
    let whole = network().extract(&images).unwrap();
    let one = network()
        .clone()
        .with_batch_size(1)
        .extract(&images)
        .unwrap();
    let e = rel_max_err(one.features.data(), whole.features.data());
    assert!(e <= BATCHING_REL_TOL, "features differ by {e:e}");
    let e = rel_max_err(one.probs.unwrap().data(), whole.probs.unwrap().data());
    assert!(e <= BATCHING_REL_TOL, "probs differ by {e:e}");
}

/// A grey image gives the features of the RGB image with three equal channels.
#[test]
fn grey_equals_repeated_rgb() {
    let grey = case_images("grey40");
    let rgb = grey.repeat((1, 3, 1, 1)).unwrap();
    let a = network().extract(&grey).unwrap().features;
    let b = network().extract(&rgb).unwrap().features;
    assert!(rel_max_err(a.data(), b.data()) <= BATCHING_REL_TOL);
}

#[test]
fn missing_file_names_expected_file_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let err = InceptionV3::load(dir.path().join(WEIGHTS_FILE), &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Checkpoint(_)), "{msg}");
    for needle in [WEIGHTS_FILE, WEIGHTS_URL, "GENLAB_DATA", "cannot download"] {
        assert!(msg.contains(needle), "`{needle}` missing from: {msg}");
    }
}

#[test]
fn missing_key_is_named() {
    let key = "Mixed_6c.branch7x7dbl_3.bn.running_var";
    let mut map = formula_weights().clone();
    assert!(map.remove(key).is_some());
    let dir = tempfile::tempdir().unwrap();
    let path = save_safetensors(&map, dir.path(), "missing.safetensors");
    let err = InceptionV3::load(&path, &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Checkpoint(_)), "{err}");
    assert!(err.to_string().contains(key), "{err}");
}

#[test]
fn wrong_shape_is_named() {
    let key = "Mixed_7b.branch3x3_2a.conv.weight";
    let mut map = formula_weights().clone();
    // (1, 3) kernel stored as (3, 1).
    map.insert(
        key.into(),
        Tensor::zeros((384, 384, 3, 1), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = InceptionV3::from_tensors(map, "test", &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(key) && msg.contains("[384, 384, 1, 3]"),
        "{msg}"
    );
}

/// torchvision's ImageNet Inception has the same block keys but a 1000-way fc and AuxLogits:
/// refused, not silently used for FID.
#[test]
fn torchvision_weights_are_refused() {
    let mut map = formula_weights().clone();
    map.insert(
        "fc.weight".into(),
        Tensor::zeros((1000, 2048), DType::F32, &Device::Cpu).unwrap(),
    );
    let msg = InceptionV3::from_tensors(map, "test", &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("torchvision"), "{msg}");

    let mut map = formula_weights().clone();
    map.insert(
        "AuxLogits.fc.weight".into(),
        Tensor::zeros((1008, 768), DType::F32, &Device::Cpu).unwrap(),
    );
    let msg = InceptionV3::from_tensors(map, "test", &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("unexpected") && msg.contains("AuxLogits.fc.weight"),
        "{msg}"
    );
}

/// Without `fc.*` the network still gives features, and no probabilities.
#[test]
fn classifier_is_optional() {
    let mut map = formula_weights().clone();
    map.remove("fc.weight");
    map.remove("fc.bias");
    let net = InceptionV3::from_tensors(map, "test", &Device::Cpu).unwrap();
    assert_eq!(net.num_classes(), None);
    assert!(!net.has_classifier());
}

#[test]
fn bad_images_are_refused() {
    let net = network();
    let minus_one_to_one = case_images("rgb32").affine(2.0, -1.0).unwrap();
    let err = net.extract(&minus_one_to_one).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    let four_channels = Tensor::zeros((1, 4, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        net.extract(&four_channels),
        Err(Error::InvalidInput(_))
    ));
    let three_dims = Tensor::zeros((3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        net.extract(&three_dims),
        Err(Error::InvalidInput(_))
    ));
}

/// The .pth reader: a small zip-format torch file holding only Conv2d_1a_3x3 (written by the
/// script) is parsed, and the error names the first key it lacks.
#[test]
fn small_pth_is_read_and_first_missing_key_named() {
    let err = InceptionV3::load(fixture_dir().join("conv1a_only.pth"), &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("missing key `Conv2d_2a_3x3.conv.weight`"),
        "{msg}"
    );
}

/// A file that is neither zip-format torch nor safetensors gets a clear error.
#[test]
fn legacy_or_garbage_pth_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(WEIGHTS_FILE);
    std::fs::write(&path, b"\x80\x02not a zip").unwrap();
    let msg = InceptionV3::load(&path, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a zip-format PyTorch file"), "{msg}");
    assert!(msg.contains("not a legacy one either"), "{msg}");
}

/// The full formula weights as a .pth (`inception_fixture.py --pth PATH`) give the fixture.
#[test]
#[ignore = "needs GENLAB_INCEPTION_PTH = the 95 MB .pth written by inception_fixture.py --pth"]
fn full_pth_matches_pytorch_fid() {
    let path = std::env::var_os("GENLAB_INCEPTION_PTH").expect("set GENLAB_INCEPTION_PTH");
    let net = InceptionV3::load(PathBuf::from(path), &Device::Cpu).unwrap();
    for name in ["rgb32", "grey40"] {
        check_case(&net, name);
    }
}
