//! The GAN critics' explicit input gradients and the gradient penalty built on them.
//!
//! - The explicit input gradient (a graph of forward ops) equals candle's ordinary
//!   first-order gradient of the critic's output with respect to its input.
//! - The penalty's gradient with respect to the critic's weights (what WGAN-GP needs, and
//!   what a detached input gradient would silently zero) equals central finite differences;
//!   so does the R1 penalty's, built on the same input gradient.

use candle_core::{Device, Tensor, Var};

use genlab_core::{ParamStore, Rng};
use genlab_models::gan::loss::{gradient_penalty, r1_penalty};
use genlab_models::gan::{Discriminator, GanConfig, GanLoss, GanNet};
use genlab_models::DataSpace;

fn critic_cfg(images: bool) -> GanConfig {
    let data = if images {
        DataSpace {
            shape: vec![2, 8, 8],
            images: true,
        }
    } else {
        DataSpace {
            shape: vec![3],
            images: false,
        }
    };
    let mut c = GanConfig::for_data(&data);
    c.loss = GanLoss::WganGp;
    c.net = if images {
        GanNet::Dcgan {
            channels: 8,
            minibatch_std: false,
        }
    } else {
        GanNet::Mlp {
            hidden: vec![16, 16],
        }
    };
    c
}

/// A critic, class-conditional (a projection discriminator) when `classes > 0`.
fn critic_with_classes(
    images: bool,
    classes: usize,
) -> (ParamStore, genlab_models::gan::nets::Critic, Vec<usize>) {
    let mut cfg = critic_cfg(images);
    cfg.num_classes = classes;
    let ps = ParamStore::new(3, &Device::Cpu);
    let Discriminator::Critic(c) = Discriminator::new(&cfg, ps.vb()).unwrap() else {
        panic!("wgan-gp builds a critic")
    };
    let mut shape = vec![5];
    shape.extend(&cfg.data.shape);
    (ps, c, shape)
}

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    let s = b.abs().unwrap().max_all().unwrap();
    (d.to_scalar::<f32>().unwrap()) / s.to_scalar::<f32>().unwrap().max(1e-6)
}

/// f32 GEMMs and transposed convolutions against candle's backward: accumulation order only.
const INPUT_GRAD_TOL: f32 = 1e-5;

#[test]
fn explicit_input_gradient_equals_autograd() {
    // Unconditional critics and projection discriminators (whose input gradient gains
    // embed(y) at phi), labels 2, 0, 1, 2, 0.
    for (images, classes) in [(false, 0), (true, 0), (false, 3), (true, 3)] {
        let (_, c, shape) = critic_with_classes(images, classes);
        let x =
            Var::from_tensor(&Rng::new(7).normal_tensor(&shape, &Device::Cpu).unwrap()).unwrap();
        let y = Tensor::new(&[2u32, 0, 1, 2, 0], &Device::Cpu).unwrap();
        let y = (classes > 0).then_some(&y);
        let (out, trace) = c.forward_trace(x.as_tensor(), y).unwrap();
        let explicit = c.input_grad(&trace).unwrap();
        let auto = out.sum_all().unwrap().backward().unwrap();
        let auto = auto.get(x.as_tensor()).unwrap();
        assert_eq!(explicit.dims(), auto.dims());
        let e = max_rel(&explicit, auto);
        assert!(
            e < INPUT_GRAD_TOL,
            "images={images} classes={classes}: relative error {e}"
        );
    }
}

/// Central differences in f32 with step H: rounding ~1e-7/H relative, curvature ~H.
const H: f64 = 1e-3;
const FD_ABS: f64 = 2e-3;
const FD_REL: f64 = 2e-2;

type Penalty = fn(&Tensor) -> genlab_core::Result<Tensor>;

