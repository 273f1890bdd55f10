//! Kernel two-sample statistics: unbiased MMD^2 (Gretton et al. 2012, "A Kernel Two-Sample
//! Test", JMLR) and the Kernel Inception Distance (Binkowski et al. 2018, "Demystifying
//! MMD GANs").
//!
//! Unbiased MMD^2 = sum_{i!=j} k(x_i,x_j) / (n(n-1)) + sum_{i!=j} k(y_i,y_j) / (m(m-1))
//!                - 2 sum_{i,j} k(x_i,y_j) / (nm).
//! It can be slightly negative when the two distributions are equal; that is the estimator,
//! not a bug, so it is returned as is.
//!
//! KID is that estimator with the cubic polynomial kernel k(x,y) = (x.y/d + 1)^3, averaged
//! over random subsets of equal size drawn without replacement from each side: the mean and
//! the population standard deviation over subsets (divided by the number of subsets, not
//! that minus 1), as torchmetrics' `KernelInceptionDistance` reports them. Kernel sums are
//! computed in row blocks so 10,000 x 10,000 problems never hold a full kernel matrix.

use crate::linalg::{gram, row_sq_norms};
use crate::suite::{Computed, Inputs};
use crate::{check_pair, FeatureMatrix};
use faer::Mat;
use genlab_core::{Error, Result, Rng};
use serde::Serialize;

/// Rows per block when summing kernel matrices.
const BLOCK_ROWS: usize = 1024;
/// Points per side used by the median heuristic (the pairwise-distance median of at most
/// 2 x this many points, evenly strided through each set).
pub const MEDIAN_POINTS_PER_SIDE: usize = 1000;

/// A positive-definite kernel on feature vectors.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kernel {
    /// (gamma x.y + coef0)^degree; gamma None = 1 / dimension (KID's choice).
    Polynomial {
        degree: i32,
        gamma: Option<f64>,
        coef0: f64,
    },
    /// exp(-|x - y|^2 / (2 sigma^2)).
    Rbf { bandwidth: Bandwidth },
}

impl Kernel {
    /// KID's kernel: (x.y/d + 1)^3.
    pub fn kid() -> Self {
        Kernel::Polynomial {
            degree: 3,
            gamma: None,
            coef0: 1.0,
        }
    }
}

/// How the RBF bandwidth sigma is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bandwidth {
    /// sigma = median Euclidean distance between distinct points of the pooled sample.
    Median,
    Fixed(f64),
}

/// A kernel with every parameter resolved (what was actually used).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResolvedKernel {
    Polynomial { degree: i32, gamma: f64, coef0: f64 },
    Rbf { sigma: f64 },
}

impl ResolvedKernel {
    fn apply(&self, dot: f64, sq_x: f64, sq_y: f64) -> f64 {
        match *self {
            ResolvedKernel::Polynomial {
                degree,
                gamma,
                coef0,
            } => (gamma * dot + coef0).powi(degree),
            ResolvedKernel::Rbf { sigma } => {
                let d2 = (sq_x + sq_y - 2.0 * dot).max(0.0);
                (-d2 / (2.0 * sigma * sigma)).exp()
            }
        }
    }
}

/// Resolves `kernel`'s free parameters on this pair of sets.
pub fn resolve(kernel: &Kernel, x: &FeatureMatrix, y: &FeatureMatrix) -> Result<ResolvedKernel> {
    Ok(match kernel {
        Kernel::Polynomial {
            degree,
            gamma,
            coef0,
        } => {
            if *degree < 1 {
                return Err(Error::InvalidInput(format!(
                    "polynomial kernel degree must be >= 1, got {degree}"
                )));
            }
            ResolvedKernel::Polynomial {
                degree: *degree,
                gamma: gamma.unwrap_or(1.0 / x.cols() as f64),
                coef0: *coef0,
            }
        }
        Kernel::Rbf { bandwidth } => {
            let sigma = match bandwidth {
                Bandwidth::Fixed(s) => *s,
                Bandwidth::Median => median_distance(x, y),
            };
            if !(sigma > 0.0 && sigma.is_finite()) {
                return Err(Error::InvalidInput(format!(
                    "RBF bandwidth must be positive and finite, got {sigma} (all points identical?)"
                )));
            }
            ResolvedKernel::Rbf { sigma }
        }
    })
}

