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
    /// A scalar field (a density) on a regular grid over `bounds` = `[x0, x1, y0, y1]`: `ny`
    /// rows of `nx` values, row 0 at the lowest y; saved as a heat map `<name>.png`.
    Density {
        name: String,
        values: Vec<f64>,
        nx: usize,
        ny: usize,
        bounds: [f64; 4],
        caption: String,
    },
}
