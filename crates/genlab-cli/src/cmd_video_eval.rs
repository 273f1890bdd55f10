//! `genlab video-eval --real moving-mnist:test --fake FILE.npy --classifier CLF_RUN
//! [--video-features VCLF_RUN] --n N`: the video metrics of `genlab_train::video_eval`
//! (digit identity per frame, billiard motion error, FVD-style Frechet distance) on
//! generated clips beside real and frame-shuffled real clips; a table, and JSON with --json.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use genlab_metrics::features::video_classifier::VideoClassifierExtractor;
use genlab_train::steps::video_classifier::load_video_classifier;
use genlab_train::video_eval::{dataset_clips, evaluate_video, read_fake_clips};

#[derive(Args, Debug)]
pub struct VideoEvalArgs {
    /// Real clips: a video dataset spec (e.g. moving-mnist:test); its first 2N clips are used.
    #[arg(long, default_value = "moving-mnist:test")]
    real: String,
    /// Generated clips: a .npy of shape [N, T, C, H, W] in [0, 1] (`genlab sample` on a video
    /// model), with the digits asked for in FILE.labels.npy beside it or --labels.
    #[arg(long, value_name = "FILE.npy")]
    fake: Option<PathBuf>,
    /// A .npy of N class indices: the digit each fake clip should show.
    #[arg(long, value_name = "FILE.npy")]
    labels: Option<PathBuf>,
    /// The MNIST digit classifier run (`genlab train --model classifier --data mnist`) that
    /// classifies every frame after MNIST framing.
    #[arg(long, value_name = "RUN")]
    classifier: PathBuf,
    /// A video-classifier run (`genlab train --model video-classifier --data moving-mnist`):
    /// its features give the FVD-style Frechet distance (left out: no Frechet distance).
    #[arg(long, value_name = "RUN")]
    video_features: Option<PathBuf>,
    /// Clips per set (the real data gives 2N: N as the reference, N as the real-vs-real
    /// comparison).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Without --fake: measure frame-shuffled real clips as the "fake" set (a check of the
    /// metrics themselves).
    #[arg(long)]
    fake_shuffled_real: bool,
    /// Seed of the frame shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE.json")]
    json: Option<PathBuf>,
}

pub fn run(a: VideoEvalArgs) -> anyhow::Result<()> {
    if let Some(p) = &a.json {
        genlab_train::outputs::check_writable(p)?;
    }
    let t0 = std::time::Instant::now();
    let ds = genlab_train::open_data(&a.real, a.seed, None, None)?;
    if ds.len() < 2 * a.n {
        bail!(
            "{} has {} clips; --n {} needs {}",
            a.real,
            ds.len(),
            a.n,
            2 * a.n
        );
    }
    let real = dataset_clips(ds.as_ref(), 2 * a.n)?;
    let (fake, fake_name) = match (&a.fake, a.fake_shuffled_real) {
        (Some(p), false) => (
            read_fake_clips(p, a.labels.as_deref())?,
            p.display().to_string(),
        ),
        (None, true) => (
            real.slice(a.n, a.n)?.shuffled(a.seed.wrapping_add(2))?,
            format!("{} clips {}..{} frame-shuffled", a.real, a.n, 2 * a.n),
        ),
        _ => bail!("give --fake FILE.npy or --fake-shuffled-real (one of them)"),
    };
    let clf = genlab_train::extractors::open_extractor(
        a.classifier
            .to_str()
            .context("--classifier: not a UTF-8 path")?,
        None,
        &[1, 28, 28],
    )?;
    let vclf = match &a.video_features {
        Some(p) => {
            let (net, run) = load_video_classifier(p)?;
            Some(VideoClassifierExtractor::new(
                net,
                format!("{} trained on {}", p.display(), run.data),
            ))
        }
        None => None,
    };
    let r = evaluate_video(&fake, &real, a.n, clf.as_ref(), vclf.as_ref(), a.seed)?;
    println!("fake: {fake_name}");
    println!(
        "real: {} (A = clips 0..{n}, B = clips {n}..{})",
        a.real,
        2 * a.n,
        n = a.n
    );
    println!("digit classifier: {}", r.digit_classifier);
    println!(
        "{:<44} {:>10} {:>10} {:>14}",
        "measure", "fake", "real A", "shuffled A"
    );
    let pct = |v: f64| format!("{:.2}%", 100.0 * v);
    let row = |name: &str, f: String, r: String, s: String| {
        println!("{name:<44} {f:>10} {r:>10} {s:>14}");
    };
    let i = &r.identity;
    row(
        "frames recognised as the requested digit",
        pct(i.fake.frame_accuracy),
        pct(i.real.frame_accuracy),
        pct(i.shuffled_real.frame_accuracy),
    );
    row(
        "clips with one class in every frame",
        pct(i.fake.persistence),
        pct(i.real.persistence),
        pct(i.shuffled_real.persistence),
    );
    row(
        "... and it is the requested digit",
        pct(i.fake.persistence_requested),
        pct(i.real.persistence_requested),
        pct(i.shuffled_real.persistence_requested),
    );
    row(
        "frames without ink (counted wrong)",
        i.fake.frames_without_ink.to_string(),
        i.real.frames_without_ink.to_string(),
        i.shuffled_real.frames_without_ink.to_string(),
    );
    let m = &r.motion;
    row(
        "motion RMSE vs billiard fit, px (mean)",
        format!("{:.3}", m.fake.mean_rmse),
        format!("{:.3}", m.real.mean_rmse),
        format!("{:.3}", m.shuffled_real.mean_rmse),
    );
    row(
        "motion RMSE, px (median)",
        format!("{:.3}", m.fake.median_rmse),
        format!("{:.3}", m.real.median_rmse),
        format!("{:.3}", m.shuffled_real.median_rmse),
    );
    row(
        "clips skipped by the motion fit (no ink, no room)",
        m.fake.n_skipped.to_string(),
        m.real.n_skipped.to_string(),
        m.shuffled_real.n_skipped.to_string(),
    );
    if let Some(f) = &r.frechet {
        println!(
            "FVD-style Frechet distance (features {}), each vs real A:",
            f.features
        );
        println!(
            "  fake {:.3}   real B {:.3}   real B frame-shuffled {:.3}",
            f.fake_vs_real.fid, f.real_vs_real.fid, f.shuffled_real_vs_real.fid
        );
        println!(
            "  video classifier on real A: digit {}, direction {}",
            pct(f.classifier_on_real.digit_accuracy),
            pct(f.classifier_on_real.direction_accuracy)
        );
    }
    println!("({:.0} s)", t0.elapsed().as_secs_f64());
    if let Some(p) = &a.json {
        let v = serde_json::json!({
            "fake": fake_name,
            "real": a.real,
            "report": r,
        });
        genlab_core::io::write_json(p, &v)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
