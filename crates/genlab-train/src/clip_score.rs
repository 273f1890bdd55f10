//! The CLIP score of text-conditioned samples: Hessel, Holtzman, Forbes, Le Bras and Choi
//! 2021, "CLIPScore: A Reference-free Evaluation Metric for Image Captioning",
//! arXiv:2104.08718, Eq. 1: `CLIP-S(c, v) = w · max(cos(E_c, E_v), 0)` for an image `v`
//! and its caption `c`, averaged over the pairs.
//!
//! The paper takes `w = 2.5` (so that scores spread over [0, 1] with ViT-B/32); the
//! text-to-image literature reports `w = 100` instead, the scale of torchmetrics'
//! `CLIPScore` (`100 · max(cos, 0)`, "CLIP score 31.2"). genlab reports that scale
//! ([`REPORT_W`]) as the score and Hessel et al.'s CLIP-S ([`HESSEL_W`]) beside it; the two
//! differ by the factor 40.
//!
//! The embedder is a genlab CLIP run ([`crate::steps::clip::LoadedClip`]) or a transformers
//! CLIPModel folder ([`crate::hf_clip_eval::HfClipDigits`]). Images of another size than
//! the model's input but the same aspect ratio are fitted to it first (a genlab CLIP: into
//! MNIST's 20-of-28 frame, [`crate::clip_eval::fit_images`]; a CLIPModel: bicubic to its
//! square input); another aspect ratio is refused rather than distorted.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;

use genlab_core::{Error, Result, Rng};
use genlab_data::{make_batch, Dataset};
use genlab_models::clip::l2_normalize;

use crate::clip_eval::{fit_images, text_embeddings, EVAL_BATCH};

/// The weight of the reported score: `100 · max(cos, 0)`, torchmetrics' `CLIPScore`.
pub const REPORT_W: f64 = 100.0;
/// Hessel et al.'s weight `w` of CLIP-S (Eq. 1).
pub const HESSEL_W: f64 = 2.5;

/// The CLIP score of a set of image-caption pairs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClipScore {
    /// Mean of `100 · max(cos, 0)` over the pairs (torchmetrics' scale).
    pub mean: f64,
    /// Standard deviation of the per-pair scores (n - 1 in the denominator; 0 for one pair).
    pub std: f64,
    /// Pairs.
    pub n: usize,
    /// Hessel et al.'s CLIP-S: the mean of `2.5 · max(cos, 0)` (= `mean / 40`).
    pub clip_s: f64,
    /// Mean raw cosine (negative values not clipped).
    pub mean_cosine: f64,
    /// Pairs whose cosine was negative (clipped to 0).
    pub negative: usize,
}

impl ClipScore {
    /// Summarises per-pair cosine similarities.
    pub fn of_cosines(cos: &[f64]) -> Result<Self> {
        if cos.is_empty() {
            return Err(Error::InvalidInput(
                "no image-caption pairs to score".into(),
            ));
        }
        if let Some(c) = cos.iter().find(|c| !c.is_finite()) {
            return Err(Error::Numeric(format!(
                "a cosine similarity is {c} (an all-zero embedding?)"
            )));
        }
        let n = cos.len();
        let s: Vec<f64> = cos.iter().map(|c| REPORT_W * c.max(0.0)).collect();
        let mean = s.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Ok(Self {
            mean,
            std,
            n,
            clip_s: mean * HESSEL_W / REPORT_W,
            mean_cosine: cos.iter().sum::<f64>() / n as f64,
            negative: cos.iter().filter(|c| **c < 0.0).count(),
        })
    }
}

/// The cosine of each pair `(img[i], txt[i])` of two embedding batches `[N, E]`.
pub fn pair_cosines(img: &Tensor, txt: &Tensor) -> Result<Vec<f64>> {
    let (n, e) = img.dims2()?;
    let (m, f) = txt.dims2()?;
    if n != m {
        return Err(Error::InvalidInput(format!("{n} images but {m} captions")));
    }
    if e != f {
        return Err(Error::InvalidInput(format!(
            "image embeddings are {e}-d, text embeddings {f}-d"
        )));
    }
    let (a, b) = (l2_normalize(img)?, l2_normalize(txt)?);
    Ok((a * b)?
        .sum(1)?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect())
}

