//! A diffusers `scheduler/scheduler_config.json` read into what genlab's samplers need.
//!
//! Hugging Face diffusers (von Platen et al., <https://github.com/huggingface/diffusers>,
//! v0.42) configures its schedulers from this JSON; Stable Diffusion folders ship one (SD 1.5:
//! `PNDMScheduler`, scaled-linear betas 0.00085..0.012, `steps_offset` 1,
//! `set_alpha_to_one` false; SD 2.x 768: `prediction_type` "v_prediction"). The mapping
//! reproduces `Scheduler.from_config(json)` followed by `set_timesteps(N)` for
//!
//! | genlab sampler    | diffusers scheduler                                          |
//! |-------------------|--------------------------------------------------------------|
//! | `ddim`            | DDIMScheduler (eta from the base options)                    |
//! | `ddpm`            | DDPMScheduler (variance "fixed_small")                       |
//! | `euler`           | EulerDiscreteScheduler                                       |
//! | `euler-ancestral` | EulerAncestralDiscreteScheduler                              |
//! | `heun`            | HeunDiscreteScheduler                                        |
//! | `dpm++2m`         | DPMSolverMultistepScheduler (order 2, dpmsolver++, midpoint, final sigma 0) |
//!
//! exactly: the same timesteps (diffusers' "leading" with `steps_offset`, its "linspace"
//! per class, fractional float32 for the Euler family, its rounded "trailing"), sigma
//! linear in t between integer timesteps for the Euler family, their start x_T *
//! `init_noise_sigma`, DDIM's `set_alpha_to_one`, `clip_sample`. Keys missing from the JSON
//! take the defaults of the scheduler class being built, as `from_config` does (so an SD 1.5
//! PNDM config gives DDIM and DDPM "leading" spacing and Euler and DPM-Solver++ "linspace").
//! The tests replay diffusers' runs (scripts/reference/sd_scheduler_fixtures.py).
//!
//! One known difference: for DDIM with "linspace" or "trailing" spacing and a step count
//! that does not divide T, diffusers steps from t to t - T//N, which is not the next
//! timestep it evaluates; genlab steps to the next timestep.
//!
//! Public API (for pipelines such as `genlab txt2img`):
//! - [`SchedulerJson::from_file`] / `str::parse` ([`std::str::FromStr`]): parse; unknown keys
//!   are tolerated and listed by [`SchedulerJson::unknown_keys`]; an unsupported
//!   `_class_name` (e.g. LCMScheduler) is an error that names it and lists the supported ones.
//! - [`SchedulerJson::schedule`]: the [`NoiseSchedule`] (betas and num_train_timesteps).
//! - [`SchedulerJson::prediction`]: epsilon, v_prediction or sample.
//! - [`SchedulerJson::sampler_options`]`(name, steps, base)`: `base` with the grid and
//!   diffusers' settings filled in for one of the samplers above; other samplers of the zoo
//!   get `base` with `steps` (genlab's own grid).
//! - [`SchedulerJson::default_sampler`]: the sampler for `_class_name`; PNDM (PLMS, not in
//!   the zoo) maps to `dpm++2m`, the multistep solver diffusers recommends in its place.
//!
//! The Denoiser contract is unchanged: samplers take VP-scale x_T ~ N(0, I) and the network
//! always sees the VP sample (the Euler family's `scale_model_input`).

use std::path::Path;

use serde_json::{Map, Value};

use genlab_core::{Error, Result};

use crate::sigmas::SigmaInterpolation;
use crate::{BetaSchedule, NoiseSchedule, Prediction, SamplerOptions};

/// The diffusers scheduler classes genlab maps, with the sampler each one defaults to.
pub const SUPPORTED_CLASSES: &[(&str, &str)] = &[
    ("PNDMScheduler", "dpm++2m"),
    ("DDIMScheduler", "ddim"),
    ("DDPMScheduler", "ddpm"),
    ("EulerDiscreteScheduler", "euler"),
    ("EulerAncestralDiscreteScheduler", "euler-ancestral"),
    ("HeunDiscreteScheduler", "heun"),
    ("DPMSolverMultistepScheduler", "dpm++2m"),
];

/// Keys genlab reads or knows to be harmless; anything else is listed as unknown.
const KNOWN_KEYS: &[&str] = &[
    "_class_name",
    "_diffusers_version",
    "_use_default_values",
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "clip_sample",
    "clip_sample_range",
    "set_alpha_to_one",
    "steps_offset",
    "timestep_spacing",
    "skip_prk_steps",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "rescale_betas_zero_snr",
    "variance_type",
    "interpolation_type",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "sigma_min",
    "sigma_max",
    "timestep_type",
    "final_sigmas_type",
    "solver_order",
    "algorithm_type",
    "solver_type",
    "lower_order_final",
    "euler_at_final",
    "use_lu_lambdas",
    "use_flow_sigmas",
    "flow_shift",
    "lambda_min_clipped",
];

