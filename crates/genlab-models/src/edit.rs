//! Image editing with a generative model: img2img (SDEdit) and inpainting, for the models
//! that can (diffusion). `genlab img2img` and `genlab inpaint` come through [`Edit`].

use candle_core::Tensor;

use genlab_core::{Result, Rng};
use genlab_sampling::inpaint::InpaintOptions;

use crate::sample::{SampleRequest, SampleResult};

/// What an editing model can do to given images.
pub trait Edit {
    /// SDEdit (Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic
    /// Differential Equations", arXiv:2108.01073, Sec. 3): noise `x` (data space, `[N, ...]`)
    /// to `strength` in (0, 1] of the way (the timestep round(strength (T - 1))) and denoise
    /// it with `req`'s sampler, options, condition and guidance (`req.n` is ignored: one
    /// result per image). Strength 1 starts from (almost) pure noise; small strengths keep
    /// the image's layout.
    fn img2img(
        &self,
        x: &Tensor,
        strength: f64,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult>;

    /// Inpaints `x` (data space, `[N, ...]`) where `known` (`[N or 1, 1, ...]`, 1 known, 0
    /// to generate) is 0, with `req`'s condition and guidance (`req.n`, sampler and sampler
    /// options are not used: `opts` says how).
    fn inpaint(
        &self,
        x: &Tensor,
        known: &Tensor,
        opts: &InpaintOptions,
        req: &SampleRequest,
        rng: &mut Rng,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SampleResult>;
}
