//! Every registered method in every scenario it claims, on the embedded 8x8 digits split
//! into five tasks with tiny settings: it runs, fills the whole accuracy matrix, learns the
//! first task, and gives the same bytes for the same seed. Plus the bounds
//! that make the benchmark meaningful: joint training and exemplar/replay methods beat
//! fine-tuning in Class-IL, where fine-tuning forgets everything but the last task.

use genlab_continual::benchmark::Benchmark;
use genlab_continual::train::{run_on, Quiet, RunConfig};
use genlab_continual::{Scenario, METHODS};

/// Tiny settings: a few seconds for the whole suite.
fn tiny(method: &str, s: Scenario, seed: u64, iters: usize) -> RunConfig {
    let mut over = vec![
        format!("iters={iters}"),
        "batch=32".to_string(),
        "hidden=[48,48]".to_string(),
        "eval_every=0".to_string(),
    ];
    if method.starts_with("dgr") {
        over.push("method.hidden=[48]".into());
        over.push("method.z_dim=8".into());
    }
    if method == "icarl" || method == "replay" || method == "agem" {
        over.push("method.budget=200".into());
    }
    RunConfig::resolve("split-digits", s, method, seed, &over).unwrap()
}

/// Chance in a two-class task is 0.5: a trained task is well above it.
const LEARNED: f64 = 0.75;

#[test]
fn every_method_runs_in_every_scenario_it_claims_and_is_deterministic() {
    for s in Scenario::ALL {
        let bench = Benchmark::load("split-digits", None, None, s, 0).unwrap();
        for m in METHODS {
            if !m.scenarios.contains(&s) {
                assert!(RunConfig::resolve("split-digits", s, m.name, 0, &[]).is_err());
                continue;
            }
            let cfg = tiny(m.name, s, 3, 80);
            let r = run_on(&bench, &cfg, &mut Quiet).unwrap();
            assert_eq!(r.accuracy.len(), 5, "{} {s:?}", m.name);
            assert!(r.accuracy.iter().all(|row| row.len() == 5));
            // Before any penalty or replay applies, every method learns the first task.
            assert!(
                r.accuracy[0][0] > LEARNED,
                "{} {s:?}: accuracy on the first task after learning it {}",
                m.name,
                r.accuracy[0][0]
            );
            let again = run_on(&bench, &cfg, &mut Quiet).unwrap();
            assert_eq!(
                again.accuracy, r.accuracy,
                "{} {s:?}: not deterministic",
                m.name
            );
        }
    }
}

#[test]
fn joint_and_rehearsal_beat_finetuning_in_class_il() {
    let s = Scenario::Class;
    let bench = Benchmark::load("split-digits", None, None, s, 0).unwrap();
    let acc = |m: &str| {
        run_on(&bench, &tiny(m, s, 1, 150), &mut Quiet)
            .unwrap()
            .measures
            .average_accuracy
    };
    let ft = acc("finetune");
    // Fine-tuning in Class-IL keeps only the last task: about 1/5 of the classes.
    assert!(ft < 0.35, "finetune {ft}");
    for m in ["joint", "icarl", "replay"] {
        let a = acc(m);
        assert!(a > ft + 0.3, "{m} {a} vs finetune {ft}");
    }
}
