//! Every registered method on tiny tasks of its kind: the meta-loss is finite and reaches
//! every parameter, a few meta-steps lower it, scores are in range; and Reptile's
//! one-step identity with the gradient of the support loss.

use candle_core::{DType, Device, Tensor};
use genlab_core::Rng;
use genlab_fewshot::episode::{sample_episode, EpisodeShape};
use genlab_fewshot::methods::{Spec, Task, TaskKind, METHODS};
use genlab_fewshot::sinusoid::{mlp_forward, mse, sample_task};
use genlab_fewshot::sources::synthetic;
use genlab_train::optim::{AdamW, AdamWConfig};

/// Reptile's direction against α ∇L (f32 arithmetic).
const REPTILE_TOL: f32 = 1e-5;

/// A tiny config for each method's networks (6x6 inputs, small widths).
fn tiny(entry: &genlab_fewshot::methods::MethodEntry) -> serde_json::Value {
    let mut v = (entry.defaults)();
    if let Some(e) = v.get_mut("embedding") {
        e["channels"] = 8.into();
        e["groups"] = 2.into();
        e["blocks"] = 1.into();
    }
    if v.get("relation_blocks").is_some() {
        v["relation_blocks"] = 1.into();
    }
    if v.get("hidden").is_some() && v["hidden"].is_array() {
        v["hidden"] = serde_json::json!([16]);
    }
    v
}

fn tasks(kind: TaskKind, step: usize) -> Vec<Task> {
    let set = synthetic(12, 8, 6, 4);
    let mut rng = Rng::new(step as u64);
    (0..2)
        .map(|_| match kind {
            TaskKind::Classification => Task::Classify(
                sample_episode(
                    &set,
                    EpisodeShape {
                        ways: 3,
                        shots: 2,
                        queries: 3,
                    },
                    &mut rng,
                    &Device::Cpu,
                )
                .unwrap(),
            ),
            TaskKind::Regression => {
                Task::Regress(sample_task(5, 5, &mut rng, DType::F32, &Device::Cpu).unwrap())
            }
        })
        .collect()
}

#[test]
fn every_method_trains_and_scores_its_tasks() {
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
    for entry in METHODS {
        let cfg = tiny(entry);
        let input = match entry.kind {
            TaskKind::Classification => vec![1, 6, 6],
            TaskKind::Regression => vec![1],
        };
        let mut m = (entry.build)(&Spec {
            input,
            seed: 0,
            config: &cfg,
            device: Device::Cpu,
        })
        .unwrap();
        let first = tasks(entry.kind, 0);
        let ml = m.meta_loss(&first).unwrap();
        let l0 = ml.loss.to_scalar::<f32>().unwrap();
        assert!(l0.is_finite(), "{}: loss {l0}", entry.name);
        let grads = ml.loss.backward().unwrap();
        for (name, var) in m.params().vars() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{}: no gradient for {name}", entry.name));
            let n = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                n > 0.0 && n.is_finite(),
                "{}: gradient of {name} is {n}",
                entry.name
            );
        }
        // Thirty Adam steps on the same tasks lower the meta-loss.
        let mut opt = AdamW::new(m.params().vars(), AdamWConfig::default()).unwrap();
        for _ in 0..30 {
            let l = m.meta_loss(&first).unwrap().loss;
            opt.step(&l.backward().unwrap(), 3e-3, 1.0).unwrap();
        }
        let l1 = m
            .meta_loss(&first)
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap();
        assert!(l1 < l0, "{}: meta-loss {l0} -> {l1}", entry.name);
        for t in &tasks(entry.kind, 1) {
            let s = m.evaluate(t).unwrap();
            match entry.kind {
                TaskKind::Classification => {
                    assert!((0.0..=1.0).contains(&s), "{}: accuracy {s}", entry.name)
                }
                TaskKind::Regression => {
                    assert!(s >= 0.0 && s.is_finite(), "{}: mse {s}", entry.name)
                }
            }
        }
    }
}

#[test]
fn reptile_with_one_inner_step_follows_the_support_gradient() {
    // With k = 1, W = θ - α ∇L_S(θ), so the surrogate's gradient θ - W is α ∇L_S(θ)
    // (Nichol et al. 2018, section 5: one-step Reptile is SGD on the expected loss).
    let entry = genlab_fewshot::methods::find("reptile").unwrap();
    let cfg =
        serde_json::json!({"hidden": [8], "inner_lr": 0.05, "inner_steps": 1, "eval_steps": 1});
    let mut m = (entry.build)(&Spec {
        input: vec![1],
        seed: 3,
        config: &cfg,
        device: Device::Cpu,
    })
    .unwrap();
    let t = sample_task(6, 6, &mut Rng::new(9), DType::F32, &Device::Cpu).unwrap();
    let task = Task::Regress(t.clone());
    let g_rep = m
        .meta_loss(std::slice::from_ref(&task))
        .unwrap()
        .loss
        .backward()
        .unwrap();
    let vars = m.params().vars();
    let params: Vec<Tensor> = vars.iter().map(|(_, v)| v.as_tensor().clone()).collect();
    // The parameters are sorted by name: layer.0.bias, layer.0.weight, layer.1.bias, ...;
    // the network wants [w0, b0, w1, b1].
    let ordered = vec![
        params[1].clone(),
        params[0].clone(),
        params[3].clone(),
        params[2].clone(),
    ];
    let g_s = mse(&mlp_forward(&ordered, &t.x_support).unwrap(), &t.y_support)
        .unwrap()
        .backward()
        .unwrap();
    for p in &params {
        let a = g_rep
            .get(p)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = g_s
            .get(p)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - 0.05 * y).abs() < REPTILE_TOL, "{x} vs {}", 0.05 * y);
        }
    }
}
