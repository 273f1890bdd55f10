//! The HTTP side: routes, the guard every request passes (token, host, origin), pages,
//! JSON endpoints and event streams.
//!
//! Pages are static shells (`assets/`) that fetch JSON; long answers (a sampling run, a
//! comparison, a growing log) are server-sent event streams. Every error is JSON
//! `{"error": "..."}` with its status, and one line on the terminal.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{Result, ServeError};
use crate::jobs::{Job, JobId, JobKind, Jobs, Notify, StopOnDrop};
use crate::logs::LogFollower;
use crate::params::{self, ModelFacts};
use crate::runs::{self, RunState};
use crate::work::{self, Env};

/// Largest request body (the forms are small JSON objects).
const MAX_BODY: usize = 64 << 10;
/// Largest file `/files/...` serves.
const MAX_FILE: u64 = 64 << 20;
/// How often a followed log is read.
const LOG_POLL: Duration = Duration::from_millis(400);
/// How often a followed run's summary (its state) is re-read.
const SUMMARY_EVERY: u32 = 5;
/// Most records one `records` event carries.
const RECORDS_PER_EVENT: usize = 2000;
/// Most runs one comparison samples, and most cells in all.
const MAX_COMPARE_RUNS: usize = 4;
const MAX_COMPARE_CELLS: usize = 60;
/// Most samples per comparison cell.
const MAX_COMPARE_N: u64 = 256;
/// Most steps of a training job started from the page.
const MAX_TRAIN_STEPS: u64 = 10_000_000;
/// Models loaded at once to read their sampling form.
const FORM_LOADS: usize = 2;

/// The shared state of every handler.
pub struct App {
    env: Arc<Env>,
    jobs: Arc<Jobs>,
    token: Option<String>,
    /// `Host` values accepted without a token (DNS rebinding guard).
    hosts: Vec<String>,
    notify: Notify,
    /// Model facts by run directory, with the checkpoint's (modified, size) they came from.
    facts: Mutex<HashMap<PathBuf, (CheckpointVersion, ModelFacts)>>,
    loads: tokio::sync::Semaphore,
    /// Removed with the server.
    _scratch: tempfile::TempDir,
}

impl App {
    pub fn new(
        env: Arc<Env>,
        jobs: Arc<Jobs>,
        token: Option<String>,
        addr: SocketAddr,
        notify: Notify,
        scratch: tempfile::TempDir,
    ) -> Arc<Self> {
        let port = addr.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        hosts.push(match addr {
            SocketAddr::V4(a) => format!("{}:{port}", a.ip()),
            SocketAddr::V6(a) => format!("[{}]:{port}", a.ip()),
        });
        Arc::new(Self {
            env,
            jobs,
            token,
            hosts,
            notify,
            facts: Mutex::new(HashMap::new()),
            loads: tokio::sync::Semaphore::new(FORM_LOADS),
            _scratch: scratch,
        })
    }
}

type St = State<Arc<App>>;

/// A checkpoint file's modification time and size: cached facts hold while they match.
type CheckpointVersion = (Option<SystemTime>, u64);

/// The error note a response carries for the terminal line.
#[derive(Clone)]
struct ErrorNote(String);

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let msg = self.to_string();
        let mut r = (status, Json(json!({ "error": msg }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r.extensions_mut().insert(ErrorNote(msg));
        r
    }
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    let mut r = (status, Json(json!({ "error": msg }))).into_response();
    r.extensions_mut().insert(ErrorNote(msg.to_string()));
    r
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| page("runs")))
        .route("/run", get(|| page("run")))
        .route("/playground", get(|| page("playground")))
        .route("/compare", get(|| page("compare")))
        .route("/jobs", get(|| page("jobs")))
        .route("/static/app.js", get(app_js))
        .route("/static/style.css", get(style_css))
        .route("/api/registry", get(registry))
        .route("/api/runs", get(list_runs))
        .route("/api/run", get(run_detail))
        .route("/api/run/log", get(follow_log))
        .route("/api/run/form", get(run_form))
        .route("/api/sample", post(sample))
        .route("/api/compare", post(compare))
        .route("/api/train", post(train))
        .route("/api/eval", post(eval))
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{id}", get(job_view))
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/api/jobs/{id}/stop", post(job_stop))
        .route("/api/jobs/{id}/save", post(job_save))
        .route("/files/{*path}", get(file))
        .fallback(|| async { ServeError::NotFound("no such page".into()) })
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Compares without stopping at the first difference (the token check).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "genlab_token")
        .map(|(_, v)| v.to_string())
}

