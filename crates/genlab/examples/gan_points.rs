//! A non-saturating GAN (Goodfellow et al. 2014) on eight gaussians: train, then how many
//! of the eight modes its samples cover (the mode-collapse measure).
//!
//! `cargo run --release -p genlab --example gan_points [-- OUT_DIR]`

use genlab::{load, train, Rng, RunRequest, SampleRequest};

fn main() -> genlab::Result<()> {
    let out = std::env::args().nth(1).unwrap_or("runs/example-gan".into());
    let request = RunRequest::new("gan", "eight-gaussians", &out)
        .steps(3000)
        .set("gan.loss=non-saturating");
    train(&request)?;
    let run = load(out.as_ref())?;
    let req = SampleRequest {
        n: 2000,
        sampler: String::new(),
        options: Default::default(),
        batch_size: 2000,
        ..Default::default()
    };
    let s = run.model.sample(&req, &mut Rng::new(1), &mut |_, _| {})?;
    let coverage = genlab::data::dataset_info("eight-gaussians")?
        .mode_coverage
        .expect("eight gaussians has modes");
    let c = coverage(&genlab::training::outputs::to_points(&s.x)?);
    println!(
        "{:.1}% of samples within 3 std of a mode; modes holding >= 5%: {} of 8",
        100.0 * c.fraction_within_3std,
        c.modes_covered(0.05)
    );
    Ok(())
}