/// A CLIP that embeds images and texts into one space.
pub trait ClipEmbedder {
    /// The image input `[C, H, W]`.
    fn input(&self) -> [usize; 3];
    /// How images of another size are brought to the input (for the report).
    fn fitting(&self) -> String;
    /// Images `[B, C, H, W]` in [0, 1] at [`ClipEmbedder::input`] -> embeddings `[B, E]`.
    fn embed_images(&self, x: &Tensor) -> Result<Tensor>;
    /// Images of another size (same aspect ratio) brought to the input.
    fn fit(&self, x: &Tensor) -> Result<Tensor>;
    /// Texts -> embeddings `[N, E]`, with the texts cut to the model's context.
    fn embed_texts(&self, texts: &[String]) -> Result<(Tensor, Vec<String>)>;
}

impl ClipEmbedder for crate::steps::clip::LoadedClip {
    fn input(&self) -> [usize; 3] {
        self.net.config().input()
    }
    fn fitting(&self) -> String {
        let [_, h, w] = self.input();
        format!(
            "bicubic-resized into the central {:.0}% of the model's {h}x{w} input (MNIST's \
             framing, as zero-shot evaluation does)",
            100.0 * crate::steps::clip::MNIST_FRAME
        )
    }
    fn embed_images(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.net.encode_image(x)?.detach())
    }
    fn fit(&self, x: &Tensor) -> Result<Tensor> {
        fit_images(x, self.input(), crate::steps::clip::MNIST_FRAME)
    }
    fn embed_texts(&self, texts: &[String]) -> Result<(Tensor, Vec<String>)> {
        let ctx = self.net.config().text.context;
        let mut cut = Vec::new();
        for t in texts {
            if self.tok.encode_padded(t, ctx)?.truncated && !cut.contains(t) {
                cut.push(t.clone());
            }
        }
        Ok((
            text_embeddings(&self.net, &self.tok, texts, &Device::Cpu)?,
            cut,
        ))
    }
}

impl ClipEmbedder for crate::hf_clip_eval::HfClipDigits {
    fn input(&self) -> [usize; 3] {
        self.clip.vision.config().input()
    }
    fn fitting(&self) -> String {
        let [_, h, w] = self.input();
        format!("bicubic-resized to the model's {h}x{w} input")
    }
    fn embed_images(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.embed(x)?.0)
    }
    fn fit(&self, x: &Tensor) -> Result<Tensor> {
        // `embed` resizes (and repeats grey to RGB) itself.
        Ok(x.clone())
    }
    fn embed_texts(&self, texts: &[String]) -> Result<(Tensor, Vec<String>)> {
        let mut parts = Vec::new();
        let mut cut = Vec::new();
        let len = self.tok.model_max_length();
        for chunk in texts.chunks(EVAL_BATCH) {
            let mut ids = Vec::with_capacity(chunk.len() * len);
            for t in chunk {
                if self.tok.truncates(t) && !cut.contains(t) {
                    cut.push(t.clone());
                }
                ids.extend(self.tok.encode_padded(t));
            }
            let ids = Tensor::from_vec(ids, (chunk.len(), len), &Device::Cpu)?;
            parts.push(self.clip.text.text_embeds(&ids)?);
        }
        Ok((Tensor::cat(&parts, 0)?, cut))
    }
}

/// The CLIP score of `images [N, C, H, W]` (in [0, 1]) against `captions` (one each), with
/// notes for the report (resizing, captions cut to the context).
pub fn score_images(
    clip: &dyn ClipEmbedder,
    images: &Tensor,
    captions: &[String],
) -> Result<(ClipScore, Vec<String>)> {
    let (n, c, h, w) = images.dims4()?;
    check_captions(captions, n)?;
    let [mc, mh, mw] = clip.input();
    let mut notes = Vec::new();
    if (h, w) != (mh, mw) {
        if h * mw != w * mh {
            return Err(Error::InvalidInput(format!(
                "the images are {h}x{w} and the CLIP model takes {mh}x{mw}: another aspect \
                 ratio, which resizing would distort; score them with a CLIP trained on \
                 {h}x{w} images"
            )));
        }
        notes.push(format!("images of {h}x{w} were {}", clip.fitting()));
    }
    if c != mc && !(c == 1 && mc == 3) {
        return Err(Error::InvalidInput(format!(
            "the images have {c} channels, the CLIP model takes {mc}"
        )));
    }
    let mut parts = Vec::new();
    for start in (0..n).step_by(EVAL_BATCH) {
        let x = images.narrow(0, start, EVAL_BATCH.min(n - start))?;
        parts.push(clip.embed_images(&clip.fit(&x)?)?);
    }
    let img = Tensor::cat(&parts, 0)?;
    let (txt, cut) = clip.embed_texts(captions)?;
    for t in cut {
        notes.push(format!(
            "the caption \"{t}\" is longer than the text encoder's context: it was cut as CLIP \
             cuts it"
        ));
    }
    Ok((ClipScore::of_cosines(&pair_cosines(&img, &txt)?)?, notes))
}

