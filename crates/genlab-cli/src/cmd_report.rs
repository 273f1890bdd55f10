//! `genlab report RUN... --out report.html`: one self-contained HTML page about a set of
//! runs (genlab_serve::report), pictures inlined.

use std::path::PathBuf;

use clap::Args;

#[derive(Args)]
pub struct ReportArgs {
    /// Run directories to put in the page.
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// The HTML file to write (it needs nothing beside it).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let s = genlab_serve::report::write_report(&a.runs, &a.out).map_err(crate::serve_error)?;
    println!(
        "wrote {} ({} run{}, {} picture{} inlined, {:.1} KiB)",
        a.out.display(),
        s.runs,
        if s.runs == 1 { "" } else { "s" },
        s.pictures,
        if s.pictures == 1 { "" } else { "s" },
        s.bytes as f64 / 1024.0
    );
    Ok(())
}
