//! Evaluating a trained CLIP the way the paper does (Radford et al. 2021,
//! arXiv:2103.00020): zero-shot classification with prompt ensembles (Sec. 3.1.4: the
//! class embedding is the normalised mean of its prompts' normalised embeddings),
//! image <-> text retrieval recall@K, and the pre-projection image features a linear probe
//! reads (Sec. 3.2; the probe itself is `genlab_labels::eval`). The CLIP score of
//! text-conditioned samples is [`crate::clip_score`].
//!
//! Images whose size differs from the model's input are fitted to it first ([`fit_images`]).

use candle_core::{Device, Tensor};

use genlab_core::{Error, Result};
use genlab_data::captions::{self, Thresholds};
use genlab_data::tokenize::ClipTokenizer;
use genlab_data::{make_batch, Dataset};
use genlab_models::clip::{cosine_matrix, ensemble, l2_normalize, Clip};

/// Images per forward pass in evaluation.
pub const EVAL_BATCH: usize = 500;

/// Token ids `[B, L]` (L = the longest sequence of the batch, at most `context`) and each
/// sequence's end-of-text position; `truncated` counts texts cut to the context.
pub struct Tokens {
    pub ids: Tensor,
    pub eot: Vec<usize>,
    pub truncated: usize,
}

/// Tokenizes `texts` for a model with `context` positions, padded to the batch's longest.
pub fn tokenize(
    tok: &ClipTokenizer,
    texts: &[String],
    context: usize,
    device: &Device,
) -> Result<Tokens> {
    if texts.is_empty() {
        return Err(Error::InvalidInput("no texts to encode".into()));
    }
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let enc = tok.encode_batch(&refs, context)?;
    let len = enc.iter().map(|e| e.eot_index + 1).max().unwrap_or(2);
    let mut ids = Vec::with_capacity(enc.len() * len);
    for e in &enc {
        ids.extend_from_slice(&e.ids[..len]);
    }
    Ok(Tokens {
        ids: Tensor::from_vec(ids, (enc.len(), len), device)?,
        eot: enc.iter().map(|e| e.eot_index).collect(),
        truncated: enc.iter().filter(|e| e.truncated).count(),
    })
}

/// Text embeddings `[N, E]` (unnormalised) of `texts`, in batches.
pub fn text_embeddings(
    net: &Clip,
    tok: &ClipTokenizer,
    texts: &[String],
    device: &Device,
) -> Result<Tensor> {
    let ctx = net.config().text.context;
    let mut parts = Vec::new();
    for chunk in texts.chunks(EVAL_BATCH) {
        let t = tokenize(tok, chunk, ctx, device)?;
        parts.push(net.encode_text(&t.ids, &t.eot)?.detach());
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// Resizes `x [B, C, h, w]` to the model's `[C, H, W]` when it differs: bicubic to `frame`
/// of the target size, centred on a zero border (MNIST's digits fill the central 20 of 28
/// pixels, so images from another source are framed the same way with `frame = 20/28`).
pub fn fit_images(x: &Tensor, input: [usize; 3], frame: f64) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    if [c, h, w] == input {
        return Ok(x.clone());
    }
    if c != input[0] {
        return Err(Error::InvalidInput(format!(
            "images have {c} channels, the model takes {}",
            input[0]
        )));
    }
    let (th, tw) = (input[1], input[2]);
    let (ih, iw) = (
        ((th as f64 * frame).round() as usize).clamp(1, th),
        ((tw as f64 * frame).round() as usize).clamp(1, tw),
    );
    let inner = genlab_nn::resize::bicubic(x, (ih, iw), genlab_nn::resize::BICUBIC_A_TORCH)?
        .clamp(0f32, 1f32)?;
    let (top, left) = ((th - ih) / 2, (tw - iw) / 2);
    Ok(inner
        .pad_with_zeros(2, top, th - ih - top)?
        .pad_with_zeros(3, left, tw - iw - left)?)
}

/// Normalised image embeddings `[N, E]` and labels of examples `idx` of `data`.
pub fn image_embeddings(
    net: &Clip,
    data: &dyn Dataset,
    idx: &[usize],
    frame: f64,
    device: &Device,
) -> Result<(Tensor, Vec<u32>)> {
    let mut parts = Vec::new();
    let mut labels = Vec::new();
    for chunk in idx.chunks(EVAL_BATCH) {
        let b = make_batch(data, chunk, device)?;
        let x = fit_images(&b.x, net.config().input(), frame)?;
        parts.push(l2_normalize(&net.encode_image(&x)?)?.detach());
        if let Some(l) = b.labels {
            labels.extend(l.to_vec1::<u32>()?);
        }
    }
    Ok((Tensor::cat(&parts, 0)?, labels))
}

/// Pre-projection image features `[B, W]` (the input of the projection to the joint
/// space, what Radford et al.'s linear probes read) of images `x`, fitted to the model's
/// input first.
pub fn image_features(net: &Clip, x: &Tensor, frame: f64) -> Result<Tensor> {
    let x = fit_images(x, net.config().input(), frame)?;
    Ok(net.image_features(&x)?.detach())
}

/// Zero-shot classification result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ZeroShot {
    pub accuracy: f64,
    pub examples: usize,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub templates: Vec<String>,
}