/// Indices of at most `k` points evenly strided through `0..n`.
fn strided(n: usize, k: usize) -> Vec<usize> {
    if n <= k {
        (0..n).collect()
    } else {
        (0..k).map(|i| i * n / k).collect()
    }
}

/// Median of pairwise Euclidean distances between distinct points of the pooled sample
/// (numpy's median: the mean of the two middle values for an even count).
pub fn median_distance(x: &FeatureMatrix, y: &FeatureMatrix) -> f64 {
    let xs = x.select(&strided(x.rows(), MEDIAN_POINTS_PER_SIDE));
    let ys = y.select(&strided(y.rows(), MEDIAN_POINTS_PER_SIDE));
    let mut pooled = xs.data().to_vec();
    pooled.extend_from_slice(ys.data());
    let n = xs.rows() + ys.rows();
    let z = Mat::from_fn(n, x.cols(), |i, j| pooled[i * x.cols() + j]);
    let g = gram(z.as_ref(), z.as_ref());
    let sq = row_sq_norms(z.as_ref());
    let mut d = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            d.push((sq[i] + sq[j] - 2.0 * g[(i, j)]).max(0.0).sqrt());
        }
    }
    median(&mut d)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let k = v.len() / 2;
    let (_, hi, _) = v.select_nth_unstable_by(k, f64::total_cmp);
    let hi = *hi;
    if v.len() % 2 == 1 {
        hi
    } else {
        let lo = v[..k].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (lo + hi)
    }
}

/// Sum of k(x_i, y_j) over all pairs, or over i != j when `exclude_diagonal` (x == y).
fn kernel_sum(x: &Mat<f64>, y: &Mat<f64>, k: &ResolvedKernel, exclude_diagonal: bool) -> f64 {
    let sq_x = row_sq_norms(x.as_ref());
    let sq_y = row_sq_norms(y.as_ref());
    let mut total = 0.0;
    let mut start = 0;
    while start < x.nrows() {
        let end = (start + BLOCK_ROWS).min(x.nrows());
        let g = gram(x.as_ref().subrows(start, end - start), y.as_ref());
        for i in 0..end - start {
            let gi = start + i;
            let mut row = 0.0;
            for j in 0..y.nrows() {
                if exclude_diagonal && j == gi {
                    continue;
                }
                row += k.apply(g[(i, j)], sq_x[gi], sq_y[j]);
            }
            total += row;
        }
        start = end;
    }
    total
}

fn mmd2_mats(x: &Mat<f64>, y: &Mat<f64>, k: &ResolvedKernel) -> f64 {
    let (n, m) = (x.nrows() as f64, y.nrows() as f64);
    let kxx = kernel_sum(x, x, k, true);
    let kyy = kernel_sum(y, y, k, true);
    let kxy = kernel_sum(x, y, k, false);
    kxx / (n * (n - 1.0)) + kyy / (m * (m - 1.0)) - 2.0 * kxy / (n * m)
}

/// Unbiased MMD^2 with its resolved kernel.
#[derive(Debug, Clone, Serialize)]
pub struct MmdResult {
    pub mmd2: f64,
    pub kernel: ResolvedKernel,
    pub n_real: usize,
    pub n_fake: usize,
}

/// Unbiased MMD^2 between two feature sets (sizes may differ; at least 2 each).
pub fn mmd2_unbiased(x: &FeatureMatrix, y: &FeatureMatrix, kernel: &Kernel) -> Result<MmdResult> {
    check_pair(x, y, 2)?;
    let k = resolve(kernel, x, y)?;
    let v = mmd2_mats(&x.to_faer(), &y.to_faer(), &k);
    Ok(MmdResult {
        mmd2: v,
        kernel: k,
        n_real: x.rows(),
        n_fake: y.rows(),
    })
}

/// KID settings (torchmetrics' defaults: 100 subsets of 1000).
#[derive(Debug, Clone, Serialize)]
pub struct KidOptions {
    pub subsets: usize,
    pub subset_size: usize,
    pub seed: u64,
}

impl Default for KidOptions {
    fn default() -> Self {
        Self {
            subsets: 100,
            subset_size: 1000,
            seed: 0,
        }
    }
}

