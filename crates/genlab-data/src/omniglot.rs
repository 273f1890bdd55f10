//! Omniglot (Lake, Salakhutdinov & Tenenbaum 2015, "Human-level concept learning through
//! probabilistic program induction", Science 350): 1623 handwritten characters of 50
//! alphabets, each drawn by 20 people, 105x105 black-on-white PNGs.
//!
//! `genlab data fetch omniglot` downloads the two zips of its official repository
//! (`images_background.zip`: 30 alphabets, 964 characters; `images_evaluation.zip`: 20
//! alphabets, 659 characters). No checksum of them could be taken where this was written,
//! so each zip is checked by structure instead: `ROOT/ALPHABET/characterNN/*.png`, every
//! character with exactly [`DRAWERS`] drawings. The drawings are resized to 28x28 (the usual
//! few-shot size; image's triangle filter, which widens with the scale) and inverted to ink
//! 1 on background 0, then stored like the glyph set: `omniglot.bin` (u8 pixels, class
//! after class) and `omniglot.json` ([`OmniglotIndex`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use genlab_core::{Error, Result};
use image::imageops::FilterType;
use serde::{Deserialize, Serialize};

use crate::class_images::ClassImages;
use crate::Progress;

/// Drawings per character.
pub const DRAWERS: usize = 20;
/// Side of the stored images.
pub const OMNIGLOT_SIZE: usize = 28;
/// Sub-folder of the data directory.
pub const OMNIGLOT_SUBDIR: &str = "omniglot";
/// The official zips: (file, whether it is the background set).
pub const OMNIGLOT_ZIPS: [(&str, bool); 2] = [
    ("images_background.zip", true),
    ("images_evaluation.zip", false),
];
/// Where they are published (the authors' repository).
pub const OMNIGLOT_URL_BASE: &str = "https://github.com/brendenlake/omniglot/raw/master/python/";
const BIN_FILE: &str = "omniglot.bin";
const INDEX_FILE: &str = "omniglot.json";

/// One character.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OmniglotClass {
    pub alphabet: String,
    pub character: String,
    /// From the background set (meta-training) rather than the evaluation set.
    pub background: bool,
}

/// What `omniglot.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OmniglotIndex {
    pub size: usize,
    pub per_class: usize,
    pub classes: Vec<OmniglotClass>,
}

/// The converted data set.
pub struct Omniglot {
    index: OmniglotIndex,
    images: ClassImages,
}

/// One drawing in a zip: its file name and PNG bytes.
type Drawing = (String, Vec<u8>);

/// Reads one Omniglot zip: its characters (sorted) with their 20 drawings as 28x28 u8.
pub fn read_omniglot_zip(path: &Path, background: bool) -> Result<Vec<(OmniglotClass, Vec<u8>)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::Data(format!("{}: not a zip archive: {e}", path.display())))?;
    // (alphabet, character) -> [(file name, png bytes)]
    let mut chars: std::collections::BTreeMap<(String, String), Vec<Drawing>> = Default::default();
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| Error::Data(format!("{}: entry {i}: {e}", path.display())))?;
        let name = f
            .name()
            .map_err(|e| Error::Data(format!("{}: entry {i}: bad name: {e}", path.display())))?
            .to_string();
        if f.is_dir() || !name.to_ascii_lowercase().ends_with(".png") {
            continue;
        }
        let parts: Vec<&str> = name.split('/').collect();
        // ROOT/ALPHABET/CHARACTER/FILE.png
        if parts.len() != 4 {
            return Err(Error::Data(format!(
                "{}: `{name}` is not laid out as ROOT/ALPHABET/characterNN/NAME.png (Omniglot's layout)",
                path.display()
            )));
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| Error::Data(format!("{}: {name}: {e}", path.display())))?;
        chars
            .entry((parts[1].to_string(), parts[2].to_string()))
            .or_default()
            .push((parts[3].to_string(), bytes));
    }
    if chars.is_empty() {
        return Err(Error::Data(format!(
            "{}: no PNG drawings found (expected ROOT/ALPHABET/characterNN/*.png)",
            path.display()
        )));
    }
    let mut out = Vec::with_capacity(chars.len());
    for ((alphabet, character), mut files) in chars {
        if files.len() != DRAWERS {
            return Err(Error::Data(format!(
                "{}: {alphabet}/{character} has {} drawings, Omniglot has {DRAWERS} per character",
                path.display(),
                files.len()
            )));
        }
        files.sort();
        let mut pixels = Vec::with_capacity(DRAWERS * OMNIGLOT_SIZE * OMNIGLOT_SIZE);
        for (name, bytes) in files {
            let img = image::load_from_memory(&bytes)
                .map_err(|e| {
                    Error::Data(format!(
                        "{}: {alphabet}/{character}/{name}: {e}",
                        path.display()
                    ))
                })?
                .to_luma8();
            let small = image::imageops::resize(
                &img,
                OMNIGLOT_SIZE as u32,
                OMNIGLOT_SIZE as u32,
                FilterType::Triangle,
            );
            // Black strokes on white -> ink 1 on 0.
            pixels.extend(small.pixels().map(|p| 255 - p.0[0]));
        }
        out.push((
            OmniglotClass {
                alphabet,
                character,
                background,
            },
            pixels,
        ));
    }
    Ok(out)
}