/// A parsed `scheduler_config.json`.
#[derive(Clone, Debug)]
pub struct SchedulerJson {
    class_name: String,
    /// Keys present in the file (minus `_use_default_values`, which diffusers drops when
    /// loading into another class).
    keys: Map<String, Value>,
    unknown: Vec<String>,
}

impl std::str::FromStr for SchedulerJson {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::InvalidInput(format!("scheduler config is not JSON: {e}")))?;
        let Value::Object(mut keys) = v else {
            return Err(Error::InvalidInput(
                "scheduler config must be a JSON object".into(),
            ));
        };
        let class_name = match keys.get("_class_name") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(Error::InvalidInput(
                    "scheduler config has no `_class_name`".into(),
                ))
            }
        };
        if !SUPPORTED_CLASSES.iter().any(|(c, _)| *c == class_name) {
            return Err(Error::InvalidInput(format!(
                "scheduler `{class_name}` is not supported (supported: {})",
                SUPPORTED_CLASSES
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(Value::Array(defaults)) = keys.remove("_use_default_values") {
            for d in defaults {
                if let Value::String(k) = d {
                    keys.remove(&k);
                }
            }
        }
        let mut unknown: Vec<String> = keys
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        unknown.sort();
        let me = Self {
            class_name,
            keys,
            unknown,
        };
        me.schedule()?; // bad betas fail at parse time
        me.prediction_checked()?;
        Ok(me)
    }
}

impl SchedulerJson {
    /// Reads and parses a `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidInput(format!(
                "cannot read scheduler config {}: {e}",
                path.display()
            ))
        })?;
        text.parse()
            .map_err(|e: Error| Error::InvalidInput(format!("{}: {e}", path.display())))
    }

    /// diffusers' `_class_name`.
    pub fn class_name(&self) -> &str {
        &self.class_name
    }

    /// Keys genlab does not know (tolerated), sorted.
    pub fn unknown_keys(&self) -> &[String] {
        &self.unknown
    }

    /// The genlab sampler that plays `_class_name`'s role (see the module header).
    pub fn default_sampler(&self) -> &'static str {
        SUPPORTED_CLASSES
            .iter()
            .find(|(c, _)| *c == self.class_name)
            .map(|(_, s)| *s)
            .expect("checked at parse time")
    }

    /// T, diffusers' `num_train_timesteps` (default 1000).
    pub fn num_train_timesteps(&self) -> Result<usize> {
        match self.keys.get("num_train_timesteps") {
            None | Some(Value::Null) => Ok(1000),
            Some(v) => v
                .as_u64()
                .filter(|t| *t > 0)
                .map(|t| t as usize)
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "scheduler config: num_train_timesteps must be a positive integer, got {v}"
                    ))
                }),
        }
    }

    /// The betas: `trained_betas` when given, else `beta_schedule` ("linear",
    /// "scaled_linear", "squaredcos_cap_v2") between `beta_start` and `beta_end` (missing
    /// values take `_class_name`'s defaults: 0.0001..0.02, HeunDiscreteScheduler
    /// 0.00085..0.012; schedule "linear").
    pub fn schedule(&self) -> Result<NoiseSchedule> {
        let t = self.num_train_timesteps()?;
        if let Some(Value::Array(b)) = self.keys.get("trained_betas") {
            let betas = b
                .iter()
                .map(|v| {
                    v.as_f64().ok_or_else(|| {
                        Error::InvalidInput(format!(
                            "scheduler config: trained_betas holds a non-number {v}"
                        ))
                    })
                })
                .collect::<Result<Vec<f64>>>()?;
            return NoiseSchedule::new(&BetaSchedule::Trained { betas }, t);
        }
        let heun = self.class_name == "HeunDiscreteScheduler";
        let beta_start = self.f64_or("beta_start", if heun { 0.00085 } else { 0.0001 })?;
        let beta_end = self.f64_or("beta_end", if heun { 0.012 } else { 0.02 })?;
        let kind = match self.str_or("beta_schedule", "linear")?.as_str() {
            "linear" => BetaSchedule::Linear {
                beta_start,
                beta_end,
            },
            "scaled_linear" => BetaSchedule::ScaledLinear {
                beta_start,
                beta_end,
            },
            // diffusers' betas_for_alpha_bar with the cosine alpha_bar, s = 0.008, max 0.999.
            "squaredcos_cap_v2" => BetaSchedule::Cosine { s: 0.008 },
            other => {
                return Err(Error::InvalidInput(format!(
                    "scheduler config: beta_schedule `{other}` is not supported (supported: linear, scaled_linear, squaredcos_cap_v2)"
                )))
            }
        };
        NoiseSchedule::new(&kind, t)
    }

    /// What the network predicts (`prediction_type`, default "epsilon").
    pub fn prediction(&self) -> Prediction {
        self.prediction_checked().expect("checked at parse time")
    }

    fn prediction_checked(&self) -> Result<Prediction> {
        match self.str_or("prediction_type", "epsilon")?.as_str() {
            "epsilon" => Ok(Prediction::Epsilon),
            "v_prediction" => Ok(Prediction::V),
            "sample" => Ok(Prediction::X0),
            other => Err(Error::InvalidInput(format!(
                "scheduler config: prediction_type `{other}` is not supported (supported: epsilon, v_prediction, sample)"
            ))),
        }
    }

    /// `base` set up so that sampler `name` with `steps` steps runs as the matching
    /// diffusers scheduler `from_config` of this JSON (table in the module header): steps,
    /// explicit timesteps, clip_x0 (from `clip_sample`), DDIM's `set_alpha_to_one`, the Euler
    /// family's sigma interpolation and start. `base.eta` and `base.solver` are kept. Other
    /// samplers of the zoo get `base` with `steps` on genlab's own grid. Settings of the
    /// matching class that genlab cannot reproduce (thresholding, Karras sigmas, another
    /// DPM-Solver variant, ...) are errors naming the key.
    pub fn sampler_options(
        &self,
        name: &str,
        steps: usize,
        base: &SamplerOptions,
    ) -> Result<SamplerOptions> {
        let t = self.num_train_timesteps()?;
        if steps == 0 || steps > t {
            return Err(Error::setting(
                "steps",
                format!(
                    "must be between 1 and the scheduler's {t} training timesteps, got {steps}"
                ),
            ));
        }
        let mut o = SamplerOptions {
            steps,
            ..base.clone()
        };
        let offset = self.usize_or("steps_offset", 0)?;
        let clip = |me: &Self, default: bool| -> Result<Option<(f64, f64)>> {
            if me.bool_or("clip_sample", default)? {
                let r = me.f64_or("clip_sample_range", 1.0)?;
                Ok(Some((-r, r)))
            } else {
                Ok(None)
            }
        };
        match name {
            "ddim" | "ddpm" => {
                self.require_default("thresholding", &Value::Bool(false))?;
                self.require_default("rescale_betas_zero_snr", &Value::Bool(false))?;
                if name == "ddpm" {
                    let v = self.str_or("variance_type", "fixed_small")?;
                    if v != "fixed_small" {
                        return Err(unsupported("variance_type", &v, "fixed_small"));
                    }
                }
                let spacing = self.str_or("timestep_spacing", "leading")?;
                let ts = discrete_timesteps(&spacing, t, steps, offset)?;
                o.timesteps = Some(ts.iter().map(|&x| x as f64).collect());
                o.clip_x0 = clip(self, true)?;
                // DDIMScheduler.step's use_clipped_model_output defaults to False (the
                // pipelines never pass it): the direction term keeps the network's eps.
                o.keep_model_eps = name == "ddim";
                o.set_alpha_to_one = name == "ddpm" || self.bool_or("set_alpha_to_one", true)?;
            }
            "euler" | "euler-ancestral" | "heun" => {
                self.require_default("rescale_betas_zero_snr", &Value::Bool(false))?;
                if name != "euler-ancestral" {
                    for k in [
                        "use_karras_sigmas",
                        "use_exponential_sigmas",
                        "use_beta_sigmas",
                    ] {
                        self.require_default(k, &Value::Bool(false))?;
                    }
                }
                if name == "euler" {
                    self.require_default("interpolation_type", &Value::from("linear"))?;
                    self.require_default("timestep_type", &Value::from("discrete"))?;
                    self.require_default("final_sigmas_type", &Value::from("zero"))?;
                }
                let spacing = self.str_or("timestep_spacing", "linspace")?;
                o.timesteps = Some(euler_timesteps(&spacing, t, steps, offset)?);
                o.sigma_interpolation = SigmaInterpolation::Linear;
                o.init_noise_sigma_max = spacing != "leading";
                o.clip_x0 = if name == "heun" {
                    clip(self, false)?
                } else {
                    None
                };
            }
            "dpm++2m" => {
                self.require_default("solver_order", &Value::from(2))?;
                self.require_default("algorithm_type", &Value::from("dpmsolver++"))?;
                self.require_default("solver_type", &Value::from("midpoint"))?;
                self.require_default("final_sigmas_type", &Value::from("zero"))?;
                for k in [
                    "thresholding",
                    "use_karras_sigmas",
                    "use_exponential_sigmas",
                    "use_beta_sigmas",
                    "use_lu_lambdas",
                    "use_flow_sigmas",
                    "rescale_betas_zero_snr",
                ] {
                    self.require_default(k, &Value::Bool(false))?;
                }
                self.require_default("variance_type", &Value::Null)?;
                self.require_default("lambda_min_clipped", &Value::Null)?;
                let spacing = self.str_or("timestep_spacing", "linspace")?;
                let ts = dpm_timesteps(&spacing, t, steps, offset)?;
                o.timesteps = Some(ts.iter().map(|&x| x as f64).collect());
                o.clip_x0 = None;
            }
            _ => {} // genlab's own grid
        }
        Ok(o)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.keys.get(key).filter(|v| !v.is_null())
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| wrong_type(key, "a number", v)),
        }
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| wrong_type(key, "a non-negative integer", v)),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| wrong_type(key, "true or false", v)),
        }
    }

    fn str_or(&self, key: &str, default: &str) -> Result<String> {
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| wrong_type(key, "a string", v)),
        }
    }

    /// Errors unless `key` is absent, null or equal to `default` (the only value genlab
    /// reproduces).
    fn require_default(&self, key: &str, default: &Value) -> Result<()> {
        match self.get(key) {
            None => Ok(()),
            Some(v) if v == default => Ok(()),
            Some(v) => Err(unsupported(key, &v.to_string(), &default.to_string())),
        }
    }
}

