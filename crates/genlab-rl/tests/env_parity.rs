//! Every environment against transitions recorded from Gymnasium 1.2 and PettingZoo MPE
//! (mpe2) by `scripts/reference/rl_env_fixtures.py`: the same start states and actions must
//! give the same observations, rewards and flags, step by step.

use genlab_core::Rng;
use genlab_rl::env::{Action, Env};
use genlab_rl::envs::{self, tabular::Table, MultiEnv};
use serde_json::Value;

/// Observations and rewards agree with the reference to this absolute tolerance (the issue's
/// bar; most agree to the last float32 bit).
const PARITY_TOL: f64 = 1e-6;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/envs.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn make(name: &str) -> Box<dyn Env> {
    match envs::find(name).unwrap().make {
        envs::Maker::Single(f) => f(),
        envs::Maker::Multi(_) => panic!("{name} is multi-agent"),
    }
}

#[test]
fn classic_control_matches_gymnasium_step_by_step() {
    let fx = fixture();
    let mut checked = std::collections::BTreeMap::<String, usize>::new();
    for ep in fx["classic"].as_array().unwrap() {
        let name = ep["env"].as_str().unwrap();
        let mut env = make(name);
        let mut state = f64s(&ep["state"]);
        if name == "mountain-car-continuous" {
            state.push(0.0); // the start state is float64, as after Gymnasium's reset
        }
        let mut obs = vec![0f32; env.observation_space().flat_len()];
        env.set_state(&state, &mut obs).unwrap();
        let mut rng = Rng::new(0);
        let actions = ep["actions"].as_array().unwrap();
        for (t, a) in actions.iter().enumerate() {
            let cont: Vec<f32>;
            let action = if a.is_array() {
                cont = f64s(a).iter().map(|&v| v as f32).collect();
                Action::Continuous(&cont)
            } else {
                Action::Discrete(a.as_u64().unwrap() as usize)
            };
            let tr = env.step(action, &mut rng, &mut obs);
            let want = f64s(&ep["obs"][t]);
            for (i, (&got, &w)) in obs.iter().zip(&want).enumerate() {
                assert!(
                    (got as f64 - w).abs() <= PARITY_TOL,
                    "{name} from {state:?}, step {t}, obs[{i}]: {got} vs Gymnasium {w}"
                );
            }
            let wr = ep["rewards"][t].as_f64().unwrap();
            assert!(
                (tr.reward - wr).abs() <= PARITY_TOL,
                "{name} step {t}: reward {} vs {wr}",
                tr.reward
            );
            assert_eq!(
                tr.terminated,
                ep["terminated"][t].as_bool().unwrap(),
                "{name} step {t}: terminated"
            );
            assert!(!tr.truncated);
        }
        *checked.entry(name.to_string()).or_default() += actions.len();
    }
    for name in [
        "cartpole",
        "acrobot",
        "mountain-car",
        "mountain-car-continuous",
        "pendulum",
    ] {
        assert!(
            checked.get(name).copied().unwrap_or(0) >= 20,
            "{name}: {checked:?}"
        );
    }
}

fn table_of(name: &str) -> Table {
    use genlab_rl::envs::{cliff_walking, frozen_lake, taxi};
    match name {
        "frozen-lake" => frozen_lake::FrozenLake::new(&frozen_lake::MAP_4X4, true).table,
        "frozen-lake-dry" => frozen_lake::FrozenLake::new(&frozen_lake::MAP_4X4, false).table,
        "frozen-lake-8x8" => frozen_lake::FrozenLake::new(&frozen_lake::MAP_8X8, true).table,
        "cliff-walking" => cliff_walking::CliffWalking::new().table,
        "taxi" => taxi::Taxi::new().table,
        other => panic!("no table {other}"),
    }
}

#[test]
fn toy_text_transition_tables_match_gymnasium_entry_by_entry() {
    let fx = fixture();
    for t in fx["tables"].as_array().unwrap() {
        let name = t["env"].as_str().unwrap();
        let ours = table_of(name);
        let p = t["P"].as_array().unwrap();
        assert_eq!(ours.p.len(), p.len(), "{name}: state count");
        for (s, per_a) in p.iter().enumerate() {
            let per_a = per_a.as_array().unwrap();
            assert_eq!(ours.p[s].len(), per_a.len(), "{name}: action count");
            for (a, outs) in per_a.iter().enumerate() {
                let outs = outs.as_array().unwrap();
                assert_eq!(ours.p[s][a].len(), outs.len(), "{name} P[{s}][{a}]");
                for (o, w) in ours.p[s][a].iter().zip(outs) {
                    let w = w.as_array().unwrap();
                    assert!((o.prob - w[0].as_f64().unwrap()).abs() <= PARITY_TOL);
                    assert_eq!(o.next as u64, w[1].as_u64().unwrap(), "{name} P[{s}][{a}]");
                    assert_eq!(o.reward, w[2].as_f64().unwrap(), "{name} P[{s}][{a}]");
                    assert_eq!(o.terminated, w[3].as_bool().unwrap(), "{name} P[{s}][{a}]");
                }
            }
        }
        for (x, w) in ours.initial.iter().zip(f64s(&t["initial"])) {
            assert!((x - w).abs() <= PARITY_TOL, "{name}: initial distribution");
        }
    }
}

#[test]
fn simple_spread_matches_pettingzoo_mpe_step_by_step() {
    let fx = fixture();
    let eps = fx["spread"].as_array().unwrap();
    assert!(eps.len() >= 4);
    for ep in eps {
        let continuous = ep["continuous"].as_bool().unwrap();
        let mut env = envs::simple_spread::SimpleSpread::new(continuous);
        let mut obs = vec![0f32; 3 * env.obs_dim()];
        env.set_state(&f64s(&ep["state"]), &mut obs).unwrap();
        let mut rew = [0f64; 3];
        for (t, a) in ep["actions"].as_array().unwrap().iter().enumerate() {
            let acts: Vec<f32> = f64s(a).iter().map(|&v| v as f32).collect();
            let (_, truncated) = env.step(&acts, &mut obs, &mut rew);
            for (i, (&got, w)) in obs.iter().zip(f64s(&ep["obs"][t])).enumerate() {
                assert!(
                    (got as f64 - w).abs() <= PARITY_TOL,
                    "spread (continuous {continuous}) step {t} obs[{i}]: {got} vs {w}"
                );
            }
            for (i, w) in f64s(&ep["rewards"][t]).iter().enumerate() {
                assert!(
                    (rew[i] - w).abs() <= PARITY_TOL,
                    "spread step {t} reward[{i}]: {} vs {w}",
                    rew[i]
                );
            }
            assert_eq!(truncated, ep["truncated"][t].as_bool().unwrap());
        }
    }
}
