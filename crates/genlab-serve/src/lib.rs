//! genlab-serve: `genlab serve`, the local web UI, and `genlab report`, one self-contained
//! HTML page of a set of runs.
//!
//! The server shows every run under one directory ([`runs`]), follows a training log as it
//! grows ([`logs`]), and runs training, sampling, comparison and evaluation jobs in a bounded
//! queue ([`jobs`]) through the same library calls as the `genlab` command ([`work`]). The
//! playground's form comes from the model registry's capabilities ([`params`]), never from
//! model names. Pages are plain HTML, CSS and JavaScript compiled into the binary; there is
//! no build step.
//!
//! Safety: requests name files only relative to the runs directory and anything that could
//! reach outside it is refused ([`paths`]); the server binds to 127.0.0.1 unless told
//! otherwise, and any other address needs a token that every request must carry; request
//! bodies, the job queue and the kept history are bounded.
//!
//! ```no_run
//! use genlab_serve::{ServeOptions, Server};
//!
//! let server = Server::start(ServeOptions::new("runs")).unwrap();
//! println!("open {}", server.url());
//! // ... later:
//! server.shutdown(); // running training jobs save their checkpoints first
//! ```

pub mod error;
mod http;
pub mod jobs;
pub mod logs;
pub mod params;
pub mod paths;
pub mod report;
pub mod runs;
pub mod work;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;

pub use error::{Result, ServeError};
pub use jobs::{JobKind, JobState, Jobs, Notify};
pub use paths::RunsRoot;

/// How [`Server::start`] serves.
#[derive(Clone)]
pub struct ServeOptions {
    /// The directory whose runs are shown (it must exist).
    pub runs: PathBuf,
    /// The address to bind: 127.0.0.1 (this machine only) unless told otherwise.
    pub host: IpAddr,
    /// The port; 0 picks a free one.
    pub port: u16,
    /// A secret every request must carry (`Authorization: Bearer TOKEN`, or `?token=TOKEN`
    /// once, which sets a cookie). Required for any address that is not loopback.
    pub token: Option<String>,
    /// Jobs that run at the same time.
    pub workers: usize,
    /// Jobs that may wait in the queue; more are refused (HTTP 503).
    pub queue: usize,
    /// Where jobs train and sample.
    pub device: Device,
    /// Receives one line per event worth a terminal line (a job started, ended or failed;
    /// a request refused).
    pub notify: Notify,
}

impl ServeOptions {
    /// Serve `runs` on 127.0.0.1:8000 with two workers and a queue of 16, on the CPU,
    /// printing nothing.
    pub fn new(runs: impl Into<PathBuf>) -> Self {
        Self {
            runs: runs.into(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            token: None,
            workers: 2, // one training job and one sampling job side by side
            queue: 16,  // a burst of sampling requests waits; beyond it, 503
            device: Device::Cpu,
            notify: Arc::new(|_| {}),
        }
    }
}

/// The port `genlab serve` listens on by default.
pub const DEFAULT_PORT: u16 = 8000;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    token: Option<String>,
    jobs: Arc<Jobs>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Checks the options, binds the port and starts serving on a background thread.
    /// Errors: the runs directory missing, the port in use, a non-loopback address
    /// without a token.
    pub fn start(opts: ServeOptions) -> Result<Self> {
        let root = RunsRoot::open(&opts.runs)?;
        if let Some(t) = &opts.token {
            // Characters that travel in an address unencoded (`?token=...`).
            let url_safe = |b: u8| b.is_ascii_alphanumeric() || b"-_.~".contains(&b);
            if t.len() < 8 || !t.bytes().all(url_safe) {
                return Err(genlab_core::Error::setting(
                    "token",
                    "must be at least 8 characters from A-Z, a-z, 0-9 and - _ . ~ \
                     (e.g. the output of `openssl rand -hex 16`)",
                )
                .into());
            }
        }
        if !opts.host.is_loopback() && opts.token.is_none() {
            return Err(genlab_core::Error::setting(
                "token",
                format!(
                    "is required to serve on {}, which is not a loopback address: anyone who \
                     can reach it could read the runs and start jobs; every request must then \
                     carry the token",
                    opts.host
                ),
            )
            .into());
        }
        if opts.queue == 0 || opts.workers == 0 {
            return Err(genlab_core::Error::setting(
                if opts.workers == 0 {
                    "workers"
                } else {
                    "queue"
                },
                "must be at least 1, got 0",
            )
            .into());
        }
        let listener = std::net::TcpListener::bind((opts.host, opts.port)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                genlab_core::Error::setting(
                    "port",
                    format!(
                        "{} on {} is in use by another program (another genlab serve?); \
                         choose another port",
                        opts.port, opts.host
                    ),
                )
            } else {
                genlab_core::Error::setting(
                    "port",
                    format!("{} on {} cannot be bound: {e}", opts.port, opts.host),
                )
            }
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ServeError::io("configure the socket of", opts.runs.clone(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServeError::io("read the address of", opts.runs.clone(), e))?;
        let scratch = tempfile::Builder::new()
            .prefix("genlab-serve-")
            .tempdir()
            .map_err(|e| ServeError::io("create a scratch folder in", std::env::temp_dir(), e))?;
        let jobs = Arc::new(Jobs::new(opts.workers, opts.queue, opts.notify.clone()));
        let env = Arc::new(work::Env {
            root,
            device: opts.device.clone(),
            scratch: scratch.path().to_path_buf(),
        });
        let app = http::App::new(
            env,
            jobs.clone(),
            opts.token.clone(),
            addr,
            opts.notify.clone(),
            scratch,
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("genlab-serve-http")
            .enable_all()
            .build()
            .map_err(|e| ServeError::io("start the server runtime for", opts.runs.clone(), e))?;
        let thread = std::thread::Builder::new()
            .name("genlab-serve".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let router = http::router(app);
                    tokio::select! {
                        _ = axum::serve(listener, router) => {}
                        _ = rx => {}
                    }
                });
                // Open streams end with the runtime.
                runtime.shutdown_background();
            })
            .map_err(|e| ServeError::io("start the server thread for", opts.runs.clone(), e))?;
        Ok(Self {
            addr,
            token: opts.token,
            jobs,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address to open in a browser (with the token, which sets a cookie, if any).
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        match &self.token {
            Some(t) => format!("http://{host}:{}/?token={t}", self.addr.port()),
            None => format!("http://{host}:{}/", self.addr.port()),
        }
    }

    /// The job queue.
    pub fn jobs(&self) -> &Arc<Jobs> {
        &self.jobs
    }

    /// Stops every job (training jobs save a checkpoint first, as on Ctrl-C), then the
    /// server.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.jobs.shutdown();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}
