//! Trainable parameters created from a seed.
//!
//! `candle_nn::VarMap` initialises weights with candle's CPU generator, which cannot be
//! seeded. [`ParamStore`] is a drop-in backend for `candle_nn::VarBuilder` that draws every
//! initial value from our [`Rng`], honouring candle's `Init` hints (constant, normal,
//! uniform, Kaiming) with PyTorch's formulas. Model constructors run in a fixed order, so
//! the same seed gives the same initial weights, byte for byte. Model code uses the
//! ordinary `candle_nn` layers through `store.vb()`; parameter names are the `pp` paths.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use crate::{Error, Result, Rng};

struct Inner {
    rng: Rng,
    vars: BTreeMap<String, Var>,
}

/// A seeded store of named trainable variables; cloning shares the same variables.
#[derive(Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<Inner>>,
    device: Device,
}

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParamStore({} tensors)", self.len())
    }
}

fn init_values(init: Init, shape: &Shape, rng: &mut Rng) -> Vec<f32> {
    let n = shape.elem_count();
    let normal = |rng: &mut Rng, mean: f64, std: f64| -> Vec<f32> {
        (0..n).map(|_| (mean + std * rng.normal()) as f32).collect()
    };
    let uniform = |rng: &mut Rng, lo: f64, up: f64| -> Vec<f32> {
        (0..n)
            .map(|_| (lo + (up - lo) * rng.uniform()) as f32)
            .collect()
    };
    match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Uniform { lo, up } => uniform(rng, lo, up),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            // PyTorch's kaiming_{uniform,normal}_: std = gain / sqrt(fan).
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Normal => normal(rng, 0.0, std),
                candle_nn::init::NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(rng, -bound, bound)
                }
            }
        }
    }
}

impl ParamStore {
    /// An empty store whose initial values come from `Rng::derive(seed, "init")`.
    pub fn new(seed: u64, device: &Device) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                rng: Rng::derive(seed, "init"),
                vars: BTreeMap::new(),
            })),
            device: device.clone(),
        }
    }

    /// A `VarBuilder` that creates (first call) or returns (later calls) variables here.
    pub fn vb(&self) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, self.device.clone())
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// All variables, sorted by name (a stable order for optimizers and checkpoints).
    pub fn vars(&self) -> Vec<(String, Var)> {
        let g = self.inner.lock().expect("param store lock");
        g.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Number of named tensors.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("param store lock").vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The current values as tensors that share the variables' storage: a live view, not a
    /// snapshot (the optimizer and EMA update weights in place, so a map kept across a
    /// training step changes with it). Write it out at once (checkpoints do) or `copy()`.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect()
    }

    /// Overwrites every variable from `map`. Strict: a missing name, an extra name or a
    /// shape mismatch is an error (the checkpoint belongs to another model or config).
    pub fn load(&self, map: &HashMap<String, Tensor>) -> Result<()> {
        let vars = self.vars();
        for (name, var) in &vars {
            let t = map.get(name).ok_or_else(|| {
                Error::Checkpoint(format!(
                    "tensor `{name}` expected by the model is missing from the checkpoint"
                ))
            })?;
            if t.dims() != var.dims() {
                return Err(Error::Checkpoint(format!(
                    "tensor `{name}` has shape {:?} in the checkpoint, the model expects {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
        }
        if let Some(extra) = map.keys().find(|k| !vars.iter().any(|(n, _)| n == *k)) {
            return Err(Error::Checkpoint(format!(
                "the checkpoint holds tensor `{extra}` that this model does not have \
                 (was it written by another model or config?)"
            )));
        }
        for (name, var) in &vars {
            // `copy` gives fresh storage: candle refuses to set a Var from its own storage.
            var.set(
                &map[name]
                    .to_dtype(DType::F32)?
                    .to_device(&self.device)?
                    .copy()?,
            )?;
        }
        Ok(())
    }
}

impl candle_nn::var_builder::SimpleBackend for ParamStore {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut g = self.inner.lock().expect("param store lock");
        if let Some(v) = g.vars.get(name) {
            if v.shape() != &s {
                candle_core::bail!(
                    "parameter {name} requested with shape {s:?} but exists as {:?}",
                    v.shape()
                );
            }
            return Ok(v.as_tensor().clone());
        }
        let values = init_values(h, &s, &mut g.rng);
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        g.vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let g = self.inner.lock().expect("param store lock");
        match g.vars.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => {
                candle_core::bail!("parameter {name} does not exist and has no shape to create it")
            }
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner
            .lock()
            .expect("param store lock")
            .vars
            .contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(seed: u64) -> ParamStore {
        let ps = ParamStore::new(seed, &Device::Cpu);
        let vb = ps.vb();
        candle_nn::linear(64, 32, vb.pp("fc")).unwrap();
        candle_nn::conv2d(3, 8, 3, Default::default(), vb.pp("conv")).unwrap();
        ps
    }

    #[test]
    fn same_seed_same_weights() {
        let a = build(1).tensors();
        let b = build(1).tensors();
        let c = build(2).tensors();
        for (k, t) in &a {
            let ta: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let tb: Vec<f32> = b[k].flatten_all().unwrap().to_vec1().unwrap();
            let tc: Vec<f32> = c[k].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(ta, tb, "{k}");
            assert_ne!(ta, tc, "{k}");
        }
    }

    #[test]
    fn init_hints_follow_their_formulas() {
        // candle_nn::linear asks for Kaiming-normal weights with ReLU gain (variance
        // 2 / fan_in) and a uniform bias on [-1/sqrt(fan_in), 1/sqrt(fan_in)].
        let ps = build(3);
        let t = ps.tensors();
        let w: Vec<f32> = t["fc.weight"].flatten_all().unwrap().to_vec1().unwrap();
        let var = w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32;
        let expected = 2.0 / 64.0;
        assert!(
            (var - expected).abs() < 0.1 * expected,
            "var {var} expected {expected}"
        );
        let b: Vec<f32> = t["fc.bias"].to_vec1().unwrap();
        let bound = 1.0 / 8.0;
        assert!(b.iter().all(|x| x.abs() <= bound));
        assert!(b.iter().any(|x| x.abs() > 0.5 * bound));
    }

    #[test]
    fn load_rejects_wrong_shapes_and_names() {
        let ps = build(1);
        let mut map = ps.tensors();
        assert!(ps.load(&map).is_ok());
        map.insert(
            "fc.weight".into(),
            Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
        );
        let err = ps.load(&map).unwrap_err().to_string();
        assert!(err.contains("fc.weight") && err.contains("shape"), "{err}");
        let mut map = ps.tensors();
        map.insert(
            "extra".into(),
            Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
        );
        assert!(ps.load(&map).unwrap_err().to_string().contains("extra"));
        let mut map = ps.tensors();
        map.remove("conv.bias");
        assert!(ps.load(&map).unwrap_err().to_string().contains("missing"));
    }
}
