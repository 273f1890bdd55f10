//! Upstream checkpoints (Stable Diffusion, Hugging Face CLIP, TAEF2) loaded into genlab's own
//! networks.
//!
//! Every upstream file is read into a [`TensorMap`] (safetensors in float16, bfloat16 or
//! float32, or a PyTorch `.pth` / `.bin` / `.ckpt` through genlab's own pickle reader; every
//! floating tensor becomes float32), renamed where upstream names differ from genlab's module
//! tree, and handed to the network's constructor through [`TensorMap::build`], which checks
//! the match both ways: a key the network asks for and the file lacks, a key of the file no
//! parameter uses, and a shape that differs are all collected and reported together (the
//! first few of each, and the counts), instead of failing at the first one.

pub mod hf_clip;
pub mod ldm_keys;
pub mod sd;
pub mod sd_pipeline;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

use genlab_core::{Error, Result};

/// How many names of each kind a key-mismatch error lists.
pub const LISTED_KEYS: usize = 5;

/// Named tensors read from an upstream checkpoint, all floating tensors in float32.
#[derive(Clone, Debug)]
pub struct TensorMap {
    tensors: HashMap<String, Tensor>,
    /// Where the tensors came from, for messages (a file name, or `file[prefix]`).
    pub source: String,
}

impl TensorMap {
    /// Wraps tensors already in memory; floating tensors are converted to float32.
    pub fn from_tensors(
        tensors: HashMap<String, Tensor>,
        source: impl Into<String>,
    ) -> Result<Self> {
        let tensors = tensors
            .into_iter()
            .map(|(k, t)| Ok((k, to_f32(t)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Self {
            tensors,
            source: source.into(),
        })
    }

    /// Reads one checkpoint file: `.safetensors`, or a PyTorch pickle (`.pth`, `.pt`,
    /// `.bin`, `.ckpt`; zip or legacy layout) holding a (nested) dict of tensors. When every
    /// name sits under `state_dict.` (a checkpoint that wraps its weights in a `state_dict`
    /// entry), that prefix is removed. PyTorch Lightning `.ckpt` files that also pickle
    /// other objects (epoch, global_step, callbacks) are refused by genlab's pickle reader
    /// with its message; their `.safetensors` conversion loads.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Checkpoint(format!(
                "{} does not exist or is not a file",
                path.display()
            )));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let tensors = match ext.as_str() {
            "safetensors" => genlab_core::io::load_safetensors(path, device)?,
            "pth" | "pt" | "bin" | "ckpt" => genlab_core::pth::load_pth(path, device)?,
            _ => {
                return Err(Error::Checkpoint(format!(
                    "{}: unknown weight file type `.{ext}` (expected .safetensors, .pth, .pt, \
                     .bin or .ckpt)",
                    path.display()
                )))
            }
        };
        let wrapped = !tensors.is_empty() && tensors.keys().all(|k| k.starts_with("state_dict."));
        let tensors = if wrapped {
            tensors
                .into_iter()
                .map(|(k, t)| (k["state_dict.".len()..].to_string(), t))
                .collect()
        } else {
            tensors
        };
        Self::from_tensors(tensors, path.display().to_string())
    }

    /// Reads several files (a sharded checkpoint) into one map; a name in two files is an
    /// error.
    pub fn load_all(paths: &[&Path], device: &Device) -> Result<Self> {
        let mut out: Option<TensorMap> = None;
        for p in paths {
            let m = Self::load(p, device)?;
            out = Some(match out {
                None => m,
                Some(mut acc) => {
                    for (k, t) in m.tensors {
                        if acc.tensors.insert(k.clone(), t).is_some() {
                            return Err(Error::Checkpoint(format!(
                                "`{k}` is in more than one of the files {}",
                                acc.source
                            )));
                        }
                    }
                    acc.source = format!("{}, {}", acc.source, m.source);
                    acc
                }
            });
        }
        out.ok_or_else(|| Error::Checkpoint("no weight files given".into()))
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The names, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.tensors.keys().map(|s| s.as_str()).collect();
        k.sort_unstable();
        k
    }

    /// Whether any name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.tensors.keys().any(|k| k.starts_with(prefix))
    }

    pub fn insert(&mut self, key: impl Into<String>, t: Tensor) {
        self.tensors.insert(key.into(), t);
    }

    pub fn remove(&mut self, key: &str) -> Option<Tensor> {
        self.tensors.remove(key)
    }

    /// The tensors whose names start with `prefix`, with the prefix removed.
    pub fn sub(&self, prefix: &str) -> TensorMap {
        TensorMap {
            tensors: self
                .tensors
                .iter()
                .filter_map(|(k, t)| k.strip_prefix(prefix).map(|r| (r.to_string(), t.clone())))
                .collect(),
            source: format!("{}[{prefix}]", self.source),
        }
    }

    /// Renames every key with `f` (`None` drops the tensor). Two keys renamed to one name
    /// is an error naming both.
    pub fn rename(&self, f: impl Fn(&str) -> Option<String>) -> Result<TensorMap> {
        let mut out: HashMap<String, Tensor> = HashMap::with_capacity(self.tensors.len());
        let mut from: HashMap<String, &str> = HashMap::new();
        for k in self.keys() {
            if let Some(n) = f(k) {
                if let Some(prev) = from.insert(n.clone(), k) {
                    return Err(Error::Checkpoint(format!(
                        "{}: `{prev}` and `{k}` both map to `{n}`",
                        self.source
                    )));
                }
                out.insert(n, self.tensors[k].clone());
            }
        }
        Ok(TensorMap {
            tensors: out,
            source: self.source.clone(),
        })
    }

    /// The tensors as a plain map (for saving).
    pub fn into_tensors(self) -> HashMap<String, Tensor> {
        self.tensors
    }

    /// Builds a network from these tensors, strictly: `build` receives a VarBuilder whose
    /// names are this map's keys; when it returns, every key it asked for must exist with the
    /// shape it asked for and every key of the map must have been asked for (except those
    /// `ignore` accepts, e.g. buffers such as `position_ids`). All three kinds of mismatch
    /// are reported in one [`Error::Checkpoint`] that starts with `what`.
    pub fn build<T>(
        &self,
        what: &str,
        device: &Device,
        ignore: impl Fn(&str) -> bool,
        build: impl FnOnce(VarBuilder) -> candle_core::Result<T>,
    ) -> Result<T> {
        let rec = Arc::new(Recorder {
            tensors: self.tensors.clone(),
            log: Mutex::new(Log::default()),
        });
        let vb = VarBuilder::from_backend(
            Box::new(RecorderHandle(rec.clone())),
            DType::F32,
            device.clone(),
        );
        let built = build(vb);
        let log = rec.log.lock().expect("recorder lock").clone();
        let unused: Vec<String> = self
            .keys()
            .into_iter()
            .filter(|k| !log.asked.contains(*k) && !ignore(k))
            .map(|k| format!("{k} {:?}", self.tensors[k].dims()))
            .collect();
        if !log.missing.is_empty() || !log.mismatched.is_empty() || !unused.is_empty() {
            let mut parts = Vec::new();
            let list = |v: &[String]| {
                let mut s = v
                    .iter()
                    .take(LISTED_KEYS)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if v.len() > LISTED_KEYS {
                    s.push_str(", ...");
                }
                s
            };
            if !log.missing.is_empty() {
                parts.push(format!(
                    "{} missing keys ({})",
                    log.missing.len(),
                    list(&log.missing)
                ));
            }
            if !unused.is_empty() {
                parts.push(format!(
                    "{} unexpected keys ({})",
                    unused.len(),
                    list(&unused)
                ));
            }
            if !log.mismatched.is_empty() {
                parts.push(format!(
                    "{} shape mismatches ({})",
                    log.mismatched.len(),
                    list(&log.mismatched)
                ));
            }
            return Err(Error::Checkpoint(format!(
                "{what} does not match {}: {}",
                self.source,
                parts.join("; ")
            )));
        }
        Ok(built?)
    }
}

