//! What the continual-learning methods need from the classifier MLP beyond a forward and a
//! backward pass: every layer's input (the penultimate one is iCaRL's feature space), and the
//! diagonal of the Fisher information summed over examples in one batched pass.
//!
//! The network is genlab-rl's [`Mlp`] (flat parameters, `W_l [out, in]` then `b_l [out]`).
//!
//! Fisher diagonal (Kirkpatrick et al. 2017, arXiv:1612.00796, Eq. 3's F_i, as estimated in
//! van de Ven & Tolias 2019's code: the squared gradient of `-log p(y | x)` per example, `y`
//! the model's own prediction): for a linear layer `z = W x + b` the per-example gradient is
//! `dW = dz x^T`, so `sum_n dW_n^2 = (dz^2)^T (x^2)` elementwise: one GEMM per layer for the
//! whole batch instead of one backward pass per example. `tests` check it against per-example
//! backward passes.

use std::ops::Range;

use genlab_rl::nn::{matmul, Activation, Mlp};

/// Runs `net` on `x` `[n, in]` and returns every layer's input (`[0]` is `x`) followed by the
/// output logits: `sizes.len()` matrices, the `l`-th `[n, sizes[l]]`.
pub fn layer_values(net: &Mlp, x: &[f32], n: usize) -> Vec<Vec<f32>> {
    let layers = net.n_layers();
    let mut vals = vec![x.to_vec()];
    let mut off = 0;
    for l in 0..layers {
        let (i, o) = (net.sizes[l], net.sizes[l + 1]);
        let w = &net.params[off..off + o * i];
        let b = &net.params[off + o * i..off + o * i + o];
        off += o * i + o;
        let mut z = vec![0f32; n * o];
        for row in z.chunks_exact_mut(o) {
            row.copy_from_slice(b);
        }
        // z [n, o] += x [n, i] @ W^T [i, o]
        matmul(&mut z, n, o, i, (&vals[l], i, 1), (w, 1, i), true);
        if l + 1 < layers {
            match net.act {
                Activation::Relu => z.iter_mut().for_each(|v| *v = v.max(0.0)),
                Activation::Tanh => z.iter_mut().for_each(|v| *v = v.tanh()),
            }
        }
        vals.push(z);
    }
    vals
}

/// The penultimate layer's activations `[n, sizes[L-1]]`: the feature space of iCaRL.
pub fn features(net: &Mlp, x: &[f32], n: usize) -> Vec<f32> {
    let mut v = layer_values(net, x, n);
    v.swap_remove(net.n_layers() - 1)
}

/// The logits `[n, out]`.
pub fn logits(net: &Mlp, x: &[f32], n: usize) -> Vec<f32> {
    layer_values(net, x, n).pop().expect("an MLP has an output")
}