#[test]
fn gradient_penalty_and_r1_weight_gradients_equal_finite_differences() {
    let kinds: [(&str, Penalty); 2] = [("gp", gradient_penalty), ("r1", r1_penalty)];
    // Unconditional critics and projection discriminators (whose class embeddings the
    // penalties reach through the input gradient).
    for ((images, classes), (kind, pen)) in [(false, 0), (true, 0), (false, 3), (true, 3)]
        .into_iter()
        .flat_map(|i| kinds.into_iter().map(move |k| (i, k)))
    {
        let (ps, c, shape) = critic_with_classes(images, classes);
        let x = Rng::new(11).normal_tensor(&shape, &Device::Cpu).unwrap();
        let y = Tensor::new(&[2u32, 0, 1, 2, 0], &Device::Cpu).unwrap();
        let y = (classes > 0).then_some(&y);
        let penalty = |c: &genlab_models::gan::nets::Critic| -> Tensor {
            let (_, t) = c.forward_trace(&x, y).unwrap();
            pen(&c.input_grad(&t).unwrap()).unwrap()
        };
        let grads = penalty(&c).backward().unwrap();
        let mut rng = Rng::new(5);
        let mut checked = 0;
        for (name, var) in ps.vars() {
            // Biases move the input gradient only through the piecewise-constant activation
            // masks: their penalty gradient is zero almost everywhere, and absent here.
            let flat: Vec<f32> = match grads.get(var.as_tensor()) {
                Some(g) => g.flatten_all().unwrap().to_vec1().unwrap(),
                None if name.ends_with("bias") => vec![0.0; var.elem_count()],
                None => panic!(
                    "images={images} classes={classes} {kind}: no penalty gradient for {name}"
                ),
            };
            let mut values: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let mut done = 0;
            for _ in 0..20 {
                if done == 3 {
                    break;
                }
                let i = rng.below(values.len() as u64) as usize;
                let orig = values[i];
                let mut at = |v: f32| -> f64 {
                    values[i] = v;
                    var.set(&Tensor::from_vec(values.clone(), var.dims(), &Device::Cpu).unwrap())
                        .unwrap();
                    penalty(&c).to_scalar::<f32>().unwrap() as f64
                };
                let fd = (at(orig + H as f32) - at(orig - H as f32)) / (2.0 * H);
                let half = (at(orig + (H / 2.0) as f32) - at(orig - (H / 2.0) as f32)) / H;
                at(orig);
                // The activation masks make the penalty piecewise smooth with jumps: where
                // the two step sizes disagree, a mask flipped inside the interval (skip it).
                if (fd - half).abs() > FD_ABS + FD_REL * half.abs() {
                    continue;
                }
                let ad = flat[i] as f64;
                assert!(
                    (fd - ad).abs() <= FD_ABS + FD_REL * ad.abs(),
                    "images={images} {kind}: {name}[{i}]: finite difference {fd} vs autograd {ad}"
                );
                checked += 1;
                done += 1;
            }
        }
        assert!(checked >= 12, "{kind}: checked only {checked} entries");
    }
}

/// f32 mean and square root over a few hundred numbers against the f64 brute force.
const MBSTD_TOL: f64 = 1e-5;

#[test]
fn minibatch_std_feature_is_the_mean_per_feature_batch_std_and_ties_the_batch_together() {
    use genlab_models::gan::nets::append_minibatch_std;
    let mut rng = Rng::new(5);
    let h = rng.normal_tensor(&[4, 3, 2, 2], &Device::Cpu).unwrap();
    let out = append_minibatch_std(&h).unwrap();
    assert_eq!(out.dims(), &[4, 4, 2, 2]);
    // Brute force: population std over the batch of each of the 12 features, averaged.
    let v: Vec<f32> = h.flatten_all().unwrap().to_vec1().unwrap();
    let mut want = 0f64;
    for f in 0..12 {
        let xs: Vec<f64> = (0..4).map(|b| v[b * 12 + f] as f64).collect();
        let m = xs.iter().sum::<f64>() / 4.0;
        want += (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 4.0 + 1e-8).sqrt();
    }
    want /= 12.0;
    let extra: Vec<f32> = out
        .narrow(1, 3, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(
        extra.iter().all(|&e| (e as f64 - want).abs() < MBSTD_TOL),
        "{extra:?} vs {want}"
    );
    // The original channels pass through unchanged.
    let kept: Vec<f32> = out
        .narrow(1, 0, 3)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(kept, v);

    // A discriminator with the feature scores an example differently when the rest of its
    // batch changes; without it, it does not.
    for mbstd in [false, true] {
        let mut cfg = critic_cfg(true);
        cfg.loss = GanLoss::NonSaturating;
        cfg.net = GanNet::Dcgan {
            channels: 8,
            minibatch_std: mbstd,
        };
        cfg.validate().unwrap();
        let ps = ParamStore::new(3, &Device::Cpu);
        let Discriminator::Critic(c) = Discriminator::new(&cfg, ps.vb()).unwrap() else {
            panic!("a non-saturating GAN builds a logit discriminator")
        };
        let a = rng.normal_tensor(&[3, 2, 8, 8], &Device::Cpu).unwrap();
        let mut b_rows = vec![a.narrow(0, 0, 1).unwrap()];
        b_rows.push((a.narrow(0, 1, 2).unwrap() * 3.0).unwrap());
        let b = Tensor::cat(&b_rows, 0).unwrap();
        let first = |x: &Tensor| c.forward(x, None).unwrap().to_vec1::<f32>().unwrap()[0];
        let changed = (first(&a) - first(&b)).abs() > 1e-6;
        assert_eq!(changed, mbstd, "minibatch_std = {mbstd}");
    }
    // With the gradient penalty it is refused.
    let mut cfg = critic_cfg(true);
    cfg.net = GanNet::Dcgan {
        channels: 8,
        minibatch_std: true,
    };
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("minibatch_std") && e.contains("wgan-gp"), "{e}");
}

#[test]
fn r1_is_refused_without_a_logit_discriminator_with_minibatch_std_and_when_not_positive() {
    let mut cfg = critic_cfg(true);
    cfg.r1_weight = Some(10.0);
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("r1_weight") && e.contains("WganGp"), "{e}");
    cfg.loss = GanLoss::NonSaturating;
    cfg.validate().unwrap();
    cfg.r1_weight = Some(0.0);
    assert!(cfg.validate().unwrap_err().to_string().contains("positive"));
    cfg.r1_weight = Some(1.0);
    cfg.net = GanNet::Dcgan {
        channels: 8,
        minibatch_std: true,
    };
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("minibatch_std"), "{e}");
}
