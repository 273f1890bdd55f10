//! Progressive distillation (Salimans & Ho 2022): a v-prediction DDPM on eight gaussians
//! taught down from 16 to 4 sampling steps, round by round.
//!
//! `cargo run --release -p genlab --example distill_points [-- OUT_DIR]`

use std::sync::atomic::AtomicBool;

use genlab::training::{distill_ladder, LadderRequest, RoundEvent};
use genlab::{train, Device, Quiet, RunRequest};

fn main() -> genlab::Result<()> {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or("runs/example-distill".into()),
    );
    let teacher = out.join("teacher");
    let request = RunRequest::new("ddpm", "eight-gaussians", &teacher)
        .steps(2000)
        .set("ddpm.prediction=v");
    train(&request)?;
    let req = LadderRequest {
        teacher,
        out: out.join("students"),
        from: 16,
        to: 4,
        steps_per_round: Some(500),
        overrides: vec![],
        seed: None,
    };
    let done = distill_ladder(
        &req,
        &Device::Cpu,
        &mut Quiet,
        &AtomicBool::new(false),
        &mut |e| {
            if let RoundEvent::Trained {
                student_steps,
                trained,
            } = e
            {
                let preview = trained.preview.as_ref().map_or("", |p| p.summary.as_str());
                println!("{student_steps}-step student: {preview}");
            }
        },
    )?;
    println!("the 4-step student is {}", done.student.display());
    Ok(())
}
