//! A folder of users' own video clips, each clip a folder of frames, loaded into memory. No
//! paper: the layout of frame-folder video sets (UCF-101 and Kinetics extracted to frames).
//!
//! Layout: every *leaf* folder (one that holds PNG/JPEG files) is one clip, its frames its
//! image files sorted by file name (so name them with zero-padded numbers: `0001.png`,
//! `0002.png`, ...). The clips are either the sub-folders of `root` (no labels) or the
//! sub-folders of class folders in `root` (`root/CLASS/CLIP/*.png`; label = the class
//! folder's position in name order). Mixing the two, or images directly in `root`, is an
//! error. Hidden entries and other files are skipped, as in `folder:`.
//!
//! Frames are decoded and brought to `size x size` with `channels` channels exactly as
//! `folder:` does ([`crate::image_folder::load_images`]). A clip with fewer than `frames`
//! frames is an error that names it; a longer clip gives its first `frames` frames. An
//! example is `[frames, channels, size, size]` in `[0, 1]`.
//!
//! Spec: `video-folder:PATH[,frames=N]` (default 8 frames); size and channels are the run's
//! (`--image-size`, `--channels`; default 32x32 RGB).

use std::path::{Path, PathBuf};

use genlab_core::{Error, Result};

use crate::image_folder::{check_folder, images_in, load_images, sorted_entries};
use crate::{DataKind, Dataset, DatasetInfo, ImageFolderConfig, OpenOptions};

/// Frames per clip when the spec does not say (as Moving MNIST's default).
pub const DEFAULT_FRAMES: usize = 8;
/// Most frames per clip (a guard against typos).
pub const MAX_FRAMES: usize = 1024;

/// How clips are brought to one shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoFolderConfig {
    /// Frames per clip: the first `frames` of each (longer clips are cut).
    pub frames: usize,
    /// Side and channels of every frame, as `folder:`.
    pub image: ImageFolderConfig,
}

impl Default for VideoFolderConfig {
    fn default() -> Self {
        Self {
            frames: DEFAULT_FRAMES,
            image: ImageFolderConfig::default(),
        }
    }
}

/// Splits `PATH[,frames=N]` into the folder and its frame count.
pub fn parse_video_folder_arg(arg: Option<&str>) -> Result<(PathBuf, Option<usize>)> {
    let arg = arg.unwrap_or_default();
    let (path, frames) = match arg.rsplit_once(',') {
        Some((p, opt)) if opt.trim_start().starts_with("frames=") => {
            let v = opt.trim_start().trim_start_matches("frames=").trim();
            let n: usize = v.parse().map_err(|_| {
                Error::InvalidInput(format!(
                    "video-folder option frames={v}: expected a whole number"
                ))
            })?;
            if n == 0 || n > MAX_FRAMES {
                return Err(Error::Setting {
                    setting: "video-folder frames".into(),
                    problem: format!("must be 1..={MAX_FRAMES}, got {n}"),
                });
            }
            (p, Some(n))
        }
        _ => (arg, None),
    };
    if path.is_empty() {
        return Err(Error::InvalidInput(
            "video-folder: needs a path, e.g. video-folder:/data/clips or \
             video-folder:/data/clips,frames=16"
                .into(),
        ));
    }
    Ok((PathBuf::from(path), frames))
}

/// The registry's `info` of `video-folder`: clips of `frames` frames; size, channels and
/// labels depend on the files and the run.
pub fn video_folder_info(arg: Option<&str>) -> Result<DatasetInfo> {
    parse_video_folder_arg(arg)?;
    Ok(DatasetInfo {
        kind: DataKind::Video,
        shape: None,
        labels: None,
        num_classes: None,
        held_out: None,
        log_density: None,
        mode_coverage: None,
        labels_are_modes: false,
    })
}

/// The registry's `open` of `video-folder`.
pub fn open_video_folder(arg: Option<&str>, opts: &OpenOptions) -> Result<Box<dyn Dataset>> {
    let (path, frames) = parse_video_folder_arg(arg)?;
    let d = ImageFolderConfig::default();
    let cfg = VideoFolderConfig {
        frames: frames.unwrap_or(DEFAULT_FRAMES),
        image: ImageFolderConfig {
            size: opts.image_size.unwrap_or(d.size),
            channels: opts.channels.unwrap_or(d.channels),
        },
    };
    Ok(Box::new(VideoFolder::load(&path, cfg)?))
}

/// Clips of one folder, in memory.
#[derive(Clone, Debug)]
pub struct VideoFolder {
    name: String,
    cfg: VideoFolderConfig,
    /// `[N, T, C, size, size]` values in [0, 1].
    data: Vec<f32>,
    labels: Option<Vec<u32>>,
    class_names: Vec<String>,
    clips: Vec<PathBuf>,
}

