//! `genlab eval` with a transformers CLIPModel folder: `--features hf-clip:DIR` (image
//! embeddings and zero-shot digit probabilities) and `--metrics zero-shot --ckpt
//! hf-clip:DIR`, on the tiny random CLIP of genlab-models' parity fixture (so the numbers
//! are checks of the wiring, not of CLIP's accuracy).

use std::path::{Path, PathBuf};

mod common;
use common::{fails_with, genlab, json, ok};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../genlab-models/tests/fixtures/hf_clip")
}

/// A CLIPModel folder with its tokenizer in `tokenizer/`, as users have them.
fn model_dir(root: &Path) -> PathBuf {
    let dir = root.join("clip");
    std::fs::create_dir_all(dir.join("tokenizer")).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join("clip_quick").join(f), dir.join(f)).unwrap();
    }
    for f in [
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(
            fixture().join("tokenizer").join(f),
            dir.join("tokenizer").join(f),
        )
        .unwrap();
    }
    dir
}

#[test]
fn hf_clip_features_and_zero_shot() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let spec = format!("hf-clip:{}", model_dir(d).display());
    let e = d.join("e.json");
    let out = ok(&genlab(
        &[
            "eval",
            "--real",
            "digits",
            "--fake",
            "digits",
            "--n",
            "100",
            "--features",
            &spec,
            "--metrics",
            "fid,is",
            "--json",
            e.to_str().unwrap(),
        ],
        d,
    ));
    let j = json(&e);
    let m = j["metrics"].as_array().unwrap();
    // The same images on both sides: FID ~ 0; zero-shot probabilities give an IS >= 1.
    assert!(m[0]["value"].as_f64().unwrap().abs() < 1e-3, "{out}");
    assert!(m[1]["value"].as_f64().unwrap() >= 1.0, "{out}");
    assert!(j["features"].as_str().unwrap().contains("hf-clip"), "{j}");

    let z = d.join("z.json");
    let out = ok(&genlab(
        &[
            "eval",
            "--metrics",
            "zero-shot",
            "--ckpt",
            &spec,
            "--data",
            "digits",
            "--n",
            "60",
            "--json",
            z.to_str().unwrap(),
        ],
        d,
    ));
    assert!(
        out.contains("zero-shot accuracy") && out.contains("on 60 examples"),
        "{out}"
    );
    let zj = json(&z);
    let acc = zj["zero_shot"]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{zj}");

    fails_with(
        &genlab(
            &[
                "eval",
                "--real",
                "digits",
                "--fake",
                "digits",
                "--features",
                &format!("hf-clip:{}", d.join("nowhere").display()),
                "--metrics",
                "fid",
            ],
            d,
        ),
        &["config.json is missing"],
    );
    fails_with(
        &genlab(&["eval", "--metrics", "zero-shot", "--ckpt", &spec], d),
        &["needs --data"],
    );

    // The CLIP score with a CLIPModel: real digits (resized to its input, with a note)
    // against their attribute captions and shuffled ones.
    let c = d.join("c.json");
    let o = genlab(
        &[
            "eval",
            "--metrics",
            "clip-score",
            "--ckpt",
            &spec,
            "--real",
            "digits",
            "--n",
            "30",
            "--json",
            c.to_str().unwrap(),
        ],
        d,
    );
    ok(&o);
    assert!(
        common::stderr(&o).contains("bicubic-resized"),
        "{}",
        common::stderr(&o)
    );
    let cj = json(&c);
    for side in ["own", "shuffled"] {
        let s = &cj["clip_score"]["real"][side];
        assert_eq!(s["n"].as_u64(), Some(30), "{cj}");
        assert!((0.0..=100.0).contains(&s["mean"].as_f64().unwrap()), "{cj}");
    }
    fails_with(
        &genlab(&["eval", "--metrics", "retrieval", "--ckpt", &spec], d),
        &["zero-shot and clip-score metrics only"],
    );
}