/// The weight file(s) of a Hugging Face component folder (diffusers' `unet/`, `vae/`,
/// transformers' `text_encoder/`...), in the order looked for: `{stem}.safetensors`,
/// `{stem}.fp16.safetensors`, a sharded `{stem}[.fp16].safetensors.index.json` (every file
/// of its `weight_map`), then the PyTorch pickles `{bin_stem}.bin` / `{bin_stem}.fp16.bin`
/// (diffusers: stem and bin stem `diffusion_pytorch_model`; transformers: `model` and
/// `pytorch_model`).
pub fn weight_files(dir: &Path, stem: &str, bin_stem: &str) -> Result<Vec<PathBuf>> {
    let singles = [
        format!("{stem}.safetensors"),
        format!("{stem}.fp16.safetensors"),
    ];
    let indexes = [
        format!("{stem}.safetensors.index.json"),
        format!("{stem}.fp16.safetensors.index.json"),
    ];
    let bins = [format!("{bin_stem}.bin"), format!("{bin_stem}.fp16.bin")];
    if let Some(p) = singles.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Ok(vec![p]);
    }
    if let Some(p) = indexes.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        let index: serde_json::Value = genlab_core::io::read_json(&p)?;
        let mut files: Vec<String> = index
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.values()
                    .filter_map(|f| f.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.dedup();
        if files.is_empty() {
            return Err(Error::Checkpoint(format!("{}: no weight_map", p.display())));
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    if let Some(p) = bins.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Ok(vec![p]);
    }
    let looked: Vec<String> = singles.into_iter().chain(indexes).chain(bins).collect();
    Err(Error::Checkpoint(format!(
        "{} has no weights (looked for {})",
        dir.display(),
        looked.join(", ")
    )))
}

