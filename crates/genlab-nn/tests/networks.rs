//! Shapes, gradients, determinism and config checks of the public networks.

// The f64 reference is written as index loops to mirror the formulas.
#![allow(clippy::needless_range_loop)]

use candle_core::{DType, Device, Tensor};
use genlab_core::{ParamStore, Rng};
use genlab_nn::{AttentionBlock, MlpDenoiser, MlpDenoiserConfig, UNet, UNetConfig};

/// f32 agreement between the attention block and its f64 brute-force reference.
const ATTN_TOL: f64 = 1e-5;

fn randn(rng: &mut Rng, shape: &[usize]) -> Tensor {
    rng.normal_tensor(shape, &Device::Cpu).unwrap()
}

fn timesteps(rng: &mut Rng, b: usize) -> Tensor {
    rng.uniform_tensor(0.0, 999.0, &[b], &Device::Cpu).unwrap()
}

/// Runs `forward`, backpropagates the mean square of its output and asserts that every
/// variable of `store` gets a gradient with a non-zero absolute sum.
fn assert_all_vars_get_gradients(store: &ParamStore, out: &Tensor) {
    let loss = out.sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    assert!(!store.is_empty());
    for (name, var) in store.vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("variable `{name}` received no gradient"));
        let s = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            s > 0.0 && s.is_finite(),
            "variable `{name}` has gradient abs-sum {s}"
        );
    }
}

fn bytes(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn mlp_output_shape_and_gradients() {
    let store = ParamStore::new(0, &Device::Cpu);
    let net = MlpDenoiser::new(&MlpDenoiserConfig::default(), 2, store.vb()).unwrap();
    let mut rng = Rng::new(1);
    let x = randn(&mut rng, &[2, 2]);
    let t = timesteps(&mut rng, 2);
    let y = net.forward(&x, &t).unwrap();
    assert_eq!(y.dims(), &[2, 2]);
    assert_eq!(y.dtype(), DType::F32);
    assert_all_vars_get_gradients(&store, &y);
    // Wrong shapes are errors, not panics.
    assert!(net.forward(&randn(&mut rng, &[2, 3]), &t).is_err());
    assert!(net.forward(&x, &timesteps(&mut rng, 3)).is_err());
}

#[test]
fn unet_tiny_8x8_shape_and_gradients() {
    let store = ParamStore::new(0, &Device::Cpu);
    let cfg = UNetConfig::tiny();
    cfg.validate(8).unwrap();
    let net = UNet::new(&cfg, 1, 1, store.vb()).unwrap();
    let mut rng = Rng::new(1);
    let y = net
        .forward(&randn(&mut rng, &[2, 1, 8, 8]), &timesteps(&mut rng, 2))
        .unwrap();
    assert_eq!(y.dims(), &[2, 1, 8, 8]);
    assert_all_vars_get_gradients(&store, &y);
}

#[test]
fn unet_default_28x28_shape_and_gradients() {
    let store = ParamStore::new(0, &Device::Cpu);
    let cfg = UNetConfig::default();
    cfg.validate(28).unwrap();
    let net = UNet::new(&cfg, 1, 1, store.vb()).unwrap();
    let names: Vec<String> = store.vars().into_iter().map(|(n, _)| n).collect();
    for expected in [
        "conv_in.weight",
        "time.lin1.weight",
        "down.0.res.1.conv1.weight",
        "down.1.res.0.skip.weight",
        "down.2.attn.1.qkv.weight",
        "down.1.downsample.conv.weight",
        "mid.attn.proj.bias",
        "mid.res.1.norm2.weight",
        "up.0.res.2.conv2.bias",
        "up.2.upsample.conv.weight",
        "out.norm.bias",
        "out.conv.weight",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "missing {expected} in {names:?}"
        );
    }
    let mut rng = Rng::new(1);
    let y = net
        .forward(&randn(&mut rng, &[2, 1, 28, 28]), &timesteps(&mut rng, 2))
        .unwrap();
    assert_eq!(y.dims(), &[2, 1, 28, 28]);
    assert_all_vars_get_gradients(&store, &y);
}