fn wrong_type(key: &str, want: &str, got: &Value) -> Error {
    Error::InvalidInput(format!(
        "scheduler config: `{key}` must be {want}, got {got}"
    ))
}

fn unsupported(key: &str, got: &str, supported: &str) -> Error {
    Error::InvalidInput(format!(
        "scheduler config: `{key}` = {got} is not supported by genlab's samplers (supported: {supported})"
    ))
}

fn bad_spacing(s: &str) -> Error {
    Error::InvalidInput(format!(
        "scheduler config: timestep_spacing `{s}` is not supported (supported: leading, linspace, trailing)"
    ))
}

/// numpy's `linspace(0, stop, num)[j]`: j * (stop / (num - 1)), the last value exactly stop.
fn np_linspace(stop: f64, num: usize, j: usize) -> f64 {
    if num == 1 {
        return 0.0;
    }
    if j == num - 1 {
        return stop;
    }
    j as f64 * (stop / (num - 1) as f64)
}

/// `round(arange(T, 0, -T/N)) - 1`: diffusers' "trailing" grid, T-1 first.
fn trailing_rounded(t: usize, n: usize) -> Vec<f64> {
    let ratio = t as f64 / n as f64;
    (0..n)
        .map(|i| (t as f64 - i as f64 * ratio).round_ties_even() - 1.0)
        .collect()
}

