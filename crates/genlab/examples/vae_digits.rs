//! A VAE (Kingma & Welling 2014) on the 8x8 digits shipped with genlab: train, then the
//! IWAE bound on its log-likelihood and a grid of samples.
//!
//! `cargo run --release -p genlab --example vae_digits [-- OUT_DIR]`

use genlab::models::LikelihoodOptions;
use genlab::{load, train, Rng, RunRequest, SampleRequest};

fn main() -> genlab::Result<()> {
    let out = std::env::args().nth(1).unwrap_or("runs/example-vae".into());
    let t = train(&RunRequest::new("vae", "digits", &out).steps(2000))?;
    println!(
        "trained to step {} (loss {:.4})",
        t.outcome.step, t.outcome.last_loss
    );
    let run = load(out.as_ref())?;
    let data = genlab::data::open_dataset("digits", &Default::default())?;
    let idx: Vec<usize> = (0..200).collect();
    let x = genlab::data::make_batch(data.as_ref(), &idx, &genlab::Device::Cpu)?.x;
    let ll = run
        .model
        .as_likelihood()
        .expect("a VAE has a likelihood bound");
    let opts = LikelihoodOptions {
        samples: 100,
        ..Default::default()
    };
    let r = ll.log_likelihood(&x, None, &opts, &mut Rng::new(2), &mut |_, _| {})?;
    let nll = -r.nats.iter().sum::<f64>() / r.nats.len() as f64;
    println!("{}: NLL <= {nll:.2} nats on 200 training digits", r.method);
    let req = SampleRequest {
        n: 64,
        sampler: String::new(),
        options: Default::default(),
        batch_size: 64,
        ..Default::default()
    };
    let s = run.model.sample(&req, &mut Rng::new(1), &mut |_, _| {})?;
    let png = std::path::Path::new(&out).join("example-samples.png");
    genlab::training::outputs::save_samples(&s.x, true, &png, None)?;
    println!("64 samples in {}", png.display());
    Ok(())
}
