//! MAML's meta-gradient against independent references: the closed form of a linear
//! model (second and first order) and central finite differences through a ReLU MLP.

use candle_core::{DType, Device, Tensor, Var};
use genlab_core::Rng;
use genlab_fewshot::sinusoid::{mlp_forward, mse, sample_task, sgd_adapt};

/// f64 autograd against f64 closed forms.
const CLOSED_FORM_TOL: f64 = 1e-10;
/// Central differences with step 1e-5 in f64: truncation ~1e-10, rounding ~1e-11.
const FD_TOL: f64 = 1e-6;
const FD_STEP: f64 = 1e-5;

fn second_order() {
    // Read by candle once per thread, at its first backward pass.
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
}

fn vec1(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Meta-gradient of the query loss after `steps` inner steps, w.r.t. `vars`.
fn meta_grad(
    vars: &[Var],
    task: &genlab_fewshot::sinusoid::RegressionTask,
    alpha: f64,
    steps: usize,
    second: bool,
) -> (f64, Vec<Vec<f64>>) {
    let params: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let fast = sgd_adapt(
        &params,
        &task.x_support,
        &task.y_support,
        alpha,
        steps,
        second,
    )
    .unwrap();
    let loss = mse(&mlp_forward(&fast, &task.x_query).unwrap(), &task.y_query).unwrap();
    let g = loss.backward().unwrap();
    (
        loss.to_scalar::<f64>().unwrap(),
        params.iter().map(|p| vec1(g.get(p).unwrap())).collect(),
    )
}

/// The same meta-loss without autograd (for finite differences).
fn meta_loss_at(
    values: &[Tensor],
    task: &genlab_fewshot::sinusoid::RegressionTask,
    alpha: f64,
    steps: usize,
) -> f64 {
    let vars: Vec<Var> = values
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    meta_grad(&vars, task, alpha, steps, false).0
}

#[test]
fn linear_model_matches_the_closed_form_in_both_orders() {
    second_order();
    let dev = Device::Cpu;
    let task = sample_task(5, 7, &mut Rng::new(11), DType::F64, &dev).unwrap();
    let (w0, b0, alpha) = (0.7f64, -0.3f64, 0.05f64);
    let w = Var::from_tensor(&Tensor::new(&[[w0]], &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::new(&[b0], &dev).unwrap()).unwrap();
    // θ = (w, b), φ(x) = (x, 1): A = ΦᵀΦ/n, c = Φᵀy/n for the support (s) and query (q).
    let moments = |x: &Tensor, y: &Tensor| {
        let (x, y) = (vec1(x), vec1(y));
        let n = x.len() as f64;
        let a = [
            [
                x.iter().map(|v| v * v).sum::<f64>() / n,
                x.iter().sum::<f64>() / n,
            ],
            [x.iter().sum::<f64>() / n, 1.0],
        ];
        let c = [
            x.iter().zip(&y).map(|(a, b)| a * b).sum::<f64>() / n,
            y.iter().sum::<f64>() / n,
        ];
        (a, c)
    };
    let (a_s, c_s) = moments(&task.x_support, &task.y_support);
    let (a_q, c_q) = moments(&task.x_query, &task.y_query);
    let mv = |a: [[f64; 2]; 2], v: [f64; 2]| {
        [
            a[0][0] * v[0] + a[0][1] * v[1],
            a[1][0] * v[0] + a[1][1] * v[1],
        ]
    };
    // θ' = θ - 2α(A_s θ - c_s) (eq. 1 with ∇L = 2(Aθ - c)).
    let g_s = mv(a_s, [w0, b0]);
    let th = [
        w0 - 2.0 * alpha * (g_s[0] - c_s[0]),
        b0 - 2.0 * alpha * (g_s[1] - c_s[1]),
    ];
    let gq = mv(a_q, th);
    let fo = [2.0 * (gq[0] - c_q[0]), 2.0 * (gq[1] - c_q[1])];
    // Second order: (I - 2α A_s)ᵀ ∇L_q(θ'); A_s is symmetric.
    let jac = [
        [1.0 - 2.0 * alpha * a_s[0][0], -2.0 * alpha * a_s[0][1]],
        [-2.0 * alpha * a_s[1][0], 1.0 - 2.0 * alpha * a_s[1][1]],
    ];
    let so = mv(jac, fo);
    let (_, got_so) = meta_grad(&[w.clone(), b.clone()], &task, alpha, 1, true);
    let (_, got_fo) = meta_grad(&[w, b], &task, alpha, 1, false);
    for k in 0..2 {
        assert!(
            (got_so[k][0] - so[k]).abs() < CLOSED_FORM_TOL,
            "second order {k}: {} vs {}",
            got_so[k][0],
            so[k]
        );
        assert!(
            (got_fo[k][0] - fo[k]).abs() < CLOSED_FORM_TOL,
            "first order {k}: {} vs {}",
            got_fo[k][0],
            fo[k]
        );
    }
    assert!(
        (so[0] - fo[0]).abs() > 1e-3,
        "the two orders must differ here for the test to mean something"
    );
}

#[test]
fn mlp_second_order_matches_finite_differences_over_two_inner_steps() {
    second_order();
    let dev = Device::Cpu;
    let mut rng = Rng::new(5);
    let sizes = [1usize, 6, 6, 1];
    let mut values = Vec::new();
    for w in sizes.windows(2) {
        let s = 1.0 / (w[0] as f64).sqrt();
        values.push(
            Tensor::from_vec(
                (0..w[0] * w[1])
                    .map(|_| s * rng.normal())
                    .collect::<Vec<_>>(),
                (w[0], w[1]),
                &dev,
            )
            .unwrap(),
        );
        values.push(
            Tensor::from_vec(
                (0..w[1]).map(|_| 0.1 * rng.normal()).collect::<Vec<_>>(),
                w[1],
                &dev,
            )
            .unwrap(),
        );
    }
    let task = sample_task(10, 10, &mut rng, DType::F64, &dev).unwrap();
    let alpha = 0.05;
    let vars: Vec<Var> = values
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let (_, so) = meta_grad(&vars, &task, alpha, 2, true);
    let (_, fo) = meta_grad(&vars, &task, alpha, 2, false);
    let mut max_diff_orders = 0f64;
    for (pi, v) in values.iter().enumerate() {
        let flat = vec1(v);
        for j in 0..flat.len() {
            let at = |d: f64| {
                let mut f = flat.clone();
                f[j] += d;
                let mut vals = values.clone();
                vals[pi] = Tensor::from_vec(f, v.shape(), &dev).unwrap();
                meta_loss_at(&vals, &task, alpha, 2)
            };
            let fd = (at(FD_STEP) - at(-FD_STEP)) / (2.0 * FD_STEP);
            assert!(
                (so[pi][j] - fd).abs() < FD_TOL * (1.0 + fd.abs()),
                "param {pi}[{j}]: autograd {} vs finite differences {fd}",
                so[pi][j]
            );
            max_diff_orders = max_diff_orders.max((so[pi][j] - fo[pi][j]).abs());
        }
    }
    assert!(
        max_diff_orders > 1e-4,
        "first order should differ from the full gradient ({max_diff_orders})"
    );
}