/// DDIMScheduler / DDPMScheduler `set_timesteps(n)` (integers, decreasing).
fn discrete_timesteps(spacing: &str, t: usize, n: usize, offset: usize) -> Result<Vec<i64>> {
    Ok(match spacing {
        "linspace" => (0..n)
            .rev()
            .map(|j| np_linspace((t - 1) as f64, n, j).round_ties_even() as i64)
            .collect(),
        "leading" => (0..n)
            .rev()
            .map(|j| (j * (t / n) + offset) as i64)
            .collect(),
        "trailing" => trailing_rounded(t, n)
            .into_iter()
            .map(|x| x as i64)
            .collect(),
        s => return Err(bad_spacing(s)),
    })
}

/// The Euler family's `set_timesteps(n)`: float32 values (fractional for "linspace").
fn euler_timesteps(spacing: &str, t: usize, n: usize, offset: usize) -> Result<Vec<f64>> {
    let f32_round = |x: f64| x as f32 as f64;
    Ok(match spacing {
        "linspace" => (0..n)
            .rev()
            .map(|j| f32_round(np_linspace((t - 1) as f64, n, j)))
            .collect(),
        "leading" => (0..n)
            .rev()
            .map(|j| f32_round((j * (t / n) + offset) as f64))
            .collect(),
        "trailing" => trailing_rounded(t, n),
        s => return Err(bad_spacing(s)),
    })
}