#[test]
fn unet_other_channel_counts_and_odd_sizes() {
    // 3 -> 2 channels; 7x7 goes 7 -> 4 and back up to 8, cropped to the 7x7 skip.
    let store = ParamStore::new(0, &Device::Cpu);
    let net = UNet::new(&UNetConfig::tiny(), 3, 2, store.vb()).unwrap();
    let mut rng = Rng::new(1);
    let y = net
        .forward(&randn(&mut rng, &[2, 3, 7, 7]), &timesteps(&mut rng, 2))
        .unwrap();
    assert_eq!(y.dims(), &[2, 2, 7, 7]);
    assert_all_vars_get_gradients(&store, &y);
    // Mismatched inputs are errors.
    assert!(net
        .forward(&randn(&mut rng, &[2, 1, 8, 8]), &timesteps(&mut rng, 2))
        .is_err());
    assert!(net
        .forward(&randn(&mut rng, &[2, 3, 8, 8]), &timesteps(&mut rng, 1))
        .is_err());
}

#[test]
fn same_seed_same_output_bytes() {
    let run_unet = |seed: u64| {
        let store = ParamStore::new(seed, &Device::Cpu);
        let net = UNet::new(&UNetConfig::tiny(), 1, 1, store.vb()).unwrap();
        let mut rng = Rng::new(5);
        bytes(
            &net.forward(&randn(&mut rng, &[2, 1, 8, 8]), &timesteps(&mut rng, 2))
                .unwrap(),
        )
    };
    assert_eq!(run_unet(3), run_unet(3));
    assert_ne!(run_unet(3), run_unet(4));
    let run_mlp = |seed: u64| {
        let store = ParamStore::new(seed, &Device::Cpu);
        let net = MlpDenoiser::new(&MlpDenoiserConfig::default(), 2, store.vb()).unwrap();
        let mut rng = Rng::new(5);
        bytes(
            &net.forward(&randn(&mut rng, &[16, 2]), &timesteps(&mut rng, 16))
                .unwrap(),
        )
    };
    assert_eq!(run_mlp(3), run_mlp(3));
    assert_ne!(run_mlp(3), run_mlp(4));
}

#[test]
fn attention_matches_brute_force() {
    let (b, c, h, w, heads, groups) = (2usize, 4usize, 2usize, 3usize, 2usize, 2usize);
    let store = ParamStore::new(0, &Device::Cpu);
    let attn = AttentionBlock::new(c, heads, groups, store.vb()).unwrap();
    // Perturb every parameter (GroupNorm starts at weight 1, bias 0) so all of them matter.
    let mut rng = Rng::new(9);
    for (_, var) in store.vars() {
        var.set(&randn(&mut rng, var.dims())).unwrap();
    }
    let x = randn(&mut rng, &[b, c, h, w]);
    let y: Vec<f32> = attn
        .forward(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();

    let p = store.tensors();
    let get = |n: &str| -> Vec<f64> {
        let v: Vec<f32> = p[n].flatten_all().unwrap().to_vec1().unwrap();
        v.into_iter().map(f64::from).collect()
    };
    let (gw, gb) = (get("norm.weight"), get("norm.bias"));
    let (qw, qb) = (get("qkv.weight"), get("qkv.bias"));
    let (pw, pb) = (get("proj.weight"), get("proj.bias"));
    let xs: Vec<f64> = x
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let n = h * w;
    let d = c / heads;
    let cpg = c / groups;
    for bi in 0..b {
        let xb = |ci: usize, pos: usize| xs[(bi * c + ci) * n + pos];
        // GroupNorm, eps 1e-5, biased variance over (channels of the group) x positions.
        let mut hn = vec![vec![0f64; n]; c];
        for g in 0..groups {
            let vals: Vec<f64> = (g * cpg..(g + 1) * cpg)
                .flat_map(|ci| (0..n).map(move |pos| (ci, pos)))
                .map(|(ci, pos)| xb(ci, pos))
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            for ci in g * cpg..(g + 1) * cpg {
                for pos in 0..n {
                    hn[ci][pos] = (xb(ci, pos) - mean) / (var + 1e-5).sqrt() * gw[ci] + gb[ci];
                }
            }
        }
        // 1x1 qkv.
        let qkv: Vec<Vec<f64>> = (0..3 * c)
            .map(|o| {
                (0..n)
                    .map(|pos| qb[o] + (0..c).map(|ci| qw[o * c + ci] * hn[ci][pos]).sum::<f64>())
                    .collect()
            })
            .collect();
        // Per head, per query position: softmax over key positions.
        let mut a = vec![vec![0f64; n]; c];
        for hd in 0..heads {
            for i in 0..n {
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..d)
                            .map(|k| qkv[hd * d + k][i] * qkv[c + hd * d + k][j])
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for k in 0..d {
                    a[hd * d + k][i] = (0..n)
                        .map(|j| e[j] / z * qkv[2 * c + hd * d + k][j])
                        .sum::<f64>();
                }
            }
        }
        for co in 0..c {
            for pos in 0..n {
                let expect = xb(co, pos)
                    + pb[co]
                    + (0..c).map(|ci| pw[co * c + ci] * a[ci][pos]).sum::<f64>();
                let got = y[(bi * c + co) * n + pos] as f64;
                assert!(
                    (got - expect).abs() < ATTN_TOL * (1.0 + expect.abs()),
                    "b={bi} c={co} pos={pos}: {got} vs {expect}"
                );
            }
        }
    }
}

