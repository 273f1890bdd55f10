//! Reading a run's `log.jsonl` (one JSON object per logged step, as the trainer writes it):
//! all of it, its tail, or incrementally while a run is writing it ([`LogFollower`], which
//! feeds the live curves).
//!
//! A line that is not a JSON object with a numeric `step` is counted as unreadable and
//! skipped, so a corrupt log shows what it can and says how much it could not. Only complete
//! lines are read: a line the trainer is half-way through writing waits for the next poll.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One logged step: its number and every finite number logged with it (`loss`, `lr`,
/// `steps_per_sec`, a GAN's `d_loss` and `g_loss`, ...).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogRecord {
    pub step: u64,
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

impl LogRecord {
    /// The run's main loss: `loss`, else the first `*_loss` in name order.
    pub fn main_loss(&self) -> Option<(&str, f64)> {
        self.values
            .get_key_value("loss")
            .or_else(|| self.values.iter().find(|(k, _)| k.ends_with("_loss")))
            .map(|(k, v)| (k.as_str(), *v))
    }
}

/// Parses one line; `None` unless it is a JSON object with a non-negative integer `step`.
pub fn parse_line(line: &str) -> Option<LogRecord> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let obj = v.as_object()?;
    let step = obj.get("step")?.as_u64()?;
    let values = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "step")
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64().filter(|x| x.is_finite())?)))
        .collect();
    Some(LogRecord { step, values })
}

/// Records parsed from some lines, and how many lines could not be read.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LogChunk {
    pub records: Vec<LogRecord>,
    pub bad_lines: usize,
    /// The file was replaced or shortened (a resumed run rewrites its log): what was read
    /// before no longer holds, and `records` start again from the beginning.
    pub reset: bool,
}

fn parse_lines(text: &str) -> LogChunk {
    let mut chunk = LogChunk::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_line(line) {
            Some(r) => chunk.records.push(r),
            None => chunk.bad_lines += 1,
        }
    }
    chunk
}

/// Every record of a log file (a missing file has none).
pub fn read_all(path: &Path) -> std::io::Result<LogChunk> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(parse_lines(&s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LogChunk::default()),
        Err(e) => Err(e),
    }
}

/// The records in the last `max_bytes` of a log file (the first, partial line skipped):
/// enough for a summary without reading a long log whole.
pub fn read_tail(path: &Path, max_bytes: u64) -> std::io::Result<LogChunk> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LogChunk::default()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    f.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    f.take(max_bytes).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        // Drop the line the window starts inside of.
        text = text.split_once('\n').map(|x| x.1).unwrap_or("").to_string();
    }
    Ok(parse_lines(&text))
}

/// Most bytes one [`LogFollower::poll`] reads (a long log arrives over several polls).
const MAX_READ: u64 = 4 << 20;

/// Follows a log file as a run appends to it.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    offset: u64,
    identity: Option<(u64, u64)>,
}

impl LogFollower {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
            identity: None,
        }
    }

    /// The complete lines added since the last poll. A file replaced or shortened since
    /// then is read again from its start, with `reset` set.
    pub fn poll(&mut self) -> std::io::Result<LogChunk> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let reset = self.offset > 0;
                self.offset = 0;
                self.identity = None;
                return Ok(LogChunk {
                    reset,
                    ..Default::default()
                });
            }
            Err(e) => return Err(e),
        };
        let identity = file_identity(&meta);
        let mut reset = false;
        if (self.identity.is_some() && identity != self.identity) || meta.len() < self.offset {
            reset = self.offset > 0 || self.identity.is_some();
            self.offset = 0;
        }
        self.identity = identity;
        if meta.len() == self.offset {
            return Ok(LogChunk {
                reset,
                ..Default::default()
            });
        }
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        f.take(MAX_READ).read_to_end(&mut bytes)?;
        // Complete lines only; the rest is read once its newline arrives.
        let end = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => 0,
        };
        self.offset += end as u64;
        let mut chunk = parse_lines(&String::from_utf8_lossy(&bytes[..end]));
        chunk.reset = reset;
        Ok(chunk)
    }
}

/// Device and inode on Unix: a log rewritten by an atomic rename is a new file.
#[cfg(unix)]
fn file_identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_identity(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_parse_and_bad_ones_are_counted() {
        let c = parse_lines(
            "{\"step\":5,\"loss\":0.5,\"lr\":0.001,\"x\":null}\nnot json\n[1]\n{\"loss\":1}\n{\"step\":6,\"d_loss\":1.5,\"g_loss\":2}\n",
        );
        assert_eq!(c.bad_lines, 3);
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.records[0].step, 5);
        assert_eq!(c.records[0].values.len(), 2); // null dropped
        assert_eq!(c.records[0].main_loss(), Some(("loss", 0.5)));
        assert_eq!(c.records[1].main_loss(), Some(("d_loss", 1.5)));
        let j = serde_json::to_value(&c.records[0]).unwrap();
        assert_eq!(j, serde_json::json!({"step": 5, "loss": 0.5, "lr": 0.001}));
    }

    #[test]
    fn the_follower_reads_complete_lines_and_restarts_on_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        let mut f = LogFollower::new(&p);
        assert_eq!(f.poll().unwrap(), LogChunk::default());
        let mut w = std::fs::File::create(&p).unwrap();
        write!(w, "{{\"step\":1,\"loss\":1}}\n{{\"step\":2,").unwrap();
        w.flush().unwrap();
        let c = f.poll().unwrap();
        assert_eq!(c.records.len(), 1);
        assert!(!c.reset);
        writeln!(w, "\"loss\":0.5}}").unwrap();
        w.flush().unwrap();
        let c = f.poll().unwrap();
        assert_eq!(c.records.iter().map(|r| r.step).collect::<Vec<_>>(), [2]);
        assert_eq!(f.poll().unwrap().records.len(), 0);
        // A resumed run rewrites the log (a new file by rename): read from the start again.
        let tmp = dir.path().join("log.tmp");
        std::fs::write(&tmp, "{\"step\":1,\"loss\":1}\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        let c = f.poll().unwrap();
        assert!(c.reset);
        assert_eq!(c.records.len(), 1);
    }

    #[test]
    fn the_tail_skips_the_partial_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        let text: String = (1..=100)
            .map(|s| format!("{{\"step\":{s},\"loss\":{s}}}\n"))
            .collect();
        std::fs::write(&p, &text).unwrap();
        let c = read_tail(&p, 100).unwrap();
        assert_eq!(c.bad_lines, 0);
        assert_eq!(c.records.last().unwrap().step, 100);
        assert!(c.records.len() < 10);
        assert_eq!(read_all(&p).unwrap().records.len(), 100);
        assert_eq!(
            read_tail(&dir.path().join("no"), 10).unwrap(),
            LogChunk::default()
        );
    }
}
