//! Resolving a run's config: what `genlab train` (and any other front end) asks for, turned
//! into one [`RunConfig`] and its opened dataset.
//!
//! A fresh run layers, lowest first: the model's preset for the data (its registry entry's
//! defaults), the TOML file, the `key=value` overrides, then the request's own fields
//! (steps, seed). `model`, `data`, `seed`, `image_size` and `channels` choose the preset, so
//! they are read first, with the same precedence (a request field wins over an override,
//! which wins over the file). A resumed run takes the checkpoint's config and lets only
//! `train.*` settings and the total steps change.

use std::path::{Path, PathBuf};

use serde_json::Value;

use genlab_core::{config, Error, Result};
use genlab_data::{open_dataset, DataKind, Dataset, OpenOptions};
use genlab_models::DataSpace;

use crate::registry::find_model;
use crate::run::RunConfig;

/// What a caller asks for; `None` fields fall back to the file, the overrides, or the
/// defaults.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// The run directory (read when resuming).
    pub out: PathBuf,
    pub model: Option<String>,
    pub data: Option<String>,
    pub seed: Option<u64>,
    /// Total training steps (with `resume`, the new total).
    pub steps: Option<u64>,
    /// A TOML file with any of `model`, `data`, `seed`, `image_size`, `channels`,
    /// `[train]` and `[<model>]` tables.
    pub config_file: Option<PathBuf>,
    /// `key=value` overrides (`train.lr=2e-4`, `ddpm.timesteps=500`), applied in order.
    pub overrides: Vec<String>,
    /// Image side for data that resizes (image folders).
    pub image_size: Option<usize>,
    /// Channels (1 or 3) for data that converts (image folders).
    pub channels: Option<usize>,
    /// Continue the run in `out` from its checkpoint.
    pub resume: bool,
    /// Condition the model on the data's class labels (sets the model's `num_classes` to
    /// the dataset's class count; the model family must take a condition).
    pub class_conditional: bool,
    /// Condition the model on an image map of each example (`low-res:7`, `edges`; sets the
    /// model's `image_condition`; the model family must take one).
    pub image_condition: Option<String>,
}

impl RunRequest {
    /// A fresh run of `model` on `data` in the run directory `out`, with the preset's
    /// settings (chain [`RunRequest::steps`], [`RunRequest::seed`], [`RunRequest::set`]).
    pub fn new(model: &str, data: &str, out: impl Into<PathBuf>) -> Self {
        Self {
            model: Some(model.into()),
            data: Some(data.into()),
            out: out.into(),
            ..Default::default()
        }
    }

    /// Total training steps.
    pub fn steps(self, steps: u64) -> Self {
        Self {
            steps: Some(steps),
            ..self
        }
    }

    /// Seed of initialisation, data order and noise.
    pub fn seed(self, seed: u64) -> Self {
        Self {
            seed: Some(seed),
            ..self
        }
    }

    /// Conditions the model on the data's class labels.
    pub fn class_conditional(self) -> Self {
        Self {
            class_conditional: true,
            ..self
        }
    }

    /// One `key=value` override (`train.lr=2e-4`, `ddpm.prediction=v`), after the others.
    pub fn set(mut self, key_value: &str) -> Self {
        self.overrides.push(key_value.into());
        self
    }
}

/// A resolved run and its training data.
pub struct ResolvedRun {
    pub run: RunConfig,
    pub data: Box<dyn Dataset>,
}

/// What the model sees of a dataset: its example shape, and whether it holds images.
pub fn data_space(ds: &dyn Dataset) -> DataSpace {
    DataSpace {
        shape: ds.example_shape(),
        // Video clips live in [0, 1] like images; their shape [T, C, H, W] tells them apart.
        images: ds.kind().is_unit_interval(),
    }
}

/// Opens `spec` the way runs open their data: toy sets seeded by the run's seed, image
/// folders at the run's size and channels.
pub fn open_data(
    spec: &str,
    seed: u64,
    image_size: Option<usize>,
    channels: Option<usize>,
) -> Result<Box<dyn Dataset>> {
    open_dataset(
        spec,
        &OpenOptions {
            seed,
            image_size,
            channels,
            ..Default::default()
        },
    )
}

