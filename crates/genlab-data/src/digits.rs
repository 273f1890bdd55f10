//! The 8x8 handwritten digits (UCI optdigits test set, 1797 images), embedded in the binary.
//!
//! Source: `assets/digits.csv.gz`, taken unchanged from scikit-learn (data CC BY 4.0, see
//! `assets/LICENSE-digits.txt`). Each CSV row holds 64 integers `0..=16` (an 8x8 image,
//! row-major) followed by the label `0..=9`. Pixels are exposed as `v / 16` in `[0, 1]`,
//! shape `[1, 8, 8]`. Needs no download, so demos and unit tests can always use it.

use std::io::Read;

use flate2::read::GzDecoder;
use genlab_core::{Error, Result};

use crate::{DataKind, Dataset};

/// The gzipped CSV, as shipped by scikit-learn.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../assets/digits.csv.gz");
/// Number of images in the file.
pub const DIGITS_COUNT: usize = 1797;
/// Pixels per image (8 x 8).
const PIXELS: usize = 64;
/// Largest pixel value (a count of on-pixels in a 4x4 block).
const MAX_PIXEL: u8 = 16;
/// Number of classes.
const CLASSES: usize = 10;

/// The 8x8 digits data set.
#[derive(Clone, Debug)]
pub struct Digits {
    /// `[N, 64]` pixel counts 0..=16.
    pixels: Vec<u8>,
    /// `[N]` labels 0..=9.
    labels: Vec<u8>,
}

impl Digits {
    /// Decompresses and parses the embedded file.
    pub fn load() -> Result<Self> {
        let mut text = String::new();
        GzDecoder::new(DIGITS_CSV_GZ)
            .read_to_string(&mut text)
            .map_err(|e| Error::Data(format!("embedded digits.csv.gz: cannot decompress: {e}")))?;
        Self::parse_csv(&text)
    }

    /// Parses rows of 64 integers 0..=16 followed by a label 0..=9.
    pub fn parse_csv(text: &str) -> Result<Self> {
        let mut pixels = Vec::with_capacity(DIGITS_COUNT * PIXELS);
        let mut labels = Vec::with_capacity(DIGITS_COUNT);
        for (line_no, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let row = line_no + 1;
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != PIXELS + 1 {
                return Err(Error::Data(format!(
                    "digits CSV row {row}: {} fields, expected {} (64 pixels then the label)",
                    fields.len(),
                    PIXELS + 1
                )));
            }
            for (col, f) in fields.iter().enumerate() {
                let v: u8 = f.trim().parse().map_err(|_| {
                    Error::Data(format!(
                        "digits CSV row {row}, column {}: {f:?} is not a small non-negative integer",
                        col + 1
                    ))
                })?;
                let (max, what) = if col < PIXELS {
                    (MAX_PIXEL, "pixel")
                } else {
                    (CLASSES as u8 - 1, "label")
                };
                if v > max {
                    return Err(Error::Data(format!(
                        "digits CSV row {row}, column {}: {what} {v} out of range 0..={max}",
                        col + 1
                    )));
                }
                if col < PIXELS {
                    pixels.push(v);
                } else {
                    labels.push(v);
                }
            }
        }
        if labels.is_empty() {
            return Err(Error::Data("digits CSV: no rows found".into()));
        }
        Ok(Self { pixels, labels })
    }

    /// The 64 raw pixel counts (0..=16) of image `i`, row-major.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub fn raw_pixels(&self, i: usize) -> &[u8] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }
}

impl Dataset for Digits {
    fn name(&self) -> &str {
        "digits"
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn example_shape(&self) -> Vec<usize> {
        vec![1, 8, 8]
    }

    fn write_example(&self, i: usize, out: &mut [f32]) {
        for (o, &p) in out.iter_mut().zip(self.raw_pixels(i)) {
            *o = p as f32 / MAX_PIXEL as f32;
        }
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.labels.get(i).map(|&l| l as u32)
    }

    fn num_classes(&self) -> Option<usize> {
        Some(CLASSES)
    }

    fn kind(&self) -> DataKind {
        DataKind::Image
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_has_1797_labelled_images() {
        let d = Digits::load().unwrap();
        assert_eq!(d.len(), DIGITS_COUNT);
        assert_eq!(d.example_shape(), vec![1, 8, 8]);
        assert_eq!(d.num_classes(), Some(10));
        let mut counts = [0usize; 10];
        for i in 0..d.len() {
            counts[d.label(i).unwrap() as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<usize>(), DIGITS_COUNT);
        // Every class is present with roughly 180 examples.
        assert!(
            counts.iter().all(|&c| (170..=185).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn first_row_matches_the_file() {
        // First line of digits.csv.gz.
        let first: [u8; 64] = [
            0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4,
            12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10,
            12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0,
        ];
        let d = Digits::load().unwrap();
        assert_eq!(d.raw_pixels(0), &first[..]);
        assert_eq!(d.label(0), Some(0));
        assert_eq!(d.label(1), Some(1));
        let mut out = [0f32; 64];
        d.write_example(0, &mut out);
        assert_eq!(out[2], 5.0 / 16.0);
        assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn malformed_rows_are_rejected_with_their_position() {
        let short = "1,2,3\n";
        let e = Digits::parse_csv(short).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("expected 65"), "{e}");
        let mut row = vec!["0"; 64];
        row.push("12");
        let e = Digits::parse_csv(&row.join(",")).unwrap_err().to_string();
        assert!(e.contains("label 12"), "{e}");
        assert!(Digits::parse_csv("").is_err());
    }
}
