//! The generator of generative replay: a fully connected variational autoencoder (Kingma &
//! Welling 2014, "Auto-Encoding Variational Bayes", arXiv:1312.6114, Eq. 10 with the
//! reparameterisation of Section 2.4), shaped as van de Ven & Tolias 2019's (arXiv:1904.07734,
//! Section 4): encoder `dim -> 400 -> 400 -> (mu, log var)` of a 100-d latent, decoder
//! `100 -> 400 -> 400 -> dim` with a sigmoid output, Bernoulli likelihood.
//!
//! Loss per example, both terms divided by the number of pixels as in the reference code
//! (`average = True`): `mean_p BCE(sigmoid(l_p), x_p) + KL(q(z|x) || N(0, I)) / dim`, with
//! `KL = -1/2 sum_j (1 + log var_j - mu_j^2 - var_j)`. A sample is the decoder's sigmoid output
//! at `z ~ N(0, I)` (the reference replays these means, not Bernoulli draws).
//!
//! Built on the same flat-vector MLP as the classifier, with its hand-written backward pass;
//! `tests` check the whole loss gradient against finite differences.

use genlab_core::{Error, Result, Rng};
use genlab_rl::nn::{Activation, Cache, Init, Mlp};
use genlab_rl::optim::Adam;

use crate::learner::ADAM_EPS;

/// A VAE with its optimizer state.
#[derive(Clone, Debug)]
pub struct Vae {
    pub enc: Mlp,
    pub dec: Mlp,
    pub z_dim: usize,
    opt_e: Adam,
    opt_d: Adam,
    pub lr: f64,
    ge: Vec<f32>,
    gd: Vec<f32>,
    ce: Cache,
    cd: Cache,
}

impl Vae {
    pub fn new(dim: usize, hidden: &[usize], z_dim: usize, lr: f64, rng: &mut Rng) -> Self {
        let mut es = vec![dim];
        es.extend_from_slice(hidden);
        es.push(2 * z_dim);
        let mut ds = vec![z_dim];
        ds.extend(hidden.iter().rev());
        ds.push(dim);
        let enc = Mlp::new(&es, Activation::Relu, Init::Torch, rng);
        let dec = Mlp::new(&ds, Activation::Relu, Init::Torch, rng);
        let (ne, nd) = (enc.num_params(), dec.num_params());
        Self {
            enc,
            dec,
            z_dim,
            opt_e: Adam::new(ne, ADAM_EPS),
            opt_d: Adam::new(nd, ADAM_EPS),
            lr,
            ge: vec![0.0; ne],
            gd: vec![0.0; nd],
            ce: Cache::default(),
            cd: Cache::default(),
        }
    }

    pub fn num_params(&self) -> usize {
        self.enc.num_params() + self.dec.num_params()
    }

    pub fn zero_grad(&mut self) {
        self.ge.fill(0.0);
        self.gd.fill(0.0);
    }

    /// The loss on `x` `[n, dim]` with latent noise `eps` `[n, z]`, its gradient times
    /// `weight` added to the accumulated gradients. Returns the (unweighted) loss.
    pub fn add_loss(&mut self, x: &[f32], n: usize, eps: &[f32], weight: f64) -> f64 {
        let (dim, zd) = (self.dec.out_dim(), self.z_dim);
        let h = self.enc.forward(x, n, &mut self.ce).to_vec();
        // h [n, 2z]: mu = h[:, :z], log var = h[:, z:].
        let mut z = vec![0f32; n * zd];
        for r in 0..n {
            for j in 0..zd {
                let (mu, lv) = (h[r * 2 * zd + j], h[r * 2 * zd + zd + j]);
                z[r * zd + j] = mu + (0.5 * lv).exp() * eps[r * zd + j];
            }
        }
        let l = self.dec.forward(&z, n, &mut self.cd).to_vec();
        let norm = (dim * n) as f64;
        let mut loss = 0.0;
        let mut dl = vec![0f32; n * dim];
        for (i, (&li, &xi)) in l.iter().zip(x).enumerate() {
            let (lf, xf) = (li as f64, xi as f64);
            loss += lf.max(0.0) + (-lf.abs()).exp().ln_1p() - xf * lf;
            let s = 1.0 / (1.0 + (-lf).exp());
            dl[i] = (weight * (s - xf) / norm) as f32;
        }
        let mut dz = Vec::new();
        self.dec
            .backward(&mut self.cd, &dl, &mut self.gd, Some(&mut dz));
        let mut dh = vec![0f32; n * 2 * zd];
        for r in 0..n {
            for j in 0..zd {
                let (mu, lv) = (h[r * 2 * zd + j] as f64, h[r * 2 * zd + zd + j] as f64);
                loss += -0.5 * (1.0 + lv - mu * mu - lv.exp());
                let e = eps[r * zd + j] as f64;
                let g = dz[r * zd + j] as f64;
                dh[r * 2 * zd + j] = (g + weight * mu / norm) as f32;
                dh[r * 2 * zd + zd + j] = (g * e * 0.5 * (0.5 * lv).exp()
                    + weight * 0.5 * (lv.exp() - 1.0) / norm)
                    as f32;
            }
        }
        self.enc.backward(&mut self.ce, &dh, &mut self.ge, None);
        loss / norm
    }