/// Class embeddings `[K, E]` (unit rows) from prompt ensembles: for class `k`, every
/// template with every name of the digit.
pub fn class_embeddings(
    net: &Clip,
    tok: &ClipTokenizer,
    classes: usize,
    templates: &[&str],
    device: &Device,
) -> Result<Tensor> {
    let mut rows = Vec::new();
    for k in 0..classes {
        let prompts = captions::zero_shot_prompts(k as u8, templates);
        rows.push(ensemble(&text_embeddings(net, tok, &prompts, device)?)?);
    }
    Ok(Tensor::stack(&rows, 0)?)
}

/// What the classes of a dataset are called in zero-shot prompts.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassNaming {
    /// Labels 0-9 are digits: each template with the digit's word and numeral.
    Digits,
    /// The two-digit canvases (`mnist-pairs`, label `10 · left + right`): each template
    /// with `{L}`/`{R}`/`{aL}`/`{aR}` placeholders, in the four namings (word or numeral
    /// per side); by default `genlab_data::pairs::PAIR_HELDOUT_TEMPLATES`, never used in
    /// training.
    Pairs,
    /// Classes with names (an image folder's sub-folders, made readable): each template
    /// with `{}` = the name; by default the bare name, which is how such a folder's
    /// training captions read.
    Named(Vec<String>),
}

/// The dataset names under which the two-digit canvases are registered.
const PAIR_DATASETS: [&str; 2] = ["mnist-pairs", "digit-pairs"];

/// How the classes of `data` are named, or why zero-shot cannot apply.
pub fn class_naming(data: &dyn Dataset) -> Result<ClassNaming> {
    let classes = data.num_classes().ok_or_else(|| {
        Error::Data(format!(
            "zero-shot classification needs classes; `{}` has none (a folder: gets classes from \
             sub-folders; a folder with only a captions.jsonl can be measured with retrieval)",
            data.name()
        ))
    })?;
    if let Some(first) = data.class_name(0) {
        let mut names = vec![first];
        for k in 1..classes {
            names.push(data.class_name(k).unwrap_or_else(|| k.to_string()));
        }
        return Ok(ClassNaming::Named(names));
    }
    let base = data.name().split(':').next().unwrap_or_default();
    if PAIR_DATASETS.contains(&base) && classes == genlab_data::pairs::PAIR_CLASSES {
        return Ok(ClassNaming::Pairs);
    }
    if classes > 10 {
        return Err(Error::Data(format!(
            "zero-shot prompts name digits 0-9 (or class sub-folders, or the two-digit \
             canvases); `{}` has {classes} unnamed classes",
            data.name()
        )));
    }
    Ok(ClassNaming::Digits)
}

