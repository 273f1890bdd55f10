//! The hand-written MLP against independent references: candle's autograd on the same
//! weights (forward, parameter gradients and input gradients), and central finite
//! differences in f64 of the actor-critic losses written out in `policy.rs`.

use candle_core::{Device, Tensor, Var};
use genlab_core::Rng;
use genlab_rl::env::Space;
use genlab_rl::nn::{Activation, Cache, Init, Mlp};
use genlab_rl::optim::OptimizerKind;
use genlab_rl::policy::{ActorCritic, NetConfig};

/// float32 results of two summation orders agree to this (relative to the largest entry).
const AUTOGRAD_TOL: f32 = 2e-5;
/// Central differences with step 1e-2 on float32 networks.
const FD_TOL: f64 = 2e-3;

fn candle_mlp(net: &Mlp, x: &Tensor) -> (Tensor, Vec<(Var, Var)>) {
    let mut vars = Vec::new();
    let mut off = 0;
    let mut h = x.clone();
    let n = net.sizes.len() - 1;
    for l in 0..n {
        let (i, o) = (net.sizes[l], net.sizes[l + 1]);
        let w = Var::from_vec(net.params[off..off + o * i].to_vec(), (o, i), &Device::Cpu).unwrap();
        off += o * i;
        let b = Var::from_vec(net.params[off..off + o].to_vec(), o, &Device::Cpu).unwrap();
        off += o;
        h = h
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        if l + 1 < n {
            h = match net.act {
                Activation::Relu => h.relu().unwrap(),
                Activation::Tanh => h.tanh().unwrap(),
            };
        }
        vars.push((w, b));
    }
    (h, vars)
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6)
}

