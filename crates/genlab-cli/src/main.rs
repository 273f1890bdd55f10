//! `genlab`: train, sample and inspect generative models from the command line.
//!
//! This binary parses arguments, dispatches to the library crates and reports; it holds no
//! algorithm. Errors from the libraries reach the user as one message and a non-zero exit.

mod bench;
mod cmd_active;
mod cmd_cl;
mod cmd_clip_eval;
mod cmd_compare;
mod cmd_da;
mod cmd_data;
mod cmd_distill;
mod cmd_embed_text;
mod cmd_eval;
mod cmd_fewshot;
mod cmd_img2img;
mod cmd_inpaint;
mod cmd_list;
mod cmd_nll;
mod cmd_recon_eval;
mod cmd_reconstruct;
mod cmd_report;
mod cmd_rl;
mod cmd_sample;
mod cmd_semi;
mod cmd_serve;
mod cmd_ssl;
mod cmd_train;
mod cmd_transfer;
mod cmd_translate;
mod cmd_txt2img;
mod cmd_video_eval;
mod demo;
mod device;
mod edit_args;
mod progress;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "genlab",
    version,
    about = "Train, sample and evaluate generative models (diffusion first) on the CPU \
             (or an NVIDIA GPU: --device cuda)",
    long_about = "genlab trains, samples and evaluates generative models.\n\n\
        Quick start:\n  genlab demo --out demo-out          # trains two small DDPMs, writes demo-out/index.html\n  \
        genlab train --model ddpm --data eight-gaussians --steps 3000 --out runs/8g\n  \
        genlab sample --ckpt runs/8g --n 2000 --sampler ddim --steps 50 --out s.png\n  \
        genlab list                         # models, samplers and datasets"
)]
struct Cli {
    /// CPU threads for tensor work. Default 1 (or $RAYON_NUM_THREADS). On a 2-core machine
    /// a second thread trains and samples the image models 1.0-1.5x faster (run to run)
    /// but slows small 2-D MLPs (docs/performance.md); try more on bigger machines.
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Where models train and sample: cpu, cuda or cuda:N (an NVIDIA GPU; needs a genlab
    /// built with `--features cuda`, see docs/cuda.md). Data, metrics and pictures stay on
    /// the CPU.
    #[arg(long, global = true, value_name = "DEVICE", default_value = "cpu")]
    device: device::DeviceSpec,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Train a model on a dataset; checkpoints, a JSONL log and preview pictures go to --out.
    Train(cmd_train::TrainArgs),
    /// Draw samples from a trained checkpoint into a .npy array or a .png picture.
    Sample(cmd_sample::SampleArgs),
    /// Sample a diffusion checkpoint with several samplers at several step counts from the
    /// same noise, side by side (one picture each and an index.html table with their NFE).
    Compare(cmd_compare::CompareArgs),
    /// Progressive distillation (Salimans & Ho 2022): halve a diffusion model's sampling
    /// steps round by round (e.g. 256 -> 4) by teaching a student two teacher DDIM steps per step.
    Distill(cmd_distill::DistillArgs),
    /// Fill the masked part of images with a diffusion model (replacement or RePaint); writes
    /// original | mask | input | result side by side.
    Inpaint(cmd_inpaint::InpaintArgs),
    /// Text-to-image with a text-conditioned latent diffusion run: prompts (and a negative
    /// prompt), guidance scales, any sampler; or a two-digit prompt set scored by a classifier.
    Txt2img(cmd_txt2img::Txt2ImgArgs),
    /// SDEdit: noise images part of the way (--strength) and denoise them with any sampler;
    /// writes the originals beside the results (one column per strength).
    Img2img(cmd_img2img::Img2ImgArgs),
    /// Generate images from image maps with an image-conditioned diffusion model (`train
    /// --image-condition`): super-resolution from a low-res copy, a digit from its edges;
    /// writes original | map | result(s) and the PSNR against the originals and bicubic.
    #[command(alias = "superres")]
    Translate(cmd_translate::TranslateArgs),
    /// Reconstruct images with a trained autoencoder (`train --model autoencoder`) or the
    /// pretrained TAEF2 (`--autoencoder taef2`): writes the reconstructions (.npy, .png or a
    /// folder with a before/after grid) and prints their PSNR and SSIM.
    Reconstruct(cmd_reconstruct::ReconstructArgs),
    /// List what genlab knows: models (with what they can do), samplers, datasets, metrics,
    /// feature extractors, benchmark workloads, fetchable data (--json: machine-readable).
    List(cmd_list::ListArgs),
    /// Compare generated samples with real ones: FID, KID, MMD, IS, Mode Score,
    /// Wasserstein, 1-NN.
    Eval(cmd_eval::EvalArgs),
    /// Video metrics of generated clips (Moving MNIST): digit identity per frame, motion
    /// error against a billiard fit, FVD-style Frechet distance; beside real and
    /// frame-shuffled real clips.
    VideoEval(cmd_video_eval::VideoEvalArgs),
    /// Fetch and verify datasets.
    Data(cmd_data::DataArgs),
    /// Embed texts with a pretrained frozen text encoder (minilm after `genlab data fetch
    /// minilm`): prints them, or writes an [N, D] .npy with --out.
    EmbedText(cmd_embed_text::EmbedTextArgs),
    /// Reinforcement learning: train, evaluate and roll out agents on Gymnasium-exact
    /// environments (`genlab rl list`).
    Rl(cmd_rl::RlArgs),
    /// Few-shot and meta-learning: meta-train on episodes, evaluate with 95% intervals.
    Fewshot(cmd_fewshot::FewshotArgs),
    /// Continual learning: split/permuted MNIST in the three scenarios, methods from EWC to
    /// generative replay, the accuracy matrix and its measures (`genlab cl list`).
    Cl(cmd_cl::ClArgs),
    /// Active learning: acquire labels round by round (BALD, core-set, ...) and plot test
    /// accuracy against labels (`genlab active list`).
    Active(cmd_active::ActiveArgs),
    /// Semi-supervised learning: self-training, co-training, FixMatch (`genlab semi list`).
    Semi(cmd_semi::SemiArgs),
    /// Self-supervised learning: SimCLR, MoCo v2, BYOL, rotation, denoising and masked
    /// autoencoders; linear-probe and k-NN evaluation.
    Ssl(cmd_ssl::SslArgs),
    /// Transfer learning: a trained representation (ssl encoder, classifier, VAE) on other
    /// data with few labels: linear probe, fine-tuning, from scratch, over label counts and
    /// seeds (`genlab transfer list`).
    Transfer(cmd_transfer::TransferArgs),
    /// Unsupervised domain adaptation, e.g. MNIST -> the upsampled 8x8 digits: DANN, MMD,
    /// source-only and the target-trained upper bound (`genlab da list`).
    #[command(alias = "domain-adapt")]
    Da(cmd_da::DaArgs),
    /// Time fixed training and sampling workloads (compare with PyTorch:
    /// scripts/bench/compare.py).
    #[command(
        long_about = "Time fixed workloads (the same ones scripts/bench/torch_bench.py builds in \
        PyTorch): training steps of an MLP, a small conv net and the MNIST DDPM U-Net, a \
        50-step DDIM run, the U-Net's attention block and a training step of the MNIST \
        flow. Prints the median iteration's rate, the GFLOP/s it achieves (matrix products \
        counted from the layer shapes) next to this machine's measured sgemm peak at the \
        same thread count, and each workload's peak resident memory (every workload runs \
        in its own process).\n\n\
        Compare with PyTorch: .venv/bin/python scripts/bench/compare.py --threads 1,2\n\
        Thread count: the global --threads (default 1)."
    )]
    Bench(bench::BenchArgs),
    /// The main job on embedded data, no network: trains DDPM on a 2-D set and on the 8x8
    /// digits, samples them and writes pictures and an HTML page (a few minutes on 2 cores).
    Demo(demo::DemoArgs),
    /// A local web UI over a runs directory: runs, live training curves, a sampling
    /// playground, sampler comparison and jobs (http://127.0.0.1:8000/ by default).
    Serve(cmd_serve::ServeArgs),
    /// One self-contained HTML page (pictures inlined) about a set of runs, to share.
    Report(cmd_report::ReportArgs),
}

