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

/// `--set` overrides with a method's own keys (`method.KEY`) renamed to where a run config
/// keeps them (`method_config.KEY`); the others unchanged.
pub(crate) fn method_overrides(overrides: &[(String, Value)]) -> Vec<(String, Value)> {
    overrides
        .iter()
        .map(|(k, v)| match k.strip_prefix("method.") {
            Some(rest) => (format!("method_config.{rest}"), v.clone()),
            None => (k.clone(), v.clone()),
        })
        .collect()
}

/// The entry of `entries` whose `name_of` is `name`, or an error naming `what` and listing
/// the known names.
pub(crate) fn find_named<T: ?Sized>(
    entries: &'static [&'static T],
    name: &str,
    what: &str,
    name_of: impl Fn(&T) -> &'static str,
) -> Result<&'static T> {
    entries
        .iter()
        .copied()
        .find(|e| name_of(e) == name)
        .ok_or_else(|| Error::unknown(what, name, entries.iter().map(|e| name_of(e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_keys_move_under_method_config_and_unknown_names_list_the_known() {
        let o = vec![
            ("method.steps".to_string(), Value::from(5)),
            ("seed".to_string(), Value::from(1)),
        ];
        let r = method_overrides(&o);
        assert_eq!(r[0].0, "method_config.steps");
        assert_eq!(r[1].0, "seed");
        struct Entry {
            name: &'static str,
        }
        static ALPHA: Entry = Entry { name: "alpha" };
        static BETA: Entry = Entry { name: "beta" };
        static ENTRIES: &[&Entry] = &[&ALPHA, &BETA];
        let found = find_named(ENTRIES, "beta", "thing", |e| e.name).unwrap();
        assert!(std::ptr::eq(found, &BETA));
        let e = find_named(ENTRIES, "gamma", "thing", |e| e.name)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("gamma") && e.contains("alpha") && e.contains("beta"),
            "{e}"
        );
    }
}
