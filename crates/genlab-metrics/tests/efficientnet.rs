//! EfficientNet-Lite0 feature extractor and the legacy torch pickle converter against
//! fixtures made by `scripts/reference/efficientnet_fixture.py` (PyTorch 2.15, the PyPI
//! `efficientnet_lite_pytorch` 0.1.0 model code).
//!
//! - `tiny_legacy_pth_converts_exactly`: a legacy-format file written by torch itself;
//! - `formula_weights_match_pytorch`: the architecture, on deterministic formula weights
//!   (no download needed);
//! - `real_weights_match_pytorch` (ignored): the real ImageNet weights, converted by us.
//!   Run with `cargo test --release -p genlab-metrics --test efficientnet -- --ignored`
//!   after `genlab data fetch efficientnet-lite0`, or with
//!   `GENLAB_EFFNET_PTH=/path/to/efficientnet-lite0-57934424.pth`, which first converts
//!   that file into the default weights path (what the fetch command does).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use genlab_core::io::read_npy;
use genlab_metrics::features::efficientnet::{
    default_weights_path, import_efficientnet_lite0, EfficientNetLite0, Normalization,
    EFFICIENTNET_LITE0_PTH_SHA256,
};
use genlab_metrics::features::torch_legacy::{
    import_legacy_pth, read_legacy_pth, sha256_file, PthTensor,
};
use genlab_metrics::features::FeatureExtractor;
use safetensors::Dtype;

/// Formula weights: max |feature - PyTorch| (features are ReLU6 means, O(1)).
const FORMULA_FEATURE_ATOL: f64 = 1e-4;
/// Formula weights: max |probability - PyTorch|.
const FORMULA_PROB_ATOL: f64 = 3e-5;
/// Real weights: max |feature - PyTorch|.
const REAL_FEATURE_ATOL: f64 = 1e-4;
/// Real weights: max |probability - PyTorch|.
const REAL_PROB_ATOL: f64 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/efficientnet")
        .join(name)
}

// --- the formula of scripts/reference/efficientnet_fixture.py -------------------------

use common::uniform;

fn formula_value(key: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let s: Vec<f64> = uniform(key, n).iter().map(|u| 2.0 * u - 1.0).collect();
    let leaf = key.rsplit('.').nth(1).unwrap_or("");
    let bn = leaf.contains("_bn");
    let f: Box<dyn Fn(f64) -> f64> = if shape.len() == 4 && key.ends_with(".weight") {
        let fan_in: usize = shape[1..].iter().product();
        let a = (6.0 / fan_in as f64).sqrt();
        Box::new(move |s| s * a)
    } else if bn && key.ends_with(".weight") {
        Box::new(|s| 1.0 + 0.1 * s)
    } else if bn && (key.ends_with(".bias") || key.ends_with(".running_mean")) {
        Box::new(|s| 0.1 * s)
    } else if bn && key.ends_with(".running_var") {
        Box::new(|s| 1.0 + 0.1 * s)
    } else if key == "_fc.weight" {
        let a = (75.0 / shape[1] as f64).sqrt();
        Box::new(move |s| s * a)
    } else if key == "_fc.bias" {
        Box::new(|s| 0.1 * s)
    } else {
        panic!("no formula for {key}")
    };
    s.into_iter().map(|v| f(v) as f32).collect()
}

fn formula_weights() -> HashMap<String, Tensor> {
    EfficientNetLite0::param_shapes()
        .into_iter()
        .map(|(k, shape)| {
            let v = formula_value(&k, &shape);
            let t = Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap();
            (k, t)
        })
        .collect()
}

/// The fixture's input batches, in order (5 rows in all).
fn cases() -> Vec<(&'static str, Tensor)> {
    let mut out = Vec::new();
    for (name, shape) in [
        ("rgb224", [2usize, 3, 224, 224]),
        ("grey64", [1, 1, 64, 64]),
        ("rgb256x288", [1, 3, 256, 288]),
    ] {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = uniform(&format!("image:{name}"), n)
            .into_iter()
            .map(|u| u as f32)
            .collect();
        out.push((name, Tensor::from_vec(v, &shape, &Device::Cpu).unwrap()));
    }
    let c = read_npy(&fixture("chelsea64.npy")).unwrap();
    assert_eq!(c.shape, vec![1, 3, 64, 64]);
    out.push((
        "chelsea64",
        Tensor::from_vec(c.data, (1, 3, 64, 64), &Device::Cpu).unwrap(),
    ));
    out
}

/// Features (5 x 1280) and probabilities (5 x 1000) of all cases, row-major.
fn run(model: &EfficientNetLite0) -> (Vec<f64>, Vec<f64>) {
    let (mut f, mut p) = (Vec::new(), Vec::new());
    for (_, x) in cases() {
        let e = model.extract(&x).unwrap();
        f.extend_from_slice(e.features.data());
        p.extend_from_slice(e.probs.unwrap().data());
    }
    (f, p)
}