/// Loads every weight file of a component folder (see [`weight_files`]) into one map.
pub fn load_component(
    dir: &Path,
    stem: &str,
    bin_stem: &str,
    device: &Device,
) -> Result<TensorMap> {
    let files = weight_files(dir, stem, bin_stem)?;
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    TensorMap::load_all(&refs, device)
}

fn to_f32(t: Tensor) -> Result<Tensor> {
    Ok(match t.dtype() {
        DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
        _ => t,
    })
}

#[derive(Clone, Default)]
struct Log {
    asked: BTreeSet<String>,
    missing: Vec<String>,
    mismatched: Vec<String>,
}

struct Recorder {
    tensors: HashMap<String, Tensor>,
    log: Mutex<Log>,
}

struct RecorderHandle(Arc<Recorder>);

impl candle_nn::var_builder::SimpleBackend for RecorderHandle {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut log = self.0.log.lock().expect("recorder lock");
        log.asked.insert(name.to_string());
        match self.0.tensors.get(name) {
            Some(t) if t.shape() == &s => t.to_dtype(dtype)?.to_device(dev),
            Some(t) => {
                log.mismatched.push(format!(
                    "{name}: file {:?}, network {:?}",
                    t.dims(),
                    s.dims()
                ));
                Tensor::zeros(s, dtype, dev)
            }
            None => {
                log.missing.push(format!("{name} {:?}", s.dims()));
                Tensor::zeros(s, dtype, dev)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut log = self.0.log.lock().expect("recorder lock");
        log.asked.insert(name.to_string());
        match self.0.tensors.get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => {
                log.missing.push(name.to_string());
                Err(candle_core::Error::CannotFindTensor {
                    path: name.to_string(),
                })
            }
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.tensors.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &[usize])]) -> TensorMap {
        let d = Device::Cpu;
        let t = entries
            .iter()
            .map(|(k, s)| (k.to_string(), Tensor::ones(*s, DType::F16, &d).unwrap()))
            .collect();
        TensorMap::from_tensors(t, "test.safetensors").unwrap()
    }

    fn linear(vb: VarBuilder) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((vb.get((2, 3), "lin.weight")?, vb.get(2, "lin.bias")?))
    }

    #[test]
    fn exact_match_builds_in_f32() {
        let m = map(&[("lin.weight", &[2, 3]), ("lin.bias", &[2])]);
        let (w, b) = m.build("linear", &Device::Cpu, |_| false, linear).unwrap();
        assert_eq!(w.dtype(), DType::F32);
        assert_eq!(w.sum_all().unwrap().to_scalar::<f32>().unwrap(), 6.0);
        assert_eq!(b.dims(), &[2]);
    }

    #[test]
    fn every_kind_of_mismatch_is_listed_once() {
        let m = map(&[
            ("lin.weight", &[3, 2]),
            ("extra.a", &[1]),
            ("position_ids", &[4]),
        ]);
        let e = m
            .build("linear", &Device::Cpu, |k| k == "position_ids", linear)
            .unwrap_err()
            .to_string();
        assert!(e.contains("linear does not match test.safetensors"), "{e}");
        assert!(e.contains("1 missing keys (lin.bias [2])"), "{e}");
        assert!(e.contains("1 unexpected keys (extra.a [1])"), "{e}");
        assert!(
            e.contains("1 shape mismatches (lin.weight: file [3, 2], network [2, 3])"),
            "{e}"
        );
        assert!(!e.contains("position_ids"), "{e}");
    }

    #[test]
    fn long_lists_are_cut_and_counted() {
        let keys: Vec<String> = (0..9).map(|i| format!("k{i}")).collect();
        let entries: Vec<(&str, &[usize])> =
            keys.iter().map(|k| (k.as_str(), &[1usize][..])).collect();
        let m = map(&entries);
        let e = m
            .build("empty", &Device::Cpu, |_| false, |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("9 unexpected keys (k0 [1], k1 [1], k2 [1], k3 [1], k4 [1], ...)"),
            "{e}"
        );
    }

    #[test]
    fn a_state_dict_wrapper_is_unwrapped() {
        let dir = std::env::temp_dir().join(format!("genlab-tensormap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = Device::Cpu;
        let one = Tensor::ones(2, DType::F32, &d).unwrap();
        let path = dir.join("wrapped.safetensors");
        let m: HashMap<String, Tensor> = [
            ("state_dict.a.weight".to_string(), one.clone()),
            ("state_dict.b".to_string(), one.clone()),
        ]
        .into();
        candle_core::safetensors::save(&m, &path).unwrap();
        assert_eq!(
            TensorMap::load(&path, &d).unwrap().keys(),
            vec!["a.weight", "b"]
        );
        // Not every key wrapped: names kept as they are.
        let path = dir.join("mixed.safetensors");
        let m: HashMap<String, Tensor> = [
            ("state_dict.a".to_string(), one.clone()),
            ("b".to_string(), one),
        ]
        .into();
        candle_core::safetensors::save(&m, &path).unwrap();
        assert_eq!(
            TensorMap::load(&path, &d).unwrap().keys(),
            vec!["b", "state_dict.a"]
        );
        let e = TensorMap::load(&dir.join("x.onnx"), &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::write(dir.join("x.onnx"), b"x").unwrap();
        let e = TensorMap::load(&dir.join("x.onnx"), &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown weight file type `.onnx`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sub_and_rename() {
        let m = map(&[("a.x", &[1]), ("a.y", &[1]), ("b.x", &[1])]);
        let s = m.sub("a.");
        assert_eq!(s.keys(), vec!["x", "y"]);
        let r = s.rename(|k| (k != "y").then(|| format!("z.{k}"))).unwrap();
        assert_eq!(r.keys(), vec!["z.x"]);
        let e = m.rename(|_| Some("same".into())).unwrap_err().to_string();
        assert!(e.contains("both map to `same`"), "{e}");
    }
}
