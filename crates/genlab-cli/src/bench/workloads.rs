//! The fixed benchmark workloads of `genlab bench` and their FLOP counts.
//!
//! Each workload is built exactly like its twin in `scripts/bench/torch_bench.py` (same
//! shapes, batch, initialisation scheme, optimizer), so that the two rates compare the
//! implementations and nothing else:
//!
//! | name | what one iteration is |
//! |---|---|
//! | `mlp` | Linear 2-256-256-2 with SiLU, batch 512, MSE, backward, Adam |
//! | `conv` | 3 convolutions + 1 transposed convolution with a skip, 64x1x28x28, MSE, backward, Adam |
//! | `unet-train` | the MNIST DDPM U-Net, batch 32: MSE to a noise target, backward, Adam, EMA |
//! | `ddim50` | the same U-Net, a 50-step DDIM run on 64 samples, no gradients |
//! | `attention` | the U-Net's attention block, 64 channels at 14x14, batch 64: forward + backward |
//! | `flow-train` | the MNIST flow preset (docs/flows.md), batch 64: NLL (variational dequantisation), backward, Adam |
//!
//! FLOPs are counted from the layer shapes: `2·m·n·k` per matrix product / convolution (the
//! multiply-adds of the forward pass); a training iteration counts 3x its forward (the
//! backward pass computes two products of the same size per layer). Elementwise work
//! (normalisation, activations, the optimizer) is not counted: the GFLOP/s figure is a
//! lower bound on what the matrix kernels achieve.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

use genlab_core::{ParamStore, Rng};
use genlab_models::flow::{Flow, FlowConfig};
use genlab_models::DataSpace;
use genlab_nn::{silu, AttentionBlock, Conv, ConvTranspose, Linear, UNet, UNetConfig};
use genlab_sampling::{build_sampler, Denoiser, NoiseSchedule, SamplerOptions};
use genlab_train::ema::Ema;
use genlab_train::optim::{AdamW, AdamWConfig};

/// Adam's learning rate in every training workload (PyTorch's default).
const LR: f64 = 1e-3;
/// EMA decay of the U-Net workload (the MNIST run's).
const EMA_DECAY: f64 = 0.998;

/// The workloads, in the order `all` runs them: name, unit of the rate, one-line summary.
pub const WORKLOADS: &[(&str, &str, &str)] = &[
    ("mlp", "steps/s", "MLP 2-256-256-2 (SiLU), batch 512, Adam"),
    (
        "conv",
        "steps/s",
        "3 conv + 1 transposed conv with a skip, 64x1x28x28, Adam",
    ),
    (
        "unet-train",
        "steps/s",
        "MNIST DDPM U-Net (base 16, [1,2,2], 1 block), batch 32, Adam + EMA",
    ),
    (
        "ddim50",
        "runs/s",
        "the same U-Net: 50 DDIM steps on 64 samples, no gradients",
    ),
    (
        "attention",
        "steps/s",
        "U-Net attention block, 64 ch at 14x14, batch 64, forward + backward",
    ),
    (
        "flow-train",
        "steps/s",
        "MNIST flow preset (2 scales x 8 Glow steps, 64 ch), batch 64, NLL + Adam",
    ),
];

/// The U-Net configuration of the MNIST run in docs/mnist.md.
pub fn mnist_unet() -> UNetConfig {
    UNetConfig {
        base_channels: 16,
        channel_mult: vec![1, 2, 2],
        num_res_blocks: 1,
        attention_at_lowest: true,
        heads: 1,
        groups: 8,
    }
}

/// One runnable workload: `iter` does one timed iteration.
pub struct Workload {
    pub params: usize,
    /// Forward+backward (or inference) FLOPs of one iteration, counted from shapes.
    pub flop_per_iter: f64,
    pub iter: Box<dyn FnMut() -> anyhow::Result<()>>,
}

fn adam(ps: &ParamStore) -> anyhow::Result<AdamW> {
    // weight_decay 0: plain Adam, like torch.optim.Adam's defaults.
    Ok(AdamW::new(ps.vars(), AdamWConfig::default())?)
}