fn max_abs_diff(name: &str, got: &[f64], npy: &str) -> f64 {
    let want = read_npy(&fixture(npy)).unwrap();
    assert_eq!(got.len(), want.data.len(), "{name}: length");
    let cols = want.shape[1];
    let rows: Vec<f64> = got
        .chunks(cols)
        .zip(want.data.chunks(cols))
        .map(|(g, w)| {
            g.iter()
                .zip(w)
                .map(|(a, b)| (a - *b as f64).abs())
                .fold(0.0, f64::max)
        })
        .collect();
    let d = rows.iter().copied().fold(0.0, f64::max);
    let per_row: Vec<String> = rows.iter().map(|r| format!("{r:.1e}")).collect();
    println!(
        "{name}: max |rust - pytorch| = {d:.3e} (rows: {})",
        per_row.join(" ")
    );
    d
}

fn top5(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    idx.truncate(5);
    idx
}

// --- tests ---------------------------------------------------------------------------

#[test]
fn param_shapes_match_the_reference_state_dict() {
    let text = std::fs::read_to_string(fixture("param_shapes.json")).unwrap();
    let want: Vec<(String, Vec<usize>)> = serde_json::from_str(&text).unwrap();
    assert_eq!(EfficientNetLite0::param_shapes(), want);
}

#[test]
fn formula_weights_match_pytorch() {
    let model = EfficientNetLite0::from_tensors(&formula_weights(), "formula weights").unwrap();
    assert_eq!(model.id(), "efficientnet-lite0/pool");
    assert_eq!(model.feature_dim(), 1280);
    assert_eq!(model.num_classes(), Some(1000));
    assert!(model.preprocessing().contains("(255 x - 127) / 128"));
    let (f, p) = run(&model);
    assert!(max_abs_diff("formula features", &f, "formula_features.npy") < FORMULA_FEATURE_ATOL);
    assert!(max_abs_diff("formula probs", &p, "formula_probs.npy") < FORMULA_PROB_ATOL);

    let model = model.with_normalization(Normalization::ImageNet);
    assert!(model.preprocessing().contains("0.485"));
    let (f, _) = run(&model);
    let d = max_abs_diff(
        "formula features, imagenet normalisation",
        &f,
        "formula_features_imagenet.npy",
    );
    assert!(d < FORMULA_FEATURE_ATOL);
}

#[test]
#[ignore = "needs efficientnet-lite0 weights: genlab data fetch efficientnet-lite0"]
fn real_weights_match_pytorch() {
    let path = default_weights_path();
    if let Some(pth) = std::env::var_os("GENLAB_EFFNET_PTH") {
        let s = import_efficientnet_lite0(Path::new(&pth), &path).unwrap();
        println!(
            "converted {} -> {} ({s:?})",
            pth.to_string_lossy(),
            path.display()
        );
    }
    let model = EfficientNetLite0::load(&path).unwrap();
    let (f, p) = run(&model);
    let df = max_abs_diff("real features", &f, "real_features.npy");
    let dp = max_abs_diff("real probs", &p, "real_probs.npy");
    let want = read_npy(&fixture("real_probs.npy")).unwrap();
    for (row, (got, want)) in p.chunks(1000).zip(want.data.chunks(1000)).enumerate() {
        let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        assert_eq!(top5(got), top5(&want), "row {row}: top-5 classes");
    }
    // chelsea64 is a cat: 285 = "Egyptian cat".
    assert_eq!(top5(&p[4000..5000])[0], 285);
    assert!(df < REAL_FEATURE_ATOL, "features {df}");
    assert!(dp < REAL_PROB_ATOL, "probs {dp}");
}

