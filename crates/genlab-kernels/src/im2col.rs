//! Per-image im2col and its adjoint col2im: the lowering that turns a 2-D convolution into
//! one matrix product.
//!
//! Algorithm: Chellapilla, Puri & Simard 2006, "High Performance Convolutional Neural
//! Networks for Document Processing" (inria-00112631), in the transposed layout of Caffe
//! (Jia et al. 2014, arXiv:1408.5093) so that the GEMM output is already NCHW.
//!
//! Layout conventions (NCHW, square kernel `k`, stride `s`, zero padding `p`, dilation 1):
//!
//! - image `x_b`: `[C, H, W]`, contiguous f32 (one image of a `[B, C, H, W]` batch);
//! - columns `cols`: `[C*k*k, Ho*Wo]` row-major, row `(c*k + ky)*k + kx`, column
//!   `oy*Wo + ox`, holding `x_b[c, oy*s + ky - p, ox*s + kx - p]` (0 in the padding). The
//!   row order matches `w.reshape((O, C*k*k))` for a weight `w [O, C, k, k]`;
//! - `Ho = (H + 2p - k)/s + 1`, `Wo = (W + 2p - k)/s + 1`.
//!
//! Each row of `cols` is the image plane `c` shifted by the tap's offset. For stride `s > 1`
//! the image is first split into its `s x s` polyphase components (plane
//! `(py, px)[qy, qx] = x[s*qy + py, s*qx + px]`, `ceil(H/s) x ceil(W/s)`, zero beyond the
//! image), so that every tap reads one component at unit stride. When a component row is
//! exactly `Wo` wide (stride 1 "same" convolutions, `k3 s2 p1` downsampling, ...) a whole
//! tap is one contiguous copy whose wrapped-around edge columns are then zeroed; otherwise
//! it is copied row by row. `col2im` is the exact adjoint (scatter-add, in the same order),
//! accumulating into the components and adding them back into the image.

use candle_core::{bail, Result};

/// The geometry of one convolution's input side: `[B, C, H, W]`, kernel `k`, stride,
/// padding, and the output size `Ho x Wo` it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geom {
    /// A 1x1 kernel, stride 1, no padding: im2col is the identity (`x_b [C, H*W]` is the
    /// column matrix and col2im of `[C, H*W]` is `dx_b` itself), so the kernels skip the copy.
    pub fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.padding == 0
    }

    /// Checks the parameters and derives `Ho = (H + 2p - k)/s + 1` (same for `Wo`).
    pub fn new(
        (b, c, h, w): (usize, usize, usize, usize),
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        if k == 0 || stride == 0 {
            bail!("conv: kernel size ({k}) and stride ({stride}) must be at least 1")
        }
        if h == 0 || w == 0 {
            bail!("conv: empty input {h}x{w}")
        }
        if h + 2 * padding < k || w + 2 * padding < k {
            bail!("conv: kernel {k} larger than the padded input {h}x{w} (padding {padding})")
        }
        let ho = (h + 2 * padding - k) / stride + 1;
        let wo = (w + 2 * padding - k) / stride + 1;
        Ok(Self {
            b,
            c,
            h,
            w,
            k,
            stride,
            padding,
            ho,
            wo,
        })
    }

    /// Rows of `cols`: one per weight tap, `C*k*k`.
    pub fn taps(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Columns of `cols`: one per output position, `Ho*Wo`.
    pub fn out_hw(&self) -> usize {
        self.ho * self.wo
    }

    /// Elements of one input image, `C*H*W`.
    pub fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Size `(ceil(H/s), ceil(W/s))` of one polyphase component.
    fn phase_hw(&self) -> (usize, usize) {
        (self.h.div_ceil(self.stride), self.w.div_ceil(self.stride))
    }
}

/// The per-thread buffers of im2col/col2im for one geometry.
pub(crate) struct Scratch {
    /// `[C*k*k, Ho*Wo]`.
    pub cols: Vec<f32>,
    /// `[C, s, s, ceil(H/s), ceil(W/s)]`, the polyphase components (empty for stride 1).
    phases: Vec<f32>,
}

impl Scratch {
    /// What the convolution kernels need for `g`: nothing for a pointwise convolution,
    /// whose input is its own column matrix ([`Geom::pointwise`]), else [`Scratch::new`].
    pub fn for_conv(g: &Geom) -> Self {
        if g.pointwise() {
            Self {
                cols: Vec::new(),
                phases: Vec::new(),
            }
        } else {
            Self::new(g)
        }
    }

