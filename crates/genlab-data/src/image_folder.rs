//! A folder of PNG/JPEG images as a dataset, loaded into memory.
//!
//! Layout: either images directly in `root` (no labels), or one level of sub-folders whose
//! names are the classes (sorted by name; label = position in that order). Mixing the two
//! is an error. Hidden entries (names starting with `.`) and files with other extensions are
//! skipped. Every image is decoded (grey, grey+alpha, RGB or RGBA, 8 or 16 bit), composited
//! onto a white background when it has an alpha channel (so transparent areas read as
//! white, as a viewer shows them), resized so that its SHORTER side equals `size` (triangle
//! / bilinear filter, antialiased when shrinking), centre-cropped to `size x size`, and
//! converted to `channels` (1: luma `0.299 R + 0.587 G + 0.114 B`, ITU-R BT.601; 3: RGB).
//! Values are f32 in `[0, 1]`, stored `[C, H, W]`.
//!
//! Captions ([`Dataset::caption`]): from a `captions.jsonl` in `root` when there is one,
//! else the class sub-folder names; a flat folder without the file has none (see
//! [`crate::folder_captions`]).

use std::path::{Path, PathBuf};

use genlab_core::{Error, Result};
use image::imageops::FilterType;
use image::{DynamicImage, ImageBuffer, Rgb};

use crate::{DataKind, Dataset};

/// File extensions (lower-case) that are loaded.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// Largest accepted output side (a guard against typos such as 25600).
const MAX_SIZE: usize = 4096;
/// Widest or tallest image decoded.
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// Most pixels decoded (32 MP: larger than a 24 MP camera photo).
pub const MAX_IMAGE_PIXELS: u64 = 1 << 25;
/// Most pixels a file may declare per byte it holds. A PNG's deflate stream expands at
/// most 1032x (8 pixels per byte at 1 bit per pixel: about 8300 pixels per byte) and a
/// JPEG needs at least one bit per 8x8 block (512 pixels per byte), so a header claiming
/// more is lying: refused before the decoder allocates its buffer.
pub const MAX_PIXELS_PER_FILE_BYTE: u64 = 16384;
/// Largest decoded buffer (bytes) before conversion to f32.
pub const MAX_DECODE_BYTES: u64 = 512 << 20;
/// BT.601 luma weights for R, G, B.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// How images are brought to one shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageFolderConfig {
    /// Output side: the shorter side is resized to it, then the centre is cropped square.
    pub size: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
}

impl Default for ImageFolderConfig {
    fn default() -> Self {
        // 32x32 RGB: the usual resolution of small image benchmarks (CIFAR-10).
        Self {
            size: 32,
            channels: 3,
        }
    }
}

/// Images of one folder, in memory.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    name: String,
    cfg: ImageFolderConfig,
    /// `[N, C, size, size]` values in [0, 1].
    data: Vec<f32>,
    /// Class of each image when the folder has class sub-folders.
    labels: Option<Vec<u32>>,
    class_names: Vec<String>,
    paths: Vec<PathBuf>,
    /// Caption of each image from `captions.jsonl`, when the folder has one.
    captions: Option<Vec<String>>,
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Sorted, non-hidden entries of `dir`.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("listing image folder", dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("listing image folder", dir, e))?;
        let p = entry.path();
        if !is_hidden(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Image files directly inside `dir`, sorted.
pub(crate) fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && has_image_extension(p))
        .collect())
}

