//! Thread count and the small data-parallel helpers shared by every kernel of this crate.
//!
//! No paper: static data parallelism (fork-join over contiguous chunks) on rayon's pool.
//!
//! Thread count: [`num_threads`] is the number the user set. Inside a rayon pool
//! (`ThreadPool::install`) it is that pool's size; otherwise candle's setting,
//! `candle_core::utils::get_num_threads()` (`RAYON_NUM_THREADS`, else the physical cores),
//! which is what `genlab --threads N` sets before any work and what rayon's global pool and
//! candle's matmul read too. It is read once, on first use, like rayon's global pool.
//!
//! With one thread every helper runs its work on the calling thread and never touches
//! rayon, so no thread is ever spawned (asking rayon for its thread count would already
//! start its global pool). With more, the work is cut into one contiguous part per thread,
//! so partial results come back in a fixed order and reductions over them are
//! deterministic for a given thread count.

use std::sync::OnceLock;

use rayon::prelude::*;

/// Below this many elements an elementwise kernel runs on the calling thread (handing work
/// to another thread costs a few µs, about what 32k simple element updates take).
pub(crate) const ELEMENTWISE_MIN_PAR: usize = 1 << 15;

/// The number of threads the kernels may use (at least 1): the current rayon pool's size
/// inside one, else candle's setting (`RAYON_NUM_THREADS`, else the physical cores). With
/// more than one outside a pool, also capped by rayon's global pool, which runs the work.
pub fn num_threads() -> usize {
    if rayon::current_thread_index().is_some() {
        return rayon::current_num_threads().max(1);
    }
    static CONFIGURED: OnceLock<usize> = OnceLock::new();
    let n = *CONFIGURED.get_or_init(|| candle_core::utils::get_num_threads().max(1));
    if n == 1 {
        // Not asking rayon: that would start its global pool.
        1
    } else {
        n.min(rayon::current_num_threads()).max(1)
    }
}

/// The number of parts to split `len` elements of cheap elementwise work into.
pub(crate) fn elementwise_parts(len: usize) -> usize {
    if len < ELEMENTWISE_MIN_PAR {
        1
    } else {
        num_threads()
    }
}

/// Splits `data` into chunks of `chunk` elements (the last may be shorter), groups them into
/// at most `parts` contiguous runs, and calls `f(chunk_index, chunk, &mut acc)` on every
/// chunk, each run on its own rayon task with its own accumulator `init()`. Returns the
/// accumulators in chunk order. With `parts <= 1` (or a single chunk) everything runs on
/// the calling thread, without rayon.
pub(crate) fn par_chunks_mut<T, R, I, F>(
    data: &mut [T],
    chunk: usize,
    parts: usize,
    init: I,
    f: F,
) -> Vec<R>
where
    T: Send,
    R: Send,
    I: Fn() -> R + Sync,
    F: Fn(usize, &mut [T], &mut R) + Sync,
{
    assert!(chunk > 0, "par_chunks_mut: chunk must be positive");
    let n_chunks = data.len().div_ceil(chunk);
    let parts = parts.min(n_chunks).max(1);
    let per_part = n_chunks.div_ceil(parts).max(1);
    let run = |first: usize, part: &mut [T]| -> R {
        let mut acc = init();
        for (i, c) in part.chunks_mut(chunk).enumerate() {
            f(first + i, c, &mut acc);
        }
        acc
    };
    if parts == 1 {
        return vec![run(0, data)];
    }
    data.par_chunks_mut(per_part * chunk)
        .enumerate()
        .map(|(t, part)| run(t * per_part, part))
        .collect()
}

/// Calls `f(i, &mut acc)` for every `i` in `0..n`, the indices cut into at most `parts`
/// contiguous ranges, each on its own rayon task with its own accumulator `init()`. Returns
/// the accumulators in index order. With `parts <= 1` it runs on the calling thread.
pub(crate) fn par_ranges<R, I, F>(n: usize, parts: usize, init: I, f: F) -> Vec<R>
where
    R: Send,
    I: Fn() -> R + Sync,
    F: Fn(usize, &mut R) + Sync,
{
    let parts = parts.min(n).max(1);
    let per_part = n.div_ceil(parts).max(1);
    let run = |range: std::ops::Range<usize>| -> R {
        let mut acc = init();
        for i in range {
            f(i, &mut acc);
        }
        acc
    };
    if parts == 1 {
        return vec![run(0..n)];
    }
    (0..n.div_ceil(per_part))
        .into_par_iter()
        .map(|t| run(t * per_part..((t + 1) * per_part).min(n)))
        .collect()
}

/// Elements per parallel task of [`par_map`].
const MAP_CHUNK: usize = 1 << 14;

/// Calls `f(offset, chunk)` on chunks of [`MAP_CHUNK`] elements of `out` over rayon's
/// threads, or once on all of `out` on the calling thread below [`ELEMENTWISE_MIN_PAR`]
/// elements or with one rayon thread (the elementwise activations' split).
pub(crate) fn par_map(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    if out.len() < ELEMENTWISE_MIN_PAR || rayon::current_num_threads() == 1 {
        f(0, out);
    } else {
        out.par_chunks_mut(MAP_CHUNK)
            .enumerate()
            .for_each(|(i, c)| f(i * MAP_CHUNK, c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_visited_once_with_its_index() {
        for parts in [1, 2, 3, 7] {
            let mut v = vec![0usize; 100_003];
            let accs = par_chunks_mut(
                &mut v,
                1000,
                parts,
                || 0usize,
                |i, c, acc| {
                    for x in c.iter_mut() {
                        *x = i;
                    }
                    *acc += c.len();
                },
            );
            assert!(accs.len() <= parts.max(1));
            assert_eq!(accs.iter().sum::<usize>(), 100_003);
            for (j, x) in v.iter().enumerate() {
                assert_eq!(*x, j / 1000);
            }
        }
        // One part runs inline: one accumulator.
        let mut w = vec![0u8; 10];
        assert_eq!(par_chunks_mut(&mut w, 3, 1, || (), |_, _, _| ()).len(), 1);
    }

    #[test]
    fn ranges_cover_every_index_in_order() {
        for (n, parts) in [(0, 3), (1, 4), (10, 3), (64, 2), (5, 1)] {
            let accs = par_ranges(n, parts, Vec::new, |i, acc: &mut Vec<usize>| acc.push(i));
            let all: Vec<usize> = accs.into_iter().flatten().collect();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "n {n}, parts {parts}");
        }
    }

    #[test]
    fn thread_count_is_positive() {
        assert!(num_threads() >= 1);
    }
}
