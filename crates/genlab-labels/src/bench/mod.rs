//! `genlab bench` workloads whose models live in this crate, as a [`WORKLOADS`] slice of
//! genlab-train's [`WorkloadEntry`] (genlab-train cannot see them: this crate depends on
//! it). `genlab bench` and `genlab list` chain this slice after genlab-train's own
//! ([`genlab_train::bench::select_workloads_in`]); timing, the JSON record and the
//! `--single` child processes are genlab-train's. The PyTorch twins are in
//! `scripts/bench/torch_bench.py`.
//!
//! Adding a workload: its file (a `build` function returning a [`Workload`]) and one entry
//! in [`WORKLOADS`] (and its twin in the PyTorch script).

mod simclr_step;

#[cfg(doc)]
use genlab_train::bench::Workload;
use genlab_train::bench::WorkloadEntry;

/// This crate's workloads, in the order `all` runs them (after genlab-train's).
pub const WORKLOADS: &[WorkloadEntry] = &[WorkloadEntry {
    name: "simclr-step",
    unit: "steps/s",
    description: "one `genlab ssl train --method simclr --data mnist` step: two fresh views of 256 1x28x28 images (genlab's random resized crop + brightness/contrast jitter), the digit encoder and a 128-128-64 projection head on each, NT-Xent (tau 0.5), Adam",
    warmup: 2,
    min_iters: 5,
    heavy: false,
    build: simclr_step::build,
}];

#[cfg(test)]
mod tests {
    use super::*;
    use genlab_train::bench::{find_workload_in, select_workloads_in};

    #[test]
    fn every_workload_builds_and_runs_one_iteration_and_the_registries_chain() {
        for w in WORKLOADS {
            let mut work = (w.build)().unwrap();
            assert!(work.params > 0 && work.flop_per_iter > 0.0, "{}", w.name);
            (work.iter)().unwrap();
        }
        let both = [genlab_train::bench::WORKLOADS, WORKLOADS];
        let names: Vec<&str> = select_workloads_in(&both, "mlp, simclr-step")
            .unwrap()
            .iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(names, ["mlp", "simclr-step"]);
        let all = select_workloads_in(&both, "all").unwrap();
        assert_eq!(all.last().unwrap().name, "simclr-step");
        assert_eq!(
            all.len() + select_workloads_in(&both, "sd").unwrap().len(),
            genlab_train::bench::WORKLOADS.len() + WORKLOADS.len()
        );
        let e = find_workload_in(&both, "simclr").err().unwrap().to_string();
        assert!(e.contains("simclr-step") && e.contains("clip-step"), "{e}");
    }
}
