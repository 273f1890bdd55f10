//! Fuzz harness of a training checkpoint's metadata (`genlab_train::trainer::parse_metadata`:
//! the resolved config, step, RNG state and data order, as JSON in the safetensors header)
//! and of `RunConfig::from_tree`. Generated inputs:
//!
//! - `mutated_metadata`: the metadata of a real run with 1 to 4 edits at random places of
//!   its JSON tree (a value replaced by one of another type, huge or negative numbers,
//!   deleted keys, unknown keys), in the current one-key layout and the older two-key one;
//! - `random_metadata_text`: any text as the metadata;
//! - `random_config_trees`: random JSON trees as a run config.
//!
//! Every case must return without panicking, and errors must be checkpoint or config
//! errors. The tensor part of the file is fuzzed by genlab-core's safetensors harness.
//! `PROPTEST_CASES=N` runs longer.

#[path = "../../genlab-core/tests/support/fuzz.rs"]
mod fuzz;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use genlab_core::{Error, Rng};
use genlab_data::{Dataset, EpochSampler, Toy2d, Toy2dKind};
use genlab_models::DataSpace;
use genlab_train::trainer::{parse_metadata, Quiet, RunState, CHECKPOINT_FILE};
use genlab_train::{find_model, train, RunConfig, TrainConfig};
use proptest::prelude::*;
use serde_json::{json, Value};

#[global_allocator]
static ALLOC: fuzz::LargestAlloc = fuzz::LargestAlloc;

/// Largest single allocation per byte of metadata (JSON trees, the config's defaults).
const ALLOC_PER_INPUT_BYTE: usize = 64;
/// ... plus this.
const ALLOC_BASE: usize = 1 << 20;

fn run_config() -> RunConfig {
    let entry = find_model("ddpm").unwrap();
    let space = DataSpace {
        shape: vec![2],
        images: false,
    };
    let mut model_config = (entry.default_config)(&space).unwrap();
    model_config["timesteps"] = 20.into();
    model_config["net"]["mlp"]["hidden"] = 16.into();
    RunConfig {
        model: "ddpm".into(),
        data: "eight-gaussians".into(),
        seed: 5,
        image_size: None,
        channels: None,
        train: TrainConfig {
            steps: 2,
            batch_size: 8,
            log_every: 1,
            ckpt_every: 1,
            ..TrainConfig::for_points()
        },
        model_config,
    }
}

fn real_metadata() -> Value {
    let state = RunState {
        format: 1,
        step: 7,
        noise_rng: Rng::new(3).state(),
        data_order: EpochSampler::new(100, 5),
        step_state: json!({"opt_t": 7}),
    };
    json!({ "config": run_config().to_tree(), "state": state })
}

fn is_typed_error(e: &Error) -> bool {
    matches!(e, Error::Checkpoint(m) | Error::Config(m) if !m.is_empty())
}

fn check(meta: HashMap<String, String>) -> Result<(), TestCaseError> {
    let size: usize = meta.values().map(String::len).sum();
    fuzz::reset();
    let r = parse_metadata(&meta, Path::new("ckpt.safetensors"));
    let largest = fuzz::largest();
    prop_assert!(
        largest <= ALLOC_PER_INPUT_BYTE * size + ALLOC_BASE,
        "allocated {largest} bytes at once for {size} bytes of metadata"
    );
    match r {
        Ok((run, state)) => {
            // What parses is usable: it serialises back and validates.
            prop_assert!(run.train.validate().is_ok());
            prop_assert!(serde_json::to_string(&state).is_ok());
        }
        Err(e) => prop_assert!(is_typed_error(&e), "{}", e),
    }
    Ok(())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(1u64 << 40)),
            Just(json!(1.5)),
            Just(json!(1e300)),
            any::<i64>().prop_map(|v| json!(v)),
        ],
        "[a-z]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{1,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Every path (object keys and array indices) of `v`, outermost first.
fn paths(v: &Value, here: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                here.push(k.clone());
                paths(c, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                here.push(i.to_string());
                paths(c, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(usize, Value),
    Delete(usize),
    AddKey(usize, String, Value),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<usize>(), json_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        1 => any::<usize>().prop_map(JsonEdit::Delete),
        1 => (any::<usize>(), "[a-z_]{1,6}", json_value()).prop_map(|(i, k, v)| JsonEdit::AddKey(i, k, v)),
    ]
}

/// The node at path `p` under `v`.
fn node_mut<'a>(v: &'a mut Value, p: &[String]) -> Option<&'a mut Value> {
    let Some((k, rest)) = p.split_first() else {
        return Some(v);
    };
    let child = match v {
        Value::Object(m) => m.get_mut(k)?,
        Value::Array(a) => a.get_mut(k.parse::<usize>().ok()?)?,
        _ => return None,
    };
    node_mut(child, rest)
}

