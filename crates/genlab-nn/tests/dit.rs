//! The diffusion transformer against diffusers' `DiTTransformer2DModel` (fixture written by
//! scripts/reference/dit_fixture.py: the same weights, converted to genlab's names), and the
//! factorised video DiT against an f64 brute force written from the paper's equations.

// The f64 reference is written as index loops to mirror the formulas.
#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use genlab_core::{ParamStore, Rng};
use genlab_nn::dit::sincos_positions;
use genlab_nn::{Dit, DitConfig, PosEmbed, VideoAttention};

/// Agreement with diffusers (float32 on both sides, different summation orders through two
/// blocks): absolute, on outputs of order 1.
const FIXTURE_TOL: f32 = 1e-5;
/// f32 network against its f64 brute force.
const BRUTE_TOL: f64 = 1e-4;

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dit")
        .join(name);
    candle_core::safetensors::load(&p, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
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

#[test]
fn dit_matches_diffusers_dit_transformer() {
    let io = fixture("io.safetensors");
    let weights = fixture("weights.safetensors");
    let cfg = DitConfig {
        width: 16,
        depth: 2,
        heads: 2,
        mlp_ratio: 4,
        patch: 2,
        tubelet: 1,
        pos_embed: PosEmbed::Sincos,
        attention: VideoAttention::Joint,
        context_dim: None,
        freq_dim: 256,
    };
    let ps = ParamStore::new(0, &Device::Cpu);
    let net = Dit::new(&cfg, &[2, 8, 8], 2, ps.vb()).unwrap();
    // Every parameter of the network is in the fixture, and nothing else.
    let mut ours: Vec<String> = ps.vars().into_iter().map(|(n, _)| n).collect();
    let mut theirs: Vec<String> = weights.keys().cloned().collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    ps.load(&weights).unwrap();
    let out = net
        .forward_with(&io["x"], &io["t"], Some(&io["extra"]), None)
        .unwrap();
    let d = max_abs_diff(&out, &io["out"]);
    println!("DiT vs diffusers DiTTransformer2DModel: max |diff| = {d:.2e}");
    assert!(d < FIXTURE_TOL, "max |diff| {d}");
}

// ---- f64 brute force of a factorised video DiT ----

struct W<'a>(&'a HashMap<String, Tensor>);

impl W<'_> {
    fn v(&self, name: &str) -> Vec<f64> {
        self.0[name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    /// `y = W x + b` with `W [out, in]` from `{name}.weight`.
    fn linear(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let w = self.v(&format!("{name}.weight"));
        let b = self.v(&format!("{name}.bias"));
        (0..b.len())
            .map(|o| b[o] + (0..x.len()).map(|i| w[o * x.len() + i] * x[i]).sum::<f64>())
            .collect()
    }
}

fn silu(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x / (1.0 + (-x).exp())).collect()
}

fn gelu_tanh(v: &[f64]) -> Vec<f64> {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    v.iter()
        .map(|x| 0.5 * x * (1.0 + (k * (x + 0.044715 * x.powi(3))).tanh()))
        .collect()
}

fn layer_norm(v: &[f64]) -> Vec<f64> {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
    v.iter().map(|x| (x - m) / (var + 1e-6).sqrt()).collect()
}

