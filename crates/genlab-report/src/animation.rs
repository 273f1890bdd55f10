//! Animated GIFs: RGB frames ([`write_gif`]), one video clip ([`video_gif`]) and a grid of
//! clips animated together ([`video_grid_gif`]). No paper: the GIF89a format with the
//! NETSCAPE2.0 loop extension (loops forever); each frame gets its own palette. A frame
//! with at most 256 colours (every grey picture: Moving MNIST, grey samples) is stored
//! exactly; one with more is quantised to 256 colours by NeuQuant (the `gif` crate's
//! quantiser) and comes back within [`GIF_QUANTISATION_MEAN_TOL`] on average.
//!
//! Clips are `[T, C, H, W]` values in `[0, 1]` (grey or RGB), drawn as [`crate::image_grid`]
//! draws images (clamped, NaN magenta, nearest-neighbour upscaling); a grid of clips is one
//! [`crate::image_grid`] per frame, so the grid and its borders look like the still
//! pictures.

use std::path::Path;

use image::RgbImage;

use crate::atomic::write_atomic;
use crate::error::{ReportError, Result};
use crate::grid::image_grid;

/// Hundredths of a second between the frames of a video GIF (about 7 frames per second:
/// an 8-frame Moving MNIST clip loops in just over a second).
pub const VIDEO_FRAME_DELAY_CS: u16 = 15;
/// Mean absolute difference of a channel (0..=255) between an RGB frame of more than 256
/// colours and its decoded GIF frame, for the tests' frames of 30% colour noise over a ramp
/// (the worst kind of picture for a 256-colour palette; measured up to 7.2).
/// NeuQuant bounds no single pixel: a rare colour can move far.
pub const GIF_QUANTISATION_MEAN_TOL: f64 = 10.0;
/// Border, in pixels, between the cells of [`video_grid_gif`] (as the sample grids).
pub const VIDEO_GRID_PAD: usize = 2;
/// NeuQuant's sampling factor: 1 is the best palette, 30 the fastest; 10 is the crate's
/// recommended balance.
const QUANTISER_SPEED: i32 = 10;
/// GIF sides are 16-bit.
const MAX_GIF_SIDE: usize = u16::MAX as usize;

/// Encodes `frames` (all the same size) as a GIF that loops forever, `delay_cs` hundredths
/// of a second apart.
pub fn encode_gif(frames: &[RgbImage], delay_cs: u16) -> Result<Vec<u8>> {
    let first = frames
        .first()
        .ok_or_else(|| ReportError::invalid("a GIF needs at least one frame"))?;
    let (w, h) = (first.width() as usize, first.height() as usize);
    if w == 0 || h == 0 || w > MAX_GIF_SIDE || h > MAX_GIF_SIDE {
        return Err(ReportError::invalid(format!(
            "GIF frames must be 1..={MAX_GIF_SIDE} pixels a side, got {w}x{h}"
        )));
    }
    if let Some((i, f)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| (f.width() as usize, f.height() as usize) != (w, h))
    {
        return Err(ReportError::invalid(format!(
            "GIF frame {i} is {}x{}, frame 0 is {w}x{h}; all frames must be the same size",
            f.width(),
            f.height()
        )));
    }
    let encoding = |e: gif::EncodingError| ReportError::invalid(format!("GIF encoding: {e}"));
    let mut bytes = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut bytes, w as u16, h as u16, &[]).map_err(encoding)?;
        enc.set_repeat(gif::Repeat::Infinite).map_err(encoding)?;
        for f in frames {
            let mut g = match exact_palette(f) {
                Some((palette, pixels)) => {
                    gif::Frame::from_palette_pixels(w as u16, h as u16, pixels, palette, None)
                }
                None => gif::Frame::from_rgb_speed(w as u16, h as u16, f.as_raw(), QUANTISER_SPEED),
            };
            g.delay = delay_cs;
            enc.write_frame(&g).map_err(encoding)?;
        }
    }
    Ok(bytes)
}

/// The palette (RGB triples) and palette indices of `f` when it has at most 256 colours
/// (every grey picture does), so that it is stored exactly.
fn exact_palette(f: &RgbImage) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut index: std::collections::HashMap<[u8; 3], u8> = std::collections::HashMap::new();
    let mut palette = Vec::new();
    let mut pixels = Vec::with_capacity(f.as_raw().len() / 3);
    for p in f.pixels() {
        let next = index.len();
        let i = match index.get(&p.0) {
            Some(&i) => i,
            None if next < 256 => {
                index.insert(p.0, next as u8);
                palette.extend_from_slice(&p.0);
                next as u8
            }
            None => return None,
        };
        pixels.push(i);
    }
    Some((palette, pixels))
}

