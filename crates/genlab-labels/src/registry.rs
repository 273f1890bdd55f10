//! What the semi- and self-supervised method registries share: the description a front end
//! shows of an entry, and reading an entry's settings from JSON.

use serde::Serialize;
use serde_json::Value;

use genlab_core::{Error, Result};

/// What a front end shows about a method (`genlab semi list`, `genlab ssl list`).
#[derive(Clone, Debug, Serialize)]
pub struct MethodInfo {
    pub name: &'static str,
    pub paper: &'static str,
    pub description: &'static str,
    pub defaults: Value,
}

/// A method's settings from its JSON section.
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| Error::Config(format!("invalid method setting: {e}")))
}
