//! The server over HTTP: what the pages read, the jobs they start, and what it refuses
//! (paths outside the runs directory, requests without the token, bad input, more sampling
//! requests than the queue holds).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use serde_json::{json, Value};

use common::*;
use genlab_serve::{ServeError, ServeOptions, Server};

fn runs_by_id(server: &Server) -> BTreeMap<String, Value> {
    let (status, v) = get(&format!("{}/api/runs", base(server)));
    assert_eq!(status, 200, "{v}");
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

#[test]
fn the_runs_page_lists_every_run_with_its_state_and_broken_runs_say_why() {
    let (server, _) = serve(&fixture_runs(), 1, 4);
    let runs = runs_by_id(&server);
    let states: Vec<(&str, &str)> = runs
        .iter()
        .map(|(id, r)| (id.as_str(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, FIXTURE_RUNS);
    let g = &runs["8g"];
    assert_eq!(
        (g["model"].as_str(), g["data"].as_str()),
        (Some("ddpm"), Some("eight-gaussians"))
    );
    assert_eq!(
        (g["step"].as_u64(), g["steps"].as_u64()),
        (Some(30), Some(30))
    );
    assert!(g["last_loss"].as_f64().unwrap() > 0.0);
    assert_eq!(g["capabilities"]["sampler_zoo"], true);
    let m = &runs["moons-stopped"];
    assert_eq!(
        (m["checkpoint_step"].as_u64(), m["steps"].as_u64()),
        (Some(10), Some(40))
    );
    let b = &runs["broken"];
    let problems = b["problems"].to_string();
    assert!(problems.contains("corrupt"), "{problems}");
    assert!(problems.contains("1 unreadable line"), "{problems}");
    // What could be read still is: the config's model and the log's last loss.
    assert_eq!(b["model"], "ddpm");
    assert_eq!(b["last_loss"], 0.5);
    let t = runs["truncated"]["problems"].to_string();
    assert!(t.contains("truncated"), "{t}");

    // A broken run's page still answers, with its config and problems.
    let (status, d) = get(&format!("{}/api/run?id=broken", base(&server)));
    assert_eq!(status, 200);
    assert_eq!(d["config"]["model"], "ddpm");
    assert!(d["checkpoint"].is_null());
    let (_, d) = get(&format!("{}/api/run?id=8g", base(&server)));
    assert_eq!(d["checkpoint"]["step"], 30);
    assert_eq!(d["pictures"][0]["path"], "8g/samples.png");
    let (status, _) = get(&format!("{}/files/8g/samples.png", base(&server)));
    assert_eq!(status, 200);
    // Sampling a broken run is a clear error, not a crash.
    let (status, v) = post(
        &format!("{}/api/sample", base(&server)),
        &json!({"run": "broken"}),
    );
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not a valid genlab checkpoint"),
        "{v}"
    );
    // Every page shell is served.
    for page in [
        "/",
        "/run?id=8g",
        "/playground",
        "/compare",
        "/jobs",
        "/static/app.js",
    ] {
        assert_eq!(get(&format!("{}{page}", base(&server))).0, 200, "{page}");
    }
}

#[test]
fn a_reinforcement_learning_run_shows_its_algorithm_environment_returns_and_is_not_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let runs = copy_of_fixture(dir.path());
    let (server, _) = serve(&runs, 1, 4);
    let url = |p: &str| format!("{}{p}", base(&server));
    let r = runs_by_id(&server).remove("rl-dqn").unwrap();
    assert_eq!(r["family"], "rl", "{r}");
    assert_eq!(
        (r["model"].as_str(), r["data"].as_str()),
        (Some("dqn"), Some("cartpole"))
    );
    assert_eq!(
        (r["state"].as_str(), r["seed"].as_u64()),
        (Some("finished"), Some(0)),
        "{r}"
    );
    assert_eq!(
        (
            r["step"].as_u64(),
            r["steps"].as_u64(),
            r["checkpoint_step"].as_u64()
        ),
        (Some(RL_STEPS), Some(RL_STEPS), Some(RL_STEPS))
    );
    assert_eq!(r["problems"], json!([]), "{r}");
    // CartPole pays 1 per step: every return is positive.
    assert!(r["last_return"].as_f64().unwrap() >= 1.0, "{r}");
    assert!(r["running_return"].as_f64().unwrap() >= 1.0, "{r}");
    assert!(r["episodes"].as_u64().unwrap() >= 2, "{r}");
    // DQN logs its loss (a line at the end of the run, between the episode lines).
    assert_eq!(r["loss_name"], "loss", "{r}");
    assert!(r["last_loss"].as_f64().unwrap().is_finite(), "{r}");
    // `genlab rl eval --json RUN/eval.json`'s summary, as metrics.
    assert_eq!(r["metrics"]["eval_episodes"], 3.0, "{r}");
    assert!(r["metrics"]["eval_return"].as_f64().unwrap() >= 1.0, "{r}");
    // Nothing the pages start applies to an agent.
    let caps = r["capabilities"].as_object().unwrap();
    assert!(caps.values().all(|v| v == false), "{r}");

    // Its page: the checkpoint as its metadata says, the config, the learning curve and the
    // rollout's GIF as pictures.
    let (status, d) = get(&url("/api/run?id=rl-dqn"));
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["checkpoint"]["family"], "rl");
    assert_eq!(d["checkpoint"]["step"].as_u64(), Some(RL_STEPS));
    assert_eq!(d["config"]["algo"], "dqn");
    let pics: Vec<&str> = d["pictures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(pics, ["returns.svg", "rollout.gif"]);
    assert_eq!(d["evaluations"]["eval.json"]["algo"], "dqn");
    for f in ["returns.svg", "rollout.gif"] {
        assert_eq!(get(&url(&format!("/files/rl-dqn/{f}"))).0, 200, "{f}");
    }
    // Its log, as the page's live curves read it: every episode's return, and the loss.
    let mut log = RawStream::get(&server, "/api/run/log?id=rl-dqn");
    assert_eq!(log.status, 200, "{}", log.headers);
    let mut records = Vec::new();
    while let Some((name, data)) = log.next_event() {
        match name.as_str() {
            "records" => records.extend(data.as_array().unwrap().clone()),
            "summary" => {
                assert_eq!(data["state"], "finished");
                break;
            }
            _ => {}
        }
    }
    drop(log);
    let returns: Vec<f64> = records
        .iter()
        .filter_map(|r| r["return"].as_f64())
        .collect();
    assert_eq!(returns.len() as u64, r["episodes"].as_u64().unwrap());
    assert_eq!(returns.last().copied(), r["last_return"].as_f64());
    assert!(records.iter().any(|r| r["loss"].is_number()));

    // Sampling, comparing, continuing or evaluating it from a page: a clear refusal.
    let refusals = [
        ("/api/sample", json!({"run": "rl-dqn"})),
        (
            "/api/compare",
            json!({"runs": ["8g", "rl-dqn"], "samplers": ["ddim"], "steps": [2], "n": 4}),
        ),
        ("/api/train", json!({"run": "rl-dqn", "steps": 800})),
        ("/api/eval", json!({"run": "rl-dqn"})),
    ];
    for (path, body) in refusals {
        let (status, v) = post(&url(path), &body);
        assert_eq!(status, 409, "{path}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("`rl-dqn` is a reinforcement-learning run (dqn on cartpole)")
                && e.contains("genlab rl"),
            "{path}: {e}"
        );
    }
    let (status, v) = get(&url("/api/run/form?id=rl-dqn"));
    assert_eq!(status, 409, "{v}");
    assert_eq!(get(&url("/api/jobs")).1["jobs"], json!([]));

    // While a process holds its run lock (as `genlab rl train` does), it is training.
    let lock = genlab_train::lock::RunLock::acquire(&runs.join("rl-dqn")).unwrap();
    let r = runs_by_id(&server).remove("rl-dqn").unwrap();
    assert_eq!(r["state"], "training", "{r}");
    drop(lock);
    let r = runs_by_id(&server).remove("rl-dqn").unwrap();
    assert_eq!(r["state"], "finished", "{r}");
}

#[test]
fn paths_outside_the_runs_directory_are_refused_in_every_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    std::fs::create_dir_all(runs.join("a")).unwrap();
    std::fs::write(runs.join("a/log.jsonl"), "{\"step\":1,\"loss\":1}\n").unwrap();
    std::fs::write(runs.join("a/p.png"), "png").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP-SECRET").unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    std::fs::write(dir.path().join("outside/log.jsonl"), "TOP-SECRET\n").unwrap();
    std::fs::write(dir.path().join("outside/x.txt"), "TOP-SECRET").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("outside"), runs.join("out")).unwrap();
    let (server, _) = serve(&runs, 1, 2);
    let secret = dir.path().join("secret.txt").display().to_string();
    let attempts = [
        "/files/../secret.txt".to_string(),
        "/files/a/../../secret.txt".into(),
        "/files/%2e%2e/secret.txt".into(),
        "/files/%2E%2E%2Fsecret.txt".into(),
        "/files/a%2f..%2f..%2fsecret.txt".into(),
        "/files/%252e%252e/secret.txt".into(),
        "/files/..%5csecret.txt".into(),
        format!("/files/{secret}"),
        format!("/files/{}", secret.replace('/', "%2F")),
        "/files/out/x.txt".into(),
        "/api/run?id=..".into(),
        "/api/run?id=../outside".into(),
        "/api/run?id=%2e%2e%2foutside".into(),
        format!("/api/run?id={}", dir.path().join("outside").display()),
        "/api/run?id=out".into(),
        "/api/run/log?id=out".into(),
        "/api/run/log?id=..%2Foutside".into(),
    ];
    for a in &attempts {
        let (status, body) = raw(&server, "GET", a, &[], "");
        assert!(
            matches!(status, 400 | 403 | 404),
            "{a}: status {status}, body {body}"
        );
        assert!(!body.contains("TOP-SECRET"), "{a}: {body}");
    }
    // Inside, files are served; directories are never listed; weights are not served.
    assert_eq!(raw(&server, "GET", "/files/a/p.png", &[], "").0, 200);
    let (status, body) = raw(&server, "GET", "/files/a", &[], "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not listed"), "{body}");
    std::fs::write(runs.join("a/checkpoint.safetensors"), "w").unwrap();
    assert_eq!(
        raw(&server, "GET", "/files/a/checkpoint.safetensors", &[], "").0,
        404
    );
    // The symbolic link's run is not listed either.
    let listed = runs_by_id(&server);
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["a"]);
    // A new run's name cannot lead out.
    for name in ["../evil", "/tmp/evil", "out/evil", "a/%2e%2e/x"] {
        let (status, v) = post(
            &format!("{}/api/train", base(&server)),
            &json!({"name": name, "model": "ddpm", "data": "rings", "steps": 1}),
        );
        assert_eq!(status, 403, "{name}: {v}");
    }
    assert!(!dir.path().join("evil").exists());
    assert!(!dir.path().join("outside/evil").exists());
}