/// Opens a run's own training data (as it was opened when the run started).
pub fn open_run_data(run: &RunConfig) -> Result<Box<dyn Dataset>> {
    open_data(&run.data, run.seed, run.image_size, run.channels)
}

/// Resolves `req` into a run config and opens its data.
pub fn resolve_run(req: &RunRequest) -> Result<ResolvedRun> {
    if req.resume {
        resolve_resume(req)
    } else {
        resolve_fresh(req)
    }
}

/// A top-level setting read before the defaults exist: the request's field, else the last
/// override of `key`, else the file's.
fn top_level(
    key: &str,
    field: Option<Value>,
    overrides: &[(String, Value)],
    file: Option<&Value>,
) -> Option<Value> {
    field.or_else(|| {
        overrides
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| file.and_then(|f| f.get(key)).cloned())
    })
}

fn as_string(key: &'static str, v: Option<Value>, what: &str) -> Result<String> {
    match v {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(Error::setting(
            key,
            format!("must be a string naming {what}, got {other}"),
        )),
        None => Err(Error::setting(
            key,
            format!("is required: name {what} (see `genlab list`)"),
        )),
    }
}

fn as_count(key: &'static str, v: Option<Value>) -> Result<Option<u64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| Error::setting(key, format!("must be a non-negative integer, got {v}"))),
    }
}

/// Keys of the run tree that are not sections, read before the preset is built.
const TOP_LEVEL_KEYS: [&str; 5] = ["model", "data", "seed", "image_size", "channels"];

fn resolve_fresh(req: &RunRequest) -> Result<ResolvedRun> {
    let file = req
        .config_file
        .as_deref()
        .map(config::read_toml)
        .transpose()?;
    let overrides = req
        .overrides
        .iter()
        .map(|s| config::parse_override(s))
        .collect::<Result<Vec<_>>>()?;
    let top = |key: &str, field: Option<Value>| top_level(key, field, &overrides, file.as_ref());
    let model = as_string(
        "model",
        top("model", req.model.clone().map(Value::from)),
        "a model name",
    )?;
    let data = as_string(
        "data",
        top("data", req.data.clone().map(Value::from)),
        "a dataset",
    )?;
    let seed = as_count("seed", top("seed", req.seed.map(Value::from)))?.unwrap_or(0);
    let size = |key: &'static str, field: Option<usize>| -> Result<Option<usize>> {
        Ok(as_count(key, top(key, field.map(Value::from)))?.map(|v| v as usize))
    };
    let image_size = size("image_size", req.image_size)?;
    let channels = size("channels", req.channels)?;
    let entry = find_model(&model)?;
    let ds = open_data(&data, seed, image_size, channels)?;
    let space = data_space(ds.as_ref());
    // Video data reaches only the families whose capabilities say they take it.
    if ds.kind() == DataKind::Video && !entry.caps.video {
        return Err(Error::InvalidInput(format!(
            "`{model}` takes images or points; `{data}` is video {} (shape {:?})",
            DataKind::Video.layout(),
            ds.example_shape()
        )));
    }
    let defaults = RunConfig {
        model: model.clone(),
        data: data.clone(),
        seed,
        image_size,
        channels,
        train: (entry.default_train)(&space),
        model_config: (entry.default_config)(&space)?,
    };
    let mut tree = defaults.to_tree();
    // The top-level keys were read above; the file and overrides set everything else.
    let mut rest = file.clone();
    if let Some(Value::Object(f)) = rest.as_mut() {
        for k in TOP_LEVEL_KEYS {
            f.remove(k);
        }
    }
    if let Some(f) = &rest {
        config::apply_overlay(&mut tree, f, "")?;
    }
    for (k, v) in overrides {
        if !TOP_LEVEL_KEYS.contains(&k.as_str()) {
            config::apply_override(&mut tree, &k, v)?;
        }
    }
    if let Some(steps) = req.steps {
        tree["train"]["steps"] = steps.into();
    }
    if entry.caps.needs_labels {
        let classes = ds.num_classes().ok_or_else(|| {
            Error::InvalidInput(format!(
                "`{model}` trains on class labels; `{data}` has none"
            ))
        })?;
        tree[&model]["num_classes"] = classes.into();
    }
    if req.class_conditional {
        if !entry.caps.conditional {
            return Err(Error::setting(
                "class_conditional",
                format!("does not apply: `{model}` models take no condition"),
            ));
        }
        let classes = ds.num_classes().ok_or_else(|| {
            Error::setting(
                "class_conditional",
                format!("needs labelled data; `{data}` has no class labels"),
            )
        })?;
        // A latent diffusion model keeps its class count in its inner `ddpm` section.
        let section = &mut tree[&model];
        if section.get("ddpm").is_some_and(|d| d.is_object()) {
            section["ddpm"]["num_classes"] = classes.into();
        } else {
            section["num_classes"] = classes.into();
        }
    }
    if let Some(spec) = &req.image_condition {
        let map: genlab_models::diffusion::ImageMap = spec.parse()?;
        if defaults.model_config.get("image_condition").is_none() {
            return Err(Error::setting(
                "image_condition",
                format!("does not apply: `{model}` models take no image map (ddpm does)"),
            ));
        }
        tree[&model]["image_condition"] = serde_json::to_value(&map)
            .map_err(|e| Error::Config(format!("image_condition: {e}")))?;
    }
    if let Some(prepare) = entry.prepare {
        prepare(&mut tree[&model], ds.as_ref())?;
    }
    let run = RunConfig::from_tree(&tree)?;
    if run.model_config.get("data") != defaults.model_config.get("data") {
        return Err(Error::Config(format!(
            "the model's `data` section must describe the dataset ({space:?}); it is set from \
             the dataset, do not override it"
        )));
    }
    Ok(ResolvedRun { run, data: ds })
}

