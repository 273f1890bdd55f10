//! A tiny rasteriser for the classic-control pictures (`genlab rl rollout --gif`) and the
//! conversion of its frames for the animated GIF writer (`genlab_report::write_gif`). No paper: filled convex polygons by the crossing-number test,
//! discs, thick segments as quadrilaterals, all in pixel coordinates with y pointing down.

use std::path::Path;

use genlab_core::{Error, Result};

use genlab_report::RgbImage;

use crate::env::Frame;

/// A white canvas to draw on.
pub struct Canvas {
    pub frame: Frame,
}

pub type Rgb = [u8; 3];

impl Canvas {
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            frame: Frame {
                width,
                height,
                rgb: vec![255; width * height * 3],
            },
        }
    }

    fn put(&mut self, x: i64, y: i64, c: Rgb) {
        let (w, h) = (self.frame.width as i64, self.frame.height as i64);
        if x >= 0 && y >= 0 && x < w && y < h {
            let i = ((y * w + x) * 3) as usize;
            self.frame.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Fills the convex polygon `pts` (pixel coordinates).
    pub fn polygon(&mut self, pts: &[(f64, f64)], c: Rgb) {
        if pts.len() < 3 {
            return;
        }
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        for py in y0.floor() as i64..=y1.ceil() as i64 {
            for px in x0.floor() as i64..=x1.ceil() as i64 {
                let (qx, qy) = (px as f64 + 0.5, py as f64 + 0.5);
                let mut inside = false;
                let mut j = pts.len() - 1;
                for i in 0..pts.len() {
                    let (xi, yi) = pts[i];
                    let (xj, yj) = pts[j];
                    if (yi > qy) != (yj > qy) && qx < (xj - xi) * (qy - yi) / (yj - yi) + xi {
                        inside = !inside;
                    }
                    j = i;
                }
                if inside {
                    self.put(px, py, c);
                }
            }
        }
    }

    pub fn rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb) {
        self.polygon(&[(x0, y0), (x1, y0), (x1, y1), (x0, y1)], c);
    }

    pub fn disc(&mut self, cx: f64, cy: f64, r: f64, c: Rgb) {
        for py in (cy - r).floor() as i64..=(cy + r).ceil() as i64 {
            for px in (cx - r).floor() as i64..=(cx + r).ceil() as i64 {
                let (dx, dy) = (px as f64 + 0.5 - cx, py as f64 + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    self.put(px, py, c);
                }
            }
        }
    }

    /// A segment of width `w` from `a` to `b`.
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), w: f64, c: Rgb) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let n = (dx * dx + dy * dy).sqrt().max(1e-9);
        let (ox, oy) = (-dy / n * w / 2.0, dx / n * w / 2.0);
        self.polygon(
            &[
                (a.0 + ox, a.1 + oy),
                (b.0 + ox, b.1 + oy),
                (b.0 - ox, b.1 - oy),
                (a.0 - ox, a.1 - oy),
            ],
            c,
        );
    }
}

/// Writes `frames` as a looping animated GIF, `delay_cs` hundredths of a second apart
/// (the writer is [`genlab_report::write_gif`]).
pub fn write_gif(path: &Path, frames: Vec<Frame>, delay_cs: u16) -> Result<()> {
    let images = frames
        .into_iter()
        .map(|f| {
            let (w, h) = (f.width, f.height);
            RgbImage::from_raw(w as u32, h as u32, f.rgb).ok_or_else(|| {
                Error::InvalidInput(format!("a {w}x{h} frame does not hold {w}x{h} RGB pixels"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    genlab_report::write_gif(path, &images, delay_cs).map_err(genlab_train::outputs::report_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_the_pixels_they_should() {
        let mut c = Canvas::new(20, 10);
        c.rect(2.0, 2.0, 6.0, 5.0, [0, 0, 0]);
        let px = |c: &Canvas, x: usize, y: usize| c.frame.rgb[(y * 20 + x) * 3];
        assert_eq!(px(&c, 3, 3), 0);
        assert_eq!(px(&c, 7, 3), 255);
        c.disc(15.0, 5.0, 3.0, [0, 0, 0]);
        assert_eq!(px(&c, 15, 5), 0);
        assert_eq!(px(&c, 11, 5), 255);
    }

    #[test]
    fn rollout_frames_become_a_gif_with_one_frame_each() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.gif");
        let mut a = Canvas::new(8, 6);
        a.rect(0.0, 0.0, 4.0, 6.0, [200, 0, 0]);
        let b = Canvas::new(8, 6);
        write_gif(&p, vec![a.frame, b.frame], 5).unwrap();
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut d = opts.read_info(std::fs::File::open(&p).unwrap()).unwrap();
        assert_eq!((d.width(), d.height()), (8, 6));
        let mut n = 0;
        while d.read_next_frame().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 2);
        assert!(write_gif(&p, vec![], 5).is_err());
        let torn = Frame {
            width: 4,
            height: 4,
            rgb: vec![0; 5],
        };
        assert!(write_gif(&p, vec![torn], 5).is_err());
    }
}
