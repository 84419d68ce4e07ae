//! `trainer eval`: how good a model file is.
//!
//! - `--nll` ([`nll`]): the variational bound on the negative log-likelihood of MNIST test
//!   images in bits per dimension, term by term (L_0, Σ L_{t−1}, L_T), with the network in tch
//!   on the trainer's device.
//! - `--fid` ([`quality`]): samples drawn through `ddpm_core::host::HostModel` with any sampler,
//!   judged by the project's MNIST classifier: a Fréchet distance of its features to the test
//!   split's, an Inception-Score analog, the confident share and the label histogram; and the
//!   same figures for as many real training images (the floor at that sample count).
//!
//! [`classifier`] is that judge; [`compare`] (`trainer compare-int8`) holds an int8 export's
//! samples against its f32 model's.
//!
//! The classifier figures compare only with each other (other samplers, models, sample counts
//! of this project), not with published Inception-based FIDs.

pub mod classifier;
pub mod compare;
pub mod nll;
pub mod quality;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use ddpm_core::diffusion::{GuidanceInterval, SamplerConfig};
use ddpm_core::file::ModelFile;
use ddpm_core::{ModelConfig, ScheduleConfig};
use tch::{nn, Device, Tensor};

use crate::data::idx::{Mnist, Split};
use classifier::{CONFIDENT_PROB, SIDE};
use ddpm_torch::model;

/// What `trainer eval` computes.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The f32 model file.
    pub model: PathBuf,
    /// Compute the variational bound.
    pub nll: bool,
    /// Compute the classifier-based sample quality.
    pub fid: bool,
    /// MNIST directory (test split for the bound and the reference features, train split for
    /// the real-image floor and a missing classifier).
    pub data: PathBuf,
    /// Device of the network (bound) and the classifier.
    pub device: Device,
    /// Show progress bars (only when stderr is a terminal).
    pub progress: bool,
    /// Write the figures as JSON here.
    pub json: Option<PathBuf>,
    /// Options of the bound.
    pub bound: nll::BoundOptions,
    /// Bound: evaluate the first N test images only.
    pub limit: Option<usize>,
    /// Bound: images per batch (`--batch-size`).
    pub batch: usize,
    /// Bound: write the per-step curve (CSV) here.
    pub curve: Option<PathBuf>,
    /// Quality: the sampler.
    pub sampler: SamplerConfig,
    /// Quality: a weaker model file guiding the model's outputs, with weight w.
    pub guide: Option<(PathBuf, f32)>,
    /// Quality: image `i` is drawn from noise seed `seed + i`.
    pub seed: u64,
    /// Quality: number of samples (and of real training images for the floor; `--n`).
    pub samples: usize,
    /// Quality: sampling threads (results do not depend on it).
    pub workers: usize,
    /// Quality: the classifier file (trained and cached there when missing).
    pub classifier: PathBuf,
    /// Quality of a class-conditional model: the classes drawn and the classifier-free
    /// guidance weight.
    pub classes: Option<(ClassChoice, f32)>,
    /// Quality: the steps the guidance (the guide's or classifier-free) applies at.
    pub guidance_interval: GuidanceInterval,
}

/// How the samples of one class are judged (`eval --fid --class`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassRow {
    /// The class asked for.
    pub class: u32,
    /// Samples of it.
    pub n: usize,
    /// Share the classifier labels as this class.
    pub labelled: f64,
    /// Share whose top class probability is above [`CONFIDENT_PROB`].
    pub confident: f64,
}