#[test]
fn a_token_guards_every_request_and_loopback_answers_only_loopback_hosts() {
    let runs = fixture_runs();
    // Without a token, a non-loopback address is refused before anything is bound.
    let e = Server::start(ServeOptions {
        host: "0.0.0.0".parse().unwrap(),
        port: 0,
        ..ServeOptions::new(&runs)
    })
    .err()
    .unwrap();
    assert!(
        matches!(&e, ServeError::Genlab(genlab_core::Error::Setting { setting, .. }) if setting == "token"),
        "{e}"
    );
    assert!(e.to_string().contains("not a loopback address"), "{e}");

    let server = Server::start(ServeOptions {
        port: 0,
        token: Some("s3cret-token".into()),
        ..ServeOptions::new(&runs)
    })
    .unwrap();
    assert!(server.url().ends_with("/?token=s3cret-token"));
    let (status, _) = raw(&server, "GET", "/api/runs", &[], "");
    assert_eq!(status, 401);
    let (status, _) = raw(
        &server,
        "GET",
        "/files/8g/samples.png",
        &[("Authorization", "Bearer wrong-token")],
        "",
    );
    assert_eq!(status, 401);
    let (status, _) = raw(
        &server,
        "GET",
        "/api/runs",
        &[("Authorization", "Bearer s3cret-token")],
        "",
    );
    assert_eq!(status, 200);
    // The token in the address sets a cookie that carries it from then on.
    let resp = ureq::get(&format!("{}/?token=s3cret-token", base(&server)))
        .call()
        .unwrap();
    let cookie = resp.header("set-cookie").unwrap().to_string();
    assert!(cookie.starts_with("genlab_token=s3cret-token;") && cookie.contains("HttpOnly"));
    let (status, _) = raw(
        &server,
        "GET",
        "/api/runs",
        &[("Cookie", "genlab_token=s3cret-token")],
        "",
    );
    assert_eq!(status, 200);
    drop(server);

    // Without a token: a request for another host name (DNS rebinding) or a state-changing
    // request from another origin is refused.
    let (server, lines) = serve(&runs, 1, 2);
    let (status, _) = raw(
        &server,
        "GET",
        "/api/runs",
        &[("Host", "evil.example:80")],
        "",
    );
    assert_eq!(status, 403);
    let port = server.addr().port().to_string();
    let (status, _) = raw(
        &server,
        "GET",
        "/api/runs",
        &[("Host", &format!("localhost:{port}"))],
        "",
    );
    assert_eq!(status, 200);
    let (status, _) = raw(
        &server,
        "POST",
        "/api/eval",
        &[
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/json"),
        ],
        "{\"run\":\"8g\"}",
    );
    assert_eq!(status, 403);
    // A form post (not JSON) cannot start a job either.
    let (status, body) = raw(
        &server,
        "POST",
        "/api/train",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "name=x&model=ddpm",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("application/json"), "{body}");
    let lines = lines.lock().unwrap().join("\n");
    assert!(
        lines.contains("refused GET /api/runs: Host `evil.example:80`"),
        "{lines}"
    );
}

