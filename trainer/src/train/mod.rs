//! `trainer fit`: the seed's training recipe (ε-prediction MSE, Adam) on a dataset held on the
//! device as one tensor, with per-epoch atomic checkpoints that a later run resumes exactly.
//!
//! Randomness: the global torch generator is re-seeded from (seed, epoch) before each epoch's
//! shuffle and from (seed, step) before each step's draws of t and ε. So the generator state at
//! any epoch boundary is fully described by the seed and the step counter saved in the
//! checkpoint, and a resumed run continues with exactly the numbers an uninterrupted run uses.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use ddpm_core::file::{Guide, Recipe};
use ddpm_core::{ModelConfig, Prediction, ScheduleConfig, ScheduleKind, SimpleUNetConfig};
use indicatif::{ProgressBar, ProgressStyle};
use tch::{Device, Kind, Tensor};

use crate::data::idx::Mnist;
use ddpm_torch::export;
use ddpm_torch::schedule::DeviceSchedule;

mod checkpoint;
pub mod config;
mod objective;
mod state;

pub use checkpoint::{checkpoint_weights, CheckpointWeights};
pub use objective::{eps_loss, LossWeight, LrSchedule};
pub use state::{derive_seed, Trainer};

#[allow(unused_imports)]
use checkpoint::*;
#[allow(unused_imports)]
use state::*;

/// Adam's β1, β2 and ε (PyTorch's defaults, as the seed uses).
pub const ADAM_BETAS: (f64, f64) = (0.9, 0.999);
/// Adam's ε.
pub const ADAM_EPS: f64 = 1e-8;

/// Everything `fit` needs to know.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Network architecture and sizes.
    pub model: ModelConfig,
    /// Noise schedule.
    pub schedule: ScheduleConfig,
    /// Adam learning rate.
    pub lr: f64,
    /// Images per step.
    pub batch_size: usize,
    /// Total epochs (a resumed run continues up to this many).
    pub epochs: usize,
    /// Seed of every random draw (initial weights, shuffles, t, ε).
    pub seed: u64,
    /// EMA decay of the weights; the EMA is exported instead of the raw weights when set.
    pub ema: Option<f64>,
    /// How the learning rate changes over the run.
    pub lr_schedule: LrSchedule,
    /// How each image's ε error is weighted by its timestep.
    pub loss_weight: LossWeight,
    /// A class-conditional model: the probability that an image's label is replaced by "no
    /// class" in a step (classifier-free guidance's joint training).
    pub label_drop: f64,
    /// Device to train on.
    pub device: Device,
    /// Checkpoint file (safetensors), written atomically after every epoch.
    pub checkpoint: PathBuf,
    /// CSV of the per-step loss, rewritten atomically after every epoch.
    pub loss_csv: Option<PathBuf>,
    /// Model file written at the end (ddpm-core format).
    pub out: Option<PathBuf>,
    /// A guide for autoguidance (`sample --guide`): the exported weights (EMA when set) after
    /// this many epochs, written as a model file to this path; the epoch count must be below
    /// `epochs`.
    pub guide: Option<(PathBuf, usize)>,
    /// Start from the weights of this model file (the same network, or its unconditional
    /// twin for a class-conditional run) instead of a fresh initialisation.
    pub init: Option<PathBuf>,
    /// Continue from `checkpoint`.
    pub resume: bool,
    /// Draw a progress bar.
    pub progress: bool,
    /// Text recorded in the model file's note.
    pub note: String,
}

impl FitOptions {
    /// The seed's recipe on `device`, writing `checkpoint`.
    pub fn seed_recipe(device: Device, checkpoint: PathBuf) -> Self {
        Self {
            model: ModelConfig::SimpleUNet(SimpleUNetConfig::SEED),
            schedule: ScheduleConfig::default(),
            lr: 2e-4,
            batch_size: 128,
            epochs: 5,
            seed: 0,
            ema: None,
            lr_schedule: LrSchedule::Constant,
            loss_weight: LossWeight::Uniform,
            label_drop: 0.1,
            device,
            checkpoint,
            loss_csv: None,
            out: None,
            guide: None,
            init: None,
            resume: false,
            progress: false,
            note: String::new(),
        }
    }