/// A clip's folder and its frame files (sorted).
type Clip = (PathBuf, Vec<PathBuf>);

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl VideoFolder {
    /// Loads every clip under `root` (see the module documentation for the layout).
    pub fn load(root: &Path, cfg: VideoFolderConfig) -> Result<Self> {
        if cfg.frames == 0 || cfg.frames > MAX_FRAMES {
            return Err(Error::Setting {
                setting: "video-folder frames".into(),
                problem: format!("must be 1..={MAX_FRAMES}, got {}", cfg.frames),
            });
        }
        check_folder(
            root,
            "a folder of clip folders, or of class folders of clip folders",
        )?;
        let loose = images_in(root)?;
        if !loose.is_empty() {
            return Err(Error::Data(format!(
                "video folder {} has {} images directly inside it; expected one sub-folder of \
                 frames per clip (root/CLIP/0001.png), optionally inside class folders \
                 (root/CLASS/CLIP/0001.png)",
                root.display(),
                loose.len()
            )));
        }
        // Each sub-folder is a clip (it holds frames) or a class (it holds clip folders).
        let mut clips: Vec<Clip> = Vec::new();
        let mut classes: Vec<(String, Vec<Clip>)> = Vec::new();
        for sub in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let frames = images_in(&sub)?;
            if !frames.is_empty() {
                clips.push((sub, frames));
                continue;
            }
            let mut inner = Vec::new();
            for clip in sorted_entries(&sub)?.into_iter().filter(|p| p.is_dir()) {
                let frames = images_in(&clip)?;
                if !frames.is_empty() {
                    inner.push((clip, frames));
                }
            }
            if !inner.is_empty() {
                classes.push((file_name(&sub), inner));
            }
        }
        if !clips.is_empty() && !classes.is_empty() {
            return Err(Error::Data(format!(
                "video folder {} mixes clip folders ({}, ...) and class folders ({}, ...); \
                 expected one layout: every clip inside a class folder, or none",
                root.display(),
                file_name(&clips[0].0),
                classes[0].0
            )));
        }
        let (clips, labels, class_names) = if classes.is_empty() {
            if clips.is_empty() {
                return Err(Error::Data(format!(
                    "no clips found in {}: expected sub-folders of PNG/JPEG frames",
                    root.display()
                )));
            }
            (clips, None, Vec::new())
        } else {
            let mut all = Vec::new();
            let mut labels = Vec::new();
            let mut names = Vec::new();
            for (k, (name, inner)) in classes.into_iter().enumerate() {
                labels.extend(std::iter::repeat_n(k as u32, inner.len()));
                all.extend(inner);
                names.push(name);
            }
            (all, Some(labels), names)
        };
        let t = cfg.frames;
        let mut data = Vec::new();
        for (clip, frames) in &clips {
            if frames.len() < t {
                return Err(Error::Data(format!(
                    "clip {} has {} frame(s), fewer than the {t} asked for; give it more \
                     frames or ask for fewer (video-folder:PATH,frames=N)",
                    clip.display(),
                    frames.len()
                )));
            }
            data.extend(load_images(&frames[..t], cfg.image)?);
        }
        Ok(Self {
            name: format!("video-folder:{}", root.display()),
            cfg,
            data,
            labels,
            class_names,
            clips: clips.into_iter().map(|c| c.0).collect(),
        })
    }

    /// Class names (class folder names, sorted); empty when the clips have no classes.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The folder of each clip.
    pub fn clip_paths(&self) -> &[PathBuf] {
        &self.clips
    }

    /// The configuration the clips were loaded with.
    pub fn config(&self) -> VideoFolderConfig {
        self.cfg
    }

    fn per_clip(&self) -> usize {
        let s = self.cfg.image.size;
        self.cfg.frames * self.cfg.image.channels * s * s
    }
}

