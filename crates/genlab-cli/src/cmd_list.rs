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
    Ok(())
}