/// Per class asked for, the share of its samples the classifier gives that label and the
/// confident share, from the classifier's `predicted` labels and `top` probabilities of images
/// drawn for `asked` (one class each).
pub fn class_rows(asked: &[u32], predicted: &[u8], top: &[f32]) -> Vec<ClassRow> {
    let mut classes: Vec<u32> = asked.to_vec();
    classes.sort_unstable();
    classes.dedup();
    classes
        .into_iter()
        .map(|k| {
            let of_k: Vec<usize> = (0..asked.len()).filter(|&i| asked[i] == k).collect();
            let n = of_k.len();
            let share = |f: &dyn Fn(usize) -> bool| {
                of_k.iter().filter(|&&i| f(i)).count() as f64 / n as f64
            };
            ClassRow {
                class: k,
                n,
                labelled: share(&|i| u32::from(predicted[i]) == k),
                confident: share(&|i| top[i] > CONFIDENT_PROB),
            }
        })
        .collect()
}

/// The figures of `--fid`.
#[derive(Debug, Clone)]
pub struct QualityReport {
    /// Test accuracy of the classifier, measured now.
    pub classifier_accuracy: f64,
    /// Test images the accuracy and the reference features come from.
    pub test_images: usize,
    /// The samples' figures.
    pub generated: quality::SetFigures,
    /// The same figures for as many real training images.
    pub real: quality::SetFigures,
    /// Wall time of drawing the samples, seconds.
    pub sampling_seconds: f64,
    /// Threads that drew them.
    pub workers: usize,
    /// A class-conditional model's samples, per class asked for.
    pub per_class: Vec<ClassRow>,
}

/// The network of a model file in tch, on a device, as ε_θ(x, t/T).
pub struct TorchNet {
    _vs: nn::VarStore,
    net: model::Net,
    /// The schedule the model was trained with.
    pub schedule: ScheduleConfig,
    /// Image (channels, height, width).
    pub chw: (usize, usize, usize),
}

impl TorchNet {
    /// Loads the f32 model file at `path` onto `device`.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let m = crate::load::torch_model(path, device)?;
        let mc: ModelConfig = m.file.config;
        Ok(Self {
            _vs: m.vs,
            net: m.net,
            schedule: m.file.schedule,
            chw: (mc.channels(), mc.height(), mc.width()),
        })
    }

    /// Predicted noise for N×C×H×W `x` at N time inputs t/T.
    pub fn eps(&self, x: &Tensor, t_in: &Tensor) -> Tensor {
        self.net.forward(x, t_in)
    }
}

pub(crate) use crate::describe::{describe_sampler, solver_kind, spacing_name, variance_name};
pub use crate::draw::{ClassChoice, Draws};
pub(crate) use crate::json::{json_num, json_str};

/// Evaluates the bound of `opts.model` on the MNIST test images.
pub fn run_bound(opts: &EvalOptions) -> Result<(nll::BoundReport, f64)> {
    let what = opts.model.display().to_string();
    let net = TorchNet::load(&opts.model, opts.device)?;
    let (c, h, w) = net.chw;
    if c != 1 {
        bail!("{what}: the model draws {c} channels; MNIST has 1");
    }
    let mut test = Mnist::load(&opts.data, Split::Test, h, w)
        .with_context(|| format!("MNIST test images for {what}"))?;
    if let Some(n) = opts.limit {
        if n == 0 {
            bail!("--limit must be at least 1");
        }
        test.truncate(n);
    }
    let diff = nll::Diffusion::from_schedule(&net.schedule)
        .with_context(|| format!("{what}: schedule"))?;
    let t = diff.timesteps();
    eprintln!(
        "bound: {} test images of {}, T = {t}, {} variance, clip x0 {}, seed {}, on {}",
        test.len,
        test.images_path.display(),
        variance_name(opts.bound.variance),
        if opts.bound.clip_x0 { "yes" } else { "no" },
        opts.bound.seed,
        crate::device_name(opts.device)
    );
    let pb = crate::progress::bar((test.len * t) as u64, opts.progress, "image-steps");
    let start = Instant::now();
    let report = nll::variational_bound(
        &mut |x, t_in| Ok(net.eps(x, t_in)),
        &diff,
        &test.images,
        net.chw,
        &opts.bound,
        opts.batch,
        opts.device,
        &mut |m| pb.inc(m as u64),
    )?;
    pb.finish_and_clear();
    Ok((report, start.elapsed().as_secs_f64()))
}

