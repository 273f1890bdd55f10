//! Small CPU helpers shared by the fused kernels of [`crate::conv`] and [`crate::norm`].
//!
//! No paper: plain data-parallel loops over contiguous chunks on `std::thread::scope`
//! threads (no extra dependency), and access to the `f32` slice of a contiguous tensor.

use candle_core::{CpuStorage, Layout};

use std::sync::OnceLock;

/// Below this many elements a kernel runs on the calling thread (a spawn costs ~20 µs,
/// about what 32k simple element updates take).
const PAR_MIN_ELEMS: usize = 1 << 15;

/// Number of worker threads: the machine's available parallelism, read once (the query
/// reads cgroup files).
pub(crate) fn num_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// Splits `data` into chunks of `chunk` elements (the last may be shorter) and calls
/// `f(chunk_index, chunk, &mut acc)` on every chunk, the chunks spread over up to
/// [`num_threads`] threads (one for small data), each with its own accumulator `init()`. Returns the accumulators
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
    let threads = if data.len() < PAR_MIN_ELEMS {
        1
    } else {
        num_threads().min(n_chunks).max(1)
    };
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
        let mut parts = data.chunks_mut(per_thread * chunk).enumerate();
        // The calling thread takes the first part itself: one spawn fewer per call.
        let (_, first) = parts.next().expect("at least one part");
        let handles: Vec<_> = parts
            .map(|(t, part)| {
                let run = &run;
                s.spawn(move || run(t * per_thread, part))
            })
            .collect();
        let mut accs = vec![run(0, first)];
        accs.extend(
            handles
                .into_iter()
                .map(|h| h.join().expect("kernel thread panicked")),
        );
        accs
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
        let mut v = vec![0usize; 100_003];
        let accs = par_chunks_mut(
            &mut v,
            1000,
            || 0usize,
            |i, c, acc| {
                for x in c.iter_mut() {
                    *x = i;
                }
                *acc += c.len();
            },
        );
        assert_eq!(accs.iter().sum::<usize>(), 100_003);
        for (j, x) in v.iter().enumerate() {
            assert_eq!(*x, j / 1000);
        }
        // Small data runs inline: one accumulator.
        let mut w = vec![0u8; 10];
        assert_eq!(par_chunks_mut(&mut w, 3, || (), |_, _, _| ()).len(), 1);
    }
}