fn apply(root: &mut Value, e: &JsonEdit) {
    let mut all = Vec::new();
    paths(root, &mut Vec::new(), &mut all);
    let pick = |i: &usize| all[i % all.len()].clone();
    match e {
        JsonEdit::Replace(i, v) => {
            if let Some(n) = node_mut(root, &pick(i)) {
                *n = v.clone();
            }
        }
        JsonEdit::Delete(i) => {
            let p = pick(i);
            if let Some((last, parent)) = p.split_last() {
                match node_mut(root, parent) {
                    Some(Value::Object(m)) => {
                        m.remove(last);
                    }
                    Some(Value::Array(a)) => {
                        if let Some(k) = last.parse::<usize>().ok().filter(|&k| k < a.len()) {
                            a.remove(k);
                        }
                    }
                    _ => {}
                }
            }
        }
        JsonEdit::AddKey(i, k, v) => {
            if let Some(Value::Object(m)) = node_mut(root, &pick(i)) {
                m.insert(k.clone(), v.clone());
            }
        }
    }
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn mutated_metadata(edits in proptest::collection::vec(json_edit(), 1..5), two_keys in any::<bool>()) {
        let mut meta = real_metadata();
        for e in &edits {
            apply(&mut meta, e);
        }
        let map: HashMap<String, String> = if two_keys {
            [
                ("genlab.config".to_string(), meta.get("config").map_or("null".into(), Value::to_string)),
                ("genlab.state".to_string(), meta.get("state").map_or("null".into(), Value::to_string)),
            ]
            .into()
        } else {
            [("genlab".to_string(), meta.to_string())].into()
        };
        check(map)?;
    }

    #[test]
    fn random_metadata_text(text in "\\PC{0,64}", key in prop_oneof![Just("genlab"), Just("genlab.state"), Just("other")]) {
        check([(key.to_string(), text)].into())?;
    }

    #[test]
    fn random_config_trees(tree in json_value()) {
        if let Err(e) = RunConfig::from_tree(&tree) {
            prop_assert!(is_typed_error(&e), "{}", e);
        }
    }
}

/// The unmutated metadata parses: the harness's "no false errors" check.
#[test]
fn real_metadata_parses() {
    let map = [("genlab".to_string(), real_metadata().to_string())].into();
    let (run, state) = parse_metadata(&map, Path::new("c")).unwrap();
    assert_eq!(run, run_config());
    assert_eq!(state.step, 7);
}

/// `{"genlab": "[1]"}` (valid JSON, not an object): indexing it with `["state"]` panicked.
#[test]
fn metadata_that_is_not_an_object_is_an_error_not_a_panic() {
    for text in ["[1]", "3", "\"s\"", "true"] {
        let map = [("genlab".to_string(), text.to_string())].into();
        let e = parse_metadata(&map, Path::new("c.safetensors")).unwrap_err();
        assert!(
            e.to_string().contains("is not a JSON object"),
            "{text}: {e}"
        );
    }
}

/// Rewrites the checkpoint in `dir` with `edit` applied to its metadata JSON.
fn edit_checkpoint(dir: &Path, edit: impl Fn(&mut Value)) {
    let p = dir.join(CHECKPOINT_FILE);
    let (tensors, mut meta) =
        genlab_core::io::load_tensors_with_metadata(&p, &candle_core::Device::Cpu).unwrap();
    let mut v: Value = serde_json::from_str(&meta["genlab"]).unwrap();
    edit(&mut v);
    meta.insert("genlab".into(), v.to_string());
    genlab_core::io::save_tensors_with_metadata(&p, &tensors, meta).unwrap();
}

fn resume(dir: &Path, steps: u64) -> genlab_core::Result<genlab_train::TrainOutcome> {
    let mut run = run_config();
    run.train.steps = steps;
    let data = Toy2d::new(Toy2dKind::EightGaussians, 100, 5);
    let entry = find_model(&run.model).unwrap();
    let mut step = (entry.build_step)(
        &run.model_config,
        &run.train,
        run.seed,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    train(
        dir,
        &run,
        &data as &dyn Dataset,
        step.as_mut(),
        steps > 2,
        &mut Quiet,
        &AtomicBool::new(false),
    )
}

/// A checkpoint whose data order claims 2^40 examples: resuming drew a permutation of that
/// length (8 TB) at the first batch; a claim of 101 for a dataset of 100 failed later with
/// an index error, and 99 silently trained on another order. The length is now checked
/// against the dataset when the checkpoint is loaded.
#[test]
fn resume_checks_the_data_order_against_the_dataset() {
    for len in [1u64 << 40, 101, 99] {
        let dir = tempfile::tempdir().unwrap();
        resume(dir.path(), 2).unwrap();
        edit_checkpoint(dir.path(), |v| v["state"]["data_order"]["len"] = len.into());
        fuzz::reset();
        let e = resume(dir.path(), 4).unwrap_err().to_string();
        assert!(fuzz::largest() < 64 << 20, "allocated {}", fuzz::largest());
        assert!(
            e.contains(&format!("sampler state is for {len} examples"))
                && e.contains("the dataset has 100"),
            "{e}"
        );
    }
}

/// An optimizer step count of 2^32 turned the bias correction `1 - beta^(t as i32)` into
/// 1 - beta^0 = 0 and every update into a division by zero; now refused when loading.
#[test]
fn resume_refuses_an_optimizer_step_count_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    resume(dir.path(), 2).unwrap();
    edit_checkpoint(dir.path(), |v| {
        v["state"]["step_state"]["opt_t"] = (1u64 << 32).into()
    });
    let e = resume(dir.path(), 4).unwrap_err().to_string();
    assert!(e.contains("optimizer step count 4294967296"), "{e}");
}