/// Draws the samples and computes the classifier figures.
pub fn run_quality(opts: &EvalOptions) -> Result<QualityReport> {
    let what = opts.model.display().to_string();
    if opts.samples < 2 {
        bail!("--n must be at least 2 (a covariance needs two feature vectors)");
    }
    if opts.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let bytes = std::fs::read(&opts.model).with_context(|| format!("{what}: cannot read"))?;
    let header = *ModelFile::parse(&bytes)
        .map_err(|e| anyhow!("{what}: not a valid model file: {e}"))?
        .header();
    let m = header.model;
    if (m.channels(), m.height(), m.width()) != (1, SIDE, SIDE) {
        bail!(
            "{what}: the classifier reads 1×28×28 images; the model draws {}×{}×{}",
            m.channels(),
            m.height(),
            m.width()
        );
    }
    let int8 = header.precision == ddpm_core::file::Precision::Int8;
    // The guide is read and checked before the classifier (which may have to be trained) and
    // outside the timed sampling.
    let guide_bytes = match &opts.guide {
        Some((g, w)) => {
            let gb = std::fs::read(g).with_context(|| format!("{}: cannot read", g.display()))?;
            let gh = *ModelFile::parse(&gb)
                .map_err(|e| anyhow!("{}: not a valid model file: {e}", g.display()))?
                .header();
            crate::load::check_guide(
                (&header.model, &header.schedule),
                (&gh.model, &gh.schedule),
                g,
            )?;
            if int8 != (gh.precision == ddpm_core::file::Precision::Int8) {
                bail!(
                    "--guide {}: an int8 model is guided by an int8 guide and an f32 model by an \
                     f32 one (export an int8 guide with `trainer export --int8`)",
                    g.display()
                );
            }
            Some((gb, *w))
        }
        None => None,
    };
    let clf = classifier::load_or_train(&opts.classifier, &opts.data, opts.device)?;
    let test = Mnist::load(&opts.data, Split::Test, SIDE, SIDE)
        .context("MNIST test images (classifier accuracy and reference features)")?;
    let accuracy = clf.accuracy(&test);
    let reference = quality::image_stats(&clf, &test.images)?;
    let mut train = Mnist::load(&opts.data, Split::Train, SIDE, SIDE)
        .context("MNIST training images (the real-image floor)")?;
    if train.len < opts.samples {
        bail!(
            "{}: {} training images, fewer than --n {}",
            train.images_path.display(),
            train.len,
            opts.samples
        );
    }
    train.truncate(opts.samples);
    eprintln!(
        "quality: {} samples of {what}, {}, seeds {}..={}, {} threads",
        opts.samples,
        describe_sampler(&opts.sampler, header.schedule.timesteps),
        opts.seed,
        opts.seed.wrapping_add(opts.samples as u64 - 1),
        opts.workers
    );
    if let Some((g, w)) = &opts.guide {
        eprintln!("guided by {} with weight {w}", g.display());
    }
    let labels = match opts.classes {
        Some((choice, _)) => {
            let k = choice.check(&header.model, &opts.model)?;
            choice.labels(opts.samples, k)?
        }
        None => Vec::new(),
    };
    if let Some((choice, w)) = opts.classes {
        let which = match choice {
            ClassChoice::One(k) => format!("class {k}"),
            ClassChoice::All => "every class in equal runs".to_owned(),
            ClassChoice::Visible => "the class each kept part suggests".to_owned(),
        };
        eprintln!("{which}, classifier-free guidance weight {w}");
    }
    if !opts.guidance_interval.is_always() {
        let (lo, hi) = opts.guidance_interval.bounds();
        eprintln!("guidance applied at the steps with t/T in [{lo}, {hi}] only");
    }
    let pb = crate::progress::bar(opts.samples as u64, opts.progress, "images");
    let start = Instant::now();
    let draws = Draws::new(opts.samples, &opts.sampler, opts.seed, opts.workers)
        .with_classes(opts.classes.map(|(_, weight)| crate::draw::Classes {
            labels: &labels,
            weight,
        }))?
        .with_guidance_interval(opts.guidance_interval);
    let guide = guide_bytes.as_ref().map(|(b, w)| (b.as_slice(), *w));
    let values = if int8 {
        compare::sample_int8_guided(&bytes, guide, draws, &|| pb.inc(1))
    } else {
        quality::draw_samples(&bytes, guide, draws, &|| pb.inc(1))
    }
    .with_context(|| what.clone())?;
    let sampling_seconds = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let pixels = crate::sample::to_pixels(&values);
    let per_class = match opts.classes {
        Some(_) => {
            let (predicted, top) = clf.predict(&pixels);
            class_rows(&labels, &predicted, &top)
        }
        None => Vec::new(),
    };
    Ok(QualityReport {
        classifier_accuracy: accuracy,
        test_images: test.len,
        generated: quality::set_figures(&clf, &pixels, &reference)?,
        real: quality::set_figures(&clf, &train.images, &reference)?,
        sampling_seconds,
        workers: opts.workers,
        per_class,
    })
}