/// The prompts of each class (`classes` of them) under `naming`, from `templates` (empty:
/// the naming's default).
pub fn class_prompts(
    naming: &ClassNaming,
    classes: usize,
    templates: &[&str],
) -> Result<Vec<Vec<String>>> {
    match naming {
        ClassNaming::Digits => {
            let t = if templates.is_empty() {
                captions::ZERO_SHOT_TEMPLATES
            } else {
                templates
            };
            Ok((0..classes)
                .map(|k| captions::zero_shot_prompts(k as u8, t))
                .collect())
        }
        ClassNaming::Pairs => {
            let t = if templates.is_empty() {
                genlab_data::pairs::PAIR_HELDOUT_TEMPLATES
            } else {
                templates
            };
            (0..classes as u32)
                .map(|k| {
                    let (l, r) = genlab_data::pairs::label_digits(k)?;
                    let mut v = Vec::new();
                    for tpl in t {
                        for w in 0..4 {
                            v.push(genlab_data::pairs::pair_caption(
                                l,
                                r,
                                tpl,
                                (w & 1 == 1, w & 2 == 2),
                            )?);
                        }
                    }
                    v.dedup();
                    Ok(v)
                })
                .collect()
        }
        ClassNaming::Named(names) => {
            let t: &[&str] = if templates.is_empty() {
                &["{}"]
            } else {
                templates
            };
            Ok(names
                .iter()
                .map(|n| t.iter().map(|tpl| tpl.replace("{}", n)).collect())
                .collect())
        }
    }
}

/// Checks that every template has the placeholders `naming` fills.
pub fn check_templates(naming: &ClassNaming, templates: &[&str]) -> Result<()> {
    for t in templates {
        let ok = match naming {
            ClassNaming::Pairs => {
                (t.contains("{L}") || t.contains("{aL}"))
                    && (t.contains("{R}") || t.contains("{aR}"))
            }
            _ => t.matches("{}").count() == 1,
        };
        if !ok {
            let want = match naming {
                ClassNaming::Pairs => "a left digit ({L} or {aL}) and a right digit ({R} or {aR})",
                ClassNaming::Digits => "exactly one `{}` for the digit's name",
                ClassNaming::Named(_) => "exactly one `{}` for the class name",
            };
            return Err(Error::setting(
                "prompts",
                format!("each prompt template needs {want}, got `{t}`"),
            ));
        }
    }
    Ok(())
}

/// Zero-shot accuracy on (up to `limit`) labelled examples of `data`; the classes are
/// named as [`class_naming`] says, with `templates` (empty: that naming's default).
pub fn zero_shot(
    net: &Clip,
    tok: &ClipTokenizer,
    data: &dyn Dataset,
    templates: &[&str],
    limit: Option<usize>,
    frame: f64,
    device: &Device,
) -> Result<ZeroShot> {
    let naming = class_naming(data)?;
    let classes = data.num_classes().unwrap_or(0);
    check_templates(&naming, templates)?;
    let prompts = class_prompts(&naming, classes, templates)?;
    let n = limit.map_or(data.len(), |l| l.min(data.len()));
    let idx: Vec<usize> = (0..n).collect();
    let mut rows = Vec::with_capacity(classes);
    for p in &prompts {
        rows.push(ensemble(&text_embeddings(net, tok, p, device)?)?);
    }
    let cls = Tensor::stack(&rows, 0)?;
    let (img, labels) = image_embeddings(net, data, &idx, frame, device)?;
    let pred = img.matmul(&cls.t()?)?.argmax(1)?.to_vec1::<u32>()?;
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (&t, &p) in labels.iter().zip(&pred) {
        confusion[t as usize][p as usize] += 1;
    }
    let correct: usize = (0..classes).map(|k| confusion[k][k]).sum();
    let used: Vec<String> = match (&naming, templates.is_empty()) {
        (ClassNaming::Digits, true) => captions::ZERO_SHOT_TEMPLATES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        (ClassNaming::Pairs, true) => genlab_data::pairs::PAIR_HELDOUT_TEMPLATES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        (ClassNaming::Named(_), true) => vec!["{}".to_string()],
        _ => templates.iter().map(|s| s.to_string()).collect(),
    };
    Ok(ZeroShot {
        accuracy: correct as f64 / n.max(1) as f64,
        examples: n,
        confusion,
        templates: used,
    })
}

