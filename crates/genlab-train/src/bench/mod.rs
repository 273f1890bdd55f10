//! The fixed benchmark workloads of `genlab bench`, one file each, and how they are timed.
//!
//! Each workload is built exactly like its twin in `scripts/bench/torch_bench.py` (same
//! shapes, batch, initialisation scheme, optimizer), so that the two rates compare the
//! implementations and nothing else. FLOPs are counted from the layer shapes
//! (`genlab_nn::flops`); a training iteration counts 3x its forward (the backward pass
//! computes two products of the same size per layer).
//!
//! Timing: warm-up iterations, then single iterations until a minimum time and count have
//! passed; the reported time is the median iteration (robust to a shared machine's
//! hiccups), and the rate its inverse.
//!
//! Adding a workload: its file (a `build` function returning a [`Workload`]) and one entry
//! in [`WORKLOADS`] (and its twin in the PyTorch script).

mod attention;
mod cfg_step;
mod clip_step;
mod conv;
mod ddim50;
mod dit_train;
mod flow_train;
mod mlp;
mod sd15_txt2img;
mod sd15_unet_step;
mod sd_vae_decode;
mod unet_train;
mod video_dit_train;
mod xattn_unet_train;

use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use genlab_core::{Error, ParamStore, Result};

use crate::optim::{AdamW, AdamWConfig};

/// Adam's learning rate in every training workload (PyTorch's default).
pub const LR: f64 = 1e-3;
/// EMA decay of the U-Net workload (the MNIST run's).
pub const EMA_DECAY: f64 = 0.998;

/// One runnable workload: `iter` does one timed iteration.
pub struct Workload {
    pub params: usize,
    /// Forward+backward (or inference) FLOPs of one iteration, counted from shapes.
    pub flop_per_iter: f64,
    pub iter: Box<dyn FnMut() -> Result<()>>,
}

/// One registered workload.
pub struct WorkloadEntry {
    pub name: &'static str,
    /// Unit of the rate (`steps/s`, `runs/s`).
    pub unit: &'static str,
    pub description: &'static str,
    /// Untimed iterations before timing.
    pub warmup: usize,
    /// Timed iterations at least, however long they take.
    pub min_iters: usize,
    /// Minutes per run (Stable Diffusion's shapes): left out of `all`, run by name or as
    /// the group `sd`.
    pub heavy: bool,
    pub build: fn() -> Result<Workload>,
}

