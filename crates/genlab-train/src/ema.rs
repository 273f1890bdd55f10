//! Exponential moving average of the weights.
//!
//! Polyak & Juditsky 1992; used for DDPM sampling by Ho et al. 2020 (App. B, decay 0.9999).
//! ema <- d * ema + (1 - d) * w after every optimizer step, with the warm-up
//! d = min(decay, (1 + n) / (10 + n)) at update n (as in TensorFlow's
//! ExponentialMovingAverage with num_updates): early on the average follows the weights
//! instead of holding on to the random initialisation for thousands of steps. The shadow
//! weights live in their own `ParamStore` so a second copy of the network can run on them.

use candle_core::Var;

use genlab_core::{ParamStore, Result};

pub struct Ema {
    pub decay: f64,
    pairs: Vec<(Var, Var)>, // (shadow, live), matched by name
}

impl Ema {
    /// Pairs every variable of `live` with the same-named one of `shadow` and copies the
    /// live values in. Both stores must hold the same names and shapes.
    pub fn new(shadow: &ParamStore, live: &ParamStore, decay: f64) -> Result<Self> {
        shadow.load(&live.tensors())?;
        let s = shadow.vars();
        let l = live.vars();
        let pairs = s
            .into_iter()
            .zip(l)
            .map(|((_, a), (_, b))| (a, b))
            .collect();
        Ok(Self { decay, pairs })
    }

    /// Decay used at update number `n` (0-based).
    pub fn decay_at(&self, n: u64) -> f64 {
        self.decay.min((1.0 + n as f64) / (10.0 + n as f64))
    }

    /// The EMA update number `n` (0-based: the optimizer's step count before this step).
    pub fn update(&self, n: u64) -> Result<()> {
        let d = self.decay_at(n);
        for (shadow, live) in &self.pairs {
            let next = ((shadow.as_tensor() * d)? + (live.as_tensor() * (1.0 - d))?)?;
            shadow.set(&next)?;
        }
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
}
