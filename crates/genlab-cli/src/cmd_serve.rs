//! `genlab serve`: the local web UI over a runs directory (genlab_serve); this command
//! parses, starts the server, prints its address and job news, and stops it on Ctrl-C.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Directory of training runs to show (what `genlab train --out` writes into; runs
    /// started from the page go here too).
    #[arg(long)]
    pub runs: PathBuf,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = genlab_serve::DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on. The default answers this machine only; any other address
    /// needs --token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// A secret (8+ characters from A-Z a-z 0-9 - _ . ~) every request must carry: open the
    /// printed address once (it sets a cookie) or send `Authorization: Bearer TOKEN`.
    #[arg(long)]
    pub token: Option<String>,
    /// Jobs (training, sampling, evaluation) that run at the same time.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Jobs that may wait in the queue; more are refused until one finishes.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
}

pub fn run(a: ServeArgs, device: &candle_core::Device) -> anyhow::Result<()> {
    let opts = genlab_serve::ServeOptions {
        runs: a.runs.clone(),
        host: a.host,
        port: a.port,
        token: a.token,
        workers: a.workers,
        queue: a.queue,
        device: device.clone(),
        notify: Arc::new(|line: &str| eprintln!("{line}")),
    };
    let server = genlab_serve::Server::start(opts).map_err(crate::serve_error)?;
    println!(
        "serving the runs in {} at {}  (Ctrl-C to stop)",
        a.runs.display(),
        server.url()
    );
    let stop = crate::progress::stop_flag();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("stopping: running training jobs save their checkpoints first");
    server.shutdown();
    Ok(())
}
