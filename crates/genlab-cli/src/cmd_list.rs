//! `genlab list`: everything the registries hold.

pub fn run() -> anyhow::Result<()> {
    println!("models (genlab train --model NAME):");
    for (n, d) in genlab_train::model_names() {
        println!("  {n:<18} {d}");
    }
    println!("\nsamplers (genlab sample --sampler NAME):");
    for (n, d) in genlab_sampling::sampler_names() {
        println!("  {n:<18} {d}");
    }
    println!("\ndatasets (genlab train --data NAME):");
    for (n, d) in genlab_data::dataset_names() {
        println!("  {n:<18} {d}");
    }
    println!("\nmetrics (genlab eval --metrics A,B,...):");
    for (_, n, d) in genlab_metrics::suite::METRICS {
        println!("  {n:<18} {d}");
    }
    println!("\nfeature extractors (genlab eval --features NAME):");
    for (n, d) in [
        ("RUN_DIR", "a classifier run (genlab train --model classifier --data mnist): 128-d features + class probabilities"),
        ("inception", "pytorch-fid's FID Inception-v3 (2048-d pool3); needs pt_inception-2015-12-05-6726825d.pth"),
        ("efficientnet-lite0", "ImageNet EfficientNet-Lite0 (1280-d); genlab data fetch efficientnet-lite0"),
        ("pixels", "raw pixel values, flattened"),
    ] {
        println!("  {n:<18} {d}");
    }
    println!("\nbenchmark workloads (genlab bench --workload A,B,...):");
    for (n, _, d) in crate::bench::WORKLOADS {
        println!("  {n:<18} {d}");
    }
    Ok(())
}