#[test]
fn unet_config_validation() {
    let ok = UNetConfig::default();
    ok.validate(28).unwrap();
    ok.validate(8).unwrap();
    UNetConfig::tiny().validate(8).unwrap();

    // Any size works (ceil halving on the way down, crops on the way up): 30 and the 7x7
    // latents of latent diffusion.
    ok.validate(30).unwrap();
    ok.validate(7).unwrap();
    assert!(ok.validate(0).is_err());

    let bad_groups = UNetConfig {
        groups: 12,
        ..UNetConfig::default()
    };
    let err = bad_groups.validate(28).unwrap_err().to_string();
    assert!(err.contains("groups = 12") && err.contains("32"), "{err}");
    // The constructor refuses it too, with the same message.
    let store = ParamStore::new(0, &Device::Cpu);
    let err = UNet::new(&bad_groups, 1, 1, store.vb())
        .unwrap_err()
        .to_string();
    assert!(err.contains("groups = 12"), "{err}");

    let bad_heads = UNetConfig {
        heads: 3,
        ..UNetConfig::default()
    };
    assert!(bad_heads
        .validate(28)
        .unwrap_err()
        .to_string()
        .contains("heads"));
    let no_attn = UNetConfig {
        heads: 3,
        attention_at_lowest: false,
        ..UNetConfig::default()
    };
    no_attn.validate(28).unwrap();

    for bad in [
        UNetConfig {
            channel_mult: vec![],
            ..UNetConfig::default()
        },
        UNetConfig {
            channel_mult: vec![1, 0],
            ..UNetConfig::default()
        },
        UNetConfig {
            base_channels: 0,
            ..UNetConfig::default()
        },
        UNetConfig {
            base_channels: 33,
            groups: 1,
            ..UNetConfig::default()
        },
        UNetConfig {
            num_res_blocks: 0,
            ..UNetConfig::default()
        },
        UNetConfig {
            groups: 0,
            ..UNetConfig::default()
        },
    ] {
        let e = bad.validate(28).unwrap_err();
        assert!(matches!(e, genlab_core::Error::Config(_)), "{bad:?}: {e}");
    }
}

#[test]
fn mlp_config_validation() {
    MlpDenoiserConfig::default().validate().unwrap();
    for bad in [
        MlpDenoiserConfig {
            hidden: 0,
            ..Default::default()
        },
        MlpDenoiserConfig {
            layers: 0,
            ..Default::default()
        },
        MlpDenoiserConfig {
            time_dim: 7,
            ..Default::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
        let store = ParamStore::new(0, &Device::Cpu);
        assert!(MlpDenoiser::new(&bad, 2, store.vb()).is_err());
    }
    let store = ParamStore::new(0, &Device::Cpu);
    assert!(MlpDenoiser::new(&MlpDenoiserConfig::default(), 0, store.vb()).is_err());
}

#[test]
fn configs_layer_through_genlab_overrides() {
    use genlab_core::config::{parse_override, resolve};
    let o = parse_override("channel_mult=[1, 2]").unwrap();
    let cfg: UNetConfig = resolve(&UNetConfig::default(), None, &[o]).unwrap();
    assert_eq!(cfg.channel_mult, vec![1, 2]);
    assert_eq!(cfg.base_channels, UNetConfig::default().base_channels);
    let o = parse_override("dropout=0.1").unwrap();
    assert!(resolve(&UNetConfig::default(), None, &[o]).is_err());
    let o = parse_override("hidden=128").unwrap();
    let cfg: MlpDenoiserConfig = resolve(&MlpDenoiserConfig::default(), None, &[o]).unwrap();
    assert_eq!(cfg.hidden, 128);
}
