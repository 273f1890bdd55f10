//! Fuzz harness of the config layering (`genlab_core::config`: `read_toml`,
//! `parse_override`, `apply_override`, `apply_overlay`, `resolve`). Generated inputs:
//!
//! - `toml_files`: TOML assembled from random lines (tables, dotted and quoted keys, values
//!   of every type, deep inline arrays and tables, malformed lines), read with `read_toml`
//!   and layered onto a typed default config with `resolve`;
//! - `overrides`: random `key=value` strings through `parse_override` and `resolve`;
//! - `random_text`: any text as a TOML file and as an override.
//!
//! Every case must return without panicking; errors must be config errors (`config: ...`)
//! or, for the file, I/O errors, never anything else. `PROPTEST_CASES=N` runs longer.

#[path = "support/fuzz.rs"]
mod fuzz;

use genlab_core::config::{parse_override, read_toml, resolve};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOC: fuzz::LargestAlloc = fuzz::LargestAlloc;

/// Largest single allocation per byte of TOML (the text, its parse tree and JSON tree).
const ALLOC_PER_INPUT_BYTE: usize = 64;
/// ... plus this.
const ALLOC_BASE: usize = 1 << 16;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Opt {
    lr: f64,
    name: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Cfg {
    steps: u64,
    opt: Opt,
    dims: Vec<usize>,
    flag: bool,
}

fn defaults() -> Cfg {
    Cfg {
        steps: 10,
        opt: Opt {
            lr: 1e-3,
            name: "adam".into(),
        },
        dims: vec![1, 2],
        flag: false,
    }
}

fn is_config_error(e: &genlab_core::Error) -> bool {
    matches!(e, genlab_core::Error::Config(m) if !m.is_empty() && m.len() < 4000)
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("3".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("18446744073709551616".to_string()),
        Just("true".to_string()),
        Just("\"text\"".to_string()),
        Just("'lit'".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("[1, 2, 3]".to_string()),
        Just("{ lr = 0.5 }".to_string()),
        Just("\"unterminated".to_string()),
        "[ -~]{0,8}",
    ];
    (leaf, 0usize..3, 0usize..200).prop_map(|(v, kind, depth)| match kind {
        1 => format!("{}{v}{}", "[".repeat(depth), "]".repeat(depth)),
        2 => format!("{}{v}{}", "{ a = ".repeat(depth), " }".repeat(depth)),
        _ => v,
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("steps"),
        Just("opt.lr"),
        Just("opt.name"),
        Just("opt"),
        Just("dims"),
        Just("flag"),
        Just("\"opt.lr\""),
        Just("opt.lr.x"),
        Just("steps.x"),
        Just("unknown"),
        Just(""),
        Just("a..b"),
    ]
    .prop_map(str::to_string)
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => key().prop_map(|k| format!("[{k}]")),
        1 => key().prop_map(|k| format!("[[{k}]]")),
        1 => "[ -~]{0,16}",
    ]
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn toml_files(lines in proptest::collection::vec(line(), 0..8)) {
        let text = lines.join("\n");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, &text).unwrap();
        fuzz::reset();
        match read_toml(&p) {
            Ok(tree) => {
                if let Err(e) = resolve(&defaults(), Some(&tree), &[]) {
                    prop_assert!(is_config_error(&e), "{}", e);
                }
            }
            Err(e) => prop_assert!(is_config_error(&e), "{}", e),
        }
        let largest = fuzz::largest();
        prop_assert!(largest <= ALLOC_PER_INPUT_BYTE * text.len() + ALLOC_BASE, "{largest}");
    }

    #[test]
    fn overrides(kvs in proptest::collection::vec((key(), value()), 0..4)) {
        let mut parsed = Vec::new();
        for (k, v) in &kvs {
            match parse_override(&format!("{k}={v}")) {
                Ok(kv) => parsed.push(kv),
                Err(e) => prop_assert!(is_config_error(&e), "{}", e),
            }
        }
        if let Err(e) = resolve(&defaults(), None, &parsed) {
            prop_assert!(is_config_error(&e), "{}", e);
        }
    }

    #[test]
    fn random_text(text in "\\PC{0,64}") {
        if let Err(e) = parse_override(&text) {
            prop_assert!(is_config_error(&e), "{}", e);
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, &text).unwrap();
        if let Err(e) = read_toml(&p) {
            prop_assert!(is_config_error(&e), "{}", e);
        }
    }
}

/// An honest file layers exactly (the harness's "no false errors" check).
#[test]
fn valid_toml_layers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "steps = 5\ndims = [3]\n[opt]\nlr = 0.5\n").unwrap();
    let c: Cfg = resolve(&defaults(), Some(&read_toml(&p).unwrap()), &[]).unwrap();
    assert_eq!(
        (c.steps, c.opt.lr, c.dims.as_slice()),
        (5, 0.5, &[3usize][..])
    );
}
