//! GAN losses on the discriminator's outputs, one function per player and loss.
//!
//! With d = the discriminator's logit, sigma(d) = D(x), and softplus(v) = log(1 + e^v):
//! - minimax (Goodfellow et al. 2014, arXiv:1406.2661, Eq. 1): the discriminator minimises
//!   -log D(x) - log(1 - D(G(z))) = softplus(-d_real) + softplus(d_fake); the generator
//!   minimises log(1 - D(G(z))) = -softplus(d_fake).
//! - non-saturating (same paper, Sec. 3): the generator minimises -log D(G(z)) =
//!   softplus(-d_fake) instead (strong gradients early in training).
//! - LSGAN (Mao et al. 2017, arXiv:1611.04076, Eq. 2): 1/2 (d_real - b)^2 + 1/2 (d_fake - a)^2
//!   for the discriminator, 1/2 (d_fake - c)^2 for the generator.
//! - WGAN (Arjovsky, Chintala & Bottou 2017, arXiv:1701.07875, Alg. 1): the critic minimises
//!   f(G(z)) - f(x), the generator -f(G(z)); the critic's weights are clipped after each update.
//! - WGAN-GP (Gulrajani et al. 2017, arXiv:1704.00028, Alg. 1, Eq. 3): the same plus
//!   lambda (||grad_x f(x_hat)||_2 - 1)^2 at x_hat = e x + (1 - e) G(z), e ~ U[0, 1].
//! - R1 (Mescheder, Geiger & Nowozin 2018, arXiv:1801.04406, Eq. 9), optional for the
//!   losses with a logit discriminator: gamma/2 E_x ||grad_x d(x)||^2 on real data only,
//!   which pushes the discriminator's gradient to zero on the data manifold.
//! - EBGAN (Zhao, Mathieu & LeCun 2017, arXiv:1609.03126, Eq. 1-2 and 6): with the energy
//!   E = the autoencoder's reconstruction error, the discriminator minimises
//!   E(x) + [m - E(G(z))]^+, the generator E(G(z)) + w PT(S), where the pull-away term
//!   PT = 1/(N(N-1)) sum_{i != j} (s_i^T s_j / (||s_i|| ||s_j||))^2 over the batch's codes.
//!
//! Every function returns the batch mean (a scalar tensor).

use candle_core::Tensor;

use genlab_core::Result;
use genlab_nn::softplus;

use super::GanLoss;

/// The discriminator's loss from its outputs on real and fake examples (logits, critic
/// scores or energies, each `[B]`). `targets` are LSGAN's [a, b, c]; `margin` EBGAN's m.
pub fn d_loss(
    kind: GanLoss,
    real: &Tensor,
    fake: &Tensor,
    targets: [f64; 3],
    margin: f64,
) -> Result<Tensor> {
    Ok(match kind {
        GanLoss::Minimax | GanLoss::NonSaturating => {
            (softplus(&real.neg()?)?.mean_all()? + softplus(fake)?.mean_all()?)?
        }
        GanLoss::Lsgan => {
            let [a, b, _] = targets;
            let r = (real - b)?.sqr()?.mean_all()?;
            let f = (fake - a)?.sqr()?.mean_all()?;
            ((r + f)? * 0.5)?
        }
        GanLoss::Wgan | GanLoss::WganGp => (fake.mean_all()? - real.mean_all()?)?,
        GanLoss::Ebgan => {
            let hinge = fake.affine(-1.0, margin)?.relu()?;
            (real.mean_all()? + hinge.mean_all()?)?
        }
    })
}

/// The generator's loss from the discriminator's outputs on fakes `[B]` (EBGAN's pull-away
/// term is added by the caller, see [`pull_away`]).
pub fn g_loss(kind: GanLoss, fake: &Tensor, targets: [f64; 3]) -> Result<Tensor> {
    Ok(match kind {
        GanLoss::Minimax => softplus(fake)?.mean_all()?.neg()?,
        GanLoss::NonSaturating => softplus(&fake.neg()?)?.mean_all()?,
        GanLoss::Lsgan => ((fake - targets[2])?.sqr()?.mean_all()? * 0.5)?,
        GanLoss::Wgan | GanLoss::WganGp => fake.mean_all()?.neg()?,
        GanLoss::Ebgan => fake.mean_all()?,
    })
}

/// mean over the batch of (||g_i||_2 - 1)^2 for input gradients `g` `[B, ...]` (without the
/// weight lambda).
pub fn gradient_penalty(g: &Tensor) -> Result<Tensor> {
    let b = g.dim(0)?;
    // The tiny offset keeps sqrt's derivative finite at a zero gradient.
    let norm = (g.reshape((b, ()))?.sqr()?.sum(1)? + 1e-12)?.sqrt()?;
    Ok((norm - 1.0)?.sqr()?.mean_all()?)
}

/// mean over the batch of ||g_i||_2^2 for input gradients `g` `[B, ...]` (R1 without its
/// weight gamma / 2).
pub fn r1_penalty(g: &Tensor) -> Result<Tensor> {
    let b = g.dim(0)?;
    Ok(g.reshape((b, ()))?.sqr()?.sum(1)?.mean_all()?)
}

