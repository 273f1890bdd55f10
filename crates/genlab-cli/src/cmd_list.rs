//! `genlab list`: everything the registries hold, for people or (`--json`) for programs.

use clap::Args;
use serde_json::{json, Value};

#[derive(Args)]
pub struct ListArgs {
    /// Print every registry as one JSON object (names, descriptions, capabilities).
    #[arg(long)]
    pub json: bool,
}

/// Every registry as JSON: what `genlab list --json` prints.
fn registries() -> anyhow::Result<Value> {
    let models: Vec<Value> = genlab_train::MODELS
        .iter()
        .map(|m| json!({ "name": m.name, "description": m.description, "capabilities": m.caps }))
        .collect();
    let samplers: Vec<Value> = genlab_sampling::SAMPLERS
        .iter()
        .map(|s| json!({ "name": s.name, "description": s.description }))
        .collect();
    let mut datasets = Vec::new();
    for d in genlab_data::DATASETS {
        let mut v = json!({
            "name": d.name,
            "usage": d.usage(),
            "argument": d.arg,
            "argument_required": d.arg_required,
            "description": d.description,
        });
        // Datasets whose argument is a path have no info without one.
        if let Ok(info) = (d.info)(None) {
            v["kind"] = info.kind.as_str().into();
            v["shape"] = json!(info.shape);
            v["labels"] = json!(info.labels);
            v["num_classes"] = json!(info.num_classes);
            v["held_out"] = json!(info.held_out);
            v["known_density"] = info.log_density.is_some().into();
            v["mode_coverage"] = info.mode_coverage.is_some().into();
        }
        datasets.push(v);
    }
    let metrics: Vec<Value> = genlab_metrics::suite::METRICS
        .iter()
        .map(|m| json!({ "name": m.name, "description": m.description, "needs": m.needs }))
        .collect();
    let extractors: Vec<Value> = genlab_metrics::features::EXTRACTORS
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "description": e.description,
                "input": e.input.map(|(size, channels)| json!({ "size": size, "channels": channels })),
                "default_weights": e.default_weights.map(|f| f().display().to_string()),
            })
        })
        .chain(std::iter::once(json!({
            "name": "RUN_DIR",
            "description": genlab_train::extractor_names().last().map(|e| e.1),
        })))
        .collect();
    let workloads: Vec<Value> = crate::bench::workloads()
        .map(|w| json!({ "name": w.name, "unit": w.unit, "description": w.description }))
        .collect();
    let fetchable: Vec<Value> = genlab_train::fetch::FETCHABLE
        .iter()
        .map(|f| json!({ "name": f.name, "description": f.description }))
        .collect();
    let text_encoders: Vec<Value> = genlab_train::text_encoders::TEXT_ENCODERS
        .iter()
        .map(|e| json!({ "name": e.name, "dim": e.dim, "fetch": e.fetch, "description": e.description }))
        .collect();
    Ok(json!({
        "models": models,
        "samplers": samplers,
        "datasets": datasets,
        "metrics": metrics,
        "feature_extractors": extractors,
        "bench_workloads": workloads,
        "fetchable": fetchable,
        "text_encoders": text_encoders,
    }))
}

pub fn run(a: ListArgs) -> anyhow::Result<()> {
    if a.json {
        println!("{}", serde_json::to_string_pretty(&registries()?)?);
        return Ok(());
    }
    let section = |title: &str, rows: Vec<(String, String)>| {
        println!("{title}:");
        for (n, d) in rows {
            println!("  {n:<22} {d}");
        }
        println!();
    };
    section(
        "models (genlab train --model NAME)",
        genlab_train::MODELS
            .iter()
            .map(|m| (m.name.to_string(), m.description.to_string()))
            .collect(),
    );
    section(
        "samplers (genlab sample --sampler NAME)",
        genlab_sampling::sampler_names()
            .into_iter()
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .collect(),
    );
    section(
        "datasets (genlab train --data SPEC)",
        genlab_data::dataset_names()
            .into_iter()
            .map(|(n, d)| (n, d.to_string()))
            .collect(),
    );
    section(
        "metrics (genlab eval --metrics A,B,...)",
        genlab_metrics::suite::METRICS
            .iter()
            .map(|m| (m.name.to_string(), m.description.to_string()))
            .collect(),
    );
    section(
        "CLIP metrics (genlab eval --ckpt CLIP_RUN --metrics A,B,...)",
        genlab_train::clip_eval::CLIP_METRICS
            .iter()
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .collect(),
    );
    section(
        "feature extractors (genlab eval --features NAME)",
        genlab_train::extractor_names()
            .into_iter()
            .map(|(n, d)| (n, d.to_string()))
            .collect(),
    );
    section(
        "benchmark workloads (genlab bench --workload A,B,...)",
        crate::bench::workloads()
            .map(|w| (w.name.to_string(), w.description.to_string()))
            .collect(),
    );
    section(
        "fetchable (genlab data fetch NAME)",
        genlab_train::fetch::FETCHABLE
            .iter()
            .map(|f| (f.name.to_string(), f.description.to_string()))
            .collect(),
    );
    section(
        "text encoders (genlab embed-text --model NAME)",
        genlab_train::text_encoders::TEXT_ENCODERS
            .iter()
            .map(|e| (e.name.to_string(), e.description.to_string()))
            .collect(),
    );
    Ok(())
}

/// `genlab semi list` / `genlab ssl list`: the methods (name, description, paper) as a table,
/// or with `json` the methods and the command's default settings.
pub fn print_methods(
    methods: &[genlab_labels::registry::MethodInfo],
    defaults: serde_json::Value,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let v = serde_json::json!({"methods": methods, "defaults": defaults});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let w = methods.iter().map(|m| m.name.len()).max().unwrap_or(0) + 2;
        for m in methods {
            println!(
                "  {:<w$} {}\n  {:<w$} {}",
                m.name, m.description, "", m.paper
            );
        }
    }
    Ok(())
}