/// The workloads, in the order `all` runs them.
pub const WORKLOADS: &[WorkloadEntry] = &[
    WorkloadEntry {
        name: "mlp",
        unit: "steps/s",
        description: "MLP 2-256-256-2 (SiLU), batch 512, Adam",
        warmup: 3,
        min_iters: 5,
        heavy: false,
        build: mlp::build,
    },
    WorkloadEntry {
        name: "conv",
        unit: "steps/s",
        description: "3 conv + 1 transposed conv with a skip, 64x1x28x28, Adam",
        warmup: 3,
        min_iters: 5,
        heavy: false,
        build: conv::build,
    },
    WorkloadEntry {
        name: "unet-train",
        unit: "steps/s",
        description: "MNIST DDPM U-Net (base 16, [1,2,2], 1 block), batch 32, Adam + EMA",
        warmup: 3,
        min_iters: 5,
        heavy: false,
        build: unet_train::build,
    },
    WorkloadEntry {
        name: "ddim50",
        unit: "runs/s",
        description: "the same U-Net: 50 DDIM steps on 64 samples, no gradients",
        // One iteration is 50 U-Net passes (seconds): a single warm-up run suffices.
        warmup: 1,
        min_iters: 3,
        heavy: false,
        build: ddim50::build,
    },
    WorkloadEntry {
        name: "attention",
        unit: "steps/s",
        description: "U-Net attention block, 64 ch at 14x14, batch 64, forward + backward",
        warmup: 3,
        min_iters: 5,
        heavy: false,
        build: attention::build,
    },
    WorkloadEntry {
        name: "flow-train",
        unit: "steps/s",
        description: "MNIST flow preset (2 scales x 8 Glow steps, 64 ch), batch 64, NLL + Adam",
        warmup: 3,
        min_iters: 5,
        heavy: false,
        build: flow_train::build,
    },
    WorkloadEntry {
        name: "cfg-step",
        unit: "steps/s",
        description:
            "class-conditional U-Net: one guided DDIM step (w = 3) on 64 samples, no gradients",
        warmup: 3,
        min_iters: 5,
        heavy: false,
        build: cfg_step::build,
    },
    WorkloadEntry {
        name: "clip-step",
        unit: "steps/s",
        description: "CLIP MNIST preset (ViT 7x7 patches, width 96 x 4; text width 64 x 3, 49,408-token vocabulary), batch 256 x 16 tokens, InfoNCE + Adam",
        warmup: 2,
        min_iters: 5,
        heavy: false,
        build: clip_step::build,
    },
    WorkloadEntry {
        name: "xattn-unet-train",
        unit: "steps/s",
        description: "cross-attention U-Net ([32,64,64], spatial transformers, 4 heads) on 4x7x14 latents, batch 32 x 8 context tokens of 64, Adam + EMA",
        warmup: 3,
        min_iters: 5,
        heavy: false,
        build: xattn_unet_train::build,
    },
    WorkloadEntry {
        name: "dit-train",
        unit: "steps/s",
        description: "class-conditional DiT-S/4 (width 192, 6 blocks, 3 heads, 49 tokens) on 1x28x28, batch 32, eps-MSE + Adam + EMA",
        warmup: 3,
        min_iters: 5,
        heavy: false,
        build: dit_train::build,
    },
    WorkloadEntry {
        name: "video-dit-train",
        unit: "steps/s",
        description: "video DiT-XS/4, 2-frame tubelets, joint attention over 256 spacetime tokens, on 8x1x32x32 clips, batch 16, eps-MSE + Adam + EMA",
        warmup: 2,
        min_iters: 5,
        heavy: false,
        build: video_dit_train::build,
    },
    WorkloadEntry {
        name: "sd15-unet-step",
        unit: "steps/s",
        description: "Stable Diffusion 1.5's U-Net shapes (860M random parameters): one eval forward on a 1x4x64x64 latent with 77x768 context, batch 1",
        warmup: 1,
        min_iters: 3,
        heavy: true,
        build: sd15_unet_step::build,
    },
    WorkloadEntry {
        name: "sd-vae-decode-512",
        unit: "runs/s",
        description: "Stable Diffusion's VAE decoder (random weights): a 4x64x64 latent to a 512x512 image",
        warmup: 1,
        min_iters: 3,
        heavy: true,
        build: sd_vae_decode::build,
    },
    WorkloadEntry {
        name: "sd15-txt2img",
        unit: "runs/s",
        description: "SD 1.5 shapes: 20 DDIM steps from the SD 1.5 scheduler JSON, guidance 7.5 (batch 2 per step), then the VAE decoder to 512x512; no text encoder",
        // One iteration is minutes on a CPU: no warm-up, one timed run.
        warmup: 0,
        min_iters: 1,
        heavy: true,
        build: sd15_txt2img::build,
    },
];

/// The workload called `name`; an unknown name lists the known ones.
pub fn find_workload(name: &str) -> Result<&'static WorkloadEntry> {
    find_workload_in(&[WORKLOADS], name)
}

/// `all` (every workload but the heavy ones), `sd` (the heavy Stable Diffusion ones), or a
/// comma-separated list of workload names, as entries.
pub fn select_workloads(spec: &str) -> Result<Vec<&'static WorkloadEntry>> {
    select_workloads_in(&[WORKLOADS], spec)
}

/// Like [`find_workload`], over several registries: this crate's [`WORKLOADS`] and those of
/// crates built on it (genlab-labels' `simclr-step`), which `genlab bench` chains.
pub fn find_workload_in(
    registries: &[&'static [WorkloadEntry]],
    name: &str,
) -> Result<&'static WorkloadEntry> {
    let all = || registries.iter().flat_map(|r| r.iter());
    all().find(|w| w.name == name).ok_or_else(|| {
        let known = ["all", "sd"].into_iter().chain(all().map(|w| w.name));
        Error::unknown("workload", name, known)
    })
}

