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
    /// verifying every file's sha256. Datasets: mnist.
    Fetch {
        /// Dataset to fetch (mnist).
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
                other => bail!("unknown dataset to fetch `{other}` (fetchable: mnist; the 8x8 digits and toy sets are built in)"),
            }
        }
    }
}
