//! The pages in a real browser: headless Chromium driven through WebDriver (chromedriver),
//! over a fixture runs directory. Screenshots of every page go to
//! `target/serve-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (or `GENLAB_CHROMIUM` and
//! `GENLAB_CHROMEDRIVER` naming the two programs). Without them the test says so and passes,
//! unless `GENLAB_REQUIRE_BROWSER=1` (set by `.ci/run`, which installs them) makes their
//! absence a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use common::*;

/// The first of `names` found on PATH (or the path itself, if absolute and present).
fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        let n = Path::new(name);
        if n.is_absolute() {
            if n.is_file() {
                return Some(n.to_path_buf());
            }
            continue;
        }
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(program: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let url = format!("http://127.0.0.1:{port}");
        let d = Driver { child, url };
        wait_for(30, "chromedriver to be ready", || {
            let r = ureq::get(&format!("{}/status", d.url)).call().ok()?;
            let v: Value = serde_json::from_str(&r.into_string().ok()?).ok()?;
            v["value"]["ready"].as_bool().filter(|&b| b).map(|_| ())
        });
        d
    }
}

/// One browser session; closed when dropped.
struct Browser {
    url: String,
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn open(driver: &Driver, chromium: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let v = call("POST", &format!("{}/session", driver.url), Some(&caps));
        let id = v["sessionId"].as_str().expect("a session id").to_string();
        Browser {
            url: format!("{}/session/{id}", driver.url),
            _profile: profile,
        }
    }

    fn go(&self, url: &str) {
        call(
            "POST",
            &format!("{}/url", self.url),
            Some(&json!({ "url": url })),
        );
    }