fn query_token(req: &Request) -> Option<String> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_string())
}

/// Every request: the token (when the server has one), else a loopback `Host` (so a web
/// page elsewhere cannot reach the server through DNS rebinding); a state-changing request
/// from another origin is refused; errors get a terminal line; security headers go on
/// every answer.
async fn guard(State(app): St, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut set_cookie = None;
    if let Some(token) = &app.token {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(String::from);
        let from_query = query_token(&req);
        let ok = [bearer, cookie_token(&headers), from_query.clone()]
            .iter()
            .flatten()
            .any(|t| same(t, token));
        if !ok {
            (app.notify)(&format!("refused {method} {path}: no valid token"));
            return refuse(
                StatusCode::UNAUTHORIZED,
                "this server needs its token: open the address `genlab serve` printed (it \
                 carries ?token=...), or send `Authorization: Bearer TOKEN`",
            );
        }
        if from_query.is_some() {
            set_cookie = Some(format!(
                "genlab_token={token}; HttpOnly; SameSite=Strict; Path=/"
            ));
        }
    } else if !app.hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
        (app.notify)(&format!("refused {method} {path}: Host `{host}`"));
        return refuse(
            StatusCode::FORBIDDEN,
            "unexpected Host header: without a token this server answers only requests to \
             127.0.0.1, localhost or [::1]",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or(origin);
            if !origin_host.eq_ignore_ascii_case(&host) {
                (app.notify)(&format!("refused {method} {path}: Origin `{origin}`"));
                return refuse(
                    StatusCode::FORBIDDEN,
                    "a request from another web page's origin is refused",
                );
            }
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                 script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
            ),
        );
    }
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    if let Some(ErrorNote(msg)) = resp.extensions().get::<ErrorNote>() {
        (app.notify)(&format!(
            "{method} {path}: {} {msg}",
            resp.status().as_u16()
        ));
    }
    resp
}

const SHELL: &str = include_str!("assets/shell.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

async fn page(name: &'static str) -> Response {
    let html = SHELL.replace("{{page}}", name);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

/// Datasets a page may train or evaluate on: those that read no path of the user's
/// choosing (the server shows only what is under the runs directory).
fn web_dataset(spec: &str) -> Result<()> {
    let (entry, _) = genlab_data::find_dataset(spec)?;
    if entry.arg_required {
        return Err(ServeError::param(
            "data",
            format!(
                "`{spec}` reads files from a path; start runs on such data from the command \
                 line (the web UI reads nothing outside the runs directory)"
            ),
        ));
    }
    Ok(())
}

async fn registry() -> Json<Value> {
    let models: Vec<Value> = genlab_train::MODELS
        .iter()
        .map(|m| json!({ "name": m.name, "description": m.description, "capabilities": m.caps }))
        .collect();
    let samplers: Vec<Value> = genlab_sampling::SAMPLERS
        .iter()
        .map(|s| json!({ "name": s.name, "description": s.description }))
        .collect();
    let datasets: Vec<Value> = genlab_data::DATASETS
        .iter()
        .map(|d| {
            json!({ "name": d.name, "usage": d.usage(), "description": d.description,
                    "web": !d.arg_required })
        })
        .collect();
    Json(json!({ "models": models, "samplers": samplers, "datasets": datasets }))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ServeError::Conflict(format!("internal error: {e}"))))
}