#[test]
fn bad_input_gets_clear_messages() {
    // A runs directory that does not exist, a port in use.
    let e = Server::start(ServeOptions::new("/no/such/runs/dir"))
        .err()
        .unwrap();
    assert!(
        matches!(&e, ServeError::Genlab(genlab_core::Error::Setting { setting, .. }) if setting == "runs"),
        "{e}"
    );
    assert!(e.to_string().contains("/no/such/runs/dir"), "{e}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = Server::start(ServeOptions {
        port,
        ..ServeOptions::new(fixture_runs())
    })
    .err()
    .unwrap();
    assert!(
        matches!(&e, ServeError::Genlab(genlab_core::Error::Setting { setting, .. }) if setting == "port"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains(&format!("{port} on 127.0.0.1 is in use")),
        "{e}"
    );

    let (server, lines) = serve(&fixture_runs(), 1, 2);
    let url = |p: &str| format!("{}{p}", base(&server));
    let cases = [
        (
            json!({"run": "8g", "settings": {"steps": 5000}}),
            400,
            "steps must be an integer from 1 to 1000, got 5000",
        ),
        (
            json!({"run": "8g", "settings": {"n": 0}}),
            400,
            "n must be an integer from 1 to 4096, got 0",
        ),
        (
            json!({"run": "8g", "settings": {"eta": -1}}),
            400,
            "eta must be a number from 0 to 1",
        ),
        (
            json!({"run": "8g", "settings": {"sampler": "nope"}}),
            400,
            "sampler must be one of ddpm, ddim",
        ),
        (
            json!({"run": "8g", "settings": {"colour": 1}}),
            400,
            "colour is not accepted",
        ),
        (
            json!({"run": "nested/vae-digits", "settings": {"sampler": "ddim"}}),
            400,
            "this model does not take it",
        ),
        (json!({"run": "nope"}), 404, "`nope` does not exist"),
        (json!({"settings": {}}), 400, "run is required"),
    ];
    for (body, status, msg) in cases {
        let (s, v) = post(&url("/api/sample"), &body);
        assert_eq!(s, status, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(msg), "{body}: {v}");
    }
    let (s, v) = post(
        &url("/api/train"),
        &json!({"name": "x", "model": "ddpm", "data": "folder:/etc"}),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("reads files from a path"),
        "{v}"
    );
    let (s, v) = post(
        &url("/api/train"),
        &json!({"name": "x", "model": "ddpm", "data": "rings", "overrides": ["data=digits"]}),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = post(
        &url("/api/train"),
        &json!({"name": "8g", "model": "ddpm", "data": "rings"}),
    );
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("already holds a run"),
        "{v}"
    );
    let (s, v) = post(&url("/api/eval"), &json!({"run": "broken"}));
    assert_eq!(s, 409, "{v}");
    let (s, v) = post(
        &url("/api/compare"),
        &json!({"runs": ["nested/vae-digits"], "samplers": ["ddim"], "steps": [5]}),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("sampler zoo"), "{v}");
    let (s, v) = raw(
        &server,
        "POST",
        "/api/sample",
        &[("Content-Type", "application/json")],
        "{not json",
    );
    assert_eq!(s, 400, "{v}");
    // A body over the limit is refused before it is read whole.
    let big = format!("{{\"run\":\"{}\"}}", "x".repeat(100_000));
    let (s, _) = raw(
        &server,
        "POST",
        "/api/sample",
        &[("Content-Type", "application/json")],
        &big,
    );
    assert_eq!(s, 413);
    assert_eq!(get(&url("/api/jobs/999")).0, 404);
    assert_eq!(get(&url("/no-such-page")).0, 404);
    // The terminal gets the same message as the page.
    let lines = lines.lock().unwrap().join("\n");
    assert!(
        lines.contains("POST /api/sample: 400 steps must be an integer from 1 to 1000, got 5000"),
        "{lines}"
    );
}

