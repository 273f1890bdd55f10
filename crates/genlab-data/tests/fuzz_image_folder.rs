//! Fuzz harness of the image-folder loader (`decode_image`, `preprocess_image`,
//! `ImageFolder::load`). Generated inputs, each written to a file in a fresh folder:
//!
//! - `encoded_images_load`: PNGs (grey, grey+alpha, RGB, RGBA, 8 and 16 bit) and JPEGs
//!   (grey, RGB) of random sizes and pixels, which must load with the configured shape;
//! - `lying_headers`: the same files with the declared width/height replaced (0, 1, 2^14,
//!   65535, 2^31, u32::MAX; PNG with its header CRC fixed so the lie gets through), then
//!   possibly truncated;
//! - `mutated_files`: byte-level mutations of valid PNGs and JPEGs;
//! - `random_bytes`: anything, including empty files, under a .png or .jpg name.
//!
//! Every case must return without panicking, allocate no block larger than
//! [`ALLOC_PER_INPUT_BYTE`] times the file plus [`ALLOC_BASE`], and either give
//! `[C, size, size]` values in [0, 1] or an error. `PROPTEST_CASES=N` runs longer.

#[path = "../../genlab-core/tests/support/fuzz.rs"]
mod fuzz;

use std::io::Cursor;
use std::path::Path;

use genlab_data::image_folder::{
    decode_image, preprocess_image, ImageFolder, ImageFolderConfig, MAX_PIXELS_PER_FILE_BYTE,
};
use genlab_data::Dataset;
use image::{DynamicImage, ImageFormat};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: fuzz::LargestAlloc = fuzz::LargestAlloc;

/// A file may declare up to MAX_PIXELS_PER_FILE_BYTE pixels per byte, each converted to
/// 16 bytes (RGBA f32) for resizing.
const ALLOC_PER_INPUT_BYTE: usize = MAX_PIXELS_PER_FILE_BYTE as usize * 16;
/// ... plus this (decoder tables and buffers).
const ALLOC_BASE: usize = 4 << 20;

/// Encodes a `w x h` image of colour layout `kind` (0..6) as PNG, or JPEG when `jpeg` and
/// the layout allows it.
fn encode(w: u32, h: u32, kind: u8, seed: u8, jpeg: bool) -> (Vec<u8>, &'static str) {
    let mut img = match kind % 6 {
        0 => DynamicImage::new_luma8(w, h),
        1 => DynamicImage::new_luma_a8(w, h),
        2 => DynamicImage::new_rgb8(w, h),
        3 => DynamicImage::new_rgba8(w, h),
        4 => DynamicImage::new_luma16(w, h),
        _ => DynamicImage::new_rgba16(w, h),
    };
    match &mut img {
        DynamicImage::ImageLuma8(b) => b
            .iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = (i as u8) ^ seed),
        DynamicImage::ImageLumaA8(b) => b
            .iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = (i as u8) ^ seed),
        DynamicImage::ImageRgb8(b) => b
            .iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = (i as u8) ^ seed),
        DynamicImage::ImageRgba8(b) => b
            .iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = (i as u8) ^ seed),
        DynamicImage::ImageLuma16(b) => b
            .iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = (i as u16) * 257),
        DynamicImage::ImageRgba16(b) => b
            .iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = (i as u16) * 97),
        _ => unreachable!(),
    }
    let jpeg = jpeg && matches!(kind % 6, 0 | 2);
    let (format, ext) = if jpeg {
        (ImageFormat::Jpeg, "jpg")
    } else {
        (ImageFormat::Png, "png")
    };
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    (out.into_inner(), ext)
}

/// Replaces the declared size: PNG's IHDR (and its CRC, unless `keep_crc`), or JPEG's SOF.
fn lie_about_size(bytes: &mut [u8], w: u32, h: u32, keep_crc: bool) {
    if bytes.starts_with(b"\x89PNG") && bytes.len() >= 33 {
        bytes[16..20].copy_from_slice(&w.to_be_bytes());
        bytes[20..24].copy_from_slice(&h.to_be_bytes());
        if !keep_crc {
            let mut crc = flate2::Crc::new();
            crc.update(&bytes[12..29]);
            bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        }
    } else if let Some(i) = bytes
        .windows(2)
        .position(|m| m[0] == 0xFF && (m[1] == 0xC0 || m[1] == 0xC2))
    {
        if bytes.len() >= i + 9 {
            bytes[i + 5..i + 7].copy_from_slice(&(h.min(65535) as u16).to_be_bytes());
            bytes[i + 7..i + 9].copy_from_slice(&(w.min(65535) as u16).to_be_bytes());
        }
    }
}