/// Writes `frames` as a GIF that loops forever, `delay_cs` hundredths of a second apart
/// (atomically, parent folders created).
pub fn write_gif(path: &Path, frames: &[RgbImage], delay_cs: u16) -> Result<()> {
    write_atomic(path, &encode_gif(frames, delay_cs)?)
}

/// Checks `clips` against `[n, t, c, h, w]` and returns `t`'s stride.
fn check_clips(clips: &[f32], [n, t, c, h, w]: [usize; 5]) -> Result<usize> {
    if n == 0 || t == 0 {
        return Err(ReportError::invalid(format!(
            "a video GIF needs at least one clip of at least one frame, got {n} clips of {t}"
        )));
    }
    let expected = [n, t, c, h, w]
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| ReportError::invalid("video dimensions overflow"))?;
    if clips.len() != expected {
        return Err(ReportError::invalid(format!(
            "video GIF expected {n}x{t}x{c}x{h}x{w} = {expected} values ([N, T, C, H, W]), got {}",
            clips.len()
        )));
    }
    Ok(c * h * w)
}

/// The frames of a grid of `clips` (`[N, T, C, H, W]` values in `[0, 1]`, grey or RGB):
/// frame `t` tiles frame `t` of every clip, `ncol` cells per row (torchvision's `nrow`),
/// each upscaled `scale` times, [`VIDEO_GRID_PAD`] pixels of border.
pub fn video_grid_frames(
    clips: &[f32],
    shape: [usize; 5],
    ncol: usize,
    scale: usize,
) -> Result<Vec<RgbImage>> {
    let per_frame = check_clips(clips, shape)?;
    let [n, t, c, h, w] = shape;
    let mut frame = vec![0f32; n * per_frame];
    (0..t)
        .map(|k| {
            for (i, cell) in frame.chunks_exact_mut(per_frame).enumerate() {
                let at = (i * t + k) * per_frame;
                cell.copy_from_slice(&clips[at..at + per_frame]);
            }
            image_grid(&frame, n, c, h, w, ncol, scale, VIDEO_GRID_PAD)
        })
        .collect()
}

/// Writes all `clips` (`[N, T, C, H, W]` in `[0, 1]`) as one GIF: a grid of `ncol` cells
/// per row, animated together and looping forever ([`VIDEO_FRAME_DELAY_CS`] apart).
pub fn video_grid_gif(
    path: &Path,
    clips: &[f32],
    shape: [usize; 5],
    ncol: usize,
    scale: usize,
) -> Result<()> {
    write_gif(
        path,
        &video_grid_frames(clips, shape, ncol, scale)?,
        VIDEO_FRAME_DELAY_CS,
    )
}