#[test]
fn fifty_concurrent_sampling_requests_are_queued_or_refused_and_leave_no_job() {
    let (server, _) = serve(&fixture_runs(), 1, 4);
    let url = format!("{}/api/sample", base(&server));
    // A long job holds the only worker: batches of one sample each, checked between.
    let mut blocker = RawStream::post(
        &server,
        "/api/sample",
        &json!({"run": "8g", "settings": {"n": 4096, "steps": 1000, "batch_size": 1, "sampler": "ddpm"}}),
    );
    assert_eq!(blocker.status, 200, "{}", blocker.headers);
    let (_, first) = blocker.next_event().unwrap();
    let blocker_id = first["job"].as_u64().unwrap();
    wait_for(30, "the blocker to run", || {
        (job_state(&server, blocker_id) == "running").then_some(())
    });

    let barrier = Arc::new(Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let (url, barrier) = (url.clone(), barrier.clone());
            let port = server.addr().port();
            std::thread::spawn(move || {
                let body = json!({"run": "8g", "settings": {"n": 10, "steps": 2, "seed": i}});
                let r = ureq::post(&url)
                    .set("Content-Type", "application/json")
                    .send_string(&body.to_string());
                let out = match r {
                    Ok(resp) => {
                        let job: u64 = resp.header("x-genlab-job").unwrap().parse().unwrap();
                        (
                            200,
                            Some(job),
                            resp.header("retry-after").map(String::from),
                            Some(resp),
                        )
                    }
                    Err(ureq::Error::Status(code, resp)) => (
                        code,
                        None,
                        resp.header("retry-after").map(String::from),
                        None,
                    ),
                    Err(e) => panic!("request {i} to port {port} failed: {e}"),
                };
                // Everyone has an answer before any accepted stream goes away (which would
                // free a place in the queue).
                barrier.wait();
                drop(out.3);
                (out.0, out.1, out.2)
            })
        })
        .collect();
    let answers: Vec<(u16, Option<u64>, Option<String>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let accepted: Vec<u64> = answers.iter().filter_map(|a| a.1).collect();
    let refused = answers.iter().filter(|a| a.0 == 503).count();
    assert_eq!(accepted.len(), 4, "the queue holds 4: {answers:?}");
    assert_eq!(refused, 46, "{answers:?}");
    assert!(answers
        .iter()
        .filter(|a| a.0 == 503)
        .all(|a| a.2.as_deref() == Some("5")));
    // The server still answers, and the dropped streams' jobs were cancelled unstarted.
    assert_eq!(get(&format!("{}/api/runs", base(&server))).0, 200);
    for id in &accepted {
        wait_for(30, "a dropped queued job to be cancelled", || {
            (job_state(&server, *id) == "cancelled").then_some(())
        });
    }
    // The blocker's client goes away mid-stream: its job stops at the next batch.
    drop(blocker);
    wait_for(60, "the blocker to be cancelled", || {
        (job_state(&server, blocker_id) == "cancelled").then_some(())
    });
    let (_, jobs) = get(&format!("{}/api/jobs", base(&server)));
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["state"] != "running" && j["state"] != "queued"),
        "{jobs}"
    );
    // And the queue takes work again.
    let mut s = RawStream::post(
        &server,
        "/api/sample",
        &json!({"run": "8g", "settings": {"n": 5, "steps": 2}}),
    );
    assert_eq!(s.status, 200);
    let mut last = None;
    while let Some(e) = s.next_event() {
        last = Some(e);
    }
    let (name, data) = last.unwrap();
    assert_eq!(
        (name.as_str(), data["state"].as_str()),
        ("end", Some("done")),
        "{data}"
    );
}