/// Keeps freed memory in the process heap for the next tensor instead of handing it back
/// to the kernel. Every op allocates its output, and with glibc's defaults the large ones
/// are fresh `mmap`s (or heap tops trimmed by `brk`), so each step page-faulted and
/// zero-filled its activations again: a fifth of a training step's time in the kernel
/// (measured with `perf` on `genlab bench`). 32 MiB is glibc's largest mmap threshold on
/// 64-bit; peak memory is unchanged (it is set by the largest live set, which stays).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any other thread
    // exists or any allocation-heavy work has run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() {
    tune_allocator();
    let cli = Cli::parse();
    let env_threads = std::env::var("RAYON_NUM_THREADS").ok();
    let threads = match (cli.threads, env_threads) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None, // the user's environment decides
        (None, None) => Some(1),
    };
    if let Some(n) = threads {
        if n == 0 {
            eprintln!("error: --threads must be at least 1, got 0");
            std::process::exit(1);
        }
        // Read once by candle (and its matrix-multiply crate) when its pools start, which is
        // after this point: no tensor work has run yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
    }
    // candle's elementwise pool spins 25,000 times before a worker parks, and its caller
    // spins until every worker is done: on a machine with other work (or with rayon's
    // workers, which run our kernels, on the same cores) the spinning takes the cores the
    // work needs (clip-step at 2 threads under load: 1.5-1.8 steps/s at 25,000, 2.0-2.3 at
    // 200; docs/performance.md). The user's own setting wins.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "200");
    }
    let dev = cli.device;
    let result = (|| -> anyhow::Result<()> {
        // A device this build cannot use is an error whatever the command.
        dev.check_supported()?;
        match cli.command {
            Command::Train(a) => cmd_train::run(a, &dev.open()?),
            Command::Sample(a) => cmd_sample::run(a, &dev.open()?),
            Command::Eval(a) => cmd_eval::run(a, &dev.open()?),
            Command::Compare(a) => cmd_compare::run(a, &dev.open()?),
            Command::Distill(a) => cmd_distill::run(a, &dev.open()?),
            Command::Inpaint(a) => cmd_inpaint::run(a, &dev.open()?),
            Command::Img2img(a) => cmd_img2img::run(a, &dev.open()?),
            Command::Txt2img(a) => cmd_txt2img::run(a, &dev.open()?),
            Command::Translate(a) => cmd_translate::run(a, &dev.open()?),
            Command::Reconstruct(a) => cmd_reconstruct::run(a, &dev.open()?),
            Command::List(a) => cmd_list::run(a),
            Command::Data(a) => cmd_data::run(a),
            Command::VideoEval(a) => cmd_video_eval::run(a),
            Command::EmbedText(a) => cmd_embed_text::run(a, &dev.open()?),
            Command::Rl(a) => cmd_rl::run(a),
            Command::Fewshot(a) => cmd_fewshot::run(a, &dev.open()?),
            Command::Cl(a) => cmd_cl::run(a),
            Command::Active(a) => cmd_active::run(a, &dev.open()?),
            Command::Semi(a) => cmd_semi::run(a, &dev.open()?),
            Command::Ssl(a) => cmd_ssl::run(a, &dev.open()?),
            Command::Da(a) => cmd_da::run(a, &dev.open()?),
            Command::Transfer(a) => cmd_transfer::run(a, &dev.open()?),
            Command::Demo(a) => demo::run(a, &dev.open()?),
            Command::Serve(a) => cmd_serve::run(a, &dev.open()?),
            Command::Report(a) => cmd_report::run(a),
            Command::Bench(a) => {
                if !dev.is_cpu() {
                    anyhow::bail!(
                        "`genlab bench` times the CPU workloads only; drop --device {dev}"
                    );
                }
                bench::run(a)
            }
        }
    })();
    if let Err(e) = result {
        eprintln!("error: {}", render_error(&e));
        std::process::exit(1);
    }
}

