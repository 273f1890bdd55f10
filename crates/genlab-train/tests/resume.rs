//! Resume must continue exactly: N steps, then N more from the checkpoint, give the same
//! bytes as 2N steps straight (weights, EMA, optimizer moments).

use std::sync::atomic::AtomicBool;

use genlab_data::{Dataset, Toy2d, Toy2dKind};
use genlab_models::DataSpace;
use genlab_train::trainer::{Quiet, CHECKPOINT_FILE};
use genlab_train::{find_model, train, RunConfig, TrainConfig};

fn run_config(steps: u64) -> RunConfig {
    let entry = find_model("ddpm").unwrap();
    let space = DataSpace {
        shape: vec![2],
        images: false,
    };
    let mut model_config = (entry.default_config)(&space).unwrap();
    model_config["timesteps"] = 50.into();
    model_config["net"]["mlp"]["hidden"] = 32.into();
    RunConfig {
        model: "ddpm".into(),
        data: "eight-gaussians".into(),
        seed: 11,
        image_size: None,
        channels: None,
        train: TrainConfig {
            steps,
            batch_size: 16,
            log_every: 2,
            ckpt_every: 3,
            warmup_steps: 4,
            ..TrainConfig::for_points()
        },
        model_config,
    }
}

fn checkpoint_bytes(dir: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let (t, _) = genlab_core::io::load_tensors_with_metadata(
        &dir.join(CHECKPOINT_FILE),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Trains `run` in `dir` (a fresh step built from its config) and returns what `train` says.
fn try_train(
    dir: &std::path::Path,
    run: &RunConfig,
    resume: bool,
    stop: bool,
) -> genlab_core::Result<genlab_train::TrainOutcome> {
    let data = Toy2d::new(Toy2dKind::EightGaussians, 1000, 11);
    let entry = find_model(&run.model).unwrap();
    let mut step = (entry.build_step)(
        &run.model_config,
        &run.train,
        run.seed,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let stop = AtomicBool::new(stop);
    train(
        dir,
        run,
        &data as &dyn Dataset,
        step.as_mut(),
        resume,
        &mut Quiet,
        &stop,
    )
}

fn go(dir: &std::path::Path, steps: u64, resume: bool) -> genlab_train::TrainOutcome {
    try_train(dir, &run_config(steps), resume, false).unwrap()
}

#[test]
fn resume_equals_straight() {
    let straight = tempfile::tempdir().unwrap();
    let split = tempfile::tempdir().unwrap();
    go(straight.path(), 10, false);
    go(split.path(), 5, false);
    let out = go(split.path(), 10, true);
    assert_eq!(out.step, 10);
    let a = checkpoint_bytes(straight.path());
    let b = checkpoint_bytes(split.path());
    assert_eq!(a.len(), b.len());
    assert!(
        a.iter().any(|(k, _)| k.starts_with("opt.m."))
            && a.iter().any(|(k, _)| k.starts_with("ema."))
    );
    for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert_eq!(va, vb, "tensor {ka} differs after resume");
    }
    // The resumed log holds every line of the straight one (plus the first run's final
    // step 5), each step once and in order: nothing after the checkpoint is duplicated.
    let steps = |d: &std::path::Path| -> Vec<u64> {
        std::fs::read_to_string(d.join("log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let (a, b) = (steps(straight.path()), steps(split.path()));
    assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
    assert!(a.iter().all(|s| b.contains(s)), "{a:?} vs {b:?}");
    assert_eq!(b, vec![2, 4, 5, 6, 8, 10]);
}

#[test]
fn a_fresh_run_never_overwrites_an_existing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    go(dir.path(), 3, false);
    let before = std::fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap();
    let err = try_train(dir.path(), &run_config(3), false, false).unwrap_err();
    assert!(
        matches!(&err, genlab_core::Error::Setting { setting, .. } if setting == "resume"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap(),
        before
    );
}

#[test]
fn stop_flag_saves_and_returns_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let out = try_train(dir.path(), &run_config(100), false, true).unwrap();
    assert!(out.interrupted);
    assert!(dir.path().join(CHECKPOINT_FILE).exists());
}

#[test]
fn resuming_with_another_model_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    go(dir.path(), 2, false);
    let mut run = run_config(4);
    run.model_config["timesteps"] = 60.into();
    let err = try_train(dir.path(), &run, true, false).unwrap_err();
    assert!(err.to_string().contains("another config"), "{err}");
}

/// The run of [`run_config`] with another model, its config from the registry with
/// `edits` applied.
fn other_model(model: &str, steps: u64, edits: &[(&str, serde_json::Value)]) -> RunConfig {
    let mut run = run_config(steps);
    let space = DataSpace {
        shape: vec![2],
        images: false,
    };
    run.model = model.into();
    run.model_config = (find_model(model).unwrap().default_config)(&space).unwrap();
    for (k, v) in edits {
        run.model_config[*k] = v.clone();
    }
    run
}

#[test]
fn vae_and_gan_resume_equals_straight() {
    // WGAN-GP with n_critic 2: the generator's update cadence must survive the split; WGAN
    // clips after restoring; EBGAN's discriminator is an autoencoder.
    let cases: Vec<(&str, Vec<(&str, serde_json::Value)>)> = vec![
        (
            "vae",
            vec![("net", serde_json::json!({"mlp": {"hidden": [16]}}))],
        ),
        (
            "gan",
            vec![
                ("loss", "wgan-gp".into()),
                ("n_critic", 2.into()),
                ("net", serde_json::json!({"mlp": {"hidden": [16]}})),
            ],
        ),
        ("gan", vec![("loss", "wgan".into()), ("n_critic", 3.into())]),
        ("gan", vec![("loss", "ebgan".into())]),
        // Class-conditional (the eight gaussians' modes as classes) with R1 through the
        // projection discriminator.
        (
            "gan",
            vec![
                ("num_classes", 8.into()),
                ("r1_weight", 10.0.into()),
                ("net", serde_json::json!({"mlp": {"hidden": [16]}})),
            ],
        ),
        // ActNorm's data-dependent init happens at step 1 and must not rerun on resume;
        // spline couplings and MAF exercise the other conditioners.
        (
            "flow",
            vec![("layers", 2.into()), ("hidden", serde_json::json!([16]))],
        ),
        (
            "flow",
            vec![
                ("coupling", "spline".into()),
                ("layers", 2.into()),
                ("hidden", serde_json::json!([16])),
            ],
        ),
        (
            "flow",
            vec![
                ("coupling", "maf".into()),
                ("mixing", "none".into()),
                ("layers", 2.into()),
                ("hidden", serde_json::json!([16])),
            ],
        ),
    ];
    for (model, edits) in cases {
        let straight = tempfile::tempdir().unwrap();
        let split = tempfile::tempdir().unwrap();
        try_train(
            straight.path(),
            &other_model(model, 10, &edits),
            false,
            false,
        )
        .unwrap();
        try_train(split.path(), &other_model(model, 5, &edits), false, false).unwrap();
        try_train(split.path(), &other_model(model, 10, &edits), true, false).unwrap();
        let (a, b) = (
            checkpoint_bytes(straight.path()),
            checkpoint_bytes(split.path()),
        );
        assert_eq!(a.len(), b.len());
        for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
            assert_eq!(ka, kb);
            assert_eq!(
                va, vb,
                "{model} {edits:?}: tensor {ka} differs after resume"
            );
        }
    }
}

#[test]
fn a_locked_run_directory_is_refused_before_its_files_are_touched() {
    // Another trainer holds the directory: neither a fresh run (which would delete the log)
    // nor a resume (which would truncate the log and overwrite the checkpoint) may start.
    let dir = tempfile::tempdir().unwrap();
    go(dir.path(), 3, false);
    let log = dir.path().join("log.jsonl");
    let files = |d: &std::path::Path| {
        (
            std::fs::read(d.join(CHECKPOINT_FILE)).unwrap(),
            std::fs::read(d.join("log.jsonl")).unwrap(),
        )
    };
    let before = files(dir.path());
    let held = genlab_train::RunLock::acquire(dir.path()).unwrap();
    let err = try_train(dir.path(), &run_config(6), true, false).unwrap_err();
    assert!(
        matches!(&err, genlab_core::Error::RunDirInUse { pid: Some(p), .. } if *p == std::process::id()),
        "{err:?}"
    );
    assert!(err.to_string().contains("is in use by process"), "{err}");
    assert_eq!(files(dir.path()), before);

    let fresh = tempfile::tempdir().unwrap();
    let sentinel = fresh.path().join("log.jsonl");
    std::fs::write(&sentinel, "{\"step\":1}\n").unwrap();
    let held_fresh = genlab_train::RunLock::acquire(fresh.path()).unwrap();
    let err = try_train(fresh.path(), &run_config(3), false, false).unwrap_err();
    assert!(
        matches!(err, genlab_core::Error::RunDirInUse { .. }),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&sentinel).unwrap(),
        "{\"step\":1}\n"
    );

    // Released: the resume goes ahead and the lock is free again once it returns.
    drop((held, held_fresh));
    assert_eq!(go(dir.path(), 6, true).step, 6);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("\"step\":6"));
    drop(genlab_train::RunLock::acquire(dir.path()).unwrap());
}

