//! Every registered strategy and method, run end to end on a tiny task (the synthetic
//! 8x8 classes, a few steps): the contracts of the registries, not the numbers.

use candle_core::Device;
use genlab_labels::active::run::{run, ActiveConfig};
use genlab_labels::active::STRATEGIES;
use genlab_labels::semi::{SemiConfig, METHODS as SEMI};
use genlab_labels::ssl::{SslConfig, METHODS as SSL};
use genlab_labels::{FitConfig, NetConfig};

fn tiny_fit() -> FitConfig {
    FitConfig {
        epochs: 3,
        batch: 16,
        min_steps: 10,
        ..FitConfig::default()
    }
}

fn tiny_net() -> NetConfig {
    NetConfig {
        channels: 8,
        hidden: 16,
        ..NetConfig::default()
    }
}

#[test]
fn every_strategy_acquires_distinct_labels_up_to_the_budget() {
    for s in STRATEGIES {
        let t = tempfile::tempdir().unwrap();
        let cfg = ActiveConfig {
            strategy: s.name.into(),
            data: "synthetic".into(),
            initial: 10,
            per_round: 4,
            budget: 20,
            pool_subset: 60,
            mc_samples: 3,
            committee: 2,
            batch: 32,
            model: tiny_net(),
            fit: tiny_fit(),
            ..ActiveConfig::default()
        };
        let curve = run(&cfg, t.path(), &Device::Cpu, &mut |_| {}).unwrap();
        let labels: Vec<usize> = curve.points.iter().map(|p| p.labels).collect();
        assert_eq!(labels, vec![10, 14, 18, 20], "{}", s.name);
        let picked: Vec<usize> =
            serde_json::from_str(&std::fs::read_to_string(t.path().join("labelled.json")).unwrap())
                .unwrap();
        let mut u = picked.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), 20, "{}: labels acquired twice", s.name);
        assert!(t.path().join("curve.svg").exists());
        // Same seed, same labels.
        let t2 = tempfile::tempdir().unwrap();
        run(&cfg, t2.path(), &Device::Cpu, &mut |_| {}).unwrap();
        assert_eq!(
            std::fs::read(t.path().join("labelled.json")).unwrap(),
            std::fs::read(t2.path().join("labelled.json")).unwrap(),
            "{} is not reproducible",
            s.name
        );
    }
}

#[test]
fn every_semi_supervised_method_beats_chance_on_a_small_task() {
    for m in SEMI {
        let t = tempfile::tempdir().unwrap();
        let base = SemiConfig {
            method: m.name.into(),
            // Real digits: the synthetic templates are random pixels, which translations
            // (every method's weak augmentation) destroy.
            data: "digits".into(),
            labels: 50,
            model: NetConfig {
                hidden: 32,
                ..NetConfig::default()
            },
            fit: FitConfig {
                min_steps: 150,
                ..tiny_fit()
            },
            batch: 64,
            ..SemiConfig::default()
        };
        let sets: Vec<(String, serde_json::Value)> = match m.name {
            "self-training" => vec![
                ("method.rounds".into(), 1.into()),
                ("method.subset".into(), 100.into()),
            ],
            "co-training" => vec![
                ("method.rounds".into(), 1.into()),
                ("method.per_class".into(), 2.into()),
            ],
            "fixmatch" => vec![
                ("method.steps".into(), 150.into()),
                ("method.batch".into(), 8.into()),
                ("method.mu".into(), 2.into()),
            ],
            _ => vec![],
        };
        let cfg = genlab_labels::semi::resolve(&base, &sets).unwrap();
        let r = genlab_labels::semi::run(&cfg, t.path(), &Device::Cpu, &mut |_| {}).unwrap();
        // Chance is 0.1.
        assert!(r.test_accuracy > 0.3, "{}: {}", m.name, r.test_accuracy);
        assert!(t.path().join("result.json").exists());
    }
}

/// A self-supervised run small enough for a test: the 8x8 synthetic set, a 4-8 channel
/// encoder with 16 features.
fn tiny_ssl(method: &str, steps: usize) -> SslConfig {
    SslConfig {
        method: method.into(),
        data: "synthetic".into(),
        steps,
        batch: 16,
        encoder: genlab_nn::ClassifierConfig {
            channels: [4, 8],
            features: 16,
            ..Default::default()
        },
        knn_k: 5,
        ..SslConfig::default()
    }
}

