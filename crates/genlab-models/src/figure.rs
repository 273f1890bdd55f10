//! Pictures a model can draw of itself after training (reconstructions, interpolations,
//! latent spaces), as data: the CLI renders and saves them beside the checkpoint.

use candle_core::Tensor;

pub enum Figure {
    /// Images `[N, C, H, W]` in [0, 1], `ncol` per row, saved as `<name>.png`.
    Images {
        name: String,
        x: Tensor,
        ncol: usize,
        caption: String,
    },
    /// 2-D points coloured by an integer label (class), saved as `<name>.png`.
    Scatter {
        name: String,
        points: Vec<[f32; 2]>,
        labels: Vec<u32>,
        caption: String,
    },
}
