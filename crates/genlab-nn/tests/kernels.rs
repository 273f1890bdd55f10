//! The fused CPU kernels (im2col convolution, GroupNorm+SiLU) against candle's own ops:
//! same outputs, same gradients for the input and every parameter.

use candle_core::{Device, Tensor, Var};
use genlab_core::{ParamStore, Rng};
use genlab_nn::{Conv, GroupNorm};

/// Relative agreement of f32 results computed in a different summation order.
const KERNEL_TOL: f32 = 1e-4;

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Compares `fast` and `reference` on input `x`: outputs, and the gradients of a random
/// projection of the output with respect to `x` and every variable of `store`.
fn compare(
    store: &ParamStore,
    x: &Var,
    fast: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    reference: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    what: &str,
) {
    let yf = fast(x.as_tensor()).unwrap();
    let yr = reference(x.as_tensor()).unwrap();
    let d = max_rel_diff(&yf, &yr);
    assert!(d < KERNEL_TOL, "{what}: outputs differ by {d}");
    let r = Rng::new(77).normal_tensor(yr.dims(), &Device::Cpu).unwrap();
    let gf = (yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (yr * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut vars = store.vars();
    vars.push(("input".into(), x.clone()));
    for (name, v) in vars {
        let a = gf
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{what}: no fast grad for {name}"));
        let b = gr
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{what}: no reference grad for {name}"));
        let d = max_rel_diff(a, b);
        assert!(d < KERNEL_TOL, "{what}: gradient of {name} differs by {d}");
    }
}

#[test]
fn conv_matches_candle() {
    // (c_in, c_out, k, stride, pad, h, w): 3x3 same, stride 2 on odd and even sizes, 1x1.
    for (ci, co, k, s, p, h, w) in [
        (3, 5, 3, 1, 1, 6, 5),
        (4, 4, 3, 2, 1, 7, 7),
        (4, 6, 3, 2, 1, 8, 6),
        (6, 3, 1, 1, 0, 5, 4),
        (2, 3, 3, 1, 0, 5, 5),
    ] {
        let store = ParamStore::new(1, &Device::Cpu);
        let conv = Conv::new(ci, co, k, s, p, store.vb()).unwrap();
        let x = Var::from_tensor(
            &Rng::new(2)
                .normal_tensor(&[3, ci, h, w], &Device::Cpu)
                .unwrap(),
        )
        .unwrap();
        compare(
            &store,
            &x,
            |x| conv.forward(x),
            |x| conv.forward_reference(x),
            &format!("conv {ci}->{co} k{k} s{s} p{p} on {h}x{w}"),
        );
    }
}

#[test]
fn group_norm_matches_candle() {
    for silu in [false, true] {
        let store = ParamStore::new(1, &Device::Cpu);
        let gn = GroupNorm::new(3, 6, 1e-5, silu, store.vb()).unwrap();
        // Non-trivial affine parameters (they start at ones and zeros).
        let mut rng = Rng::new(3);
        for (_, v) in store.vars() {
            v.set(&rng.normal_tensor(v.dims(), &Device::Cpu).unwrap())
                .unwrap();
        }
        let x = Var::from_tensor(
            &(rng.normal_tensor(&[2, 6, 4, 5], &Device::Cpu).unwrap() * 3.0)
                .unwrap()
                .affine(1.0, 0.5)
                .unwrap(),
        )
        .unwrap();
        compare(
            &store,
            &x,
            |x| gn.forward(x),
            |x| gn.forward_reference(x),
            &format!("group norm silu={silu}"),
        );
    }
    let store = ParamStore::new(1, &Device::Cpu);
    assert!(GroupNorm::new(4, 6, 1e-5, false, store.vb()).is_err());
}

#[test]
fn upsample_matches_candle() {
    // Exact x2 and cropped (odd target) sizes.
    for (h, w, oh, ow) in [(3usize, 4usize, 6usize, 8usize), (4, 4, 7, 7), (2, 3, 3, 6)] {
        let store = ParamStore::new(1, &Device::Cpu);
        let x = Var::from_tensor(
            &Rng::new(4)
                .normal_tensor(&[2, 3, h, w], &Device::Cpu)
                .unwrap(),
        )
        .unwrap();
        compare(
            &store,
            &x,
            |x| genlab_nn::upsample_nearest(x, oh, ow),
            |x| genlab_nn::upsample_reference(x, oh, ow),
            &format!("upsample {h}x{w} -> {oh}x{ow}"),
        );
    }
}