/// Retrieval recall@K in both directions.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Retrieval {
    pub pairs: usize,
    pub ks: Vec<usize>,
    pub image_to_text: Vec<f64>,
    pub text_to_image: Vec<f64>,
    /// Distinct caption texts among the pairs.
    pub distinct_captions: usize,
}

/// Recall@K from a similarity matrix `sim[i][j]` (query `i`, candidate `j`), where query
/// `i`'s candidate `j` is relevant when `relevant(i, j)`: the fraction of queries with a
/// relevant candidate among their `K` most similar.
pub fn recall_at(
    sim: &[Vec<f32>],
    ks: &[usize],
    relevant: impl Fn(usize, usize) -> bool,
) -> Vec<f64> {
    let n = sim.len();
    let mut hits = vec![0usize; ks.len()];
    for (i, row) in sim.iter().enumerate() {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        let first = order
            .iter()
            .position(|&j| relevant(i, j))
            .unwrap_or(usize::MAX);
        for (h, &k) in hits.iter_mut().zip(ks) {
            if first < k {
                *h += 1;
            }
        }
    }
    hits.iter().map(|&h| h as f64 / n.max(1) as f64).collect()
}

/// Image <-> text retrieval over the first `n` examples of `data`, each paired with its
/// caption ([`example_captions`]: the dataset's own, else the attribute caption). Several
/// images share a caption
/// text, so a retrieved candidate counts as correct when its caption text equals the
/// query's (image -> text) or its image's caption does (text -> image).
pub fn retrieval(
    net: &Clip,
    tok: &ClipTokenizer,
    data: &dyn Dataset,
    n: usize,
    thresholds: &Thresholds,
    frame: f64,
    device: &Device,
) -> Result<Retrieval> {
    let n = n.min(data.len());
    if n == 0 {
        return Err(Error::InvalidInput(
            "retrieval needs at least one example".into(),
        ));
    }
    let idx: Vec<usize> = (0..n).collect();
    let texts = example_captions(data, &idx, thresholds)?;
    let (img, _) = image_embeddings(net, data, &idx, frame, device)?;
    let txt = text_embeddings(net, tok, &texts, device)?;
    let sim = cosine_matrix(&img, &txt)?.to_vec2::<f32>()?;
    let simt: Vec<Vec<f32>> = (0..n)
        .map(|j| (0..n).map(|i| sim[i][j]).collect())
        .collect();
    let ks = vec![1, 5, 10];
    let same = |i: usize, j: usize| texts[i] == texts[j];
    let distinct: std::collections::HashSet<&String> = texts.iter().collect();
    Ok(Retrieval {
        pairs: n,
        image_to_text: recall_at(&sim, &ks, same),
        text_to_image: recall_at(&simt, &ks, same),
        ks,
        distinct_captions: distinct.len(),
    })
}

/// The caption each example is paired with in retrieval and the figures: the dataset's own
/// ([`Dataset::caption`]: a folder's `captions.jsonl` or class names, the canonical caption
/// of a two-digit canvas) when it has them, else the attribute caption made from the label.
pub fn example_captions(data: &dyn Dataset, idx: &[usize], t: &Thresholds) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(EVAL_BATCH) {
        let b = make_batch(data, chunk, &Device::Cpu)?;
        if let Some(c) = b.captions {
            out.extend(c);
            continue;
        }
        let labels = b
            .labels
            .ok_or_else(|| {
                Error::Data(format!(
                    "`{}` has neither captions nor labels to make them from",
                    data.name()
                ))
            })?
            .to_vec1::<u32>()?;
        if let Some(&bad) = labels.iter().find(|&&l| l > 9) {
            return Err(Error::Data(format!(
                "`{}` has no captions, and attribute captions name digits 0-9 (label {bad})",
                data.name()
            )));
        }
        out.extend(
            batch_facts(&b.x, &labels, t)?
                .iter()
                .map(captions::attribute_caption),
        );
    }
    Ok(out)
}

