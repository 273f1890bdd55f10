//! genlab-report: pictures and report pages without any font or plotting dependency.
//!
//! - [`image_grid`] / [`save_png`]: batches of images tiled into one PNG;
//! - [`write_gif`], [`video_gif`], [`video_grid_gif`]: animated GIFs of frames, of one
//!   `[T, C, H, W]` clip and of a grid of clips;
//! - [`scatter_png`] / [`density_png`]: 2-D samples against a reference, and heat maps;
//! - [`line_chart_svg`]: self-contained SVG line charts (loss curves, log axes, smoothing);
//! - [`render_html`] / [`write_html`]: a single-file HTML report of sections and blocks.
//!
//! Every file is written atomically (`NAME.tmp-PID`, then rename); bad arguments are
//! [`ReportError::InvalidInput`], never panics.

mod animation;
mod atomic;
mod bounds;
mod canvas;
mod colormap;
mod density;
mod error;
mod escape;
mod grid;
mod html;
mod plot;
mod scatter;
mod ticks;

pub use animation::{
    encode_gif, video_gif, video_grid_frames, video_grid_gif, write_gif, GIF_QUANTISATION_MEAN_TOL,
    VIDEO_FRAME_DELAY_CS, VIDEO_GRID_PAD,
};
pub use atomic::write_atomic;
pub use bounds::robust_bounds;
pub use colormap::{viridis, VIRIDIS_ANCHORS};
pub use density::density_png;
pub use error::{ReportError, Result};
pub use escape::escape_markup;
pub use grid::{image_grid, save_png, GRID_BORDER, NAN_COLOUR};
pub use html::{render_html, write_html, Block, Page, Section};
/// The RGB picture type of [`image_grid`] and the frames of [`write_gif`].
pub use image::RgbImage;
pub use plot::{line_chart_bands_svg, line_chart_svg, Series, PALETTE, SMOOTH_MIN_POINTS};
pub use scatter::{scatter_labeled_png, scatter_png};
pub use ticks::{format_decade, format_tick, log_ticks, nice_ticks, LinearTicks};
