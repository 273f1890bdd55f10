//! The cross-attention U-Net against diffusers' `UNet2DConditionModel` (fixtures written by
//! scripts/reference/cond_unet_fixture.py: the same weights, loaded by name), its
//! cross-attention against an f64 brute force, gradients, and config checks.

// The f64 reference is written as index loops to mirror the formulas.
#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use genlab_core::{ParamStore, Rng};
use genlab_nn::spatial_transformer::Attention;
use genlab_nn::{key_padding_mask, CondUNet, CondUNetConfig};

/// Agreement with diffusers (float32 on both sides, different summation orders through
/// ~20 layers): absolute, on outputs of order 1.
const FIXTURE_TOL: f32 = 2e-4;

/// f32 cross-attention against its f64 brute force.
const ATTN_TOL: f64 = 1e-5;

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cond_unet")
        .join(name);
    candle_core::safetensors::load(&p, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Fixture `a`: SD 1.x's arrangement (see the script).
fn config_a() -> CondUNetConfig {
    CondUNetConfig {
        in_channels: 4,
        out_channels: 4,
        block_out_channels: vec![8, 16, 16],
        layers_per_block: 1,
        cross_attention: vec![true, true, false],
        num_attention_heads: vec![2],
        cross_attention_dim: 8,
        transformer_layers_per_block: 1,
        norm_num_groups: 4,
        norm_eps: 1e-5,
        use_linear_projection: false,
        flip_sin_to_cos: true,
        freq_shift: 0.0,
        num_class_embeds: 0,
    }
}

/// Fixture `b`: linear projections, heads per level, 2 transformer layers, class labels.
fn config_b() -> CondUNetConfig {
    CondUNetConfig {
        block_out_channels: vec![8, 16],
        layers_per_block: 2,
        cross_attention: vec![true, true],
        num_attention_heads: vec![2, 4],
        transformer_layers_per_block: 2,
        use_linear_projection: true,
        flip_sin_to_cos: false,
        freq_shift: 1.0,
        num_class_embeds: 3,
        ..config_a()
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn check_fixture(name: &str, cfg: &CondUNetConfig) {
    let ps = ParamStore::new(0, &Device::Cpu);
    let net = CondUNet::new(cfg, ps.vb()).unwrap();
    // Strict: every name and shape must match diffusers' state_dict, both ways.
    ps.load(&fixture(&format!("{name}_weights.safetensors")))
        .unwrap();
    let io = fixture(&format!("{name}_io.safetensors"));
    let class = io.get("class").map(|c| c.to_dtype(DType::U32).unwrap());
    let run = |mask: Option<&Tensor>| {
        net.forward(
            &io["sample"],
            &io["timestep"],
            Some(&io["context"]),
            mask,
            class.as_ref(),
        )
        .unwrap()
    };
    let d = max_abs_diff(&run(None), &io["out"]);
    assert!(d < FIXTURE_TOL, "{name}: unmasked output differs by {d}");
    let d = max_abs_diff(&run(Some(&io["mask"])), &io["out_masked"]);
    assert!(d < FIXTURE_TOL, "{name}: masked output differs by {d}");
    // The mask matters in this fixture (else the masked case would test nothing).
    assert!(max_abs_diff(&io["out"], &io["out_masked"]) > 100.0 * FIXTURE_TOL);
}

#[test]
fn sd1_layout_matches_diffusers_on_a_7x14_latent() {
    check_fixture("a", &config_a());
}

#[test]
fn linear_projection_class_labels_and_heads_per_level_match_diffusers() {
    check_fixture("b", &config_b());
}

#[test]
fn every_parameter_gets_a_gradient() {
    let cfg = CondUNetConfig {
        num_class_embeds: 3,
        ..config_a()
    };
    let ps = ParamStore::new(1, &Device::Cpu);
    let net = CondUNet::new(&cfg, ps.vb()).unwrap();
    let mut rng = Rng::new(2);
    let dev = Device::Cpu;
    let x = rng.normal_tensor(&[2, 4, 7, 14], &dev).unwrap();
    let t = Tensor::new(&[3f32, 500.0], &dev).unwrap();
    let ctx = rng.normal_tensor(&[2, 5, 8], &dev).unwrap();
    let mask = Tensor::new(&[[1f32, 1., 1., 1., 1.], [1., 1., 0., 0., 0.]], &dev).unwrap();
    let class = Tensor::new(&[0u32, 2], &dev).unwrap();
    let y = net
        .forward(&x, &t, Some(&ctx), Some(&mask), Some(&class))
        .unwrap();
    assert_eq!(y.dims(), &[2, 4, 7, 14]);
    let grads = y.sqr().unwrap().mean_all().unwrap().backward().unwrap();
    for (name, var) in ps.vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("`{name}` received no gradient"));
        let s = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(s > 0.0 && s.is_finite(), "`{name}`: gradient abs-sum {s}");
    }
}

#[test]
fn no_context_is_the_all_zero_context() {
    let ps = ParamStore::new(3, &Device::Cpu);
    let net = CondUNet::new(&config_a(), ps.vb()).unwrap();
    let mut rng = Rng::new(4);
    let dev = Device::Cpu;
    let x = rng.normal_tensor(&[2, 4, 5, 6], &dev).unwrap();
    let t = Tensor::new(&[3f32, 500.0], &dev).unwrap();
    let zeros = Tensor::zeros((2, 3, 8), DType::F32, &dev).unwrap();
    let a = net.forward(&x, &t, None, None, None).unwrap();
    let b = net.forward(&x, &t, Some(&zeros), None, None).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-5);
    let ctx = rng.normal_tensor(&[2, 3, 8], &dev).unwrap();
    let c = net.forward(&x, &t, Some(&ctx), None, None).unwrap();
    assert!(
        max_abs_diff(&a, &c) > 1e-3,
        "the context must steer the output"
    );
}

