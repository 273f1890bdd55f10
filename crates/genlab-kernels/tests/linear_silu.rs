//! `linear` and `silu` against candle's own ops (values and gradients), on odd shapes.

use candle_core::{DType, Device, Tensor, Var};
use genlab_core::Rng;

mod common;
use common::{rel_err, weighted_sum_grads};

/// f32 values from different summation orders agree to this (relative to the scale).
const TOL: f32 = 1e-5;

fn var(rng: &mut Rng, dims: &[usize]) -> Var {
    Var::from_tensor(&rng.normal_tensor(dims, &Device::Cpu).unwrap()).unwrap()
}

#[test]
fn linear_matches_candle_values_and_gradients() {
    let mut rng = Rng::new(7);
    for &(lead, i, o) in &[
        (&[5usize][..], 3usize, 7usize),
        (&[2, 3][..], 17, 1),
        (&[1][..], 1, 4),
        (&[33][..], 65, 31),
    ] {
        let mut xd = lead.to_vec();
        xd.push(i);
        let x = var(&mut rng, &xd);
        let w = var(&mut rng, &[o, i]);
        let b = var(&mut rng, &[o]);
        let mut yd = lead.to_vec();
        yd.push(o);
        let r = rng.normal_tensor(&yd, &Device::Cpu).unwrap();
        let ours = genlab_kernels::linear(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
        let n: usize = lead.iter().product();
        let theirs = x
            .as_tensor()
            .reshape((n, i))
            .unwrap()
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap()
            .reshape(yd.as_slice())
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        assert!(rel_err(&ours, &theirs) < TOL, "values {lead:?} {i} {o}");
        let g1 = weighted_sum_grads(&ours, &r, &[&x, &w, &b]);
        let g2 = weighted_sum_grads(&theirs, &r, &[&x, &w, &b]);
        for (name, (a, c)) in ["x", "w", "b"].iter().zip(g1.iter().zip(&g2)) {
            assert_eq!(a.dims(), c.dims());
            assert!(rel_err(a, c) < TOL, "d{name} {lead:?} {i} {o}");
        }
    }
}

#[test]
fn linear_rejects_mismatched_shapes() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((5, 2), DType::F32, &dev).unwrap();
    let b = Tensor::zeros(5, DType::F32, &dev).unwrap();
    let e = genlab_kernels::linear(&x, &w, &b).unwrap_err().to_string();
    assert!(e.contains("3 features"), "{e}");
    let w = Tensor::zeros((5, 3), DType::F32, &dev).unwrap();
    let b = Tensor::zeros(4, DType::F32, &dev).unwrap();
    assert!(genlab_kernels::linear(&x, &w, &b).is_err());
}

#[test]
fn silu_matches_candle_values_and_gradients() {
    let mut rng = Rng::new(3);
    // 70001 elements: several parallel chunks and a ragged tail; scaled to reach the
    // saturated ends of the sigmoid.
    for dims in [&[3usize, 5, 7][..], &[70_001][..], &[1][..]] {
        let x = Var::from_tensor(&(rng.normal_tensor(dims, &Device::Cpu).unwrap() * 12.0).unwrap())
            .unwrap();
        let r = rng.normal_tensor(dims, &Device::Cpu).unwrap();
        let ours = genlab_kernels::silu(x.as_tensor()).unwrap();
        let theirs = x.as_tensor().silu().unwrap();
        assert!(rel_err(&ours, &theirs) < TOL, "values {dims:?}");
        let g1 = weighted_sum_grads(&ours, &r, &[&x]);
        let g2 = weighted_sum_grads(&theirs, &r, &[&x]);
        assert!(rel_err(&g1[0], &g2[0]) < TOL, "grad {dims:?}");
    }
}

#[test]
fn silu_closed_form_points() {
    // silu(0) = 0, silu'(0) = 1/2; silu(x) -> x and silu'(x) -> 1 for large x; -> 0 for
    // very negative x.
    let x = Tensor::new(&[0f32, 30.0, -30.0, 1.0], &Device::Cpu).unwrap();
    let y: Vec<f32> = genlab_kernels::silu(&x).unwrap().to_vec1().unwrap();
    let s1 = 1.0 / (1.0 + (-1f64).exp());
    let want = [
        0.0,
        30.0,
        -30.0 * (-30f64).exp() / (1.0 + (-30f64).exp()),
        s1,
    ];
    for (g, w) in y.iter().zip(want) {
        assert!(
            (*g as f64 - w).abs() < 1e-6 * w.abs().max(1.0),
            "{g} vs {w}"
        );
    }
    let mut dx = [0f32; 1];
    genlab_kernels::silu_grad_slice(&[0.0], &[1.0], &mut dx);
    assert!((dx[0] - 0.5).abs() < 1e-7);
}
