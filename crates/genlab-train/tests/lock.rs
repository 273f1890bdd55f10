//! The run-directory lock across processes: a live holder in another process blocks it, a
//! holder killed with SIGKILL (no destructor runs) does not.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use genlab_core::Error;
use genlab_train::lock::LOCK_FILE;
use genlab_train::RunLock;

/// Set in the child: the directory the helper locks.
const HELPER_DIR_ENV: &str = "GENLAB_TEST_LOCK_HOLDER_DIR";
/// Printed by the helper once it holds the lock.
const LOCKED_LINE: &str = "genlab-test-lock-held";

/// Not a test: the child process of `a_killed_holder_releases_the_lock`, which runs this test
/// binary again with only this function and the directory in `HELPER_DIR_ENV`. It locks the
/// directory, says so on stdout and sleeps until killed.
#[test]
#[ignore = "helper process of a_killed_holder_releases_the_lock"]
fn lock_holder_helper() {
    let Some(dir) = std::env::var_os(HELPER_DIR_ENV) else {
        return;
    };
    let _lock = RunLock::acquire(Path::new(&dir)).unwrap();
    println!("{LOCKED_LINE}");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// The helper process, killed when dropped so that a failing assertion leaves no sleeper.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the helper on `dir` and waits until it holds the lock.
fn spawn_holder(dir: &Path) -> Holder {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "lock_holder_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut holder = Holder(child);
    // libtest prints "test lock_holder_helper ... " before the line on the same line. Read on
    // another thread so that a helper that hangs fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let held = out
            .lines()
            .any(|l| l.is_ok_and(|l| l.contains(LOCKED_LINE)));
        let _ = tx.send(held);
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(true) => holder,
        Ok(false) => {
            let status = holder.0.wait().unwrap();
            panic!("the lock helper ended ({status}) without taking the lock");
        }
        Err(_) => panic!("the lock helper did not take the lock within 120 s"),
    }
}

#[test]
fn a_killed_holder_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = spawn_holder(dir.path());
    let child = &mut holder.0;

    let err = RunLock::acquire(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::RunDirInUse { pid: Some(p), started: Some(_), .. } if *p == child.id()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("in use by process {} (started ", child.id()))
            && msg.contains("wait for it or choose another directory"),
        "{msg}"
    );

    // SIGKILL on Unix: the holder runs no destructor, its lock file keeps its record.
    child.kill().unwrap();
    child.wait().unwrap();
    let stale = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
    assert!(stale.contains(&child.id().to_string()), "{stale}");

    let lock = RunLock::acquire(dir.path()).expect("a killed holder's lock is free");
    let now = std::fs::read_to_string(lock.path()).unwrap();
    assert!(
        now.contains(&format!("\"pid\":{}", std::process::id())),
        "{now}"
    );
}
