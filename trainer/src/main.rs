//! `trainer`: fit the seed's DDPM on MNIST with libtorch, export/import weights, sample images.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ddpm_core::quantize::{Equalize, QuantOptions, RangeMethod, WeightClip};
use ddpm_core::sampler::{DdimConfig, DdpmConfig, DdpmVariance, SamplerConfig, Spacing};
use ddpm_core::{ModelConfig, Prediction, ScheduleConfig, SimpleUNetConfig, TinyUNetConfig};
use ddpm_trainer::{export, fetch, idx, model, parse_device, sample, train};
use indicatif::{ProgressBar, ProgressStyle};

/// Default model file of `sample` (the committed, trained model).
const DEFAULT_MODEL: &str = "models/simple_unet_mnist.ddpm";

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Train the seed's DDPM (SimpleUNet, or the compact TinyUNet) on MNIST with \
             libtorch, export it to the ddpm-core model file, and sample images from it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a SimpleUNet (default) or a TinyUNet on MNIST IDX files (defaults: the seed's
    /// recipe).
    Fit(FitArgs),
    /// Write a model file (or a PyTorch safetensors file) from a checkpoint or a model file.
    Export(ExportArgs),
    /// Turn a PyTorch safetensors state_dict (SimpleUNet or TinyUNet) into a model file.
    Import(ImportArgs),
    /// Draw images from a model file and write a PNG grid (and optionally an IDX file).
    Sample(SampleArgs),
    /// Download MNIST from public mirrors and verify the decompressed files' SHA-256.
    FetchData(FetchArgs),
    /// Train the small MNIST classifier that judges samples and write it (safetensors).
    Classifier(ClassifierArgs),
    /// Sample an f32 model and its int8 export with the same seeds and compare the images:
    /// pixel difference, classifier labels, confident share, and a side-by-side PNG.
    CompareInt8(CompareInt8Args),
    /// Measure a model: the variational bound in bits/dim on MNIST test images (--nll) and
    /// sample quality judged by the project's classifier (--fid).
    Eval(EvalArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ScheduleArg {
    /// β evenly spaced from --beta-start to --beta-end (the seed's).
    Linear,
    /// Cosine ᾱ (Nichol & Dhariwal 2021, s = 0.008, β ≤ 0.999).
    Cosine,
}

/// `--prediction` values.
#[derive(Clone, Copy, ValueEnum)]
enum PredictionArg {
    /// The noise ε (the seed's).
    Eps,
    /// The velocity v = √ᾱ_t·ε − √(1−ᾱ_t)·x0 (Salimans & Ho 2022): x0 stays well conditioned
    /// at the noisiest steps, where ε-prediction must recover it from a 1/√ᾱ_t-amplified
    /// difference.
    V,
}

#[derive(Args, Clone)]
struct ScheduleArgs {
    /// Noise schedule.
    #[arg(long, value_enum, default_value = "linear")]
    schedule: ScheduleArg,
    /// Number of diffusion steps T.
    #[arg(long, default_value_t = 300)]
    timesteps: u32,
    /// First β of the linear schedule.
    #[arg(long, default_value_t = 1e-4)]
    beta_start: f64,
    /// Last β of the linear schedule.
    #[arg(long, default_value_t = 0.02)]
    beta_end: f64,
    /// What the network predicts (its training target; recorded in the model file, where the
    /// samplers read it).
    #[arg(long, value_enum, default_value = "eps")]
    prediction: PredictionArg,
}

impl ScheduleArgs {
    fn config(&self) -> ScheduleConfig {
        let c = match self.schedule {
            ScheduleArg::Linear => {
                ScheduleConfig::linear(self.timesteps, self.beta_start, self.beta_end)
            }
            ScheduleArg::Cosine => ScheduleConfig::cosine(self.timesteps),
        };
        c.predicting(match self.prediction {
            PredictionArg::Eps => Prediction::Eps,
            PredictionArg::V => Prediction::V,
        })
    }
}

/// `--lr-schedule` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LrScheduleArg {
    /// --lr at every step.
    Constant,
    /// Warm-up, then cosine decay to 0.
    Cosine,
}

/// `--loss-weight` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LossWeightArg {
    /// Plain ε MSE.
    Uniform,
    /// Min-SNR-γ weighting.
    MinSnr,
    /// x0 error weighted SNR_t + k (needs --prediction v).
    SnrPlus,
}

