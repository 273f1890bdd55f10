//! CLIP in the transformers layout against transformers 5.25.0 itself: tiny random
//! CLIPModels (float32 quick_gelu; float16 gelu with the legacy `eos_token_id = 2`), a
//! Stable Diffusion style `text_encoder/` (float16, keys under `text_model.`) and two
//! tokenizer folders (SD 1.x pad `<|endoftext|>`, SD 2.x pad `!`), all written by
//! `scripts/reference/hf_clip_fixture.py` into `tests/fixtures/hf_clip/`.
//!
//! - token ids equal `CLIPTokenizer(text, padding="max_length", truncation=True,
//!   max_length=77)` for every prompt (truncation, unicode, a literal special token);
//! - last_hidden_state, pooled output, the hidden state after layer 1, text and image
//!   embeddings and logits_per_image equal transformers' within [`TOL`];
//! - a missing key, a wrong shape and a missing tokenizer file give errors that name them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use genlab_data::tokenize::HfClipTokenizer;
use genlab_models::pretrained::hf_clip::{
    HfClip, HfClipConfig, HfClipText, HfClipTextConfig, HfClipVision,
};
use genlab_models::pretrained::TensorMap;

/// f32 forward passes of two layers against PyTorch's f32: agreement to a few ulps of the
/// activations' scale (they are O(1)); logits are scaled by exp(2.6592) ≈ 14.3.
const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_clip")
}

fn reference() -> HashMap<String, Tensor> {
    genlab_core::io::load_safetensors(&fixtures().join("reference.safetensors"), &Device::Cpu)
        .unwrap()
}

fn ref_json() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    let d = max_diff(got, want);
    // Shown with --nocapture: the numbers docs/pretrained.md quotes.
    eprintln!("{what}: max |diff| {d:.2e}");
    assert!(d < TOL, "{what}: max |diff| {d} (tolerance {TOL})");
}

/// transformers' CLIPOutput holds the embeddings unit-normalised.
fn unit(x: Tensor) -> Tensor {
    x.broadcast_div(&x.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap())
        .unwrap()
}

fn ids_tensor(rows: &[Vec<u32>]) -> Tensor {
    let l = rows[0].len();
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), l), &Device::Cpu).unwrap()
}