/// KID: mean and standard deviation of unbiased MMD^2 (cubic kernel) over subsets.
#[derive(Debug, Clone, Serialize)]
pub struct KidResult {
    pub kid: f64,
    /// Population standard deviation over subsets (divides by the number of subsets, like
    /// torchmetrics' `KernelInceptionDistance`, `std(unbiased=False)`); 0 with one subset.
    pub std: f64,
    pub subsets: usize,
    /// The subset size used (the requested one, capped at the smaller set's size).
    pub subset_size: usize,
    pub n_real: usize,
    pub n_fake: usize,
    /// The unbiased MMD^2 of each subset, in draw order (not serialised: reports carry the
    /// mean and std only).
    #[serde(skip)]
    pub values: Vec<f64>,
}

/// One KID subset: row indices into the real and the fake feature matrices (equal lengths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KidSubset {
    pub real: Vec<usize>,
    pub fake: Vec<usize>,
}

fn check_kid_options(opts: &KidOptions) -> Result<()> {
    if opts.subsets == 0 || opts.subset_size < 2 {
        return Err(Error::InvalidInput(format!(
            "KID needs at least 1 subset of at least 2 samples, got {} subsets of {}",
            opts.subsets, opts.subset_size
        )));
    }
    Ok(())
}

/// The subsets [`kid`] draws for sets of `n_real` and `n_fake` rows: `opts.subsets` pairs of
/// index lists of `min(subset_size, n_real, n_fake)` distinct rows each, from the seeded
/// stream `kid-subsets`. When that size is both sets' full size, every subset would be the
/// whole sets, so there is one subset (`0..n` on both sides) and the std is 0.
pub fn kid_subsets(n_real: usize, n_fake: usize, opts: &KidOptions) -> Result<Vec<KidSubset>> {
    check_kid_options(opts)?;
    let m = opts.subset_size.min(n_real).min(n_fake);
    let mut ix: Vec<usize> = (0..n_real).collect();
    let mut iy: Vec<usize> = (0..n_fake).collect();
    if m == n_real && m == n_fake {
        return Ok(vec![KidSubset { real: ix, fake: iy }]);
    }
    let mut rng = Rng::derive(opts.seed, "kid-subsets");
    Ok((0..opts.subsets)
        .map(|_| {
            rng.shuffle(&mut ix);
            rng.shuffle(&mut iy);
            KidSubset {
                real: ix[..m].to_vec(),
                fake: iy[..m].to_vec(),
            }
        })
        .collect())
}

/// KID on given subsets: the unbiased MMD^2 (cubic kernel, gamma = 1 / dimension of the
/// full sets) of each subset, then their mean and population standard deviation. Every
/// subset must hold the same number (at least 2) of in-range indices on both sides.
pub fn kid_on_subsets(
    x: &FeatureMatrix,
    y: &FeatureMatrix,
    subsets: &[KidSubset],
) -> Result<KidResult> {
    check_pair(x, y, 2)?;
    let m = match subsets.first() {
        Some(s) => s.real.len(),
        None => return Err(Error::InvalidInput("KID needs at least 1 subset".into())),
    };
    for (i, s) in subsets.iter().enumerate() {
        if s.real.len() != m || s.fake.len() != m || m < 2 {
            return Err(Error::InvalidInput(format!(
                "KID subset {i} has {} real and {} fake indices; every subset needs the same \
                 number (at least 2) on both sides, here {m}",
                s.real.len(),
                s.fake.len()
            )));
        }
        let bad = |idx: &[usize], n: usize| idx.iter().copied().find(|&j| j >= n);
        if let Some(j) = bad(&s.real, x.rows()).or(bad(&s.fake, y.rows())) {
            return Err(Error::InvalidInput(format!(
                "KID subset {i}: index {j} out of range ({} real, {} fake rows)",
                x.rows(),
                y.rows()
            )));
        }
    }
    let k = resolve(&Kernel::kid(), x, y)?;
    let values: Vec<f64> = subsets
        .iter()
        .map(|s| {
            mmd2_mats(
                &x.select(&s.real).to_faer(),
                &y.select(&s.fake).to_faer(),
                &k,
            )
        })
        .collect();
    let count = values.len() as f64;
    let mean = values.iter().sum::<f64>() / count;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / count).sqrt();
    Ok(KidResult {
        kid: mean,
        std,
        subsets: values.len(),
        subset_size: m,
        n_real: x.rows(),
        n_fake: y.rows(),
        values,
    })
}

