//! `fit`'s options from what is asked for: the network's architecture and sizes, the loss
//! weighting and the output files, each checked before any data is read or any step is taken.
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use ddpm_core::{ModelConfig, Prediction, ScheduleConfig};
use tch::Device;

use super::{FitOptions, LossWeight, LrSchedule};
use crate::data::idx::{self, Mnist};

/// The network architecture to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// The lecture notes' SimpleUNet.
    Simple,
    /// TinyUNet.
    Tiny,
}

/// The per-image loss weighting asked for; its parameter comes from [`FitRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossWeightKind {
    /// [`LossWeight::Uniform`].
    Uniform,
    /// [`LossWeight::MinSnr`] with `min_snr_gamma`.
    MinSnr,
    /// [`LossWeight::SnrPlus`] with `snr_plus_k` (v-prediction only).
    SnrPlus,
}

/// Everything `fit` is asked for, before it is checked.
#[derive(Debug, Clone)]
pub struct FitRequest {
    /// Network architecture (for the default output file).
    pub arch: Arch,
    /// The network's sizes, checked by [`FitRequest::prepare`].
    pub model: ModelConfig,
    /// The noise schedule and parameterization.
    pub schedule: ScheduleConfig,
    /// The schedule as the note names it (`linear(START..END)` or `cosine`).
    pub schedule_name: String,
    /// MNIST directory (train split) [default: [`idx::default_data_dir`]].
    pub data: Option<PathBuf>,
    /// Train on the first N images only.
    pub limit: Option<usize>,
    /// Epochs in total.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of every random draw.
    pub seed: u64,
    /// EMA decay, in [0, 1).
    pub ema: Option<f64>,
    /// Learning-rate schedule.
    pub lr_schedule: LrSchedule,
    /// Per-image loss weight.
    pub loss_weight: LossWeightKind,
    /// A class-conditional model's probability of dropping a training label, in [0, 1).
    pub label_drop: f64,
    /// γ of min-SNR (positive).
    pub min_snr_gamma: f64,
    /// k of snr-plus (0 or more).
    pub snr_plus_k: f64,
    /// Device to train on.
    pub device: Device,
    /// Model file written at the end [default: [`default_out`]].
    pub out: Option<PathBuf>,
    /// The guide's file and epoch count.
    pub guide: Option<(PathBuf, usize)>,
    /// Checkpoint [default: OUT with `.ckpt.safetensors`].
    pub checkpoint: Option<PathBuf>,
    /// Loss CSV [default: OUT with `.loss.csv`].
    pub loss_csv: Option<PathBuf>,
    /// Start from a model file's weights.
    pub init: Option<PathBuf>,
    /// Continue from the checkpoint.
    pub resume: bool,
    /// Show progress bars.
    pub progress: bool,
}

/// The model file `fit` writes by default for `arch`.
pub fn default_out(arch: Arch) -> PathBuf {
    match arch {
        Arch::Simple => PathBuf::from("runs/simple_unet.ddpm"),
        Arch::Tiny => PathBuf::from("runs/tiny_unet.ddpm"),
    }
}

/// `path` with its extension replaced by `suffix` (which may hold dots).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.with_extension("").into_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The learning-rate schedule in the words of `fit`'s flags, as the note records it:
/// `constant`, or `cosine warmup_steps=N`.
pub fn describe_lr_schedule(s: LrSchedule) -> String {
    match s {
        LrSchedule::Constant => "constant".to_owned(),
        LrSchedule::Cosine { warmup } => format!("cosine warmup_steps={warmup}"),
    }
}

/// The loss weight in the words of `fit`'s flags, as the note records it: `uniform`,
/// `min-snr min_snr_gamma=Γ` or `snr-plus snr_plus_k=K`.
pub fn describe_loss_weight(w: LossWeight) -> String {
    match w {
        LossWeight::Uniform => "uniform".to_owned(),
        LossWeight::MinSnr { gamma } => format!("min-snr min_snr_gamma={gamma}"),
        LossWeight::SnrPlus { k } => format!("snr-plus snr_plus_k={k}"),
    }
}

