//! Small CPU helpers shared by the fused kernels of [`crate::conv`] and [`crate::norm`].
//!
//! No paper: plain data-parallel loops over contiguous chunks on `std::thread::scope`
//! threads (no extra dependency), and access to the `f32` slice of a contiguous tensor.

use candle_core::{CpuStorage, Layout};

/// Number of worker threads: the machine's available parallelism.
pub(crate) fn num_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Splits `data` into chunks of `chunk` elements (the last may be shorter) and calls
/// `f(chunk_index, chunk, &mut acc)` on every chunk, the chunks spread over up to
/// [`num_threads`] threads, each with its own accumulator `init()`. Returns the accumulators
/// (one per thread that ran, in chunk order, so a reduction over them is deterministic for
/// a given machine).
pub(crate) fn par_chunks_mut<T, R, I, F>(data: &mut [T], chunk: usize, init: I, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    I: Fn() -> R + Sync,
    F: Fn(usize, &mut [T], &mut R) + Sync,
{
    assert!(chunk > 0, "par_chunks_mut: chunk must be positive");
    let n_chunks = data.len().div_ceil(chunk);
    let threads = num_threads().min(n_chunks).max(1);
    let per_thread = n_chunks.div_ceil(threads).max(1);
    let run = |first: usize, part: &mut [T]| -> R {
        let mut acc = init();
        for (i, c) in part.chunks_mut(chunk).enumerate() {
            f(first + i, c, &mut acc);
        }
        acc
    };
    if threads <= 1 {
        return vec![run(0, data)];
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = data
            .chunks_mut(per_thread * chunk)
            .enumerate()
            .map(|(t, part)| {
                let run = &run;
                s.spawn(move || run(t * per_thread, part))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("kernel thread panicked"))
            .collect()
    })
}

/// The `f32` elements of a contiguous tensor's storage.
pub(crate) fn contiguous_f32<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_visited_once_with_its_index() {
        let mut v = vec![0usize; 103];
        let accs = par_chunks_mut(
            &mut v,
            10,
            || 0usize,
            |i, c, acc| {
                for x in c.iter_mut() {
                    *x = i;
                }
                *acc += c.len();
            },
        );
        assert_eq!(accs.iter().sum::<usize>(), 103);
        for (j, x) in v.iter().enumerate() {
            assert_eq!(*x, j / 10);
        }
    }
}