    /// The settings a resumed run must share with the run that wrote the checkpoint, as text.
    fn identity(&self, n_images: usize) -> String {
        let model = match &self.model {
            ModelConfig::SimpleUNet(m) => format!(
                "model=SimpleUNet channels={} height={} width={} hidden1={} hidden2={}",
                m.channels, m.height, m.width, m.hidden1, m.hidden2
            ),
            ModelConfig::TinyUNet(m) => {
                let sizes = format!(
                    "model=TinyUNet channels={} height={} width={} widths={:?} emb_dim={} \
                     temb_dim={}",
                    m.channels, m.height, m.width, m.widths, m.emb_dim, m.temb_dim
                );
                // One-mid-block runs keep the identity their checkpoints were written with.
                match m.mid_blocks {
                    1 => sizes,
                    n => format!("{sizes} mid_blocks={n}"),
                }
            }
        };
        let sched = match self.schedule.kind {
            ScheduleKind::Linear {
                beta_start,
                beta_end,
            } => format!("linear beta_start={beta_start:e} beta_end={beta_end:e}"),
            ScheduleKind::Cosine { s, max_beta } => format!("cosine s={s} max_beta={max_beta}"),
        };
        let model = match &self.model {
            ModelConfig::TinyUNet(m) if m.is_conditional() => {
                format!(
                    "{model} classes={} label_drop={}",
                    m.classes, self.label_drop
                )
            }
            _ => model,
        };
        let model = match &self.init {
            Some(p) => format!("{model} init={}", p.display()),
            None => model,
        };
        // ε-predicting runs keep the identity their checkpoints were written with.
        let sched = match self.schedule.prediction {
            Prediction::Eps => sched,
            Prediction::V => format!("{sched} prediction=v"),
        };
        format!(
            "{model}\n\
             schedule={sched} timesteps={}\nbatch_size={}\nseed={}\nema={}\nimages={n_images}\n",
            self.schedule.timesteps,
            self.batch_size,
            self.seed,
            self.ema.map_or("none".into(), |d| d.to_string()),
        )
    }
}

/// What a finished `fit` reports.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// Optimizer steps taken in total (including those before a resume).
    pub steps: u64,
    /// Epochs completed in total.
    pub epochs: usize,
    /// Loss of every step, in order (including those before a resume).
    pub step_losses: Vec<f32>,
    /// Mean loss of every epoch.
    pub epoch_losses: Vec<f64>,
    /// Training throughput of this run (images per second).
    pub images_per_sec: f64,
}

/// Scales u8 images to f32 in [−1, 1] the way the seed's transforms do
/// (`ToTensor` then `Normalize(0.5, 0.5)`), as one N×1×H×W tensor on `device`.
pub fn images_to_device(data: &Mnist, device: Device) -> Tensor {
    let x = Tensor::from_slice(&data.images)
        .view([data.len as i64, 1, data.height as i64, data.width as i64])
        .to_device(device)
        .to_kind(Kind::Float);
    (x / 255.0 - 0.5) / 0.5
}

/// The labels of `data` as one int64 tensor of N class indices on `device`.
pub fn labels_to_device(data: &Mnist, device: Device) -> Tensor {
    Tensor::from_slice(&data.labels)
        .to_kind(Kind::Int64)
        .to_device(device)
}

