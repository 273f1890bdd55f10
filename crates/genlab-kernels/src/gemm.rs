//! Matrix views and the one GEMM call every kernel here goes through.
//!
//! No paper: a strided matrix view (`data[r·rs + c·cs]` is element `(r, c)`, so a transpose
//! is a view) and `dst (+)= β·lhs·rhs` through the `gemm` crate, the GEMM candle itself
//! uses, with its AVX-512 micro-kernels enabled (Cargo.toml).

use gemm::Parallelism;

/// A read-only matrix view: `data[r * rs + c * cs]` is element `(r, c)`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major contiguous `[rows, cols]` matrix.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of the row-major `[cols, rows]` matrix `data`, as a `[rows, cols]` view.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::dense(data, cols, rows).t()
    }

    /// The transpose (a view, nothing moves).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Rows `r0 .. r0 + n`.
    pub fn row_block(self, r0: usize, n: usize) -> Self {
        Self {
            data: self.data.get(r0 * self.rs..).unwrap_or(&[]),
            rows: n,
            ..self
        }
    }

    /// Panics unless every element `(r, c)` lies inside `data`.
    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `dst [m, n]` (row-major, contiguous) `= beta · lhs @ rhs`, or `+=` when `accumulate`.
pub(crate) fn gemm_into(
    dst: &mut [f32],
    lhs: Mat,
    rhs: Mat,
    beta: f32,
    accumulate: bool,
    par: Parallelism,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "gemm: inner dimensions differ");
    assert_eq!(dst.len(), m * n, "gemm: destination has the wrong size");
    lhs.check();
    rhs.check();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    // SAFETY: both operand views were bounds-checked above for the strides passed, `dst`
    // ([m, n], row stride n, column stride 1) has exactly m*n elements and is exclusively
    // borrowed, so it aliases neither operand. gemm computes
    // dst := alpha*dst + beta*lhs@rhs, reading dst only when `read_dst` is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            par,
        );
    }
}

/// The GEMM parallelism for `threads` threads (none for one).
pub(crate) fn parallelism(threads: usize) -> Parallelism {
    match threads {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}
