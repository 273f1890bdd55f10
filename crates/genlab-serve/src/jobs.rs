//! Jobs: training, sampling, comparison and evaluation runs started from the pages, each in
//! one bounded queue served by a few worker threads.
//!
//! A job is submitted with the work it does (a closure over the library calls); the queue
//! refuses new jobs with [`ServeError::QueueFull`] once `capacity` are waiting, so a burst of
//! requests costs a 503 each, never unbounded memory or threads. A job reports progress and
//! discrete events (an image, a result) through its [`JobCtx`]; watchers wake on its version
//! counter and read what they have not seen yet.
//!
//! Stopping: every job has a stop flag. A training job hands it to the trainer, which saves
//! a checkpoint and returns (as on Ctrl-C); a sampling job checks it between batches; a job
//! still queued is dropped at once. A job whose only watcher is its own streamed response
//! (an *attached* job: the playground's and the compare page's) is stopped when that
//! response is dropped, so a client that disconnects leaves no work behind.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::error::{Result, ServeError};

/// A job's number, unique within one server.
pub type JobId = u64;

/// Finished jobs kept for the jobs page (and their results for saving); older ones go,
/// with the files they kept.
const HISTORY: usize = 32;
/// Finished jobs that keep their events (pictures); older ones keep only their result.
const KEEP_EVENTS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Train,
    Sample,
    Compare,
    Eval,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    /// Finished its work.
    Done,
    /// Failed; `error` says why.
    Failed,
    /// Stopped on request after saving its state (a training job's checkpoint).
    Stopped,
    /// Dropped on request (or by its client leaving) before it finished.
    Cancelled,
}

impl JobState {
    pub fn is_over(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// How far a job is.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    /// What is counted (`steps`, `network evaluations`, `examples`).
    pub unit: String,
    /// The latest line of news (`loss 0.0412, 35.2 steps/s`).
    pub message: String,
}

/// How a job's work ended when it did not fail.
#[derive(Debug)]
pub enum JobEnd {
    /// It did all its work; the value is its result.
    Done(Value),
    /// It stopped on request and saved its state.
    Stopped(Value),
    /// It gave up on request before finishing.
    Cancelled,
}

/// The work of a job, run once on a worker thread.
pub type Work = Box<dyn FnOnce(&JobCtx) -> Result<JobEnd> + Send>;

#[derive(Debug, Default)]
struct Inner {
    state: Option<JobState>,
    progress: Progress,
    /// Discrete events in order: (name, data).
    events: Vec<(String, Value)>,
    result: Option<Value>,
    error: Option<String>,
    started: Option<u64>,
    finished: Option<u64>,
}

/// One job.
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub title: String,
    /// The run it concerns (its id), if any.
    pub run: Option<String>,
    /// Stopped when its streamed response is dropped.
    pub attached: bool,
    pub created: u64,
    stop: Arc<AtomicBool>,
    inner: Mutex<Inner>,
    version: watch::Sender<u64>,
    work: Mutex<Option<Work>>,
    /// Files the job made that go when the job is forgotten.
    files: Mutex<Vec<std::path::PathBuf>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A snapshot of a job for the pages.
#[derive(Clone, Debug, Serialize)]
pub struct JobView {
    pub id: JobId,
    pub kind: JobKind,
    pub title: String,
    pub run: Option<String>,
    pub state: JobState,
    pub progress: Progress,
    pub error: Option<String>,
    pub result: Option<Value>,
    pub created: u64,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    /// Place in the queue (0 = next) while queued.
    pub queue_position: Option<usize>,
}

impl Job {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A worker that panicked mid-update left plain data: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    pub fn state(&self) -> JobState {
        self.lock().state.unwrap_or(JobState::Queued)
    }

    /// Whether a stop was asked for.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A receiver that changes whenever the job does.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The events from index `from` on.
    pub fn events_since(&self, from: usize) -> Vec<(String, Value)> {
        let inner = self.lock();
        inner.events.get(from..).unwrap_or_default().to_vec()
    }

    pub fn progress(&self) -> Progress {
        self.lock().progress.clone()
    }

    pub fn result(&self) -> Option<Value> {
        self.lock().result.clone()
    }

    fn view(&self, queue_position: Option<usize>) -> JobView {
        let inner = self.lock();
        JobView {
            id: self.id,
            kind: self.kind,
            title: self.title.clone(),
            run: self.run.clone(),
            state: inner.state.unwrap_or(JobState::Queued),
            progress: inner.progress.clone(),
            error: inner.error.clone(),
            result: inner.result.clone(),
            created: self.created,
            started: inner.started,
            finished: inner.finished,
            queue_position,
        }
    }

