//! `genlab demo`: the main job on embedded data, with no network.
//!
//! Trains a DDPM on the eight-gaussians toy set and one on the 8x8 digits shipped inside
//! genlab, samples both, and writes the pictures, loss curves and an `index.html` that ties
//! them together.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use clap::Args;

use genlab_report::{Block, Page, Section};

use genlab_train::Trained;

use crate::cmd_train::{self, TrainArgs};

#[derive(Args)]
pub struct DemoArgs {
    /// Output directory (created; must not already hold a demo).
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Training steps of the 2-D model.
    #[arg(long, default_value_t = 1200)]
    pub points_steps: u64,
    /// Training steps of the digits model (the demo's budget; a few thousand look better).
    #[arg(long, default_value_t = 700)]
    pub digits_steps: u64,
    /// Seed of both runs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn rel(p: &Path, base: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}

fn section(
    title: &str,
    text: String,
    t: &Trained,
    dir: &Path,
    base: &Path,
    secs: f64,
) -> anyhow::Result<Section> {
    let mut blocks = vec![Block::Text(text)];
    if let Some(p) = &t.preview {
        blocks.push(Block::Image {
            src: rel(&p.samples_png, base),
            caption: "samples (EMA weights, DDIM 50 steps)".into(),
        });
        if let Some(r) = &p.real_png {
            blocks.push(Block::Image {
                src: rel(r, base),
                caption: "training examples".into(),
            });
        }
        // The summary's first line names the picture just shown; keep the numbers only.
        let numbers: Vec<&str> = p.summary.lines().skip(1).collect();
        if !numbers.is_empty() {
            blocks.push(Block::Text(numbers.join("\n")));
        }
    }
    let svg =
        std::fs::read_to_string(dir.join(genlab_train::outputs::LOSS_SVG)).unwrap_or_default();
    blocks.push(Block::Svg(svg));
    blocks.push(Block::Table {
        header: vec![
            "steps".into(),
            "wall-clock (s)".into(),
            "steps/s".into(),
            "final loss".into(),
        ],
        rows: vec![vec![
            t.outcome.step.to_string(),
            format!("{secs:.1}"),
            format!("{:.1}", t.outcome.step as f64 / t.outcome.seconds.max(1e-9)),
            format!("{:.4}", t.outcome.last_loss),
        ]],
    });
    blocks.push(Block::Text(format!(
        "Resolved config (also in {}/config.json; the checkpoint is {}/checkpoint.safetensors):",
        rel(dir, base),
        rel(dir, base)
    )));
    blocks.push(Block::Code(serde_json::to_string_pretty(&t.run.to_tree())?));
    Ok(Section {
        heading: title.into(),
        blocks,
    })
}

pub fn run(a: DemoArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    let points_dir = a.out.join("eight-gaussians");
    let digits_dir = a.out.join("digits");
    for d in [&points_dir, &digits_dir] {
        if d.exists() {
            bail!(
                "{} already holds a demo run; remove it or choose another --out",
                d.display()
            );
        }
    }
    let started = Instant::now();
    let mut sections = vec![];
    // The demo's own choices of model and data (defaults, not name checks).
    let model = "ddpm";
    let jobs = [
        ("eight-gaussians", &points_dir, a.points_steps,
         "A DDPM with an MLP denoiser trained on a mixture of eight Gaussians (radius 2, std 0.2). \
          Grey: training data; blue: model samples."),
        ("digits", &digits_dir, a.digits_steps,
         "A DDPM with a small U-Net trained on the 1,797 8x8 handwritten digits (UCI optdigits) \
          that ship inside genlab."),
    ];
    for (data, dir, steps, text) in jobs {
        eprintln!("demo: training {model} on {data} for {steps} steps");
        let t0 = Instant::now();
        let args = TrainArgs {
            model: Some(model.into()),
            data: Some(data.into()),
            steps: Some(steps),
            seed: Some(a.seed),
            out: dir.clone(),
            ..Default::default()
        };
        let t = cmd_train::train(&args, device)?;
        if t.outcome.interrupted {
            bail!("interrupted; partial results are in {}", a.out.display());
        }
        let secs = t0.elapsed().as_secs_f64();
        if let Some(p) = &t.preview {
            eprintln!("{}", p.summary);
        }
        sections.push(section(
            &format!("DDPM on {data}"),
            text.to_string(),
            &t,
            dir,
            &a.out,
            secs,
        )?);
    }
    let total = started.elapsed().as_secs_f64();
    sections.push(Section {
        heading: "How this was made".into(),
        blocks: vec![Block::Code(format!(
            "genlab demo --out {} --points-steps {} --digits-steps {} --seed {}\n\
             total wall-clock: {total:.1} s\n\
             sample again:  genlab sample --ckpt {} --n 2000 --out s.png",
            a.out.display(),
            a.points_steps,
            a.digits_steps,
            a.seed,
            points_dir.display()
        ))],
    });
    let page = Page {
        title: "genlab demo: DDPM on 2-D data and 8x8 digits".into(),
        sections,
    };
    let index = a.out.join("index.html");
    genlab_report::write_html(&page, &index)?;
    println!("demo finished in {total:.1} s: open {}", index.display());
    Ok(())
}
