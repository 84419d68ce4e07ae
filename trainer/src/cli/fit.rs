//! `trainer fit`.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{ArgMatches, Args, ValueEnum};
use ddpm_core::{ModelConfig, SimpleUNetConfig, TinyUNetConfig};
use ddpm_trainer::train::config::{Arch, FitRequest, LossWeightKind};
use ddpm_trainer::{device_name, parse_device, progress, train};

use super::{given, ScheduleArgs, Threads};

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

/// Classes of a `--conditional` model: MNIST's ten digits.
const MNIST_CLASSES: u32 = 10;

#[derive(Args)]
pub struct FitArgs {
    /// Directory holding train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]
    /// [default: $DDPM_DATA, else data/mnist]. Fashion-MNIST works too.
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
    /// --arch tiny: a class-conditional TinyUNet (classifier-free guidance): a class
    /// embedding of the 10 digits plus one "no class" entry joins the time embedding; the
    /// training label is replaced by "no class" with probability --label-drop. Sample with
    /// `sample --class K --cfg W`.
    #[arg(long)]
    conditional: bool,
    /// --conditional: probability that an image's label is dropped ("no class") in training,
    /// so the one network also learns the unconditional output that guidance needs.
    #[arg(long, default_value_t = 0.1)]
    label_drop: f64,
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
    /// Learning-rate schedule: `constant` (the lecture notes') or `cosine`: linear warm-up over
    /// --warmup-steps, then half a cosine from --lr down to 0 at the last step of --epochs.
    #[arg(long, value_enum, default_value = "constant")]
    lr_schedule: LrScheduleArg,
    /// --lr-schedule cosine: steps of linear warm-up from 0 to --lr.
    #[arg(long, default_value_t = 200)]
    warmup_steps: u64,
    /// Per-image loss weight: `uniform` (the lecture notes' plain ε MSE, or plain v MSE with
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
    /// Start from the weights of this model file instead of a fresh initialisation (the same
    /// network and schedule; for --conditional also the unconditional network of the same
    /// sizes, whose class embedding then starts at zero).
    #[arg(long, value_name = "MODEL")]
    init: Option<PathBuf>,
    /// Continue from the checkpoint up to --epochs (same settings needed; --lr may change).
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    threads: Threads,
    /// No progress bar (also off when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ArchArg {
    /// The lecture notes' SimpleUNet: four 3×3 convs at full resolution (--hidden1, --hidden2).
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

impl FitArgs {
    /// Refuses the flags that the chosen --arch, --lr-schedule, --loss-weight and --schedule
    /// do not read; `m` tells flags given from defaults.
    fn refuse_inapplicable(&self, m: &ArgMatches) -> Result<()> {
        let (other_arch, other_net, ids): (&str, &str, &[(&str, &str)]) = match self.arch {
            ArchArg::Simple => (
                "tiny",
                "TinyUNet",
                &[
                    ("widths", "--widths"),
                    ("mid_blocks", "--mid-blocks"),
                    ("emb_dim", "--emb-dim"),
                    ("temb_dim", "--temb-dim"),
                ],
            ),
            ArchArg::Tiny => (
                "simple",
                "SimpleUNet",
                &[("hidden1", "--hidden1"), ("hidden2", "--hidden2")],
            ),
        };
        if let Some((_, flag)) = ids.iter().find(|(id, _)| given(m, id)) {
            bail!("{flag} applies to --arch {other_arch} only: it is a size of the {other_net}");
        }
        if self.conditional && matches!(self.arch, ArchArg::Simple) {
            bail!(
                "--conditional applies to --arch tiny only: the class embedding joins the \
                 TinyUNet's time embedding"
            );
        }
        if !self.conditional && given(m, "label_drop") {
            bail!(
                "--label-drop applies to --conditional only: an unconditional model has no labels"
            );
        }
        if !(0.0..1.0).contains(&self.label_drop) {
            bail!(
                "--label-drop {} must be in [0, 1): it is the probability that a label is dropped",
                self.label_drop
            );
        }
        if matches!(self.lr_schedule, LrScheduleArg::Constant) && given(m, "warmup_steps") {
            bail!("--warmup-steps applies to --lr-schedule cosine only: a constant rate has no warm-up");
        }
        if !matches!(self.loss_weight, LossWeightArg::MinSnr) && given(m, "min_snr_gamma") {
            bail!("--min-snr-gamma applies to --loss-weight min-snr only: it is that weight's γ");
        }
        if !matches!(self.loss_weight, LossWeightArg::SnrPlus) && given(m, "snr_plus_k") {
            bail!("--snr-plus-k applies to --loss-weight snr-plus only: it is that weight's k");
        }
        self.schedule.refuse_inapplicable(m)
    }
}

/// Trains as asked and reports; `m` are the subcommand's parsed arguments (to tell flags given
/// from defaults).
pub fn run(a: FitArgs, m: &ArgMatches) -> Result<()> {
    a.refuse_inapplicable(m)?;
    a.threads.apply()?;
    let device = parse_device(&a.device)?;
    let request = FitRequest {
        arch: match a.arch {
            ArchArg::Simple => Arch::Simple,
            ArchArg::Tiny => Arch::Tiny,
        },
        model: match a.arch {
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
                classes: if a.conditional { MNIST_CLASSES } else { 0 },
            }),
        },
        schedule: a.schedule.config(),
        schedule_name: a.schedule.describe(),
        data: a.data,
        limit: a.limit,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        ema: a.ema,
        lr_schedule: match a.lr_schedule {
            LrScheduleArg::Constant => train::LrSchedule::Constant,
            LrScheduleArg::Cosine => train::LrSchedule::Cosine {
                warmup: a.warmup_steps,
            },
        },
        loss_weight: match a.loss_weight {
            LossWeightArg::Uniform => LossWeightKind::Uniform,
            LossWeightArg::MinSnr => LossWeightKind::MinSnr,
            LossWeightArg::SnrPlus => LossWeightKind::SnrPlus,
        },
        label_drop: a.label_drop,
        min_snr_gamma: a.min_snr_gamma,
        snr_plus_k: a.snr_plus_k,
        device,
        out: a.out,
        guide: a.guide_out.map(|g| (g, a.guide_epochs)),
        checkpoint: a.checkpoint,
        init: a.init,
        loss_csv: a.loss_csv,
        resume: a.resume,
        progress: progress::wanted(a.no_progress),
    };
    let (opts, data) = request.prepare()?;
    let model = opts.model;
    eprintln!(
        "fit: {} ({} parameters), {} images from {} on {} ({} threads), {} epochs of batch \
         {}, lr {}, T = {}",
        model.arch_name(),
        model.param_count(),
        data.len,
        data.images_path.display(),
        device_name(device),
        tch::get_num_threads(),
        opts.epochs,
        opts.batch_size,
        opts.lr,
        opts.schedule.timesteps
    );
    let report = train::fit(&opts, &data, &mut |m| eprintln!("{m}"))?;
    eprintln!(
        "done: {} steps, {:.0} images/s; loss curve in {}, checkpoint {}",
        report.steps,
        report.images_per_sec,
        opts.loss_csv
            .as_deref()
            .unwrap_or(&opts.checkpoint)
            .display(),
        opts.checkpoint.display()
    );
    Ok(())
}
