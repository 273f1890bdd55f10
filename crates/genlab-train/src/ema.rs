//! Exponential moving average of the weights.
//!
//! Polyak & Juditsky 1992; used for DDPM sampling by Ho et al. 2020 (App. B, decay 0.9999).
//! ema <- d * ema + (1 - d) * w after every optimizer step, with the warm-up
//! d = min(decay, (1 + n) / (10 + n)) at update n (as in TensorFlow's
//! ExponentialMovingAverage with num_updates): early on the average follows the weights
//! instead of holding on to the random initialisation for thousands of steps. The shadow
//! weights live in their own `ParamStore` so a second copy of the network can run on them.
//!
//! CPU f32 pairs are updated in place, one pass per variable (candle's `InplaceOp2`, split
//! over rayon's threads for large variables); other devices and dtypes take the tensor-op
//! update ([`Ema::update_reference`]), with the same f32 arithmetic in the same order.

use candle_core::{CpuStorage, InplaceOp2, Layout, Var};
use rayon::prelude::*;

use genlab_core::{Error, ParamStore, Result};

use crate::optim::{host_f32, host_f32_mut, is_host_f32, par_chunk_len};

pub struct Ema {
    pub decay: f64,
    /// The warm-up of the decay (on by default). Off when the weights start from a trained
    /// average, as in fine-tuning or distillation: there the warm-up would throw the good
    /// average away for the first noisy steps' weights.
    pub warmup: bool,
    pairs: Vec<(Var, Var)>, // (shadow, live), matched by name
}

/// shadow <- d * shadow + (1 - d) * live, in place on the shadow.
struct FusedEma {
    d: f32,
    one_minus_d: f32,
}

fn ema_slice(s: &mut [f32], l: &[f32], d: f32, one_minus_d: f32) {
    let l = &l[..s.len()];
    for (s, &l) in s.iter_mut().zip(l) {
        *s = *s * d + l * one_minus_d;
    }
}

impl InplaceOp2 for FusedEma {
    fn name(&self) -> &'static str {
        "genlab-fused-ema"
    }

    fn cpu_fwd(
        &self,
        s: &mut CpuStorage,
        sl: &Layout,
        l: &CpuStorage,
        ll: &Layout,
    ) -> candle_core::Result<()> {
        let s = host_f32_mut(s, sl)?;
        let l = host_f32(l, ll)?;
        if s.len() != l.len() {
            candle_core::bail!("fused EMA: {} shadow values, {} live", s.len(), l.len());
        }
        let (d, omd) = (self.d, self.one_minus_d);
        match par_chunk_len(s.len()) {
            None => ema_slice(s, l, d, omd),
            Some(c) => s
                .par_chunks_mut(c)
                .zip(l.par_chunks(c))
                .for_each(|(s, l)| ema_slice(s, l, d, omd)),
        }
        Ok(())
    }
}

impl Ema {
    /// Pairs every variable of `live` with the same-named one of `shadow` and copies the
    /// live values in (a copy: `ParamStore::load` gives the shadow its own values). Both
    /// stores must hold the same names and shapes, and must not share variables.
    pub fn new(shadow: &ParamStore, live: &ParamStore, decay: f64) -> Result<Self> {
        let s = shadow.vars();
        let l = live.vars();
        if let Some(((name, _), _)) = s
            .iter()
            .zip(&l)
            .find(|((_, a), (_, b))| a.as_tensor().id() == b.as_tensor().id())
        {
            return Err(Error::InvalidInput(format!(
                "the EMA store and the live store share variable `{name}` (the same store \
                 twice?): the average needs its own copy"
            )));
        }
        shadow.load(&live.tensors())?;
        let pairs = s
            .into_iter()
            .zip(l)
            .map(|((_, a), (_, b))| (a, b))
            .collect();
        Ok(Self {
            decay,
            warmup: true,
            pairs,
        })
    }

    /// Decay used at update number `n` (0-based).
    pub fn decay_at(&self, n: u64) -> f64 {
        if self.warmup {
            self.decay.min((1.0 + n as f64) / (10.0 + n as f64))
        } else {
            self.decay
        }
    }

    /// The EMA update number `n` (0-based: the optimizer's step count before this step).
    pub fn update(&self, n: u64) -> Result<()> {
        let d = self.decay_at(n);
        let op = FusedEma {
            d: d as f32,
            one_minus_d: (1.0 - d) as f32,
        };
        for (shadow, live) in &self.pairs {
            let (s, l) = (shadow.as_tensor(), live.as_tensor());
            if is_host_f32(s) && is_host_f32(l) {
                s.inplace_op2(l, &op)?;
            } else {
                Self::update_pair_reference(shadow, live, d)?;
            }
        }
        Ok(())
    }

    /// [`Ema::update`] written as candle tensor ops (the implementation before fusion): the
    /// path of non-CPU or non-f32 variables, the tests' reference and the benchmark's
    /// baseline.
    pub fn update_reference(&self, n: u64) -> Result<()> {
        let d = self.decay_at(n);
        for (shadow, live) in &self.pairs {
            Self::update_pair_reference(shadow, live, d)?;
        }
        Ok(())
    }