/// Builds workload `name` (one of [`WORKLOADS`]).
pub fn build(name: &str) -> anyhow::Result<Workload> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    match name {
        "mlp" => {
            let (b, h) = (512, 256);
            let ps = ParamStore::new(0, &dev);
            let vb = ps.vb();
            let l1 = Linear::new(2, h, vb.pp("l1"))?;
            let l2 = Linear::new(h, h, vb.pp("l2"))?;
            let l3 = Linear::new(h, 2, vb.pp("l3"))?;
            let x = rng.normal_tensor(&[b, 2], &dev)?;
            let y = rng.normal_tensor(&[b, 2], &dev)?;
            let mut opt = adam(&ps)?;
            let flop = 3.0 * linear_flops(b, &[(2, h), (h, h), (h, 2)]);
            Ok(Workload {
                params: ps.num_params(),
                flop_per_iter: flop,
                iter: Box::new(move || {
                    let out = l3.forward(&silu(&l2.forward(&silu(&l1.forward(&x)?)?)?)?)?;
                    let loss = (out - &y)?.sqr()?.mean_all()?;
                    opt.step(&loss.backward()?, LR, 1.0)?;
                    Ok(())
                }),
            })
        }
        "conv" => {
            let b = 64;
            let ps = ParamStore::new(0, &dev);
            let vb = ps.vb();
            let c1 = Conv::new(1, 32, 3, 1, 1, vb.pp("c1"))?;
            let c2 = Conv::new(32, 64, 3, 2, 1, vb.pp("c2"))?;
            let up = ConvTranspose::new(64, 32, 4, 2, 1, vb.pp("up"))?;
            let c3 = Conv::new(32, 1, 3, 1, 1, vb.pp("c3"))?;
            let x = rng.normal_tensor(&[b, 1, 28, 28], &dev)?;
            let y = rng.normal_tensor(&[b, 1, 28, 28], &dev)?;
            let mut opt = adam(&ps)?;
            let fwd = conv_flops(b, 1, 32, 3, 28 * 28)
                + conv_flops(b, 32, 64, 3, 14 * 14)
                // transposed: every input position meets every output channel and tap
                + conv_flops(b, 32, 64, 4, 14 * 14)
                + conv_flops(b, 32, 1, 3, 28 * 28);
            Ok(Workload {
                params: ps.num_params(),
                flop_per_iter: 3.0 * fwd,
                iter: Box::new(move || {
                    let h1 = silu(&c1.forward(&x)?)?;
                    let h2 = silu(&c2.forward(&h1)?)?;
                    let h3 = silu(&up.forward(&h2)?)?;
                    let out = c3.forward(&(h3 + &h1)?)?;
                    let loss = (out - &y)?.sqr()?.mean_all()?;
                    opt.step(&loss.backward()?, LR, 1.0)?;
                    Ok(())
                }),
            })
        }
        "unet-train" => {
            let b = 32;
            let cfg = mnist_unet();
            let ps = ParamStore::new(0, &dev);
            let net = UNet::new(&cfg, 1, 1, ps.vb())?;
            let shadow = ParamStore::new(0, &dev);
            UNet::new(&cfg, 1, 1, shadow.vb())?;
            let ema = Ema::new(&shadow, &ps, EMA_DECAY)?;
            let x = rng.normal_tensor(&[b, 1, 28, 28], &dev)?;
            let eps = rng.normal_tensor(&[b, 1, 28, 28], &dev)?;
            let t: Vec<f32> = (0..b).map(|_| rng.below(1000) as f32).collect();
            let t = Tensor::from_vec(t, b, &dev)?;
            let mut opt = adam(&ps)?;
            let flop = 3.0 * unet_forward_flops(&cfg, b, 1, 28);
            Ok(Workload {
                params: ps.num_params(),
                flop_per_iter: flop,
                iter: Box::new(move || {
                    let loss = (net.forward(&x, &t)? - &eps)?.sqr()?.mean_all()?;
                    let n = opt.t;
                    opt.step(&loss.backward()?, LR, 1.0)?;
                    ema.update(n)?;
                    Ok(())
                }),
            })
        }
        "ddim50" => {
            let (b, steps) = (64, 50);
            let cfg = mnist_unet();
            let ps = ParamStore::new(0, &dev);
            UNet::new(&cfg, 1, 1, ps.vb())?;
            // Sampling runs on plain tensors, not variables (as `genlab sample` loads a
            // checkpoint): no autograd graph is recorded, so activations are freed as the
            // forward pass goes.
            let vb = candle_nn::VarBuilder::from_tensors(ps.tensors(), DType::F32, &dev);
            let net = UNet::new(&cfg, 1, 1, vb)?;
            let schedule = NoiseSchedule::new(&Default::default(), 1000)?;
            let opts = SamplerOptions {
                steps,
                eta: 0.0,
                clip_x0: None,
                ..Default::default()
            };
            let sampler = build_sampler("ddim", &opts)?;
            let x_t = rng.normal_tensor(&[b, 1, 28, 28], &dev)?;
            let params = ps.num_params();
            let flop = steps as f64 * unet_forward_flops(&cfg, b, 1, 28);
            let model = UNetEps(net);
            Ok(Workload {
                params,
                flop_per_iter: flop,
                iter: Box::new(move || {
                    let out = sampler.sample(
                        &model,
                        &schedule,
                        x_t.clone(),
                        &mut Rng::new(1),
                        &mut |_, _| {},
                    )?;
                    anyhow::ensure!(out.nfe == steps, "DDIM ran {} steps", out.nfe);
                    Ok(())
                }),
            })
        }
        "attention" => {
            let (b, c, hw) = (64, 64, 14);
            let ps = ParamStore::new(0, &dev);
            let block = AttentionBlock::new(c, 1, 8, ps.vb())?;
            let x = rng.normal_tensor(&[b, c, hw, hw], &dev)?;
            let flop = 3.0 * attention_flops(b, c, hw * hw);
            Ok(Workload {
                params: ps.num_params(),
                flop_per_iter: flop,
                iter: Box::new(move || {
                    let loss = block.forward(&x)?.sqr()?.mean_all()?;
                    loss.backward()?;
                    Ok(())
                }),
            })
        }
        "flow-train" => {
            let b = 64;
            let cfg = FlowConfig::for_data(&DataSpace {
                shape: vec![1, 28, 28],
                images: true,
            });
            let ps = ParamStore::new(0, &dev);
            let flow = Flow::new(&cfg, ps.vb())?;
            // Pixels on MNIST's 256 levels, uniformly drawn (the speed does not depend on them).
            let k: Vec<f32> = (0..b * 28 * 28)
                .map(|_| rng.below(256) as f32 / 255.0)
                .collect();
            let x = Tensor::from_vec(k, (b, 1, 28, 28), &dev)?;
            // ActNorm's data-dependent initialisation, once, outside the timed iterations
            // (training does it on the first batch).
            let vars: HashMap<String, candle_core::Var> = ps.vars().into_iter().collect();
            for (name, v) in flow.data_init(&x)? {
                let var = vars
                    .get(&name)
                    .ok_or_else(|| anyhow::anyhow!("flow data init: no variable `{name}`"))?;
                var.set(&v)?;
            }
            let mut opt = adam(&ps)?;
            let mut noise = Rng::new(1); // the dequantisation noise of each step
            let flop = 3.0 * flow_forward_flops(&cfg, b)?;
            Ok(Workload {
                params: ps.num_params(),
                flop_per_iter: flop,
                iter: Box::new(move || {
                    let t = flow.terms(&x, &mut noise)?;
                    opt.step(&t.loss.backward()?, LR, 1.0)?;
                    Ok(())
                }),
            })
        }
        other => anyhow::bail!(
            "unknown workload `{other}`; expected one of: all, {}",
            WORKLOADS.iter().map(|w| w.0).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The U-Net as an epsilon predictor for the sampler (no gradients are recorded: the
/// parameters are variables, so the output is detached).
struct UNetEps(UNet);

impl Denoiser for UNetEps {
    fn predict(&self, x: &Tensor, t: f64) -> genlab_core::Result<Tensor> {
        let b = x.dim(0)?;
        let tt = Tensor::full(t as f32, b, x.device())?.to_dtype(DType::F32)?;
        Ok(self.0.forward(x, &tt)?.detach())
    }
}

/// `2·B·Σ in·out` for a stack of linear layers on a batch of `b`.
fn linear_flops(b: usize, layers: &[(usize, usize)]) -> f64 {
    layers.iter().map(|&(i, o)| 2.0 * (b * i * o) as f64).sum()
}

/// A k x k convolution from `c_in` to `c_out` channels over `positions` output positions
/// (for a transposed convolution: its input positions).
fn conv_flops(b: usize, c_in: usize, c_out: usize, k: usize, positions: usize) -> f64 {
    2.0 * (b * positions * c_in * c_out * k * k) as f64
}

/// Attention block on `n` positions of `c` channels: qkv and output 1x1 projections, the
/// scores `q kᵀ` and the weighted sum of values.
fn attention_flops(b: usize, c: usize, n: usize) -> f64 {
    conv_flops(b, c, 3 * c, 1, n) + conv_flops(b, c, c, 1, n) + 2.0 * 2.0 * (b * n * n * c) as f64
}

/// Forward FLOPs of the image [`Flow`] of `cfg` (affine couplings with channel masks, the
/// image preset's shape) on a batch of `b`: the convolutions of every conditioner (the
/// variational dequantiser's on the pixels, each coupling's on its half or all of the
/// channels) and the 1x1 invertible maps. Elementwise work is not counted.
pub fn flow_forward_flops(cfg: &FlowConfig, b: usize) -> anyhow::Result<f64> {
    use genlab_models::flow::{DequantizationKind, MaskKind, Mixing};
    let [c0, h0, w0] = match cfg.data.shape.as_slice() {
        [c, h, w] if cfg.data.images => [*c, *h, *w],
        s => anyhow::bail!("flow FLOPs are counted for images [C, H, W], got {s:?}"),
    };
    anyhow::ensure!(
        cfg.mask == MaskKind::Channel,
        "flow FLOPs are counted for channel masks"
    );
    // The conditioner CNN: 3x3 conv, 1x1 convs, 3x3 conv to k * c_out channels.
    let net = |c_in: usize, c_out: usize, k: usize, n: usize| {
        let mut f = 0.0;
        let mut ci = c_in;
        for (i, &h) in cfg.hidden.iter().enumerate() {
            f += conv_flops(b, ci, h, if i == 0 { 3 } else { 1 }, n);
            ci = h;
        }
        f + conv_flops(b, ci, k * c_out, 3, n)
    };
    let coupling = |c: usize, n: usize| {
        if cfg.narrow_conditioner {
            net(c / 2, c / 2, 2, n)
        } else {
            net(c, c, 2, n)
        }
    };
    let mut f = 0.0;
    if cfg.dequantization == DequantizationKind::Variational {
        f += net(c0, c0, 2, h0 * w0);
    }
    let (mut c, mut h, mut w) = (c0, h0, w0);
    for s in 0..cfg.scales {
        (c, h, w) = (4 * c, h / 2, w / 2);
        let n = h * w;
        for _ in 0..cfg.layers {
            if cfg.mixing == Mixing::InvLinear {
                f += conv_flops(b, c, c, 1, n);
            }
            f += coupling(c, n);
        }
        if s + 1 < cfg.scales {
            if cfg.split_prior {
                f += coupling(c, n);
            }
            c /= 2;
        }
    }
    Ok(f)
}

/// Forward FLOPs of [`UNet`] on `[b, c_in, s, s]`, walking the same structure as
/// `UNet::new` (same level channels, blocks, skips, attention placement).
pub fn unet_forward_flops(cfg: &UNetConfig, b: usize, c_in: usize, s: usize) -> f64 {
    let base = cfg.base_channels;
    let temb = 4 * base;
    let levels: Vec<usize> = cfg.channel_mult.iter().map(|m| base * m).collect();
    let lowest = levels.len() - 1;
    let res = |ci: usize, co: usize, n: usize| {
        conv_flops(b, ci, co, 3, n)
            + conv_flops(b, co, co, 3, n)
            + if ci != co {
                conv_flops(b, ci, co, 1, n)
            } else {
                0.0
            }
            + 2.0 * (b * temb * co) as f64
    };
    let mut f = linear_flops(b, &[(base, temb), (temb, temb)]);
    let mut size = s;
    f += conv_flops(b, c_in, base, 3, size * size);
    let mut skips = vec![(base, size)];
    let mut ch = base;
    for (i, &c) in levels.iter().enumerate() {
        for _ in 0..cfg.num_res_blocks {
            f += res(ch, c, size * size);
            ch = c;
            if cfg.attention_at_lowest && i == lowest {
                f += attention_flops(b, c, size * size);
            }
            skips.push((ch, size));
        }
        if i != lowest {
            let next = size.div_ceil(2);
            f += conv_flops(b, ch, ch, 3, next * next);
            size = next;
            skips.push((ch, size));
        }
    }
    f += 2.0 * res(ch, ch, size * size);
    if cfg.attention_at_lowest {
        f += attention_flops(b, ch, size * size);
    }
    for (i, &c) in levels.iter().enumerate().rev() {
        for _ in 0..=cfg.num_res_blocks {
            let (skip_ch, _) = skips.pop().expect("one skip per decoder block");
            f += res(ch + skip_ch, c, size * size);
            ch = c;
            if cfg.attention_at_lowest && i == lowest {
                f += attention_flops(b, c, size * size);
            }
        }
        if i != 0 {
            let (_, up) = *skips.last().expect("skip for the next level");
            f += conv_flops(b, ch, ch, 3, up * up);
            size = up;
        }
    }
    f + conv_flops(b, ch, c_in, 3, size * size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_flops_match_a_hand_count_for_one_level() {
        // One level, one block, no attention, 4x4 (16 positions), batch 1, base 4 (temb 16),
        // 1 channel: time MLP 2(4·16 + 16·16) = 640; conv_in 2·16·1·4·9 = 1152;
        // down res(4->4): 2 convs of 2·16·4·4·9 = 4608, temb 2·16·4 = 128 -> 9344;
        // mid: 2 res(4->4) = 18688; up: 2 res(8->4): conv1 2·16·8·4·9 = 9216, conv2 4608,
        // 1x1 skip 2·16·8·4 = 1024, temb 128 -> 14976 each = 29952; out conv 1152.
        let cfg = UNetConfig {
            base_channels: 4,
            channel_mult: vec![1],
            num_res_blocks: 1,
            attention_at_lowest: false,
            heads: 1,
            groups: 2,
        };
        let want = 640.0 + 1152.0 + 9344.0 + 18688.0 + 29952.0 + 1152.0;
        assert_eq!(unet_forward_flops(&cfg, 1, 1, 4), want);
    }

    #[test]
    fn flow_flops_match_a_hand_count() {
        // The MNIST preset (hidden [64, 64], halved conditioners, split prior, variational
        // dequantisation), batch 1. Conditioner on c_in -> 2 c_out channels over n pixels:
        // 2n(9·64·c_in + 64·64 + 9·64·2·c_out).
        let cfg = FlowConfig::for_data(&DataSpace {
            shape: vec![1, 28, 28],
            images: true,
        });
        let net = |ci: f64, co: f64, n: f64| 2.0 * n * (576.0 * ci + 4096.0 + 1152.0 * co);
        let deq = net(1.0, 1.0, 784.0);
        // Scale 0: 4 channels at 14x14, 8 steps of (4x4 map + coupling on 2 -> 2) + prior.
        let s0 = 8.0 * (2.0 * 196.0 * 16.0) + 9.0 * net(2.0, 2.0, 196.0);
        // Scale 1: 2 kept channels squeezed to 8 at 7x7, 8 steps, no prior.
        let s1 = 8.0 * (2.0 * 49.0 * 64.0 + net(4.0, 4.0, 49.0));
        assert_eq!(flow_forward_flops(&cfg, 1).unwrap(), deq + s0 + s1);
        assert_eq!(flow_forward_flops(&cfg, 3).unwrap(), 3.0 * (deq + s0 + s1));
    }

    #[test]
    fn every_workload_builds_and_runs_one_iteration() {
        for (name, _, _) in WORKLOADS {
            if *name == "ddim50" {
                continue; // 50 U-Net passes at batch 64: too slow for a unit test
            }
            let mut w = build(name).unwrap();
            assert!(w.params > 0 && w.flop_per_iter > 0.0, "{name}");
            (w.iter)().unwrap();
        }
        assert!(build("nope").is_err());
    }
}