impl Dataset for VideoFolder {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.clips.len()
    }

    fn example_shape(&self) -> Vec<usize> {
        let s = self.cfg.image.size;
        vec![self.cfg.frames, self.cfg.image.channels, s, s]
    }

    fn write_example(&self, i: usize, out: &mut [f32]) {
        let per = self.per_clip();
        out.copy_from_slice(&self.data[i * per..(i + 1) * per]);
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.labels.as_ref().and_then(|l| l.get(i).copied())
    }

    fn num_classes(&self) -> Option<usize> {
        self.labels.as_ref().map(|_| self.class_names.len())
    }

    fn kind(&self) -> DataKind {
        DataKind::Video
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_folder::preprocess_image;
    use image::RgbImage;

    /// Writes a `w x h` frame of one colour.
    fn frame(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    fn cfg(frames: usize, size: usize, channels: usize) -> VideoFolderConfig {
        VideoFolderConfig {
            frames,
            image: ImageFolderConfig { size, channels },
        }
    }

    #[test]
    fn clips_are_frames_in_name_order_resized_as_folder_does() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Clip a: 3 frames, given out of order; clip b: 4 frames (cut to 3).
        for (k, v) in [(2u8, 200u8), (0, 0), (1, 100)] {
            frame(&root.join(format!("a/{k:04}.png")), 12, 8, [v, v, v]);
        }
        for k in 0..4u8 {
            frame(&root.join(format!("b/{k:04}.png")), 6, 6, [k * 60, 0, 255]);
        }
        std::fs::write(root.join("a/notes.txt"), "skip me").unwrap();
        let ds = VideoFolder::load(root, cfg(3, 4, 3)).unwrap();
        assert_eq!(
            (ds.len(), ds.example_shape(), ds.kind()),
            (2, vec![3, 3, 4, 4], DataKind::Video)
        );
        assert!(ds.label(0).is_none() && ds.num_classes().is_none());
        let mut out = vec![0f32; 3 * 3 * 16];
        ds.write_example(0, &mut out);
        for (k, v) in [0.0f32, 100.0 / 255.0, 200.0 / 255.0].iter().enumerate() {
            assert!(out[k * 48..(k + 1) * 48]
                .iter()
                .all(|x| (x - v).abs() < 1e-6));
        }
        // Each frame is what folder: makes of that file.
        ds.write_example(1, &mut out);
        for k in 0..3usize {
            let img =
                crate::image_folder::decode_image(&root.join(format!("b/{k:04}.png"))).unwrap();
            let want = preprocess_image(&img, 4, 3).unwrap();
            assert_eq!(&out[k * 48..(k + 1) * 48], &want[..]);
        }
        let grey = VideoFolder::load(root, cfg(2, 5, 1)).unwrap();
        assert_eq!(grey.example_shape(), vec![2, 1, 5, 5]);
    }

    #[test]
    fn class_folders_label_their_clips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (class, clip) in [("walk", "c1"), ("walk", "c2"), ("jump", "x")] {
            for k in 0..2 {
                frame(
                    &root.join(format!("{class}/{clip}/{k}.png")),
                    4,
                    4,
                    [9, 9, 9],
                );
            }
        }
        let ds = VideoFolder::load(root, cfg(2, 4, 1)).unwrap();
        assert_eq!(ds.class_names(), &["jump".to_string(), "walk".to_string()]);
        assert_eq!(ds.num_classes(), Some(2));
        let labels: Vec<u32> = (0..3).map(|i| ds.label(i).unwrap()).collect();
        assert_eq!(labels, vec![0, 1, 1]);
        assert!(ds.clip_paths()[2].ends_with("walk/c2"));
    }

    #[test]
    fn bad_layouts_and_short_clips_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        frame(&root.join("a/0.png"), 4, 4, [0, 0, 0]);
        frame(&root.join("a/1.png"), 4, 4, [0, 0, 0]);
        let e = VideoFolder::load(root, cfg(3, 4, 1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("clip") && e.contains("/a") && e.contains("2 frame(s)"),
            "{e}"
        );
        frame(&root.join("walk/c/0.png"), 4, 4, [0, 0, 0]);
        let e = VideoFolder::load(root, cfg(1, 4, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mixes clip folders"), "{e}");
        frame(&root.join("loose.png"), 4, 4, [0, 0, 0]);
        let e = VideoFolder::load(root, cfg(1, 4, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("directly inside"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = VideoFolder::load(empty.path(), cfg(1, 4, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no clips"), "{e}");
        assert!(VideoFolder::load(&root.join("nope"), cfg(1, 4, 1)).is_err());
        assert!(VideoFolder::load(root, cfg(0, 4, 1)).is_err());
    }

    #[test]
    fn specs_carry_the_path_and_the_frame_count() {
        let (p, f) = parse_video_folder_arg(Some("/data/my,clips,frames=16")).unwrap();
        assert_eq!((p, f), (PathBuf::from("/data/my,clips"), Some(16)));
        let (p, f) = parse_video_folder_arg(Some("clips")).unwrap();
        assert_eq!((p, f), (PathBuf::from("clips"), None));
        assert!(parse_video_folder_arg(Some("clips,frames=x")).is_err());
        assert!(parse_video_folder_arg(Some("clips,frames=0")).is_err());
        assert!(parse_video_folder_arg(Some("")).is_err());
        let info = crate::dataset_info("video-folder:somewhere,frames=4").unwrap();
        assert_eq!(info.kind, DataKind::Video);
        let dir = tempfile::tempdir().unwrap();
        for k in 0..5 {
            frame(&dir.path().join(format!("c/{k}.png")), 4, 4, [1, 2, 3]);
        }
        let spec = format!("video-folder:{},frames=4", dir.path().display());
        let opts = OpenOptions {
            image_size: Some(6),
            channels: Some(1),
            ..Default::default()
        };
        let ds = crate::open_dataset(&spec, &opts).unwrap();
        assert_eq!(ds.example_shape(), vec![4, 1, 6, 6]);
    }
}