impl FitRequest {
    /// The loss weight, checked (snr-plus needs v-prediction).
    fn loss_weight(&self) -> Result<LossWeight> {
        Ok(match self.loss_weight {
            LossWeightKind::Uniform => LossWeight::Uniform,
            LossWeightKind::MinSnr => LossWeight::MinSnr {
                gamma: self.min_snr_gamma,
            },
            LossWeightKind::SnrPlus => {
                if !(self.snr_plus_k >= 0.0 && self.snr_plus_k.is_finite()) {
                    bail!("--snr-plus-k {}: k must be 0 or more", self.snr_plus_k);
                }
                if self.schedule.prediction != Prediction::V {
                    bail!(
                        "--loss-weight snr-plus needs --prediction v: on the ε error its weight \
                         (SNR_t + k)/SNR_t grows without bound at the noisiest timesteps"
                    );
                }
                LossWeight::SnrPlus { k: self.snr_plus_k }
            }
        })
    }

    /// Checks every setting, then loads the training data (every data check happens here,
    /// before any training); returns the options of [`super::fit`] and the data.
    pub fn prepare(&self) -> Result<(FitOptions, Mnist)> {
        let model = self.model;
        model
            .validate()
            .map_err(|e| anyhow::anyhow!("model sizes: {e}"))?;
        if let Some(d) = self.ema {
            if !(0.0..1.0).contains(&d) {
                bail!("--ema {d}: the decay must be in [0, 1)");
            }
        }
        if !(self.min_snr_gamma > 0.0 && self.min_snr_gamma.is_finite()) {
            bail!("--min-snr-gamma {}: γ must be positive", self.min_snr_gamma);
        }
        let loss_weight = self.loss_weight()?;
        if !(0.0..1.0).contains(&self.label_drop) {
            bail!(
                "--label-drop {}: the probability must be in [0, 1)",
                self.label_drop
            );
        }
        let data_dir = self.data.clone().unwrap_or_else(idx::default_data_dir);
        let mut data = Mnist::load(&data_dir, idx::Split::Train, model.height(), model.width())?;
        if let Some(n) = self.limit {
            data.truncate(n);
        }
        let out = self.out.clone().unwrap_or_else(|| default_out(self.arch));
        let checkpoint = self
            .checkpoint
            .clone()
            .unwrap_or_else(|| with_suffix(&out, ".ckpt.safetensors"));
        let loss_csv = self
            .loss_csv
            .clone()
            .unwrap_or_else(|| with_suffix(&out, ".loss.csv"));
        let classes = match model {
            ModelConfig::TinyUNet(c) if c.is_conditional() => {
                format!(" classes={} label_drop={}", c.classes, self.label_drop)
            }
            _ => String::new(),
        };
        let classes = match &self.init {
            Some(p) => format!("{classes} init={}", p.display()),
            None => classes,
        };
        let note = format!(
            "trainer fit: arch={} data={} images={} epochs={} batch={} lr={} lr_schedule={} \
             loss_weight={} seed={} ema={} schedule={} T={} prediction={}{classes}",
            model.arch_name(),
            data_dir.display(),
            data.len,
            self.epochs,
            self.batch_size,
            self.lr,
            describe_lr_schedule(self.lr_schedule),
            describe_loss_weight(loss_weight),
            self.seed,
            self.ema.map_or("none".into(), |d| d.to_string()),
            self.schedule_name,
            self.schedule.timesteps,
            match self.schedule.prediction {
                Prediction::Eps => "eps",
                Prediction::V => "v",
            },
        );
        let opts = FitOptions {
            model,
            schedule: self.schedule,
            lr: self.lr,
            batch_size: self.batch_size,
            epochs: self.epochs,
            seed: self.seed,
            ema: self.ema,
            lr_schedule: self.lr_schedule,
            loss_weight,
            label_drop: self.label_drop,
            device: self.device,
            checkpoint,
            loss_csv: Some(loss_csv),
            out: Some(out),
            guide: self.guide.clone(),
            init: self.init.clone(),
            resume: self.resume,
            progress: self.progress,
            note,
        };
        Ok((opts, data))
    }
}