/// Refuses empty captions and a count that differs from the images'.
pub fn check_captions(captions: &[String], images: usize) -> Result<()> {
    if captions.len() != images {
        return Err(Error::InvalidInput(format!(
            "{images} images but {} captions: give one caption per image, in order",
            captions.len()
        )));
    }
    if let Some(i) = captions.iter().position(|c| c.trim().is_empty()) {
        return Err(Error::InvalidInput(format!(
            "caption {} (of {}) is empty: every image needs a caption",
            i + 1,
            captions.len()
        )));
    }
    Ok(())
}

/// The file of per-sample prompts that `genlab txt2img` writes beside `samples.npy`:
/// `samples.prompts.json` (a JSON array of strings, one per image, in order).
pub fn prompts_path(npy: &Path) -> PathBuf {
    npy.with_extension("prompts.json")
}

/// Where captions of `samples.npy` are found by default: `samples.prompts.json` (written
/// by `genlab txt2img`), else `samples.captions.txt`.
pub fn sibling_captions(npy: &Path) -> Option<PathBuf> {
    [prompts_path(npy), npy.with_extension("captions.txt")]
        .into_iter()
        .find(|p| p.is_file())
}

/// Reads captions: a `.json` file holds an array of strings (or an object whose `prompts`
/// is one); any other file has one caption per line (a final newline is not an empty
/// caption; `\r\n` endings are accepted).
pub fn read_captions(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read captions", path, e))?;
    if path.extension().is_some_and(|e| e == "json") {
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Data(format!("{}: not JSON: {e}", path.display())))?;
        let arr = match &v {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(o) => match o.get("prompts") {
                Some(serde_json::Value::Array(a)) => a,
                _ => {
                    return Err(Error::Data(format!(
                        "{}: expected an array of captions (or an object with a `prompts` \
                         array)",
                        path.display()
                    )))
                }
            },
            _ => {
                return Err(Error::Data(format!(
                    "{}: expected an array of captions",
                    path.display()
                )))
            }
        };
        return arr
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str().map(str::to_string).ok_or_else(|| {
                    Error::Data(format!(
                        "{}: caption {} is not a string: {s}",
                        path.display(),
                        i + 1
                    ))
                })
            })
            .collect();
    }
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let body = body.strip_suffix('\r').unwrap_or(body);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    Ok(body
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect())
}

/// `captions` in a seeded random order: the floor a score is read against (a caption of
/// another image; a few may land on their own image or on one that shares its text).
pub fn shuffled(captions: &[String], seed: u64) -> Vec<String> {
    let mut idx: Vec<usize> = (0..captions.len()).collect();
    Rng::derive(seed, "clip-score/shuffle").shuffle(&mut idx);
    idx.into_iter().map(|i| captions[i].clone()).collect()
}

/// Captions of real examples `idx` of `data` (spec `spec`): a two-digit canvas
/// (`mnist-pairs`) gets one of the training caption templates, drawn per image from `seed`
/// (as `genlab txt2img --prompt-set pairs-test` words its prompts); a dataset with its own
/// captions ([`Dataset::caption`]) gets those; a digit dataset gets its attribute caption
/// ("a medium seven written with thick strokes, leaning right",
/// [`crate::clip_eval::example_captions`] with `thresholds`).
pub fn real_captions(
    data: &dyn Dataset,
    spec: &str,
    idx: &[usize],
    thresholds: &genlab_data::captions::Thresholds,
    seed: u64,
) -> Result<Vec<String>> {
    let name = spec.split(':').next().unwrap_or(spec);
    if name == "mnist-pairs" {
        let mut rng = Rng::derive(seed, "clip-score/pair-captions");
        return idx
            .iter()
            .map(|&i| {
                let label = data.label(i).ok_or_else(|| {
                    Error::Data(format!("`{spec}` example {i} has no label to caption"))
                })?;
                let (l, r) = genlab_data::pairs::label_digits(label)?;
                genlab_data::pairs::random_pair_caption(l, r, &mut rng)
            })
            .collect();
    }
    if let Some(&first) = idx.first() {
        if data.caption(first).is_some() {
            return idx
                .iter()
                .map(|&i| {
                    data.caption(i)
                        .ok_or_else(|| Error::Data(format!("`{spec}` example {i} has no caption")))
                })
                .collect();
        }
    }
    match data.num_classes() {
        Some(k) if k <= 10 => crate::clip_eval::example_captions(data, idx, thresholds),
        _ => Err(Error::Data(format!(
            "`{spec}` has no captions genlab can make: --real takes a labelled digit dataset \
             (mnist:test, digits: attribute captions), mnist-pairs[:test] (pair captions) or \
             a dataset with captions of its own"
        ))),
    }
}

