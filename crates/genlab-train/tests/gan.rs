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

/// data, batch size, steps, config edits, expected fingerprints: (on a CPU with AVX-512,
/// where they were recorded before class conditioning; with AVX2 + FMA only, recorded
/// 2026-12-07 on an AMD EPYC). The kernels (genlab-kernels' SIMD paths, gemm's
/// micro-kernels) round differently on the two, so the bytes are per instruction set.
type Case = (
    &'static str,
    usize,
    usize,
    Vec<(&'static str, serde_json::Value)>,
    (u64, u64),
);

/// Which recorded fingerprint applies on this CPU: `Some(0)` AVX-512, `Some(1)` AVX2 + FMA,
/// `None` another instruction set (nothing recorded).
fn recorded_isa() -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(0);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some(1);
        }
    }
    None
}

#[test]
fn unconditional_gans_train_and_sample_bit_identically_to_before_class_conditioning() {
    use serde_json::json;
    let cases: Vec<Case> = vec![
        (
            "eight-gaussians",
            16,
            3,
            vec![],
            (0x1ed2_f966_468a_1c51, 0xd543_8f7e_5147_3d96),
        ),
        (
            "eight-gaussians",
            16,
            3,
            vec![
                ("loss", json!("wgan-gp")),
                ("n_critic", json!(1)),
                ("net", json!({"mlp": {"hidden": [32, 32]}})),
            ],
            (0x790f_d375_93b4_ad1d, 0x1eb0_93d2_0fef_b344),
        ),
        (
            "eight-gaussians",
            16,
            3,
            vec![("loss", json!("ebgan"))],
            (0x66fb_c7d0_3ea7_089b, 0xee73_c488_520d_b7a8),
        ),
        (
            "eight-gaussians",
            16,
            3,
            vec![("loss", json!("lsgan"))],
            (0xde11_47a3_f31a_c20c, 0xce6b_665d_5d22_d42e),
        ),
        (
            "eight-gaussians",
            16,
            3,
            vec![("loss", json!("wgan")), ("n_critic", json!(1))],
            (0x88f5_46c2_2be1_3415, 0x598f_a958_3e75_7839),
        ),
        (
            "digits",
            4,
            2,
            vec![(
                "net",
                json!({"dcgan": {"channels": 16, "minibatch_std": true}}),
            )],
            (0xc293_04a7_51de_76be, 0xae3d_2643_d729_8597),
        ),
        (
            "digits",
            4,
            2,
            vec![
                ("r1_weight", json!(10.0)),
                ("net", json!({"dcgan": {"channels": 16}})),
            ],
            (0xb657_68c1_e273_906e, 0x50f7_98f5_ce33_a020),
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
            (0x3acd_3d08_257c_89d4, 0xad18_031e_05d2_0ebc),
        ),
    ];
    let Some(isa) = recorded_isa() else {
        eprintln!("skipped: no fingerprints recorded for this CPU's instruction set");
        return;
    };
    let mut wrong = Vec::new();
    for (data, batch, steps, edits, wants) in &cases {
        let want = if isa == 0 { wants.0 } else { wants.1 };
        let f = fingerprint(data, *batch, *steps, edits);
        if f != want {
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