#[test]
fn every_self_supervised_method_trains_saves_and_evaluates() {
    for m in SSL {
        let t = tempfile::tempdir().unwrap();
        let base = tiny_ssl(m.name, 3);
        let cfg = genlab_labels::ssl::resolve(&base, &[]).unwrap();
        let e = genlab_labels::ssl::train(&cfg, t.path(), &Device::Cpu, &mut |_| {}).unwrap();
        assert!((0.0..=1.0).contains(&e.linear_probe) && (0.0..=1.0).contains(&e.knn));
        let again = genlab_labels::ssl::evaluate(t.path(), None, &[], &Device::Cpu).unwrap();
        assert_eq!(again.knn, e.knn, "{}: the checkpoint reloads", m.name);
        let k3 = [("knn_k".to_string(), serde_json::Value::from(3))];
        let other_k = genlab_labels::ssl::evaluate(t.path(), None, &k3, &Device::Cpu).unwrap();
        assert_eq!(
            other_k.knn_k, 3,
            "{}: the k-NN setting is overridden",
            m.name
        );
        let steps = [("steps".to_string(), serde_json::Value::from(9))];
        let e = genlab_labels::ssl::evaluate(t.path(), None, &steps, &Device::Cpu)
            .err()
            .unwrap_or_else(|| panic!("{}: a training setting was accepted", m.name))
            .to_string();
        assert!(e.contains("steps"), "{}: {e}", m.name);
        // The 8x8 digits have the synthetic set's shape: the encoder reads them too.
        let other = genlab_labels::ssl::evaluate(t.path(), Some("digits"), &[], &Device::Cpu);
        assert!(other.is_ok(), "{}: {:?}", m.name, other.err());
        // The upsampled digits (28x28) are not: one message naming both shapes.
        let e = genlab_labels::ssl::evaluate(t.path(), Some("digits28"), &[], &Device::Cpu)
            .err()
            .unwrap_or_else(|| panic!("{}: 28x28 images were accepted", m.name))
            .to_string();
        assert!(e.contains("[1, 8, 8]") && e.contains("[1, 28, 28]"), "{e}");
    }
}

#[test]
fn bad_optimizer_and_encoder_settings_are_refused_before_anything_is_written() {
    let base = SslConfig {
        data: "synthetic".into(),
        steps: 1,
        batch: 16,
        ..SslConfig::default()
    };
    let refused = |cfg: SslConfig, key: &str| {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("run");
        let e = genlab_labels::ssl::train(&cfg, &out, &Device::Cpu, &mut |_| {})
            .err()
            .unwrap_or_else(|| panic!("{key}: accepted"))
            .to_string();
        assert!(e.contains(key), "{key}: {e}");
        assert!(!out.exists(), "{key}: the run directory was created");
    };
    refused(
        SslConfig {
            weight_decay: -0.1,
            ..base.clone()
        },
        "weight_decay",
    );
    refused(
        SslConfig {
            weight_decay: 2000.0,
            ..base.clone()
        },
        "weight_decay",
    );
    let mut gn = base.clone();
    gn.encoder.group_norm = 5; // divides neither 32 nor 64
    refused(gn, "group_norm");
}

#[test]
fn cosine_decay_starts_at_the_peak_rate_and_changes_the_later_steps() {
    let run = |steps: usize, decay: &str| {
        let t = tempfile::tempdir().unwrap();
        let base = tiny_ssl("simclr", steps);
        let cfg = genlab_labels::ssl::resolve(&base, &[("lr_decay".into(), decay.into())]).unwrap();
        genlab_labels::ssl::train(&cfg, t.path(), &Device::Cpu, &mut |_| {}).unwrap();
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(t.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(
            saved["lr_decay"], decay,
            "the run's config records its schedule"
        );
        std::fs::read(t.path().join("checkpoint.safetensors")).unwrap()
    };
    // Step 0 runs at the peak under both schedules; step 1 at half of it under cosine
    // ((1 + cos(pi / 2)) / 2 of two steps).
    assert_eq!(run(1, "constant"), run(1, "cosine"));
    assert_ne!(run(2, "constant"), run(2, "cosine"));
}
