//! The sine-wave regression tasks of MAML (Finn, Abbeel & Levine 2017, "Model-Agnostic
//! Meta-Learning for Fast Adaptation of Deep Networks", arXiv:1703.03400, section 5.1):
//! a task is `y = A sin(x - φ)` with amplitude `A ~ U[0.1, 5]`, phase `φ ~ U[0, π]`, inputs
//! `x ~ U[-5, 5]`; K examples to adapt on, then the error on new points of the same wave.
//! Also the functional MLP the regression methods adapt (its weights are passed in, so an
//! inner loop can differentiate through its own updates).

use candle_core::{DType, Device, Tensor};
use genlab_core::{Result, Rng};

/// Amplitude range (the paper's).
pub const AMPLITUDE: (f64, f64) = (0.1, 5.0);
/// Phase range.
pub const PHASE: (f64, f64) = (0.0, std::f64::consts::PI);
/// Input range.
pub const X_RANGE: (f64, f64) = (-5.0, 5.0);

/// One task's data, `[K, 1]` / `[Q, 1]` tensors.
#[derive(Clone, Debug)]
pub struct RegressionTask {
    pub amplitude: f64,
    pub phase: f64,
    pub x_support: Tensor,
    pub y_support: Tensor,
    pub x_query: Tensor,
    pub y_query: Tensor,
}

/// Draws a task with `k` support and `q` query points, in `dtype`.
pub fn sample_task(
    k: usize,
    q: usize,
    rng: &mut Rng,
    dtype: DType,
    device: &Device,
) -> Result<RegressionTask> {
    let u = |rng: &mut Rng, (lo, hi): (f64, f64)| lo + (hi - lo) * rng.uniform();
    let amplitude = u(rng, AMPLITUDE);
    let phase = u(rng, PHASE);
    let points = |n: usize, rng: &mut Rng| -> Result<(Tensor, Tensor)> {
        let xs: Vec<f64> = (0..n).map(|_| u(rng, X_RANGE)).collect();
        let ys: Vec<f64> = xs.iter().map(|x| amplitude * (x - phase).sin()).collect();
        Ok((
            Tensor::from_vec(xs, (n, 1), device)?.to_dtype(dtype)?,
            Tensor::from_vec(ys, (n, 1), device)?.to_dtype(dtype)?,
        ))
    };
    let (x_support, y_support) = points(k, rng)?;
    let (x_query, y_query) = points(q, rng)?;
    Ok(RegressionTask {
        amplitude,
        phase,
        x_support,
        y_support,
        x_query,
        y_query,
    })
}

/// A fully connected ReLU network `sizes[0] -> ... -> sizes[last]` whose weights are
/// arguments: `[w0, b0, w1, b1, ...]`, `w` `[in, out]`, `b` `[out]`.
pub fn mlp_forward(params: &[Tensor], x: &Tensor) -> candle_core::Result<Tensor> {
    let layers = params.len() / 2;
    let mut h = x.clone();
    for l in 0..layers {
        h = h
            .matmul(&params[2 * l])?
            .broadcast_add(&params[2 * l + 1])?;
        if l + 1 < layers {
            // candle's relu: its backward is a constant mask times the gradient, so it can
            // be differentiated again (second-order MAML); genlab's kernel relu cannot.
            h = h.relu()?;
        }
    }
    Ok(h)
}

/// Mean squared error.
pub fn mse(pred: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    pred.sub(y)?.sqr()?.mean_all()
}

/// `steps` plain gradient steps of size `lr` on the MSE of (`x`, `y`) from `params`
/// (MAML's inner loop, eq. 1: θ' = θ - α ∇θ L(fθ)). With `create_graph` the new weights
/// keep their dependence on `params` through the gradients (second order: the caller must
/// have set `CANDLE_GRAD_DO_NOT_DETACH`, see [`crate::methods::maml`]); without it the
/// gradients are constants (first order).
pub fn sgd_adapt(
    params: &[Tensor],
    x: &Tensor,
    y: &Tensor,
    lr: f64,
    steps: usize,
    create_graph: bool,
) -> Result<Vec<Tensor>> {
    let mut fast: Vec<Tensor> = params.to_vec();
    for _ in 0..steps {
        let loss = mse(&mlp_forward(&fast, x)?, y)?;
        let grads = loss.backward()?;
        let mut next = Vec::with_capacity(fast.len());
        for p in &fast {
            let g = match grads.get(p) {
                Some(g) if create_graph => g.clone(),
                Some(g) => g.detach(),
                None => p.zeros_like()?,
            };
            // θ' = θ - α g keeps its link to `params` through θ in both orders; only the
            // gradient's own dependence on θ is cut in first order.
            next.push(p.sub(&g.affine(lr, 0.0)?)?);
        }
        fast = next;
    }
    Ok(fast)
}

/// The weights `[w0, b0, w1, b1, ...]` of an MLP with layer `sizes`, created in `store` as
/// `layer.{i}.weight` `[in, out]` and `layer.{i}.bias` `[out]`, both `U(-1/√in, 1/√in)`
/// (PyTorch's `nn.Linear` initialisation).
pub fn mlp_params(store: &genlab_core::ParamStore, sizes: &[usize]) -> Result<Vec<Tensor>> {
    let vb = store.vb();
    let mut out = Vec::new();
    for (i, w) in sizes.windows(2).enumerate() {
        let bound = 1.0 / (w[0] as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        out.push(vb.get_with_hints((w[0], w[1]), &format!("layer.{i}.weight"), init)?);
        out.push(vb.get_with_hints(w[1], &format!("layer.{i}.bias"), init)?);
    }
    Ok(out)
}

/// The regression network of a method: a store seeded by `seed` and the weights of an MLP
/// `input -> hidden... -> 1` in it ([`mlp_params`]).
pub fn regression_mlp(
    input: &[usize],
    hidden: &[usize],
    seed: u64,
    device: &Device,
) -> Result<(genlab_core::ParamStore, Vec<Tensor>)> {
    let store = genlab_core::ParamStore::new(seed, device);
    let mut sizes = vec![input.iter().product()];
    sizes.extend(hidden);
    sizes.push(1);
    let params = mlp_params(&store, &sizes)?;
    Ok((store, params))
}

/// The query MSE of `params` after `steps` first-order gradient steps on the support set
/// (the test-time adaptation of MAML and of the fine-tuned baseline).
pub fn adapted_query_mse(
    params: &[Tensor],
    task: &RegressionTask,
    lr: f64,
    steps: usize,
) -> Result<f64> {
    let fast = sgd_adapt(params, &task.x_support, &task.y_support, lr, steps, false)?;
    let m = mse(&mlp_forward(&fast, &task.x_query)?, &task.y_query)?;
    Ok(m.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_lie_in_the_papers_ranges_and_follow_the_wave() {
        let mut rng = Rng::new(0);
        for _ in 0..50 {
            let t = sample_task(5, 7, &mut rng, DType::F64, &Device::Cpu).unwrap();
            assert!(
                (0.1..=5.0).contains(&t.amplitude)
                    && (0.0..=std::f64::consts::PI).contains(&t.phase)
            );
            let xs = t.x_query.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let ys = t.y_query.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for (x, y) in xs.iter().zip(&ys) {
                assert!((-5.0..=5.0).contains(x));
                assert!((y - t.amplitude * (x - t.phase).sin()).abs() < 1e-12);
            }
        }
    }
}
