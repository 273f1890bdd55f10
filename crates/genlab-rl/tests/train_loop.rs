//! The RL training loop: exact resume for every reproducible agent, bad input refused with
//! clear errors, NaN stopping training with the last good checkpoint kept, evaluation and
//! rollouts of a trained run.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use genlab_rl::agents::ALGOS;
use genlab_rl::train::{self, Quiet, TrainRequest, CHECKPOINT_FILE};

fn req(algo: &str, env: &str, steps: u64, out: &Path, set: &[&str]) -> TrainRequest {
    TrainRequest {
        algo: algo.into(),
        env: env.into(),
        steps,
        seed: 3,
        overrides: set.iter().map(|s| s.to_string()).collect(),
        out: out.to_path_buf(),
        resume: false,
        ckpt_every: Some(150),
    }
}

/// Raises the stop flag once `self.0` environment steps are done.
struct StopAt<'a>(u64, &'a AtomicBool);

impl train::Observer for StopAt<'_> {
    fn progress(&mut self, step: u64, _running: Option<f64>) {
        if step >= self.0 {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// The checkpoint of `dir` as its metadata alone describes it (what `genlab serve` reads).
fn checkpoint_state(dir: &Path) -> train::CheckpointState {
    let path = dir.join(CHECKPOINT_FILE);
    let (_, meta) =
        genlab_core::io::load_tensors_with_metadata(&path, &genlab_core::candle::Device::Cpu)
            .unwrap();
    assert!(train::is_rl_metadata(&meta));
    train::parse_metadata(&meta, &path).unwrap()
}

fn run(r: &TrainRequest) -> genlab_core::Result<train::TrainOutcome> {
    train::train(r, &mut Quiet, &AtomicBool::new(false))
}

/// Small, fast settings per algorithm (every one updates within the first few hundred steps).
fn tiny(algo: &str) -> (&'static str, Vec<&'static str>) {
    match algo {
        "q-learning" | "sarsa" => ("frozen-lake", vec![]),
        "dqn" => (
            "cartpole",
            vec![
                "hidden=[16]",
                "learning_starts=50",
                "train_freq=4",
                "gradient_steps=2",
                "batch_size=8",
                "buffer_size=500",
            ],
        ),
        "ppo" => (
            "pendulum",
            vec![
                "net.hidden=[8]",
                "n_envs=2",
                "n_steps=32",
                "batch_size=16",
                "n_epochs=2",
            ],
        ),
        "a2c" | "reinforce" => ("cartpole", vec!["net.hidden=[8]"]),
        "a3c" => ("cartpole", vec!["net.hidden=[8]", "unit_steps=100"]),
        "ddpg" | "td3" => (
            "pendulum",
            vec![
                "hidden=[16]",
                "learning_starts=50",
                "batch_size=8",
                "buffer_size=500",
            ],
        ),
        "maddpg" | "independent" => (
            "simple-spread",
            vec![
                "hidden=[16]",
                "learning_starts=50",
                "batch_size=8",
                "train_freq=5",
                "buffer_size=500",
            ],
        ),
        other => panic!("no tiny config for {other}: add one"),
    }
}

#[test]
fn resuming_gives_the_same_bytes_as_training_straight_through() {
    for algo in ALGOS {
        if algo.name == "a3c" {
            continue; // asynchronous by design: update order depends on thread timing
        }
        let (env, set) = tiny(algo.name);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let straight = run(&req(algo.name, env, 600, &a, &set)).unwrap();
        // The metadata alone tells the step, target and running return.
        let st = checkpoint_state(&a);
        assert_eq!(
            (st.step, st.run.steps, st.episodes, st.running_return),
            (
                straight.steps,
                600,
                straight.episodes,
                straight.running_return
            ),
            "{}",
            algo.name
        );
        // Interrupted at 300 (as by Ctrl-C), then resumed: the schedules (epsilon, linear
        // decays) span the run's 600 steps in both.
        let stop = AtomicBool::new(false);
        let out = train::train(
            &req(algo.name, env, 600, &b, &set),
            &mut StopAt(300, &stop),
            &stop,
        )
        .unwrap();
        assert!(out.interrupted && out.steps < 600, "{}: {out:?}", algo.name);
        assert_eq!(checkpoint_state(&b).step, out.steps, "{}", algo.name);
        let mut r = req(algo.name, env, 600, &b, &[]);
        r.resume = true;
        run(&r).unwrap();
        let ca = std::fs::read(a.join(CHECKPOINT_FILE)).unwrap();
        let cb = std::fs::read(b.join(CHECKPOINT_FILE)).unwrap();
        assert!(
            ca == cb,
            "{}: resumed checkpoint differs from the straight run",
            algo.name
        );
        // The log of the resumed run holds the same episodes.
        let ra = train::read_returns(&a).unwrap();
        let rb = train::read_returns(&b).unwrap();
        assert_eq!(ra, rb, "{}: episode log", algo.name);
    }
}

#[test]
fn a3c_trains_with_its_threads_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (env, set) = tiny("a3c");
    let out = run(&req("a3c", env, 400, dir.path(), &set)).unwrap();
    assert!(out.steps >= 400 && out.episodes > 0);
    assert_eq!(checkpoint_state(dir.path()).step, out.steps);
    let mut r = req("a3c", env, 800, dir.path(), &[]);
    r.resume = true;
    assert!(run(&r).unwrap().steps >= 800);
}

fn err(r: &TrainRequest) -> String {
    run(r).unwrap_err().to_string()
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = err(&req("dqn", "pendulum", 100, &d.join("1"), &[]));
    assert!(
        e.contains("does not fit") && e.contains("needs discrete actions") && e.contains("td3"),
        "{e}"
    );
    let e = err(&req("dqn", "lunar-lander", 100, &d.join("2"), &[]));
    assert!(
        e.contains("unknown environment `lunar-lander`") && e.contains("cartpole"),
        "{e}"
    );
    let e = err(&req("dqm", "cartpole", 100, &d.join("3"), &[]));
    assert!(
        e.contains("unknown algorithm `dqm`") && e.contains("dqn"),
        "{e}"
    );
    let e = err(&req("dqn", "cartpole", 0, &d.join("4"), &[]));
    assert!(e.contains("steps must be at least 1"), "{e}");
    let e = err(&req(
        "dqn",
        "cartpole",
        100,
        &d.join("5"),
        &["buffer_size=32", "batch_size=64"],
    ));
    assert!(
        e.contains("buffer_size") && e.contains("at least one batch"),
        "{e}"
    );
    let e = err(&req(
        "td3",
        "pendulum",
        100,
        &d.join("5b"),
        &["buffer_size=32"],
    ));
    assert!(
        e.contains("buffer_size") && e.contains("at least one batch"),
        "{e}"
    );
    let e = err(&req(
        "ppo",
        "cartpole",
        100,
        &d.join("6"),
        &["no_such_key=1"],
    ));
    assert!(e.contains("no_such_key"), "{e}");
    let e = err(&req("q-learning", "cartpole", 100, &d.join("7"), &[]));
    assert!(e.contains("needs state indices"), "{e}");
    let e = err(&req("maddpg", "pendulum", 100, &d.join("8"), &[]));
    assert!(e.contains("multi-agent algorithm"), "{e}");
    // A checkpoint from another environment (or algorithm) is refused on resume.
    let (env, set) = tiny("dqn");
    run(&req("dqn", env, 60, &d.join("9"), &set)).unwrap();
    let mut r = req("dqn", "acrobot", 120, &d.join("9"), &[]);
    r.resume = true;
    let e = err(&r);
    assert!(e.contains("holds a `dqn` run on `cartpole`"), "{e}");
    // Training again into a used directory without resume.
    let e = err(&req("dqn", env, 60, &d.join("9"), &set));
    assert!(e.contains("resume"), "{e}");
    // Resuming a directory without a checkpoint.
    let mut r = req("dqn", env, 60, &d.join("none"), &[]);
    r.resume = true;
    assert!(err(&r).contains("does not exist"));
}

#[test]
fn regression_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let set = [
        "hidden=[16]",
        "learning_starts=20",
        "train_freq=1",
        "gradient_steps=1",
        "batch_size=8",
        "lr=1e30",
    ];
    let e = err(&req("dqn", "cartpole", 2000, dir.path(), &set));
    assert!(
        e.contains("numeric") && e.contains("last good checkpoint (step 0) is kept"),
        "{e}"
    );
    // The kept checkpoint loads and evaluates.
    let r = train::evaluate(dir.path(), 2, 0).unwrap();
    assert_eq!(r.episodes, 2);
}