/// CLIP on two-digit canvases (of the 8x8 digits): the captions are drawn per step from a
/// stream of the seed and the step, so a resumed run draws the ones a straight run does.
#[test]
fn clip_on_drawn_captions_resumes_exactly() {
    let space = DataSpace {
        shape: vec![1, 8, 16],
        images: true,
    };
    let mut cfg = (find_model("clip").unwrap().default_config)(&space).unwrap();
    cfg["model"]["image_tower"] = "cnn".into();
    cfg["model"]["cnn"]["channels"] = serde_json::json!([4, 4]);
    cfg["model"]["cnn"]["features"] = 8.into();
    cfg["model"]["text"]["width"] = 16.into();
    cfg["model"]["text"]["layers"] = 1.into();
    cfg["model"]["text"]["heads"] = 2.into();
    let run = |steps: u64| RunConfig {
        model: "clip".into(),
        data: "digit-pairs".into(),
        model_config: cfg.clone(),
        train: TrainConfig {
            batch_size: 16,
            ..run_config(steps).train
        },
        ..run_config(steps)
    };
    let go = |dir: &std::path::Path, steps: u64, resume: bool| {
        let data = genlab_data::pairs::DigitPairs::new(
            Box::new(genlab_data::Digits::load().unwrap()),
            "digit-pairs",
        )
        .unwrap();
        let r = run(steps);
        let mut step = (find_model("clip").unwrap().build_step)(
            &r.model_config,
            &r.train,
            r.seed,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        train(
            dir,
            &r,
            &data as &dyn Dataset,
            step.as_mut(),
            resume,
            &mut Quiet,
            &AtomicBool::new(false),
        )
        .unwrap();
    };
    let straight = tempfile::tempdir().unwrap();
    let split = tempfile::tempdir().unwrap();
    go(straight.path(), 6, false);
    go(split.path(), 3, false);
    go(split.path(), 6, true);
    let (a, b) = (
        checkpoint_bytes(straight.path()),
        checkpoint_bytes(split.path()),
    );
    assert_eq!(a.len(), b.len());
    for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert_eq!(va, vb, "clip: tensor {ka} differs after resume");
    }
}
