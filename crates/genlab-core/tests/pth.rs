//! genlab's own `.pth` reader against files written by torch itself
//! (`scripts/reference/pth_fixture.py`): a tiny dict of every dtype and a few views in both
//! layouts, and the real TAEF2 weights (zip format, float16) when the shared copy is there.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use genlab_core::pth::{
    detect_format, load_pth, parse_pth, read_legacy_pth, read_pth, read_zip_pth, Dtype, PthFormat,
    PthTensor,
};
use serde_json::Value;

/// TAEF2: |sum of our f32 values (in f64) - torch's f64 sum| relative to the sum of
/// magnitudes; both add the same exactly representable values, in different orders.
const SUM_RTOL: f64 = 1e-9;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pth")
        .join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F32 => "float32",
        Dtype::F16 => "float16",
        Dtype::BF16 => "bfloat16",
        Dtype::F64 => "float64",
        Dtype::I64 => "int64",
        Dtype::I32 => "int32",
        Dtype::I16 => "int16",
        Dtype::I8 => "int8",
        Dtype::U8 => "uint8",
        Dtype::BOOL => "bool",
        other => panic!("unexpected dtype {other:?}"),
    }
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

/// Every tensor of `got` is the one torch described in tiny.json: same order, name, dtype,
/// shape and values (all exactly representable in f32).
fn check_tiny(got: &[PthTensor]) {
    let want = json("tiny.json");
    let want = want["tensors"].as_array().unwrap();
    let names: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
    let want_names: Vec<&str> = want.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, want_names);
    for (t, w) in got.iter().zip(want) {
        assert_eq!(
            dtype_name(t.dtype),
            w["dtype"].as_str().unwrap(),
            "{}",
            t.name
        );
        assert_eq!(t.shape, usizes(&w["shape"]), "{}", t.name);
        let values: Vec<f32> = w["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(t.to_f32().unwrap(), values, "{}", t.name);
    }
}

#[test]
fn tiny_zip_file_matches_torch() {
    let path = fixture("tiny_zip.pth");
    assert_eq!(
        detect_format(&std::fs::read(&path).unwrap()),
        PthFormat::Zip
    );
    check_tiny(&read_zip_pth(&path).unwrap());
    check_tiny(&read_pth(&path).unwrap());
}

#[test]
fn tiny_legacy_file_matches_torch() {
    let path = fixture("tiny_legacy.pth");
    check_tiny(&read_legacy_pth(&path).unwrap());
    assert_eq!(
        read_pth(&path).unwrap(),
        read_zip_pth(&fixture("tiny_zip.pth")).unwrap(),
        "both layouts give the same tensors"
    );
}

#[test]
fn each_layout_reader_refuses_the_other() {
    let zip = std::fs::read(fixture("tiny_zip.pth")).unwrap();
    let legacy = std::fs::read(fixture("tiny_legacy.pth")).unwrap();
    let e = genlab_core::pth::parse_legacy_pth(&zip)
        .unwrap_err()
        .to_string();
    assert!(e.contains("zip-format"), "{e}");
    let e = genlab_core::pth::parse_zip_pth(&legacy)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a readable zip archive"), "{e}");
    assert!(parse_pth(&legacy).is_ok() && parse_pth(&zip).is_ok());
}

#[test]
fn missing_file_is_named() {
    let e = read_pth(Path::new("/nonexistent/w.pth"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/w.pth") && e.contains("does not exist"),
        "{e}"
    );
}

/// The shared TAEF2 weights, if this checkout has them (`GENLAB_TAEF2_DIR` overrides).
fn taef2_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GENLAB_TAEF2_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/weights/taef2")
        });
    dir.join("taef2_encoder.pth").is_file().then_some(dir)
}

#[test]
fn real_taef2_files_match_torch() {
    let Some(dir) = taef2_dir() else {
        eprintln!("skipped: no TAEF2 weights in ../shared/weights/taef2 (or GENLAB_TAEF2_DIR)");
        return;
    };
    let reference = json("taef2.json");
    let files = reference["files"].as_object().unwrap();
    assert_eq!(files.len(), 2);
    for (file, want) in files {
        let path = dir.join(file);
        let got = read_zip_pth(&path).unwrap();
        let keys: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
        let want_keys: Vec<&str> = want["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, want_keys, "{file}");
        assert_eq!(got.len() as u64, want["count"].as_u64().unwrap());
        assert!(
            got.iter().all(|t| t.dtype == Dtype::F16),
            "{file}: all float16"
        );
        let checked = want["tensors"].as_object().unwrap();
        assert!(checked.len() >= 4);
        let tensors = load_pth(&path, &Device::Cpu).unwrap();
        for (key, w) in checked {
            let t = got.iter().find(|t| &t.name == key).unwrap();
            assert_eq!(dtype_name(t.dtype), w["dtype"].as_str().unwrap());
            assert_eq!(t.shape, usizes(&w["shape"]), "{file} {key}");
            let values = t.to_f32().unwrap();
            let first: Vec<f32> = w["first"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(values[..first.len()], first[..], "{file} {key}");
            let sum: f64 = values.iter().map(|&v| v as f64).sum();
            let scale: f64 = values
                .iter()
                .map(|&v| (v as f64).abs())
                .sum::<f64>()
                .max(1.0);
            let want_sum = w["sum"].as_f64().unwrap();
            assert!(
                (sum - want_sum).abs() <= SUM_RTOL * scale,
                "{file} {key}: sum {sum} vs torch {want_sum}"
            );
            // The candle tensor is float16 and converts to the same f32 values.
            let c = &tensors[key];
            assert_eq!(c.dtype(), DType::F16);
            let c32 = c
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(c32, values, "{file} {key}");
        }
    }
}