#[test]
fn eval_and_rollout_of_a_trained_run() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    run(&req(
        "ppo",
        "pendulum",
        200,
        &run_dir,
        &[
            "net.hidden=[8]",
            "n_envs=2",
            "n_steps=32",
            "batch_size=16",
            "n_epochs=1",
        ],
    ))
    .unwrap();
    assert!(
        run_dir.join(train::CURVE_FILE).exists()
            || train::read_returns(&run_dir).unwrap().is_empty()
    );
    let r = train::evaluate(&run_dir, 3, 7).unwrap();
    assert_eq!((r.episodes, r.mean_length), (3, 200.0));
    assert!(r.min <= r.mean && r.mean <= r.max);
    // Evaluation is deterministic for a seed.
    assert_eq!(train::evaluate(&run_dir, 3, 7).unwrap().returns, r.returns);
    let traj = dir.path().join("t.jsonl");
    let gif = dir.path().join("t.gif");
    let out = train::rollout(&run_dir, 2, 7, &traj, Some(&gif)).unwrap();
    assert_eq!(out.steps, 400);
    assert_eq!(out.frames, 402); // one frame per reset and per step
    let text = std::fs::read_to_string(&traj).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
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
        assert!(first.get(k).is_some(), "missing {k}");
    }
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["truncated"], true);
    assert!(std::fs::metadata(&gif).unwrap().len() > 1000);
    // A tabular task has no picture.
    let fl = dir.path().join("fl");
    run(&req("q-learning", "frozen-lake", 200, &fl, &[])).unwrap();
    let e = train::rollout(&fl, 1, 0, &traj, Some(&gif))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no picture"), "{e}");
    // The random baseline.
    let r = train::evaluate_random("cartpole", 20, 0).unwrap();
    assert!(r.mean > 8.0 && r.mean < 60.0, "{}", r.mean);
}

#[test]
fn double_and_dueling_dqn_train_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (env, mut set) = tiny("dqn");
    set.extend(["double_q=true", "dueling=true"]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&req("dqn", env, 400, &a, &set)).unwrap();
    let stop = AtomicBool::new(false);
    train::train(
        &req("dqn", env, 400, &b, &set),
        &mut StopAt(200, &stop),
        &stop,
    )
    .unwrap();
    let mut r = req("dqn", env, 400, &b, &[]);
    r.resume = true;
    run(&r).unwrap();
    assert!(
        std::fs::read(a.join(CHECKPOINT_FILE)).unwrap()
            == std::fs::read(b.join(CHECKPOINT_FILE)).unwrap()
    );
    let cfg = train::read_run(&a).unwrap().config;
    assert_eq!(
        (cfg["double_q"].as_bool(), cfg["dueling"].as_bool()),
        (Some(true), Some(true))
    );
}