/// Writes one clip (`[T, C, H, W]` in `[0, 1]`) as a looping GIF, upscaled `scale` times,
/// with no border.
pub fn video_gif(path: &Path, clip: &[f32], [t, c, h, w]: [usize; 4], scale: usize) -> Result<()> {
    let per_frame = check_clips(clip, [1, t, c, h, w])?;
    let frames = clip
        .chunks_exact(per_frame)
        .map(|f| image_grid(f, 1, c, h, w, 1, scale, 0))
        .collect::<Result<Vec<_>>>()?;
    write_gif(path, &frames, VIDEO_FRAME_DELAY_CS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a GIF: its frames as RGB images, its delays and whether it loops forever.
    fn decode(path: &Path) -> (Vec<RgbImage>, Vec<u16>, bool) {
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut d = opts.read_info(std::fs::File::open(path).unwrap()).unwrap();
        let (w, h) = (d.width() as u32, d.height() as u32);
        let (mut frames, mut delays) = (Vec::new(), Vec::new());
        while let Some(f) = d.read_next_frame().unwrap() {
            assert_eq!(
                (f.left, f.top, f.width as u32, f.height as u32),
                (0, 0, w, h)
            );
            let rgb: Vec<u8> = f
                .buffer
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            frames.push(RgbImage::from_raw(w, h, rgb).unwrap());
            delays.push(f.delay);
        }
        let looping = d.repeat() == gif::Repeat::Infinite;
        (frames, delays, looping)
    }

    fn max_diff(a: &RgbImage, b: &RgbImage) -> u8 {
        assert_eq!(a.dimensions(), b.dimensions());
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap()
    }

    fn mean_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        let n = a.as_raw().len() as f64;
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y) as f64)
            .sum::<f64>()
            / n
    }

    /// A clip of `t` frames: a smooth ramp in space and time plus a hashed pattern, so that
    /// larger frames hold many more than 256 colours.
    fn clip(t: usize, c: usize, h: usize, w: usize, phase: f32) -> Vec<f32> {
        (0..t * c * h * w)
            .map(|i| {
                let (k, rest) = (i / (c * h * w), i % (c * h * w));
                let (ch, y, x) = (rest / (h * w), rest / w % h, rest % w);
                let ramp = (x as f32 + 2.0 * y as f32) / (w + 2 * h) as f32;
                let hash = ((i as u64 * 2_654_435_761) % 997) as f32 / 997.0;
                (0.7 * ramp + 0.3 * hash + 0.1 * k as f32 + 0.3 * ch as f32 + phase).fract()
            })
            .collect()
    }

    #[test]
    fn rgb_frames_round_trip_within_the_quantisation_tolerance() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.gif");
        let a = RgbImage::from_fn(8, 6, |x, _| {
            image::Rgb([if x < 4 { 200 } else { 255 }, 0, 0])
        });
        let b = RgbImage::from_pixel(8, 6, image::Rgb([255, 255, 255]));
        write_gif(&p, &[a.clone(), b.clone()], 5).unwrap();
        let (frames, delays, looping) = decode(&p);
        assert_eq!((frames.len(), delays, looping), (2, vec![5, 5], true));
        // Few colours: the palette holds them exactly.
        assert_eq!(frames[0], a);
        assert_eq!(frames[1], b);
        assert!(write_gif(&p, &[], 5).is_err());
        let small = RgbImage::new(4, 6);
        let e = write_gif(&p, &[a, small], 5).unwrap_err().to_string();
        assert!(e.contains("same size"), "{e}");
    }

    #[test]
    fn a_grid_of_clips_decodes_to_the_grid_of_each_frame() {
        let dir = tempfile::tempdir().unwrap();
        // Small frames have fewer than 256 colours (exact); 24x24 RGB ones have more.
        for (c, (n, t, h, w)) in [
            (1, (5, 4, 9, 7)),
            (3, (5, 4, 9, 7)),
            (1, (4, 2, 24, 24)),
            (3, (4, 2, 24, 24)),
        ] {
            let clips: Vec<f32> = (0..n)
                .flat_map(|i| clip(t, c, h, w, 0.13 * i as f32))
                .collect();
            let p = dir.path().join(format!("grid{c}-{h}.gif"));
            video_grid_gif(&p, &clips, [n, t, c, h, w], 3, 2).unwrap();
            let (frames, delays, looping) = decode(&p);
            assert_eq!(frames.len(), t);
            assert!(looping && delays.iter().all(|&d| d == VIDEO_FRAME_DELAY_CS));
            for (k, got) in frames.iter().enumerate() {
                // Frame k of the GIF is image_grid of frame k of every clip.
                let per = c * h * w;
                let still: Vec<f32> = (0..n)
                    .flat_map(|i| clips[(i * t + k) * per..(i * t + k + 1) * per].to_vec())
                    .collect();
                let want = image_grid(&still, n, c, h, w, 3, 2, VIDEO_GRID_PAD).unwrap();
                let (d, mean) = (max_diff(got, &want), mean_diff(got, &want));
                eprintln!(
                    "channels {c}, {h}x{w}, frame {k}: channel difference max {d}, mean {mean:.3}"
                );
                if exact_palette(&want).is_some() {
                    // At most 256 colours (every grey frame): exact.
                    assert_eq!(d, 0, "c {c} {h}x{w} frame {k}");
                } else {
                    assert!(mean <= GIF_QUANTISATION_MEAN_TOL, "c {c} frame {k}: {mean}");
                }
            }
        }
    }

    #[test]
    fn one_clip_decodes_frame_by_frame() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clip.gif");
        let (t, h, w) = (6, 5, 8);
        let v = clip(t, 1, h, w, 0.0);
        video_gif(&p, &v, [t, 1, h, w], 3).unwrap();
        let (frames, _, looping) = decode(&p);
        assert!(looping);
        assert_eq!(frames.len(), t);
        for (k, got) in frames.iter().enumerate() {
            assert_eq!(got.dimensions(), (24, 15));
            let want = image_grid(&v[k * h * w..(k + 1) * h * w], 1, 1, h, w, 1, 3, 0).unwrap();
            assert_eq!(max_diff(got, &want), 0, "grey frames are exact");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let p = Path::new("never-written.gif");
        let bad = |r: Result<()>| assert!(matches!(r, Err(ReportError::InvalidInput(_))));
        bad(video_gif(p, &[0.0; 10], [2, 1, 2, 3], 1)); // 10 values, 12 expected
        bad(video_gif(p, &[], [0, 1, 2, 2], 1)); // no frame
        bad(video_gif(p, &[0.0; 16], [2, 2, 2, 2], 1)); // two channels
        bad(video_grid_gif(p, &[0.0; 8], [2, 1, 1, 2, 2], 0, 1)); // ncol 0
        bad(video_grid_gif(p, &[], [0, 1, 1, 2, 2], 1, 1)); // no clip
        bad(video_grid_gif(p, &[0.0; 4], [1, 1, 1, 2, 2], 1, 100_000)); // too large
        assert!(!p.exists());
    }
}
