//! `genlab img2img`: SDEdit (Meng et al. 2022) with any diffusion checkpoint and sampler:
//! noise images part of the way, denoise them back (`genlab_models::Edit::img2img`).

use std::time::Instant;

use anyhow::Context;
use clap::Args;

use genlab_core::Rng;
use genlab_sampling::SamplerOptions;

use crate::edit_args::EditArgs;

#[derive(Args)]
pub struct Img2ImgArgs {
    #[command(flatten)]
    pub edit: EditArgs,
    /// How far to noise the images, in (0, 1]: 1 starts from (almost) pure noise, small
    /// values keep the layout. A comma-separated list gives one column per strength.
    #[arg(long, default_value = "0.6")]
    pub strength: String,
    /// Sampler (see `genlab list`).
    #[arg(long, default_value = "ddim")]
    pub sampler: String,
    /// Sampling steps over the full schedule (a strength s runs about s of them).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
}

fn strengths(s: &str) -> anyhow::Result<Vec<f64>> {
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0 && *v <= 1.0)
                .with_context(|| {
                    format!("--strength expects numbers in (0, 1] like 0.6 or 0.2,0.6,1, got `{p}`")
                })
        })
        .collect()
}

pub fn run(a: Img2ImgArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    let strengths = strengths(&a.strength)?;
    let (loaded, src) = a.edit.load(device)?;
    let editor = loaded.model.as_editor().expect("checked by load");
    let mut req = a.edit.request(&src, loaded.model.num_classes())?;
    req.sampler = a.sampler.clone();
    req.options = SamplerOptions {
        steps: a.steps,
        ..Default::default()
    };
    let t0 = Instant::now();
    let mut results = Vec::new();
    for &s in &strengths {
        let pb = crate::progress::bar(0, "img2img [{bar:30}] {pos}/{len} network evaluations");
        let out = editor.img2img(
            &src.images,
            s,
            &req,
            &mut Rng::derive(a.edit.seed, "img2img"),
            &mut |d, t| {
                pb.set_length(t as u64);
                pb.set_position(d as u64)
            },
        )?;
        pb.finish_and_clear();
        println!("strength {s}: {} network evaluations per image", out.nfe);
        results.push(out.x);
    }
    let mut columns = vec![&src.images];
    columns.extend(results.iter());
    let sidecar = serde_json::json!({
        "command": "img2img",
        "strengths": strengths,
        "sampler": a.sampler,
        "steps": a.steps,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    let last = results.last().expect("at least one strength");
    println!("{}", a.edit.write(&src, &columns, last, sidecar)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_lists_parse_and_out_of_range_values_are_errors() {
        assert_eq!(strengths("0.2, 1").unwrap(), vec![0.2, 1.0]);
        for bad in ["0", "1.5", "x", "0.3,,0.4", "-0.1"] {
            let e = strengths(bad).unwrap_err().to_string();
            assert!(e.contains("--strength"), "{bad}: {e}");
        }
    }
}