async fn list_runs(State(app): St) -> Result<Json<Value>> {
    let env = app.env.clone();
    let runs = blocking(move || Ok(runs::scan(&env.root))).await?;
    Ok(Json(json!({
        "root": app.env.root.path().display().to_string(),
        "runs": runs,
    })))
}

#[derive(Deserialize)]
struct IdQuery {
    id: String,
}

/// The run directory a request names: it must exist and be a run.
fn run_dir(app: &App, id: &str) -> Result<PathBuf> {
    let dir = app.env.root.resolve(id)?;
    let is_run = dir.is_dir()
        && [
            genlab_train::trainer::CONFIG_FILE,
            genlab_train::trainer::CHECKPOINT_FILE,
            genlab_train::trainer::LOG_FILE,
        ]
        .iter()
        .any(|f| dir.join(f).is_file());
    if !is_run {
        return Err(ServeError::NotFound(format!(
            "`{id}` is not a run directory"
        )));
    }
    Ok(dir)
}

/// Refuses to `what` an RL run (sample, compare, continue or evaluate it from a page): an
/// agent draws no samples, and its training and evaluation are `genlab rl`'s.
fn not_rl(dir: &std::path::Path, id: &str, what: &str) -> Result<()> {
    let s = runs::summarize(dir, id.to_string());
    if s.family != runs::Family::Rl {
        return Ok(());
    }
    let algo = s.model.as_deref().unwrap_or("?");
    let env = s.data.as_deref().unwrap_or("?");
    Err(ServeError::Conflict(format!(
        "`{id}` is a reinforcement-learning run ({algo} on {env}): it cannot {what} from \
             this page; use `genlab rl train --resume`, `genlab rl eval` or `genlab rl rollout` \
             on it"
    )))
}

async fn run_detail(State(app): St, Query(q): Query<IdQuery>) -> Result<Json<Value>> {
    let dir = run_dir(&app, &q.id)?;
    let d = blocking(move || Ok(runs::detail(&dir, q.id))).await?;
    Ok(Json(serde_json::to_value(d).unwrap_or_default()))
}

