//! Configuration layering: defaults, then a TOML file, then `--set key=value` overrides.
//!
//! Every genlab config is a serde struct with defaults and `deny_unknown_fields`. To layer
//! onto it we go through `serde_json::Value`: the defaults are serialised, the file and the
//! dotted overrides are applied to that tree (a key that the defaults do not have is an
//! error listing the keys that exist there), and the result is deserialised back, which
//! checks every type. The resolved struct is what gets saved beside checkpoints.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// Parses `key.path=value`. The value is read as a TOML literal (`3`, `1e-4`, `true`,
/// `"text"`, `[1, 2]`); anything that is not a valid literal is taken as a plain string.
pub fn parse_override(s: &str) -> Result<(String, Value)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| Error::Config(format!("override `{s}` is not of the form key=value")))?;
    let k = k.trim();
    if k.is_empty() || k.split('.').any(|p| p.is_empty()) {
        return Err(Error::Config(format!(
            "override `{s}` has an empty key segment"
        )));
    }
    let v = v.trim();
    let value = match toml::from_str::<toml::Table>(&format!("v = {v}")) {
        Ok(mut t) => toml_to_json(t.remove("v").expect("parsed key")),
        Err(_) => Value::String(v.to_string()),
    };
    Ok((k.to_string(), value))
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

/// Reads a TOML file into a JSON tree.
pub fn read_toml(path: &std::path::Path) -> Result<Value> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io("read config", path, e))?;
    let t: toml::Table = toml::from_str(&s)
        .map_err(|e| Error::Config(format!("{} is not valid TOML: {e}", path.display())))?;
    Ok(toml_to_json(toml::Value::Table(t)))
}

fn keys_of(obj: &serde_json::Map<String, Value>) -> String {
    let mut k: Vec<&str> = obj.keys().map(|s| s.as_str()).collect();
    k.sort();
    k.join(", ")
}

/// Sets `root[key.path] = value`; every segment must already exist.
pub fn apply_override(root: &mut Value, key: &str, value: Value) -> Result<()> {
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let here = parts[..i].join(".");
        let obj = node
            .as_object_mut()
            .ok_or_else(|| Error::Config(format!("`{here}` is a value, it has no key `{part}`")))?;
        if !obj.contains_key(*part) {
            let place = if here.is_empty() {
                "the config".to_string()
            } else {
                format!("`{here}`")
            };
            return Err(Error::Config(format!(
                "unknown key `{key}`: {place} has no `{part}` (known keys: {})",
                keys_of(obj)
            )));
        }
        node = obj.get_mut(*part).expect("checked");
    }
    *node = value;
    Ok(())
}

/// Applies every leaf of `overlay` (e.g. a TOML file) onto `root` with [`apply_override`].
pub fn apply_overlay(root: &mut Value, overlay: &Value, prefix: &str) -> Result<()> {
    match overlay {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                // A table overlays a table key by key; anything else replaces the value.
                let target_is_obj = lookup(root, &key).is_some_and(Value::is_object);
                if v.is_object() && target_is_obj {
                    apply_overlay(root, v, &key)?;
                } else {
                    apply_override(root, &key, v.clone())?;
                }
            }
            Ok(())
        }
        other => apply_override(root, prefix, other.clone()),
    }
}

fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(root, |n, p| n.get(p))
}

/// Layers `file` then `overrides` onto `defaults` and type-checks the result.
pub fn resolve<T: Serialize + DeserializeOwned>(
    defaults: &T,
    file: Option<&Value>,
    overrides: &[(String, Value)],
) -> Result<T> {
    let mut tree = serde_json::to_value(defaults)
        .map_err(|e| Error::Config(format!("cannot serialise defaults: {e}")))?;
    if let Some(f) = file {
        apply_overlay(&mut tree, f, "")?;
    }
    for (k, v) in overrides {
        apply_override(&mut tree, k, v.clone())?;
    }
    serde_json::from_value(tree).map_err(|e| Error::Config(format!("invalid value: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        lr: f64,
        name: String,
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        steps: u64,
        opt: Inner,
        dims: Vec<usize>,
    }
    fn defaults() -> Cfg {
        Cfg {
            steps: 10,
            opt: Inner {
                lr: 1e-3,
                name: "adam".into(),
            },
            dims: vec![1, 2],
        }
    }

    #[test]
    fn overrides_are_typed_and_nested() {
        let o: Vec<_> = [
            "steps=3000",
            "opt.lr=2e-4",
            "opt.name=sgd",
            "dims=[4, 5, 6]",
        ]
        .iter()
        .map(|s| parse_override(s).unwrap())
        .collect();
        let c: Cfg = resolve(&defaults(), None, &o).unwrap();
        assert_eq!(
            c,
            Cfg {
                steps: 3000,
                opt: Inner {
                    lr: 2e-4,
                    name: "sgd".into()
                },
                dims: vec![4, 5, 6]
            }
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_known_keys() {
        let o = vec![parse_override("opt.momentum=0.9").unwrap()];
        let err = resolve(&defaults(), None, &o).unwrap_err().to_string();
        assert!(
            err.contains("unknown key `opt.momentum`") && err.contains("lr, name"),
            "{err}"
        );
        let o = vec![parse_override("stepz=1").unwrap()];
        assert!(resolve(&defaults(), None, &o).is_err());
    }

    #[test]
    fn wrong_type_is_an_error() {
        let o = vec![parse_override("steps=many").unwrap()];
        let err = resolve(&defaults(), None, &o).unwrap_err().to_string();
        assert!(err.contains("invalid value"), "{err}");
    }

    #[test]
    fn toml_overlay_then_override() {
        let file = toml_to_json(toml::Value::Table(
            toml::from_str("steps = 5\n[opt]\nlr = 0.5\n").unwrap(),
        ));
        let o = vec![parse_override("steps=7").unwrap()];
        let c: Cfg = resolve(&defaults(), Some(&file), &o).unwrap();
        assert_eq!((c.steps, c.opt.lr, c.opt.name.as_str()), (7, 0.5, "adam"));
        let bad = toml_to_json(toml::Value::Table(
            toml::from_str("[opt]\nbeta = 1\n").unwrap(),
        ));
        assert!(resolve(&defaults(), Some(&bad), &[]).is_err());
    }

    #[test]
    fn malformed_overrides() {
        assert!(parse_override("novalue").is_err());
        assert!(parse_override("a..b=1").is_err());
        assert_eq!(
            parse_override("k=hello world").unwrap().1,
            Value::String("hello world".into())
        );
    }
}
