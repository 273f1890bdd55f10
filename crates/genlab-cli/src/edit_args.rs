//! The flags `genlab img2img` and `genlab inpaint` share: the checkpoint, the images, the
//! condition, the output.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use genlab_core::Condition;
use genlab_models::SampleRequest;
use genlab_train::edit::{edit_source, EditSource};
use genlab_train::LoadedModel;

#[derive(Args)]
pub struct EditArgs {
    /// Run directory of a diffusion model (`genlab train --model ddpm`).
    #[arg(long)]
    pub ckpt: PathBuf,
    /// An image to edit (PNG/JPEG; resized and centre-cropped to the model's size; RGBA is
    /// composited on white). Repeatable.
    #[arg(long = "image", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// Edit the first --n examples of this dataset instead (e.g. mnist:test); their labels
    /// let --classifier check the results.
    #[arg(long, value_name = "SPEC")]
    pub from: Option<String>,
    /// Examples taken from --from.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    /// Class to steer towards (class-conditional models): a number, or `true` for each
    /// example's own label from --from.
    #[arg(long, value_name = "K|true")]
    pub class: Option<String>,
    /// Classifier-free guidance scale towards --class (0 unconditional, 1 conditional).
    #[arg(long, value_name = "W")]
    pub guidance: Option<f64>,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per network batch.
    #[arg(long, default_value_t = 250)]
    pub batch_size: usize,
    /// A classifier run (`genlab train --model classifier`): report how many results it
    /// assigns to their examples' labels (with --from a labelled dataset).
    #[arg(long, value_name = "RUN")]
    pub classifier: Option<String>,
    /// Output: a .png picture (columns side by side, one row per image) or a .npy of the
    /// results (N x C x H x W in [0, 1]); a .json beside it records the settings.
    #[arg(long)]
    pub out: PathBuf,
}

impl EditArgs {
    /// Loads the model (EMA weights) and the images it edits.
    pub fn load(&self, device: &candle_core::Device) -> anyhow::Result<(LoadedModel, EditSource)> {
        genlab_train::outputs::out_kind(&self.out)?;
        genlab_train::outputs::check_writable(&self.out)?;
        let loaded = genlab_train::load_model(&self.ckpt, true, device)
            .with_context(|| format!("loading {}", self.ckpt.display()))?;
        if loaded.model.as_editor().is_none() {
            bail!(
                "{} is a `{}` run, which cannot edit images (diffusion models can)",
                self.ckpt.display(),
                loaded.run.model
            );
        }
        let src = edit_source(
            &self.images,
            self.from.as_deref(),
            self.n,
            loaded.model.data_space(),
            self.seed,
        )?;
        Ok((loaded, src))
    }

    /// The request carrying the condition and guidance for `src`'s images.
    pub fn request(&self, src: &EditSource, classes: usize) -> anyhow::Result<SampleRequest> {
        let n = src.images.dim(0)?;
        let labels: Option<Vec<u32>> = match self.class.as_deref() {
            None => None,
            Some("true") => Some(
                src.labels
                    .clone()
                    .context("--class true needs labelled images (--from a labelled dataset)")?,
            ),
            Some(k) => match k.parse::<u32>() {
                Ok(k) if (k as usize) < classes => Some(vec![k; n]),
                _ if classes == 0 => {
                    bail!("--class needs a class-conditional model; this one was trained without labels")
                }
                _ => bail!(
                    "--class {k}: expected a class number 0..{} or true",
                    classes - 1
                ),
            },
        };
        let condition = match labels {
            Some(l) => Condition::class(candle_core::Tensor::from_vec(
                l,
                n,
                &candle_core::Device::Cpu,
            )?),
            None => Condition::none(),
        };
        Ok(SampleRequest {
            n,
            condition,
            guidance: self.guidance,
            batch_size: self.batch_size,
            ..Default::default()
        })
    }

    /// Writes `columns` side by side (.png) or `results` (.npy), the sidecar, and the
    /// classifier's accuracy when asked; returns a report line.
    pub fn write(
        &self,
        src: &EditSource,
        columns: &[&candle_core::Tensor],
        results: &candle_core::Tensor,
        mut sidecar: serde_json::Value,
    ) -> anyhow::Result<String> {
        match genlab_train::outputs::out_kind(&self.out)? {
            genlab_train::outputs::OutKind::Png => {
                genlab_train::edit::save_columns(columns, &self.out)?
            }
            genlab_train::outputs::OutKind::Npy | genlab_train::outputs::OutKind::Gif => {
                genlab_train::outputs::save_samples(results, true, &self.out, None)?
            }
        }
        sidecar["source"] = src.description.clone().into();
        sidecar["checkpoint"] = self.ckpt.display().to_string().into();
        sidecar["seed"] = self.seed.into();
        sidecar["class"] = serde_json::json!(self.class);
        sidecar["guidance"] = serde_json::json!(self.guidance);
        let mut report = format!("wrote {}", self.out.display());
        if let Some(clf) = &self.classifier {
            let labels = src
                .labels
                .as_ref()
                .context("--classifier needs labelled images (--from a labelled dataset)")?;
            let acc = genlab_train::edit::classifier_accuracy(clf, results, labels)?;
            sidecar["classifier"] = clf.clone().into();
            sidecar["classifier_accuracy"] = acc.into();
            report.push_str(&format!(
                "\nthe classifier assigns {:.1}% of the {} results to their true class",
                100.0 * acc,
                labels.len()
            ));
        }
        genlab_core::io::write_json(&self.out.with_extension("json"), &sidecar)?;
        Ok(report)
    }
}