/// Converts the two zips in `dir` into `omniglot.bin` / `omniglot.json` there.
pub fn convert_omniglot(dir: &Path) -> Result<OmniglotIndex> {
    let mut classes = Vec::new();
    let mut pixels = Vec::new();
    for (file, background) in OMNIGLOT_ZIPS {
        for (c, p) in read_omniglot_zip(&dir.join(file), background)? {
            classes.push(c);
            pixels.extend(p);
        }
    }
    let index = OmniglotIndex {
        size: OMNIGLOT_SIZE,
        per_class: DRAWERS,
        classes,
    };
    genlab_core::io::write_atomic(&dir.join(BIN_FILE), &pixels)?;
    genlab_core::io::write_json(&dir.join(INDEX_FILE), &index)?;
    Ok(index)
}

/// Downloads the two zips into `root/omniglot` (kept), checks and converts them.
pub fn fetch_omniglot(root: &Path, progress: &mut dyn Progress) -> Result<PathBuf> {
    let dir = root.join(OMNIGLOT_SUBDIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        .build();
    for (file, _) in OMNIGLOT_ZIPS {
        let dest = dir.join(file);
        if dest.exists() {
            continue;
        }
        let url = format!("{OMNIGLOT_URL_BASE}{file}");
        let resp = agent
            .get(&url)
            .call()
            .map_err(|e| Error::Data(format!("download failed: {e}")))?;
        let total = resp
            .header("Content-Length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        progress.start(&url, total);
        let mut body = crate::progress::ProgressReader::new(resp.into_reader(), progress);
        let mut bytes = Vec::new();
        body.read_to_end(&mut bytes)
            .map_err(|e| Error::Data(format!("GET {url}: {e}")))?;
        progress.finish(&url);
        genlab_core::io::write_atomic(&dest, &bytes)?;
    }
    let index = convert_omniglot(&dir)?;
    let alphabets: std::collections::BTreeSet<&str> =
        index.classes.iter().map(|c| c.alphabet.as_str()).collect();
    progress.note(&format!(
        "omniglot: {} characters of {} alphabets",
        index.classes.len(),
        alphabets.len()
    ));
    Ok(dir)
}

impl Omniglot {
    /// Reads the converted set in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        if !index_path.exists() {
            return Err(Error::Data(format!(
                "no Omniglot in {} (expected {INDEX_FILE}); fetch it with `genlab data fetch omniglot`",
                dir.display()
            )));
        }
        let index: OmniglotIndex = genlab_core::io::read_json(&index_path)?;
        let images = ClassImages::read(
            "omniglot",
            &dir.join(BIN_FILE),
            index.size,
            index.per_class,
            index.classes.len(),
        )?;
        Ok(Self { index, images })
    }

    pub fn classes(&self) -> &[OmniglotClass] {
        &self.index.classes
    }

    /// The images as a data set (labels: the classes' indices).
    pub fn images(&self) -> &ClassImages {
        &self.images
    }

    pub fn into_images(self) -> ClassImages {
        self.images
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;
    use std::io::Write;

    /// A zip in Omniglot's layout: `alphabets` x `chars` characters of `drawers` 105x105
    /// PNGs; drawing d of character c is a black square whose side grows with c.
    fn make_zip(path: &Path, root: &str, alphabets: usize, chars: usize, drawers: usize) {
        let mut zw = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for a in 0..alphabets {
            for c in 0..chars {
                for d in 0..drawers {
                    let side = 20 + 30 * c as u32;
                    let img = image::GrayImage::from_fn(105, 105, |x, y| {
                        image::Luma([if x < side && y < side { 0 } else { 255 }])
                    });
                    let mut png = Vec::new();
                    image::DynamicImage::ImageLuma8(img)
                        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                        .unwrap();
                    zw.start_file(
                        format!(
                            "{root}/Alphabet_{a}/character{:02}/{:04}_{:02}.png",
                            c + 1,
                            c + 1,
                            d + 1
                        ),
                        opts,
                    )
                    .unwrap();
                    zw.write_all(&png).unwrap();
                }
            }
        }
        zw.finish().unwrap();
    }

    #[test]
    fn converts_the_layout_to_28_pixel_ink_images() {
        let t = tempfile::tempdir().unwrap();
        make_zip(
            &t.path().join("images_background.zip"),
            "images_background",
            2,
            2,
            DRAWERS,
        );
        make_zip(
            &t.path().join("images_evaluation.zip"),
            "images_evaluation",
            1,
            2,
            DRAWERS,
        );
        let index = convert_omniglot(t.path()).unwrap();
        assert_eq!(index.classes.len(), 6);
        assert_eq!(index.classes.iter().filter(|c| c.background).count(), 4);
        let o = Omniglot::load(t.path()).unwrap().into_images();
        assert_eq!(o.len(), 6 * DRAWERS);
        let mut x = vec![0f32; 28 * 28];
        // Character 1: a 20-pixel black square of 105 -> ink in the top-left ~5x5 of 28.
        o.write_example(0, &mut x);
        assert!(
            x[0] > 0.9 && x[27 * 28 + 27] < 0.1,
            "ink 1 where the stroke was"
        );
        let ink: f32 = x.iter().sum();
        let want = (20.0f32 * 28.0 / 105.0).powi(2);
        assert!(
            (ink - want).abs() < 0.25 * want,
            "ink {ink} vs the square's area {want}"
        );
        assert_eq!(o.label(DRAWERS), Some(1));
    }

    #[test]
    fn a_character_without_twenty_drawings_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        make_zip(
            &t.path().join("images_background.zip"),
            "images_background",
            1,
            1,
            19,
        );
        let e = read_omniglot_zip(&t.path().join("images_background.zip"), true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("19 drawings") && e.contains("20 per character"),
            "{e}"
        );
    }
}
