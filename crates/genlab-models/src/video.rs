//! Longer clips from a video diffusion model trained on `T`-frame clips: each new window of
//! `T` frames starts with the last `context` frames generated so far, held fixed, and the
//! model fills in the rest by inpainting along time (the replacement method, or RePaint's
//! resampling; Lugmayr et al. 2022, arXiv:2201.09865, applied to frames as in Ho et al. 2022,
//! "Video Diffusion Models", arXiv:2204.03458, Sec. 3.1, "reconstruction-guided" extension's
//! simpler replacement baseline). The model needs no extra training: any video checkpoint
//! extends its clips this way.

use candle_core::{DType, Device, Tensor};

use genlab_core::{Error, Result, Rng};
use genlab_sampling::inpaint::InpaintOptions;

use crate::sample::{Sample, SampleRequest};

/// How far and how [`extend_clips`] extends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extension {
    /// Frames of the result.
    pub frames: usize,
    /// Frames each new window is conditioned on (`1 <= context < T`).
    pub context: usize,
}

/// Extends `clips` (`[N, T0, C, H, W]` in data space, `T0 >= context`) to `ext.frames`
/// frames with `model` (a video model of `T` frames). Every window conditions on the
/// previous `ext.context` frames and adds `T - context` new ones; the result is cut to
/// `frames`. `req` gives the condition, guidance and batch size of each window (its `n` is
/// ignored), `opts` the inpainting steps. `progress(window, windows)`.
pub fn extend_clips(
    model: &dyn Sample,
    clips: &Tensor,
    ext: Extension,
    req: &SampleRequest,
    opts: &InpaintOptions,
    rng: &mut Rng,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor> {
    let Extension { frames, context } = ext;
    let shape = &model.data_space().shape;
    let [t, c, h, w] = shape[..] else {
        return Err(Error::InvalidInput(format!(
            "extending clips needs a video model; this one makes examples of shape {shape:?}"
        )));
    };
    let editor = model.as_editor().ok_or_else(|| {
        Error::InvalidInput("this model cannot inpaint, so it cannot extend clips".into())
    })?;
    let (n, t0, ..) = clips.dims5()?;
    if context == 0 || context >= t {
        return Err(Error::setting(
            "context_frames",
            format!("must be in 1..{t} (the model's clips have {t} frames), got {context}"),
        ));
    }
    if t0 < context {
        return Err(Error::InvalidInput(format!(
            "the clips have {t0} frames, fewer than the {context} context frames"
        )));
    }
    let step = t - context;
    let windows = frames.saturating_sub(t0).div_ceil(step);
    // 1 on the context frames, 0 on the frames to generate: [1, T, 1, 1, 1].
    let m: Vec<f32> = (0..t)
        .map(|i| if i < context { 1.0 } else { 0.0 })
        .collect();
    let mask = Tensor::from_vec(m, (1, t, 1, 1, 1), &Device::Cpu)?;
    let mut out = clips.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    for k in 0..windows {
        progress(k, windows);
        let len = out.dim(1)?;
        let known = out.narrow(1, len - context, context)?;
        let pad = Tensor::zeros((n, step, c, h, w), DType::F32, &Device::Cpu)?;
        let x = Tensor::cat(&[&known, &pad], 1)?;
        let r = editor.inpaint(&x, &mask, opts, req, rng, &mut |_, _| {})?;
        let new = r.x.to_device(&Device::Cpu)?.narrow(1, context, step)?;
        out = Tensor::cat(&[&out, &new], 1)?;
    }
    progress(windows, windows);
    Ok(out.narrow(1, 0, frames.max(t0).min(out.dim(1)?))?)
}