fn sse_event(name: &str, data: &Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

fn sse<S>(s: S) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    Sse::new(s.map(Ok::<Event, Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response()
}

/// Follows a run's log: `records` (new log lines), `reset` (the log was rewritten),
/// `problems` (unreadable lines so far) and `summary` (the run's state, when it changes).
async fn follow_log(State(app): St, Query(q): Query<IdQuery>) -> Result<Response> {
    let dir = run_dir(&app, &q.id)?;
    struct S {
        follower: LogFollower,
        dir: PathBuf,
        id: String,
        tick: u32,
        bad: usize,
        last_summary: Option<Value>,
        first: bool,
    }
    let init = S {
        follower: LogFollower::new(&dir.join(genlab_train::trainer::LOG_FILE)),
        dir,
        id: q.id,
        tick: 0,
        bad: 0,
        last_summary: None,
        first: true,
    };
    let s = stream::unfold(init, |mut s| async move {
        loop {
            if !s.first {
                tokio::time::sleep(LOG_POLL).await;
            }
            s.first = false;
            let mut out = Vec::new();
            match s.follower.poll() {
                Ok(chunk) => {
                    if chunk.reset {
                        s.bad = 0;
                        out.push(sse_event("reset", &Value::Null));
                    }
                    for part in chunk.records.chunks(RECORDS_PER_EVENT) {
                        out.push(sse_event(
                            "records",
                            &serde_json::to_value(part).unwrap_or_default(),
                        ));
                    }
                    if chunk.bad_lines > 0 {
                        s.bad += chunk.bad_lines;
                        out.push(sse_event("problems", &json!({ "bad_lines": s.bad })));
                    }
                }
                Err(e) => out.push(sse_event(
                    "problems",
                    &json!({ "error": format!("log.jsonl cannot be read: {e}") }),
                )),
            }
            if s.tick % SUMMARY_EVERY == 0 {
                let summary = runs::summarize(&s.dir, s.id.clone());
                let v = serde_json::to_value(&summary).unwrap_or_default();
                if s.last_summary.as_ref() != Some(&v) {
                    out.push(sse_event("summary", &v));
                    s.last_summary = Some(v);
                }
            }
            s.tick = s.tick.wrapping_add(1);
            if !out.is_empty() {
                return Some((stream::iter(out), s));
            }
        }
    });
    Ok(sse(s.flatten()))
}

/// A run's model facts (loads its checkpoint once per checkpoint version).
async fn facts(app: &Arc<App>, dir: &std::path::Path) -> Result<ModelFacts> {
    let ckpt = dir.join(genlab_train::trainer::CHECKPOINT_FILE);
    let meta = std::fs::metadata(&ckpt).map_err(|_| {
        ServeError::Conflict("this run has no checkpoint yet: nothing to sample".into())
    })?;
    let key = (meta.modified().ok(), meta.len());
    if let Some((k, f)) = app.facts.lock().unwrap_or_else(|e| e.into_inner()).get(dir) {
        if *k == key {
            return Ok(f.clone());
        }
    }
    let _permit = app
        .loads
        .acquire()
        .await
        .map_err(|_| ServeError::Conflict("the server is stopping".into()))?;
    let d = dir.to_path_buf();
    let f = blocking(move || {
        let loaded = genlab_train::load_model(&d, true, &candle_core::Device::Cpu)?;
        let caps = genlab_train::find_model(&loaded.run.model)?.caps;
        Ok(ModelFacts::of(caps, loaded.model.as_ref()))
    })
    .await?;
    app.facts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(dir.to_path_buf(), (key, f.clone()));
    Ok(f)
}

async fn run_form(State(app): St, Query(q): Query<IdQuery>) -> Result<Json<Value>> {
    let dir = run_dir(&app, &q.id)?;
    not_rl(&dir, &q.id, "be sampled")?;
    let f = facts(&app, &dir).await?;
    if !f.caps.generates {
        return Err(ServeError::Conflict(format!(
            "`{}` holds a model that does not generate samples",
            q.id
        )));
    }
    Ok(Json(json!({
        "run": q.id,
        "images": f.images,
        "capabilities": f.caps,
        "params": params::form(&f),
    })))
}

/// Parses a JSON body; requests must say `Content-Type: application/json` (a form post from
/// another page cannot).
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(ServeError::param(
            "content type",
            format!("must be application/json, got `{ct}`"),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ServeError::param("body", "must be a JSON object")),
        Err(e) => Err(ServeError::param("body", format!("is not valid JSON: {e}"))),
    }
}

fn take_str(m: &mut Map<String, Value>, k: &str) -> Result<Option<String>> {
    match m.remove(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ServeError::param(k, format!("must be a string, got {v}"))),
    }
}

fn take_u64(m: &mut Map<String, Value>, k: &str, min: u64, max: u64) -> Result<Option<u64>> {
    match m.remove(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(x) if (min..=max).contains(&x) => Ok(Some(x)),
            _ => Err(ServeError::param(
                k,
                format!("must be an integer from {min} to {max}, got {v}"),
            )),
        },
    }
}

fn no_more(m: &Map<String, Value>, known: &str) -> Result<()> {
    match m.keys().next() {
        Some(k) => Err(ServeError::param(
            k.as_str(),
            format!("is not a known field (known: {known})"),
        )),
        None => Ok(()),
    }
}

