//! A normalizing flow (spline couplings, Durkan et al. 2019) on eight gaussians: its exact
//! log-likelihood on held-out points against the true density's.
//!
//! `cargo run --release -p genlab --example flow_points [-- OUT_DIR]`

use genlab::training::nll::{evaluate_nll, NllOptions};
use genlab::{load, train, RunRequest};

fn main() -> genlab::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or("runs/example-flow".into());
    train(&RunRequest::new("flow", "eight-gaussians", &out).steps(1500))?;
    let run = load(out.as_ref())?;
    // Other points than the training set's: another seed.
    let data = genlab::training::open_data("eight-gaussians", 1, None, None)?;
    let opts = NllOptions {
        n: Some(2000),
        samples: 1,
        batch_size: 2000,
        seed: 1,
    };
    let s = evaluate_nll(
        run.model.as_ref(),
        "eight-gaussians",
        data.as_ref(),
        &opts,
        &mut |_, _| {},
    )?;
    let r = s.reference.expect("eight gaussians has a known density");
    println!(
        "{}: NLL {:.3} nats, {:.3} above the true density's {:.3}",
        s.method, s.nll_nats, r.gap_nats, r.true_nll_nats
    );
    Ok(())
}