/// The side of the images captions are measured on: MNIST's, so that the thresholds (MNIST
/// terciles by default) mean the same on every dataset.
pub const MEASURE_SIDE: usize = 28;

/// The caption facts of every image of `x [B, C, H, W]`: channels averaged, and images of
/// another size fitted into MNIST's frame at 28x28 first ([`fit_images`]).
pub fn batch_facts(x: &Tensor, labels: &[u32], t: &Thresholds) -> Result<Vec<captions::Facts>> {
    let (b, c, _, _) = x.dims4()?;
    if labels.len() != b {
        return Err(Error::InvalidInput(format!(
            "{b} images but {} labels",
            labels.len()
        )));
    }
    let x = fit_images(
        x,
        [c, MEASURE_SIDE, MEASURE_SIDE],
        crate::steps::clip::MNIST_FRAME,
    )?;
    let (h, w) = (MEASURE_SIDE, MEASURE_SIDE);
    // [B, C, H, W] -> [B, H, W] (channel mean) -> host
    let grey = x
        .mean(1)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok((0..b)
        .map(|i| {
            let m = captions::measure(&grey[i * h * w..(i + 1) * h * w], h, w);
            captions::facts(labels[i], &m, t)
        })
        .collect())
}

/// The metrics `genlab eval --ckpt CLIP_RUN --metrics ...` computes on a CLIP checkpoint,
/// with what each reports.
pub const CLIP_METRICS: &[(&str, &str)] = &[
    (
        "zero-shot",
        "zero-shot classification accuracy with prompt ensembles the model never saw in training",
    ),
    (
        "retrieval",
        "image->text and text->image recall@1/5/10 with each image's caption (the dataset's, else its attribute caption)",
    ),
    (
        "clip-score",
        "CLIP score (Hessel et al. 2021) of --fake images against their captions, 100 max(cos, 0); \
         --real D: real images with their own and with shuffled captions",
    ),
    (
        "linear-probe",
        "logistic regression on frozen image features (pre-projection; --probe-features post: \
         the joint-space embedding): fit on the train split, accuracy on the test split",
    ),
    (
        "knn",
        "k-nearest-neighbour accuracy (cosine) of the same features, test split against train",
    ),
];

/// The CLIP metrics that [`evaluate_clip`] computes (the others are computed by the
/// caller: the CLIP score on samples, the probes with `genlab_labels::eval`).
pub const CHECKPOINT_METRICS: &[&str] = &["zero-shot", "retrieval"];

/// True when `name` is one of [`CLIP_METRICS`].
pub fn is_clip_metric(name: &str) -> bool {
    CLIP_METRICS.iter().any(|(m, _)| *m == name)
}

/// Everything `genlab eval` computed on a CLIP checkpoint.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClipReport {
    pub data: String,
    pub zero_shot: Option<ZeroShot>,
    /// The supervised classifier's accuracy on the zero-shot examples, when one was given.
    pub classifier_accuracy: Option<f64>,
    pub retrieval: Option<Retrieval>,
    /// Texts truncated to the model's context (none for the built-in prompts).
    pub warnings: Vec<String>,
}

/// What [`evaluate_clip`] runs on.
#[derive(Clone, Debug, Default)]
pub struct ClipEvalOptions {
    /// Examples: zero-shot over the first `n` (all by default), retrieval over the first `n`
    /// (1,000 by default).
    pub n: Option<usize>,
    /// Zero-shot prompt templates, each with one `{}` for the digit's or class's name (or
    /// `{L}`/`{R}` on the two-digit canvases); empty = the default of the dataset's
    /// [`ClassNaming`] ([`captions::ZERO_SHOT_TEMPLATES`] for digits).
    pub prompts: Vec<String>,
    /// A supervised classifier run to report beside zero-shot, on the same (fitted) images.
    pub classifier: Option<std::path::PathBuf>,
}