/// Decodes the image at `path`, detecting the format from its content. The size its
/// header declares is checked first (at most [`MAX_IMAGE_SIDE`] a side,
/// [`MAX_IMAGE_PIXELS`] pixels, [`MAX_PIXELS_PER_FILE_BYTE`] pixels per byte of the file,
/// [`MAX_DECODE_BYTES`] decoded), so a corrupt or hostile file cannot make the decoder
/// allocate what it claims.
pub fn decode_image(path: &Path) -> Result<DynamicImage> {
    let file_len = std::fs::metadata(path)
        .map_err(|e| Error::io("opening image", path, e))?
        .len();
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| Error::io("opening image", path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io("reading image", path, e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let undecodable = |e: image::ImageError| {
        Error::Data(format!(
            "{}: cannot decode as PNG or JPEG: {e}",
            path.display()
        ))
    };
    let decoder = reader.into_decoder().map_err(undecodable)?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    let pixels = w as u64 * h as u64;
    let decoded = image::ImageDecoder::total_bytes(&decoder);
    if pixels > MAX_IMAGE_PIXELS {
        return Err(Error::Data(format!(
            "{}: image declares {w}x{h} = {pixels} pixels, more than the {MAX_IMAGE_PIXELS} \
             accepted; resize it first",
            path.display()
        )));
    }
    if pixels > file_len.saturating_mul(MAX_PIXELS_PER_FILE_BYTE) {
        return Err(Error::Data(format!(
            "{}: image declares {w}x{h} pixels but the file has only {file_len} bytes, fewer \
             than any real image of that size (corrupt or truncated header)",
            path.display()
        )));
    }
    if decoded > MAX_DECODE_BYTES {
        return Err(Error::Data(format!(
            "{}: image declares {w}x{h} pixels, {decoded} bytes decoded, more than the \
             {MAX_DECODE_BYTES} accepted",
            path.display()
        )));
    }
    DynamicImage::from_decoder(decoder).map_err(undecodable)
}

/// Composites on white, resizes the shorter side to `size`, centre-crops, converts to
/// `channels` (1 or 3): returns `[channels, size, size]` values in [0, 1].
pub fn preprocess_image(img: &DynamicImage, size: usize, channels: usize) -> Result<Vec<f32>> {
    if size == 0 || size > MAX_SIZE {
        return Err(Error::InvalidInput(format!(
            "image size {size} out of range, expected 1..={MAX_SIZE}"
        )));
    }
    if channels != 1 && channels != 3 {
        return Err(Error::InvalidInput(format!(
            "image channels {channels}, expected 1 (grey) or 3 (RGB)"
        )));
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::Data(format!("image is empty ({w}x{h})")));
    }
    // Straight alpha in [0, 1]; composite over white: c' = a c + (1 - a).
    let rgba = img.to_rgba32f();
    let rgb: ImageBuffer<Rgb<f32>, Vec<f32>> = ImageBuffer::from_fn(w as u32, h as u32, |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3].clamp(0.0, 1.0);
        Rgb([0, 1, 2].map(|c| p[c] * a + (1.0 - a)))
    });
    // Shorter side -> size, the other scaled to keep the aspect ratio (at least size).
    let (nw, nh) = if w <= h {
        (
            size,
            ((h * size) as f64 / w as f64).round().max(size as f64) as usize,
        )
    } else {
        (
            ((w * size) as f64 / h as f64).round().max(size as f64) as usize,
            size,
        )
    };
    let resized = image::imageops::resize(&rgb, nw as u32, nh as u32, FilterType::Triangle);
    let (x0, y0) = ((nw - size) / 2, (nh - size) / 2);
    let mut out = vec![0f32; channels * size * size];
    let plane = size * size;
    for y in 0..size {
        for x in 0..size {
            let p = resized.get_pixel((x0 + x) as u32, (y0 + y) as u32).0;
            let o = y * size + x;
            if channels == 3 {
                for c in 0..3 {
                    out[c * plane + o] = p[c].clamp(0.0, 1.0);
                }
            } else {
                let l: f32 = (0..3).map(|c| LUMA[c] * p[c]).sum();
                out[o] = l.clamp(0.0, 1.0);
            }
        }
    }
    Ok(out)
}

/// Decodes and preprocesses every file of `paths` ([`decode_image`], [`preprocess_image`]):
/// `[N, channels, size, size]` values in [0, 1]; an error names the file.
pub fn load_images(paths: &[PathBuf], cfg: ImageFolderConfig) -> Result<Vec<f32>> {
    let per = cfg.channels * cfg.size * cfg.size;
    let mut data = Vec::with_capacity(paths.len() * per);
    for p in paths {
        let img = decode_image(p)?;
        let v = preprocess_image(&img, cfg.size, cfg.channels).map_err(|e| match e {
            Error::Data(m) => Error::Data(format!("{}: {m}", p.display())),
            other => other,
        })?;
        data.extend_from_slice(&v);
    }
    Ok(data)
}