    /// Buffers for im2col / col2im on `g`.
    pub fn new(g: &Geom) -> Self {
        let phases = if g.stride == 1 {
            0
        } else {
            let (hq, wq) = g.phase_hw();
            g.c * g.stride * g.stride * hq * wq
        };
        Self {
            cols: vec![0f32; g.taps() * g.out_hw()],
            phases: vec![0f32; phases],
        }
    }
}

/// Splits `x_b [C, H, W]` into `phases [C, s, s, hq, wq]`; entries beyond the image are 0.
fn split_phases(x_b: &[f32], g: &Geom, phases: &mut [f32]) {
    let (s, h, w) = (g.stride, g.h, g.w);
    let (hq, wq) = g.phase_hw();
    let plane = hq * wq;
    phases.fill(0.0);
    for (xc, dc) in x_b
        .chunks_exact(h * w)
        .zip(phases.chunks_exact_mut(s * s * plane))
    {
        for (iy, row) in xc.chunks_exact(w).enumerate() {
            // Component (iy % s, px), row iy / s.
            let d = &mut dc[(iy % s) * s * plane + (iy / s) * wq..];
            if s == 2 {
                let (d0, d1) = d.split_at_mut(plane);
                for ((a, b), pair) in d0[..wq]
                    .iter_mut()
                    .zip(d1[..wq].iter_mut())
                    .zip(row.chunks_exact(2))
                {
                    *a = pair[0];
                    *b = pair[1];
                }
                if w % 2 == 1 {
                    d0[w / 2] = row[w - 1];
                }
            } else {
                for (ix, v) in row.iter().enumerate() {
                    d[(ix % s) * plane + ix / s] = *v;
                }
            }
        }
    }
}

/// The adjoint of [`split_phases`]: `dx_b [C, H, W] += phases` (entries beyond the image
/// are dropped).
fn merge_phases(phases: &[f32], g: &Geom, dx_b: &mut [f32]) {
    let (s, h, w) = (g.stride, g.h, g.w);
    let (hq, wq) = g.phase_hw();
    let plane = hq * wq;
    for (dc, sc) in dx_b
        .chunks_exact_mut(h * w)
        .zip(phases.chunks_exact(s * s * plane))
    {
        for (iy, row) in dc.chunks_exact_mut(w).enumerate() {
            let src = &sc[(iy % s) * s * plane + (iy / s) * wq..];
            if s == 2 {
                let (s0, s1) = (&src[..wq], &src[plane..plane + wq]);
                for ((a, b), pair) in s0.iter().zip(s1).zip(row.chunks_exact_mut(2)) {
                    pair[0] += *a;
                    pair[1] += *b;
                }
                if w % 2 == 1 {
                    row[w - 1] += s0[w / 2];
                }
            } else {
                for (ix, v) in row.iter_mut().enumerate() {
                    *v += src[(ix % s) * plane + ix / s];
                }
            }
        }
    }
}

/// Kernel tap `t` (`ky` or `kx`) at stride `s`, padding `p`: the component `phase` and
/// `shift` with `o*s + t - p = (o + shift)*s + phase` for every output index `o`.
fn tap(t: usize, p: usize, s: usize) -> (usize, isize) {
    let d = t as isize - p as isize;
    (d.rem_euclid(s as isize) as usize, d.div_euclid(s as isize))
}

/// The range `[lo, hi)` of output indices `o < n_out` with `o + shift` in `[0, n_in)`.
fn valid(shift: isize, n_in: usize, n_out: usize) -> (usize, usize) {
    let hi = (n_in as isize - shift).clamp(0, n_out as isize) as usize;
    let lo = ((-shift).max(0) as usize).min(hi);
    (lo, hi)
}

/// Zeroes columns `[0, lo)` and `[hi, wo)` of the rows of `m [rows, wo]` (a column or two:
/// strided scalar stores, cheaper than a `memset` call per row).
fn zero_edges(m: &mut [f32], wo: usize, lo: usize, hi: usize) {
    for j in (0..lo).chain(hi..wo) {
        for v in m[j..].iter_mut().step_by(wo) {
            *v = 0.0;
        }
    }
}

