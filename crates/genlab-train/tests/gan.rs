//! Class conditioning left the unconditional GANs alone: a few training steps and a few
//! samples of unconditional GANs (MLP and DCGAN nets, the R1 and gradient-penalty paths, EBGAN)
//! give exactly the bytes they gave before `gan.num_classes` existed. The expected
//! fingerprints were computed with the code of the commit before class-conditional GANs
//! (77d5e6a) by this same test; any change to the weights' initialisation, the random draws
//! or the arithmetic of an unconditional GAN changes them.

use candle_core::Device;

use genlab_core::Rng;
use genlab_data::{make_batch, open_dataset, OpenOptions};
use genlab_models::{DataSpace, SampleRequest};
use genlab_train::registry::find_model;

/// FNV-1a over bytes.
fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

fn fnv_tensor(h: &mut u64, t: &candle_core::Tensor) {
    let v: Vec<f32> = t
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for x in v {
        fnv(h, &x.to_bits().to_le_bytes());
    }
}

/// The fingerprint of `steps` training steps of a GAN on `data` (batch `batch`) with the
/// preset's config edited by `edits`: every state tensor (weights, EMA, optimizer moments),
/// the JSON state, the logged metrics, and 8 samples of the EMA generator.
fn fingerprint(data: &str, batch: usize, steps: usize, edits: &[(&str, serde_json::Value)]) -> u64 {
    let ds = open_dataset(data, &OpenOptions::default()).unwrap();
    let space = DataSpace {
        shape: ds.example_shape(),
        images: ds.example_shape().len() == 3,
    };
    let entry = find_model("gan").unwrap();
    let mut cfg = (entry.default_config)(&space).unwrap();
    for (k, v) in edits {
        cfg[*k] = v.clone();
    }
    let train = (entry.default_train)(&space);
    let mut step = (entry.build_step)(&cfg, &train, 3, &Device::Cpu).unwrap();
    let mut rng = Rng::new(5);
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for s in 0..steps {
        let idx: Vec<usize> = (0..batch).map(|i| (s * batch + i) % ds.len()).collect();
        let b = make_batch(ds.as_ref(), &idx, &Device::Cpu).unwrap();
        for (k, v) in step.step(&b, &mut rng, train.lr).unwrap() {
            fnv(&mut h, k.as_bytes());
            fnv(&mut h, &v.to_bits().to_le_bytes());
        }
    }
    let mut tensors: Vec<_> = step.state_tensors().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, t) in &tensors {
        fnv(&mut h, k.as_bytes());
        fnv_tensor(&mut h, t);
    }
    fnv(&mut h, step.state_json().to_string().as_bytes());
    let req = SampleRequest {
        n: 8,
        ..Default::default()
    };
    let x = step
        .sampler()
        .unwrap()
        .sample(&req, &mut Rng::new(9), &mut |_, _| {})
        .unwrap()
        .x;
    fnv_tensor(&mut h, &x);
    h
}

/// data, batch size, steps, config edits, expected fingerprint.
type Case = (
    &'static str,
    usize,
    usize,
    Vec<(&'static str, serde_json::Value)>,
    u64,
);

#[test]
fn unconditional_gans_train_and_sample_bit_identically_to_before_class_conditioning() {
    use serde_json::json;
    let cases: Vec<Case> = vec![
        ("eight-gaussians", 16, 3, vec![], 0x1ed2_f966_468a_1c51),
        (
            "eight-gaussians",
            16,
            3,
            vec![
                ("loss", json!("wgan-gp")),
                ("n_critic", json!(1)),
                ("net", json!({"mlp": {"hidden": [32, 32]}})),
            ],
            0x790f_d375_93b4_ad1d,
        ),
        (
            "eight-gaussians",
            16,
            3,
            vec![("loss", json!("ebgan"))],
            0x66fb_c7d0_3ea7_089b,
        ),
        (
            "eight-gaussians",
            16,
            3,
            vec![("loss", json!("lsgan"))],
            0xde11_47a3_f31a_c20c,
        ),
        (
            "eight-gaussians",
            16,
            3,
            vec![("loss", json!("wgan")), ("n_critic", json!(1))],
            0x88f5_46c2_2be1_3415,
        ),
        (
            "digits",
            4,
            2,
            vec![(
                "net",
                json!({"dcgan": {"channels": 16, "minibatch_std": true}}),
            )],
            0xc293_04a7_51de_76be,
        ),
        (
            "digits",
            4,
            2,
            vec![
                ("r1_weight", json!(10.0)),
                ("net", json!({"dcgan": {"channels": 16}})),
            ],
            0xb657_68c1_e273_906e,
        ),
        (
            "digits",
            4,
            2,
            vec![
                ("loss", json!("wgan-gp")),
                ("n_critic", json!(1)),
                ("net", json!({"dcgan": {"channels": 16}})),
            ],
            0x3acd_3d08_257c_89d4,
        ),
    ];
    let mut wrong = Vec::new();
    for (data, batch, steps, edits, want) in &cases {
        let f = fingerprint(data, *batch, *steps, edits);
        if f != *want {
            wrong.push(format!(
                "{data} {edits:?}: {f:#018x}, expected {want:#018x}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "unconditional GANs changed:\n{}",
        wrong.join("\n")
    );
}