    /// One Adam step of encoder and decoder.
    pub fn step(&mut self) -> Result<()> {
        if self.ge.iter().chain(&self.gd).any(|g| !g.is_finite()) {
            return Err(Error::Numeric(
                "the generator's gradient is not finite".into(),
            ));
        }
        self.opt_e.step(&mut self.enc.params, &self.ge, self.lr);
        self.opt_d.step(&mut self.dec.params, &self.gd, self.lr);
        Ok(())
    }

    /// `n` samples `[n, dim]`: the decoder's mean at `z ~ N(0, I)`.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Vec<f32> {
        decode(&self.dec, &rng.normal_vec(n * self.z_dim), n)
    }
}

/// The decoder's sigmoid output at `z` `[n, z_dim]`.
pub fn decode(dec: &Mlp, z: &[f32], n: usize) -> Vec<f32> {
    let mut l = crate::mlp::logits(dec, z, n);
    l.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences of an f32 network's loss in f64.
    const FD_TOL: f64 = 3e-2;
    const FD_H: f32 = 5e-3;
    /// f32 rounding of the loss divided by 2h.
    const FD_ABS: f64 = 1e-4;

    #[test]
    fn vae_gradient_matches_finite_differences() {
        let mut rng = Rng::new(9);
        let (dim, z, n) = (6, 3, 4);
        let mut vae = Vae::new(dim, &[5], z, 1e-3, &mut rng);
        let x: Vec<f32> = (0..n * dim).map(|_| rng.uniform() as f32).collect();
        let eps = rng.normal_vec(n * z);
        vae.zero_grad();
        vae.add_loss(&x, n, &eps, 1.0);
        let (ge, gd) = (vae.ge.clone(), vae.gd.clone());
        let loss_at = |v: &mut Vae| {
            v.zero_grad();
            v.add_loss(&x, n, &eps, 1.0)
        };
        let mut checked = 0;
        for which in 0..2 {
            let np = if which == 0 { ge.len() } else { gd.len() };
            for i in (0..np).step_by(3) {
                let mut p = vae.clone();
                let mut m = vae.clone();
                if which == 0 {
                    p.enc.params[i] += FD_H;
                    m.enc.params[i] -= FD_H;
                } else {
                    p.dec.params[i] += FD_H;
                    m.dec.params[i] -= FD_H;
                }
                let fd = (loss_at(&mut p) - loss_at(&mut m)) / (2.0 * FD_H as f64);
                let g = if which == 0 { ge[i] } else { gd[i] } as f64;
                assert!(
                    (fd - g).abs() <= FD_TOL * fd.abs() + FD_ABS,
                    "{} param {i}: analytic {g} vs finite difference {fd}",
                    ["encoder", "decoder"][which]
                );
                checked += 1;
            }
        }
        assert!(checked > 20);
    }

    #[test]
    fn training_lowers_the_loss_and_samples_are_pixels() {
        let mut rng = Rng::new(2);
        let (dim, n) = (8, 32);
        let mut vae = Vae::new(dim, &[16], 2, 1e-2, &mut rng);
        let x: Vec<f32> = (0..n * dim).map(|i| ((i % dim) < 4) as u8 as f32).collect();
        let mut first = 0.0;
        let mut last = 0.0;
        for it in 0..200 {
            let eps = rng.normal_vec(n * 2);
            vae.zero_grad();
            last = vae.add_loss(&x, n, &eps, 1.0);
            if it == 0 {
                first = last;
            }
            vae.step().unwrap();
        }
        assert!(last < 0.5 * first, "{first} -> {last}");
        let s = vae.sample(5, &mut rng);
        assert_eq!(s.len(), 5 * dim);
        assert!(s.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
