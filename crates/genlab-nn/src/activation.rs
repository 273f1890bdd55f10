//! Activations built from differentiable candle ops, and the derivative masks that explicit
//! input-gradient graphs (the WGAN-GP critic's) need.

use candle_core::{DType, Tensor};

/// `max(x, slope x)` for `0 <= slope < 1`, written `(1 - slope) relu(x) + slope x` so that
/// its backward is candle's own (relu and affine).
pub fn leaky_relu(x: &Tensor, slope: f64) -> candle_core::Result<Tensor> {
    (x.relu()? * (1.0 - slope))? + (x * slope)?
}

/// The derivative of [`leaky_relu`] at `x`: 1 where `x > 0`, `slope` elsewhere. A constant
/// (no autograd graph): its own derivative is zero almost everywhere.
pub fn leaky_relu_grad(x: &Tensor, slope: f64) -> candle_core::Result<Tensor> {
    x.detach()
        .gt(0.0)?
        .to_dtype(DType::F32)?
        .affine(1.0 - slope, slope)
}

/// The derivative of relu at `x` (1 where `x > 0`, else 0), a constant like
/// [`leaky_relu_grad`].
pub fn relu_grad(x: &Tensor) -> candle_core::Result<Tensor> {
    x.detach().gt(0.0)?.to_dtype(DType::F32)
}

/// `log(1 + exp(x))`, stable for large `|x|`: `relu(x) + log(1 + exp(-|x|))`.
pub fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// f32 evaluation of elementary functions.
    const TOL: f32 = 1e-6;

    #[test]
    fn values_and_gradients_match_closed_forms() {
        let xs = [-30.0f32, -2.0, -0.5, 0.25, 3.0, 40.0];
        let v = Var::new(&xs, &Device::Cpu).unwrap();
        let sp = softplus(v.as_tensor()).unwrap();
        let lr = leaky_relu(v.as_tensor(), 0.2).unwrap();
        let g_sp = sp.sum_all().unwrap().backward().unwrap();
        let g_lr = lr.sum_all().unwrap().backward().unwrap();
        let sp: Vec<f32> = sp.to_vec1().unwrap();
        let lr: Vec<f32> = lr.to_vec1().unwrap();
        let dsp: Vec<f32> = g_sp.get(&v).unwrap().to_vec1().unwrap();
        let dlr: Vec<f32> = g_lr.get(&v).unwrap().to_vec1().unwrap();
        let mask: Vec<f32> = leaky_relu_grad(v.as_tensor(), 0.2)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, &x) in xs.iter().enumerate() {
            let x64 = x as f64;
            let want = x64.exp().ln_1p() as f32; // exact in f64 for these inputs
            let want = if x64 > 30.0 { x } else { want };
            assert!((sp[i] - want).abs() <= TOL * want.abs().max(1.0), "{x}");
            let sig = (1.0 / (1.0 + (-x64).exp())) as f32;
            assert!((dsp[i] - sig).abs() <= TOL, "softplus' at {x}");
            let want_lr = if x > 0.0 { x } else { 0.2 * x };
            assert!((lr[i] - want_lr).abs() <= TOL * x.abs().max(1.0));
            let want_d = if x > 0.0 { 1.0 } else { 0.2 };
            assert!((dlr[i] - want_d).abs() <= TOL && (mask[i] - want_d).abs() <= TOL);
        }
    }
}
