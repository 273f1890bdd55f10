//! Shared by the HTTP and browser tests: a fixture runs directory of tiny runs (trained
//! with the library in seconds), a server over it, and small HTTP helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use genlab_serve::{ServeOptions, Server};
use genlab_train::{resolve_run, train_run, RunOptions, RunRequest};

/// Trains `req` in its `out` directory (quietly); `stop` set beforehand stops it at once.
pub fn train(req: &RunRequest, preview: bool, stop: bool) {
    let r = resolve_run(req).unwrap();
    train_run(
        &req.out,
        r.run,
        r.data.as_ref(),
        &candle_core::Device::Cpu,
        &RunOptions {
            resume: req.resume,
            preview,
        },
        &mut genlab_train::trainer::Quiet,
        &AtomicBool::new(stop),
    )
    .unwrap();
}

/// The runs of the fixture directory and the state the runs page must show for each.
pub const FIXTURE_RUNS: &[(&str, &str)] = &[
    ("8g", "finished"),
    ("broken", "broken"),
    ("moons-stopped", "interrupted"),
    ("nested/vae-digits", "finished"),
    ("rl-dqn", "finished"),
    ("truncated", "broken"),
];

/// The fixture's RL run: DQN on CartPole for this many environment steps.
pub const RL_STEPS: u64 = 400;

/// Trains the fixture's RL run in `dir` with genlab-rl (a tiny DQN on CartPole, well under
/// a second), evaluates it into its `eval.json` and records one episode as `rollout.gif`.
pub fn train_rl(dir: &Path) {
    let req = genlab_rl::train::TrainRequest {
        algo: "dqn".into(),
        env: "cartpole".into(),
        steps: RL_STEPS,
        seed: 0,
        overrides: [
            "hidden=[16]",
            "learning_starts=50",
            "train_freq=4",
            "gradient_steps=1",
            "batch_size=8",
            "buffer_size=500",
        ]
        .map(String::from)
        .to_vec(),
        out: dir.to_path_buf(),
        resume: false,
        ckpt_every: None,
    };
    genlab_rl::train::train(&req, &mut genlab_rl::train::Quiet, &AtomicBool::new(false)).unwrap();
    let eval = genlab_rl::train::evaluate(dir, 3, 0).unwrap();
    genlab_core::io::write_json(&dir.join("eval.json"), &eval).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    genlab_rl::train::rollout(
        dir,
        1,
        0,
        &scratch.path().join("rollout.jsonl"),
        Some(&dir.join("rollout.gif")),
    )
    .unwrap();
}

/// Writes the fixture runs under `root`: two finished runs of two families (one nested a
/// level deeper), a finished reinforcement-learning run, a run stopped before its target, a
/// run whose checkpoint is garbage and whose log has an unreadable line, and a run whose
/// checkpoint was cut short.
pub fn write_fixture(root: &Path) {
    train_rl(&root.join("rl-dqn"));
    let p8 = root.join("8g");
    train(
        &RunRequest::new("ddpm", "eight-gaussians", &p8)
            .steps(30)
            .seed(0)
            .set("train.batch_size=64")
            .set("train.log_every=5"),
        true,
        false,
    );
    train(
        &RunRequest::new("vae", "digits", root.join("nested/vae-digits"))
            .steps(20)
            .seed(0)
            .set("train.batch_size=32")
            .set("train.log_every=5"),
        true,
        false,
    );
    let moons = root.join("moons-stopped");
    train(
        &RunRequest::new("ddpm", "two-moons", &moons)
            .steps(10)
            .seed(0)
            .set("train.batch_size=32")
            .set("train.log_every=5"),
        false,
        false,
    );
    // Resumed towards 40 steps and stopped at once (as by Ctrl-C): its checkpoint stays at
    // step 10 of 40.
    train(
        &RunRequest {
            out: moons.clone(),
            steps: Some(40),
            resume: true,
            ..Default::default()
        },
        false,
        true,
    );
    let broken = root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(p8.join("config.json"), broken.join("config.json")).unwrap();
    std::fs::write(
        broken.join("checkpoint.safetensors"),
        b"this is not a checkpoint",
    )
    .unwrap();
    std::fs::write(
        broken.join("log.jsonl"),
        "{\"step\":5,\"loss\":1.0,\"lr\":0.001}\n{\"step\":10,\"lo\n{\"step\":15,\"loss\":0.5,\"lr\":0.001}\n",
    )
    .unwrap();
    let cut = root.join("truncated");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::copy(p8.join("config.json"), cut.join("config.json")).unwrap();
    let bytes = std::fs::read(p8.join("checkpoint.safetensors")).unwrap();
    std::fs::write(
        cut.join("checkpoint.safetensors"),
        &bytes[..bytes.len() - 100],
    )
    .unwrap();
    std::fs::copy(p8.join("log.jsonl"), cut.join("log.jsonl")).unwrap();
}