/// The bound's figures as text.
pub fn format_bound(r: &nll::BoundReport, seconds: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "variational bound, {} test images, D = {}, T = {} ({seconds:.0} s)",
        r.n, r.dims, r.timesteps
    );
    let _ = writeln!(s, "  {:<32} {:>10}", "term", "bits/dim");
    let rows = [
        ("L_0 (decoder, -log p(x0|x1))", r.decoder),
        ("sum of L_{t-1}, t = 2..T (KL)", r.diffusion),
        ("L_T (prior KL)", r.prior),
    ];
    for (name, v) in rows {
        let _ = writeln!(s, "  {name:<32} {v:>10.4}");
    }
    let _ = writeln!(
        s,
        "  {:<32} {:>10.4}  (± {:.4} standard error over images)",
        "total", r.total, r.total_std_error
    );
    s
}

/// The quality figures as a table.
pub fn format_quality(q: &QualityReport, sampler: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "classifier test accuracy {:.2}% ({} test images, measured now)",
        100.0 * q.classifier_accuracy,
        q.test_images
    );
    let _ = writeln!(s, "samples: {} ({sampler})", q.generated.n);
    let _ = writeln!(
        s,
        "  {:<34} {:>12} {:>14}",
        "figure", "samples", "real (train)"
    );
    let (g, r) = (&q.generated, &q.real);
    let _ = writeln!(
        s,
        "  {:<34} {:>12.3} {:>14.3}",
        "classifier FID (vs test features)", g.fid, r.fid
    );
    let _ = writeln!(
        s,
        "  {:<34} {:>12.3} {:>14.3}",
        "IS analog", g.inception_score, r.inception_score
    );
    let _ = writeln!(
        s,
        "  {:<34} {:>11.1}% {:>13.1}%",
        format!("confident (top p > {CONFIDENT_PROB})"),
        100.0 * g.confident,
        100.0 * r.confident
    );
    let _ = writeln!(
        s,
        "  labels, samples: {}",
        compare::format_histogram(&g.histogram)
    );
    let _ = writeln!(
        s,
        "  labels, real:    {}",
        compare::format_histogram(&r.histogram)
    );
    if !q.per_class.is_empty() {
        let _ = writeln!(
            s,
            "  {:<8} {:>8} {:>16} {:>12}",
            "class", "samples", "labelled class", "confident"
        );
        for r in &q.per_class {
            let _ = writeln!(
                s,
                "  {:<8} {:>8} {:>15.1}% {:>11.1}%",
                r.class,
                r.n,
                100.0 * r.labelled,
                100.0 * r.confident
            );
        }
    }
    let _ = writeln!(
        s,
        "sampling wall time: {:.1} s for {} images on {} threads ({:.1} ms per image)",
        q.sampling_seconds,
        g.n,
        q.workers,
        1000.0 * q.sampling_seconds / g.n as f64
    );
    s
}