#[test]
fn the_playground_streams_batches_and_saves_into_the_run_with_its_command() {
    let dir = tempfile::tempdir().unwrap();
    let runs = copy_of_fixture(dir.path());
    let (server, _) = serve(&runs, 1, 4);
    let mut s = RawStream::post(
        &server,
        "/api/sample",
        &json!({"run": "8g", "settings": {"n": 30, "batch_size": 10, "steps": 5, "seed": 7, "sampler": "euler"}}),
    );
    assert_eq!(s.status, 200, "{}", s.headers);
    assert!(s.headers.to_ascii_lowercase().contains("text/event-stream"));
    let mut images = 0;
    let mut result = None;
    let mut end = None;
    while let Some((name, data)) = s.next_event() {
        match name.as_str() {
            "image" => {
                assert!(data["png"]
                    .as_str()
                    .unwrap()
                    .starts_with("data:image/png;base64,"));
                assert_eq!(data["batch"], images);
                images += 1;
            }
            "result" => result = Some(data),
            "end" => end = Some(data),
            _ => {}
        }
    }
    assert_eq!(images, 3, "one picture per batch of 10");
    let result = result.unwrap();
    let end = end.unwrap();
    assert_eq!(end["state"], "done", "{end}");
    let cmd = result["command"].as_str().unwrap();
    assert!(
        cmd.starts_with("genlab sample --ckpt ")
            && cmd.ends_with(
                "/8g --n 30 --seed 7 --batch-size 10 --sampler euler --steps 5 --out samples.png"
            ),
        "{cmd}"
    );
    assert_eq!(result["nfe"], 5);
    assert!(result["coverage"]
        .as_str()
        .unwrap()
        .contains("within 3 std of a mode"));
    let job = end["job"].as_u64().unwrap();
    let (status, v) = post(
        &format!("{}/api/jobs/{job}/save", base(&server)),
        &json!({}),
    );
    assert_eq!(status, 200, "{v}");
    let saved = v["saved"].as_str().unwrap();
    assert!(saved.starts_with("8g/samples/playground-job"), "{saved}");
    let png = runs.join(saved);
    assert!(image::open(&png).is_ok());
    let side: Value =
        serde_json::from_str(&std::fs::read_to_string(png.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(side["command"], cmd);
    assert_eq!(side["settings"]["seed"], 7);
    // Saved once; again is a clear error. The run page lists the saved picture.
    let (status, _) = post(
        &format!("{}/api/jobs/{job}/save", base(&server)),
        &json!({}),
    );
    assert_eq!(status, 404);
    let (_, d) = get(&format!("{}/api/run?id=8g", base(&server)));
    assert!(d["pictures"].to_string().contains(saved), "{d}");
}

#[test]
fn a_training_job_follows_the_cli_path_stops_with_a_checkpoint_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let (server, lines) = serve(&runs, 2, 4);
    let url = |p: &str| format!("{}{p}", base(&server));
    let (status, v) = post(
        &url("/api/train"),
        &json!({"name": "group/live", "model": "ddpm", "data": "eight-gaussians", "steps": 1000000,
                "seed": 3, "overrides": ["train.batch_size=16", "train.log_every=2", "train.ckpt_every=5"]}),
    );
    assert_eq!(status, 202, "{v}");
    let job = v["job"].as_u64().unwrap();
    // It trains: the runs page shows it as training while its log grows.
    let step = wait_for(60, "the run to show training with a logged step", || {
        let r = runs_by_id(&server).remove("group/live")?;
        r["checkpoint_step"].as_u64()?;
        (r["state"] == "training" && r["step"].as_u64()? >= 4).then(|| r["step"].as_u64().unwrap())
    });
    assert!(step >= 4);
    // A second trainer on the same directory is refused by the run lock.
    let (status, v) = post(
        &url("/api/train"),
        &json!({"run": "group/live", "steps": 10}),
    );
    assert_eq!(status, 202, "{v}");
    let second = v["job"].as_u64().unwrap();
    wait_for(60, "the second trainer to fail", || {
        (job_state(&server, second) == "failed").then_some(())
    });
    let (_, j) = get(&url(&format!("/api/jobs/{second}")));
    assert!(j["error"].as_str().unwrap().contains("in use"), "{j}");
    // Stop: the checkpoint is saved, as on Ctrl-C.
    let (status, _) = post(&url(&format!("/api/jobs/{job}/stop")), &json!({}));
    assert_eq!(status, 200);
    wait_for(60, "the job to stop", || {
        (job_state(&server, job) == "stopped").then_some(())
    });
    let r = runs_by_id(&server).remove("group/live").unwrap();
    assert_eq!(r["state"], "interrupted", "{r}");
    let saved = r["checkpoint_step"].as_u64().unwrap();
    assert!(saved >= step, "{r}");
    // Continue it to a few more steps: finished, with its preview.
    let (status, v) = post(
        &url("/api/train"),
        &json!({"run": "group/live", "steps": saved + 4}),
    );
    assert_eq!(status, 202, "{v}");
    let job = v["job"].as_u64().unwrap();
    wait_for(120, "the resumed job to finish", || {
        (job_state(&server, job) == "done").then_some(())
    });
    let r = runs_by_id(&server).remove("group/live").unwrap();
    assert_eq!(
        (r["state"].as_str(), r["checkpoint_step"].as_u64()),
        (Some("finished"), Some(saved + 4))
    );
    assert!(runs.join("group/live/samples.png").exists());
    let lines = lines.lock().unwrap().join("\n");
    assert!(
        lines.contains(&format!("job {job} done: continue group/live")),
        "{lines}"
    );
}

#[test]
fn an_evaluation_job_writes_nll_json_and_the_runs_page_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let runs = copy_of_fixture(dir.path());
    let (server, _) = serve(&runs, 1, 4);
    let (status, v) = post(
        &format!("{}/api/eval", base(&server)),
        &json!({"run": "nested/vae-digits", "n": 40, "k": 4, "seed": 1}),
    );
    assert_eq!(status, 202, "{v}");
    let job = v["job"].as_u64().unwrap();
    wait_for(120, "the evaluation", || {
        let s = job_state(&server, job);
        assert_ne!(
            s,
            "failed",
            "{:?}",
            get(&format!("{}/api/jobs/{job}", base(&server)))
        );
        (s == "done").then_some(())
    });
    let nll: Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("nested/vae-digits/nll.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(nll["n"], 40);
    assert_eq!(nll["data"], "digits");
    let r = runs_by_id(&server).remove("nested/vae-digits").unwrap();
    assert_eq!(r["metrics"]["nll_nats"], nll["nll_nats"]);
}

#[test]
fn compare_streams_one_cell_per_sampler_and_steps_with_the_same_seed() {
    let (server, _) = serve(&fixture_runs(), 1, 4);
    let mut s = RawStream::post(
        &server,
        "/api/compare",
        &json!({"runs": ["8g"], "samplers": ["ddim", "euler"], "steps": [2, 4], "n": 8, "seed": 5}),
    );
    assert_eq!(s.status, 200);
    let mut cells = Vec::new();
    while let Some((name, data)) = s.next_event() {
        if name == "cell" {
            cells.push(data);
        }
    }
    let got: Vec<(String, u64, u64)> = cells
        .iter()
        .map(|c| {
            (
                c["sampler"].as_str().unwrap().to_string(),
                c["steps"].as_u64().unwrap(),
                c["nfe"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("ddim".into(), 2, 2),
            ("ddim".into(), 4, 4),
            ("euler".into(), 2, 2),
            ("euler".into(), 4, 4)
        ]
    );
    assert!(cells.iter().all(|c| c["seconds"].as_f64().unwrap() >= 0.0));
}

#[test]
fn a_report_is_one_self_contained_page() {
    let dir = tempfile::tempdir().unwrap();
    let runs = fixture_runs();
    let out = dir.path().join("share/report.html");
    let ids = ["8g", "nested/vae-digits", "broken", "rl-dqn"];
    let paths: Vec<_> = ids.iter().map(|i| runs.join(i)).collect();
    let s = genlab_serve::report::write_report(&paths, &out).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(s.runs, 4);
    assert_eq!(html.len(), s.bytes);
    // Every picture inlined, nothing linked.
    assert_eq!(html.matches("src=\"data:image/").count(), s.pictures);
    assert_eq!(html.matches("src=\"").count(), s.pictures);
    assert!(s.pictures >= 3, "{}", s.pictures);
    assert!(!html.contains("href=\"http") && !html.contains("<script"));
    assert!(html.contains("<svg") && html.contains("learning rate"));
    assert!(html.contains("Problems:") && html.contains("corrupt"));
    // The RL run: its algorithm and environment, its return curve drawn from its log (the
    // run's own returns.svg is not inlined beside it), its rollout's GIF.
    assert!(html.contains("Reinforcement learning: dqn on cartpole"));
    assert!(html.contains("episode return") && html.contains("mean of the last 20 episodes"));
    assert_eq!(html.matches("src=\"data:image/gif;base64,").count(), 1);
    assert_eq!(html.matches("src=\"data:image/svg+xml;").count(), 0);
    let e = genlab_serve::report::write_report(&[dir.path().to_path_buf()], &out).unwrap_err();
    assert!(
        e.to_string().contains("is not a training run directory"),
        "{e}"
    );
}

/// A run directory holding only a config and a learning curve, as `genlab active run`
/// writes them.
fn curve_run(
    root: &std::path::Path,
    id: &str,
    name: &str,
    points: &[(usize, f64)],
) -> std::path::PathBuf {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"strategy": "x"}"#).unwrap();
    let points: Vec<_> = points
        .iter()
        .map(|&(labels, accuracy)| serde_json::json!({"labels": labels, "accuracy": accuracy, "seconds": 1.0}))
        .collect();
    let curve = serde_json::json!({"name": name, "config": {}, "points": points});
    std::fs::write(dir.join("curve.json"), curve.to_string()).unwrap();
    dir
}

#[test]
fn a_report_of_several_learning_curves_draws_them_together_with_the_labels_each_needed() {
    let dir = tempfile::tempdir().unwrap();
    let a = curve_run(
        dir.path(),
        "bald-0",
        "bald",
        &[(20, 0.80), (30, 0.92), (40, 0.96)],
    );
    let b = curve_run(
        dir.path(),
        "bald-1",
        "bald",
        &[(20, 0.70), (30, 0.91), (40, 0.97)],
    );
    let c = curve_run(
        dir.path(),
        "random-0",
        "random",
        &[(20, 0.70), (30, 0.85), (40, 0.89)],
    );
    let out = dir.path().join("report.html");
    genlab_serve::report::write_report(&[a.clone(), b, c], &out).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("Learning curves"), "no combined section");
    // Two seeds of one strategy are one line with a band; the other strategy its own line.
    assert!(html.contains("bald (2 seeds)") && html.contains("random"));
    // Per run: labels at the end, error there, labels to 10% and to 5% (by hand: run a
    // reaches 8% error at 30 labels and 4% at 40; the random run never gets below 11%).
    let section = &html[html.find("labels to 10% error").unwrap()..];
    let rows = |run: &std::path::Path| {
        let cells = ["<td>", &run.display().to_string(), "</td>"].concat();
        section
            .find(&cells)
            .map(|i| section[i..].split("</tr>").next().unwrap().to_string())
    };
    let row_a = rows(&a).expect("run a in the table");
    for cell in ["<td>40</td>", "<td>4.00</td>", "<td>30</td>"] {
        assert!(row_a.contains(cell), "{cell} not in {row_a}");
    }
    let row_c = rows(&dir.path().join("random-0")).expect("the random run in the table");
    assert_eq!(row_c.matches("not reached").count(), 2, "{row_c}");
    assert!(row_c.contains("<td>11.00</td>"), "{row_c}");
    // A damaged curve is left out of the chart with a note; the page is still written.
    let d = curve_run(dir.path(), "damaged", "bald", &[]);
    std::fs::write(d.join("curve.json"), "{not json").unwrap();
    let c = dir.path().join("random-0");
    genlab_serve::report::write_report(&[a.clone(), d, c], &out).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("Learning curves") && html.contains("Left out (curve.json unreadable)"));
    // One curve alone: its own curve.svg is the picture; no combined section.
    genlab_serve::report::write_report(&[a], &out).unwrap();
    assert!(!std::fs::read_to_string(&out)
        .unwrap()
        .contains("Learning curves"));
}