#[test]
fn mlp_gradients_match_candle_autograd() {
    for (act, batch) in [(Activation::Relu, 7), (Activation::Tanh, 64)] {
        let mut rng = Rng::new(11);
        // Wide enough that the GEMM path runs, not only the small loop.
        let net = Mlp::new(&[5, 48, 40, 3], act, Init::Torch, &mut rng);
        let x: Vec<f32> = rng.normal_vec(batch * 5);
        let dout: Vec<f32> = rng.normal_vec(batch * 3);
        let mut cache = Cache::default();
        let out = net.forward(&x, batch, &mut cache).to_vec();
        let mut grad = vec![0f32; net.num_params()];
        let mut dx = Vec::new();
        net.backward(&mut cache, &dout, &mut grad, Some(&mut dx));

        let xv = Var::from_vec(x.clone(), (batch, 5), &Device::Cpu).unwrap();
        let (y, vars) = candle_mlp(&net, xv.as_tensor());
        let want_out = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let s = max_abs(&want_out);
        for (a, b) in out.iter().zip(&want_out) {
            assert!(
                (a - b).abs() <= AUTOGRAD_TOL * s,
                "{act:?} forward {a} vs {b}"
            );
        }
        let loss = (y * Tensor::from_vec(dout.clone(), (batch, 3), &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let g = loss.backward().unwrap();
        let mut want = Vec::new();
        for (w, b) in &vars {
            want.extend(
                g.get(w.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            );
            want.extend(g.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap());
        }
        let s = max_abs(&want);
        for (k, (a, b)) in grad.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= AUTOGRAD_TOL * s,
                "{act:?} param grad {k}: {a} vs {b}"
            );
        }
        let want_dx = g
            .get(xv.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let s = max_abs(&want_dx);
        for (a, b) in dx.iter().zip(&want_dx) {
            assert!(
                (a - b).abs() <= AUTOGRAD_TOL * s,
                "{act:?} input grad {a} vs {b}"
            );
        }
    }
}

/// L = sum_i c_i log pi(a_i|s_i) + e * sum_i H_i + sum_i v_i V(s_i), for finite differences.
fn ac_loss(
    ac: &mut ActorCritic,
    obs: &[f32],
    acts: &[f32],
    n: usize,
    c: &[f32],
    e: f32,
    v: &[f32],
) -> f64 {
    let (mut lp, mut h, mut val) = (Vec::new(), Vec::new(), Vec::new());
    ac.evaluate(obs, acts, n, &mut lp, &mut h, &mut val);
    (0..n)
        .map(|i| (c[i] * lp[i] + e * h[i] + v[i] * val[i]) as f64)
        .sum()
}

#[test]
fn actor_critic_gradients_match_finite_differences() {
    for space in [Space::Discrete(3), Space::uniform_box(2, -1.0, 1.0)] {
        let mut rng = Rng::new(5);
        let net = NetConfig {
            hidden: vec![8],
            ..NetConfig::default()
        };
        let mut ac = ActorCritic::new(4, &space, &net, OptimizerKind::Adam { eps: 1e-8 }, &mut rng);
        // Bigger output weights than the 0.01 gain so that the policy is far from uniform.
        for p in ac.pi.params.iter_mut() {
            *p *= 30.0;
        }
        if !ac.log_std.is_empty() {
            ac.log_std = vec![-0.3, 0.2];
        }
        let n = 5;
        let obs = rng.normal_vec(n * 4);
        let acts: Vec<f32> = match space {
            Space::Discrete(_) => (0..n).map(|i| (i % 3) as f32).collect(),
            _ => rng.normal_vec(n * 2),
        };
        let c = rng.normal_vec(n);
        let v = rng.normal_vec(n);
        let e = 0.7f32;
        let (mut lp, mut h, mut val) = (Vec::new(), Vec::new(), Vec::new());
        ac.evaluate(&obs, &acts, n, &mut lp, &mut h, &mut val);
        ac.zero_grad();
        ac.backward(&c, e, &v);
        let analytic = ac.g_pi.clone();
        let eps = 1e-2f32;
        for k in (0..ac.pi.params.len()).step_by(7) {
            let keep = ac.pi.params[k];
            ac.pi.params[k] = keep + eps;
            let up = ac_loss(&mut ac, &obs, &acts, n, &c, e, &v);
            ac.pi.params[k] = keep - eps;
            let down = ac_loss(&mut ac, &obs, &acts, n, &c, e, &v);
            ac.pi.params[k] = keep;
            let fd = (up - down) / (2.0 * eps as f64);
            assert!(
                (fd - analytic[k] as f64).abs() <= FD_TOL * (1.0 + fd.abs()),
                "{space:?} pi param {k}: finite difference {fd} vs backward {}",
                analytic[k]
            );
        }
        for j in 0..ac.log_std.len() {
            let keep = ac.log_std[j];
            ac.log_std[j] = keep + eps;
            let up = ac_loss(&mut ac, &obs, &acts, n, &c, e, &v);
            ac.log_std[j] = keep - eps;
            let down = ac_loss(&mut ac, &obs, &acts, n, &c, e, &v);
            ac.log_std[j] = keep;
            let fd = (up - down) / (2.0 * eps as f64);
            assert!(
                (fd - ac.g_std[j] as f64).abs() <= FD_TOL * (1.0 + fd.abs()),
                "log_std {j}: {fd} vs {}",
                ac.g_std[j]
            );
        }
        let analytic_v = ac.g_vf.clone();
        for k in (0..ac.vf.params.len()).step_by(5) {
            let keep = ac.vf.params[k];
            ac.vf.params[k] = keep + eps;
            let up = ac_loss(&mut ac, &obs, &acts, n, &c, e, &v);
            ac.vf.params[k] = keep - eps;
            let down = ac_loss(&mut ac, &obs, &acts, n, &c, e, &v);
            ac.vf.params[k] = keep;
            let fd = (up - down) / (2.0 * eps as f64);
            assert!(
                (fd - analytic_v[k] as f64).abs() <= FD_TOL * (1.0 + fd.abs()),
                "vf param {k}"
            );
        }
    }
}