#[test]
#[ignore = "timing, run by hand: RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1"]
fn forward_time_64_images() {
    let model = EfficientNetLite0::from_tensors(&formula_weights(), "formula weights").unwrap();
    let v: Vec<f32> = uniform("image:bench", 64 * 3 * 32 * 32)
        .into_iter()
        .map(|u| u as f32)
        .collect();
    let x = Tensor::from_vec(v, (64, 3, 32, 32), &Device::Cpu).unwrap();
    model.extract(&x.narrow(0, 0, 2).unwrap()).unwrap(); // warm-up
    let t = std::time::Instant::now();
    let e = model.extract(&x).unwrap();
    println!(
        "64 images (32x32 -> 224x224), {} thread(s): {:.2} s",
        candle_core::utils::get_num_threads(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(e.features.rows(), 64);
}

fn f32s(t: &PthTensor) -> Vec<f32> {
    assert_eq!(t.dtype, Dtype::F32, "{}", t.name);
    t.data
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn tiny_legacy_pth_converts_exactly() {
    let pth = fixture("tiny_legacy.pth");
    let ts = read_legacy_pth(&pth).unwrap();
    let names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["a", "a_t", "a_sub", "idx", "scalar", "half", "bf16", "flags", "empty", "nested.w"]
    );
    let by: HashMap<&str, &PthTensor> = ts.iter().map(|t| (t.name.as_str(), t)).collect();
    let a: Vec<f32> = (0..12).map(|i| i as f32 / 8.0).collect();
    assert_eq!(by["a"].shape, [3, 4]);
    assert_eq!(f32s(by["a"]), a);
    // a.t(): same storage, strides (1, 4)
    assert_eq!(by["a_t"].shape, [4, 3]);
    let at: Vec<f32> = (0..12).map(|i| a[(i % 3) * 4 + i / 3]).collect();
    assert_eq!(f32s(by["a_t"]), at);
    // a[1:, 1:3]: offset 5
    assert_eq!(by["a_sub"].shape, [2, 2]);
    assert_eq!(f32s(by["a_sub"]), [a[5], a[6], a[9], a[10]]);
    let idx = by["idx"];
    assert_eq!(
        (idx.dtype, idx.shape.as_slice()),
        (Dtype::I64, &[4usize][..])
    );
    let iv: Vec<i64> = idx
        .data
        .chunks(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(iv, [-2, 0, 7, 1 << 40]);
    let sc = by["scalar"];
    assert_eq!((sc.dtype, sc.shape.len()), (Dtype::F64, 0));
    assert_eq!(sc.data, 2.5f64.to_le_bytes());
    // f16 0.5, -1, 65504; bf16 1.5, -3 (raw bits)
    let bits = |t: &PthTensor| -> Vec<u16> {
        t.data
            .chunks(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect()
    };
    assert_eq!(by["half"].dtype, Dtype::F16);
    assert_eq!(bits(by["half"]), [0x3800, 0xBC00, 0x7BFF]);
    assert_eq!(by["bf16"].dtype, Dtype::BF16);
    assert_eq!(bits(by["bf16"]), [0x3FC0, 0xC040]);
    assert_eq!(by["flags"].dtype, Dtype::BOOL);
    assert_eq!(by["flags"].data, [1, 0, 1]);
    assert_eq!(by["empty"].shape, [0, 3]);
    assert!(by["empty"].data.is_empty());
    assert_eq!(by["nested.w"].shape, [2, 1]);
    assert_eq!(f32s(by["nested.w"]), [3.0, 3.0]);

    // Through safetensors: the same bytes, dtypes and shapes, plus the source checksum.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.safetensors");
    let summary = import_legacy_pth(&pth, &out).unwrap();
    assert_eq!(summary.tensors, 10);
    assert_eq!(summary.source_sha256, sha256_file(&pth).unwrap());
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 10);
    for t in &ts {
        let v = st.tensor(&t.name).unwrap();
        assert_eq!(v.dtype(), t.dtype, "{}", t.name);
        assert_eq!(v.shape(), t.shape.as_slice(), "{}", t.name);
        assert_eq!(v.data(), t.data.as_slice(), "{}", t.name);
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["source_sha256"], summary.source_sha256);
    assert_eq!(meta["source_file"], "tiny_legacy.pth");
}

#[test]
fn wrong_checksum_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.safetensors");
    let pth = fixture("tiny_legacy.pth");
    let err = import_efficientnet_lite0(&pth, &out)
        .unwrap_err()
        .to_string();
    let got = sha256_file(&pth).unwrap();
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(err.contains(EFFICIENTNET_LITE0_PTH_SHA256), "{err}");
    assert!(err.contains(&got), "{err}");
    assert!(err.contains("tiny_legacy.pth"), "{err}");
    assert!(!out.exists());
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let nope = dir.path().join("nope.pth");
    let err = import_efficientnet_lite0(&nope, &dir.path().join("w.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope.pth") && err.contains("does not exist"),
        "{err}"
    );

    let missing = dir.path().join("efficientnet-lite0.safetensors");
    let err = EfficientNetLite0::load(&missing).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(
        err.contains("genlab data fetch efficientnet-lite0"),
        "{err}"
    );

    assert!(default_weights_path().ends_with("weights/efficientnet-lite0.safetensors"));
}

#[test]
fn corrupt_legacy_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("tiny_legacy.pth")).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let err = read_legacy_pth(&cut).unwrap_err().to_string();
    assert!(
        err.contains("cut.pth") && err.contains("truncated"),
        "{err}"
    );
    let long = dir.path().join("long.pth");
    std::fs::write(&long, [bytes.as_slice(), b"xx"].concat()).unwrap();
    let err = read_legacy_pth(&long).unwrap_err().to_string();
    assert!(err.contains("unexpected bytes"), "{err}");
}

#[test]
fn bad_images_are_input_errors() {
    let model = EfficientNetLite0::from_tensors(&formula_weights(), "formula weights").unwrap();
    let four = Tensor::zeros((1, 4, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = model.extract(&four).unwrap_err().to_string();
    assert!(err.contains("1 (grey) or 3 (RGB) channels"), "{err}");
    let flat = Tensor::zeros((3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(model.extract(&flat).is_err());
    // Weights with a wrong shape are named.
    let mut w = formula_weights();
    w.insert(
        "_fc.bias".into(),
        Tensor::zeros(10, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let err = EfficientNetLite0::from_tensors(&w, "bad")
        .unwrap_err()
        .to_string();
    assert!(err.contains("_fc.bias") && err.contains("[1000]"), "{err}");
}
