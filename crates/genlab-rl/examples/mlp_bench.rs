//! Why genlab-rl's networks are hand-written: one DQN-sized update (4-256-256-2 MLP, batch
//! 64: forward, backward, Adam) and one batch-1 forward pass (acting), timed with candle's
//! autograd and genlab-train's AdamW against `genlab_rl::nn::Mlp` and `optim::Adam`.
//!
//! Run: cargo run --release -p genlab-rl --example mlp_bench

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use genlab_core::Rng;
use genlab_rl::nn::{Activation, Cache, Init, Mlp};
use genlab_rl::optim::Adam;

const SIZES: [usize; 4] = [4, 256, 256, 2];
const BATCH: usize = 64;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..reps / 10 {
        f();
    }
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect(),
    )
}

fn main() {
    // One thread on both sides, as `genlab` runs by default (set before candle starts its
    // pools; with the default two threads on a busy two-core machine candle's update took
    // 12 ms instead of 1).
    std::env::set_var("RAYON_NUM_THREADS", "1");
    std::env::set_var("CANDLE_NUM_THREADS", "1");
    let mut rng = Rng::new(0);
    let net = Mlp::new(&SIZES, Activation::Relu, Init::Torch, &mut rng);
    let x = rng.normal_vec(BATCH * 4);
    let dout = rng.normal_vec(BATCH * 2);

    // candle: the same layers as Vars, autograd, genlab-train's AdamW.
    let dev = Device::Cpu;
    let mut vars = Vec::new();
    let mut off = 0;
    for l in 0..3 {
        let (i, o) = (SIZES[l], SIZES[l + 1]);
        vars.push(Var::from_vec(net.params[off..off + o * i].to_vec(), (o, i), &dev).unwrap());
        off += o * i;
        vars.push(Var::from_vec(net.params[off..off + o].to_vec(), o, &dev).unwrap());
        off += o;
    }
    let named: Vec<(String, Var)> = vars
        .iter()
        .enumerate()
        .map(|(k, v)| (format!("p{k}"), v.clone()))
        .collect();
    let mut adamw = genlab_train::optim::AdamW::new(named, Default::default()).unwrap();
    let forward = |x: &Tensor| {
        let mut h = x.clone();
        for l in 0..3 {
            h = h
                .matmul(&vars[2 * l].as_tensor().t().unwrap())
                .unwrap()
                .broadcast_add(vars[2 * l + 1].as_tensor())
                .unwrap();
            if l < 2 {
                h = h.relu().unwrap();
            }
        }
        h
    };
    let xt = Tensor::from_vec(x.clone(), (BATCH, 4), &dev).unwrap();
    let dt = Tensor::from_vec(dout.clone(), (BATCH, 2), &dev).unwrap();
    let x1 = Tensor::from_vec(x[..4].to_vec(), (1, 4), &dev).unwrap();
    let candle_update = time(2000, || {
        let loss = (forward(&xt) * &dt).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        adamw.step(&g, 1e-4, 1.0).unwrap();
    });
    let candle_act = time(20000, || {
        let _ = forward(&x1).to_vec2::<f32>().unwrap();
    });

    let mut net = net;
    let mut cache = Cache::default();
    let mut grad = vec![0f32; net.num_params()];
    let mut adam = Adam::new(net.num_params(), 1e-8);
    let ours_update = time(2000, || {
        net.forward(&x, BATCH, &mut cache);
        grad.fill(0.0);
        net.backward(&mut cache, &dout, &mut grad, None);
        adam.step(&mut net.params, &grad, 1e-4);
    });
    let ours_act = time(20000, || {
        let _ = net.forward(&x[..4], 1, &mut cache)[0];
    });
    println!("4-256-256-2 MLP, median microseconds (one thread):");
    println!("  update, batch {BATCH}: candle autograd + AdamW {candle_update:.1}, genlab-rl {ours_update:.1} ({:.1}x)", candle_update / ours_update);
    println!(
        "  act, batch 1:      candle forward {candle_act:.1}, genlab-rl {ours_act:.1} ({:.1}x)",
        candle_act / ours_act
    );
}
