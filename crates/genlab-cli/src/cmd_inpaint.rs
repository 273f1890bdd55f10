//! `genlab inpaint`: fill the masked part of images with any diffusion checkpoint, by
//! replacement or RePaint (`genlab_sampling::inpaint`).

use std::time::Instant;

use anyhow::bail;
use candle_core::Tensor;
use clap::Args;

use genlab_core::Rng;
use genlab_data::masks::{generate_mask, known_from_generate};
use genlab_sampling::inpaint::InpaintOptions;

use crate::edit_args::EditArgs;

#[derive(Args)]
pub struct InpaintArgs {
    #[command(flatten)]
    pub edit: EditArgs,
    /// What to generate: left-half, right-half, top-half, bottom-half, centre-box, strokes
    /// (seeded random brush strokes, --seed), or a PNG of the images' size (white =
    /// generate, black = keep).
    #[arg(long)]
    pub mask: String,
    /// replace (the known part put back at every step) or repaint (Lugmayr et al. 2022:
    /// also jumps back and resamples).
    #[arg(long, default_value = "repaint")]
    pub method: String,
    /// Denoising steps on the respaced grid.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// RePaint: steps between jumps back.
    #[arg(long, default_value_t = 10)]
    pub jump_length: usize,
    /// RePaint: how often each stretch is denoised.
    #[arg(long, default_value_t = 5)]
    pub resample: usize,
}

pub fn run(a: InpaintArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    let opts = match a.method.as_str() {
        "replace" => InpaintOptions::replacement(a.steps),
        "repaint" => InpaintOptions {
            jump_length: a.jump_length,
            resample: a.resample,
            ..InpaintOptions::replacement(a.steps)
        },
        other => bail!("--method {other}: expected replace or repaint"),
    };
    let (loaded, src) = a.edit.load(device)?;
    let editor = loaded.model.as_editor().expect("checked by load");
    let (_, c, h, w) = src.images.dims4()?;
    let generate = generate_mask(&a.mask, h, w, a.edit.seed)?;
    let known = Tensor::from_vec(
        known_from_generate(&generate),
        (1, 1, h, w),
        &candle_core::Device::Cpu,
    )?;
    let req = a.edit.request(&src, loaded.model.num_classes())?;
    let t0 = Instant::now();
    let pb = crate::progress::bar(
        0,
        "inpaint [{bar:30}] {pos}/{len} network evaluations, ETA {eta}",
    );
    let out = editor.inpaint(
        &src.images,
        &known,
        &opts,
        &req,
        &mut Rng::derive(a.edit.seed, "inpaint"),
        &mut |d, t| {
            pb.set_length(t as u64);
            pb.set_position(d as u64)
        },
    )?;
    pb.finish_and_clear();
    // Columns: the original, the mask (white = generated), the input the model saw (the
    // generated part grey), the result.
    let mask_img = Tensor::from_vec(generate, (1, 1, h, w), &candle_core::Device::Cpu)?
        .repeat((1, c, 1, 1))?;
    let shown = (src.images.broadcast_mul(&known)?
        + known.affine(-0.5, 0.5)?.broadcast_as(src.images.dims())?)?;
    let sidecar = serde_json::json!({
        "command": "inpaint",
        "mask": a.mask,
        "options": opts,
        "nfe": out.nfe,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    println!(
        "inpainted {} images ({} network evaluations each, {:.1} s)",
        src.images.dim(0)?,
        out.nfe,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "{}",
        a.edit.write(
            &src,
            &[&src.images, &mask_img, &shown, &out.x],
            &out.x,
            sidecar
        )?
    );
    Ok(())
}