/// DPMSolverMultistepScheduler's `set_timesteps(n)` (integers; linspace and leading use
/// n + 1 points and drop the last).
fn dpm_timesteps(spacing: &str, t: usize, n: usize, offset: usize) -> Result<Vec<i64>> {
    Ok(match spacing {
        "linspace" => (1..=n)
            .rev()
            .map(|j| np_linspace((t - 1) as f64, n + 1, j).round_ties_even() as i64)
            .collect(),
        "leading" => (1..=n)
            .rev()
            .map(|j| (j * (t / (n + 1)) + offset) as i64)
            .collect(),
        "trailing" => trailing_rounded(t, n)
            .into_iter()
            .map(|x| x as i64)
            .collect(),
        s => return Err(bad_spacing(s)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SD15: &str = r#"{"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0",
        "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
        "clip_sample": false, "num_train_timesteps": 1000, "set_alpha_to_one": false,
        "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "my_key": 3}"#;

    #[test]
    fn sd15_config_maps_onto_the_samplers() {
        let j: SchedulerJson = SD15.parse().unwrap();
        assert_eq!(j.class_name(), "PNDMScheduler");
        assert_eq!(j.default_sampler(), "dpm++2m");
        assert_eq!(j.unknown_keys(), &["my_key".to_string()]);
        assert_eq!(j.prediction(), Prediction::Epsilon);
        let s = j.schedule().unwrap();
        assert!((s.betas[0] - 0.00085).abs() < 1e-15 && (s.betas[999] - 0.012).abs() < 1e-15);
        let base = SamplerOptions::default();
        let o = j.sampler_options("ddim", 20, &base).unwrap();
        let ts = o.timesteps.clone().unwrap();
        assert_eq!((ts[0], ts[1], ts[19]), (951.0, 901.0, 1.0));
        assert!(!o.set_alpha_to_one && o.clip_x0.is_none());
        let o = j.sampler_options("euler", 20, &base).unwrap();
        let ts = o.timesteps.clone().unwrap();
        assert_eq!(ts[0], 999.0);
        assert_eq!(ts[1], (18.0 * (999.0f64 / 19.0)) as f32 as f64);
        assert!(o.init_noise_sigma_max);
        let o = j.sampler_options("dpm++2m", 10, &base).unwrap();
        let ts = o.timesteps.clone().unwrap();
        assert_eq!(
            ts,
            vec![999.0, 899.0, 799.0, 699.0, 599.0, 500.0, 400.0, 300.0, 200.0, 100.0]
        );
        // Other samplers: genlab's own grid.
        let o = j.sampler_options("rk45", 10, &base).unwrap();
        assert!(o.timesteps.is_none() && o.steps == 10);
        assert!(j.sampler_options("ddim", 0, &base).is_err());
        assert!(j.sampler_options("ddim", 1001, &base).is_err());
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let e =
            r#"{"_class_name": "LCMScheduler"}"#.parse::<SchedulerJson>().unwrap_err().to_string();
        assert!(
            e.contains("LCMScheduler") && e.contains("DDIMScheduler"),
            "{e}"
        );
        let e = r#"{"_class_name": "DDIMScheduler", "beta_schedule": "sigmoid"}"#
            .parse::<SchedulerJson>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("sigmoid"), "{e}");
        let e = r#"{"_class_name": "DDIMScheduler", "prediction_type": "flow_prediction"}"#
            .parse::<SchedulerJson>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("flow_prediction"), "{e}");
        let j: SchedulerJson =
            r#"{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3}"#
                .parse()
                .unwrap();
        let e = j
            .sampler_options("dpm++2m", 10, &SamplerOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("solver_order"), "{e}");
        let j: SchedulerJson = r#"{"_class_name": "DDIMScheduler", "timestep_spacing": "even"}"#
            .parse()
            .unwrap();
        assert!(j
            .sampler_options("ddim", 10, &SamplerOptions::default())
            .unwrap_err()
            .to_string()
            .contains("even"));
        assert!("[1, 2]".parse::<SchedulerJson>().is_err());
        assert!("{".parse::<SchedulerJson>().is_err());
        assert!(SchedulerJson::from_file(Path::new("/nonexistent/scheduler_config.json")).is_err());
        // Class defaults: DDIM clips by default, trained betas need T values.
        let j: SchedulerJson = r#"{"_class_name": "DDIMScheduler"}"#.parse().unwrap();
        let o = j
            .sampler_options("ddim", 10, &SamplerOptions::default())
            .unwrap();
        assert_eq!(o.clip_x0, Some((-1.0, 1.0)));
        assert!(o.set_alpha_to_one);
        assert!(
            r#"{"_class_name": "DDIMScheduler", "trained_betas": [0.1, 0.2]}"#
                .parse::<SchedulerJson>()
                .is_err()
        );
    }
}