#[derive(Args)]
struct FitArgs {
    /// Directory holding train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]
    /// [default: data/mnist if present, else ../shared/data/mnist]. Fashion-MNIST works too.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Train on the first N images only (smoke runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Epochs in total (a resumed run continues up to this many).
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Images per optimizer step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Network architecture.
    #[arg(long, value_enum, default_value = "simple")]
    arch: ArchArg,
    /// --arch simple: channels after enc1.
    #[arg(long, default_value_t = 64)]
    hidden1: u32,
    /// --arch simple: channels after enc2 and width of the time embedding.
    #[arg(long, default_value_t = 128)]
    hidden2: u32,
    /// --arch tiny: channels of the full-, half- and quarter-resolution levels, W1,W2,W3.
    #[arg(long, value_name = "W1,W2,W3", default_value = "32,64,64", value_parser = parse_widths)]
    widths: [u32; 3],
    /// --arch tiny: number of W3→W3 blocks at quarter resolution (1 to 8); each widens an
    /// output pixel's view by 8 pixels and adds 9·W3² + W3·(D + 2) parameters.
    #[arg(long, default_value_t = TinyUNetConfig::DEFAULT.mid_blocks)]
    mid_blocks: u32,
    /// --arch tiny: length E of the sinusoidal timestep embedding (even, at least 4).
    #[arg(long, default_value_t = TinyUNetConfig::DEFAULT.emb_dim)]
    emb_dim: u32,
    /// --arch tiny: width D of the time MLP's output, projected into every block.
    #[arg(long, default_value_t = TinyUNetConfig::DEFAULT.temb_dim)]
    temb_dim: u32,
    /// Image height the model takes (the data must match).
    #[arg(long, default_value_t = 28)]
    height: u32,
    /// Image width the model takes (the data must match).
    #[arg(long, default_value_t = 28)]
    width: u32,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Seed of every random draw (initial weights, shuffles, timesteps, noise).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep an exponential moving average of the weights with this decay (warm-up
    /// min(DECAY, (1+n)/(10+n)) at step n) and export it instead of the raw weights.
    #[arg(long, value_name = "DECAY")]
    ema: Option<f64>,
    /// Learning-rate schedule: `constant` (the seed's) or `cosine`: linear warm-up over
    /// --warmup-steps, then half a cosine from --lr down to 0 at the last step of --epochs.
    #[arg(long, value_enum, default_value = "constant")]
    lr_schedule: LrScheduleArg,
    /// --lr-schedule cosine: steps of linear warm-up from 0 to --lr.
    #[arg(long, default_value_t = 200)]
    warmup_steps: u64,
    /// Per-image loss weight: `uniform` (the seed's plain ε MSE, or plain v MSE with
    /// --prediction v) or `min-snr` (Hang et al. 2023, γ from --min-snr-gamma: min(SNR_t, γ) /
    /// SNR_t on the ε error, min(SNR_t, γ) / (SNR_t + 1) on the v error) or `snr-plus` (with
    /// --prediction v only: (SNR_t + k) / (SNR_t + 1) on the v error, k from --snr-plus-k).
    #[arg(long, value_enum, default_value = "uniform")]
    loss_weight: LossWeightArg,
    /// --loss-weight min-snr: γ.
    #[arg(long, default_value_t = 5.0)]
    min_snr_gamma: f64,
    /// --loss-weight snr-plus: k. The x0 error is weighted SNR_t + k, i.e. the v error
    /// (SNR_t + k)/(SNR_t + 1); plain v MSE is k = 1, and a larger k puts up to k times the
    /// weight on the noisiest timesteps, where a sample's global shape is decided.
    #[arg(long, default_value_t = 4.0)]
    snr_plus_k: f64,
    /// Model file written at the end [default: runs/simple_unet.ddpm, or runs/tiny_unet.ddpm
    /// with --arch tiny].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write a guide for autoguidance (`sample --guide`, `eval --guide`): the model as it
    /// is after --guide-epochs epochs (EMA weights with --ema), a weaker version of itself.
    #[arg(long, value_name = "FILE")]
    guide_out: Option<PathBuf>,
    /// Epochs after which --guide-out is written (fewer than --epochs).
    #[arg(long, default_value_t = 2, requires = "guide_out")]
    guide_epochs: usize,
    /// Checkpoint written atomically after every epoch [default: OUT with .ckpt.safetensors].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// CSV of the per-step loss (step,epoch,loss) [default: OUT with .loss.csv].
    #[arg(long)]
    loss_csv: Option<PathBuf>,
    /// Continue from the checkpoint up to --epochs (same settings needed; --lr may change).
    #[arg(long)]
    resume: bool,
    /// libtorch CPU threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar (also off when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ArchArg {
    /// The seed's SimpleUNet: four 3×3 convs at full resolution (--hidden1, --hidden2).
    Simple,
    /// TinyUNet: a U-Net with two stride-2 levels, skip connections and a sinusoidal time
    /// embedding (--widths, --mid-blocks, --emb-dim, --temb-dim; image sides multiples of 4).
    Tiny,
}

fn parse_widths(s: &str) -> std::result::Result<[u32; 3], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let parsed: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    match parsed.as_deref() {
        Some(&[a, b, c]) if a > 0 && b > 0 && c > 0 => Ok([a, b, c]),
        _ => Err(format!(
            "{s:?}: give three positive channel counts separated by commas, e.g. 32,64,64"
        )),
    }
}

#[derive(Args)]
struct ExportArgs {
    /// Checkpoint written by `fit` to export from.
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    checkpoint: Option<PathBuf>,
    /// Model file to export from (e.g. to convert it to safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Write a PyTorch safetensors state_dict (the seed's names) instead of a model file.
    #[arg(long)]
    safetensors: bool,
    /// Export the raw weights even when the checkpoint has an EMA.
    #[arg(long)]
    raw: bool,
    /// Text stored in the model file's note.
    #[arg(long, default_value = "")]
    note: String,
    /// Write an int8 model file (post-training quantization, TFLite Micro conventions),
    /// calibrated on noised training images and DDPM (SimpleUNet) or DDIM-10 (TinyUNet)
    /// trajectory states.
    #[arg(long, conflicts_with = "safetensors")]
    int8: bool,
    /// --int8: MNIST directory for calibration (train split) and the accuracy report (test
    /// split) [default: data/mnist if present, else ../shared/data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    /// --int8: activation ranges (per tensor) from the calibration values: `minmax`, a
    /// percentile `pNN.NN` (and its mirror), `mse` (the clipping thresholds that minimise
    /// each tensor's quantization mean squared error) or `eps` (those that minimise the mean
    /// squared error of the network's output ε, tensor by tensor, in the simulated int8
    /// network).
    #[arg(long, default_value = "p99.99", value_parser = parse_range)]
    range: RangeMethod,
    /// --int8: per-output-channel weight scale: `max` (max |w| / 127) or `mse` (the clipping
    /// threshold that minimises the channel's squared quantization error).
    #[arg(long, default_value = "mse", value_parser = parse_weight_clip)]
    weight_clip: WeightClip,
    /// --int8: cross-layer equalization at the ReLU boundaries (exact in f32): `off`,
    /// `weights` (Nagel et al. 2019: balance weight ranges) or `activations` (balance each
    /// activation channel's range against the next layer's weights).
    #[arg(long, default_value = "activations", value_parser = parse_equalize)]
    equalize: Equalize,
    /// --int8: empirical bias correction of each layer's mean output error over the
    /// calibration inputs (true/false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    bias_correction: bool,
    /// --int8: bits of the network input x_t: 16 (symmetric int16, zero point 0; enc1
    /// multiplies int16 inputs by int8 weights) or 8 (int8 like every other activation, the
    /// earlier default).
    #[arg(long, default_value_t = 16, value_parser = parse_input_bits)]
    input_bits: u32,
    /// --int8: also print how much of ε's error each quantized part causes (the int8 network
    /// simulated with one part at a time quantized, and with one part kept in f32).
    #[arg(long)]
    ablation: bool,
    /// --int8: noised training images to calibrate on.
    #[arg(long, default_value_t = 512)]
    calib_images: usize,
    /// --int8: sampler trajectories whose states are calibrated on (SimpleUNet: DDPM, every
    /// 10th step; TinyUNet: DDIM 10 steps, every step).
    #[arg(long, default_value_t = 4)]
    calib_trajectories: usize,
    /// --int8: noised test images for the accuracy report.
    #[arg(long, default_value_t = 64)]
    eval_images: usize,
    /// --int8: seed of the calibration draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn parse_range(s: &str) -> std::result::Result<RangeMethod, String> {
    match s {
        "minmax" => return Ok(RangeMethod::MinMax),
        "mse" => return Ok(RangeMethod::Mse),
        "eps" => return Ok(RangeMethod::EpsMse),
        _ => {}
    }
    match s.strip_prefix('p').map(str::parse::<f32>) {
        Some(Ok(p)) if p > 50.0 && p <= 100.0 => Ok(RangeMethod::Percentile(p)),
        _ => Err(format!(
            "{s:?}: use minmax, mse, eps or pNN.NN (a percentile above 50, e.g. p99.99)"
        )),
    }
}

