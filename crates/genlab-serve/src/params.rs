//! The sampling playground's form: which settings a model takes, their ranges and defaults,
//! read from the registries and the model's [`Capabilities`], never from its name.
//!
//! Every setting is one row of `ROWS`: its name, the `genlab sample` flag that sets it,
//! the capability that makes it apply, its range and default, and how it sets a
//! [`SampleRequest`]. The page draws the form from [`form`]; a request is checked against the
//! same rows ([`parse`]) and turned into the library's request ([`Plan`]) and into the
//! `genlab sample` command that reproduces it ([`Plan::command`]). When a new capability
//! arrives (a class label, a prompt, guidance), its setting is one more row here.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use genlab_models::SampleRequest;
use genlab_sampling::{SamplerOptions, SolverOptions, Spacing, SAMPLERS};
use genlab_train::Capabilities;

use crate::error::{Result, ServeError};

/// Most samples one request draws (points).
pub const MAX_N: u64 = 4096;
/// Most images one request draws (a 32 x 32 grid).
pub const MAX_IMAGES: u64 = 1024;
/// Most sampling steps one request asks for.
pub const MAX_STEPS: u64 = 1000;
/// Largest network batch.
pub const MAX_BATCH: u64 = 1000;
/// Largest seed (the page's numbers are exact up to 2^53).
pub const MAX_SEED: u64 = (1 << 53) - 1;

/// What kind of value a setting takes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Kind {
    Int { min: u64, max: u64 },
    Float { min: f64, max: f64 },
    Bool,
    Choice { choices: Vec<Choice> },
}

/// One option of a [`Kind::Choice`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Choice {
    pub value: String,
    pub description: String,
}

/// One setting of the form, as the page draws it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Param {
    pub name: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    /// Where the page puts it: `samples`, `sampler`, `solver` or `model`.
    pub group: &'static str,
    #[serde(flatten)]
    pub kind: Kind,
    pub default: Value,
    /// The model fixes this value (a distilled student's spacing): shown, not editable.
    pub fixed: bool,
}

/// What a model's form depends on besides its capabilities.
#[derive(Clone, Debug, Default)]
pub struct ModelFacts {
    pub caps: Capabilities,
    /// Images (a grid) or points (a scatter).
    pub images: bool,
    /// The steps the model was made for (a distilled student's).
    pub preferred_steps: Option<usize>,
    /// The spacing the model always samples with.
    pub fixed_spacing: Option<Spacing>,
    /// The classes a class condition may name (0: the run takes no class).
    pub num_classes: usize,
}

impl ModelFacts {
    /// The facts of a loaded model.
    pub fn of(caps: Capabilities, model: &dyn genlab_models::Sample) -> Self {
        Self {
            caps,
            images: model.data_space().images,
            preferred_steps: model.preferred_steps(),
            fixed_spacing: model.fixed_spacing(),
            num_classes: model.num_classes(),
        }
    }
}

/// A sampling request as the library takes it, with the seed and weights it runs with.
#[derive(Clone, Debug)]
pub struct Plan {
    pub request: SampleRequest,
    pub seed: u64,
    /// EMA weights (the default) or the raw ones.
    pub ema: bool,
    /// The checked values by setting name, in form order (for the command and the record).
    pub values: Vec<(&'static str, Value)>,
}

/// Every spacing, in the order the page offers them.
fn spacings() -> Vec<Spacing> {
    // The match fails to compile when a spacing is added, so this list cannot fall behind.
    let all = [Spacing::Linspace, Spacing::Trailing, Spacing::LogSnr];
    for s in all {
        match s {
            Spacing::Linspace | Spacing::Trailing | Spacing::LogSnr => {}
        }
    }
    all.to_vec()
}

type Setter = fn(&mut Plan, &Value);

/// One setting: where it applies, its kind and default, its flag, and what it sets.
struct Row {
    name: &'static str,
    label: &'static str,
    help: &'static str,
    group: &'static str,
    /// The `genlab sample` flag that sets it (`--karras` for a boolean that is on).
    flag: &'static str,
    applies: fn(&Capabilities) -> bool,
    kind: fn(&ModelFacts) -> Kind,
    default: fn(&ModelFacts) -> Value,
    /// The value `genlab sample` takes without the flag; `None`: the flag is always written.
    cli_default: Option<fn() -> Value>,
    /// Fixed by the model (shown, not editable) for these facts.
    fixed: fn(&ModelFacts) -> bool,
    set: Setter,
}

fn int(min: u64, max: u64) -> Kind {
    Kind::Int { min, max }
}
fn float(min: f64, max: f64) -> Kind {
    Kind::Float { min, max }
}
fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_default()
}
fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_default()
}
fn always(_: &Capabilities) -> bool {
    true
}
fn never_fixed(_: &ModelFacts) -> bool {
    false
}
fn solver() -> SolverOptions {
    SolverOptions::default()
}

