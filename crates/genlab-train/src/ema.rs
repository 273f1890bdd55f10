//! Exponential moving average of the weights.
//!
//! Polyak & Juditsky 1992; used for DDPM sampling by Ho et al. 2020 (App. B, decay 0.9999).
//! ema <- decay * ema + (1 - decay) * w after every optimizer step. The shadow weights live
//! in their own `ParamStore` so a second copy of the network can run on them.

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

    /// One EMA update.
    pub fn update(&self) -> Result<()> {
        for (shadow, live) in &self.pairs {
            let next =
                ((shadow.as_tensor() * self.decay)? + (live.as_tensor() * (1.0 - self.decay))?)?;
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
        ema.update().unwrap();
        ema.update().unwrap();
        // 2 -> 0.9*2 + 0.1*4 = 2.2 -> 0.9*2.2 + 0.4 = 2.38
        let v = shadow.vars()[0].1.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((v - 2.38).abs() < 1e-6, "{v}");
    }
}
