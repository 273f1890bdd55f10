//! Progress bars (indicatif) for training, sampling and downloads, and Ctrl-C handling.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use indicatif::{ProgressBar, ProgressStyle};

/// A flag set by Ctrl-C. The first Ctrl-C asks the trainer to save and stop; a second one
/// exits at once.
pub fn stop_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let _ = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting without saving");
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: saving a checkpoint, then stopping (Ctrl-C again to quit now)");
        });
        flag
    })
    .clone()
}

/// Draws samples from `model` with a progress bar over network evaluations (used by
/// `genlab sample` and by `genlab eval` on checkpoint sources).
pub fn sample_with_bar(
    model: &dyn genlab_models::Sample,
    req: &genlab_models::SampleRequest,
    rng: &mut genlab_core::Rng,
) -> genlab_core::Result<genlab_models::SampleResult> {
    let pb = bar(
        0,
        "sample [{bar:30}] {pos}/{len} network evaluations, ETA {eta}",
    );
    let out = model.sample(req, rng, &mut |done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    });
    pb.finish_and_clear();
    out
}

pub fn bar(total: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

/// Training progress: step, loss, steps/s, ETA.
pub struct TrainBar {
    pub pb: ProgressBar,
    quiet: bool,
}

impl TrainBar {
    pub fn new(quiet: bool) -> Self {
        let pb = if quiet {
            ProgressBar::hidden()
        } else {
            bar(0, "{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
        };
        Self { pb, quiet }
    }
}

impl genlab_train::Observer for TrainBar {
    fn start(&mut self, from: u64, to: u64, num_params: usize) {
        self.pb.set_length(to);
        self.pb.set_position(from);
        self.pb.set_prefix("train");
        if !self.quiet {
            self.pb
                .println(format!("{num_params} parameters, steps {from} -> {to}"));
        }
    }
    fn log(&mut self, _step: u64, metrics: &[(String, f64)], sps: f64) {
        let loss = metrics.first().map(|m| m.1).unwrap_or(f64::NAN);
        self.pb
            .set_message(format!("loss {loss:.4} {sps:.1} steps/s"));
    }
    fn tick(&mut self, step: u64) {
        self.pb.set_position(step);
    }
    fn checkpoint(&mut self, step: u64, path: &Path) {
        self.pb
            .set_message(format!("saved step {step} to {}", path.display()));
    }
}

/// Download progress for `genlab data fetch`.
pub struct FetchBar {
    pb: Option<ProgressBar>,
}

impl FetchBar {
    pub fn new() -> Self {
        Self { pb: None }
    }
}

impl genlab_data::Progress for FetchBar {
    fn start(&mut self, what: &str, total: Option<u64>) {
        let pb = match total {
            Some(n) => bar(
                n,
                "{prefix:>28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ),
            None => {
                let p = ProgressBar::new_spinner();
                p.set_style(
                    ProgressStyle::with_template("{prefix:>28} {spinner} {bytes}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                p
            }
        };
        pb.set_prefix(what.to_string());
        self.pb = Some(pb);
    }
    fn advance(&mut self, bytes: u64) {
        if let Some(pb) = &self.pb {
            pb.inc(bytes);
        }
    }
    fn finish(&mut self, what: &str) {
        if let Some(pb) = self.pb.take() {
            pb.finish_and_clear();
        }
        eprintln!("  {what}: ok");
    }
    fn note(&mut self, msg: &str) {
        match &self.pb {
            Some(pb) => pb.println(format!("  {msg}")),
            None => eprintln!("  {msg}"),
        }
    }
}
