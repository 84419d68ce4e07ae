//! `export --int8`: post-training quantization of a model file, calibrated on inputs the
//! sampler really sees, with the accuracy of the result measured on inputs it did not see.
//! What both networks share lives here: the options, the calibration inputs (the parsed f32
//! model file's parameters, its schedule and both MNIST splits), and the two kinds of
//! calibration inputs, noised training images and sampler trajectories. One file per network
//! does the rest: [`simple_unet`] and [`tiny_unet`].
//!
//! Calibration inputs (all at their true network time input t/T):
//! - noised training images x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε at uniformly drawn t;
//! - states x_t along sampler trajectories of the f32 model (see each network's file).
//!
//! Accuracy is measured on noised *test* images (another split, other noise and timesteps):
//! relative RMS error of every stored activation (dequantized int8 against f32) and of ε.
pub mod simple_unet;
pub mod tiny_unet;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ddpm_core::diffusion::{self, Plan, SamplerConfig};
use ddpm_core::file::ModelFile;
use ddpm_core::host::HostModel;
use ddpm_core::kernels::calibrate::RangeMethod;
use ddpm_core::simple_unet::ptq::{Equalize, QuantOptions, WeightClip};
use ddpm_core::{GaussianNoise, ModelConfig, Schedule, ScheduleConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::idx::{Mnist, Split};

pub use simple_unet::{quantize_model, AccuracyReport};
pub use tiny_unet::{quantize_tiny_model, TinyAccuracyReport, CALIBRATION_DDIM_STEPS};

/// How to calibrate.
#[derive(Debug, Clone)]
pub struct CalibrationOptions {
    /// Noised training images to observe.
    pub images: usize,
    /// DDPM trajectories to follow.
    pub trajectories: usize,
    /// Observe every n-th state of each trajectory.
    pub trajectory_every: usize,
    /// Activation ranges, weight clipping, equalization, bias correction.
    pub quant: QuantOptions,
    /// Seed of image choice, timesteps and noise.
    pub seed: u64,
    /// Noised test images for the accuracy report.
    pub eval_images: usize,
    /// Also attribute ε's error to the layers (see the module notes).
    pub ablation: bool,
}

/// Pixels in [0, 255] → [−1, 1], as the trainer scales them.
fn to_unit(p: u8) -> f32 {
    p as f32 / 127.5 - 1.0
}

/// A noised copy of image `i` of `data` at timestep `t` (pixels scaled to [−1, 1] as in
/// training).
pub(crate) fn noised(
    data: &Mnist,
    i: usize,
    t: usize,
    sched: &Schedule,
    noise: &mut GaussianNoise,
) -> Vec<f32> {
    let n = data.height * data.width;
    let a = sched.alphas_cumprod()[t];
    let (sa, s1a) = (a.sqrt(), (1.0 - a).sqrt());
    data.images[i * n..(i + 1) * n]
        .iter()
        .map(|&p| sa * to_unit(p) + s1a * noise.next_gaussian())
        .collect()
}

/// What both calibrations start from: the model file's architecture and schedule, its f32
/// parameters in `state_dict` order, the schedule's tables, and MNIST's train (calibration) and
/// test (accuracy) splits at the model's image size.
pub(crate) struct CalibrationInputs {
    pub model: ModelConfig,
    pub schedule: ScheduleConfig,
    pub params: Vec<f32>,
    pub sched: Schedule,
    pub train: Mnist,
    pub test: Mnist,
}

/// Parses and checks the f32 model file `model_bytes` (once; errors say `model file: …`).
pub fn parse_f32(model_bytes: &[u8]) -> Result<ModelFile<'_>> {
    ModelFile::parse(model_bytes).map_err(|e| anyhow!("model file: {e}"))
}

/// Checks that the parsed f32 model `file` holds an `arch` network of single-channel images
/// (what the MNIST calibration reads), and loads its parameters and both MNIST splits.
pub(crate) fn load_for_calibration(
    file: &ModelFile<'_>,
    data_dir: &Path,
    arch: &str,
) -> Result<CalibrationInputs> {
    let header = *file.header();
    let cfg = header.model;
    if cfg.arch_name() != arch {
        bail!(
            "this int8 export expects a {arch} model; this model file holds a {} model",
            cfg.arch_name()
        );
    }
    if cfg.channels() != 1 {
        bail!(
            "int8 calibration reads MNIST-style single-channel images; this model has {} channels",
            cfg.channels()
        );
    }
    let mut params = vec![0.0f32; cfg.param_count()];
    match &cfg {
        ModelConfig::SimpleUNet(c) => ddpm_core::simple_unet::load_params(file, c, &mut params),
        ModelConfig::TinyUNet(c) => ddpm_core::tiny_unet::load_params(file, c, &mut params),
    }
    .map_err(|e| anyhow!("model file: {e}"))?;
    let sched: Schedule = Schedule::new(&header.schedule).map_err(|e| anyhow!("{e}"))?;
    let (h, w) = (cfg.height(), cfg.width());
    let train = Mnist::load(data_dir, Split::Train, h, w)
        .with_context(|| format!("calibration data in {}", data_dir.display()))?;
    let test = Mnist::load(data_dir, Split::Test, h, w)
        .with_context(|| format!("evaluation data in {}", data_dir.display()))?;
    Ok(CalibrationInputs {
        model: cfg,
        schedule: header.schedule,
        params,
        sched,
        train,
        test,
    })
}

