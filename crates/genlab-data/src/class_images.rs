//! Images stored class after class as u8 pixels (the glyph set, Omniglot): one binary file,
//! read whole, and the [`Dataset`] over it (label = example index / examples per class).

use std::path::Path;

use genlab_core::{Error, Result};

use crate::{DataKind, Dataset};

/// `classes` x `per_class` square `size`² images, ink in [0, 255].
pub struct ClassImages {
    name: &'static str,
    size: usize,
    per_class: usize,
    classes: usize,
    pixels: Vec<u8>,
}

impl ClassImages {
    /// Reads `bin`, which must hold exactly `classes * per_class * size²` bytes.
    pub fn read(
        name: &'static str,
        bin: &Path,
        size: usize,
        per_class: usize,
        classes: usize,
    ) -> Result<Self> {
        let pixels = std::fs::read(bin).map_err(|e| Error::io("read", bin, e))?;
        let want = classes * per_class * size * size;
        if pixels.len() != want {
            return Err(Error::Data(format!(
                "{}: {} bytes, expected {want} ({classes} classes x {per_class} examples x {size}x{size})",
                bin.display(),
                pixels.len()
            )));
        }
        Ok(Self {
            name,
            size,
            per_class,
            classes,
            pixels,
        })
    }
}

impl Dataset for ClassImages {
    fn name(&self) -> &str {
        self.name
    }
    fn len(&self) -> usize {
        self.classes * self.per_class
    }
    fn example_shape(&self) -> Vec<usize> {
        vec![1, self.size, self.size]
    }
    fn write_example(&self, i: usize, out: &mut [f32]) {
        let d = self.size * self.size;
        for (o, &p) in out.iter_mut().zip(&self.pixels[i * d..(i + 1) * d]) {
            *o = p as f32 / 255.0;
        }
    }
    fn label(&self, i: usize) -> Option<u32> {
        Some((i / self.per_class) as u32)
    }
    fn num_classes(&self) -> Option<usize> {
        Some(self.classes)
    }
    fn kind(&self) -> DataKind {
        DataKind::Image
    }
}