/// EBGAN's pull-away term over codes `s` `[N, k]` (N >= 2).
pub fn pull_away(s: &Tensor) -> Result<Tensor> {
    let n = s.dim(0)?;
    if n < 2 {
        return Err(genlab_core::Error::InvalidInput(
            "the pull-away term needs at least 2 examples per batch".into(),
        ));
    }
    let norm = (s.sqr()?.sum_keepdim(1)? + 1e-12)?.sqrt()?;
    let u = s.broadcast_div(&norm)?;
    let cos2 = u.matmul(&u.t()?)?.sqr()?;
    // The diagonal holds n ones (cos of a vector with itself).
    let off = (cos2.sum_all()? - n as f64)?;
    Ok((off / (n * (n - 1)) as f64)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// f32 arithmetic on a handful of values.
    const TOL: f64 = 1e-5;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn s(x: Tensor) -> f64 {
        x.to_scalar::<f32>().unwrap() as f64
    }

    fn sp(v: f64) -> f64 {
        v.exp().ln_1p()
    }

    #[test]
    fn losses_equal_hand_computed_values() {
        let (r, f) = (t(&[2.0, -1.0]), t(&[0.5, -3.0]));
        let tg = [0.0, 1.0, 1.0];
        let cases: Vec<(GanLoss, f64, f64)> = vec![
            (
                GanLoss::Minimax,
                (sp(-2.0) + sp(1.0)) / 2.0 + (sp(0.5) + sp(-3.0)) / 2.0,
                -(sp(0.5) + sp(-3.0)) / 2.0,
            ),
            (
                GanLoss::NonSaturating,
                (sp(-2.0) + sp(1.0)) / 2.0 + (sp(0.5) + sp(-3.0)) / 2.0,
                (sp(-0.5) + sp(3.0)) / 2.0,
            ),
            (
                // 1/2 mean((r-1)^2) + 1/2 mean(f^2); 1/2 mean((f-1)^2)
                GanLoss::Lsgan,
                0.5 * (1.0 + 4.0) / 2.0 + 0.5 * (0.25 + 9.0) / 2.0,
                0.5 * (0.25 + 16.0) / 2.0,
            ),
            (
                GanLoss::Wgan,
                (0.5 - 3.0) / 2.0 - (2.0 - 1.0) / 2.0,
                (3.0 - 0.5) / 2.0,
            ),
        ];
        for (k, want_d, want_g) in cases {
            let d = s(d_loss(k, &r, &f, tg, 1.0).unwrap());
            let g = s(g_loss(k, &f, tg).unwrap());
            assert!((d - want_d).abs() < TOL, "{k:?} d: {d} vs {want_d}");
            assert!((g - want_g).abs() < TOL, "{k:?} g: {g} vs {want_g}");
        }
        // EBGAN with energies: mean(E_real) + mean(max(0, m - E_fake)), m = 1.
        let (er, ef) = (t(&[0.2, 0.4]), t(&[0.5, 1.5]));
        let d = s(d_loss(GanLoss::Ebgan, &er, &ef, tg, 1.0).unwrap());
        assert!((d - (0.3 + (0.5 + 0.0) / 2.0)).abs() < TOL, "{d}");
        assert!((s(g_loss(GanLoss::Ebgan, &ef, tg).unwrap()) - 1.0).abs() < TOL);
        // LSGAN with the Pearson chi^2 targets a = -1, b = 1, c = 0.
        let d = s(d_loss(GanLoss::Lsgan, &r, &f, [-1.0, 1.0, 0.0], 1.0).unwrap());
        let want = 0.5 * (1.0 + 4.0) / 2.0 + 0.5 * (2.25 + 4.0) / 2.0;
        assert!((d - want).abs() < TOL, "{d} vs {want}");
    }

    #[test]
    fn gradient_penalties_and_pull_away_equal_hand_computed_values() {
        // Norms 5 and 0.5: ((5-1)^2 + (0.5-1)^2) / 2.
        let g = Tensor::new(&[[3.0f32, 4.0], [0.3, 0.4]], &Device::Cpu).unwrap();
        let gp = s(gradient_penalty(&g).unwrap());
        assert!((gp - (16.0 + 0.25) / 2.0).abs() < TOL, "{gp}");
        // R1: squared norms 25 and 0.25, averaged.
        let r1 = s(r1_penalty(&g).unwrap());
        assert!((r1 - (25.0 + 0.25) / 2.0).abs() < TOL, "{r1}");
        // Codes e1, e1+e2, -e2: cos^2 pairs 1/2, 0, 1/2 (each counted twice) over 3*2.
        let c = Tensor::new(&[[1.0f32, 0.0], [1.0, 1.0], [0.0, -2.0]], &Device::Cpu).unwrap();
        let pt = s(pull_away(&c).unwrap());
        assert!((pt - 2.0 * (0.5 + 0.0 + 0.5) / 6.0).abs() < TOL, "{pt}");
        assert!(pull_away(&c.narrow(0, 0, 1).unwrap()).is_err());
    }
}