/// Streams an attached job's events; the job stops if the stream is dropped. The job's
/// number is in the `x-genlab-job` header and in the first `state` event.
fn attached_stream(app: &Arc<App>, job: Arc<Job>) -> Response {
    let id = job.id;
    let guard = StopOnDrop {
        jobs: app.jobs.clone(),
        id,
    };
    let mut r = sse(job_stream(app.jobs.clone(), job, Some(guard)));
    r.headers_mut()
        .insert("x-genlab-job", HeaderValue::from(id));
    r
}

/// A job's events as they come: `state` (queued with its place, running), `progress`,
/// the work's own events (`image`, `result`, `cell`), then `end` with the final state.
fn job_stream(
    jobs: Arc<Jobs>,
    job: Arc<Job>,
    guard: Option<StopOnDrop>,
) -> impl Stream<Item = Event> + Send + 'static {
    struct S {
        jobs: Arc<Jobs>,
        job: Arc<Job>,
        rx: tokio::sync::watch::Receiver<u64>,
        next: usize,
        progress: Option<crate::jobs::Progress>,
        state: Option<(crate::jobs::JobState, Option<usize>)>,
        over: bool,
        _guard: Option<StopOnDrop>,
    }
    let rx = job.watch();
    let init = S {
        jobs,
        job,
        rx,
        next: 0,
        progress: None,
        state: None,
        over: false,
        _guard: guard,
    };
    stream::unfold(init, |mut s| async move {
        if s.over {
            return None;
        }
        loop {
            s.rx.borrow_and_update();
            let mut out = Vec::new();
            let Some(view) = s.jobs.view(s.job.id) else {
                s.over = true;
                out.push(sse_event("end", &json!({ "state": "gone" })));
                return Some((stream::iter(out), s));
            };
            let st = (view.state, view.queue_position);
            if s.state != Some(st) {
                out.push(sse_event(
                    "state",
                    &json!({ "job": view.id, "state": view.state, "queue_position": view.queue_position }),
                ));
                s.state = Some(st);
            }
            for (name, data) in s.job.events_since(s.next) {
                s.next += 1;
                out.push(sse_event(&name, &data));
            }
            if s.progress.as_ref() != Some(&view.progress) {
                out.push(sse_event(
                    "progress",
                    &serde_json::to_value(&view.progress).unwrap_or_default(),
                ));
                s.progress = Some(view.progress.clone());
            }
            if view.state.is_over() {
                s.over = true;
                out.push(sse_event(
                    "end",
                    &json!({ "job": view.id, "state": view.state, "error": view.error, "result": view.result }),
                ));
            }
            if !out.is_empty() {
                return Some((stream::iter(out), s));
            }
            if s.rx.changed().await.is_err() {
                s.over = true;
                return Some((
                    stream::iter(vec![sse_event("end", &json!({ "state": "gone" }))]),
                    s,
                ));
            }
        }
    })
    .flatten()
}

/// The playground: `{"run": ID, "settings": {...}}` -> a stream of the sampling job.
async fn sample(State(app): St, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let mut m = json_body(&headers, &body)?;
    let id = take_str(&mut m, "run")?.ok_or_else(|| ServeError::param("run", "is required"))?;
    let settings = match m.remove("settings") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(s)) => s,
        Some(v) => {
            return Err(ServeError::param(
                "settings",
                format!("must be an object, got {v}"),
            ))
        }
    };
    no_more(&m, "run, settings")?;
    let dir = run_dir(&app, &id)?;
    not_rl(&dir, &id, "be sampled")?;
    let f = facts(&app, &dir).await?;
    let plan = params::parse(&f, &settings)?;
    let title = format!(
        "sample {id}: {} samples, seed {}",
        plan.request.n, plan.seed
    );
    let job = app.jobs.submit(
        JobKind::Sample,
        title,
        Some(id.clone()),
        true,
        work::sample_work(app.env.clone(), id, dir, plan),
    )?;
    Ok(attached_stream(&app, job))
}

