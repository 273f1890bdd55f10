//! DDPM (Ho et al. 2020) on a 2-D toy set: train, sample with two samplers, measure how
//! close the samples are to the data.
//!
//! `cargo run --release -p genlab --example ddpm_points [-- OUT_DIR]`

use genlab::metrics::{wasserstein, FeatureMatrix};
use genlab::{load, train, Rng, RunRequest, SampleRequest, SamplerOptions};

fn main() -> genlab::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or("runs/example-ddpm".into());
    let t = train(&RunRequest::new("ddpm", "two-moons", &out).steps(1500))?;
    println!(
        "trained to step {} (loss {:.4})",
        t.outcome.step, t.outcome.last_loss
    );
    let run = load(out.as_ref())?;
    let data = genlab::data::open_dataset("two-moons", &Default::default())?;
    let idx: Vec<usize> = (0..1000).collect();
    let real = genlab::data::make_batch(data.as_ref(), &idx, &genlab::Device::Cpu)?.x;
    let real = FeatureMatrix::from_f32(1000, 2, &real.flatten_all()?.to_vec1()?, "data")?;
    for (sampler, steps) in [("ddim", 20), ("dpm++2m", 10)] {
        let req = SampleRequest {
            n: 1000,
            sampler: sampler.into(),
            options: SamplerOptions {
                steps,
                ..Default::default()
            },
            batch_size: 1000,
            ..Default::default()
        };
        let s = run.model.sample(&req, &mut Rng::new(1), &mut |_, _| {})?;
        let fake = FeatureMatrix::from_f32(1000, 2, &s.x.flatten_all()?.to_vec1()?, "samples")?;
        let w = wasserstein::wasserstein(&real, &fake, &Default::default())?;
        println!(
            "{sampler:>8}, {} NFE: Wasserstein-1 to the data {:.4}",
            s.nfe, w.value
        );
    }
    Ok(())
}