/// Trains on `data` as `opts` says. Every epoch ends with a finite-loss check, then the
/// checkpoint and the loss CSV; a NaN or infinite loss stops with an error and leaves the last
/// good checkpoint in place.
pub fn fit(opts: &FitOptions, data: &Mnist, log: &mut dyn FnMut(&str)) -> Result<FitReport> {
    opts.model.validate().map_err(|e| {
        anyhow::anyhow!(
            "model sizes {}: {e}",
            crate::describe::describe_model(&opts.model)
        )
    })?;
    if opts.model.channels() != 1 {
        bail!(
            "IDX images have one channel, the model has {}",
            opts.model.channels()
        );
    }
    if (data.height, data.width) != (opts.model.height(), opts.model.width()) {
        bail!(
            "{}: images are {}x{}, the model takes {}x{}",
            data.images_path.display(),
            data.height,
            data.width,
            opts.model.height(),
            opts.model.width()
        );
    }
    if data.len == 0 || opts.batch_size == 0 {
        bail!(
            "nothing to train on: {} images, batch size {}",
            data.len,
            opts.batch_size
        );
    }
    if let Some((path, after)) = &opts.guide {
        if !(1..opts.epochs).contains(after) {
            bail!(
                "{}: the guide is the model after {after} epochs, which must be at least 1 and \
                 fewer than the run's {} epochs",
                path.display(),
                opts.epochs
            );
        }
    }
    let identity = opts.identity(data.len);
    let (sched, _) = DeviceSchedule::new(&opts.schedule, opts.device)?;
    let mut tr = Trainer::new(opts)?;
    if opts.resume {
        tr.load_checkpoint(&opts.checkpoint, &identity)?;
        log(&format!(
            "resumed from {} after epoch {} (step {})",
            opts.checkpoint.display(),
            tr.epochs_done,
            tr.step
        ));
        if let Some((path, after)) = &opts.guide {
            if tr.epochs_done >= *after && !path.exists() {
                bail!(
                    "{}: the guide is written after epoch {after}, which the checkpoint is \
                     already past (epoch {}), and the file is missing; rerun from the start",
                    path.display(),
                    tr.epochs_done
                );
            }
        }
    }
    let images = images_to_device(data, opts.device);
    let labels = labels_to_device(data, opts.device);
    let n = data.len as i64;
    let bs = opts.batch_size as i64;
    let steps_per_epoch = ((n + bs - 1) / bs) as usize;
    let total_steps = (steps_per_epoch * opts.epochs) as u64;
    let start = Instant::now();
    let mut images_seen = 0u64;
    for epoch in tr.epochs_done..opts.epochs {
        let epoch_start = Instant::now();
        tch::manual_seed(derive_seed(opts.seed, TAG_EPOCH, epoch as u64));
        let perm = Tensor::randperm(n, (Kind::Int64, opts.device));
        let bar = if opts.progress {
            ProgressBar::new(steps_per_epoch as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("valid progress template"),
        );
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, opts.epochs));
        let mut pending: Vec<Tensor> = Vec::with_capacity(16);
        let mut epoch_losses: Vec<f32> = Vec::with_capacity(steps_per_epoch);
        for b in 0..steps_per_epoch as i64 {
            let len = bs.min(n - b * bs);
            let idx = perm.narrow(0, b * bs, len);
            let x0 = images.index_select(0, &idx);
            let y = labels.index_select(0, &idx);
            let lr = opts.lr_schedule.rate(opts.lr, tr.step, total_steps);
            pending.push(tr.train_step(&x0, &y, &sched, opts, lr));
            images_seen += len as u64;
            // Read losses back every few steps only, so a GPU is not synchronised every step.
            let last = b as usize + 1 == steps_per_epoch;
            if pending.len() == 16 || last {
                let vals = Vec::<f32>::try_from(Tensor::stack(&pending, 0).to_device(Device::Cpu))?;
                pending.clear();
                let first_bad = vals.iter().position(|v| !v.is_finite());
                if let Some(i) = first_bad {
                    let bad_step = tr.step as usize - vals.len() + i + 1;
                    bar.abandon();
                    let kept = if opts.checkpoint.exists() {
                        format!(
                            "the last good checkpoint, {} (after epoch {}), is unchanged",
                            opts.checkpoint.display(),
                            tr.epochs_done
                        )
                    } else {
                        "no checkpoint had been written yet".to_owned()
                    };
                    bail!(
                        "loss became {} at step {bad_step} (epoch {}); training stopped; {kept}. \
                         Try a smaller --lr.",
                        vals[i],
                        epoch + 1
                    );
                }
                epoch_losses.extend_from_slice(&vals);
                let rate = images_seen as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4} | {rate:.0} img/s",
                    vals[vals.len() - 1]
                ));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let mean = epoch_losses.iter().map(|&v| v as f64).sum::<f64>() / epoch_losses.len() as f64;
        tr.step_losses.extend_from_slice(&epoch_losses);
        tr.epoch_losses.push(mean);
        tr.epochs_done = epoch + 1;
        tr.save_checkpoint(&opts.checkpoint, &identity)?;
        if let Some(csv) = &opts.loss_csv {
            ddpm_torch::atomic::write_atomic(csv, tr.loss_csv(steps_per_epoch).as_bytes())?;
        }
        if let Some((path, after)) = &opts.guide {
            if tr.epochs_done == *after {
                let note = format!("{} (autoguidance guide: after epoch {after})", opts.note);
                let bytes = export::model_file_bytes(
                    &opts.model,
                    &opts.schedule,
                    &tr.export_params(),
                    &note,
                    None,
                )?;
                ddpm_torch::atomic::write_atomic(path, &bytes)?;
                log(&format!(
                    "wrote the guide {} (weights after epoch {after})",
                    path.display()
                ));
            }
        }
        let secs = epoch_start.elapsed().as_secs_f64();
        log(&format!(
            "epoch {}/{}: loss {mean:.4} ({} steps, {:.0} img/s, {secs:.1} s)",
            epoch + 1,
            opts.epochs,
            epoch_losses.len(),
            data.len as f64 / secs,
        ));
    }
    if let Some(out) = &opts.out {
        // The architecture's recipe, with the guide written beside the model when there is one.
        let guide = opts
            .guide
            .as_ref()
            .and_then(|(g, _)| recorded_guide(out, g));
        if let (Some((g, _)), None) = (&opts.guide, &guide) {
            log(&format!(
                "the guide {} is not in the folder of {}: its recipe names no guide (`trainer \
                 export --model … --guide FILE` records one)",
                g.display(),
                out.display()
            ));
        }
        let recipe = Recipe {
            guide: guide.as_deref().map(|file| Guide {
                file,
                weight: RECORDED_GUIDANCE,
            }),
            ..Recipe::for_model(&opts.model, &opts.schedule)
        };
        let bytes = export::model_file_bytes(
            &opts.model,
            &opts.schedule,
            &tr.export_params(),
            &opts.note,
            Some(&recipe),
        )?;
        ddpm_torch::atomic::write_atomic(out, &bytes)?;
        log(&format!(
            "wrote {} ({} weights)",
            out.display(),
            if opts.ema.is_some() { "EMA" } else { "raw" }
        ));
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(FitReport {
        steps: tr.step,
        epochs: tr.epochs_done,
        step_losses: tr.step_losses.clone(),
        epoch_losses: tr.epoch_losses.clone(),
        images_per_sec: if secs > 0.0 {
            images_seen as f64 / secs
        } else {
            0.0
        },
    })
}