/// For every tap `(c, ky, kx)` with a non-empty valid region, calls
/// `f(row, plane_offset, (ylo, yhi), (xlo, xhi), (dy, dx))`: `row` is the `cols` row,
/// `plane_offset` where its source plane starts in the (polyphase) image, output rows
/// `[ylo, yhi)` and columns `[xlo, xhi)` read source `(oy + dy, ox + dx)`. Taps with an
/// empty region get `f` with `ylo == yhi`.
fn for_each_tap(
    g: &Geom,
    mut f: impl FnMut(usize, usize, (usize, usize), (usize, usize), (isize, isize)),
) {
    let (s, k) = (g.stride, g.k);
    let (hq, wq) = g.phase_hw();
    for ci in 0..g.c {
        for ky in 0..k {
            let (py, dy) = tap(ky, g.padding, s);
            let (ylo, yhi) = valid(dy, hq, g.ho);
            for kx in 0..k {
                let (px, dx) = tap(kx, g.padding, s);
                let (xlo, xhi) = valid(dx, wq, g.wo);
                let row = (ci * k + ky) * k + kx;
                let plane = ((ci * s + py) * s + px) * hq * wq;
                let ys = if xlo < xhi { (ylo, yhi) } else { (0, 0) };
                f(row, plane, ys, (xlo, xhi), (dy, dx));
            }
        }
    }
}

/// im2col of one image: `x_b [C, H, W]` -> `scratch.cols [C*k*k, Ho*Wo]`, every element
/// written (padding taps as 0).
pub(crate) fn im2col_image(x_b: &[f32], g: &Geom, scratch: &mut Scratch) {
    let Scratch { cols, phases } = scratch;
    let (ohw, wo) = (g.out_hw(), g.wo);
    let wq = g.phase_hw().1;
    let src: &[f32] = if g.stride == 1 {
        x_b
    } else {
        split_phases(x_b, g, phases);
        phases
    };
    for_each_tap(g, |row, plane, (ylo, yhi), (xlo, xhi), (dy, dx)| {
        let dst = &mut cols[row * ohw..(row + 1) * ohw];
        if ylo == yhi {
            dst.fill(0.0);
            return;
        }
        dst[..ylo * wo].fill(0.0);
        dst[yhi * wo..].fill(0.0);
        // Source index of output (ylo, xlo).
        let s0 = plane + (ylo as isize + dy) as usize * wq + (xlo as isize + dx) as usize;
        if wq == wo {
            // Output and source rows are equally wide: one contiguous copy of the region
            // (its wrapped-around edge columns then zeroed).
            let (a, b) = (ylo * wo + xlo, (yhi - 1) * wo + xhi);
            dst[a..b].copy_from_slice(&src[s0..s0 + (b - a)]);
            zero_edges(&mut dst[ylo * wo..yhi * wo], wo, xlo, xhi);
        } else {
            for (r, d) in dst[ylo * wo..yhi * wo].chunks_exact_mut(wo).enumerate() {
                d[..xlo].fill(0.0);
                d[xhi..].fill(0.0);
                let s = s0 + r * wq;
                d[xlo..xhi].copy_from_slice(&src[s..s + (xhi - xlo)]);
            }
        }
    });
}