/// Loads `bytes` as `name` through every entry point; returns whether decoding succeeded.
fn check(bytes: &[u8], name: &str, size: usize, channels: usize) -> Result<bool, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    fuzz::reset();
    let decoded = decode_image(&path);
    let ok = decoded.is_ok();
    match decoded {
        Ok(img) => {
            let v = preprocess_image(&img, size, channels);
            match v {
                Ok(v) => {
                    prop_assert_eq!(v.len(), channels * size * size);
                    prop_assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
                }
                Err(e) => prop_assert!(e.to_string().contains("image is empty"), "{}", e),
            }
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("data: ") && msg.contains(name), "{}", msg);
        }
    }
    let folder = ImageFolder::load(dir.path(), ImageFolderConfig { size, channels });
    let largest = fuzz::largest();
    prop_assert!(
        largest <= ALLOC_PER_INPUT_BYTE * bytes.len() + ALLOC_BASE,
        "allocated {largest} bytes at once for {} input bytes",
        bytes.len()
    );
    match folder {
        Ok(f) => prop_assert!(ok && f.len() == 1),
        Err(e) => prop_assert!(!ok || e.to_string().contains("image is empty"), "{}", e),
    }
    Ok(ok)
}

fn side() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..40,
        1 => Just(1 << 14),
        1 => Just(65535),
        1 => Just(1 << 31),
        1 => Just(u32::MAX),
        1 => Just(5000),
    ]
}

fn params() -> impl Strategy<Value = (u32, u32, u8, u8, bool, usize, usize)> {
    (
        1u32..24,
        1u32..24,
        0u8..6,
        any::<u8>(),
        any::<bool>(),
        1usize..12,
        prop_oneof![Just(1usize), Just(3)],
    )
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn encoded_images_load((w, h, kind, seed, jpeg, size, channels) in params()) {
        let (bytes, ext) = encode(w, h, kind, seed, jpeg);
        prop_assert!(check(&bytes, &format!("img.{ext}"), size, channels)?, "a valid image loads");
    }

    #[test]
    fn lying_headers(
        (w, h, kind, seed, jpeg, size, channels) in params(),
        lw in side(),
        lh in side(),
        keep_crc in prop_oneof![4 => Just(false), 1 => Just(true)],
        cut in prop_oneof![2 => Just(None), 1 => any::<u16>().prop_map(Some)],
    ) {
        let (mut bytes, ext) = encode(w, h, kind, seed, jpeg);
        lie_about_size(&mut bytes, lw, lh, keep_crc);
        if let Some(c) = cut {
            let n = (c as usize * bytes.len()) >> 16;
            bytes.truncate(n);
        }
        check(&bytes, &format!("img.{ext}"), size, channels)?;
    }

    #[test]
    fn mutated_files((w, h, kind, seed, jpeg, size, channels) in params(), edits in fuzz::edits(3)) {
        let (bytes, ext) = encode(w, h, kind, seed, jpeg);
        check(&fuzz::mutate(&bytes, &edits), &format!("img.{ext}"), size, channels)?;
    }

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), jpeg in any::<bool>()) {
        let name = if jpeg { "x.jpg" } else { "x.png" };
        check(&bytes, name, 4, 3)?;
    }
}

/// A 67-byte PNG declaring 5000x5000 RGBA 16-bit (200 MB decoded): the decoder allocated
/// the whole buffer before finding the data missing. Now refused from the header.
#[test]
fn tiny_png_declaring_a_huge_image_is_refused_before_decoding() {
    let (mut bytes, _) = encode(2, 2, 5, 0, false);
    lie_about_size(&mut bytes, 5000, 5000, false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liar.png");
    std::fs::write(&path, &bytes).unwrap();
    fuzz::reset();
    let e = decode_image(&path).unwrap_err().to_string();
    assert!(fuzz::largest() < 1 << 20, "allocated {}", fuzz::largest());
    assert!(
        e.contains("declares 5000x5000") && e.contains("liar.png"),
        "{e}"
    );
}

/// The limits do not refuse real images: a 1000x1000 solid PNG (a few KB, a high
/// pixels-per-byte ratio) still loads.
#[test]
fn highly_compressible_real_image_still_loads() {
    let img = DynamicImage::new_rgb8(1000, 1000);
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    let bytes = out.into_inner();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("solid.png");
    std::fs::write(&path, &bytes).unwrap();
    let img = decode_image(&path).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (1000, 1000),
        "{} bytes",
        bytes.len()
    );
    assert!(Path::new(&path).exists());
}