/// Hands `images` noised training images to `observe` (with their time input t/T): image and
/// timestep `i, t` each drawn by `draw(noise, n)` (uniform below `n`), the noise from `noise`.
pub(crate) fn observe_noised(
    train: &Mnist,
    sched: &Schedule,
    images: usize,
    noise: &mut GaussianNoise,
    draw: &mut dyn FnMut(&mut GaussianNoise, usize) -> usize,
    bar: &ProgressBar,
    observe: &mut dyn FnMut(&[f32], f32) -> Result<()>,
) -> Result<()> {
    let big_t = sched.len();
    bar.set_length(images as u64);
    for _ in 0..images {
        let i = draw(noise, train.len);
        let t = draw(noise, big_t);
        let x = noised(train, i, t, sched, noise);
        observe(&x, t as f32 / big_t as f32)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Runs `opts.trajectories` trajectories of the f32 model `file` with the sampler `scfg`
/// (trajectory k starts from noise seed `opts.seed + 1000 + k`) and hands every `every`-th
/// state x_t, with its time input t/T, to `observe` (before the step from it); `bar` counts the
/// trajectories.
pub(crate) fn observe_trajectories(
    file: &ModelFile<'_>,
    sched: &Schedule,
    scfg: &SamplerConfig,
    opts: &CalibrationOptions,
    every: usize,
    bar: &ProgressBar,
    observe: &mut dyn FnMut(&[f32], f32) -> Result<()>,
) -> Result<()> {
    let mut host = HostModel::from_file(file).map_err(|e| anyhow!("{e}"))?;
    let big_t = sched.len();
    let n = host.config().image_len();
    let plan = Plan::new(scfg, big_t as u32).map_err(|e| anyhow!("{e}"))?;
    for k in 0..opts.trajectories {
        let mut tnoise = GaussianNoise::new(opts.seed.wrapping_add(1_000 + k as u64));
        let mut x = vec![0.0f32; n];
        let mut eps = vec![0.0f32; n];
        tnoise.fill(&mut x);
        for step in 0..plan.len() {
            if step % every.max(1) == 0 {
                let (t, _) = plan.step(step).context("plan")?;
                observe(&x, t as f32 / big_t as f32)?;
            }
            diffusion::sample_step(
                &mut host,
                sched,
                scfg,
                &plan,
                step,
                &mut tnoise,
                &mut x,
                &mut eps,
            )
            .map_err(|e| anyhow!("{e}"))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Both calibrations of one network: `observe` sees `opts.images` noised training images
/// (image and timestep drawn by `draw`, the noise from seed `opts.seed`), then every `every`-th
/// state of the `scfg` trajectories of the f32 model `file`; `bar(0)` and `bar(1)`, made as
/// each begins, count the two.
#[allow(clippy::too_many_arguments)]
pub(crate) fn calibrate(
    file: &ModelFile<'_>,
    inputs: &CalibrationInputs,
    opts: &CalibrationOptions,
    draw: &mut dyn FnMut(&mut GaussianNoise, usize) -> usize,
    scfg: &SamplerConfig,
    every: usize,
    bar: &dyn Fn(usize) -> ProgressBar,
    observe: &mut dyn FnMut(&[f32], f32) -> Result<()>,
) -> Result<()> {
    let mut noise = GaussianNoise::new(opts.seed);
    observe_noised(
        &inputs.train,
        &inputs.sched,
        opts.images,
        &mut noise,
        draw,
        &bar(0),
        observe,
    )?;
    observe_trajectories(file, &inputs.sched, scfg, opts, every, &bar(1), observe)
}

/// A progress bar of `len` steps labelled `msg`.
pub(crate) fn bar(len: u64, msg: &'static str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b.set_message(msg);
    b
}

/// What `export --int8` asks of either quantizer.
#[derive(Debug, Clone)]
pub struct Int8Export {
    /// MNIST directory [default: [`crate::data::idx::default_data_dir`]].
    pub data: Option<PathBuf>,
    /// Noised training images to calibrate on.
    pub calib_images: usize,
    /// Sampler trajectories to calibrate on.
    pub calib_trajectories: usize,
    /// SimpleUNet's quantization settings (TinyUNet takes only the range method).
    pub quant: QuantOptions,
    /// Seed of the calibration draws.
    pub seed: u64,
    /// Noised test images for the accuracy report.
    pub eval_images: usize,
    /// SimpleUNet: also attribute ε's error to the layers.
    pub ablation: bool,
    /// The flags of SimpleUNet's quantizer given on the command line (`--weight-clip`, …):
    /// refused for a TinyUNet, whose quantizer does not read them.
    pub simple_unet_only: Vec<&'static str>,
}

/// `--range`'s word for `m`: `minmax`, `pNN.NN`, `mse` or `eps`.
pub fn range_name(m: RangeMethod) -> String {
    match m {
        RangeMethod::MinMax => "minmax".to_owned(),
        RangeMethod::Percentile(p) => format!("p{p}"),
        RangeMethod::Mse => "mse".to_owned(),
        RangeMethod::EpsMse => "eps".to_owned(),
    }
}

/// `--weight-clip`'s word for `w`: `max` or `mse`.
pub fn weight_clip_name(w: WeightClip) -> &'static str {
    match w {
        WeightClip::Max => "max",
        WeightClip::Mse => "mse",
    }
}

/// `--equalize`'s word for `e`: `off`, `weights` or `activations`.
pub fn equalize_name(e: Equalize) -> &'static str {
    match e {
        Equalize::Off => "off",
        Equalize::Weights => "weights",
        Equalize::Activations => "activations",
    }
}

/// SimpleUNet's quantization settings in the words of `export`'s flags.
pub fn describe_quant(q: &QuantOptions) -> String {
    format!(
        "{} ranges, {} weight clip, equalize {}, bias correction {}, int{} input",
        range_name(q.range),
        weight_clip_name(q.weight_clip),
        equalize_name(q.equalize),
        if q.bias_correction { "on" } else { "off" },
        q.input_bits
    )
}

/// Quantizes the parsed f32 model `file` with the quantizer of its architecture and returns
/// the int8 model file (noted `note` and the settings); `log` gets the calibration plan and
/// the accuracy report.
pub fn export_int8(
    file: &ModelFile<'_>,
    x: &Int8Export,
    note: &str,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<u8>> {
    let data = x
        .data
        .clone()
        .unwrap_or_else(crate::data::idx::default_data_dir);
    if matches!(file.header().model, ModelConfig::TinyUNet(_)) {
        if !x.simple_unet_only.is_empty() {
            bail!(
                "{} {} to SimpleUNet int8 exports only: the TinyUNet quantizer takes max-abs \
                 weight scales, an int8 input, no equalization or bias correction and no \
                 ablation",
                x.simple_unet_only.join(", "),
                if x.simple_unet_only.len() == 1 {
                    "applies"
                } else {
                    "apply"
                }
            );
        }
        let opts = CalibrationOptions {
            images: x.calib_images,
            trajectories: x.calib_trajectories,
            trajectory_every: 1,
            // The TinyUNet quantizer uses only the range method: max-abs weight scales, int8
            // input, no equalization or bias correction.
            quant: QuantOptions {
                range: x.quant.range,
                weight_clip: ddpm_core::simple_unet::ptq::WeightClip::Max,
                equalize: ddpm_core::simple_unet::ptq::Equalize::Off,
                bias_correction: false,
                input_bits: 8,
            },
            seed: x.seed,
            eval_images: x.eval_images,
            ablation: false,
        };
        log(&format!(
            "export --int8 (TinyUNet): calibrating on {} noised training images and {} DDIM-{} \
             trajectories ({} ranges; max-abs weight scales, int8 input, no equalization or \
             bias correction)",
            opts.images,
            opts.trajectories,
            CALIBRATION_DDIM_STEPS,
            range_name(opts.quant.range)
        ));
        let (bytes, r) = tiny_unet::quantize_tiny_model(
            file,
            &data,
            &opts,
            &format!("{note} (int8, {} ranges)", range_name(opts.quant.range)),
        )?;
        let figures: Vec<String> = tiny_unet::activation_names()
            .zip(&r.activations)
            .map(|(name, v)| format!("{name} {v:.4}"))
            .collect();
        log(&format!(
            "int8 vs f32 relative RMS error on {} noised test images: {}, eps {:.4}",
            opts.eval_images,
            figures.join(", "),
            r.eps
        ));
        return Ok(bytes);
    }
    let opts = CalibrationOptions {
        images: x.calib_images,
        trajectories: x.calib_trajectories,
        trajectory_every: 10,
        quant: x.quant,
        seed: x.seed,
        eval_images: x.eval_images,
        ablation: x.ablation,
    };
    log(&format!(
        "export --int8: calibrating on {} noised training images and {} DDPM trajectories ({})",
        opts.images,
        opts.trajectories,
        describe_quant(&opts.quant)
    ));
    let q = &opts.quant;
    let (bytes, report) = simple_unet::quantize_file(
        file,
        &data,
        &opts,
        &format!(
            "{note} (int8, int{} input, {} ranges, {} weight clip, equalize {}, \
             bias correction {})",
            q.input_bits,
            range_name(q.range),
            weight_clip_name(q.weight_clip),
            equalize_name(q.equalize),
            q.bias_correction
        ),
    )?;
    let [x, e1, e2, d1] = report.activations;
    log(&format!(
        "int8 vs f32 relative RMS error on {} noised test images: input {x:.4}, enc1 {e1:.4}, \
         enc2+temb {e2:.4}, dec1 {d1:.4}, eps {:.4} (simulated in real numbers: {:.4})",
        opts.eval_images, report.eps, report.sim_eps
    ));
    for (what, e) in &report.ablation {
        log(&format!("  ablation, eps error with {what}: {e:.4}"));
    }
    Ok(bytes)
}