    /// Runs `script` (a function body) in the page with `args`; its return value.
    fn js(&self, script: &str, args: Value) -> Value {
        call(
            "POST",
            &format!("{}/execute/sync", self.url),
            Some(&json!({ "script": script, "args": args })),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = call(
            "POST",
            &format!("{}/element", self.url),
            Some(&json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        call(
            "POST",
            &format!("{}/element/{e}/click", self.url),
            Some(&json!({})),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        call(
            "POST",
            &format!("{}/element/{e}/clear", self.url),
            Some(&json!({})),
        );
        call(
            "POST",
            &format!("{}/element/{e}/value", self.url),
            Some(&json!({ "text": text })),
        );
    }

    /// Waits until `script` returns something other than null/false/0; returns it.
    /// Polls `script` until it returns something truthy. A script that throws (the element
    /// it reads is not on the page yet: a slow machine renders later) counts as not yet.
    fn wait(&self, secs: u64, what: &str, script: &str) -> Value {
        let guarded = format!("try {{ {script} }} catch (e) {{ return null; }}");
        wait_for(secs, what, || {
            let v = self.js(&guarded, json!([]));
            match &v {
                Value::Null | Value::Bool(false) => None,
                Value::Number(n) if n.as_f64() == Some(0.0) => None,
                _ => Some(v),
            }
        })
    }

    fn screenshot(&self, name: &str) {
        let v = call("GET", &format!("{}/screenshot", self.url), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("serve-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.url).call();
    }
}

/// One WebDriver call; its `value`, or a panic with the driver's message.
fn call(method: &str, url: &str, body: Option<&Value>) -> Value {
    let req = ureq::request(method, url).timeout(Duration::from_secs(120));
    let r = match body {
        Some(b) => req
            .set("Content-Type", "application/json")
            .send_string(&b.to_string()),
        None => req.call(),
    };
    match r {
        Ok(resp) => {
            let mut v: Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
            v["value"].take()
        }
        Err(ureq::Error::Status(code, resp)) => {
            panic!(
                "WebDriver {method} {url}: {code} {}",
                resp.into_string().unwrap_or_default()
            )
        }
        Err(e) => panic!("WebDriver {method} {url}: {e}"),
    }
}

const ROWS: &str = "document.querySelectorAll('#runs tbody tr[data-id]').length";

#[test]
fn the_pages_work_in_a_real_browser() {
    let chromium = find_program(
        "GENLAB_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let driver = find_program(
        "GENLAB_CHROMEDRIVER",
        &["chromedriver", "/usr/lib/chromium/chromedriver"],
    );
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        let msg = "browser test SKIPPED: chromium and chromedriver not found (apt-get install -y \
                   chromium chromium-driver, or set GENLAB_CHROMIUM and GENLAB_CHROMEDRIVER)";
        assert!(
            std::env::var("GENLAB_REQUIRE_BROWSER").ok().as_deref() != Some("1"),
            "{msg}; GENLAB_REQUIRE_BROWSER=1 requires them"
        );
        // Straight to stderr: the test harness captures eprintln! of passing tests.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{msg}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runs = copy_of_fixture(dir.path());
    let (server, _) = serve(&runs, 2, 8);
    let site = base(&server);
    let driver = Driver::start(&driver);
    let b = Browser::open(&driver, &chromium);

    // The runs page lists the fixture's runs, with their states; filter and sort work.
    b.go(&format!("{site}/"));
    let n = b.wait(
        30,
        "the runs table",
        &format!("return {ROWS} === {} && {ROWS}", FIXTURE_RUNS.len()),
    );
    assert_eq!(n, FIXTURE_RUNS.len());
    let states = b.js(
        "return [...document.querySelectorAll('#runs tbody tr')].map(r => [r.dataset.id, r.querySelector('.badge').dataset.state]).sort()",
        json!([]),
    );
    let want: Vec<Value> = FIXTURE_RUNS
        .iter()
        .map(|(id, st)| json!([id, st]))
        .collect();
    assert_eq!(states, Value::Array(want));
    b.screenshot("runs");
    b.click("th[data-key=id]");
    let first = b.js(
        "return document.querySelector('#runs tbody tr').dataset.id",
        json!([]),
    );
    assert_eq!(first, "8g");
    b.click("th[data-key=id]");
    let first = b.js(
        "return document.querySelector('#runs tbody tr').dataset.id",
        json!([]),
    );
    assert_eq!(first, "truncated");
    b.type_into("#filter", "vae");
    b.wait(10, "the filter", &format!("return {ROWS} === 1"));
    let only = b.js(
        "return document.querySelector('#runs tbody tr').dataset.id",
        json!([]),
    );
    assert_eq!(only, "nested/vae-digits");

    // A broken run's page says what is wrong and shows the rest.
    b.go(&format!("{site}/run?id=broken"));
    let problems = b.wait(
        30,
        "the problems box",
        "const p = document.querySelector('#problems .problems'); return p && p.textContent",
    );
    assert!(problems.as_str().unwrap().contains("corrupt"), "{problems}");
    b.wait(
        10,
        "the two readable log points",
        "return document.querySelector('#loss-chart').dataset.points === '2'",
    );
    let note = b.js(
        "return document.querySelector('#log-note').textContent",
        json!([]),
    );
    assert!(
        note.as_str().unwrap().contains("1 unreadable line"),
        "{note}"
    );
    let config = b.js(
        "return document.querySelector('#config').textContent",
        json!([]),
    );
    assert!(config.as_str().unwrap().contains("\"ddpm\""), "{config}");
    b.screenshot("run-broken");

    // An RL run's page draws its episode returns (every episode and their running mean),
    // shows its learning curve and GIF, and offers no sampling.
    b.go(&format!("{site}/run?id=rl-dqn"));
    let points = b.wait(
        30,
        "the RL run's return curve",
        "const c = document.querySelector('#return-chart'); return c && Number(c.dataset.points) > 0 && Number(c.dataset.points)",
    );
    assert!(points.as_u64().unwrap() >= 4, "{points}");
    let page = b.js(
        "return [document.querySelector('#run-step').textContent, \
         [...document.querySelectorAll('#pictures figcaption')].map(f => f.textContent).join(','), \
         document.querySelectorAll('#actions a, #resume, #eval-nll').length]",
        json!([]),
    );
    let step_line = page[0].as_str().unwrap();
    assert!(
        step_line.contains("dqn on cartpole") && step_line.contains("last episode return"),
        "{page}"
    );
    assert_eq!(page[1], "returns.svg,rollout.gif", "{page}");
    assert_eq!(page[2], 0, "{page}");
    b.screenshot("run-rl");

    // A run page's curve gains points while a training run writes its log.
    let (status, v) = post(
        &format!("{site}/api/train"),
        &json!({"name": "live", "model": "ddpm", "data": "eight-gaussians", "steps": 1000000,
                "overrides": ["train.batch_size=16", "train.log_every=5", "train.ckpt_every=50"]}),
    );
    assert_eq!(status, 202, "{v}");
    let job = v["job"].as_u64().unwrap();
    wait_for(60, "the live run's first log line", || {
        std::fs::read_to_string(runs.join("live/log.jsonl"))
            .ok()
            .filter(|s| s.lines().count() >= 1)
    });
    b.go(&format!("{site}/run?id=live"));
    let first = b
        .wait(
            30,
            "the first points",
            "return +document.querySelector('#loss-chart').dataset.points",
        )
        .as_u64()
        .unwrap();
    let more = b
        .wait(60, "the curve to gain points", &format!("const n = +document.querySelector('#loss-chart').dataset.points; return n > {first} && n"))
        .as_u64()
        .unwrap();
    assert!(more > first);
    b.wait(
        30,
        "the training badge",
        "return document.querySelector('#run-state .badge').dataset.state === 'training'",
    );
    b.wait(
        30,
        "the lr curve",
        "return +document.querySelector('#lr-chart').dataset.points > 0",
    );
    b.screenshot("run-live");
    // Stop from the page: the checkpoint is saved and the page shows the run interrupted.
    b.wait(
        30,
        "the stop button",
        "return !!document.querySelector('#run-jobs button')",
    );
    b.click("#run-jobs button");
    wait_for(60, "the job to stop", || {
        (job_state(&server, job) == "stopped").then_some(())
    });
    b.wait(
        30,
        "the interrupted badge",
        "return document.querySelector('#run-state .badge').dataset.state === 'interrupted'",
    );
    let (_, d) = get(&format!("{site}/api/run?id=live"));
    assert!(d["checkpoint"]["step"].as_u64().unwrap() >= more);

    // The playground returns an image for a tiny checkpoint, with its command; it saves.
    b.go(&format!("{site}/playground?run=8g"));
    b.wait(30, "the form", "return !!document.querySelector('#p-n')");
    let groups = b.js(
        "return [...document.querySelectorAll('#params legend')].map(l => l.textContent)",
        json!([]),
    );
    assert_eq!(
        groups,
        json!(["Samples", "Sampler", "Solver options", "Model options"])
    );
    b.type_into("#p-n", "300");
    b.type_into("#p-steps", "10");
    b.type_into("#p-batch_size", "100");
    b.click("#generate");
    let src = b.wait(60, "the sampled picture", "const i = document.querySelector('#result-img'); return i && i.complete && i.naturalWidth > 0 && i.src");
    assert!(src.as_str().unwrap().starts_with("data:image/png;base64,"));
    let cmd = b.js(
        "return document.querySelector('#command').textContent",
        json!([]),
    );
    assert!(
        cmd.as_str()
            .unwrap()
            .contains("--n 300 --seed 0 --batch-size 100 --sampler ddim --steps 10"),
        "{cmd}"
    );
    b.click("#save");
    let saved = b.wait(
        30,
        "the saved note",
        "const s = document.querySelector('#saved'); return s && s.textContent",
    );
    assert!(
        saved
            .as_str()
            .unwrap()
            .contains("8g/samples/playground-job"),
        "{saved}"
    );
    b.screenshot("playground");
    // Out of range: the page shows the server's message.
    b.type_into("#p-steps", "5000");
    b.click("#generate");
    let err = b.wait(
        30,
        "the error",
        "const e = document.querySelector('#error .error'); return e && e.textContent",
    );
    assert!(
        err.as_str()
            .unwrap()
            .contains("steps must be an integer from 1 to 1000"),
        "{err}"
    );

    // Compare: the same seed through three samplers at two step counts.
    b.go(&format!("{site}/compare?run=8g"));
    b.wait(
        30,
        "the compare form",
        "return !!document.querySelector('#cmp-start')",
    );
    b.type_into("#cmp-steps", "5,10");
    b.type_into("#cmp-n", "200");
    b.click("#cmp-start");
    b.wait(
        90,
        "six compared pictures",
        "return document.querySelectorAll('#cmp-table tbody tr').length === 6",
    );
    let nfe = b.js("return [...document.querySelectorAll('#cmp-table tbody tr')].map(r => r.children[3].textContent)", json!([]));
    assert_eq!(nfe, json!(["5", "10", "5", "10", "5", "10"]));
    b.wait(10, "every cell's picture", "return [...document.querySelectorAll('.cell img')].filter(i => i.src.startsWith('data:image/png')).length === 6");
    b.screenshot("compare");

    // The jobs page lists what ran.
    b.go(&format!("{site}/jobs"));
    let rows = b.wait(
        30,
        "the jobs",
        "return document.querySelectorAll('#jobs tbody tr[data-job]').length",
    );
    assert!(rows.as_u64().unwrap() >= 3, "{rows}");
    let live = b.js(
        &format!(
            "return document.querySelector('#jobs tr[data-job=\"{job}\"] .badge').dataset.state"
        ),
        json!([]),
    );
    assert_eq!(live, "stopped");
    b.screenshot("jobs");
}