/// Multi-head self-attention over `toks` with the packed `{name}.qkv` and `{name}.out`.
fn attention(w: &W, name: &str, toks: &[Vec<f64>], heads: usize) -> Vec<Vec<f64>> {
    let c = toks[0].len();
    let d = c / heads;
    let qkv: Vec<Vec<f64>> = toks
        .iter()
        .map(|t| w.linear(&format!("{name}.qkv"), t))
        .collect();
    let mut out = Vec::new();
    for i in 0..toks.len() {
        let mut o = vec![0.0; c];
        for h in 0..heads {
            let s: Vec<f64> = (0..toks.len())
                .map(|j| {
                    (0..d)
                        .map(|k| qkv[i][h * d + k] * qkv[j][c + h * d + k])
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|v| (v - mx).exp()).collect();
            let z: f64 = e.iter().sum();
            for j in 0..toks.len() {
                for k in 0..d {
                    o[h * d + k] += e[j] / z * qkv[j][2 * c + h * d + k];
                }
            }
        }
        out.push(w.linear(&format!("{name}.out"), &o));
    }
    out
}

fn modulate(v: &[f64], m: &[f64], shift: usize, d: usize) -> Vec<f64> {
    let ln = layer_norm(v);
    (0..d)
        .map(|k| ln[k] * (1.0 + m[(shift + 1) * d + k]) + m[shift * d + k])
        .collect()
}

#[test]
fn factorised_video_dit_matches_an_f64_brute_force() {
    let (t_len, c, h, wd, p, dim, heads) = (3, 1, 4, 4, 2, 8, 2);
    let cfg = DitConfig {
        width: dim,
        depth: 1,
        heads,
        mlp_ratio: 2,
        patch: p,
        tubelet: 1,
        pos_embed: PosEmbed::Sincos,
        attention: VideoAttention::Factorised,
        context_dim: None,
        freq_dim: 8,
    };
    let ps = ParamStore::new(3, &Device::Cpu);
    let net = Dit::new(&cfg, &[t_len, c, h, wd], c, ps.vb()).unwrap();
    // Random values for every tensor (the zero-initialised ones included).
    let mut rng = Rng::new(11);
    for (_, var) in ps.vars() {
        let n = var.elem_count();
        let v: Vec<f32> = (0..n).map(|_| 0.3 * rng.normal() as f32).collect();
        var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap())
            .unwrap();
    }
    let x = rng
        .normal_tensor(&[1, t_len, c, h, wd], &Device::Cpu)
        .unwrap();
    let t = Tensor::new(&[417f32], &Device::Cpu).unwrap();
    let got: Vec<f32> = net
        .forward(&x, &t)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();

    let tensors = ps.tensors();
    let w = W(&tensors);
    let xv: Vec<f64> = x
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let (gh, gw) = (h / p, wd / p);
    let s = gh * gw;
    let pos = sincos_positions((t_len, gh, gw), dim, &Device::Cpu)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    // Tokens (frame, row, column), patch vectors (channel, row, column).
    let mut z: Vec<Vec<f64>> = Vec::new();
    for f in 0..t_len {
        for r in 0..gh {
            for col in 0..gw {
                let mut patch = Vec::new();
                for ch in 0..c {
                    for i in 0..p {
                        for j in 0..p {
                            patch.push(xv[((f * c + ch) * h + r * p + i) * wd + col * p + j]);
                        }
                    }
                }
                let e = w.linear("x_embed", &patch);
                let k = (f * gh + r) * gw + col;
                z.push((0..dim).map(|q| e[q] + pos[k][q] as f64).collect());
            }
        }
    }
    // c = MLP(timestep embedding): [cos(t f_i), sin(t f_i)], f_i = 10000^(-i / half).
    let half = cfg.freq_dim / 2;
    let tv = 417.0f64;
    let mut temb = vec![0.0; cfg.freq_dim];
    for i in 0..half {
        let f = (-(10_000f64.ln()) * i as f64 / half as f64).exp();
        temb[i] = (tv * f).cos();
        temb[half + i] = (tv * f).sin();
    }
    let cvec = w.linear("t_embed.lin2", &silu(&w.linear("t_embed.lin1", &temb)));
    let c_act = silu(&cvec);
    let m = w.linear("blocks.0.ada", &c_act); // 9 chunks: space, time, MLP
                                              // Spatial attention within each frame.
    for f in 0..t_len {
        let toks: Vec<Vec<f64>> = (0..s)
            .map(|k| modulate(&z[f * s + k], &m, 0, dim))
            .collect();
        let a = attention(&w, "blocks.0.attn", &toks, heads);
        for k in 0..s {
            for q in 0..dim {
                z[f * s + k][q] += m[2 * dim + q] * a[k][q];
            }
        }
    }
    // Temporal attention at each spatial position.
    for k in 0..s {
        let toks: Vec<Vec<f64>> = (0..t_len)
            .map(|f| modulate(&z[f * s + k], &m, 3, dim))
            .collect();
        let a = attention(&w, "blocks.0.temporal_attn", &toks, heads);
        for f in 0..t_len {
            for q in 0..dim {
                z[f * s + k][q] += m[5 * dim + q] * a[f][q];
            }
        }
    }
    // MLP.
    for tok in z.iter_mut() {
        let hdn = modulate(tok, &m, 6, dim);
        let y = w.linear(
            "blocks.0.mlp.fc2",
            &gelu_tanh(&w.linear("blocks.0.mlp.fc1", &hdn)),
        );
        for q in 0..dim {
            tok[q] += m[8 * dim + q] * y[q];
        }
    }
    // Final layer and unpatchify.
    let fm = w.linear("final.ada", &c_act);
    let mut want = vec![0.0; t_len * c * h * wd];
    for f in 0..t_len {
        for r in 0..gh {
            for col in 0..gw {
                let tok = &z[(f * gh + r) * gw + col];
                let y = w.linear("final.linear", &modulate(tok, &fm, 0, dim));
                for ch in 0..c {
                    for i in 0..p {
                        for j in 0..p {
                            want[((f * c + ch) * h + r * p + i) * wd + col * p + j] =
                                y[(ch * p + i) * p + j];
                        }
                    }
                }
            }
        }
    }
    let d = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    println!("factorised video DiT vs f64 brute force: max |diff| = {d:.2e}");
    assert!(d < BRUTE_TOL, "max |diff| {d}");
}

#[test]
fn a_video_dit_refuses_an_image_and_the_reverse() {
    let cfg = DitConfig::size("xs", 4).unwrap();
    let ps = ParamStore::new(0, &Device::Cpu);
    let video = Dit::new(&cfg, &[4, 1, 8, 8], 1, ps.vb()).unwrap();
    let img = Tensor::zeros((2, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let t = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    let e = video.forward(&img, &t).unwrap_err().to_string();
    assert!(e.contains("[B, 4, 1, 8, 8]"), "{e}");
    let ps = ParamStore::new(0, &Device::Cpu);
    let image = Dit::new(&cfg, &[1, 8, 8], 1, ps.vb()).unwrap();
    let clip = Tensor::zeros((2, 4, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = image.forward(&clip, &t).unwrap_err().to_string();
    assert!(e.contains("[B, 1, 8, 8]"), "{e}");
}