fn parse_weight_clip(s: &str) -> std::result::Result<WeightClip, String> {
    match s {
        "max" => Ok(WeightClip::Max),
        "mse" => Ok(WeightClip::Mse),
        _ => Err(format!("{s:?}: use max or mse")),
    }
}

fn parse_input_bits(s: &str) -> std::result::Result<u32, String> {
    match s {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err(format!("input bits must be 8 or 16, not `{s}`")),
    }
}

fn parse_equalize(s: &str) -> std::result::Result<Equalize, String> {
    match s {
        "off" => Ok(Equalize::Off),
        "weights" => Ok(Equalize::Weights),
        "activations" => Ok(Equalize::Activations),
        _ => Err(format!("{s:?}: use off, weights or activations")),
    }
}

#[derive(Args)]
struct ImportArgs {
    /// PyTorch safetensors file of a SimpleUNet's state_dict (enc1.weight, …, time_mlp.2.bias)
    /// or a TinyUNet's (enc0.weight, enc0_temb.weight, …, out.bias); a `model.` or `module.`
    /// prefix is accepted.
    #[arg(long)]
    safetensors: PathBuf,
    /// Model file to write.
    #[arg(long)]
    out: PathBuf,
    /// Image height the model was trained on (not stored in a state_dict).
    #[arg(long, default_value_t = 28)]
    height: u32,
    /// Image width the model was trained on.
    #[arg(long, default_value_t = 28)]
    width: u32,
    /// The schedule the weights were trained with.
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Text stored in the model file's note.
    #[arg(long, default_value = "imported from PyTorch safetensors")]
    note: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SamplerArg {
    /// Ancestral sampling over all T steps (the seed's).
    Ddpm,
    /// DDIM over --steps of the T steps.
    Ddim,
}

#[derive(Clone, Copy, ValueEnum)]
enum SpacingArg {
    /// (S−1−k)·⌊T/S⌋.
    Leading,
    /// round(T − k·T/S) − 1.
    Trailing,
    /// round((S−1−k)·(T−1)/(S−1)).
    Linspace,
}

#[derive(Clone, Copy, ValueEnum)]
enum VarianceArg {
    /// σ² = β_t (the seed's).
    FixedLarge,
    /// σ² = β̃_t, the posterior variance.
    FixedSmall,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// ddpm-core on the CPU (noise of image i from seed + i, as on a microcontroller).
    Core,
    /// The same samplers in libtorch, batched, on --device.
    Torch,
}

/// The sampler flags of `sample`, shared by `eval`.
#[derive(Args)]
struct SamplerArgs {
    /// Sampler.
    #[arg(long, value_enum, default_value = "ddpm")]
    sampler: SamplerArg,
    /// DDIM steps S (1..=T).
    #[arg(long, default_value_t = 50)]
    steps: u32,
    /// DDIM η in [0, 1] (0: deterministic).
    #[arg(long, default_value_t = 0.0)]
    eta: f32,
    /// DDIM timestep spacing.
    #[arg(long, value_enum, default_value = "leading")]
    spacing: SpacingArg,
    /// DDPM step variance (also the model variance of `eval --nll`).
    #[arg(long, value_enum, default_value = "fixed-large")]
    variance: VarianceArg,
    /// Clip the predicted x0 to [−1, 1] at every step (also the model mean of `eval --nll`).
    #[arg(long)]
    clip_x0: bool,
    /// DDIM with --clip-x0: recompute ε from the clipped x0 (diffusers'
    /// use_clipped_model_output).
    #[arg(long, requires = "clip_x0")]
    recompute_eps: bool,
    /// Noise seed: image i starts from SEED + i (the core backend and `eval --fid`); it also
    /// seeds libtorch's generator (`--backend torch`) and the x_t draws of `eval --nll`.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Autoguidance: a weaker model file of the same schedule and parameterization (fewer
    /// epochs, fewer channels) whose output the model's is extrapolated away from at every
    /// step, guide + w·(model − guide) (Karras et al. 2024); two network passes per step.
    #[arg(long, value_name = "MODEL")]
    guide: Option<PathBuf>,
    /// Guidance weight w of --guide (1: the model alone).
    #[arg(long, default_value_t = 2.5, requires = "guide")]
    guidance: f32,
}

impl SamplerArgs {
    fn variance(&self) -> DdpmVariance {
        match self.variance {
            VarianceArg::FixedLarge => DdpmVariance::FixedLarge,
            VarianceArg::FixedSmall => DdpmVariance::FixedSmall,
        }
    }

