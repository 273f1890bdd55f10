//! The two-digit canvas scorer on real MNIST test canvases read by a trained classifier:
//! the requested digits are the canvases' own, so the scores are the classifier's ceiling
//! for the text-to-image target. Runs when MNIST is in the cache and
//! `GENLAB_CLASSIFIER_RUN` names a trained `classifier` run (e.g. `runs/clf-mnist`);
//! skips otherwise.

use candle_core::Device;
use genlab_data::pairs::label_digits;
use genlab_data::{make_batch, open_dataset, OpenOptions};
use genlab_train::pairs_eval::pair_accuracy_run;

/// Canvases scored: the whole of `mnist-pairs:test`.
const N: usize = 10_000;
/// A 99%-accurate digit classifier reads both halves right about 98% of the time.
const MIN_BOTH: f64 = 0.95;

#[test]
fn real_test_canvases_are_read_as_their_labels() {
    let Some(run) = std::env::var_os("GENLAB_CLASSIFIER_RUN") else {
        eprintln!("skipped: set GENLAB_CLASSIFIER_RUN to a trained classifier run");
        return;
    };
    let ds = match open_dataset("mnist-pairs:test", &OpenOptions::default()) {
        Ok(ds) => ds,
        Err(e) => {
            eprintln!("skipped: {e} (genlab data fetch mnist)");
            return;
        }
    };
    let idx: Vec<usize> = (0..N).collect();
    let batch = make_batch(ds.as_ref(), &idx, &Device::Cpu).unwrap();
    let labels: Vec<u32> = batch.labels.unwrap().to_vec1().unwrap();
    let req: Vec<(u8, u8)> = labels.iter().map(|&l| label_digits(l).unwrap()).collect();
    let acc = pair_accuracy_run(std::path::Path::new(&run), &batch.x, &req).unwrap();
    eprintln!(
        "real canvases: left {:.4}, right {:.4}, both {:.4} (n {})",
        acc.left, acc.right, acc.both, acc.n
    );
    eprintln!("both right per requested pair (%):\n{}", acc.table());
    assert!(acc.both >= MIN_BOTH, "{acc:?}");
}