/// Adds `sum_n (d(-log softmax(z_n)[y_n]) / d theta)^2` to `fisher` (same layout as the
/// parameters), the softmax taken over the outputs `range` and `y_n` the predicted class
/// within it (or `labels[n]`, an output unit, for the empirical Fisher).
pub fn add_fisher(
    net: &Mlp,
    x: &[f32],
    n: usize,
    range: Range<usize>,
    labels: Option<&[u32]>,
    fisher: &mut [f32],
) {
    let vals = layer_values(net, x, n);
    let layers = net.n_layers();
    let out = net.out_dim();
    // dz = softmax - onehot(y) on the range, 0 elsewhere: d(-log p_y) / d logits.
    let mut dz = vec![0f32; n * out];
    for r in 0..n {
        let z = &vals[layers][r * out + range.start..r * out + range.end];
        let y = match labels {
            Some(l) => l[r] as usize - range.start,
            None => argmax(z),
        };
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = z.iter().map(|v| ((v - m) as f64).exp()).collect();
        let s: f64 = e.iter().sum();
        for (k, ek) in e.iter().enumerate() {
            dz[r * out + range.start + k] = (ek / s - if k == y { 1.0 } else { 0.0 }) as f32;
        }
    }
    let mut offs = Vec::with_capacity(layers);
    let mut off = 0;
    for l in 0..layers {
        offs.push(off);
        off += net.sizes[l + 1] * net.sizes[l] + net.sizes[l + 1];
    }
    for l in (0..layers).rev() {
        let (i, o) = (net.sizes[l], net.sizes[l + 1]);
        let wo = offs[l];
        let x2: Vec<f32> = vals[l].iter().map(|v| v * v).collect();
        let dz2: Vec<f32> = dz.iter().map(|v| v * v).collect();
        // F_W [o, i] += (dz^2)^T [o, n] @ (x^2) [n, i]
        matmul(
            &mut fisher[wo..wo + o * i],
            o,
            i,
            n,
            (&dz2, 1, o),
            (&x2, i, 1),
            true,
        );
        let fb = &mut fisher[wo + o * i..wo + o * i + o];
        for row in dz2.chunks_exact(o) {
            for (f, d) in fb.iter_mut().zip(row) {
                *f += d;
            }
        }
        if l == 0 {
            break;
        }
        // dx [n, i] = dz [n, o] @ W [o, i], then through the activation of layer l - 1.
        let w = &net.params[wo..wo + o * i];
        let mut dx = vec![0f32; n * i];
        matmul(&mut dx, n, i, o, (&dz, o, 1), (w, i, 1), false);
        match net.act {
            Activation::Relu => {
                for (g, h) in dx.iter_mut().zip(&vals[l]) {
                    if *h <= 0.0 {
                        *g = 0.0;
                    }
                }
            }
            Activation::Tanh => {
                for (g, h) in dx.iter_mut().zip(&vals[l]) {
                    *g *= 1.0 - h * h;
                }
            }
        }
        dz = dx;
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_core::Rng;
    use genlab_rl::nn::{Cache, Init};

    /// Batched and per-example float32 sums differ by rounding only.
    const FISHER_TOL: f32 = 1e-4;

    #[test]
    fn batched_fisher_equals_the_sum_of_per_example_squared_gradients() {
        let mut rng = Rng::new(3);
        let net = Mlp::new(&[6, 5, 4, 5], Activation::Relu, Init::Torch, &mut rng);
        let n = 7;
        let x = rng.normal_vec(n * 6);
        for labels in [None, Some(vec![1u32, 2, 3, 1, 2, 3, 1])] {
            let range = 1..4;
            let mut fast = vec![0f32; net.num_params()];
            add_fisher(&net, &x, n, range.clone(), labels.as_deref(), &mut fast);
            // Brute force: one backward pass of genlab-rl's MLP per example.
            let mut slow = vec![0f32; net.num_params()];
            let mut cache = Cache::default();
            for r in 0..n {
                let out = net.forward(&x[r * 6..(r + 1) * 6], 1, &mut cache).to_vec();
                let z = &out[range.clone()];
                let y = match &labels {
                    Some(l) => l[r] as usize - range.start,
                    None => argmax(z),
                };
                let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let s: f32 = z.iter().map(|v| (v - m).exp()).sum();
                let mut dout = vec![0f32; 5];
                for (k, v) in z.iter().enumerate() {
                    dout[range.start + k] = (v - m).exp() / s - if k == y { 1.0 } else { 0.0 };
                }
                let mut g = vec![0f32; net.num_params()];
                net.backward(&mut cache, &dout, &mut g, None);
                for (s, gi) in slow.iter_mut().zip(&g) {
                    *s += gi * gi;
                }
            }
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() <= FISHER_TOL * (1.0 + b.abs()), "{a} vs {b}");
            }
            assert!(slow.iter().any(|v| *v > 0.0));
        }
    }

    #[test]
    fn features_are_the_penultimate_activations() {
        let mut rng = Rng::new(4);
        let net = Mlp::new(&[3, 4, 2], Activation::Relu, Init::Torch, &mut rng);
        let x = rng.normal_vec(3);
        let f = features(&net, &x, 1);
        // By hand: relu(W0 x + b0).
        for (o, fo) in f.iter().enumerate() {
            let mut z = net.params[12 + o];
            for (i, xi) in x.iter().enumerate() {
                z += net.params[o * 3 + i] * xi;
            }
            assert!((fo - z.max(0.0)).abs() < 1e-6);
        }
        let mut cache = Cache::default();
        let want = net.forward(&x, 1, &mut cache).to_vec();
        assert_eq!(logits(&net, &x, 1), want);
    }
}