    fn finish(&self, state: JobState, result: Option<Value>, error: Option<String>) {
        {
            let mut inner = self.lock();
            inner.state = Some(state);
            inner.result = result;
            inner.error = error;
            inner.finished = Some(now());
        }
        self.bump();
    }
}

/// What a job's work uses to report and to check for a stop.
pub struct JobCtx {
    job: Arc<Job>,
}

impl JobCtx {
    pub fn id(&self) -> JobId {
        self.job.id
    }

    /// Sets the progress counter.
    pub fn progress(&self, done: u64, total: u64, unit: &str) {
        {
            let mut inner = self.job.lock();
            let p = &mut inner.progress;
            p.done = done;
            p.total = total;
            if p.unit != unit {
                p.unit = unit.to_string();
            }
        }
        self.job.bump();
    }

    /// Sets the line of news.
    pub fn message(&self, message: String) {
        self.job.lock().progress.message = message;
        self.job.bump();
    }

    /// Appends a discrete event.
    pub fn event(&self, name: &str, data: Value) {
        self.job.lock().events.push((name.to_string(), data));
        self.job.bump();
    }

    pub fn stop_requested(&self) -> bool {
        self.job.stop_requested()
    }

    /// The stop flag itself (the trainer polls it between steps).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.job.stop.clone()
    }

    /// A file of this job's (a picture not saved yet), removed when the job is forgotten.
    pub fn keep_file(&self, path: std::path::PathBuf) {
        self.job
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path);
    }
}

/// Called with one line for the terminal whenever a job starts, ends or fails.
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

struct Shared {
    queue: Mutex<VecDeque<Arc<Job>>>,
    ready: Condvar,
    jobs: Mutex<Vec<Arc<Job>>>,
    next_id: AtomicU64,
    capacity: usize,
    shutting_down: AtomicBool,
    notify: Notify,
}

/// The job queue and its workers.
pub struct Jobs {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    worker_count: usize,
}