/// The compare page: `{"runs": [...], "samplers": [...], "steps": [...], "n", "seed"}` -> a
/// stream of the comparison job.
async fn compare(State(app): St, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let mut m = json_body(&headers, &body)?;
    let strings = |m: &mut Map<String, Value>, k: &str| -> Result<Vec<String>> {
        match m.remove(k) {
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(ServeError::param(
                        k,
                        format!("must list strings, got {other}"),
                    )),
                })
                .collect(),
            _ => Err(ServeError::param(k, "must be a list")),
        }
    };
    let ids = strings(&mut m, "runs")?;
    let samplers = strings(&mut m, "samplers")?;
    let steps: Vec<usize> = match m.remove("steps") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v.as_u64() {
                Some(k) if (1..=params::MAX_STEPS).contains(&k) => Ok(k as usize),
                _ => Err(ServeError::param(
                    "steps",
                    format!(
                        "must list integers from 1 to {}, got {v}",
                        params::MAX_STEPS
                    ),
                )),
            })
            .collect::<Result<_>>()?,
        _ => return Err(ServeError::param("steps", "must be a list")),
    };
    let n = take_u64(&mut m, "n", 1, MAX_COMPARE_N)?.unwrap_or(16) as usize;
    let seed = take_u64(&mut m, "seed", 0, params::MAX_SEED)?.unwrap_or(0);
    no_more(&m, "runs, samplers, steps, n, seed")?;
    if ids.is_empty() || ids.len() > MAX_COMPARE_RUNS {
        return Err(ServeError::param(
            "runs",
            format!("must name 1 to {MAX_COMPARE_RUNS} runs, got {}", ids.len()),
        ));
    }
    if samplers.is_empty() || steps.is_empty() {
        return Err(ServeError::param(
            "samplers",
            "and steps must each name at least one",
        ));
    }
    let known: Vec<&str> = genlab_sampling::SAMPLERS.iter().map(|s| s.name).collect();
    if let Some(bad) = samplers.iter().find(|s| !known.contains(&s.as_str())) {
        return Err(genlab_core::Error::unknown("sampler", bad, &known).into());
    }
    let cells = ids.len() * samplers.len() * steps.len();
    if cells > MAX_COMPARE_CELLS {
        return Err(ServeError::param(
            "samplers",
            format!(
                "x steps x runs make {cells} pictures; at most {MAX_COMPARE_CELLS} per comparison"
            ),
        ));
    }
    let mut runs = Vec::new();
    for id in &ids {
        let dir = run_dir(&app, id)?;
        not_rl(&dir, id, "be compared")?;
        let f = facts(&app, &dir).await?;
        if !f.caps.sampler_zoo {
            return Err(ServeError::param(
                "runs",
                format!("`{id}` does not sample through the sampler zoo: nothing to compare"),
            ));
        }
        runs.push(work::CompareRun {
            id: id.clone(),
            dir,
        });
    }
    let title = format!("compare {} ({cells} pictures, seed {seed})", ids.join(", "));
    let job = app.jobs.submit(
        JobKind::Compare,
        title,
        ids.first().cloned(),
        true,
        work::compare_work(
            app.env.clone(),
            work::CompareSpec {
                runs,
                samplers,
                steps,
                n,
                seed,
            },
        ),
    )?;
    Ok(attached_stream(&app, job))
}