/// The images `[N, C, H, W]` of examples `idx` of `data`, on the CPU.
pub fn images_of(data: &dyn Dataset, idx: &[usize]) -> Result<Tensor> {
    let mut parts = Vec::new();
    for chunk in idx.chunks(EVAL_BATCH) {
        parts.push(make_batch(data, chunk, &Device::Cpu)?.x);
    }
    if parts.is_empty() {
        return Err(Error::InvalidInput(format!(
            "`{}` has no examples to score",
            data.name()
        )));
    }
    Ok(Tensor::cat(&parts, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tolerance of f32 embeddings against the f64 reference.
    const TOL: f64 = 1e-4;

    #[test]
    fn summary_is_torchmetrics_and_hessel_on_the_same_cosines() {
        // cos = 1/sqrt(2), -1, 0.5 -> per-pair 70.71, 0, 50
        let img = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [2.0, 0.0]], &Device::Cpu).unwrap();
        let txt = Tensor::new(
            &[[1f32, 1.0], [0.0, -1.0], [1.0, 3f32.sqrt()]],
            &Device::Cpu,
        )
        .unwrap();
        let s = ClipScore::of_cosines(&pair_cosines(&img, &txt).unwrap()).unwrap();
        let per = [100.0 * 0.5f64.sqrt(), 0.0, 50.0];
        let mean = per.iter().sum::<f64>() / 3.0;
        let std = (per.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((s.mean - mean).abs() < TOL, "{s:?}");
        assert!((s.std - std).abs() < TOL, "{s:?}");
        assert!((s.clip_s - 2.5 * mean / 100.0).abs() < TOL, "{s:?}");
        assert_eq!((s.n, s.negative), (3, 1));
        assert!((s.mean_cosine - (0.5f64.sqrt() - 1.0 + 0.5) / 3.0).abs() < TOL);
        assert!(ClipScore::of_cosines(&[]).is_err());
        assert!(pair_cosines(&img, &txt.narrow(0, 0, 2).unwrap()).is_err());
    }

    #[test]
    fn captions_files_one_per_line_or_json() {
        let dir = std::env::temp_dir().join(format!("genlab-cscore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let txt = dir.join("c.txt");
        std::fs::write(&txt, "a 7\r\nthe digit 3\n").unwrap();
        assert_eq!(read_captions(&txt).unwrap(), vec!["a 7", "the digit 3"]);
        std::fs::write(&txt, "a 7\n\nb\n").unwrap();
        let c = read_captions(&txt).unwrap();
        assert_eq!(c.len(), 3);
        assert!(check_captions(&c, 3)
            .unwrap_err()
            .to_string()
            .contains("caption 2"));
        assert!(check_captions(&c, 2)
            .unwrap_err()
            .to_string()
            .contains("2 images but 3 captions"));
        let js = dir.join("c.prompts.json");
        std::fs::write(&js, r#"["a 7", "a 3"]"#).unwrap();
        assert_eq!(read_captions(&js).unwrap(), vec!["a 7", "a 3"]);
        std::fs::write(&js, r#"{"prompts": ["x"]}"#).unwrap();
        assert_eq!(read_captions(&js).unwrap(), vec!["x"]);
        std::fs::write(&js, r#"[1]"#).unwrap();
        assert!(read_captions(&js).is_err());
        assert!(read_captions(&dir.join("none.txt")).is_err());
        let npy = dir.join("s.npy");
        assert_eq!(prompts_path(&npy), dir.join("s.prompts.json"));
        assert!(sibling_captions(&npy).is_none());
        std::fs::write(dir.join("s.captions.txt"), "a\n").unwrap();
        assert_eq!(sibling_captions(&npy), Some(dir.join("s.captions.txt")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shuffling_is_a_seeded_permutation() {
        let c: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        let s = shuffled(&c, 3);
        assert_eq!(s, shuffled(&c, 3));
        assert_ne!(s, c);
        let mut sorted = s.clone();
        sorted.sort_by_key(|v| v.parse::<u32>().unwrap());
        assert_eq!(sorted, c);
    }

    fn tiny_clip() -> crate::steps::clip::LoadedClip {
        use genlab_models::clip::{Clip, ImageTowerKind};
        let mut cfg = crate::steps::clip::ClipRunConfig::default();
        cfg.model.image_tower = ImageTowerKind::Cnn;
        cfg.model.embed_dim = 8;
        cfg.model.cnn.channels = [4, 8];
        cfg.model.cnn.features = 16;
        cfg.model.cnn.num_classes = 16;
        cfg.model.text.width = 16;
        cfg.model.text.layers = 1;
        cfg.model.text.heads = 2;
        let vm = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&vm, candle_core::DType::F32, &Device::Cpu);
        let net = Clip::new(&cfg.model, vb).unwrap();
        crate::steps::clip::LoadedClip {
            net,
            cfg,
            tok: genlab_data::tokenize::ClipTokenizer::new().unwrap(),
            run: crate::RunConfig {
                model: "clip".into(),
                data: "mnist".into(),
                seed: 0,
                image_size: None,
                channels: None,
                train: Default::default(),
                model_config: serde_json::Value::Null,
            },
            step: 0,
        }
    }

    fn f64s(t: &Tensor) -> Vec<f64> {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.into_iter().map(f64::from).collect()
    }

    /// The score of each pair computed one image and one caption at a time, in f64.
    fn brute_force(c: &crate::steps::clip::LoadedClip, x: &Tensor, texts: &[String]) -> Vec<f64> {
        let n = x.dim(0).unwrap();
        (0..n)
            .map(|i| {
                let xi = x.narrow(0, i, 1).unwrap();
                let e = f64s(&c.net.encode_image(&xi).unwrap());
                let ctx = c.net.config().text.context;
                let enc = c.tok.encode_padded(&texts[i], ctx).unwrap();
                let ids = Tensor::from_vec(
                    enc.ids[..enc.eot_index + 1].to_vec(),
                    (1, enc.eot_index + 1),
                    &Device::Cpu,
                )
                .unwrap();
                let t = f64s(&c.net.encode_text(&ids, &[enc.eot_index]).unwrap());
                let dot: f64 = e.iter().zip(&t).map(|(a, b)| a * b).sum();
                let na = e.iter().map(|a| a * a).sum::<f64>().sqrt();
                let nb = t.iter().map(|a| a * a).sum::<f64>().sqrt();
                100.0 * (dot / (na * nb)).max(0.0)
            })
            .collect()
    }

    #[test]
    fn score_of_a_tiny_clip_equals_a_pair_by_pair_f64_computation() {
        let c = tiny_clip();
        let x = Rng::new(5)
            .uniform_tensor(0.0, 1.0, &[7, 1, 28, 28], &Device::Cpu)
            .unwrap();
        let texts: Vec<String> = [
            "a handwritten seven",
            "the digit 3 written with thick strokes, leaning right",
            "0",
            "a small one",
            "an eight",
            "a nine, leaning left",
            "the number 4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (s, notes) = score_images(&c, &x, &texts).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let per = brute_force(&c, &x, &texts);
        let mean = per.iter().sum::<f64>() / per.len() as f64;
        let std =
            (per.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (per.len() - 1) as f64).sqrt();
        assert!((s.mean - mean).abs() < 100.0 * TOL, "{} vs {mean}", s.mean);
        assert!((s.std - std).abs() < 100.0 * TOL, "{} vs {std}", s.std);
        assert_eq!(s.n, 7);
        // Another size, same aspect ratio: fitted into the frame first, with a note.
        let small = Rng::new(6)
            .uniform_tensor(0.0, 1.0, &[3, 1, 14, 14], &Device::Cpu)
            .unwrap();
        let (s, notes) = score_images(&c, &small, &texts[..3]).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        let fitted = fit_images(&small, [1, 28, 28], crate::steps::clip::MNIST_FRAME).unwrap();
        let per = brute_force(&c, &fitted, &texts[..3]);
        assert!((s.mean - per.iter().sum::<f64>() / 3.0).abs() < 100.0 * TOL);
        // Another aspect ratio, a count mismatch, an empty caption: one error each.
        let wide = Tensor::zeros((2, 1, 28, 56), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = score_images(&c, &wide, &texts[..2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("aspect ratio"), "{e}");
        let e = score_images(&c, &x, &texts[..6]).unwrap_err().to_string();
        assert!(e.contains("7 images but 6 captions"), "{e}");
        let mut blank = texts.clone();
        blank[4] = " ".into();
        let e = score_images(&c, &x, &blank).unwrap_err().to_string();
        assert!(e.contains("caption 5 (of 7) is empty"), "{e}");
    }
}