impl Jobs {
    /// A queue holding at most `capacity` waiting jobs, served by `workers` threads.
    pub fn new(workers: usize, capacity: usize, notify: Notify) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            jobs: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            capacity,
            shutting_down: AtomicBool::new(false),
            notify,
        });
        let handles = (0..workers.max(1))
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("genlab-serve-job-{i}"))
                    .spawn(move || worker(&s))
                    .expect("spawning a job worker thread")
            })
            .collect();
        Self {
            shared,
            workers: Mutex::new(handles),
            worker_count: workers.max(1),
        }
    }

    /// Queues a job, or refuses it when the queue is full or the server is stopping.
    pub fn submit(
        &self,
        kind: JobKind,
        title: String,
        run: Option<String>,
        attached: bool,
        work: Work,
    ) -> Result<Arc<Job>> {
        let s = &self.shared;
        if s.shutting_down.load(Ordering::SeqCst) {
            return Err(ServeError::Conflict(
                "the server is shutting down; no new jobs".into(),
            ));
        }
        let mut queue = s.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= s.capacity {
            return Err(ServeError::QueueFull {
                queued: queue.len(),
                running: self.running(),
            });
        }
        let (version, _) = watch::channel(0);
        let job = Arc::new(Job {
            id: s.next_id.fetch_add(1, Ordering::SeqCst),
            kind,
            title,
            run,
            attached,
            created: now(),
            stop: Arc::new(AtomicBool::new(false)),
            inner: Mutex::new(Inner {
                state: Some(JobState::Queued),
                ..Default::default()
            }),
            version,
            work: Mutex::new(Some(work)),
            files: Mutex::new(Vec::new()),
        });
        {
            let mut jobs = s.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.push(job.clone());
            trim_history(&mut jobs);
        }
        queue.push_back(job.clone());
        drop(queue);
        s.ready.notify_one();
        Ok(job)
    }

    /// The job with this id, while it is kept.
    pub fn get(&self, id: JobId) -> Option<Arc<Job>> {
        let jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter().find(|j| j.id == id).cloned()
    }

    /// Every kept job, newest first.
    pub fn list(&self) -> Vec<JobView> {
        let queue: Vec<JobId> = {
            let q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.iter().map(|j| j.id).collect()
        };
        let jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter()
            .rev()
            .map(|j| j.view(queue.iter().position(|&q| q == j.id)))
            .collect()
    }

    /// One job's snapshot.
    pub fn view(&self, id: JobId) -> Option<JobView> {
        let job = self.get(id)?;
        let pos = {
            let q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.iter().position(|j| j.id == id)
        };
        Some(job.view(pos))
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        let jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter()
            .filter(|j| j.state() == JobState::Running)
            .count()
    }

    pub fn workers(&self) -> usize {
        self.worker_count
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Asks a job to stop: a queued job is dropped at once; a running one stops at its next
    /// check (a training job saves its checkpoint first). Returns the job's state after.
    pub fn stop(&self, id: JobId) -> Result<JobState> {
        let job = self
            .get(id)
            .ok_or_else(|| ServeError::NotFound(format!("no job {id}")))?;
        job.stop.store(true, Ordering::SeqCst);
        let removed = {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            let before = q.len();
            q.retain(|j| j.id != id);
            q.len() != before
        };
        if removed {
            job.finish(JobState::Cancelled, None, None);
            (self.shared.notify)(&format!(
                "job {id} cancelled before it started: {}",
                job.title
            ));
        }
        job.bump();
        Ok(job.state())
    }

    /// Stops every job (training jobs save their checkpoints), refuses new ones, and waits
    /// for the workers to finish.
    pub fn shutdown(&self) {
        let s = &self.shared;
        s.shutting_down.store(true, Ordering::SeqCst);
        let ids: Vec<JobId> = {
            let jobs = s.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.iter()
                .filter(|j| !j.state().is_over())
                .map(|j| j.id)
                .collect()
        };
        for id in ids {
            let _ = self.stop(id);
        }
        s.ready.notify_all();
        let handles: Vec<JoinHandle<()>> = {
            let mut w = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            w.drain(..).collect()
        };
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Drops the oldest finished jobs beyond [`HISTORY`] (jobs still queued or running stay)
/// and their files, and the events of finished jobs beyond the newest [`KEEP_EVENTS`].
fn trim_history(jobs: &mut Vec<Arc<Job>>) {
    let finished: Vec<&Arc<Job>> = jobs.iter().filter(|j| j.state().is_over()).collect();
    let n = finished.len();
    for (i, j) in finished.iter().enumerate() {
        let age = n - 1 - i; // 0: the newest
        if age >= KEEP_EVENTS {
            j.lock().events = Vec::new();
        }
        if age >= HISTORY {
            for f in j.files.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                let _ = std::fs::remove_file(f);
            }
        }
    }
    let mut over = n;
    jobs.retain(|j| {
        if over > HISTORY && j.state().is_over() {
            over -= 1;
            false
        } else {
            true
        }
    });
}

fn worker(s: &Shared) {
    loop {
        let job = {
            let mut q = s.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = q.pop_front() {
                    break j;
                }
                if s.shutting_down.load(Ordering::SeqCst) {
                    return;
                }
                q = s.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let work = job.work.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(work) = work else { continue };
        if job.stop_requested() {
            job.finish(JobState::Cancelled, None, None);
            continue;
        }
        {
            let mut inner = job.lock();
            inner.state = Some(JobState::Running);
            inner.started = Some(now());
        }
        job.bump();
        (s.notify)(&format!("job {} started: {}", job.id, job.title));
        let ctx = JobCtx { job: job.clone() };
        // A bug in one job's work must not take the worker (and the queue) down with it.
        let outcome = catch_unwind(AssertUnwindSafe(|| work(&ctx)));
        let (state, result, error) = match outcome {
            Ok(Ok(JobEnd::Done(v))) => (JobState::Done, Some(v), None),
            Ok(Ok(JobEnd::Stopped(v))) => (JobState::Stopped, Some(v), None),
            Ok(Ok(JobEnd::Cancelled)) => (JobState::Cancelled, None, None),
            Ok(Err(e)) => (JobState::Failed, None, Some(e.to_string())),
            Err(p) => {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown".into());
                (
                    JobState::Failed,
                    None,
                    Some(format!("internal error (a bug in genlab): {what}")),
                )
            }
        };
        let line = match (&state, &error) {
            (JobState::Failed, Some(e)) => format!("job {} failed: {}: {e}", job.id, job.title),
            _ => format!(
                "job {} {}: {}",
                job.id,
                serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                job.title
            ),
        };
        job.finish(state, result, error);
        (s.notify)(&line);
        let mut jobs = s.jobs.lock().unwrap_or_else(|e| e.into_inner());
        trim_history(&mut jobs);
    }
}

/// Stops an attached job when dropped (its streamed response went away).
pub struct StopOnDrop {
    pub jobs: Arc<Jobs>,
    pub id: JobId,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(job) = self.jobs.get(self.id) {
            if !job.state().is_over() {
                let _ = self.jobs.stop(self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn quiet() -> Notify {
        Arc::new(|_| {})
    }

    fn wait_for(job: &Job, want: JobState) {
        let t0 = Instant::now();
        while job.state() != want {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "job {} is {:?}, expected {want:?}",
                job.id,
                job.state()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_full_queue_refuses_and_stops_drop_queued_jobs() {
        let jobs = Jobs::new(1, 2, quiet());
        let gate = Arc::new(AtomicBool::new(false));
        let g = gate.clone();
        let first = jobs
            .submit(
                JobKind::Sample,
                "blocker".into(),
                None,
                false,
                Box::new(move |ctx| {
                    while !g.load(Ordering::SeqCst) && !ctx.stop_requested() {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(JobEnd::Done(Value::Null))
                }),
            )
            .unwrap();
        wait_for(&first, JobState::Running);
        let noop = || -> Work { Box::new(|_| Ok(JobEnd::Done(Value::from(1)))) };
        let a = jobs
            .submit(JobKind::Sample, "a".into(), None, false, noop())
            .unwrap();
        let b = jobs
            .submit(JobKind::Sample, "b".into(), None, false, noop())
            .unwrap();
        let e = jobs
            .submit(JobKind::Sample, "c".into(), None, false, noop())
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                ServeError::QueueFull {
                    queued: 2,
                    running: 1
                }
            ),
            "{e}"
        );
        assert_eq!(e.status(), 503);
        assert_eq!(jobs.view(b.id).unwrap().queue_position, Some(1));
        assert_eq!(jobs.stop(a.id).unwrap(), JobState::Cancelled);
        gate.store(true, Ordering::SeqCst);
        wait_for(&b, JobState::Done);
        assert_eq!(b.result(), Some(Value::from(1)));
        assert_eq!(first.state(), JobState::Done);
        assert_eq!(a.state(), JobState::Cancelled);
    }

    #[test]
    fn old_jobs_are_forgotten_with_their_files_and_pictures() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::new(1, 64, quiet());
        let all: Vec<Arc<Job>> = (0..HISTORY + 8)
            .map(|i| {
                let f = dir.path().join(format!("{i}.png"));
                jobs.submit(
                    JobKind::Sample,
                    format!("{i}"),
                    None,
                    false,
                    Box::new(move |ctx| {
                        std::fs::write(&f, "png").unwrap();
                        ctx.keep_file(f);
                        ctx.event("image", Value::from(1));
                        Ok(JobEnd::Done(Value::Null))
                    }),
                )
                .unwrap()
            })
            .collect();
        wait_for(all.last().unwrap(), JobState::Done);
        // One more submission trims what the last job's end left over.
        let last = jobs
            .submit(
                JobKind::Sample,
                "x".into(),
                None,
                false,
                Box::new(|_| Ok(JobEnd::Done(Value::Null))),
            )
            .unwrap();
        wait_for(&last, JobState::Done);
        assert!(jobs.list().len() <= HISTORY + 1, "{}", jobs.list().len());
        assert!(jobs.get(all[0].id).is_none());
        assert!(!dir.path().join("0.png").exists());
        let newest = all.last().unwrap();
        assert!(dir.path().join(format!("{}.png", HISTORY + 7)).exists());
        assert_eq!(newest.events_since(0).len(), 1);
        assert!(all[HISTORY].events_since(0).is_empty());
    }

    #[test]
    fn a_panicking_job_fails_and_the_worker_goes_on() {
        let jobs = Jobs::new(1, 4, quiet());
        let bad = jobs
            .submit(
                JobKind::Eval,
                "bad".into(),
                None,
                false,
                Box::new(|_| panic!("boom")),
            )
            .unwrap();
        let good = jobs
            .submit(
                JobKind::Eval,
                "good".into(),
                None,
                false,
                Box::new(|ctx| {
                    ctx.progress(1, 2, "examples");
                    ctx.event("note", Value::from("hi"));
                    Ok(JobEnd::Done(Value::Null))
                }),
            )
            .unwrap();
        wait_for(&good, JobState::Done);
        assert_eq!(bad.state(), JobState::Failed);
        assert!(jobs.view(bad.id).unwrap().error.unwrap().contains("boom"));
        assert_eq!(good.events_since(0).len(), 1);
        assert_eq!(good.progress().total, 2);
    }

    #[test]
    fn dropping_the_stream_guard_stops_an_attached_job() {
        let jobs = Arc::new(Jobs::new(1, 4, quiet()));
        let job = jobs
            .submit(
                JobKind::Sample,
                "long".into(),
                None,
                true,
                Box::new(|ctx| {
                    while !ctx.stop_requested() {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(JobEnd::Cancelled)
                }),
            )
            .unwrap();
        wait_for(&job, JobState::Running);
        drop(StopOnDrop {
            jobs: jobs.clone(),
            id: job.id,
        });
        wait_for(&job, JobState::Cancelled);
        assert_eq!(jobs.running(), 0);
    }
}
