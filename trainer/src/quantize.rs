//! `export --int8`: post-training quantization of a model file, calibrated on inputs the
//! sampler really sees, with the accuracy of the result measured on inputs it did not see.
//!
//! Calibration inputs (all at their true network time input t/T):
//! - noised training images x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε at uniformly drawn t;
//! - states x_t along DDPM trajectories (fixed_large, the seed's sampler) of the f32 model,
//!   every `trajectory_every`-th step.
//!
//! Accuracy is measured on noised *test* images (another split, other noise and timesteps):
//! relative RMS error of every stored activation (dequantized int8 against f32) and of ε.
//! With `ablation`, the same inputs also run through the int8 network simulated in real
//! numbers with one part at a time quantized (and with one part at a time kept in f32), which
//! attributes ε's error to the layers.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ddpm_core::format::ModelFile;
use ddpm_core::int8::{Int8SimpleUNet, Scratch};
use ddpm_core::quantize::{Calibrator, QuantMask, QuantOptions, QuantPlan, ACTIVATIONS};
use ddpm_core::sampler::{self, DdpmConfig, Plan, SamplerConfig};
use ddpm_core::{GaussianNoise, ModelConfig, Schedule, ScheduleConfig, SimpleUNet};

use crate::idx::{Mnist, Split};
use indicatif::ProgressBar;

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