    fn config(&self) -> SamplerConfig {
        match self.sampler {
            SamplerArg::Ddpm => SamplerConfig::Ddpm(DdpmConfig {
                variance: self.variance(),
                clip_x0: self.clip_x0,
            }),
            SamplerArg::Ddim => SamplerConfig::Ddim(DdimConfig {
                steps: self.steps,
                eta: self.eta,
                spacing: match self.spacing {
                    SpacingArg::Leading => Spacing::Leading,
                    SpacingArg::Trailing => Spacing::Trailing,
                    SpacingArg::Linspace => Spacing::Linspace,
                },
                clip_x0: self.clip_x0,
                recompute_eps: self.recompute_eps,
            }),
        }
    }
}

#[derive(Args)]
struct SampleArgs {
    /// Model file [default: models/simple_unet_mnist.ddpm].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Number of images.
    #[arg(long, default_value_t = 16)]
    n: usize,
    #[command(flatten)]
    sampler: SamplerArgs,
    /// PNG grid to write (near-square, 2-pixel borders, upscaled ×4).
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    /// Also write the images as u8 IDX (N×H×W, or N×C×H×W for C > 1).
    #[arg(long)]
    idx: Option<PathBuf>,
    /// Which implementation samples.
    #[arg(long, value_enum, default_value = "core")]
    backend: BackendArg,
    /// Device of --backend torch: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch CPU threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct FetchArgs {
    /// Directory to put the four decompressed MNIST files in.
    #[arg(long, default_value = "data/mnist")]
    dir: PathBuf,
    /// Base URL of a mirror (repeatable; tried in order; a file's URL is base + name + .gz)
    /// [default: ossci-datasets S3, Google cvdf-datasets, yann.lecun.com].
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
}

fn set_threads(threads: Option<usize>) -> Result<()> {
    let n = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    tch::set_num_threads(n as i32);
    Ok(())
}

fn progress_wanted(no_progress: bool) -> bool {
    !no_progress && std::io::stderr().is_terminal()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.with_extension("").into_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn run_fit(a: FitArgs) -> Result<()> {
    set_threads(a.threads)?;
    let device = parse_device(&a.device)?;
    let model = match a.arch {
        ArchArg::Simple => ModelConfig::SimpleUNet(SimpleUNetConfig {
            channels: 1,
            height: a.height,
            width: a.width,
            hidden1: a.hidden1,
            hidden2: a.hidden2,
        }),
        ArchArg::Tiny => ModelConfig::TinyUNet(TinyUNetConfig {
            channels: 1,
            height: a.height,
            width: a.width,
            widths: a.widths,
            mid_blocks: a.mid_blocks,
            emb_dim: a.emb_dim,
            temb_dim: a.temb_dim,
        }),
    };
    model
        .validate()
        .map_err(|e| anyhow::anyhow!("model sizes: {e}"))?;
    if let Some(d) = a.ema {
        if !(0.0..1.0).contains(&d) {
            bail!("--ema {d}: the decay must be in [0, 1)");
        }
    }
    if !(a.min_snr_gamma > 0.0 && a.min_snr_gamma.is_finite()) {
        bail!("--min-snr-gamma {}: γ must be positive", a.min_snr_gamma);
    }
    let lr_schedule = match a.lr_schedule {
        LrScheduleArg::Constant => train::LrSchedule::Constant,
        LrScheduleArg::Cosine => train::LrSchedule::Cosine {
            warmup: a.warmup_steps,
        },
    };
    let loss_weight = match a.loss_weight {
        LossWeightArg::Uniform => train::LossWeight::Uniform,
        LossWeightArg::MinSnr => train::LossWeight::MinSnr {
            gamma: a.min_snr_gamma,
        },
        LossWeightArg::SnrPlus => {
            if !(a.snr_plus_k >= 0.0 && a.snr_plus_k.is_finite()) {
                bail!("--snr-plus-k {}: k must be 0 or more", a.snr_plus_k);
            }
            if a.schedule.config().prediction != Prediction::V {
                bail!(
                    "--loss-weight snr-plus needs --prediction v: on the ε error its weight \
                     (SNR_t + k)/SNR_t grows without bound at the noisiest timesteps"
                );
            }
            train::LossWeight::SnrPlus { k: a.snr_plus_k }
        }
    };
    let data_dir = a.data.clone().unwrap_or_else(idx::default_data_dir);
    // Every data check happens here, before any training.
    let mut data = idx::Mnist::load(
        &data_dir,
        idx::Split::Train,
        a.height as usize,
        a.width as usize,
    )?;
    if let Some(n) = a.limit {
        data.truncate(n);
    }
    let out = a.out.clone().unwrap_or_else(|| match a.arch {
        ArchArg::Simple => PathBuf::from("runs/simple_unet.ddpm"),
        ArchArg::Tiny => PathBuf::from("runs/tiny_unet.ddpm"),
    });
    let checkpoint = a
        .checkpoint
        .clone()
        .unwrap_or_else(|| with_suffix(&out, ".ckpt.safetensors"));
    let loss_csv = a
        .loss_csv
        .clone()
        .unwrap_or_else(|| with_suffix(&out, ".loss.csv"));
    let note = format!(
        "trainer fit: arch={} data={} images={} epochs={} batch={} lr={} lr_schedule={:?} \
         loss_weight={:?} seed={} ema={} schedule={} T={} prediction={:?}",
        model.arch_name(),
        data_dir.display(),
        data.len,
        a.epochs,
        a.batch_size,
        a.lr,
        lr_schedule,
        loss_weight,
        a.seed,
        a.ema.map_or("none".into(), |d| d.to_string()),
        match a.schedule.schedule {
            ScheduleArg::Linear =>
                format!("linear({}..{})", a.schedule.beta_start, a.schedule.beta_end),
            ScheduleArg::Cosine => "cosine".to_owned(),
        },
        a.schedule.timesteps,
        a.schedule.config().prediction,
    );
    let opts = train::FitOptions {
        model,
        schedule: a.schedule.config(),
        lr: a.lr,
        batch_size: a.batch_size,
        epochs: a.epochs,
        seed: a.seed,
        ema: a.ema,
        lr_schedule,
        loss_weight,
        device,
        checkpoint,
        loss_csv: Some(loss_csv.clone()),
        out: Some(out),
        guide: a.guide_out.clone().map(|g| (g, a.guide_epochs)),
        resume: a.resume,
        progress: progress_wanted(a.no_progress),
        note,
    };
    eprintln!(
        "fit: {} ({} parameters), {} images from {} on {:?} ({} threads), {} epochs of batch \
         {}, lr {}, T = {}",
        model.arch_name(),
        model.param_count(),
        data.len,
        data.images_path.display(),
        device,
        tch::get_num_threads(),
        a.epochs,
        a.batch_size,
        a.lr,
        a.schedule.timesteps
    );
    let report = train::fit(&opts, &data, &mut |m| eprintln!("{m}"))?;
    eprintln!(
        "done: {} steps, {:.0} images/s; loss curve in {}, checkpoint {}",
        report.steps,
        report.images_per_sec,
        loss_csv.display(),
        opts.checkpoint.display()
    );
    Ok(())
}

fn run_export(a: ExportArgs) -> Result<()> {
    let (cfg, schedule, tensors, note) = if let Some(ckpt) = &a.checkpoint {
        let w = train::checkpoint_weights(ckpt, !a.raw)?;
        eprintln!(
            "export: {} weights from {}",
            if w.ema { "EMA" } else { "raw" },
            ckpt.display()
        );
        let note = if a.note.is_empty() {
            format!("exported from {}", ckpt.display())
        } else {
            a.note.clone()
        };
        (w.model, w.schedule, w.tensors, note)
    } else {
        let path = a
            .model
            .as_ref()
            .context("--checkpoint or --model is needed")?;
        let m = export::read_model_file(path)?;
        let note = if a.note.is_empty() {
            m.note
        } else {
            a.note.clone()
        };
        (m.config, m.schedule, m.tensors, note)
    };
    if a.safetensors {
        export::write_safetensors(&a.out, &tensors)?;
    } else if a.int8 && matches!(cfg, ModelConfig::TinyUNet(_)) {
        let f32_bytes = export::model_file_bytes(&cfg, &schedule, &tensors, &note)?;
        export_tiny_int8(&a, &f32_bytes, &note)?;
    } else if a.int8 {
        let f32_bytes = export::model_file_bytes(&cfg, &schedule, &tensors, &note)?;
        let data = a
            .data
            .clone()
            .unwrap_or_else(ddpm_trainer::idx::default_data_dir);
        let opts = ddpm_trainer::quantize::CalibrationOptions {
            images: a.calib_images,
            trajectories: a.calib_trajectories,
            trajectory_every: 10,
            quant: QuantOptions {
                range: a.range,
                weight_clip: a.weight_clip,
                equalize: a.equalize,
                bias_correction: a.bias_correction,
                input_bits: a.input_bits,
            },
            seed: a.seed,
            eval_images: a.eval_images,
            ablation: a.ablation,
        };
        eprintln!(
            "export --int8: calibrating on {} noised training images and {} DDPM trajectories ({:?})",
            opts.images, opts.trajectories, opts.quant
        );
        let q = &opts.quant;
        let (bytes, report) = ddpm_trainer::quantize::quantize_model(
            &f32_bytes,
            &data,
            &opts,
            &format!(
                "{note} (int8, int{} input, {:?} ranges, {:?} weight clip, equalize {:?}, \
                 bias correction {})",
                q.input_bits, q.range, q.weight_clip, q.equalize, q.bias_correction
            ),
        )?;
        let [x, e1, e2, d1] = report.activations;
        eprintln!(
            "int8 vs f32 relative RMS error on {} noised test images: input {x:.4}, enc1 {e1:.4}, \
             enc2+temb {e2:.4}, dec1 {d1:.4}, eps {:.4} (simulated in real numbers: {:.4})",
            opts.eval_images, report.eps, report.sim_eps
        );
        for (what, e) in &report.ablation {
            eprintln!("  ablation, eps error with {what}: {e:.4}");
        }
        ddpm_trainer::atomic::write_atomic(&a.out, &bytes)?;
    } else {
        let bytes = export::model_file_bytes(&cfg, &schedule, &tensors, &note)?;
        ddpm_trainer::atomic::write_atomic(&a.out, &bytes)?;
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

/// `export --int8` of a TinyUNet (see `ddpm_trainer::quantize_tiny`).
fn export_tiny_int8(a: &ExportArgs, f32_bytes: &[u8], note: &str) -> Result<()> {
    let data = a
        .data
        .clone()
        .unwrap_or_else(ddpm_trainer::idx::default_data_dir);
    let opts = ddpm_trainer::quantize::CalibrationOptions {
        images: a.calib_images,
        trajectories: a.calib_trajectories,
        trajectory_every: 1,
        // The TinyUNet quantizer uses only the range method: max-abs weight scales, int8 input,
        // no equalization or bias correction.
        quant: QuantOptions {
            range: a.range,
            weight_clip: ddpm_core::quantize::WeightClip::Max,
            equalize: ddpm_core::quantize::Equalize::Off,
            bias_correction: false,
            input_bits: 8,
        },
        seed: a.seed,
        eval_images: a.eval_images,
        ablation: false,
    };
    eprintln!(
        "export --int8 (TinyUNet): calibrating on {} noised training images and {} DDIM-{} \
         trajectories ({:?} ranges; --weight-clip, --equalize, --bias-correction, --input-bits \
         and --ablation apply to SimpleUNet only)",
        opts.images,
        opts.trajectories,
        ddpm_trainer::quantize_tiny::CALIBRATION_DDIM_STEPS,
        opts.quant.range
    );
    let (bytes, r) = ddpm_trainer::quantize_tiny::quantize_tiny_model(
        f32_bytes,
        &data,
        &opts,
        &format!("{note} (int8, {:?} ranges)", opts.quant.range),
    )?;
    // Each stored activation by the layer that writes it (x: the quantized input).
    let producers = ["input", "enc0", "down1", "down2", "mid", "up2", "up1"]
        .into_iter()
        .chain(
            ddpm_core::tiny_int8::LAYERS[ddpm_core::tiny_int8::EXTRA_MID_LAYER..]
                .iter()
                .copied(),
        );
    let figures: Vec<String> = producers
        .zip(&r.activations)
        .map(|(name, v)| format!("{name} {v:.4}"))
        .collect();
    eprintln!(
        "int8 vs f32 relative RMS error on {} noised test images: {}, eps {:.4}",
        opts.eval_images,
        figures.join(", "),
        r.eps
    );
    ddpm_trainer::atomic::write_atomic(&a.out, &bytes)
}

fn run_import(a: ImportArgs) -> Result<()> {
    let (cfg, tensors) = export::read_safetensors_state_dict(&a.safetensors, a.height, a.width)?;
    let bytes = export::model_file_bytes(&cfg, &a.schedule.config(), &tensors, &a.note)?;
    ddpm_trainer::atomic::write_atomic(&a.out, &bytes)?;
    eprintln!("wrote {} ({cfg:?})", a.out.display());
    Ok(())
}

fn run_sample(a: SampleArgs) -> Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let path = a
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    if !path.is_file() {
        bail!(
            "{}: no such model file (train one with `trainer fit --out FILE` and pass \
             --model FILE, or run from the project root for the default {DEFAULT_MODEL})",
            path.display()
        );
    }
    let cfg = a.sampler.config();
    let start = Instant::now();
    let (mcfg, values) = match a.backend {
        BackendArg::Core => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let mut host = ddpm_core::host::HostModel::from_bytes(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let mut guide = match &a.sampler.guide {
                Some(g) => {
                    let gb = std::fs::read(g)
                        .with_context(|| format!("{}: cannot read", g.display()))?;
                    let gh = ddpm_core::host::HostModel::from_bytes(&gb)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", g.display()))?;
                    sample::check_guide(
                        (host.config(), host.schedule_config()),
                        (gh.config(), gh.schedule_config()),
                        g,
                    )?;
                    Some(gh)
                }
                None => None,
            };
            let mcfg = *host.config();
            let bar = bar_for(a.n as u64, progress_wanted(a.no_progress), "images");
            let mut values = Vec::with_capacity(a.n * mcfg.image_len());
            for i in 0..a.n {
                let seed = a.sampler.seed.wrapping_add(i as u64);
                let one = match guide.as_mut() {
                    Some(g) => host.sample_guided(g, a.sampler.guidance, 1, &cfg, seed),
                    None => host.sample(1, &cfg, seed),
                }
                .map_err(|e| anyhow::anyhow!("sampling: {e}"))?;
                values.extend_from_slice(&one);
                bar.inc(1);
            }
            bar.finish_and_clear();
            (mcfg, values)
        }
        BackendArg::Torch => {
            set_threads(a.threads)?;
            let device = parse_device(&a.device)?;
            let m = export::read_model_file(&path)?;
            let mut vs = tch::nn::VarStore::new(device);
            let net = model::Net::new(&vs.root(), m.config);
            model::load_params(&mut vs, &m.config, &m.tensors, &path.display().to_string())?;
            let sched = ddpm_core::Schedule::new(&m.schedule)
                .map_err(|e| anyhow::anyhow!("{}: schedule: {e}", path.display()))?;
            let mut guide_vs = tch::nn::VarStore::new(device);
            let guide_net = match &a.sampler.guide {
                Some(g) => {
                    let gm = export::read_model_file(g)?;
                    sample::check_guide((&m.config, &m.schedule), (&gm.config, &gm.schedule), g)?;
                    let gnet = model::Net::new(&guide_vs.root(), gm.config);
                    model::load_params(
                        &mut guide_vs,
                        &gm.config,
                        &gm.tensors,
                        &g.display().to_string(),
                    )?;
                    Some(gnet)
                }
                None => None,
            };
            let guide = guide_net.as_ref().map(|g| (g, a.sampler.guidance));
            let bar = bar_for(0, progress_wanted(a.no_progress), "steps");
            let x = sample::sample_torch(
                &net,
                guide,
                &sched,
                &cfg,
                a.n,
                a.sampler.seed,
                device,
                |k, n| {
                    bar.set_length(n as u64);
                    bar.set_position(k as u64);
                },
            )?;
            bar.finish_and_clear();
            (m.config, model::to_f32_vec(&x)?)
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let pixels = sample::to_pixels(&values);
    let chw = (mcfg.channels(), mcfg.height(), mcfg.width());
    sample::write_png_grid(
        &a.out,
        &pixels,
        a.n,
        chw,
        sample::GridLayout::for_count(a.n),
    )?;
    eprintln!(
        "wrote {} ({} images from {} in {secs:.1} s)",
        a.out.display(),
        a.n,
        path.display()
    );
    if let Some(idx_path) = &a.idx {
        let dims: Vec<usize> = if chw.0 == 1 {
            vec![a.n, chw.1, chw.2]
        } else {
            vec![a.n, chw.0, chw.1, chw.2]
        };
        idx::write_idx(idx_path, &dims, &pixels)?;
        eprintln!("wrote {}", idx_path.display());
    }
    Ok(())
}

fn bar_for(len: u64, show: bool, unit: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} {unit} [{{elapsed_precise}}<{{eta_precise}}]"
        ))
        .expect("valid progress template"),
    );
    bar
}

fn run_fetch(a: FetchArgs) -> Result<()> {
    let mirrors: Vec<String> = if a.mirrors.is_empty() {
        fetch::DEFAULT_MIRRORS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        a.mirrors.clone()
    };
    fetch::fetch_mnist(&a.dir, &mirrors, progress_wanted(a.no_progress), &mut |m| {
        eprintln!("{m}")
    })?;
    eprintln!("MNIST is in {}", a.dir.display());
    Ok(())
}

#[derive(Args)]
struct ClassifierArgs {
    /// Directory holding the MNIST train and test IDX files [default: data/mnist if present,
    /// else ../shared/data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Classifier file to write (safetensors).
    #[arg(long, default_value = ddpm_trainer::classifier::DEFAULT_PATH)]
    out: PathBuf,
    /// Passes over the training images.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Images per Adam step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of the initial weights and the shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only (quick runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Refuse to write the file when the test accuracy is below this fraction (the project
    /// requires 0.985 of the cached classifier).
    #[arg(long, default_value_t = ddpm_trainer::classifier::REQUIRED_TEST_ACCURACY)]
    min_accuracy: f64,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch CPU threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar (also off when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

fn run_classifier(a: ClassifierArgs) -> Result<()> {
    use ddpm_trainer::classifier::{self, ClassifierOptions};
    set_threads(a.threads)?;
    let device = parse_device(&a.device)?;
    let data_dir = a.data.clone().unwrap_or_else(idx::default_data_dir);
    let opts = ClassifierOptions {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        device,
        limit: a.limit,
        min_accuracy: a.min_accuracy,
        progress: progress_wanted(a.no_progress),
    };
    eprintln!(
        "classifier: MNIST from {} on {:?} ({} threads), {} epochs of batch {}, lr {}, seed {}",
        data_dir.display(),
        device,
        tch::get_num_threads(),
        a.epochs,
        a.batch_size,
        a.lr,
        a.seed
    );
    let (net, report) = classifier::train_from_dir(&data_dir, &opts, &mut |m| eprintln!("{m}"))?;
    net.save(&a.out)?;
    println!(
        "test accuracy {:.2}% ({} test images; trained on {} images in {:.0} s, {} parameters)",
        100.0 * report.test_accuracy,
        report.test_images,
        report.train_images,
        report.seconds,
        net.param_count()
    );
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

/// The sampler flags of `sample`, with defaults suited to comparing many images (DDIM, 10 steps).
#[derive(Args)]
struct CompareSamplerArgs {
    /// Sampler.
    #[arg(long, value_enum, default_value = "ddim")]
    sampler: SamplerArg,
    /// DDIM steps S (1..=T).
    #[arg(long, default_value_t = 10)]
    steps: u32,
    /// DDIM η in [0, 1] (0: deterministic).
    #[arg(long, default_value_t = 0.0)]
    eta: f32,
    /// DDIM timestep spacing.
    #[arg(long, value_enum, default_value = "leading")]
    spacing: SpacingArg,
    /// DDPM step variance.
    #[arg(long, value_enum, default_value = "fixed-large")]
    variance: VarianceArg,
    /// Clip the predicted x0 to [−1, 1] at every step.
    #[arg(long)]
    clip_x0: bool,
}

impl CompareSamplerArgs {
    fn config(&self) -> SamplerConfig {
        match self.sampler {
            SamplerArg::Ddpm => SamplerConfig::Ddpm(DdpmConfig {
                variance: match self.variance {
                    VarianceArg::FixedLarge => DdpmVariance::FixedLarge,
                    VarianceArg::FixedSmall => DdpmVariance::FixedSmall,
                },
                clip_x0: self.clip_x0,
            }),
            SamplerArg::Ddim => SamplerConfig::Ddim(DdimConfig {
                steps: self.steps,
                eta: self.eta,
                spacing: match self.spacing {
                    SpacingArg::Leading => Spacing::Leading,
                    SpacingArg::Trailing => Spacing::Trailing,
                    SpacingArg::Linspace => Spacing::Linspace,
                },
                clip_x0: self.clip_x0,
                recompute_eps: false,
            }),
        }
    }
}

/// Where samples are judged, shared by `eval` and `compare-int8`: the classifier, the data,
/// the devices and the thread counts.
#[derive(Args)]
struct JudgeArgs {
    /// The MNIST classifier that judges samples (trained and cached there when missing, which
    /// takes minutes).
    #[arg(long, default_value = ddpm_trainer::classifier::DEFAULT_PATH)]
    classifier: PathBuf,
    /// MNIST directory: test images (eval's bound and reference features), training images
    /// (eval's real-image floor and a missing classifier) [default: data/mnist if present, else
    /// ../shared/data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Device of the classifier (and of the network for eval --nll): auto, cpu, cuda or cuda:N.
    /// Samples are drawn through ddpm-core on the CPU.
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch CPU threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Threads drawing the samples through ddpm-core, each a run of whole images (results do
    /// not depend on it) [default: all cores].
    #[arg(long)]
    workers: Option<usize>,
}

impl JudgeArgs {
    /// Sets libtorch's thread count and returns the device.
    fn setup(&self) -> Result<tch::Device> {
        set_threads(self.threads)?;
        parse_device(&self.device)
    }

    fn data_dir(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(idx::default_data_dir)
    }

    fn workers(&self) -> Result<usize> {
        let n = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if n == 0 {
            bail!("--workers must be at least 1");
        }
        Ok(n)
    }
}

#[derive(Args)]
struct CompareInt8Args {
    /// f32 model file [default: models/simple_unet_mnist.ddpm].
    #[arg(long, value_name = "F32FILE")]
    model: Option<PathBuf>,
    /// Its int8 export (`trainer export --int8`).
    #[arg(
        long,
        value_name = "INT8FILE",
        default_value = "models/simple_unet_mnist_int8.ddpm"
    )]
    int8: PathBuf,
    /// Images per model; image i of both uses noise seed SEED + i.
    #[arg(long, default_value_t = 100)]
    n: usize,
    #[command(flatten)]
    sampler: CompareSamplerArgs,
    /// Noise seed of image 0.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// PNG to write: rows of f32 samples, each followed by the row of their int8 twins.
    #[arg(long, default_value = "side_by_side.png")]
    out: PathBuf,
    #[command(flatten)]
    judge: JudgeArgs,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn run_compare_int8(a: CompareInt8Args) -> Result<()> {
    use ddpm_trainer::{classifier, compare};
    let device = a.judge.setup()?;
    let model_path = a
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    for (flag, p) in [("--model", &model_path), ("--int8", &a.int8)] {
        if !p.is_file() {
            bail!(
                "{}: no such model file ({flag}; the int8 file comes from \
                 `trainer export --model F32FILE --int8 --out INT8FILE`)",
                p.display()
            );
        }
    }
    let clf = classifier::load_or_train(&a.judge.classifier, &a.judge.data_dir(), device)?;
    let opts = compare::CompareOptions {
        n: a.n,
        sampler: a.sampler.config(),
        seed: a.seed,
        workers: a.judge.workers()?,
        progress: progress_wanted(a.no_progress),
    };
    eprintln!(
        "compare-int8: {} images each from {} and {}, {:?}, seeds {}..={}",
        a.n,
        model_path.display(),
        a.int8.display(),
        opts.sampler,
        a.seed,
        a.seed.wrapping_add(a.n.saturating_sub(1) as u64)
    );
    let (r, _) = compare::compare(&model_path, &a.int8, &clf, &opts, Some(&a.out))?;
    let l = &r.labels;
    println!(
        "images: {} per model, {:?}, seed {}",
        r.n, opts.sampler, a.seed
    );
    println!(
        "mean |f32 - int8| pixel difference: {:.2} (0-255 scale); largest {}",
        r.mean_abs_diff, r.max_abs_diff
    );
    println!(
        "same classifier label: {:.1}% ({} of {})",
        100.0 * l.same_label,
        (l.same_label * l.n as f64).round(),
        l.n
    );
    println!(
        "classifier-confident (top probability > {}): f32 {:.1}%, int8 {:.1}%",
        classifier::CONFIDENT_PROB,
        100.0 * l.confident_f32,
        100.0 * l.confident_int8
    );
    println!(
        "labels f32:  {}",
        compare::format_histogram(&l.histogram_f32)
    );
    println!(
        "labels int8: {}",
        compare::format_histogram(&l.histogram_int8)
    );
    println!(
        "sampling time: f32 (host) {:.1} s, int8 (row streaming) {:.1} s",
        r.f32_seconds, r.int8_seconds
    );
    eprintln!(
        "wrote {} (f32 rows, each followed by the int8 row of the same seeds)",
        a.out.display()
    );
    Ok(())
}

#[derive(Args)]
struct EvalArgs {
    /// Model file [default: models/simple_unet_mnist.ddpm].
    #[arg(long)]
    model: Option<PathBuf>,
    /// The variational bound (L_0, Σ L_{t−1}, L_T) in bits/dim on the MNIST test images, one
    /// x_t per image and step, with --variance and --clip-x0 defining p_θ.
    #[arg(long)]
    nll: bool,
    /// Sample quality: classifier-feature Fréchet distance to the test set, IS analog,
    /// confident share and labels of --samples images, and the same for real training images.
    #[arg(long)]
    fid: bool,
    /// --nll: the first N test images only [default: all 10,000].
    #[arg(long)]
    limit: Option<usize>,
    /// --nll: images per batch through the network.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// --nll: write the mean of every step's term (bits/dim) as CSV here.
    #[arg(long)]
    curve: Option<PathBuf>,
    /// --fid: number of samples (and of real training images for the floor).
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    #[command(flatten)]
    sampler: SamplerArgs,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Write all figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
}

fn run_eval(a: EvalArgs) -> Result<()> {
    use ddpm_trainer::eval;
    let device = a.judge.setup()?;
    let workers = a.judge.workers()?;
    let opts = eval::EvalOptions {
        model: a.model.unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL)),
        nll: a.nll,
        fid: a.fid,
        data: a.judge.data_dir(),
        device,
        progress: progress_wanted(a.no_progress),
        json: a.json,
        bound: eval::nll::BoundOptions {
            variance: a.sampler.variance(),
            clip_x0: a.sampler.clip_x0,
            seed: a.sampler.seed,
        },
        limit: a.limit,
        batch: a.batch,
        curve: a.curve,
        sampler: a.sampler.config(),
        guide: a.sampler.guide.clone().map(|g| (g, a.sampler.guidance)),
        seed: a.sampler.seed,
        samples: a.samples,
        workers,
        classifier: a.judge.classifier,
    };
    eval::run(&opts)
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fit(a) => run_fit(a),
        Command::Export(a) => run_export(a),
        Command::Import(a) => run_import(a),
        Command::Sample(a) => run_sample(a),
        Command::FetchData(a) => run_fetch(a),
        Command::Classifier(a) => run_classifier(a),
        Command::CompareInt8(a) => run_compare_int8(a),
        Command::Eval(a) => run_eval(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
