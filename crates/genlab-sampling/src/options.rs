//! Options of the solver samplers (issue 6), grouped in one struct that
//! [`SamplerOptions`] carries as its `solver` field (`genlab sample --order/--rtol/--atol/
//! --snr/--corrector-steps/--karras`). Each sampler validates only the options it reads.

use serde::{Deserialize, Serialize};

use genlab_core::{Error, Result};

use crate::SamplerOptions;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SolverOptions {
    /// DPM-Solver order: 1 (= DDIM), 2 or 3.
    pub order: usize,
    /// Relative tolerance of the adaptive RK45 solver.
    pub rtol: f64,
    /// Absolute tolerance of the adaptive RK45 solver.
    pub atol: f64,
    /// Signal-to-noise ratio r of the Langevin corrector (Song et al. 2021, Alg. 5).
    pub snr: f64,
    /// Langevin corrector steps per noise level (M in Song et al. 2021, Alg. 1).
    pub corrector_steps: usize,
    /// Karras et al. 2022 (Eq. 5, rho = 7) sigma spacing instead of evenly spaced
    /// timesteps, for the sigma-space samplers (Euler, Heun, Euler-ancestral, DPM-Solver,
    /// DPM-Solver++).
    pub karras_sigmas: bool,
}

impl Default for SolverOptions {
    fn default() -> Self {
        Self {
            order: 3,           // Lu et al. 2022 (Sec. 3.4, DPM-Solver-fast) spend most steps at order 3
            rtol: 1e-5,         // Song et al. 2021 (App. D.4): scipy RK45 with rtol = atol = 1e-5
            atol: 1e-5,         // same source
            snr: 0.01,          // Song et al. 2021 Table 5: best r for VP reverse-diffusion PC1000
            corrector_steps: 1, // Song et al. 2021 App. G: "one corrector step per noise scale"
            karras_sigmas: false, // diffusers' default (use_karras_sigmas = False)
        }
    }
}

/// `steps` must be at least 1.
pub(crate) fn require_steps(o: &SamplerOptions) -> Result<()> {
    if o.steps == 0 {
        return Err(Error::setting("steps", "must be at least 1, got 0"));
    }
    Ok(())
}

/// `v` must be finite and > 0; `what` names the option in the message.
pub(crate) fn require_positive(what: &str, v: f64) -> Result<()> {
    if !(v > 0.0 && v.is_finite()) {
        return Err(Error::InvalidInput(format!(
            "{what} must be a finite number > 0, got {v}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_unknown_keys_fail() {
        let o: SolverOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, SolverOptions::default());
        let o: SolverOptions = serde_json::from_str(r#"{"order": 2, "rtol": 1e-3}"#).unwrap();
        assert_eq!((o.order, o.rtol, o.atol), (2, 1e-3, 1e-5));
        assert!(serde_json::from_str::<SolverOptions>(r#"{"ordre": 2}"#).is_err());
    }

    #[test]
    fn validation_messages_name_the_option() {
        let e = require_positive("rtol", -1.0).unwrap_err().to_string();
        assert!(
            e.contains("rtol") && e.contains("> 0") && e.contains("-1"),
            "{e}"
        );
        assert!(require_positive("atol", f64::NAN).is_err());
        assert!(require_steps(&SamplerOptions {
            steps: 0,
            ..Default::default()
        })
        .is_err());
    }
}
