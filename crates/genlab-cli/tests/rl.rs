//! End-to-end tests of `genlab rl`: the commands of docs/rl.md as a user types them (train,
//! resume, eval, rollout with a GIF, report, list) and one clear error for each kind of bad
//! input the issue names. The algorithms themselves are tested in genlab-rl.

mod common;
use common::{fails_with, genlab, json, ok, stderr};

#[test]
fn rl_train_resume_eval_rollout_report_and_list() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // Two seeds of a short PPO run on CartPole, the second extended by --resume.
    for seed in ["0", "1"] {
        let run = format!("ppo-s{seed}");
        let o = genlab(
            &[
                "rl", "train", "--algo", "ppo", "--env", "cartpole", "--steps", "2048", "--seed",
                seed, "--out", &run, "--quiet",
            ],
            d,
        );
        ok(&o);
        for f in [
            "config.json",
            "checkpoint.safetensors",
            "log.jsonl",
            "returns.svg",
        ] {
            assert!(d.join(&run).join(f).exists(), "{run}/{f} missing");
        }
    }
    let o = genlab(
        &[
            "rl", "train", "--algo", "ppo", "--env", "cartpole", "--steps", "4096", "--seed", "1",
            "--out", "ppo-s1", "--resume", "--quiet",
        ],
        d,
    );
    ok(&o);
    let last_step = std::fs::read_to_string(d.join("ppo-s1/log.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_u64())
        .max()
        .unwrap();
    assert!(
        last_step > 2048,
        "the resumed run did not continue: {last_step}"
    );

    // Evaluation: mean, std, min, max and every episode's return.
    let o = genlab(
        &[
            "rl",
            "eval",
            "--ckpt",
            "ppo-s0",
            "--episodes",
            "5",
            "--json",
            "eval.json",
        ],
        d,
    );
    assert!(ok(&o).contains("5 episodes"));
    let e = json(&d.join("eval.json"));
    for k in ["mean", "std", "min", "max"] {
        assert!(e[k].is_number(), "eval.json lacks {k}: {e}");
    }
    assert_eq!(e["returns"].as_array().unwrap().len(), 5);
    let o = genlab(
        &["rl", "eval", "--random", "cartpole", "--episodes", "3"],
        d,
    );
    ok(&o);

    // Rollout: one record per step with the fields, and a GIF.
    let o = genlab(
        &[
            "rl",
            "rollout",
            "--ckpt",
            "ppo-s0",
            "--episodes",
            "2",
            "--out",
            "traj.jsonl",
            "--gif",
            "cp.gif",
        ],
        d,
    );
    ok(&o);
    let traj = std::fs::read_to_string(d.join("traj.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(traj.lines().next().unwrap()).unwrap();
    for k in [
        "episode",
        "t",
        "obs",
        "action",
        "reward",
        "next_obs",
        "terminated",
        "truncated",
    ] {
        assert!(first.get(k).is_some(), "rollout record lacks {k}: {first}");
    }
    assert!(std::fs::read(d.join("cp.gif"))
        .unwrap()
        .starts_with(b"GIF8"));

    // Curves with bands across the two seeds.
    let o = genlab(
        &[
            "rl", "report", "ppo-s0", "ppo-s1", "--out", "ppo.svg", "--json", "ppo.json",
        ],
        d,
    );
    ok(&o);
    assert!(std::fs::read_to_string(d.join("ppo.svg"))
        .unwrap()
        .contains("<svg"));
    assert_eq!(
        json(&d.join("ppo.json"))[0]["runs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A tabular method on the slippery lake.
    let o = genlab(
        &[
            "rl",
            "train",
            "--algo",
            "q-learning",
            "--env",
            "frozen-lake",
            "--steps",
            "3000",
            "--out",
            "q",
            "--quiet",
        ],
        d,
    );
    ok(&o);

    let o = genlab(&["rl", "list", "--json"], d);
    let l: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let names = |k: &str| -> Vec<String> {
        l[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    for env in ["cartpole", "pendulum", "frozen-lake", "simple-spread"] {
        assert!(names("envs").contains(&env.to_string()), "{env} not listed");
    }
    for algo in ["dqn", "ppo", "a3c", "td3", "maddpg", "q-learning"] {
        assert!(
            names("algos").contains(&algo.to_string()),
            "{algo} not listed"
        );
    }
    let o = genlab(&["rl", "--help"], d);
    assert!(ok(&o).contains("rollout"));
}

#[test]
fn rl_bad_input_gets_one_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let train = |extra: &[&str]| {
        let mut a = vec!["rl", "train", "--out", "run", "--quiet"];
        a.extend_from_slice(extra);
        genlab(&a, d)
    };
    // An algorithm that does not fit the action space.
    let o = train(&["--algo", "dqn", "--env", "pendulum", "--steps", "100"]);
    fails_with(&o, &["dqn", "pendulum", "discrete"]);
    let o = train(&["--algo", "dqn", "--env", "nowhere", "--steps", "100"]);
    fails_with(&o, &["unknown environment `nowhere`", "cartpole"]);
    let o = train(&["--algo", "nothing", "--env", "cartpole", "--steps", "100"]);
    fails_with(&o, &["nothing"]);
    let o = train(&["--algo", "dqn", "--env", "cartpole", "--steps", "0"]);
    fails_with(&o, &["--steps"]);
    // A replay buffer smaller than a batch.
    let o = train(&[
        "--algo",
        "dqn",
        "--env",
        "cartpole",
        "--steps",
        "100",
        "--set",
        "batch_size=64",
        "--set",
        "buffer_size=10",
    ]);
    fails_with(&o, &["buffer_size", "batch"]);
    // A checkpoint from another environment.
    let o = train(&["--algo", "ppo", "--env", "cartpole", "--steps", "256"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train(&[
        "--algo", "ppo", "--env", "acrobot", "--steps", "512", "--resume",
    ]);
    fails_with(&o, &["cartpole", "acrobot"]);
    let o = genlab(&["rl", "eval", "--ckpt", "missing"], d);
    fails_with(&o, &["missing"]);
}