/// Checks that `root` is an existing folder; `what` says what it should hold.
pub(crate) fn check_folder(root: &Path, what: &str) -> Result<()> {
    if !root.exists() {
        return Err(Error::Data(format!(
            "folder {} does not exist",
            root.display()
        )));
    }
    if !root.is_dir() {
        return Err(Error::Data(format!(
            "{} is not a folder (expected {what})",
            root.display()
        )));
    }
    Ok(())
}

impl ImageFolder {
    /// Loads every image under `root` (see the module documentation for the layout).
    pub fn load(root: &Path, cfg: ImageFolderConfig) -> Result<Self> {
        // Validate the config before touching the disk.
        preprocess_image(&DynamicImage::new_rgb8(1, 1), cfg.size, cfg.channels)?;
        check_folder(root, "a folder of images or of class sub-folders")?;
        let root_images = images_in(root)?;
        let mut classes: Vec<(String, Vec<PathBuf>)> = Vec::new();
        for sub in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let imgs = images_in(&sub)?;
            if !imgs.is_empty() {
                let name = sub
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                classes.push((name, imgs));
            }
        }
        let exts = IMAGE_EXTENSIONS.map(|e| format!(".{e}")).join(", ");
        if !root_images.is_empty() && !classes.is_empty() {
            let names: Vec<&str> = classes.iter().map(|c| c.0.as_str()).collect();
            return Err(Error::Data(format!(
                "image folder {} has images both directly inside it ({} files) and in class \
                 sub-folders ({}); expected one layout: put every image in a class folder, \
                 or none",
                root.display(),
                root_images.len(),
                names.join(", ")
            )));
        }
        let (paths, labels, class_names) = if classes.is_empty() {
            if root_images.is_empty() {
                return Err(Error::Data(format!(
                    "no images found in {} or its sub-folders (looked for {exts}, any case)",
                    root.display()
                )));
            }
            (root_images, None, Vec::new())
        } else {
            let mut paths = Vec::new();
            let mut labels = Vec::new();
            let mut names = Vec::new();
            for (k, (name, imgs)) in classes.into_iter().enumerate() {
                labels.extend(std::iter::repeat_n(k as u32, imgs.len()));
                paths.extend(imgs);
                names.push(name);
            }
            (paths, Some(labels), names)
        };
        let captions = crate::folder_captions::read_captions_file(root, &paths)?;
        let data = load_images(&paths, cfg)?;
        Ok(Self {
            name: format!("folder:{}", root.display()),
            cfg,
            data,
            labels,
            class_names,
            paths,
            captions,
        })
    }

    /// Class names (sub-folder names, sorted); empty when the folder has no classes.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Source file of each example.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Whether the captions come from a `captions.jsonl` (rather than class names).
    pub fn has_captions_file(&self) -> bool {
        self.captions.is_some()
    }

    /// The configuration the images were loaded with.
    pub fn config(&self) -> ImageFolderConfig {
        self.cfg
    }
}

impl Dataset for ImageFolder {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.paths.len()
    }

    fn example_shape(&self) -> Vec<usize> {
        vec![self.cfg.channels, self.cfg.size, self.cfg.size]
    }

    fn write_example(&self, i: usize, out: &mut [f32]) {
        let per = self.cfg.channels * self.cfg.size * self.cfg.size;
        out.copy_from_slice(&self.data[i * per..(i + 1) * per]);
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.labels.as_ref().and_then(|l| l.get(i).copied())
    }

    fn num_classes(&self) -> Option<usize> {
        self.labels.as_ref().map(|_| self.class_names.len())
    }

    /// The line of `captions.jsonl` when the folder has one, else the readable class name.
    fn caption(&self, i: usize) -> Option<String> {
        match &self.captions {
            Some(c) => c.get(i).cloned(),
            None => self.label(i).and_then(|k| self.class_name(k as usize)),
        }
    }

    fn class_name(&self, k: usize) -> Option<String> {
        self.class_names
            .get(k)
            .map(|n| crate::folder_captions::readable_class_name(n))
    }

    fn kind(&self) -> DataKind {
        DataKind::Image
    }
}
