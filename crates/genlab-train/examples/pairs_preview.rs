//! A picture of the two-digit canvas (`mnist-pairs`) with one caption per canvas: the
//! first `N` canvases of a split in a grid, and the captions printed in the same order
//! (row by row), canvas `i` worded with training template `i mod 8` and numerals / words
//! alternating.
//!
//! `cargo build --release --workspace --all-targets`, then
//! `target/release/examples/pairs_preview [SPEC] [OUT.png] [N]`
//! (defaults `mnist-pairs:test`, `mnist-pairs.png`, 16; MNIST from `genlab data fetch mnist`).

use std::path::Path;

use candle_core::Device;
use genlab_data::pairs::{label_digits, pair_caption, PAIR_TEMPLATES};
use genlab_data::{make_batch, open_dataset, OpenOptions};

fn main() -> genlab_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let spec = args.next().unwrap_or_else(|| "mnist-pairs:test".into());
    let out = args.next().unwrap_or_else(|| "mnist-pairs.png".into());
    let n: usize = match args.next() {
        Some(s) => s
            .parse()
            .map_err(|_| genlab_core::Error::InvalidInput(format!("N must be a count, got {s}")))?,
        None => 16,
    };
    let ds = open_dataset(&spec, &OpenOptions::default())?;
    let idx: Vec<usize> = (0..n.min(ds.len())).collect();
    let batch = make_batch(ds.as_ref(), &idx, &Device::Cpu)?;
    genlab_train::outputs::save_samples(&batch.x, true, Path::new(&out), None)?;
    let labels: Vec<u32> = batch
        .labels
        .ok_or_else(|| genlab_core::Error::Data(format!("{spec} has no labels")))?
        .to_vec1()?;
    for (i, &l) in labels.iter().enumerate() {
        let (left, right) = label_digits(l)?;
        let t = PAIR_TEMPLATES[i % PAIR_TEMPLATES.len()];
        let words = (i % 2 == 1, i % 4 >= 2);
        println!("{i:2}: {}", pair_caption(left, right, t, words)?);
    }
    println!("wrote {out} ({} canvases of {spec})", idx.len());
    Ok(())
}