/// Reads the run config saved in a run directory's checkpoint.
pub fn saved_run(dir: &Path) -> Result<RunConfig> {
    let file = dir.join(crate::trainer::CHECKPOINT_FILE);
    if !file.exists() {
        return Err(Error::Checkpoint(format!(
            "no checkpoint in {} to resume (expected {})",
            dir.display(),
            file.display()
        )));
    }
    let (_, meta) = genlab_core::io::load_tensors_with_metadata(&file, &candle_core::Device::Cpu)?;
    Ok(crate::trainer::parse_metadata(&meta, &file)?.0)
}

fn resolve_resume(req: &RunRequest) -> Result<ResolvedRun> {
    let fixed = [
        ("model", req.model.is_some()),
        ("data", req.data.is_some()),
        ("seed", req.seed.is_some()),
        ("config", req.config_file.is_some()),
        ("image_size", req.image_size.is_some()),
        ("channels", req.channels.is_some()),
        ("class_conditional", req.class_conditional),
        ("image_condition", req.image_condition.is_some()),
    ];
    if let Some((name, _)) = fixed.iter().find(|(_, given)| *given) {
        return Err(Error::setting(
            *name,
            "cannot change: a resumed run keeps its saved config; only the total steps and \
             train.* settings may change",
        ));
    }
    let saved = saved_run(&req.out)?;
    let mut tree = saved.to_tree();
    for s in &req.overrides {
        let (k, v) = config::parse_override(s)?;
        if !k.starts_with("train.") {
            return Err(Error::setting(
                k,
                "cannot change: a resumed run may only change train.* settings",
            ));
        }
        config::apply_override(&mut tree, &k, v)?;
    }
    if let Some(steps) = req.steps {
        tree["train"]["steps"] = steps.into();
    }
    let run = RunConfig::from_tree(&tree)?;
    let data = open_run_data(&run)?;
    Ok(ResolvedRun { run, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(model: &str, data: &str) -> RunRequest {
        RunRequest {
            model: Some(model.into()),
            data: Some(data.into()),
            ..Default::default()
        }
    }

    #[test]
    fn flags_beat_overrides_beat_the_file_beat_the_preset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "model = \"ddpm\"\ndata = \"rings\"\nseed = 3\n[train]\nlr = 0.5\nbatch_size = 7\n",
        )
        .unwrap();
        let r = resolve_run(&RunRequest {
            config_file: Some(file.clone()),
            overrides: vec!["train.lr=0.25".into(), "seed=4".into()],
            steps: Some(9),
            ..Default::default()
        })
        .unwrap();
        let run = r.run;
        assert_eq!((run.model.as_str(), run.data.as_str()), ("ddpm", "rings"));
        assert_eq!(run.seed, 4); // the override beats the file
        assert_eq!(run.train.lr, 0.25); // the override beats the file
        assert_eq!(run.train.batch_size, 7); // the file beats the preset
        assert_eq!(run.train.steps, 9); // the request beats everything
        let preset = resolve_run(&req("ddpm", "rings")).unwrap().run;
        assert_eq!(preset.train, crate::TrainConfig::for_points());
        assert_eq!(preset.seed, 0);
        // The request's seed beats the file's.
        let r = resolve_run(&RunRequest {
            config_file: Some(file),
            seed: Some(11),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.run.seed, 11);
    }

    #[test]
    fn missing_and_unknown_settings_name_the_setting() {
        let e = resolve_run(&RunRequest {
            data: Some("rings".into()),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(
            matches!(&e, Error::Setting { setting, .. } if setting == "model"),
            "{e}"
        );
        let e = resolve_run(&RunRequest {
            overrides: vec!["train.nope=1".into()],
            ..req("ddpm", "rings")
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("train.nope") && e.contains("batch_size"), "{e}");
        let e = resolve_run(&RunRequest {
            overrides: vec!["ddpm.data.shape=[3]".into()],
            ..req("ddpm", "rings")
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("describe the dataset"), "{e}");
    }

    #[test]
    fn class_conditioning_takes_the_class_count_from_the_data() {
        let r = resolve_run(&req("ddpm", "eight-gaussians").class_conditional()).unwrap();
        assert_eq!(r.run.model_config["num_classes"], 8);
        assert_eq!(
            resolve_run(&req("ddpm", "rings")).unwrap().run.model_config["num_classes"],
            0
        );
        let e = resolve_run(&req("ddpm", "swiss-roll").class_conditional())
            .err()
            .unwrap();
        assert!(
            matches!(&e, Error::Setting { setting, .. } if setting == "class_conditional"),
            "{e}"
        );
        assert!(e.to_string().contains("no class labels"), "{e}");
        let e = resolve_run(&req("flow", "rings").class_conditional())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("take no condition"), "{e}");
    }

    #[test]
    fn a_resumed_run_changes_only_train_settings() {
        let dir = tempfile::tempdir().unwrap();
        let r = RunRequest {
            out: dir.path().to_path_buf(),
            resume: true,
            ..Default::default()
        };
        let e = resolve_run(&r).err().unwrap().to_string();
        assert!(e.contains("no checkpoint"), "{e}");
        let e = resolve_run(&RunRequest {
            model: Some("vae".into()),
            ..r.clone()
        })
        .err()
        .unwrap();
        assert!(
            matches!(&e, Error::Setting { setting, .. } if setting == "model"),
            "{e}"
        );
    }

    #[test]
    fn image_folders_train_at_the_requested_size_and_channels() {
        let dir = tempfile::tempdir().unwrap();
        let img =
            image::RgbImage::from_fn(20, 12, |x, y| image::Rgb([x as u8 * 9, y as u8 * 9, 40]));
        img.save(dir.path().join("a.png")).unwrap();
        let spec = format!("folder:{}", dir.path().display());
        let r = resolve_run(&RunRequest {
            image_size: Some(8),
            channels: Some(1),
            ..req("vae", &spec)
        })
        .unwrap();
        assert_eq!(r.data.example_shape(), vec![1, 8, 8]);
        assert_eq!((r.run.image_size, r.run.channels), (Some(8), Some(1)));
        // The same run reopens its data at that size (as a resumed run does).
        assert_eq!(
            open_run_data(&r.run).unwrap().example_shape(),
            vec![1, 8, 8]
        );
        // Fixed-size data refuse a resize rather than silently ignore it.
        let e = resolve_run(&RunRequest {
            image_size: Some(16),
            ..req("vae", "digits")
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("8x8") && e.contains("16"), "{e}");
    }
}
