//! `genlab compare`: the same seeds sampled by several samplers at several step counts,
//! side by side: one picture per (sampler, steps) and an index.html table of them with the
//! network evaluations each run actually used (and, on eight gaussians, mode coverage).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use genlab_core::Rng;
use genlab_models::SampleRequest;
use genlab_report::{Block, Page, Section};
use genlab_sampling::{SamplerOptions, SolverOptions};
use genlab_train::outputs::save_samples;
use genlab_train::session::mode_coverage_line;

#[derive(Args)]
pub struct CompareArgs {
    /// Run directory of a diffusion model (`genlab train --model ddpm`).
    #[arg(long)]
    pub ckpt: PathBuf,
    /// Comma-separated samplers (see `genlab list`), or `all`.
    #[arg(
        long,
        default_value = "ddpm,ddim,euler,heun,dpm-solver,dpm++2m,euler-ancestral"
    )]
    pub samplers: String,
    /// Comma-separated step counts; every sampler runs at each (rk45 picks its own).
    #[arg(long, default_value = "10,20,50")]
    pub steps: String,
    /// Samples per picture (the same noise for every sampler: the same seed).
    #[arg(long, default_value_t = 16)]
    pub n: usize,
    /// Seed of the initial noise (and of stochastic samplers' noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory: <sampler>-<steps>.png and index.html.
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_steps(s: &str) -> anyhow::Result<Vec<usize>> {
    let v: Vec<usize> = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .ok()
                .filter(|&k| k > 0)
                .with_context(|| {
                    format!("--steps expects positive integers like 10,20,50, got `{p}`")
                })
        })
        .collect::<anyhow::Result<_>>()?;
    if v.is_empty() {
        bail!("--steps needs at least one step count");
    }
    Ok(v)
}

pub fn run(a: CompareArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1, got 0");
    }
    let steps = parse_steps(&a.steps)?;
    let known: Vec<&str> = genlab_sampling::sampler_names()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let samplers: Vec<String> = if a.samplers.trim() == "all" {
        known.iter().map(|s| s.to_string()).collect()
    } else {
        a.samplers
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    if let Some(bad) = samplers.iter().find(|s| !known.contains(&s.as_str())) {
        bail!("unknown sampler `{bad}`; known: {}", known.join(", "));
    }
    let loaded = genlab_train::load_model(&a.ckpt, true, device)
        .with_context(|| format!("loading {}", a.ckpt.display()))?;
    if !genlab_train::find_model(&loaded.run.model)?
        .caps
        .sampler_zoo
    {
        bail!(
            "`genlab compare` compares diffusion samplers; {} is a `{}` run, which does not \
             sample through them",
            a.ckpt.display(),
            loaded.run.model
        );
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("creating the output directory {}", a.out.display()))?;
    let images = loaded.model.data_space().images;
    // Data with isolated modes (eight gaussians) get a mode-coverage column.
    let modes = genlab_data::dataset_info(&loaded.run.data)?
        .mode_coverage
        .is_some();
    let mut rows = Vec::new();
    let mut blocks = Vec::new();
    for s in &samplers {
        // rk45 picks its own steps: one run is enough.
        let ks = if s == "rk45" { &steps[..1] } else { &steps[..] };
        for &k in ks {
            let req = SampleRequest {
                n: a.n,
                sampler: s.clone(),
                options: SamplerOptions {
                    steps: k,
                    eta: 0.0,
                    clip_x0: None,
                    solver: SolverOptions::default(),
                    ..Default::default()
                },
                batch_size: a.n,
                ..Default::default()
            };
            let t0 = Instant::now();
            let out = crate::progress::sample_with_bar(
                loaded.model.as_ref(),
                &req,
                &mut Rng::derive(a.seed, "sample"),
            )
            .with_context(|| format!("{s} at {k} steps"))?;
            let secs = t0.elapsed().as_secs_f64();
            let name = format!("{s}-{k}.png");
            save_samples(&out.x, images, &a.out.join(&name), None)?;
            let mut row = vec![
                s.clone(),
                k.to_string(),
                out.nfe.to_string(),
                format!("{secs:.1}"),
            ];
            if let Some((_, cov)) = mode_coverage_line(&loaded.run.data, &out.x)? {
                row.push(format!(
                    "{:.1}% / {:.1}%",
                    100.0 * cov.fraction_within_3std,
                    100.0 * cov.smallest_mode()
                ));
            }
            println!("{}", row.join("  "));
            rows.push(row);
            blocks.push(Block::Image {
                src: name,
                caption: format!("{s}, {k} steps, {} NFE", out.nfe),
            });
        }
    }
    let mut header: Vec<String> = ["sampler", "steps", "NFE", "seconds"]
        .map(String::from)
        .to_vec();
    if modes {
        header.push("within 3 std / smallest mode".into());
    }
    let page = Page {
        title: format!("genlab compare: {}", a.ckpt.display()),
        sections: vec![
            Section {
                heading: "Runs".into(),
                blocks: vec![
                    Block::Text(format!(
                        "{} samples per picture from the same initial noise (seed {}), checkpoint step {}.",
                        a.n, a.seed, loaded.step
                    )),
                    Block::Table { header, rows },
                ],
            },
            Section {
                heading: "Samples".into(),
                blocks,
            },
        ],
    };
    let index = a.out.join("index.html");
    genlab_report::write_html(&page, &index)?;
    println!("wrote {}", index.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lists_parse_and_bad_ones_are_clear_errors() {
        assert_eq!(parse_steps("10, 20,50").unwrap(), vec![10, 20, 50]);
        for bad in ["", "10,x", "0", "10,,20"] {
            let e = parse_steps(bad).unwrap_err().to_string();
            assert!(e.contains("--steps"), "{bad}: {e}");
        }
    }
}