/// Runs the named [`CLIP_METRICS`] on `data`.
pub fn evaluate_clip(
    c: &crate::steps::clip::LoadedClip,
    data: &dyn Dataset,
    spec: &str,
    metrics: &[String],
    opts: &ClipEvalOptions,
    device: &Device,
) -> Result<ClipReport> {
    for m in metrics {
        if !CHECKPOINT_METRICS.contains(&m.as_str()) {
            return Err(Error::unknown("CLIP metric", m, CHECKPOINT_METRICS));
        }
    }
    let mut warnings = Vec::new();
    // Empty: the default templates of the dataset's class naming.
    let templates: Vec<&str> = opts.prompts.iter().map(|s| s.as_str()).collect();
    if metrics.iter().any(|m| m == "zero-shot") && !templates.is_empty() {
        let naming = class_naming(data)?;
        check_templates(&naming, &templates)?;
        let ctx = c.net.config().text.context;
        let classes = data.num_classes().unwrap_or(0);
        for (t, prompts) in templates.iter().zip(
            templates
                .iter()
                .map(|t| class_prompts(&naming, classes, &[t]))
                .collect::<Result<Vec<_>>>()?,
        ) {
            for p in prompts.iter().flatten() {
                if c.tok.encode_padded(p, ctx)?.truncated {
                    warnings.push(format!(
                        "the prompt `{t}` is longer than the model's {ctx}-token context: it is \
                         truncated as CLIP does (the end is cut and replaced by the end-of-text \
                         token)"
                    ));
                    break;
                }
            }
        }
    }
    let has = |name: &str| metrics.iter().any(|m| m == name);
    let frame = crate::steps::clip::MNIST_FRAME;
    let zero_shot = if has("zero-shot") {
        Some(zero_shot(
            &c.net, &c.tok, data, &templates, opts.n, frame, device,
        )?)
    } else {
        None
    };
    let classifier_accuracy = match (&opts.classifier, &zero_shot) {
        (Some(p), Some(z)) => Some(classifier_accuracy(p, data, z.examples, frame)?),
        (Some(_), None) => {
            return Err(Error::setting(
                "classifier",
                "goes with the zero-shot metric".to_string(),
            ))
        }
        _ => None,
    };
    let retrieval = if has("retrieval") {
        let n = opts.n.unwrap_or(1000).min(data.len());
        if n > 0 && data.caption(0).is_some() {
            let idx: Vec<usize> = (0..n).collect();
            let ctx = c.net.config().text.context;
            let mut cut = 0;
            for text in example_captions(data, &idx, &c.cfg.captions)? {
                cut += usize::from(c.tok.encode_padded(&text, ctx)?.truncated);
            }
            if cut > 0 {
                warnings.push(format!(
                    "{cut} of the {n} captions are longer than the model's {ctx}-token context: \
                     they are truncated as CLIP does (the end is cut and replaced by the \
                     end-of-text token)"
                ));
            }
        }
        Some(retrieval(
            &c.net,
            &c.tok,
            data,
            n,
            &c.cfg.captions,
            frame,
            device,
        )?)
    } else {
        None
    };
    Ok(ClipReport {
        data: spec.to_string(),
        zero_shot,
        classifier_accuracy,
        retrieval,
        warnings,
    })
}

/// Accuracy of a trained classifier run on the first `n` examples of `data`, fitted to its
/// input as the CLIP evaluation fits them.
pub fn classifier_accuracy(
    run: &std::path::Path,
    data: &dyn Dataset,
    n: usize,
    frame: f64,
) -> Result<f64> {
    let (net, _) = crate::registry::load_classifier(run)?;
    let idx: Vec<usize> = (0..n.min(data.len())).collect();
    let mut correct = 0usize;
    for chunk in idx.chunks(EVAL_BATCH) {
        let b = make_batch(data, chunk, &Device::Cpu)?;
        let x = fit_images(&b.x, net.config().input, frame)?;
        let labels = b
            .labels
            .ok_or_else(|| Error::Data(format!("`{}` has no labels", data.name())))?
            .to_vec1::<u32>()?;
        let pred = net.forward(&x)?.argmax(1)?.to_vec1::<u32>()?;
        correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    }
    Ok(correct as f64 / idx.len().max(1) as f64)
}