/// Starts a training job: a fresh run (`name`, `model`, `data`, `steps`, `seed`,
/// `overrides`) or a resumed one (`run`, `steps`, `overrides` of train.* settings).
async fn train(State(app): St, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let mut m = json_body(&headers, &body)?;
    let name = take_str(&mut m, "name")?;
    let resume_id = take_str(&mut m, "run")?;
    let model = take_str(&mut m, "model")?;
    let data = take_str(&mut m, "data")?;
    let steps = take_u64(&mut m, "steps", 1, MAX_TRAIN_STEPS)?;
    let seed = take_u64(&mut m, "seed", 0, params::MAX_SEED)?;
    let overrides: Vec<String> = match m.remove("overrides") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(ServeError::param(
                    "overrides",
                    format!("must list key=value strings, got {other}"),
                )),
            })
            .collect::<Result<_>>()?,
        Some(v) => {
            return Err(ServeError::param(
                "overrides",
                format!("must be a list, got {v}"),
            ))
        }
    };
    no_more(&m, "name, run, model, data, steps, seed, overrides")?;
    for o in &overrides {
        let (k, _) = genlab_core::config::parse_override(o)?;
        if !k.contains('.') {
            return Err(ServeError::param(
                "overrides",
                format!("`{k}` is set by its own field, not as an override (overrides set section.key=value, e.g. train.lr=2e-4)"),
            ));
        }
    }
    let (id, request) = match (resume_id, name) {
        (Some(id), None) => {
            if model.is_some() || data.is_some() || seed.is_some() {
                return Err(ServeError::param(
                    "run",
                    "continues a run with its saved config: model, data and seed cannot change",
                ));
            }
            let dir = run_dir(&app, &id)?;
            not_rl(&dir, &id, "be continued")?;
            if !dir.join(genlab_train::trainer::CHECKPOINT_FILE).is_file() {
                return Err(ServeError::Conflict(format!(
                    "`{id}` has no checkpoint to continue from"
                )));
            }
            let request = genlab_train::RunRequest {
                out: dir,
                steps,
                overrides,
                resume: true,
                ..Default::default()
            };
            (id, request)
        }
        (None, Some(name)) => {
            let model = model.ok_or_else(|| ServeError::param("model", "is required"))?;
            let data = data.ok_or_else(|| ServeError::param("data", "is required"))?;
            let entry = genlab_train::find_model(&model)?;
            if !entry.caps.trains_fresh {
                return Err(ServeError::param(
                    "model",
                    format!("`{model}` is not trained from scratch (see its description)"),
                ));
            }
            web_dataset(&data)?;
            let out = app.env.root.child(&name)?;
            if out.join(genlab_train::trainer::CHECKPOINT_FILE).exists() {
                return Err(ServeError::Conflict(format!(
                    "`{name}` already holds a run; continue it from its page, or choose another name"
                )));
            }
            let request = genlab_train::RunRequest {
                out,
                model: Some(model),
                data: Some(data),
                seed,
                steps,
                overrides,
                ..Default::default()
            };
            (name, request)
        }
        _ => {
            return Err(ServeError::param(
                "name",
                "or run is required (one of them): a new run's name, or the run to continue",
            ))
        }
    };
    let what = if request.resume { "continue" } else { "train" };
    let title = format!("{what} {id}");
    let job = app.jobs.submit(
        JobKind::Train,
        title,
        Some(id.clone()),
        false,
        work::train_work(app.env.clone(), id.clone(), request),
    )?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job": job.id, "run": id })),
    )
        .into_response())
}

/// Starts a likelihood evaluation: `{"run", "data"?, "n"?, "k"?, "seed"?}`.
async fn eval(State(app): St, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let mut m = json_body(&headers, &body)?;
    let id = take_str(&mut m, "run")?.ok_or_else(|| ServeError::param("run", "is required"))?;
    let data = take_str(&mut m, "data")?;
    let n = take_u64(&mut m, "n", 1, 100_000)?.map(|n| n as usize);
    let k = take_u64(&mut m, "k", 1, 5000)?.unwrap_or(100) as usize;
    let seed = take_u64(&mut m, "seed", 0, params::MAX_SEED)?.unwrap_or(0);
    no_more(&m, "run, data, n, k, seed")?;
    if let Some(d) = &data {
        web_dataset(d)?;
    }
    let dir = run_dir(&app, &id)?;
    not_rl(&dir, &id, "be evaluated")?;
    let summary = runs::summarize(&dir, id.clone());
    if summary.state == RunState::Broken {
        return Err(ServeError::Conflict(format!(
            "`{id}` cannot be read: {}",
            summary.problems.join("; ")
        )));
    }
    if !summary.capabilities.is_some_and(|c| c.likelihood) {
        return Err(ServeError::param(
            "run",
            format!("`{id}` holds a model without a likelihood to evaluate"),
        ));
    }
    let title = format!("evaluate nll of {id}");
    let job = app.jobs.submit(
        JobKind::Eval,
        title,
        Some(id.clone()),
        false,
        work::eval_work(
            app.env.clone(),
            work::EvalSpec {
                id: id.clone(),
                dir,
                data,
                n,
                k,
                seed,
            },
        ),
    )?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job": job.id, "run": id })),
    )
        .into_response())
}