/// Relative RMS errors of int8 against f32.
#[derive(Debug, Clone)]
pub struct AccuracyReport {
    /// Per stored activation: input (quantized x), enc1, enc2 (+ time embedding), dec1.
    pub activations: [f64; 4],
    /// The network output ε.
    pub eps: f64,
    /// ε's error of the int8 network simulated in real numbers (checks the simulation the
    /// ablation uses against the integer executor).
    pub sim_eps: f64,
    /// With `ablation`: (what is quantized, ε's relative RMS error) rows.
    pub ablation: Vec<(String, f64)>,
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

/// Uniform integer in [0, n) from the noise stream's bits (a Gaussian's CDF is not needed:
/// this is only a reproducible choice).
fn pick(noise: &mut GaussianNoise, n: usize) -> usize {
    let u = (noise.next_gaussian().to_bits() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u >> 32) as usize) % n.max(1)
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

/// Parses the f32 model file, checks that it holds an `arch` network of single-channel images
/// (what the MNIST calibration reads), and loads its parameters and both MNIST splits.
pub(crate) fn load_for_calibration(
    model_bytes: &[u8],
    data_dir: &Path,
    arch: &str,
) -> Result<CalibrationInputs> {
    let file = ModelFile::parse(model_bytes).map_err(|e| anyhow!("model file: {e}"))?;
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
        ModelConfig::SimpleUNet(c) => ddpm_core::simple_unet::load_params(&file, c, &mut params),
        ModelConfig::TinyUNet(c) => ddpm_core::tiny_unet::load_params(&file, c, &mut params),
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

/// Quantizes the f32 model file `model_bytes`; returns the int8 file and its accuracy.
pub fn quantize_model(
    model_bytes: &[u8],
    data_dir: &Path,
    opts: &CalibrationOptions,
    note: &str,
) -> Result<(Vec<u8>, AccuracyReport)> {
    let CalibrationInputs {
        model,
        schedule,
        params,
        sched,
        train,
        test,
    } = load_for_calibration(model_bytes, data_dir, "simple")?;
    let ModelConfig::SimpleUNet(cfg) = model else {
        unreachable!("load_for_calibration checked the architecture");
    };
    let net = SimpleUNet::from_flat(cfg, &params).map_err(|e| anyhow!("{e}"))?;

    let mut cal = Calibrator::new(net, 13);
    let mut noise = GaussianNoise::new(opts.seed);
    observe_noised(
        &train,
        &sched,
        opts.images,
        &mut noise,
        &mut |noise: &mut GaussianNoise, n| pick(noise, n),
        &ProgressBar::hidden(),
        &mut |x, t_in| cal.observe(x, t_in).map_err(|e| anyhow!("{e}")),
    )?;
    // Trajectories of the f32 model with the seed's sampler.
    let scfg = SamplerConfig::Ddpm(DdpmConfig::default());
    observe_trajectories(
        model_bytes,
        &sched,
        &scfg,
        opts,
        opts.trajectory_every,
        &ProgressBar::hidden(),
        &mut |x, t_in| cal.observe(x, t_in).map_err(|e| anyhow!("{e}")),
    )?;
    let plan = QuantPlan::build(&net, &cal, &opts.quant).map_err(|e| anyhow!("{e}"))?;
    let bytes = plan.write(schedule, note).map_err(|e| anyhow!("{e}"))?;
    // Against the equalized f32 network (the same function as `net`, with activation
    // channels rescaled as the int8 file stores them).
    let f32_net = plan.f32_net().map_err(|e| anyhow!("{e}"))?;
    let mut report = accuracy(&f32_net, &bytes, &test, &sched, opts)?;
    let (sim_eps, ablation) = simulated_errors(&net, &plan, &test, &sched, opts)?;
    report.sim_eps = sim_eps;
    report.ablation = ablation;
    Ok((bytes, report))
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

/// Runs `opts.trajectories` trajectories of the f32 model in `model_bytes` with the sampler
/// `scfg` (trajectory k starts from noise seed `opts.seed + 1000 + k`) and hands every `every`-th
/// state x_t, with its time input t/T, to `observe` (before the step from it); `bar` counts the
/// trajectories.
pub(crate) fn observe_trajectories(
    model_bytes: &[u8],
    sched: &Schedule,
    scfg: &SamplerConfig,
    opts: &CalibrationOptions,
    every: usize,
    bar: &ProgressBar,
    observe: &mut dyn FnMut(&[f32], f32) -> Result<()>,
) -> Result<()> {
    let mut host =
        ddpm_core::host::HostModel::from_bytes(model_bytes).map_err(|e| anyhow!("{e}"))?;
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
            sampler::sample_step(
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

/// Relative RMS errors of the int8 file against the f32 network on noised test images.
pub fn accuracy(
    net: &SimpleUNet<'_>,
    int8_bytes: &[u8],
    test: &Mnist,
    sched: &Schedule,
    opts: &CalibrationOptions,
) -> Result<AccuracyReport> {
    let cfg = *net.config();
    let file = ModelFile::parse(int8_bytes).map_err(|e| anyhow!("int8 file: {e}"))?;
    let q = Int8SimpleUNet::from_file(&file).map_err(|e| anyhow!("int8 file: {e}"))?;
    let plane = (cfg.height * cfg.width) as usize;
    let (c, h1, h2) = (
        cfg.channels as usize,
        cfg.hidden1 as usize,
        cfg.hidden2 as usize,
    );
    let mut acts = vec![0i8; cfg.layerwise_act_len()];
    let (mut hidden, mut temb, mut offsets, mut row) = (
        vec![0.0; h2],
        vec![0.0; h2],
        vec![0; h2],
        vec![0.0; cfg.row_len()],
    );
    let mut ws = vec![0.0f32; cfg.workspace_len()];
    let (mut e8, mut e32) = (vec![0.0f32; cfg.image_len()], vec![0.0f32; cfg.image_len()]);
    let mut num = [0.0f64; 5];
    let mut den = [0.0f64; 5];
    let mut noise = GaussianNoise::new(opts.seed ^ 0x5EED_7E57);
    let big_t = sched.len();
    let input_q = q.input_quant();
    let quants = [
        Some(input_q.q),
        q.layers()[0].out,
        q.layers()[1].out,
        q.layers()[2].out,
    ];
    for _ in 0..opts.eval_images {
        let i = pick(&mut noise, test.len);
        let t = pick(&mut noise, big_t);
        let x = noised(test, i, t, sched, &mut noise);
        let t_in = t as f32 / big_t as f32;
        let mut s = Scratch {
            acts: &mut acts,
            hidden: &mut hidden,
            temb: &mut temb,
            offsets: &mut offsets,
            row: &mut row,
        };
        q.forward_layerwise(&x, t_in, &mut s, &mut e8)
            .map_err(|e| anyhow!("{e}"))?;
        net.forward_reference(&x, t_in, &mut ws, &mut e32)
            .map_err(|e| anyhow!("{e}"))?;
        // f32 maps: input, then the workspace's enc1 | enc2 | dec1.
        let f32_maps: [&[f32]; 4] = [
            &x,
            &ws[..h1 * plane],
            &ws[h1 * plane..(h1 + h2) * plane],
            &ws[(h1 + h2) * plane..(2 * h1 + h2) * plane],
        ];
        let ib = ddpm_core::int8::INPUT_BYTES * c * plane;
        let offs = [0, ib, ib + h1 * plane, ib + (h1 + h2) * plane];
        for k in 0..4 {
            let qk = quants[k].context("activation quantization")?;
            let m = f32_maps[k];
            for (j, &r) in m.iter().enumerate() {
                let v = if k == 0 {
                    input_q.dequantize(ddpm_core::int8::load_input(&acts, j))
                } else {
                    qk.dequantize(acts[offs[k] + j])
                };
                let d = v as f64 - r as f64;
                num[k] += d * d;
                den[k] += (r as f64) * (r as f64);
            }
        }
        for (a, b) in e8.iter().zip(&e32) {
            num[4] += ((a - b) as f64).powi(2);
            den[4] += (*b as f64).powi(2);
        }
    }
    let rel = |k: usize| (num[k] / den[k].max(f64::MIN_POSITIVE)).sqrt();
    Ok(AccuracyReport {
        activations: [rel(0), rel(1), rel(2), rel(3)],
        eps: rel(4),
        sim_eps: f64::NAN,
        ablation: Vec::new(),
    })
}

/// The noised test inputs of [`accuracy`] (same draws), concatenated, with their time inputs.
fn eval_inputs(test: &Mnist, sched: &Schedule, opts: &CalibrationOptions) -> (Vec<f32>, Vec<f32>) {
    let mut noise = GaussianNoise::new(opts.seed ^ 0x5EED_7E57);
    let big_t = sched.len();
    let (mut xs, mut ts) = (Vec::new(), Vec::new());
    for _ in 0..opts.eval_images {
        let i = pick(&mut noise, test.len);
        let t = pick(&mut noise, big_t);
        xs.extend(noised(test, i, t, sched, &mut noise));
        ts.push(t as f32 / big_t as f32);
    }
    (xs, ts)
}

/// ε's relative RMS error of the simulated int8 network on the evaluation inputs: everything
/// quantized, and with `opts.ablation` each part alone and each part kept in f32.
fn simulated_errors(
    net: &SimpleUNet<'_>,
    plan: &QuantPlan,
    test: &Mnist,
    sched: &Schedule,
    opts: &CalibrationOptions,
) -> Result<(f64, Vec<(String, f64)>)> {
    let cfg = *net.config();
    let (xs, ts) = eval_inputs(test, sched, opts);
    let mut reference = vec![0.0f32; xs.len()];
    let mut ws = vec![0.0f32; cfg.workspace_len()];
    let img = cfg.image_len();
    for ((x, t), out) in xs.chunks(img).zip(&ts).zip(reference.chunks_mut(img)) {
        net.forward_reference(x, *t, &mut ws, out)
            .map_err(|e| anyhow!("{e}"))?;
    }
    let err = |mask: QuantMask| -> Result<f64> {
        let eps = plan.simulate(&xs, &ts, mask).map_err(|e| anyhow!("{e}"))?;
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for (a, b) in eps.iter().zip(&reference) {
            num += ((a - b) as f64).powi(2);
            den += (*b as f64).powi(2);
        }
        Ok((num / den.max(f64::MIN_POSITIVE)).sqrt())
    };
    let all = err(QuantMask::ALL)?;
    let mut rows = Vec::new();
    if opts.ablation {
        const WEIGHTS: [&str; 4] = ["enc1", "enc2", "dec1", "dec2"];
        rows.push(("f32 (nothing quantized)".to_string(), err(QuantMask::NONE)?));
        for (k, name) in ACTIVATIONS.iter().enumerate() {
            let mut only = QuantMask::NONE;
            only.acts[k] = true;
            let mut but = QuantMask::ALL;
            but.acts[k] = false;
            rows.push((format!("only activation {name}"), err(only)?));
            rows.push((format!("all but activation {name}"), err(but)?));
        }
        for (l, name) in WEIGHTS.iter().enumerate() {
            let mut only = QuantMask::NONE;
            only.weights[l] = true;
            let mut but = QuantMask::ALL;
            but.weights[l] = false;
            rows.push((format!("only weights {name}"), err(only)?));
            rows.push((format!("all but weights {name}"), err(but)?));
        }
        let acts_only = QuantMask {
            acts: [true; 4],
            weights: [false; 4],
        };
        let weights_only = QuantMask {
            acts: [false; 4],
            weights: [true; 4],
        };
        rows.push(("all activations, f32 weights".to_string(), err(acts_only)?));
        rows.push((
            "all weights, f32 activations".to_string(),
            err(weights_only)?,
        ));
    }
    Ok((all, rows))
}