fn json_ids(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

#[test]
fn tokenizers_match_transformers_id_for_id() {
    let r = ref_json();
    let prompts: Vec<&str> = r["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for name in ["tokenizer", "tokenizer_sd2"] {
        let tok = HfClipTokenizer::load_dir(&fixtures().join(name)).unwrap();
        assert_eq!(tok.model_max_length(), 77);
        let want = json_ids(&r["tokens"][name]);
        for (p, w) in prompts.iter().zip(&want) {
            assert_eq!(&tok.encode_padded(p), w, "{name}: {p:?}");
        }
    }
    // The long prompt is cut at 75 text tokens.
    let tok = HfClipTokenizer::load_dir(&fixtures().join("tokenizer")).unwrap();
    assert!(tok.truncates(prompts[prompts.len() - 1]));
    assert!(!tok.truncates(prompts[0]));
}

fn check_text(name: &str, model: &HfClipText, refs: &HashMap<String, Tensor>, ids: &Tensor) {
    let (last, pooled) = model.forward(ids).unwrap();
    assert_close(
        &format!("{name} last_hidden_state"),
        &last,
        &refs[&format!("{name}.last_hidden_state")],
    );
    assert_close(
        &format!("{name} pooler_output"),
        &pooled,
        &refs[&format!("{name}.pooler_output")],
    );
    let h1 = model.hidden_state(ids, 1).unwrap();
    assert_close(
        &format!("{name} hidden_1"),
        &h1,
        &refs[&format!("{name}.hidden_1")],
    );
    let raw = ids_tensor(&json_ids(&ref_json()["raw_ids"]));
    let (last, pooled) = model.forward(&raw).unwrap();
    assert_close(
        &format!("{name} raw last_hidden_state"),
        &last,
        &refs[&format!("{name}.raw_last_hidden_state")],
    );
    assert_close(
        &format!("{name} raw pooler_output"),
        &pooled,
        &refs[&format!("{name}.raw_pooler_output")],
    );
}

fn sd1_ids() -> Tensor {
    let rows = json_ids(&ref_json()["tokens"]["tokenizer"]);
    ids_tensor(&rows[..3])
}

#[test]
fn clip_models_match_transformers() {
    let refs = reference();
    let ids = sd1_ids();
    let images = &refs["images"];
    for name in ["clip_quick", "clip_gelu_f16"] {
        let dir = fixtures().join(name);
        let clip = HfClip::load_dir(&dir, &Device::Cpu).unwrap();
        check_text(name, &clip.text, &refs, &ids);
        assert_close(
            &format!("{name} text_embeds"),
            &unit(clip.text.text_embeds(&ids).unwrap()),
            &refs[&format!("{name}.text_embeds")],
        );
        assert_close(
            &format!("{name} image pooler_output"),
            &clip.vision.forward(images).unwrap(),
            &refs[&format!("{name}.image_pooler_output")],
        );
        assert_close(
            &format!("{name} image_embeds"),
            &unit(clip.vision.image_embeds(images).unwrap()),
            &refs[&format!("{name}.image_embeds")],
        );
        assert_close(
            &format!("{name} logits_per_image"),
            &clip.logits_per_image(images, &ids).unwrap(),
            &refs[&format!("{name}.logits_per_image")],
        );
        // Either tower alone from the same CLIPModel folder.
        let text = HfClipText::load_dir(&dir, &Device::Cpu).unwrap();
        assert!(text.has_projection());
        check_text(name, &text, &refs, &ids);
        let vision = HfClipVision::load_dir(&dir, &Device::Cpu).unwrap();
        assert_close(
            &format!("{name} vision alone"),
            &unit(vision.image_embeds(images).unwrap()),
            &refs[&format!("{name}.image_embeds")],
        );
    }
}

#[test]
fn sd_text_encoder_folder_matches_transformers() {
    let refs = reference();
    let te = HfClipText::load_dir(&fixtures().join("text_encoder"), &Device::Cpu).unwrap();
    assert!(!te.has_projection());
    check_text("text_encoder", &te, &refs, &sd1_ids());
    let e = te.text_embeds(&sd1_ids()).unwrap_err().to_string();
    assert!(e.contains("no text_projection"), "{e}");
}

/// The same weights as pytorch_model.bin (PyTorch zip pickle, float16, with the int64
/// position_ids buffer, which is ignored) load the same model.
#[test]
fn pytorch_model_bin_loads() {
    let te = HfClipText::load_dir(&fixtures().join("text_encoder_bin"), &Device::Cpu).unwrap();
    let (last, _) = te.forward(&sd1_ids()).unwrap();
    assert_close(
        "pytorch_model.bin",
        &last,
        &reference()["text_encoder.last_hidden_state"],
    );
}

/// The same weights under transformers 5's bare names load the same model.
#[test]
fn bare_transformers5_names_load() {
    let dir = fixtures().join("text_encoder");
    let cfg = HfClipTextConfig::from_file(&dir.join("config.json")).unwrap();
    let map = TensorMap::load(&dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let bare = map
        .rename(|k| Some(k.strip_prefix("text_model.").unwrap_or(k).to_string()))
        .unwrap();
    let te = HfClipText::from_map(&cfg, &bare, &Device::Cpu).unwrap();
    let (last, _) = te.forward(&sd1_ids()).unwrap();
    assert_close(
        "bare names",
        &last,
        &reference()["text_encoder.last_hidden_state"],
    );
}

#[test]
fn missing_key_wrong_shape_and_missing_files_are_named() {
    let dir = fixtures().join("clip_quick");
    let cfg = HfClipConfig::from_file(&dir.join("config.json")).unwrap();
    let map = TensorMap::load(&dir.join("model.safetensors"), &Device::Cpu).unwrap();

    let mut missing = map.clone();
    missing.remove("text_model.final_layer_norm.weight");
    missing.remove("vision_model.encoder.layers.1.self_attn.k_proj.weight");
    let e = HfClip::from_map(&cfg, &missing, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing keys (text_model.final_layer_norm.weight [32])"),
        "{e}"
    );

    let e = HfClipVision::from_map(
        &cfg.vision_config,
        &missing
            .rename(|k| {
                (k.starts_with("vision_model.") || k == "visual_projection.weight")
                    .then(|| k.to_string())
            })
            .unwrap(),
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("vision_model.encoder.layers.1.self_attn.{q,k,v}_proj.weight [96, 32]"),
        "{e}"
    );
    assert!(
        e.contains("vision_model.encoder.layers.1.self_attn.q_proj.weight"),
        "{e}"
    );

    let mut wrong = map.clone();
    let t = Tensor::zeros((16, 31), DType::F32, &Device::Cpu).unwrap();
    wrong.insert("text_projection.weight", t);
    let e = HfClip::from_map(&cfg, &wrong, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shape mismatches (text_projection.weight: file [16, 31], network [16, 32])"),
        "{e}"
    );

    let mut extra = map.clone();
    extra.insert(
        "text_model.encoder.layers.2.mlp.fc1.weight",
        Tensor::zeros((40, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    let e = HfClip::from_map(&cfg, &extra, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unexpected keys (text_model.encoder.layers.2.mlp.fc1.weight [40, 32])"),
        "{e}"
    );

    // Tokenizer and model folders with a file missing.
    let tmp = std::env::temp_dir().join(format!("genlab-hf-clip-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(
        fixtures().join("tokenizer/vocab.json"),
        tmp.join("vocab.json"),
    )
    .unwrap();
    let e = HfClipTokenizer::load_dir(&tmp).err().unwrap().to_string();
    assert!(e.contains("merges.txt is missing"), "{e}");
    let e = HfClip::load_dir(&tmp, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json is missing"), "{e}");
    std::fs::copy(dir.join("config.json"), tmp.join("config.json")).unwrap();
    let e = HfClip::load_dir(&tmp, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no weights (looked for model.safetensors"),
        "{e}"
    );
    std::fs::remove_dir_all(&tmp).ok();
}
