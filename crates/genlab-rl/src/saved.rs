//! What an agent saves in a checkpoint: named `f32` vectors (networks, optimizer moments,
//! replay buffers) and a JSON value (counters, generator states, environment states).

use std::collections::BTreeMap;

use genlab_core::{Error, Result};

use crate::nn::Mlp;
use crate::optim::Optimizer;

/// Named vectors plus JSON, as written to and read from a checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Saved {
    pub tensors: BTreeMap<String, Vec<f32>>,
    pub json: serde_json::Map<String, serde_json::Value>,
}

impl Saved {
    pub fn put(&mut self, name: impl Into<String>, v: &[f32]) {
        self.tensors.insert(name.into(), v.to_vec());
    }

    pub fn take(&mut self, name: &str) -> Result<Vec<f32>> {
        self.tensors.remove(name).ok_or_else(|| {
            Error::Checkpoint(format!(
                "the checkpoint has no `{name}` (saved by another algorithm?)"
            ))
        })
    }

    pub fn put_json(&mut self, key: &str, v: impl serde::Serialize) {
        self.json.insert(
            key.to_string(),
            serde_json::to_value(v).expect("agent state serialises"),
        );
    }

    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let v = self
            .json
            .get(key)
            .ok_or_else(|| Error::Checkpoint(format!("the checkpoint has no `{key}` state")))?;
        serde_json::from_value(v.clone())
            .map_err(|e| Error::Checkpoint(format!("checkpoint state `{key}`: {e}")))
    }

    /// A network's parameters under `name`.
    pub fn put_net(&mut self, name: &str, net: &Mlp) {
        self.put(name, &net.params);
    }

    pub fn take_net(&mut self, name: &str, net: &mut Mlp) -> Result<()> {
        let p = self.take(name)?;
        net.set_params(name, &p)
    }

    /// An optimizer's state under `name.m`, `name.v` and its step count in the JSON.
    pub fn put_opt(&mut self, name: &str, opt: &Optimizer) {
        let (vecs, t) = opt.state();
        for (k, v) in vecs {
            self.put(format!("{name}.{k}"), v);
        }
        self.put_json(&format!("{name}.t"), t);
    }

    pub fn take_opt(&mut self, name: &str, opt: &mut Optimizer) -> Result<()> {
        let t: u64 = self.get_json(&format!("{name}.t"))?;
        let mut get = |k: &str| self.take(&format!("{name}.{k}"));
        opt.load(&mut get, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_f64_state_reads_back_bit_for_bit() {
        // A return that serde_json's default (not correctly rounded) parser read back one
        // ulp off, which made a resumed multi-agent run differ from the straight one.
        let x = -124.811_643_968_880_93_f64;
        let mut s = Saved::default();
        s.put_json("x", (x, 3usize));
        let back: (f64, usize) = s.get_json("x").unwrap();
        let text = serde_json::to_string(&s.json).unwrap();
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap();
        let again: (f64, usize) = serde_json::from_value(parsed["x"].clone()).unwrap();
        assert_eq!(back.0.to_bits(), x.to_bits());
        assert_eq!(again.0.to_bits(), x.to_bits());
        assert!(s
            .take("missing")
            .unwrap_err()
            .to_string()
            .contains("no `missing`"));
    }
}