/// The fixture runs directory, written once per test binary. Tests that change runs work
/// on a [`copy_of_fixture`].
pub fn fixture() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("runs")).unwrap();
        write_fixture(&d.path().join("runs"));
        d
    })
    .path()
}

/// The fixture's runs directory.
pub fn fixture_runs() -> PathBuf {
    fixture().join("runs")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// A private copy of the fixture runs directory (in `dir/runs`).
pub fn copy_of_fixture(dir: &Path) -> PathBuf {
    let runs = dir.join("runs");
    copy_dir(&fixture_runs(), &runs);
    runs
}

/// Terminal lines the server printed.
pub type Lines = Arc<Mutex<Vec<String>>>;

/// A server over `runs` on a free loopback port.
pub fn serve(runs: &Path, workers: usize, queue: usize) -> (Server, Lines) {
    let lines: Lines = Arc::default();
    let l = lines.clone();
    let server = Server::start(ServeOptions {
        port: 0,
        workers,
        queue,
        notify: Arc::new(move |s: &str| l.lock().unwrap().push(s.to_string())),
        ..ServeOptions::new(runs)
    })
    .unwrap();
    (server, lines)
}

pub fn base(server: &Server) -> String {
    format!("http://127.0.0.1:{}", server.addr().port())
}

/// GET; (status, body as JSON or a string).
pub fn get(url: &str) -> (u16, Value) {
    answer(ureq::get(url).call())
}

/// POST a JSON body; (status, body).
pub fn post(url: &str, body: &Value) -> (u16, Value) {
    answer(
        ureq::post(url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string()),
    )
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls `f` every 50 ms until it gives `Some`, for at most `secs` seconds.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A job's state, via the API.
pub fn job_state(server: &Server, id: u64) -> String {
    let (_, v) = get(&format!("{}/api/jobs/{id}", base(server)));
    v["state"].as_str().unwrap_or("").to_string()
}

/// One raw HTTP/1.1 request (the path exactly as given: no client normalises it); the
/// status and the body.
pub fn raw(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{}\r\n", server.addr().port()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// An event stream opened by a POST on a raw socket: its status line is read, then events
/// one by one; dropping it disconnects.
pub struct RawStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: String,
}

impl RawStream {
    pub fn post(server: &Server, path: &str, body: &Value) -> RawStream {
        Self::open(server, "POST", path, &body.to_string())
    }

    /// A GET event stream (a run's log).
    pub fn get(server: &Server, path: &str) -> RawStream {
        Self::open(server, "GET", path, "")
    }

    fn open(server: &Server, method: &str, path: &str, body: &str) -> RawStream {
        let s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            server.addr().port(),
            body.len()
        );
        (&s).write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(s);
        let mut headers = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            headers.push_str(&line);
        }
        let status = headers
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        RawStream {
            reader,
            status,
            headers,
        }
    }

    /// The next event (name, data); `None` at the end of the stream. The body is chunked:
    /// chunk-size lines are skipped.
    pub fn next_event(&mut self) -> Option<(String, Value)> {
        let mut name = None;
        let mut data = None;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            if let Some(n) = line.strip_prefix("event:") {
                name = Some(n.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data:") {
                data = serde_json::from_str(d.trim()).ok();
            } else if line.is_empty() && name.is_some() {
                return Some((name?, data.unwrap_or(Value::Null)));
            } else if line == "0" {
                return None;
            }
        }
    }
}