    fn update_pair_reference(shadow: &Var, live: &Var, d: f64) -> Result<()> {
        let next = ((shadow.as_tensor() * d)? + (live.as_tensor() * (1.0 - d))?)?;
        shadow.set(&next)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn ema_follows_the_closed_form() {
        let live = ParamStore::new(0, &Device::Cpu);
        let shadow = ParamStore::new(1, &Device::Cpu);
        for ps in [&live, &shadow] {
            ps.vb()
                .get_with_hints(1, "w", candle_nn::Init::Const(2.0))
                .unwrap();
        }
        let ema = Ema::new(&shadow, &live, 0.9).unwrap();
        live.vars()[0]
            .1
            .set(&candle_core::Tensor::new(&[4.0f32], &Device::Cpu).unwrap())
            .unwrap();
        // Past the warm-up (n = 100: (101/110) > 0.9) the decay is the configured one.
        assert_eq!(ema.decay_at(100), 0.9);
        assert!((ema.decay_at(0) - 0.1).abs() < 1e-12);
        // Without the warm-up (fine-tuning from an average) the decay is constant.
        let cold = Ema {
            decay: 0.9,
            warmup: false,
            pairs: Vec::new(),
        };
        assert_eq!((cold.decay_at(0), cold.decay_at(100)), (0.9, 0.9));
        ema.update(100).unwrap();
        ema.update(101).unwrap();
        // 2 -> 0.9*2 + 0.1*4 = 2.2 -> 0.9*2.2 + 0.4 = 2.38
        let v = shadow.vars()[0].1.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((v - 2.38).abs() < 1e-6, "{v}");
        // The first update (d = 0.1) moves almost all the way to the weights.
        ema.update(0).unwrap();
        let v = shadow.vars()[0].1.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((v - (0.1 * 2.38 + 0.9 * 4.0)).abs() < 1e-5, "{v}");
    }

    /// The fused update agrees with the tensor-op one to this error, relative to
    /// max(1, |value|) (the same f32 operations in the same order: in practice equal).
    const FUSED_TOL: f32 = 1e-7;

    /// A store of odd-sized variables (one above the threading threshold) from `seed`.
    fn store(seed: u64) -> ParamStore {
        let ps = ParamStore::new(seed, &Device::Cpu);
        let vb = ps.vb();
        let randn = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        };
        for (i, shape) in [vec![1], vec![7], vec![3, 5], vec![1001], vec![3, 11_111]]
            .into_iter()
            .enumerate()
        {
            vb.get_with_hints(shape, &format!("p{i}"), randn).unwrap();
        }
        ps
    }

    fn values(ps: &ParamStore) -> Vec<Vec<f32>> {
        ps.vars()
            .iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    }

    /// Moves every live variable to fresh random values (as an optimizer step would).
    fn perturb(live: &ParamStore, seed: u64) {
        let next = store(seed);
        live.load(&next.tensors()).unwrap();
    }

    #[test]
    fn fused_update_matches_the_tensor_ops() {
        let (live_a, shadow_a) = (store(1), store(2));
        let (live_b, shadow_b) = (store(1), store(2));
        let fused = Ema::new(&shadow_a, &live_a, 0.99).unwrap();
        let reference = Ema::new(&shadow_b, &live_b, 0.99).unwrap();
        for n in [0u64, 1, 5, 500, 501] {
            perturb(&live_a, 10 + n);
            perturb(&live_b, 10 + n);
            fused.update(n).unwrap();
            reference.update_reference(n).unwrap();
            for (a, b) in values(&shadow_a).iter().zip(&values(&shadow_b)) {
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= FUSED_TOL * y.abs().max(1.0),
                        "n={n}: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_shadow_is_a_copy_and_only_update_moves_it() {
        let (live, shadow) = (store(1), store(2));
        let ema = Ema::new(&shadow, &live, 0.9).unwrap();
        let start = values(&live);
        assert_eq!(values(&shadow), start);
        // Training the live weights does not reach the shadow...
        perturb(&live, 3);
        assert_eq!(values(&shadow), start);
        // ...and the in-place update writes the shadow only.
        let moved = values(&live);
        ema.update(100).unwrap();
        assert_eq!(values(&live), moved);
        assert_ne!(values(&shadow), start);
        // A snapshot of the shadow taken with `copy` is not touched by later updates.
        let snap: Vec<candle_core::Tensor> = shadow
            .vars()
            .iter()
            .map(|(_, v)| v.as_tensor().copy().unwrap())
            .collect();
        let before: Vec<Vec<f32>> = snap
            .iter()
            .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        ema.update(101).unwrap();
        let after: Vec<Vec<f32>> = snap
            .iter()
            .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn sharing_the_live_store_is_refused() {
        let live = store(1);
        let err = Ema::new(&live.clone(), &live, 0.9).err().unwrap();
        assert!(err.to_string().contains("share variable"), "{err}");
    }
}