/// The classes asked for, the guidance weight and the per-class table, or `null`.
fn json_classes(classes: Option<(ClassChoice, f32)>, rows: &[ClassRow]) -> String {
    let Some((choice, w)) = classes else {
        return "null".into();
    };
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"class\": {}, \"n\": {}, \"labelled\": {}, \"confident\": {}}}",
                r.class,
                r.n,
                json_num(r.labelled),
                json_num(r.confident)
            )
        })
        .collect();
    let asked = match choice {
        ClassChoice::One(k) => k.to_string(),
        ClassChoice::All => json_str("all"),
        ClassChoice::Visible => json_str("visible"),
    };
    format!(
        "{{\"asked\": {asked}, \"cfg\": {}, \"per_class\": [{}]}}",
        json_num(f64::from(w)),
        rows.join(", ")
    )
}

fn json_set(f: &quality::SetFigures) -> String {
    let hist: Vec<String> = f.histogram.iter().map(|c| c.to_string()).collect();
    format!(
        "{{\"n\": {}, \"fid\": {}, \"inception_score\": {}, \"confident\": {}, \
         \"histogram\": [{}]}}",
        f.n,
        json_num(f.fid),
        json_num(f.inception_score),
        json_num(f.confident),
        hist.join(", ")
    )
}

fn json_sampler(cfg: &SamplerConfig, timesteps: u32) -> String {
    match cfg {
        SamplerConfig::Ddpm(d) => format!(
            "{{\"kind\": \"ddpm\", \"steps\": {timesteps}, \"eta\": null, \"variance\": {}, \
             \"spacing\": null, \"clip_x0\": {}, \"recompute_eps\": false}}",
            json_str(variance_name(d.variance)),
            d.clip_x0
        ),
        SamplerConfig::Ddim(d) => format!(
            "{{\"kind\": \"ddim\", \"steps\": {}, \"eta\": {}, \"variance\": null, \
             \"spacing\": {}, \"clip_x0\": {}, \"recompute_eps\": {}}}",
            d.steps,
            json_num(d.eta as f64),
            json_str(spacing_name(d.spacing)),
            d.clip_x0,
            d.recompute_eps
        ),
        SamplerConfig::DpmSolver2M(d) | SamplerConfig::UniPc(d) => format!(
            "{{\"kind\": \"{}\", \"steps\": {}, \"eta\": null, \"variance\": null, \
             \"spacing\": {}, \"clip_x0\": false, \"recompute_eps\": false}}",
            solver_kind(cfg),
            d.steps,
            json_str(spacing_name(d.spacing)),
        ),
    }
}

