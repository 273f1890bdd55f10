//! `genlab serve` and `genlab report` from the command line: the command the playground
//! shows draws the very samples the page drew, the server starts and stops on Ctrl-C, and
//! bad input is one clear error naming the flag.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn genlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genlab"))
        .args(args)
        .output()
        .expect("run genlab")
}

fn fails_with(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "missing `{n}` in: {err}");
    }
}

/// A tiny DDPM on eight gaussians in `out`.
fn train_tiny(out: &Path) {
    let o = genlab(&[
        "train",
        "--model",
        "ddpm",
        "--data",
        "eight-gaussians",
        "--steps",
        "30",
        "--seed",
        "0",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--no-preview",
        "--set",
        "ddpm.timesteps=50",
        "--set",
        "ddpm.net.mlp.hidden=32",
        "--set",
        "train.batch_size=64",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// One HTTP request on a fresh connection; the whole answer (headers and body).
fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The data of every `name` event in an event-stream answer.
fn events(answer: &str, name: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut current = None;
    for line in answer.lines() {
        if let Some(n) = line.strip_prefix("event:") {
            current = Some(n.trim().to_string());
        } else if let Some(d) = line.strip_prefix("data:") {
            if current.as_deref() == Some(name) {
                out.push(serde_json::from_str(d.trim()).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_command_the_playground_shows_draws_the_same_samples() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    train_tiny(&runs.join("8g"));
    let server = genlab_serve::Server::start(genlab_serve::ServeOptions {
        port: 0,
        ..genlab_serve::ServeOptions::new(&runs)
    })
    .unwrap();
    let port = server.addr().port();
    // Settings away from the command's defaults, so that each must reach its flag.
    let body = r#"{"run": "8g", "settings": {"n": 40, "batch_size": 16, "seed": 9,
        "sampler": "dpm-solver", "steps": 6, "order": 2, "karras": true, "ema": false}}"#;
    let answer = http(port, "POST", "/api/sample", body);
    let end = &events(&answer, "end")[0];
    assert_eq!(end["state"], "done", "{answer}");
    let command = events(&answer, "result")[0]["command"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        command.contains("--no-ema") && command.contains("--karras"),
        "{command}"
    );
    let saved = http(
        port,
        "POST",
        &format!("/api/jobs/{}/save", end["job"]),
        "{}",
    );
    let saved: Value = serde_json::from_str(saved.split_once("\r\n\r\n").unwrap().1).unwrap();
    let page_png = runs.join(saved["saved"].as_str().unwrap());

    let cli_png = dir.path().join("cli.png");
    let args: Vec<String> = command
        .strip_suffix("--out samples.png")
        .unwrap()
        .split_whitespace()
        .skip(1) // "genlab"
        .map(String::from)
        .chain(["--out".into(), cli_png.display().to_string()])
        .collect();
    let o = Command::new(env!("CARGO_BIN_EXE_genlab"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read(&page_png).unwrap(),
        std::fs::read(&cli_png).unwrap(),
        "`{command}` drew other samples than the page"
    );
}

#[cfg(unix)]
#[test]
fn serve_answers_then_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    train_tiny(&runs.join("a"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_genlab"))
        .args(["serve", "--runs", runs.to_str().unwrap(), "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let port: u16 = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address in `{line}`"));
    let runs_json = http(port, "GET", "/api/runs", "");
    assert!(runs_json.starts_with("HTTP/1.1 200"), "{runs_json}");
    assert!(runs_json.contains("\"id\":\"a\""), "{runs_json}");
    // A training job that would run for hours: Ctrl-C saves its checkpoint, as for
    // `genlab train`.
    let started = http(
        port,
        "POST",
        "/api/train",
        r#"{"name": "long", "model": "ddpm", "data": "eight-gaussians", "steps": 10000000,
            "overrides": ["train.batch_size=16", "train.log_every=2", "train.ckpt_every=1000000"]}"#,
    );
    assert!(started.starts_with("HTTP/1.1 202"), "{started}");
    let log = runs.join("long/log.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(true, |l| l.lines().count() < 2) {
        assert!(t0.elapsed().as_secs() < 60, "no training log");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!runs.join("long/checkpoint.safetensors").exists());
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stopping"), "{err}");
    let ckpt =
        genlab_serve::runs::read_checkpoint(&runs.join("long/checkpoint.safetensors")).unwrap();
    assert!(ckpt.step >= 4, "{}", ckpt.step);
    assert!(err.contains("stopped: train long"), "{err}");
}

#[test]
fn serve_and_report_refuse_bad_input_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    fails_with(
        &genlab(&["serve", "--runs", missing.to_str().unwrap()]),
        &["--runs", "cannot be opened"],
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let d = dir.path().to_str().unwrap();
    fails_with(
        &genlab(&["serve", "--runs", d, "--port", &port]),
        &[&format!("--port {port} on 127.0.0.1 is in use")],
    );
    fails_with(
        &genlab(&["serve", "--runs", d, "--host", "0.0.0.0", "--port", "0"]),
        &["--token is required", "not a loopback address"],
    );
    fails_with(
        &genlab(&["serve", "--runs", d, "--token", "short"]),
        &["--token must be at least 8"],
    );
    let out = dir.path().join("r.html");
    fails_with(
        &genlab(&["report", d, "--out", out.to_str().unwrap()]),
        &["is not a training run directory"],
    );
    let run = dir.path().join("run");
    train_tiny(&run);
    let o = genlab(&[
        "report",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("wrote "));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("<svg") && html.contains("ddpm on eight-gaussians"));
    for cmd in ["serve", "report"] {
        let o = genlab(&[cmd, "--help"]);
        assert!(o.status.success() && o.stdout.len() > 200, "{cmd} --help");
    }
}