async fn list_jobs(State(app): St) -> Json<Value> {
    Json(json!({
        "jobs": app.jobs.list(),
        "workers": app.jobs.workers(),
        "capacity": app.jobs.capacity(),
    }))
}

fn job_of(app: &App, id: JobId) -> Result<Arc<Job>> {
    app.jobs.get(id).ok_or_else(|| {
        ServeError::NotFound(format!(
            "no job {id} (finished jobs are kept for a while only)"
        ))
    })
}

async fn job_view(State(app): St, UrlPath(id): UrlPath<JobId>) -> Result<Json<Value>> {
    let v = app
        .jobs
        .view(id)
        .ok_or_else(|| ServeError::NotFound(format!("no job {id}")))?;
    Ok(Json(serde_json::to_value(v).unwrap_or_default()))
}

/// A job's events; the job goes on when this stream is dropped.
async fn job_events(State(app): St, UrlPath(id): UrlPath<JobId>) -> Result<Response> {
    let job = job_of(&app, id)?;
    Ok(sse(job_stream(app.jobs.clone(), job, None)))
}

async fn job_stop(State(app): St, UrlPath(id): UrlPath<JobId>) -> Result<Json<Value>> {
    let state = app.jobs.stop(id)?;
    Ok(Json(json!({ "job": id, "state": state })))
}

async fn job_save(State(app): St, UrlPath(id): UrlPath<JobId>) -> Result<Json<Value>> {
    let job = job_of(&app, id)?;
    if job.kind != JobKind::Sample || job.state() != crate::jobs::JobState::Done {
        return Err(ServeError::Conflict(format!(
            "job {id} is not a finished sampling job"
        )));
    }
    let result = job.result().unwrap_or_default();
    let env = app.env.clone();
    let saved = blocking(move || work::save_result(&env, id, &result)).await?;
    (app.notify)(&format!(
        "saved job {id}'s samples as {}",
        saved["saved"].as_str().unwrap_or_default()
    ));
    Ok(Json(saved))
}

/// The content type of a file `/files/...` serves; `None`: not served.
fn content_type(path: &std::path::Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "jsonl" | "txt" | "toml" | "csv" | "log" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// A file under the runs directory (pictures, logs, configs; never a directory listing,
/// never weights).
async fn file(State(app): St, UrlPath(rel): UrlPath<String>) -> Result<Response> {
    let path = app.env.root.resolve(&rel)?;
    let meta = std::fs::metadata(&path).map_err(|e| ServeError::io("read", &path, e))?;
    if !meta.is_file() {
        return Err(ServeError::NotFound(format!(
            "`{rel}` is a directory; directories are not listed"
        )));
    }
    let ct = content_type(&path).ok_or_else(|| {
        ServeError::NotFound(format!(
            "`{rel}`: only pictures, logs and JSON/text files are served"
        ))
    })?;
    if meta.len() > MAX_FILE {
        return Err(ServeError::Conflict(format!(
            "`{rel}` is larger than 64 MiB; not served"
        )));
    }
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ServeError::io("read", &path, e))?;
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // An SVG opened on its own runs no script.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
        ),
    );
    Ok(r)
}