/// Like [`select_workloads`], over several registries (in order: `all` runs the first
/// registry's workloads first).
pub fn select_workloads_in(
    registries: &[&'static [WorkloadEntry]],
    spec: &str,
) -> Result<Vec<&'static WorkloadEntry>> {
    let all = || registries.iter().flat_map(|r| r.iter());
    match spec.trim() {
        "all" => return Ok(all().filter(|w| !w.heavy).collect()),
        "sd" => return Ok(all().filter(|w| w.heavy).collect()),
        _ => {}
    }
    spec.split(',')
        .map(|s| find_workload_in(registries, s.trim()))
        .collect()
}

/// Plain Adam (weight decay 0, like `torch.optim.Adam`'s defaults) over a store's
/// variables.
pub(crate) fn adam(ps: &ParamStore) -> Result<AdamW> {
    AdamW::new(ps.vars(), AdamWConfig::default())
}

/// One workload's result (the JSON schema shared with `scripts/bench/torch_bench.py`).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Record {
    #[serde(rename = "impl")]
    pub implementation: String,
    pub version: String,
    pub workload: String,
    pub threads: usize,
    pub unit: String,
    pub rate: f64,
    pub median_s: f64,
    pub iters: usize,
    pub params: usize,
    pub gflop_per_iter: f64,
    pub gflops: f64,
    pub peak_gflops: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub rss_before_mib: Option<f64>,
}

/// A field of /proc/self/status in MiB (`VmHWM`: peak resident set; `VmRSS`: current);
/// `None` where /proc is missing.
pub fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Builds and times `w` in this process (at `threads` threads, which the caller set up):
/// warm-up, then at least `min_time` seconds and the entry's minimum count of iterations.
/// The peak memory is the process's, so run one workload per process to read it alone.
pub fn time_workload(w: &WorkloadEntry, min_time: f64, threads: usize) -> Result<Record> {
    let mut work = (w.build)()?;
    let rss_before = proc_status_mib("VmRSS");
    for _ in 0..w.warmup {
        (work.iter)()?;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < w.min_iters || start.elapsed().as_secs_f64() < min_time {
        let t = Instant::now();
        (work.iter)()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(Record {
        implementation: "genlab".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        workload: w.name.into(),
        threads,
        unit: w.unit.into(),
        rate: 1.0 / median,
        median_s: median,
        iters: times.len(),
        params: work.params,
        gflop_per_iter: work.flop_per_iter / 1e9,
        gflops: work.flop_per_iter / median / 1e9,
        peak_gflops: None,
        peak_rss_mib: proc_status_mib("VmHWM"),
        rss_before_mib: rss_before,
    })
}

/// This machine's sgemm throughput at the current thread count: the best of a few
/// 2048x2048x2048 products through candle's matmul (the GEMM every kernel here uses).
pub fn measured_peak_gflops() -> Result<f64> {
    const N: usize = 2048;
    let a = Tensor::ones((N, N), candle_core::DType::F32, &Device::Cpu)?;
    let b = a.clone();
    a.matmul(&b)?; // warm-up: thread pools, page faults
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        a.matmul(&b)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (N * N * N) as f64 / best / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_builds_and_runs_one_iteration() {
        for w in WORKLOADS {
            if w.name == "ddim50" || w.name.starts_with("sd") {
                // 50 U-Net passes at batch 64, Stable Diffusion's 860M-parameter shapes:
                // too slow for a unit test
                continue;
            }
            let mut work = (w.build)().unwrap();
            assert!(work.params > 0 && work.flop_per_iter > 0.0, "{}", w.name);
            (work.iter)().unwrap();
        }
        assert!(find_workload("nope").is_err());
        let names: Vec<&str> = select_workloads("mlp, conv")
            .unwrap()
            .iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(names, ["mlp", "conv"]);
        let all = select_workloads("all").unwrap().len();
        assert_eq!(all + select_workloads("sd").unwrap().len(), WORKLOADS.len());
        assert_eq!(select_workloads("sd").unwrap().len(), 3);
        let e = select_workloads("mlp,gpt").err().unwrap().to_string();
        assert!(e.contains("gpt") && e.contains("flow-train"), "{e}");
    }
}
