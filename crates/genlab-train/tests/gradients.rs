//! Every trainable variable of every registered model gets a gradient: present, finite and
//! not all zero, after one loss forward + backward on a small batch.
//!
//! Some candle layers (LayerNorm, RmsNorm, softmax_last_dim, sdpa) silently drop the
//! gradients of their inputs or parameters: a network built on one trains everything but
//! the layers behind it, and nothing fails. This test builds each model's training step
//! as the trainer does (the registry's default config and trainer settings for the data)
//! and checks the gradients [`TrainStep::loss_and_grads`] returns, naming the offenders.
//! Models that take a condition are checked class-conditional too, on the labelled data.

use genlab_core::Rng;
use genlab_data::{make_batch, open_dataset, DataKind, Dataset, OpenOptions};
use genlab_models::DataSpace;
use genlab_train::registry::{find_model, ModelEntry, MODELS};
use genlab_train::{RunConfig, TrainStep};
use std::path::Path;

/// The config a model trains with on `space`: the registry's default, except for `distill`,
/// which needs a teacher: an untrained DDPM checkpoint for this data, written under `dir`.
/// Trains `model` with `cfg` for one step of two examples of `ds` into a run directory under
/// `dir` (named after the model, the data and its shape), for models built on another run.
fn one_step_run(
    model: &str,
    cfg: serde_json::Value,
    space: &DataSpace,
    ds: &dyn Dataset,
    dir: &Path,
) -> std::path::PathBuf {
    let entry = find_model(model).unwrap();
    let mut train = (entry.default_train)(space);
    train.steps = 1;
    train.batch_size = 2;
    let run = RunConfig {
        model: model.into(),
        data: ds.name().into(),
        seed: 0,
        image_size: None,
        channels: None,
        train: train.clone(),
        model_config: cfg.clone(),
    };
    let mut step = (entry.build_step)(&cfg, &train, 0, &candle_core::Device::Cpu).unwrap();
    let shape: Vec<String> = space.shape.iter().map(|d| d.to_string()).collect();
    let out = dir.join(format!("{model}-{}-{}", ds.name(), shape.join("x")));
    genlab_train::train(
        &out,
        &run,
        ds,
        step.as_mut(),
        false,
        &mut genlab_train::trainer::Quiet,
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    out
}

fn config_for(
    entry: &ModelEntry,
    space: &DataSpace,
    ds: &dyn Dataset,
    dir: &Path,
) -> Option<serde_json::Value> {
    if entry.name == "ldm" {
        // A latent diffusion model needs a trained autoencoder: one step of one, here.
        if !space.images {
            return None;
        }
        let mut ae_cfg = (find_model("autoencoder").unwrap().default_config)(space).ok()?;
        ae_cfg["channels"] = serde_json::json!([8, 16]);
        ae_cfg["groups"] = 4.into();
        let ae_dir = one_step_run("autoencoder", ae_cfg, space, ds, dir);
        let mut cfg = (entry.default_config)(space).ok()?;
        cfg["autoencoder"] = ae_dir.display().to_string().into();
        (entry.prepare.unwrap())(&mut cfg, ds).unwrap();
        return Some(cfg);
    }
    if entry.name != "distill" {
        let mut cfg = (entry.default_config)(space).ok()?;
        // A model that trains on labels takes its class count from the data, as
        // `genlab train` fills it; data without labels is not for it.
        if entry.caps.needs_labels {
            cfg["num_classes"] = ds.num_classes()?.into();
        }
        return Some(cfg);
    }
    let cfg = (find_model("ddpm").unwrap().default_config)(space).ok()?;
    let teacher = one_step_run("ddpm", cfg.clone(), space, ds, dir);
    Some(serde_json::json!({
        "teacher": teacher.display().to_string(),
        "student_steps": 2,
        "ddpm": cfg,
    }))
}

/// Images of a given shape with deterministic pseudo-random pixels and labels: the shapes
/// of datasets that need a download (MNIST) or files (folder:), without them.
struct SyntheticImages {
    shape: Vec<usize>,
    len: usize,
}

impl Dataset for SyntheticImages {
    fn name(&self) -> &str {
        "synthetic-images"
    }

    fn len(&self) -> usize {
        self.len
    }

    fn example_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn write_example(&self, i: usize, out: &mut [f32]) {
        let mut rng = Rng::new(1000 + i as u64);
        for x in out {
            *x = rng.uniform() as f32;
        }
    }

    fn label(&self, i: usize) -> Option<u32> {
        Some((i % 10) as u32)
    }

    fn num_classes(&self) -> Option<usize> {
        Some(10)
    }

    fn kind(&self) -> DataKind {
        DataKind::Image
    }
}

/// Clips `[4, 1, 16, 16]` of random pixels with digit labels: the shape of a small Moving
/// MNIST, for the models that train on clips.
fn synthetic_clips() -> SyntheticImages {
    SyntheticImages {
        shape: vec![4, 1, 16, 16],
        len: 8,
    }
}

/// The data every model is tried on, with the batch size used: 2-D points, the embedded
/// 8x8 digits, MNIST's shape and the RGB shape of `folder:` datasets (default 32x32).
fn datasets() -> Vec<(Box<dyn Dataset>, usize)> {
    let open = |spec: &str| open_dataset(spec, &OpenOptions::default()).unwrap();
    vec![
        (open("eight-gaussians"), 16),
        (open("digits"), 8),
        (
            Box::new(SyntheticImages {
                shape: vec![1, 28, 28],
                len: 4,
            }),
            2,
        ),
        (
            Box::new(SyntheticImages {
                shape: vec![3, 32, 32],
                len: 4,
            }),
            2,
        ),
    ]
}

/// Variables of `step` whose gradient on `batch` is missing, non-finite or all zero, as
/// "NAME (why)".
fn bad_gradients(step: &dyn TrainStep, batch: &genlab_data::Batch, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let (loss, grads) = step.loss_and_grads(batch, &mut rng).unwrap();
    assert!(loss.is_finite(), "loss {loss}");
    let vars = step.trainable_vars();
    assert!(!vars.is_empty(), "no trainable variables");
    let mut bad = Vec::new();
    for (name, var) in &vars {
        let Some(g) = grads.get(var) else {
            bad.push(format!("{name} (no gradient)"));
            continue;
        };
        assert_eq!(g.dims(), var.dims(), "{name}: gradient shape");
        let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        if let Some(x) = g.iter().find(|x| !x.is_finite()) {
            bad.push(format!("{name} (non-finite gradient: {x})"));
        } else if g.iter().all(|&x| x == 0.0) {
            bad.push(format!("{name} (all-zero gradient)"));
        }
    }
    bad
}

#[test]
fn every_trainable_variable_of_every_model_gets_a_gradient() {
    let data = datasets();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for entry in MODELS {
        let mut tried = Vec::new();
        for (ds, batch_size) in &data {
            let space = DataSpace {
                shape: ds.example_shape(),
                images: matches!(ds.kind(), DataKind::Image),
            };
            // A model that does not take this data says so here (the classifier on points).
            let Some(config) = config_for(entry, &space, ds.as_ref(), dir.path()) else {
                continue;
            };
            // Models that take a condition are also tried class-conditional on labelled
            // data, as `--class-conditional` builds them (their label embeddings must learn).
            let mut variants = vec![("", config.clone())];
            if let (true, Some(k)) = (entry.caps.conditional, ds.num_classes()) {
                let mut c = config.clone();
                // A latent diffusion model keeps its class count in its `ddpm` section.
                if c.get("ddpm").is_some_and(|d| d.is_object()) {
                    c["ddpm"]["num_classes"] = k.into();
                } else {
                    c["num_classes"] = k.into();
                }
                variants.push((" class-conditional", c));
            }
            for (variant, config) in variants {
                let train = (entry.default_train)(&space);
                let step = (entry.build_step)(&config, &train, 7, &candle_core::Device::Cpu)
                    .unwrap_or_else(|e| {
                        panic!(
                            "{}{variant} on {}: cannot build the step: {e}",
                            entry.name,
                            ds.name()
                        )
                    });
                let idx: Vec<usize> = (0..*batch_size).collect();
                let batch = make_batch(ds.as_ref(), &idx, &candle_core::Device::Cpu).unwrap();
                let bad = bad_gradients(step.as_ref(), &batch, 3);
                if !bad.is_empty() {
                    failures.push(format!(
                        "{}{variant} on {} {:?} ({} of {} variables):\n    {}",
                        entry.name,
                        ds.name(),
                        space.shape,
                        bad.len(),
                        step.trainable_vars().len(),
                        bad.join("\n    ")
                    ));
                }
            }
            tried.push(ds.name().to_string());
        }
        if tried.is_empty() {
            // A clip model (`video-classifier`) takes none of the image sets: its clips.
            let ds = synthetic_clips();
            let space = DataSpace {
                shape: ds.example_shape(),
                images: true,
            };
            if let Some(config) = config_for(entry, &space, &ds, dir.path()) {
                let train = (entry.default_train)(&space);
                let step =
                    (entry.build_step)(&config, &train, 7, &candle_core::Device::Cpu).unwrap();
                let batch = make_batch(&ds, &[0, 1], &candle_core::Device::Cpu).unwrap();
                let bad = bad_gradients(step.as_ref(), &batch, 3);
                if !bad.is_empty() {
                    failures.push(format!("{} on clips: {}", entry.name, bad.join(", ")));
                }
                tried.push(ds.name().to_string());
            }
        }
        assert!(
            !tried.is_empty(),
            "model `{}` accepts none of the test datasets; add one it trains on",
            entry.name
        );
    }
    assert!(
        failures.is_empty(),
        "variables without a usable gradient:\n{}",
        failures.join("\n")
    );
}

#[test]
fn loss_and_grads_leaves_the_step_untouched() {
    // Computing the gradients must not update the weights, the EMA or the optimizer.
    let (ds, batch_size) = datasets().swap_remove(1); // digits
    let dir = tempfile::tempdir().unwrap();
    for entry in MODELS {
        let space = DataSpace {
            shape: ds.example_shape(),
            images: true,
        };
        let clips = synthetic_clips();
        let clip_space = DataSpace {
            shape: clips.example_shape(),
            images: true,
        };
        // A clip model takes the synthetic clips instead of the digits.
        let (ds, space, config): (&dyn Dataset, _, _) =
            match config_for(entry, &space, ds.as_ref(), dir.path()) {
                Some(c) => (ds.as_ref(), space.clone(), c),
                None => (
                    &clips,
                    clip_space.clone(),
                    config_for(entry, &clip_space, &clips, dir.path()).unwrap(),
                ),
            };
        let train = (entry.default_train)(&space);
        let step = (entry.build_step)(&config, &train, 7, &candle_core::Device::Cpu).unwrap();
        let snapshot = |s: &dyn TrainStep| -> Vec<(String, Vec<f32>)> {
            let mut v: Vec<(String, Vec<f32>)> = s
                .state_tensors()
                .into_iter()
                .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let before = (snapshot(step.as_ref()), step.state_json());
        let idx: Vec<usize> = (0..batch_size).collect();
        let batch = make_batch(ds, &idx, &candle_core::Device::Cpu).unwrap();
        step.loss_and_grads(&batch, &mut Rng::new(1)).unwrap();
        assert!(
            before == (snapshot(step.as_ref()), step.state_json()),
            "{}: loss_and_grads changed the state",
            entry.name
        );
    }
}