/// col2im of one image, the adjoint of [`im2col_image`]: `dx_b [C, H, W] += ` the
/// scatter-add of `scratch.cols [C*k*k, Ho*Wo]` (which it overwrites: padding entries are
/// zeroed).
pub(crate) fn col2im_image(g: &Geom, scratch: &mut Scratch, dx_b: &mut [f32]) {
    let Scratch { cols, phases } = scratch;
    let (ohw, wo) = (g.out_hw(), g.wo);
    let wq = g.phase_hw().1;
    let dst: &mut [f32] = if g.stride == 1 {
        &mut *dx_b
    } else {
        phases.fill(0.0);
        &mut *phases
    };
    for_each_tap(g, |row, plane, (ylo, yhi), (xlo, xhi), (dy, dx)| {
        if ylo == yhi {
            return;
        }
        let src = &mut cols[row * ohw..(row + 1) * ohw];
        let s0 = plane + (ylo as isize + dy) as usize * wq + (xlo as isize + dx) as usize;
        if wq == wo {
            // Zero the entries that wrap around, then one contiguous add of the region.
            zero_edges(&mut src[ylo * wo..yhi * wo], wo, xlo, xhi);
            let (a, b) = (ylo * wo + xlo, (yhi - 1) * wo + xhi);
            for (d, v) in dst[s0..s0 + (b - a)].iter_mut().zip(&src[a..b]) {
                *d += *v;
            }
        } else {
            for (r, v) in src[ylo * wo..yhi * wo].chunks_exact(wo).enumerate() {
                let s = s0 + r * wq;
                for (d, v) in dst[s..s + (xhi - xlo)].iter_mut().zip(&v[xlo..xhi]) {
                    *d += *v;
                }
            }
        }
    });
    if g.stride > 1 {
        merge_phases(phases, g, dx_b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative tolerance of the adjoint identity <im2col x, y> = <x, col2im y> (f64 sums
    /// of f32 products).
    const ADJ_TOL: f64 = 1e-6;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// (C, H, W, k, stride, padding): odd sizes, strides 1-3, kernels 1-5, wide padding.
    const CASES: [(usize, usize, usize, usize, usize, usize); 10] = [
        (3, 7, 5, 3, 1, 1),
        (2, 8, 8, 3, 2, 1),
        (2, 9, 7, 3, 2, 1),
        (3, 10, 7, 4, 2, 1),
        (1, 11, 6, 5, 3, 2),
        (4, 5, 6, 1, 1, 0),
        (2, 13, 6, 3, 3, 0),
        (2, 4, 5, 3, 1, 2),
        (2, 3, 3, 3, 1, 0),
        (3, 6, 9, 4, 2, 0),
    ];

    /// im2col by its definition.
    fn naive_im2col(x: &[f32], g: &Geom) -> Vec<f32> {
        let mut out = vec![0f32; g.taps() * g.out_hw()];
        for c in 0..g.c {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let row = (c * g.k + ky) * g.k + kx;
                    for oy in 0..g.ho {
                        for ox in 0..g.wo {
                            let iy = (oy * g.stride + ky) as isize - g.padding as isize;
                            let ix = (ox * g.stride + kx) as isize - g.padding as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                                out[row * g.out_hw() + oy * g.wo + ox] =
                                    x[(c * g.h + iy as usize) * g.w + ix as usize];
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_matches_its_definition() {
        for (i, &(c, h, w, k, s, p)) in CASES.iter().enumerate() {
            let g = Geom::new((1, c, h, w), k, s, p).unwrap();
            let x = values(g.in_len(), i as u64);
            let mut scratch = Scratch::new(&g);
            // Garbage first: every element must be written.
            scratch.cols.fill(f32::NAN);
            im2col_image(&x, &g, &mut scratch);
            assert_eq!(scratch.cols, naive_im2col(&x, &g), "case {i}: {g:?}");
        }
    }

    /// <im2col(x), y> == <x, col2im(y)> for random x, y.
    #[test]
    fn col2im_is_adjoint_of_im2col() {
        for (i, &(c, h, w, k, s, p)) in CASES.iter().enumerate() {
            let g = Geom::new((1, c, h, w), k, s, p).unwrap();
            let x = values(g.in_len(), 100 + i as u64);
            let y = values(g.taps() * g.out_hw(), 200 + i as u64);
            let mut scratch = Scratch::new(&g);
            im2col_image(&x, &g, &mut scratch);
            let lhs: f64 = scratch
                .cols
                .iter()
                .zip(&y)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            scratch.cols.copy_from_slice(&y);
            // col2im accumulates: start from a known image.
            let base = values(g.in_len(), 300 + i as u64);
            let mut back = base.clone();
            col2im_image(&g, &mut scratch, &mut back);
            let rhs: f64 = x
                .iter()
                .zip(back.iter().zip(&base))
                .map(|(a, (b, b0))| *a as f64 * (*b as f64 - *b0 as f64))
                .sum();
            let scale = lhs.abs().max(rhs.abs()).max(1.0);
            assert!(
                (lhs - rhs).abs() / scale <= ADJ_TOL,
                "case {i} {g:?}: <im2col x, y> = {lhs} but <x, col2im y> = {rhs}"
            );
        }
    }

    #[test]
    fn rejects_bad_geometry() {
        assert!(Geom::new((1, 1, 2, 2), 5, 1, 1).is_err());
        assert!(Geom::new((1, 1, 4, 4), 3, 0, 1).is_err());
        assert!(Geom::new((1, 1, 4, 4), 0, 1, 1).is_err());
        assert!(Geom::new((1, 1, 0, 4), 1, 1, 0).is_err());
    }
}