/// All figures as a JSON document.
pub fn to_json(
    opts: &EvalOptions,
    timesteps: u32,
    bound: Option<&(nll::BoundReport, f64)>,
    quality: Option<&QualityReport>,
) -> String {
    let mut s = format!(
        "{{\n  \"model\": {},\n",
        json_str(&opts.model.display().to_string())
    );
    match bound {
        Some((r, secs)) => {
            let curve: Vec<String> = r.curve.iter().map(|v| json_num(*v)).collect();
            let _ = writeln!(
                s,
                "  \"nll\": {{\"images\": {}, \"dims\": {}, \"timesteps\": {}, \"variance\": {}, \
                 \"clip_x0\": {}, \"seed\": {}, \"decoder_bpd\": {}, \"diffusion_bpd\": {}, \
                 \"prior_bpd\": {}, \"total_bpd\": {}, \"total_std_error\": {}, \
                 \"seconds\": {}, \"curve_bpd\": [{}]}},",
                r.n,
                r.dims,
                r.timesteps,
                json_str(variance_name(opts.bound.variance)),
                opts.bound.clip_x0,
                opts.bound.seed,
                json_num(r.decoder),
                json_num(r.diffusion),
                json_num(r.prior),
                json_num(r.total),
                json_num(r.total_std_error),
                json_num(*secs),
                curve.join(", ")
            );
        }
        None => s.push_str("  \"nll\": null,\n"),
    }
    match quality {
        Some(q) => {
            let _ = writeln!(
                s,
                "  \"quality\": {{\"sampler\": {}, \"seed\": {}, \"samples\": {}, \
                 \"guide\": {}, \"workers\": {}, \"sampling_seconds\": {}, \
                 \"classifier\": {}, \"classifier_test_accuracy\": {}, \
                 \"confident_threshold\": {}, \"generated\": {}, \"real_train\": {}, \
                 \"classes\": {}, \"guidance_interval\": {}}}",
                json_sampler(&opts.sampler, timesteps),
                opts.seed,
                q.generated.n,
                match &opts.guide {
                    Some((g, w)) => format!(
                        "{{\"model\": {}, \"weight\": {}}}",
                        json_str(&g.display().to_string()),
                        // f32's shortest decimal, as for the threshold below.
                        if w.is_finite() {
                            w.to_string()
                        } else {
                            "null".into()
                        }
                    ),
                    None => "null".to_string(),
                },
                q.workers,
                json_num(q.sampling_seconds),
                json_str(&opts.classifier.display().to_string()),
                json_num(q.classifier_accuracy),
                // f32's shortest decimal (0.9), not the f64 widening (0.899999976…).
                CONFIDENT_PROB,
                json_set(&q.generated),
                json_set(&q.real),
                json_classes(opts.classes, &q.per_class),
                if opts.guidance_interval.is_always() {
                    "null".to_owned()
                } else {
                    let (lo, hi) = opts.guidance_interval.bounds();
                    format!("[{lo}, {hi}]")
                }
            );
        }
        None => s.push_str("  \"quality\": null\n"),
    }
    s.push_str("}\n");
    s
}

/// Refuses a model path that names no file.
pub fn check_model_file(path: &Path) -> Result<()> {
    if !path.is_file() {
        bail!(
            "{}: no such model file (train one with `trainer fit --out FILE` and pass \
             --model FILE)",
            path.display()
        );
    }
    Ok(())
}

/// Runs what `opts` asks for, prints the figures and writes the requested files.
pub fn run(opts: &EvalOptions) -> Result<()> {
    if !opts.nll && !opts.fid {
        bail!("nothing to do: pass --nll, --fid or both");
    }
    let what = opts.model.display().to_string();
    check_model_file(&opts.model)?;
    // With --fid too, a guide (the recipe's) is --fid's; the bound stays the model's own.
    if opts.nll && !opts.fid && opts.guide.is_some() {
        bail!(
            "--nll bounds the model's own likelihood; a guided sampler has no such bound \
             (drop --guide, or run --fid alone)"
        );
    }
    let bytes = std::fs::read(&opts.model).with_context(|| format!("{what}: cannot read"))?;
    let timesteps = ModelFile::parse(&bytes)
        .map_err(|e| anyhow!("{what}: not a valid model file: {e}"))?
        .header()
        .schedule
        .timesteps;
    let bound = if opts.nll {
        let b = run_bound(opts)?;
        print!("{}", format_bound(&b.0, b.1));
        if let Some(p) = &opts.curve {
            nll::write_curve_csv(p, &b.0)?;
            eprintln!("wrote {}", p.display());
        }
        Some(b)
    } else {
        None
    };
    let quality = if opts.fid {
        let q = run_quality(opts)?;
        let mut sampler = describe_sampler(&opts.sampler, timesteps);
        if let Some((g, w)) = &opts.guide {
            sampler.push_str(&format!(", guided by {} with w = {w}", g.display()));
        }
        print!("{}", format_quality(&q, &sampler));
        Some(q)
    } else {
        None
    };
    if let Some(p) = &opts.json {
        let doc = to_json(opts, timesteps, bound.as_ref(), quality.as_ref());
        ddpm_torch::atomic::write_atomic(p, doc.as_bytes())?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