/// A genlab-serve error as the binary reports it: a library error stays one (so a bad
/// setting is named by its flag).
fn serve_error(e: genlab_serve::ServeError) -> anyhow::Error {
    match e {
        genlab_serve::ServeError::Genlab(g) => g.into(),
        other => other.into(),
    }
}

/// The command-line spelling of a library setting: `steps` -> `--steps`, `image_size` ->
/// `--image-size`, a config key `train.lr` -> `--set train.lr`.
fn flag_for(setting: &str) -> String {
    if setting.contains('.') {
        format!("--set {setting}")
    } else {
        format!("--{}", setting.replace('_', "-"))
    }
}

/// The error chain as one line (`context: cause: cause`), with the settings the libraries
/// name spelled as the flags that set them.
fn render_error(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| match c.downcast_ref::<genlab_core::Error>() {
            Some(genlab_core::Error::Setting { setting, problem }) => {
                format!("{} {problem}", flag_for(setting))
            }
            _ => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_settings_are_reported_as_their_flags() {
        let e = anyhow::Error::from(genlab_core::Error::setting(
            "image_size",
            "must be at least 1, got 0",
        ))
        .context("cannot start");
        assert_eq!(
            render_error(&e),
            "cannot start: --image-size must be at least 1, got 0"
        );
        let e = anyhow::Error::from(genlab_core::Error::setting(
            "ddpm.timesteps",
            "cannot change",
        ));
        assert_eq!(render_error(&e), "--set ddpm.timesteps cannot change");
    }
}