/// CLIP's image tower as a feature extractor for the sample metrics (as clean-fid offers
/// CLIP features for FID): the unit-normalised image embedding, and zero-shot class
/// probabilities `softmax(scale · cos(image, class prompt ensemble))` over the ten digits for
/// the Inception and Mode Scores.
pub struct ClipExtractor {
    clip: crate::steps::clip::LoadedClip,
    classes: Tensor,
    label: String,
}

impl ClipExtractor {
    pub fn new(clip: crate::steps::clip::LoadedClip, label: String) -> Result<Self> {
        let classes = class_embeddings(
            &clip.net,
            &clip.tok,
            10,
            captions::ZERO_SHOT_TEMPLATES,
            &Device::Cpu,
        )?;
        Ok(Self {
            clip,
            classes,
            label,
        })
    }
}

impl genlab_metrics::features::FeatureExtractor for ClipExtractor {
    fn id(&self) -> String {
        format!("genlab-clip/image-embedding ({})", self.label)
    }

    fn feature_dim(&self) -> usize {
        self.clip.net.config().embed_dim
    }

    fn num_classes(&self) -> Option<usize> {
        Some(10)
    }

    fn preprocessing(&self) -> String {
        let [c, h, w] = self.clip.net.config().input();
        format!(
            "images of another size are bicubic-resized into the central {:.0}% of a {c}x{h}x{w}              frame (MNIST's framing); embeddings unit-normalised",
            100.0 * crate::steps::clip::MNIST_FRAME
        )
    }

    fn extract(&self, images: &Tensor) -> Result<genlab_metrics::features::Extracted> {
        let x = fit_images(
            images,
            self.clip.net.config().input(),
            crate::steps::clip::MNIST_FRAME,
        )?;
        let n = x.dim(0)?;
        let e = l2_normalize(&self.clip.net.encode_image(&x)?)?.detach();
        // [N, E] @ [E, 10] -> [N, 10] zero-shot logits
        let logits = e
            .matmul(&self.classes.t()?)?
            .broadcast_mul(&self.clip.net.scale()?.detach())?;
        let p: Vec<f32> = genlab_nn::classifier::log_softmax(&logits)?
            .exp()?
            .flatten_all()?
            .to_vec1()?;
        let f: Vec<f32> = e.flatten_all()?.to_vec1()?;
        Ok(genlab_metrics::features::Extracted {
            features: genlab_metrics::FeatureMatrix::from_f32(
                n,
                self.feature_dim(),
                &f,
                "CLIP image embeddings",
            )?,
            probs: Some(genlab_metrics::FeatureMatrix::from_f32(
                n,
                10,
                &p,
                "CLIP zero-shot probabilities",
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_the_first_relevant_rank() {
        // query 0: relevant 2 ranked 2nd; query 1: relevant 1 ranked 1st; query 2: 0 ranked 3rd
        let sim = vec![
            vec![0.9, 0.1, 0.5],
            vec![0.0, 1.0, 0.2],
            vec![0.1, 0.8, 0.7],
        ];
        let rel = |i: usize, j: usize| (i, j) == (0, 2) || (i, j) == (1, 1) || (i, j) == (2, 0);
        let r = recall_at(&sim, &[1, 2, 3], rel);
        assert_eq!(r, vec![1.0 / 3.0, 2.0 / 3.0, 1.0]);
    }

    #[test]
    fn fitting_frames_a_small_image_in_the_centre() {
        let x = Tensor::ones((1, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let y = fit_images(&x, [1, 28, 28], 20.0 / 28.0).unwrap();
        let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v.len(), 28 * 28);
        assert_eq!(v[0], 0.0);
        assert_eq!(v[3 * 28 + 3], 0.0);
        assert!((v[14 * 28 + 14] - 1.0).abs() < 1e-5);
        assert!(fit_images(&x, [3, 28, 28], 1.0).is_err());
    }
}