#[test]
fn cross_attention_matches_brute_force() {
    let (b, n, c, l, dc, h) = (2, 6, 8, 4, 5, 2);
    let d = c / h;
    let ps = ParamStore::new(5, &Device::Cpu);
    let attn = Attention::new(c, dc, h, d, ps.vb()).unwrap();
    let w: HashMap<String, Vec<f32>> = ps
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    let mut rng = Rng::new(6);
    let dev = Device::Cpu;
    let x = rng.normal_tensor(&[b, n, c], &dev).unwrap();
    let ctx = rng.normal_tensor(&[b, l, dc], &dev).unwrap();
    let valid = Tensor::new(&[[1f32, 1., 1., 1.], [1., 0., 1., 0.]], &dev).unwrap();
    let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let cs: Vec<f32> = ctx.flatten_all().unwrap().to_vec1().unwrap();
    let vs: Vec<f32> = valid.flatten_all().unwrap().to_vec1().unwrap();
    // y = W x (+ b), f64, `w` [o, i] row-major
    let lin = |inp: &[f32], w: &[f32], o: usize| -> Vec<f64> {
        (0..o)
            .map(|r| {
                (0..inp.len())
                    .map(|k| w[r * inp.len() + k] as f64 * inp[k] as f64)
                    .sum()
            })
            .collect()
    };
    for masked in [false, true] {
        let mask = key_padding_mask(&valid).unwrap();
        let y = attn
            .forward_cross(&x, &ctx, masked.then_some(&mask))
            .unwrap();
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        for bi in 0..b {
            let keys: Vec<(Vec<f64>, Vec<f64>)> = (0..l)
                .map(|j| {
                    let tok = &cs[(bi * l + j) * dc..(bi * l + j + 1) * dc];
                    (
                        lin(tok, &w["to_k.weight"], c),
                        lin(tok, &w["to_v.weight"], c),
                    )
                })
                .collect();
            for i in 0..n {
                let q = lin(
                    &xs[(bi * n + i) * c..(bi * n + i + 1) * c],
                    &w["to_q.weight"],
                    c,
                );
                let mut heads = vec![0f64; c];
                for hh in 0..h {
                    let r = hh * d..(hh + 1) * d;
                    let live: Vec<usize> = (0..l)
                        .filter(|&j| !masked || vs[bi * l + j] == 1.0)
                        .collect();
                    let s: Vec<f64> = live
                        .iter()
                        .map(|&j| {
                            q[r.clone()]
                                .iter()
                                .zip(&keys[j].0[r.clone()])
                                .map(|(a, b)| a * b)
                                .sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                    for (k, &j) in live.iter().enumerate() {
                        let p = (s[k] - m).exp() / z;
                        for t in r.clone() {
                            heads[t] += p * keys[j].1[t];
                        }
                    }
                }
                let o: Vec<f64> = (0..c)
                    .map(|r| {
                        w["to_out.0.bias"][r] as f64
                            + (0..c)
                                .map(|k| w["to_out.0.weight"][r * c + k] as f64 * heads[k])
                                .sum::<f64>()
                    })
                    .collect();
                for t in 0..c {
                    let got = y[(bi * n + i) * c + t] as f64;
                    assert!(
                        (got - o[t]).abs() < ATTN_TOL,
                        "masked={masked} b={bi} i={i} t={t}: {got} vs {}",
                        o[t]
                    );
                }
            }
        }
    }
}

fn err(cfg: CondUNetConfig) -> String {
    let ps = ParamStore::new(0, &Device::Cpu);
    let e = cfg.validate().unwrap_err().to_string();
    assert_eq!(e, CondUNet::new(&cfg, ps.vb()).unwrap_err().to_string());
    e
}

#[test]
fn bad_configs_get_one_clear_error() {
    assert!(CondUNetConfig::default().validate().is_ok());
    let e = err(CondUNetConfig {
        cross_attention: vec![true],
        ..CondUNetConfig::default()
    });
    assert!(
        e.contains("cross_attention needs one entry per level"),
        "{e}"
    );
    let e = err(CondUNetConfig {
        norm_num_groups: 5,
        ..CondUNetConfig::default()
    });
    assert!(e.contains("norm_num_groups = 5 must divide"), "{e}");
    let e = err(CondUNetConfig {
        num_attention_heads: vec![3],
        ..CondUNetConfig::default()
    });
    assert!(e.contains("num_attention_heads = 3"), "{e}");
    let e = err(CondUNetConfig {
        block_out_channels: vec![],
        cross_attention: vec![],
        ..CondUNetConfig::default()
    });
    assert!(e.contains("block_out_channels must be a non-empty"), "{e}");
    let e = err(CondUNetConfig {
        layers_per_block: 0,
        ..CondUNetConfig::default()
    });
    assert!(e.contains("layers_per_block (0)"), "{e}");
    let parsed: Result<CondUNetConfig, _> = serde_json::from_str(r#"{"block_out": [32]}"#);
    assert!(parsed.is_err(), "unknown fields are refused");
}

#[test]
fn bad_inputs_get_one_clear_error() {
    let ps = ParamStore::new(0, &Device::Cpu);
    let net = CondUNet::new(&config_a(), ps.vb()).unwrap();
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 4, 7, 7), DType::F32, &dev).unwrap();
    let t = Tensor::zeros(2, DType::F32, &dev).unwrap();
    let ctx = Tensor::zeros((2, 3, 5), DType::F32, &dev).unwrap();
    let e = net
        .forward(&x, &t, Some(&ctx), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("context must have shape [2, L, 8]"), "{e}");
    let ctx = Tensor::zeros((2, 3, 8), DType::F32, &dev).unwrap();
    let m = Tensor::ones((2, 4), DType::F32, &dev).unwrap();
    let e = net
        .forward(&x, &t, Some(&ctx), Some(&m), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("context mask must have shape [2, 3]"), "{e}");
    let e = net
        .forward(&x, &t, None, Some(&m), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("without a context"), "{e}");
    let class = Tensor::new(&[0u32, 1], &dev).unwrap();
    let e = net
        .forward(&x, &t, None, None, Some(&class))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no class embedding"), "{e}");
}

#[test]
fn flops_grow_with_the_context_and_the_image() {
    let cfg = config_a();
    let f = cfg.forward_flops(1, 7, 14, 5);
    assert!(f > 0.0);
    assert!(cfg.forward_flops(1, 7, 14, 10) > f);
    assert!(cfg.forward_flops(1, 14, 14, 5) > f);
    assert_eq!(cfg.forward_flops(2, 7, 14, 5), 2.0 * f);
}

#[test]
fn flops_match_a_hand_count_for_one_level() {
    // One level of 2 channels, 1x1 input, 1 context token of width 1, batch 1 (temb 8):
    // time MLP 2(2·8 + 8·8) = 160; conv_in 2·1·2·9 = 36; down resnet 2->2: two convs of
    // 2·2·2·9 = 72 and time_emb_proj 2·8·2 = 32 -> 176; mid: two resnets 352 and one spatial
    // transformer: proj_in + proj_out 2·(2·2·2) = 16, attn1 q/k/v/out 4·(2·2·2) = 32 plus
    // scores and values 2·(2·1·1·2) = 8, attn2 q/out 2·8 = 16, k/v 2·(2·1·1·2) = 8, scores
    // and values 8, GEGLU 2·2·16 + 2·8·2 = 96 -> 184; up: two resnets 4->2, conv1
    // 2·4·2·9 = 144, conv2 72, shortcut 2·4·2 = 16, time 32 -> 264 each = 528; conv_out 36.
    let cfg = CondUNetConfig {
        in_channels: 1,
        out_channels: 1,
        block_out_channels: vec![2],
        layers_per_block: 1,
        cross_attention: vec![false],
        num_attention_heads: vec![1],
        cross_attention_dim: 1,
        transformer_layers_per_block: 1,
        norm_num_groups: 1,
        ..CondUNetConfig::default()
    };
    cfg.validate().unwrap();
    let want = 160.0 + 36.0 + 176.0 + 352.0 + 184.0 + 528.0 + 36.0;
    assert_eq!(cfg.forward_flops(1, 1, 1, 1), want);
}

/// Steps, batch and Adam rate of the learning check: a second or two on one core.
const LEARN_STEPS: usize = 150;
const LEARN_BATCH: usize = 16;
const LEARN_LR: f64 = 3e-3;
/// The final loss must fall below this fraction of the best loss a network blind to the
/// prompt can reach (predicting the mean of the four patterns).
const LEARN_MAX_RATIO: f32 = 0.25;

#[test]
fn the_network_learns_to_read_its_prompt() {
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    // The target is one of four fixed 4x4 patterns, chosen by a one-hot prompt token (the
    // second token is padding, masked out); the input image is noise. Only the
    // cross-attention carries the choice, so the loss can fall below that of the best blind
    // prediction (the mean pattern) only if the cross-attention path learns.
    let dev = Device::Cpu;
    let cfg = CondUNetConfig {
        in_channels: 1,
        out_channels: 1,
        block_out_channels: vec![8],
        cross_attention: vec![true],
        num_attention_heads: vec![2],
        cross_attention_dim: 4,
        norm_num_groups: 4,
        ..CondUNetConfig::default()
    };
    let ps = ParamStore::new(11, &dev);
    let net = CondUNet::new(&cfg, ps.vb()).unwrap();
    let mut rng = Rng::new(12);
    let patterns: Vec<f32> = (0..4 * 16)
        .map(|_| if rng.uniform() < 0.5 { -1.0 } else { 1.0 })
        .collect();
    let blind: f32 = (0..16)
        .map(|p| {
            let m: f32 = (0..4).map(|k| patterns[k * 16 + p]).sum::<f32>() / 4.0;
            (0..4)
                .map(|k| (patterns[k * 16 + p] - m).powi(2))
                .sum::<f32>()
                / 4.0
        })
        .sum::<f32>()
        / 16.0;
    let batch = |rng: &mut Rng| {
        let ks: Vec<usize> = (0..LEARN_BATCH).map(|_| rng.below(4) as usize).collect();
        let mut ctx = vec![0f32; LEARN_BATCH * 2 * 4];
        let mut target = Vec::with_capacity(LEARN_BATCH * 16);
        for (i, &k) in ks.iter().enumerate() {
            ctx[i * 8 + k] = 1.0;
            ctx[i * 8 + 4 + (k + 1) % 4] = 1.0; // a padding token that would mislead
            target.extend_from_slice(&patterns[k * 16..(k + 1) * 16]);
        }
        let x = rng.normal_tensor(&[LEARN_BATCH, 1, 4, 4], &dev).unwrap();
        let t = rng
            .uniform_tensor(0.0, 999.0, &[LEARN_BATCH], &dev)
            .unwrap();
        let ctx = Tensor::from_vec(ctx, (LEARN_BATCH, 2, 4), &dev).unwrap();
        let target = Tensor::from_vec(target, (LEARN_BATCH, 1, 4, 4), &dev).unwrap();
        (x, t, ctx, target)
    };
    let mask = Tensor::from_vec([1f32, 0.].repeat(LEARN_BATCH), (LEARN_BATCH, 2), &dev).unwrap();
    let vars = ps.vars().into_iter().map(|(_, v)| v).collect();
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: LEARN_LR,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut last = f32::INFINITY;
    for step in 0..LEARN_STEPS {
        let (x, t, ctx, target) = batch(&mut rng);
        let y = net.forward(&x, &t, Some(&ctx), Some(&mask), None).unwrap();
        let loss = (y - target).unwrap().sqr().unwrap().mean_all().unwrap();
        if step + 10 >= LEARN_STEPS {
            last = last.min(loss.to_scalar::<f32>().unwrap());
        }
        opt.backward_step(&loss).unwrap();
    }
    assert!(
        last < LEARN_MAX_RATIO * blind,
        "final loss {last}, blind loss {blind}"
    );
}