/// Guidance weight a fitted model's recipe records for its `--guide-out` guide (the weight of
/// the committed TinyUNet's measured result, docs/quality.md).
pub const RECORDED_GUIDANCE: f32 = 2.5;

/// The file name a model at `model` records for its guide at `guide`: the guide's file name
/// when both are in one folder.
fn recorded_guide(model: &Path, guide: &Path) -> Option<String> {
    let folder = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    let same = folder(model) == folder(guide)
        || matches!(
            (folder(model).canonicalize(), folder(guide).canonicalize()),
            (Ok(a), Ok(b)) if a == b
        );
    same.then(|| guide.file_name()?.to_str().map(str::to_owned))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_core::TinyUNetConfig;

    #[test]
    fn constant_rate_is_the_base_rate() {
        for step in [0, 5, 999] {
            assert_eq!(LrSchedule::Constant.rate(1e-3, step, 1000), 1e-3);
        }
    }

    #[test]
    fn cosine_rate_warms_up_linearly_then_decays_to_zero() {
        let s = LrSchedule::Cosine { warmup: 10 };
        let lr = 1e-3;
        assert_eq!(s.rate(lr, 0, 110), lr / 10.0);
        assert_eq!(s.rate(lr, 4, 110), lr * 0.5);
        assert_eq!(s.rate(lr, 9, 110), lr);
        assert_eq!(s.rate(lr, 10, 110), lr);
        // Halfway through the decay: cos(π/2) = 0, so half the rate.
        assert!((s.rate(lr, 60, 110) - 0.5 * lr).abs() < 1e-15);
        assert!(s.rate(lr, 109, 110) < lr * 1e-3);
        assert_eq!(s.rate(lr, 110, 110), 0.0);
        let rates: Vec<f64> = (10..110).map(|i| s.rate(lr, i, 110)).collect();
        assert!(rates.windows(2).all(|w| w[1] <= w[0]), "{rates:?}");
    }

    #[test]
    fn schedule_floats_round_trip_and_old_checkpoints_mean_eps() {
        for c in [ScheduleConfig::default(), ScheduleConfig::cosine(300)] {
            for p in [Prediction::Eps, Prediction::V] {
                let c = c.predicting(p);
                let f = schedule_to_floats(&c);
                assert_eq!(f.len(), if p == Prediction::V { 5 } else { 4 });
                assert_eq!(schedule_from_floats(&f), Some(c));
            }
        }
        assert_eq!(schedule_from_floats(&[1.0, 0.008, 0.999, 300.0, 2.0]), None);
        assert_eq!(
            schedule_from_floats(&[1.0, 0.008, 0.999, 300.0, 1.0, 0.0]),
            None
        );
    }

    #[test]
    fn min_snr_weights_each_image_by_min_snr_gamma_over_snr() {
        let cfg = ScheduleConfig::default();
        let (sched, host) = DeviceSchedule::new(&cfg, Device::Cpu).unwrap();
        let gamma = 5.0;
        let t_idx = [0i64, 40, 150, 299];
        let t = Tensor::from_slice(&t_idx);
        let noise = Tensor::from_slice(&(0..4 * 9).map(|i| i as f32 * 0.1).collect::<Vec<_>>())
            .view([4, 1, 3, 3]);
        let pred = noise.zeros_like() + 0.25;
        let loss = |weight, prediction| {
            f64::try_from(eps_loss(&pred, &noise, &t, &sched, weight, prediction)).unwrap()
        };
        // The batch mean of each image's MSE times the weight of its SNR, in f64.
        let want = |w: &dyn Fn(f64) -> f64| -> f64 {
            let mut sum = 0.0f64;
            for (i, &ti) in t_idx.iter().enumerate() {
                let a = host.alphas_cumprod()[ti as usize] as f64;
                let mse: f64 = (0..9)
                    .map(|j| ((i * 9 + j) as f64 * 0.1 - 0.25).powi(2))
                    .sum::<f64>()
                    / 9.0;
                sum += w(a / (1.0 - a)) * mse / 4.0;
            }
            sum
        };
        let min_snr = LossWeight::MinSnr { gamma };
        // ε target: min(SNR, γ)/SNR; v target: the same x0 weight, min(SNR, γ)/(SNR + 1).
        let cases: [(Prediction, &dyn Fn(f64) -> f64); 2] = [
            (Prediction::Eps, &|snr: f64| snr.min(gamma) / snr),
            (Prediction::V, &|snr: f64| snr.min(gamma) / (snr + 1.0)),
        ];
        for (prediction, w) in cases {
            let (got, want) = (loss(min_snr, prediction), want(w));
            // f32 arithmetic on values of order 10: a few ulps of the result.
            assert!(
                (got - want).abs() < 1e-5 * want,
                "{prediction:?}: {got} vs {want}"
            );
        }
        // The weights really differ between timesteps: the high-SNR image counts less.
        let got = loss(min_snr, Prediction::Eps);
        let uniform = loss(LossWeight::Uniform, Prediction::Eps);
        assert!(got < uniform, "{got} vs {uniform}");
    }

    #[test]
    fn identity_names_mid_blocks_and_keeps_the_one_mid_block_text() {
        let tiny = |mid_blocks| FitOptions {
            model: ModelConfig::TinyUNet(TinyUNetConfig {
                mid_blocks,
                ..TinyUNetConfig::DEFAULT
            }),
            ..FitOptions::seed_recipe(Device::Cpu, PathBuf::from("unused.safetensors"))
        };
        let one = tiny(1).identity(100);
        // The text checkpoints of one-mid-block runs were written with.
        assert!(one.starts_with(
            "model=TinyUNet channels=1 height=28 width=28 widths=[32, 64, 64] emb_dim=32 \
             temb_dim=64\n"
        ));
        let four = tiny(4).identity(100);
        assert!(four.contains("temb_dim=64 mid_blocks=4\n"), "{four}");
        assert_ne!(four, tiny(6).identity(100));
    }

    #[test]
    fn snr_plus_weights_the_v_error_by_snr_plus_k_over_snr_plus_one() {
        let cfg = ScheduleConfig::default().predicting(Prediction::V);
        let (sched, host) = DeviceSchedule::new(&cfg, Device::Cpu).unwrap();
        let t_idx = [0i64, 40, 150, 299];
        let t = Tensor::from_slice(&t_idx);
        let target = Tensor::from_slice(&(0..4 * 9).map(|i| i as f32 * 0.1).collect::<Vec<_>>())
            .view([4, 1, 3, 3]);
        let pred = target.zeros_like() + 0.25;
        let loss = |weight| {
            f64::try_from(eps_loss(&pred, &target, &t, &sched, weight, Prediction::V)).unwrap()
        };
        let mse = |i: usize| -> f64 {
            (0..9)
                .map(|j| ((i * 9 + j) as f64 * 0.1 - 0.25).powi(2))
                .sum::<f64>()
                / 9.0
        };
        for k in [0.0, 1.0, 4.0] {
            let want: f64 = t_idx
                .iter()
                .enumerate()
                .map(|(i, &ti)| {
                    let a = host.alphas_cumprod()[ti as usize] as f64;
                    let snr = a / (1.0 - a);
                    (snr + k) / (snr + 1.0) * mse(i) / 4.0
                })
                .sum();
            let got = loss(LossWeight::SnrPlus { k });
            // f32 arithmetic on values of order 10: a few ulps of the result.
            assert!((got - want).abs() < 1e-5 * want, "k {k}: {got} vs {want}");
        }
        // k = 1 is the plain v MSE; a larger k weighs the noisy images (t = 150, 299) more.
        let uniform = loss(LossWeight::Uniform);
        let plain = loss(LossWeight::SnrPlus { k: 1.0 });
        assert!(
            (plain - uniform).abs() < 1e-6 * uniform,
            "{plain} vs {uniform}"
        );
        assert!(loss(LossWeight::SnrPlus { k: 4.0 }) > uniform);
    }
}
