//! The PatchGAN discriminator and VQGAN's hinge losses against PyTorch: taming's
//! `NLayerDiscriminator` with GroupNorm, same weights, same inputs
//! (`scripts/reference/patch_disc_fixture.py` wrote `fixtures/patch_disc.json`).

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use genlab_core::ParamStore;
use genlab_nn::patch_discriminator::{hinge_d_loss, hinge_g_loss, DiscNorm};
use genlab_nn::{PatchDiscConfig, PatchDiscriminator};
use serde_json::Value;

/// f32 convolutions of a few hundred terms, and GroupNorm, against PyTorch's f32, relative
/// to the largest value of each compared tensor.
const TOL: f64 = 1e-4;

fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    Tensor::from_vec(floats(&v["values"]), shape, &Device::Cpu).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn close(got: &Tensor, want: &[f32], what: &str) {
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    // Relative to the largest reference value (gradients here are ~1e-3).
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12) as f64;
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            ((a - b).abs() as f64) <= TOL * scale,
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

#[test]
fn discriminator_and_hinge_losses_match_pytorch() {
    let path = format!(
        "{}/tests/fixtures/patch_disc.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let c = &doc["config"];
    let cfg = PatchDiscConfig {
        channels: c["channels"].as_u64().unwrap() as usize,
        layers: c["layers"].as_u64().unwrap() as usize,
        groups: c["groups"].as_u64().unwrap() as usize,
        norm: DiscNorm::Group,
        ..Default::default()
    };
    let ps = ParamStore::new(0, &Device::Cpu);
    let d = PatchDiscriminator::new(&cfg, c["c_in"].as_u64().unwrap() as usize, ps.vb()).unwrap();
    let map: HashMap<String, Tensor> = doc["weights"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), tensor(v)))
        .collect();
    ps.load(&map).unwrap(); // strict: the names and shapes are taming's layer for layer

    let real = tensor(&doc["real"]);
    let fake = Var::from_tensor(&tensor(&doc["fake"])).unwrap();
    let lr = d.forward(&real).unwrap();
    let lf = d.forward(fake.as_tensor()).unwrap();
    assert_eq!(lf.dims(), tensor(&doc["fake_logits"]).dims());
    close(&lr, &floats(&doc["real_logits"]["values"]), "real logits");
    close(&lf, &floats(&doc["fake_logits"]["values"]), "fake logits");
    let dl = hinge_d_loss(&lr, &lf).unwrap();
    let gl = hinge_g_loss(&lf).unwrap();
    close(&dl, &[doc["d_loss"].as_f64().unwrap() as f32], "d loss");
    close(&gl, &[doc["g_loss"].as_f64().unwrap() as f32], "g loss");
    let g = dl.backward().unwrap();
    close(
        g.get(fake.as_tensor()).unwrap(),
        &floats(&doc["grad_fake"]),
        "d loss gradient wrt fake",
    );
    let conv1 = ps
        .vars()
        .into_iter()
        .find(|(n, _)| n == "conv.1.weight")
        .unwrap()
        .1;
    close(
        g.get(conv1.as_tensor()).unwrap(),
        &floats(&doc["grad_conv1_weight"]),
        "d loss gradient wrt conv.1.weight",
    );
}