/// Every setting the playground knows, in form order.
const ROWS: &[Row] = &[
    Row {
        name: "n",
        label: "samples",
        help: "Number of samples.",
        group: "samples",
        flag: "--n",
        applies: always,
        // A picture of more images than this is too large to look at (or to encode fast).
        kind: |m| int(1, if m.images { MAX_IMAGES } else { MAX_N }),
        default: |m| Value::from(if m.images { 16 } else { 2000 }),
        cli_default: None,
        fixed: never_fixed,
        set: |p, v| p.request.n = u(v) as usize,
    },
    Row {
        name: "seed",
        label: "seed",
        help: "Seed of the sampling noise: the same seed gives the same samples.",
        group: "samples",
        flag: "--seed",
        applies: always,
        kind: |_| int(0, MAX_SEED),
        default: |_| Value::from(0),
        cli_default: None,
        fixed: never_fixed,
        set: |p, v| p.seed = u(v),
    },
    Row {
        name: "batch_size",
        label: "batch size",
        help: "Samples per network batch; each finished batch is shown as it arrives.",
        group: "samples",
        flag: "--batch-size",
        applies: always,
        kind: |_| int(1, MAX_BATCH),
        default: |m| Value::from(if m.images { 16 } else { 500 }),
        cli_default: None,
        fixed: never_fixed,
        set: |p, v| p.request.batch_size = u(v) as usize,
    },
    Row {
        name: "ema",
        label: "EMA weights",
        help: "Sample with the exponential moving average of the weights (off: the raw weights).",
        group: "samples",
        flag: "--no-ema",
        applies: always,
        kind: |_| Kind::Bool,
        default: |_| Value::from(true),
        cli_default: Some(|| Value::from(true)),
        fixed: never_fixed,
        set: |p, v| p.ema = v.as_bool().unwrap_or(true),
    },
    Row {
        name: "sampler",
        label: "sampler",
        help: "The sampler of the diffusion sampler zoo.",
        group: "sampler",
        flag: "--sampler",
        applies: |c| c.sampler_zoo,
        kind: |_| Kind::Choice {
            choices: SAMPLERS
                .iter()
                .map(|s| Choice {
                    value: s.name.into(),
                    description: s.description.into(),
                })
                .collect(),
        },
        default: |_| Value::from("ddim"),
        cli_default: None,
        fixed: never_fixed,
        set: |p, v| p.request.sampler = v.as_str().unwrap_or_default().into(),
    },
    Row {
        name: "steps",
        label: "steps",
        help: "Sampling steps (network evaluations for one-evaluation-per-step samplers; rk45 picks its own).",
        group: "sampler",
        flag: "--steps",
        applies: |c| c.sampler_zoo,
        kind: |_| int(1, MAX_STEPS),
        default: |m| Value::from(m.preferred_steps.unwrap_or(SamplerOptions::default().steps)),
        cli_default: None,
        fixed: never_fixed,
        set: |p, v| p.request.options.steps = u(v) as usize,
    },
    Row {
        name: "spacing",
        label: "spacing",
        help: "Where the steps sit on the model's timesteps: linspace (both ends), trailing, or logsnr (uniform in log-SNR).",
        group: "sampler",
        flag: "--spacing",
        applies: |c| c.sampler_zoo,
        kind: |_| Kind::Choice {
            choices: spacings()
                .into_iter()
                .map(|s| Choice {
                    value: s.to_string(),
                    description: String::new(),
                })
                .collect(),
        },
        default: |m| Value::from(m.fixed_spacing.unwrap_or_default().to_string()),
        cli_default: Some(|| Value::from(Spacing::default().to_string())),
        fixed: |m| m.fixed_spacing.is_some(),
        set: |p, v| {
            if let Some(s) = v.as_str().and_then(|s| s.parse().ok()) {
                p.request.options.spacing = s;
            }
        },
    },
    Row {
        name: "eta",
        label: "eta",
        help: "DDIM noise: 0 deterministic, 1 DDPM-like.",
        group: "sampler",
        flag: "--eta",
        applies: |c| c.sampler_zoo,
        kind: |_| float(0.0, 1.0),
        default: |_| Value::from(SamplerOptions::default().eta),
        cli_default: Some(|| Value::from(SamplerOptions::default().eta)),
        fixed: never_fixed,
        set: |p, v| p.request.options.eta = f(v),
    },
    Row {
        name: "order",
        label: "order",
        help: "DPM-Solver order (1, 2 or 3).",
        group: "solver",
        flag: "--order",
        applies: |c| c.sampler_zoo,
        kind: |_| int(1, 3),
        default: |_| Value::from(solver().order),
        cli_default: Some(|| Value::from(solver().order)),
        fixed: never_fixed,
        set: |p, v| p.request.options.solver.order = u(v) as usize,
    },
    Row {
        name: "rtol",
        label: "rtol",
        help: "RK45 relative tolerance.",
        group: "solver",
        flag: "--rtol",
        applies: |c| c.sampler_zoo,
        kind: |_| float(1e-8, 1.0),
        default: |_| Value::from(solver().rtol),
        cli_default: Some(|| Value::from(solver().rtol)),
        fixed: never_fixed,
        set: |p, v| p.request.options.solver.rtol = f(v),
    },
    Row {
        name: "atol",
        label: "atol",
        help: "RK45 absolute tolerance.",
        group: "solver",
        flag: "--atol",
        applies: |c| c.sampler_zoo,
        kind: |_| float(1e-8, 1.0),
        default: |_| Value::from(solver().atol),
        cli_default: Some(|| Value::from(solver().atol)),
        fixed: never_fixed,
        set: |p, v| p.request.options.solver.atol = f(v),
    },
    Row {
        name: "snr",
        label: "snr",
        help: "Predictor-corrector: signal-to-noise ratio of the Langevin corrector.",
        group: "solver",
        flag: "--snr",
        applies: |c| c.sampler_zoo,
        kind: |_| float(1e-6, 1.0),
        default: |_| Value::from(solver().snr),
        cli_default: Some(|| Value::from(solver().snr)),
        fixed: never_fixed,
        set: |p, v| p.request.options.solver.snr = f(v),
    },
    Row {
        name: "corrector_steps",
        label: "corrector steps",
        help: "Predictor-corrector: Langevin steps per noise level.",
        group: "solver",
        flag: "--corrector-steps",
        applies: |c| c.sampler_zoo,
        kind: |_| int(1, 10),
        default: |_| Value::from(solver().corrector_steps),
        cli_default: Some(|| Value::from(solver().corrector_steps)),
        fixed: never_fixed,
        set: |p, v| p.request.options.solver.corrector_steps = u(v) as usize,
    },
    Row {
        name: "karras",
        label: "Karras sigmas",
        help: "Karras et al. 2022 sigma spacing for the sigma-space samplers (euler, heun, euler-ancestral, dpm-solver, dpm++2m).",
        group: "solver",
        flag: "--karras",
        applies: |c| c.sampler_zoo,
        kind: |_| Kind::Bool,
        default: |_| Value::from(solver().karras_sigmas),
        cli_default: Some(|| Value::from(solver().karras_sigmas)),
        fixed: never_fixed,
        set: |p, v| p.request.options.solver.karras_sigmas = v.as_bool().unwrap_or(false),
    },
    // No capability says which models scale their base noise yet: it is offered to every
    // generating model, and the library's message says so when a model takes only 1.
    Row {
        name: "temperature",
        label: "temperature",
        help: "Standard deviation of the base noise (Glow's temperature; 0.7 gives cleaner, less varied samples). Flows take any value; other models only 1.",
        group: "model",
        flag: "--temperature",
        applies: |c| c.generates,
        kind: |_| float(0.01, 2.0),
        default: |_| Value::from(SamplerOptions::default().temperature),
        cli_default: Some(|| Value::from(SamplerOptions::default().temperature)),
        fixed: never_fixed,
        set: |p, v| p.request.options.temperature = f(v),
    },
    Row {
        name: "class",
        label: "class",
        help: "The class to generate (class-conditional runs); none samples the model unconditioned.",
        group: "model",
        flag: "--class",
        applies: |c| c.conditional,
        kind: |m| Kind::Choice {
            choices: std::iter::once(Choice {
                value: "none".into(),
                description: "no class".into(),
            })
            .chain((0..m.num_classes).map(|k| Choice {
                value: k.to_string(),
                description: format!("class {k}"),
            }))
            .collect(),
        },
        default: |_| Value::from("none"),
        cli_default: Some(|| Value::from("none")),
        fixed: never_fixed,
        set: |p, v| {
            if let Some(k) = v.as_str().and_then(|s| s.parse::<u32>().ok()) {
                let n = p.request.n;
                p.request.condition = genlab_core::Condition::class_repeated(k, n, &candle_core::Device::Cpu)
                    .expect("a label tensor on the CPU");
            }
        },
    },
    Row {
        name: "guidance",
        label: "guidance",
        help: "Classifier-free guidance towards the class: 0 unconditional, 1 the conditional model, more: stronger (needs a class).",
        group: "model",
        flag: "--guidance",
        applies: |c| c.conditional && c.sampler_zoo,
        kind: |_| float(0.0, 20.0),
        default: |_| Value::from(1.0),
        cli_default: Some(|| Value::from(1.0)),
        fixed: never_fixed,
        // Guidance 1 is the conditional model itself: no guidance needed.
        set: |p, v| p.request.guidance = (f(v) != 1.0).then_some(f(v)),
    },
];