/// Kernel Inception Distance over the seeded random subsets of [`kid_subsets`].
pub fn kid(x: &FeatureMatrix, y: &FeatureMatrix, opts: &KidOptions) -> Result<KidResult> {
    check_pair(x, y, 2)?;
    kid_on_subsets(x, y, &kid_subsets(x.rows(), y.rows(), opts)?)
}

/// `genlab eval`'s KID, warning when the subsets had to shrink to the smaller side.
pub fn compute_kid(x: &Inputs) -> Result<Computed> {
    let (a, b) = x.features("kid")?;
    let r = kid(a, b, &x.opts.kid)?;
    let wanted = x.opts.kid.subset_size;
    Ok(
        Computed::new(r.kid, Some(r.std), &r).warn_if(r.subset_size < wanted, || {
            format!(
                "kid: subsets of {} (the smaller set's size) instead of {wanted}",
                r.subset_size
            )
        }),
    )
}

/// `genlab eval`'s Gaussian-kernel MMD^2.
pub fn compute_mmd(x: &Inputs) -> Result<Computed> {
    let (a, b) = x.features("mmd")?;
    let kernel = Kernel::Rbf {
        bandwidth: x.opts.mmd_bandwidth,
    };
    let r = mmd2_unbiased(a, b, &kernel)?;
    Ok(Computed::new(r.mmd2, None, &r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(n: usize, d: usize, shift: f64, salt: usize) -> FeatureMatrix {
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..d)
                    .map(|j| ((i * 31 + j * 7 + salt * 101) as f64 * 0.61).sin() + shift)
                    .collect()
            })
            .collect();
        FeatureMatrix::from_rows(&rows, "x").unwrap()
    }

    /// Brute force straight from the definition, no blocking or Gram tricks.
    fn brute(x: &FeatureMatrix, y: &FeatureMatrix, k: &dyn Fn(&[f64], &[f64]) -> f64) -> f64 {
        let (n, m) = (x.rows(), y.rows());
        let mut kxx = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    kxx += k(x.row(i), x.row(j));
                }
            }
        }
        let mut kyy = 0.0;
        for i in 0..m {
            for j in 0..m {
                if i != j {
                    kyy += k(y.row(i), y.row(j));
                }
            }
        }
        let mut kxy = 0.0;
        for i in 0..n {
            for j in 0..m {
                kxy += k(x.row(i), y.row(j));
            }
        }
        kxx / (n * (n - 1)) as f64 + kyy / (m * (m - 1)) as f64 - 2.0 * kxy / (n * m) as f64
    }

    #[test]
    fn mmd_matches_brute_force_for_both_kernels() {
        let (x, y) = (pts(13, 4, 0.0, 1), pts(9, 4, 0.3, 2));
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
        let poly = mmd2_unbiased(&x, &y, &Kernel::kid()).unwrap().mmd2;
        let bp = brute(&x, &y, &|a, b| (dot(a, b) / 4.0 + 1.0).powi(3));
        assert!(
            (poly - bp).abs() < 1e-12 * bp.abs().max(1.0),
            "{poly} vs {bp}"
        );
        let rbf = mmd2_unbiased(
            &x,
            &y,
            &Kernel::Rbf {
                bandwidth: Bandwidth::Fixed(0.7),
            },
        )
        .unwrap()
        .mmd2;
        let br = brute(&x, &y, &|a, b| {
            let d2: f64 = a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum();
            (-d2 / (2.0 * 0.49)).exp()
        });
        assert!((rbf - br).abs() < 1e-12, "{rbf} vs {br}");
    }

    #[test]
    fn median_matches_sorting() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0];
        assert_eq!(median(&mut v), 3.0);
        let mut v = vec![5.0, 1.0, 4.0];
        assert_eq!(median(&mut v), 4.0);
    }

    #[test]
    fn kid_subsets_are_seeded_and_spread() {
        let (x, y) = (pts(40, 3, 0.0, 3), pts(50, 3, 0.5, 4));
        let o = KidOptions {
            subsets: 7,
            subset_size: 20,
            seed: 5,
        };
        let a = kid(&x, &y, &o).unwrap();
        let b = kid(&x, &y, &o).unwrap();
        assert_eq!(a.kid, b.kid);
        assert!(a.std > 0.0 && a.subsets == 7 && a.subset_size == 20);
        // Subset size larger than both sets: capped, then one exact value.
        let full = kid(
            &x.head(30),
            &y.head(30),
            &KidOptions {
                subset_size: 1000,
                ..o
            },
        )
        .unwrap();
        let direct = mmd2_unbiased(&x.head(30), &y.head(30), &Kernel::kid()).unwrap();
        assert_eq!(full.subset_size, 30);
        assert!((full.kid - direct.mmd2).abs() < 1e-15);
    }

    /// Regression (issue 19): the std was sum (v - mean)^2 / (k - 1); torchmetrics reports
    /// sqrt(sum (v - mean)^2 / k). With two subsets that is |v1 - v2| / 2, not / sqrt(2).
    #[test]
    fn kid_std_divides_by_the_number_of_subsets_not_one_less() {
        let (x, y) = (pts(40, 3, 0.0, 3), pts(50, 3, 0.5, 4));
        let o = KidOptions {
            subsets: 2,
            subset_size: 20,
            seed: 11,
        };
        let r = kid(&x, &y, &o).unwrap();
        let drawn = kid_subsets(x.rows(), y.rows(), &o).unwrap();
        let v: Vec<f64> = drawn
            .iter()
            .map(|s| {
                mmd2_unbiased(&x.select(&s.real), &y.select(&s.fake), &Kernel::kid())
                    .unwrap()
                    .mmd2
            })
            .collect();
        assert_eq!(r.values, v);
        assert!((v[0] - v[1]).abs() > 1e-3, "subsets too alike: {v:?}");
        let population = (v[0] - v[1]).abs() / 2.0;
        assert!(
            (r.std - population).abs() < 1e-12 * population,
            "std {} vs population {population} (unbiased would be {})",
            r.std,
            population * 2f64.sqrt()
        );
    }

    #[test]
    fn kid_is_kid_on_subsets_of_its_own_draw() {
        let (x, y) = (pts(40, 3, 0.0, 3), pts(50, 3, 0.5, 4));
        let o = KidOptions {
            subsets: 5,
            subset_size: 15,
            seed: 2,
        };
        let drawn = kid_subsets(40, 50, &o).unwrap();
        assert_eq!(drawn.len(), 5);
        for s in &drawn {
            let mut r = s.real.clone();
            r.sort_unstable();
            r.dedup();
            assert!(r.len() == 15 && r[14] < 40, "{:?}", s.real);
            let mut f = s.fake.clone();
            f.sort_unstable();
            f.dedup();
            assert!(f.len() == 15 && f[14] < 50, "{:?}", s.fake);
        }
        assert_ne!(drawn[0], drawn[1]);
        let a = kid(&x, &y, &o).unwrap();
        let b = kid_on_subsets(&x, &y, &drawn).unwrap();
        assert_eq!((a.kid, a.std, a.values), (b.kid, b.std, b.values));
    }

    #[test]
    fn kid_on_subsets_rejects_bad_subsets() {
        let (x, y) = (pts(10, 2, 0.0, 0), pts(8, 2, 0.1, 1));
        let sub = |real: Vec<usize>, fake: Vec<usize>| KidSubset { real, fake };
        assert!(kid_on_subsets(&x, &y, &[]).is_err());
        let uneven = kid_on_subsets(&x, &y, &[sub(vec![0, 1, 2], vec![0, 1])]).unwrap_err();
        assert!(uneven.to_string().contains("same"), "{uneven}");
        let sizes = [
            sub(vec![0, 1, 2], vec![0, 1, 2]),
            sub(vec![0, 1], vec![0, 1]),
        ];
        assert!(kid_on_subsets(&x, &y, &sizes).is_err());
        let range = kid_on_subsets(&x, &y, &[sub(vec![0, 1], vec![0, 8])]).unwrap_err();
        assert!(range.to_string().contains("out of range"), "{range}");
        assert!(kid_on_subsets(&x, &y, &[sub(vec![0], vec![0])]).is_err());
    }

    #[test]
    fn rejects_degenerate_input() {
        let x = pts(5, 2, 0.0, 0);
        assert!(mmd2_unbiased(&x, &x.head(1), &Kernel::kid()).is_err());
        let same = FeatureMatrix::new(3, 1, vec![1.0; 3], "s").unwrap();
        let err = mmd2_unbiased(
            &same,
            &same,
            &Kernel::Rbf {
                bandwidth: Bandwidth::Median,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("bandwidth"), "{err}");
    }
}