fn rows(caps: &Capabilities) -> impl Iterator<Item = &'static Row> + '_ {
    ROWS.iter().filter(move |r| (r.applies)(caps))
}

/// The form for a model with these facts; empty for a model that does not generate.
pub fn form(m: &ModelFacts) -> Vec<Param> {
    if !m.caps.generates {
        return vec![];
    }
    rows(&m.caps)
        .map(|r| Param {
            name: r.name,
            label: r.label,
            help: r.help,
            group: r.group,
            kind: (r.kind)(m),
            default: (r.default)(m),
            fixed: (r.fixed)(m),
        })
        .collect()
}

/// Checks `v` against `kind`; the message names the setting and the range.
fn check(name: &str, kind: &Kind, v: &Value) -> Result<Value> {
    let bad = |want: String| Err(ServeError::param(name, format!("must be {want}, got {v}")));
    match kind {
        Kind::Int { min, max } => match v.as_u64() {
            Some(x) if (*min..=*max).contains(&x) => Ok(Value::from(x)),
            _ => bad(format!("an integer from {min} to {max}")),
        },
        Kind::Float { min, max } => match v.as_f64() {
            Some(x) if x.is_finite() && (*min..=*max).contains(&x) => Ok(Value::from(x)),
            _ => bad(format!("a number from {min} to {max}")),
        },
        Kind::Bool => match v.as_bool() {
            Some(b) => Ok(Value::from(b)),
            None => bad("true or false".into()),
        },
        Kind::Choice { choices } => match v.as_str() {
            Some(s) if choices.iter().any(|c| c.value == s) => Ok(Value::from(s)),
            _ => bad(format!(
                "one of {}",
                choices
                    .iter()
                    .map(|c| c.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
    }
}

/// Checks the settings of a request against the form of a model with facts `m` (missing
/// ones take their defaults; one the model does not take is an error) and builds its plan.
pub fn parse(m: &ModelFacts, body: &Map<String, Value>) -> Result<Plan> {
    if !m.caps.generates {
        return Err(ServeError::param(
            "run",
            "holds a model that does not generate samples",
        ));
    }
    if let Some(k) = body
        .keys()
        .find(|k| !rows(&m.caps).any(|r| r.name == k.as_str()))
    {
        let hint = if ROWS.iter().any(|r| r.name == k.as_str()) {
            "this model does not take it"
        } else {
            "it is not a sampling setting"
        };
        let known: Vec<&str> = rows(&m.caps).map(|r| r.name).collect();
        return Err(ServeError::param(
            k.as_str(),
            format!("is not accepted: {hint} (accepted: {})", known.join(", ")),
        ));
    }
    let mut plan = Plan {
        request: SampleRequest {
            n: 1,
            sampler: String::new(),
            options: SamplerOptions::default(),
            batch_size: 1,
            ..Default::default()
        },
        seed: 0,
        ema: true,
        values: Vec::new(),
    };
    for r in rows(&m.caps) {
        let v = match body.get(r.name) {
            Some(v) if !(r.fixed)(m) => check(r.name, &(r.kind)(m), v)?,
            _ => (r.default)(m),
        };
        (r.set)(&mut plan, &v);
        plan.values.push((r.name, v));
    }
    if plan.request.guidance.is_some() && plan.request.condition.class.is_none() {
        return Err(ServeError::param(
            "guidance",
            "steers towards a class: choose the class to guide towards",
        ));
    }
    Ok(plan)
}

/// Quotes `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Plan {
    /// The `genlab sample` command that draws the same samples from `ckpt` into `out`:
    /// every setting whose value differs from the command's default, and the count, seed,
    /// sampler, steps and batch size always.
    pub fn command(&self, ckpt: &Path, out: &str) -> String {
        let mut parts = vec![
            "genlab".to_string(),
            "sample".into(),
            "--ckpt".into(),
            shell_quote(&ckpt.display().to_string()),
        ];
        let by_name: BTreeMap<&str, &Row> = ROWS.iter().map(|r| (r.name, r)).collect();
        for (name, v) in &self.values {
            let r = by_name[name];
            if r.cli_default.is_some_and(|d| d() == *v) {
                continue;
            }
            match v {
                // Boolean flags: `--karras` turns one on, `--no-ema` turns EMA off.
                Value::Bool(_) => parts.push(r.flag.into()),
                Value::String(s) => {
                    parts.push(r.flag.into());
                    parts.push(shell_quote(s));
                }
                other => {
                    parts.push(r.flag.into());
                    parts.push(other.to_string());
                }
            }
        }
        parts.push("--out".into());
        parts.push(shell_quote(out));
        parts.join(" ")
    }

    /// The settings as one JSON object (recorded beside saved samples).
    pub fn settings(&self) -> Value {
        Value::Object(
            self.values
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zoo() -> ModelFacts {
        ModelFacts {
            caps: Capabilities {
                generates: true,
                sampler_zoo: true,
                ..Default::default()
            },
            images: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_form_follows_the_capabilities() {
        let names = |m: &ModelFacts| form(m).iter().map(|p| p.name).collect::<Vec<_>>();
        let z = names(&zoo());
        assert!(z.contains(&"sampler") && z.contains(&"karras") && z.contains(&"steps"));
        let one_shot = ModelFacts {
            caps: Capabilities {
                generates: true,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            names(&one_shot),
            ["n", "seed", "batch_size", "ema", "temperature"]
        );
        assert!(form(&ModelFacts::default()).is_empty());
        // Every registered sampler is offered.
        let f = form(&zoo());
        let Kind::Choice { choices } = &f.iter().find(|p| p.name == "sampler").unwrap().kind else {
            panic!()
        };
        assert_eq!(choices.len(), SAMPLERS.len());
    }

    #[test]
    fn out_of_range_and_foreign_settings_are_clear_errors() {
        let body = |j: Value| j.as_object().unwrap().clone();
        let e = parse(&zoo(), &body(serde_json::json!({"steps": 5000}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "steps must be an integer from 1 to 1000, got 5000"
        );
        assert_eq!(e.status(), 400);
        // Images stop at a 32 x 32 grid; points go further.
        let e = parse(&zoo(), &body(serde_json::json!({"n": 2000}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "n must be an integer from 1 to 1024, got 2000"
        );
        let points = ModelFacts {
            images: false,
            ..zoo()
        };
        assert_eq!(
            parse(&points, &body(serde_json::json!({"n": 2000})))
                .unwrap()
                .request
                .n,
            2000
        );
        let e = parse(&zoo(), &body(serde_json::json!({"eta": "x"}))).unwrap_err();
        assert!(
            e.to_string().contains("eta must be a number from 0 to 1"),
            "{e}"
        );
        let e = parse(&zoo(), &body(serde_json::json!({"sampler": "nope"}))).unwrap_err();
        assert!(e.to_string().contains("one of ddpm, ddim"), "{e}");
        let e = parse(&zoo(), &body(serde_json::json!({"bogus": 1}))).unwrap_err();
        assert!(e.to_string().contains("not a sampling setting"), "{e}");
        let vae = ModelFacts {
            caps: Capabilities {
                generates: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let e = parse(&vae, &body(serde_json::json!({"sampler": "ddim"}))).unwrap_err();
        assert!(e.to_string().contains("this model does not take it"), "{e}");
        let e = parse(&vae, &body(serde_json::json!({"n": 0}))).unwrap_err();
        assert!(
            e.to_string().starts_with("n must be an integer from 1"),
            "{e}"
        );
    }

    #[test]
    fn the_plan_sets_the_request_and_writes_the_command() {
        let body = serde_json::json!({"n": 8, "seed": 3, "sampler": "dpm-solver", "steps": 12,
            "order": 2, "karras": true, "ema": false, "batch_size": 4});
        let p = parse(&zoo(), body.as_object().unwrap()).unwrap();
        assert_eq!(p.request.n, 8);
        assert_eq!(p.request.batch_size, 4);
        assert_eq!(p.request.sampler, "dpm-solver");
        assert_eq!(p.request.options.steps, 12);
        assert_eq!(p.request.options.solver.order, 2);
        assert!(p.request.options.solver.karras_sigmas);
        assert_eq!((p.seed, p.ema), (3, false));
        assert_eq!(
            p.command(Path::new("runs/my run"), "samples.png"),
            "genlab sample --ckpt 'runs/my run' --n 8 --seed 3 --batch-size 4 --no-ema \
             --sampler dpm-solver --steps 12 --order 2 --karras --out samples.png"
        );
        // A model that fixes its spacing keeps it whatever is asked.
        let student = ModelFacts {
            fixed_spacing: Some(Spacing::Trailing),
            preferred_steps: Some(4),
            ..zoo()
        };
        let p = parse(
            &student,
            serde_json::json!({"spacing": "logsnr"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(p.request.options.spacing, Spacing::Trailing);
        assert_eq!(p.request.options.steps, 4);
    }

    #[test]
    fn class_conditional_runs_offer_their_classes_and_guidance() {
        let body = |j: Value| j.as_object().unwrap().clone();
        let m = ModelFacts {
            caps: Capabilities {
                generates: true,
                sampler_zoo: true,
                conditional: true,
                ..Default::default()
            },
            images: true,
            num_classes: 3,
            ..Default::default()
        };
        let class = form(&m).into_iter().find(|p| p.name == "class").unwrap();
        match class.kind {
            Kind::Choice { choices } => assert_eq!(
                choices.iter().map(|c| c.value.as_str()).collect::<Vec<_>>(),
                ["none", "0", "1", "2"]
            ),
            other => panic!("{other:?}"),
        }
        let plan = parse(
            &m,
            &body(serde_json::json!({"n": 4, "class": "2", "guidance": 3.0})),
        )
        .unwrap();
        assert_eq!(
            plan.request.condition.class_labels().unwrap(),
            Some(vec![2; 4])
        );
        assert_eq!(plan.request.guidance, Some(3.0));
        let cmd = plan.command(Path::new("runs/m"), "s.png");
        assert!(
            cmd.contains("--class 2") && cmd.contains("--guidance 3"),
            "{cmd}"
        );
        // The defaults write neither flag; guidance without a class is refused.
        let plain = parse(&m, &body(serde_json::json!({}))).unwrap();
        assert!(plain.request.condition.is_none() && plain.request.guidance.is_none());
        let cmd = plain.command(Path::new("runs/m"), "s.png");
        assert!(
            !cmd.contains("--class") && !cmd.contains("--guidance"),
            "{cmd}"
        );
        let e = parse(&m, &body(serde_json::json!({"guidance": 2.0})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("guidance") && e.contains("class"), "{e}");
        assert!(parse(&m, &body(serde_json::json!({"class": "3"}))).is_err());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("runs/a-b_1.png"), "runs/a-b_1.png");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
