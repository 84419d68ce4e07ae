//! `trainer fit`: the seed's training recipe (ε-prediction MSE, Adam) on a dataset held on the
//! device as one tensor, with per-epoch atomic checkpoints that a later run resumes exactly.
//!
//! Randomness: the global torch generator is re-seeded from (seed, epoch) before each epoch's
//! shuffle and from (seed, step) before each step's draws of t and ε. So the generator state at
//! any epoch boundary is fully described by the seed and the step counter saved in the
//! checkpoint, and a resumed run continues with exactly the numbers an uninterrupted run uses.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ddpm_core::{
    ModelConfig, Prediction, ScheduleConfig, ScheduleKind, SimpleUNetConfig, TinyUNetConfig,
};
use indicatif::{ProgressBar, ProgressStyle};
use tch::{nn, Device, Kind, Reduction, Tensor};

use crate::export;
use crate::idx::Mnist;
use crate::model::{self, Net};
use crate::schedule::DeviceSchedule;

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
            device,
            checkpoint,
            loss_csv: None,
            out: None,
            guide: None,
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

/// The learning rate over a run of `total` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    /// `--lr` at every step (the seed's).
    Constant,
    /// Linear warm-up from 0 over `warmup` steps, then half a cosine from `--lr` down to 0 at
    /// the last step (Loshchilov & Hutter 2017, without restarts).
    Cosine {
        /// Warm-up steps.
        warmup: u64,
    },
}

impl LrSchedule {
    /// The rate of step `step` (0-based) of `total`, for base rate `lr`.
    pub fn rate(&self, lr: f64, step: u64, total: u64) -> f64 {
        match *self {
            Self::Constant => lr,
            Self::Cosine { warmup } => {
                if step < warmup {
                    return lr * (step + 1) as f64 / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let done = ((step - warmup) as f64 / span).min(1.0);
                0.5 * lr * (1.0 + (std::f64::consts::PI * done).cos())
            }
        }
    }
}

/// The per-image weight of the ε-prediction error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossWeight {
    /// Every timestep alike: the seed's plain MSE ("L_simple" of Ho et al. 2020).
    Uniform,
    /// Min-SNR-γ (Hang et al. 2023): weight min(SNR_t, γ) / SNR_t with SNR_t = ᾱ_t / (1 − ᾱ_t),
    /// so the nearly clean timesteps, whose ε is hard to see and matters little, no longer
    /// dominate the gradient.
    MinSnr {
        /// γ (the paper's default is 5).
        gamma: f64,
    },
    /// For a v-predicting network: the x0 error weighted SNR_t + k, i.e. the v error weighted
    /// (SNR_t + k)/(SNR_t + 1). The plain ε MSE weights the x0 error SNR_t (k = 0), the plain v
    /// MSE SNR_t + 1 (k = 1); a larger k moves weight onto the noisiest timesteps (up to k× the
    /// plain v weight), where a sample's global shape is decided, and leaves the nearly clean
    /// ones as they were.
    SnrPlus {
        /// k (at least 0).
        k: f64,
    },
}

/// The training loss of predictions `pred` of `target` (the noise ε, or v for a v-predicting
/// network) drawn at timesteps `t` (N×C×H×W, N×C×H×W, N): the mean over the batch of each
/// image's weighted mean squared error.
pub fn eps_loss(
    pred: &Tensor,
    target: &Tensor,
    t: &Tensor,
    sched: &DeviceSchedule,
    weight: LossWeight,
    prediction: Prediction,
) -> Tensor {
    // Both weights are stated on the x0 error, the same in either parameterization: ‖ε̂ − ε‖²
    // is SNR times ‖x̂0 − x0‖², ‖v̂ − v‖² is SNR + 1 times it (Hang et al. 2023, section 3.4).
    // The plain MSE (the default) returns before any SNR is looked up.
    let snr_at_t = || sched.snr.index_select(0, t);
    let (snr, x0_weight) = match weight {
        LossWeight::Uniform => return pred.mse_loss(target, Reduction::Mean),
        LossWeight::MinSnr { gamma } => {
            let snr = snr_at_t();
            let w = snr.clamp_max(gamma);
            (snr, w)
        }
        LossWeight::SnrPlus { k } => {
            let snr = snr_at_t();
            let w = &snr + k;
            (snr, w)
        }
    };
    let per_image =
        (pred - target)
            .square()
            .flatten(1, -1)
            .mean_dim(&[1i64][..], false, Kind::Float);
    let w = match prediction {
        Prediction::Eps => x0_weight / &snr,
        Prediction::V => x0_weight / (&snr + 1.0),
    };
    (per_image * w).mean(Kind::Float)
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

/// Adam's moment estimates for one parameter.
struct AdamState {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// The training state that a checkpoint holds.
pub struct Trainer {
    /// The parameters.
    pub vs: nn::VarStore,
    /// The network over `vs`.
    pub net: Net,
    params: Vec<(String, Tensor)>,
    adam: Vec<AdamState>,
    ema: Option<Vec<Tensor>>,
    step: u64,
    epochs_done: usize,
    step_losses: Vec<f32>,
    epoch_losses: Vec<f64>,
    schedule: ScheduleConfig,
}

/// The sizes as the checkpoint's `state.model` integers: SimpleUNet [c, h, w, hidden1,
/// hidden2]; TinyUNet [c, h, w, w1, w2, w3, E, D, mid blocks] (its checkpoints also hold `state.arch` =
/// "tiny"; one without `state.arch` is a SimpleUNet, as before TinyUNet existed).
fn model_to_ints(m: &ModelConfig) -> Vec<i64> {
    match m {
        ModelConfig::SimpleUNet(m) => [m.channels, m.height, m.width, m.hidden1, m.hidden2]
            .map(i64::from)
            .to_vec(),
        ModelConfig::TinyUNet(m) => [
            m.channels,
            m.height,
            m.width,
            m.widths[0],
            m.widths[1],
            m.widths[2],
            m.emb_dim,
            m.temb_dim,
            m.mid_blocks,
        ]
        .map(i64::from)
        .to_vec(),
    }
}

/// The inverse of [`model_to_ints`], given the checkpoint's `state.arch` (None when absent).
fn model_from_ints(arch: Option<&str>, m: &[i64], what: &str) -> Result<ModelConfig> {
    let u = |i: usize| m[i] as u32;
    match arch {
        None | Some("simple") => {
            if m.len() != 5 {
                bail!("{what}: state.model has {} entries, expected 5", m.len());
            }
            Ok(ModelConfig::SimpleUNet(SimpleUNetConfig {
                channels: u(0),
                height: u(1),
                width: u(2),
                hidden1: u(3),
                hidden2: u(4),
            }))
        }
        Some("tiny") => {
            // 8 entries before mid_blocks existed (one mid block), 9 since.
            if m.len() != 8 && m.len() != 9 {
                bail!(
                    "{what}: state.model has {} entries, a TinyUNet has 8 or 9",
                    m.len()
                );
            }
            Ok(ModelConfig::TinyUNet(TinyUNetConfig {
                channels: u(0),
                height: u(1),
                width: u(2),
                widths: [u(3), u(4), u(5)],
                mid_blocks: if m.len() == 9 { u(8) } else { 1 },
                emb_dim: u(6),
                temb_dim: u(7),
            }))
        }
        Some(other) => bail!("{what}: unknown architecture {other:?} in state.arch"),
    }
}

/// The schedule as the checkpoint's `state.schedule` floats: kind (0 linear, 1 cosine), its two
/// parameters, T, and for a v-predicting network a fifth entry 1 (ε-predicting networks keep
/// the four entries checkpoints had before the prediction was recorded).
fn schedule_to_floats(s: &ScheduleConfig) -> Vec<f64> {
    let t = s.timesteps as f64;
    let mut v = match s.kind {
        ScheduleKind::Linear {
            beta_start,
            beta_end,
        } => vec![0.0, beta_start, beta_end, t],
        ScheduleKind::Cosine { s, max_beta } => vec![1.0, s, max_beta, t],
    };
    if s.prediction == Prediction::V {
        v.push(1.0);
    }
    v
}

fn schedule_from_floats(v: &[f64]) -> Option<ScheduleConfig> {
    let timesteps = *v.get(3)? as u32;
    let kind = match *v.first()? as i64 {
        0 => ScheduleKind::Linear {
            beta_start: v[1],
            beta_end: v[2],
        },
        1 => ScheduleKind::Cosine {
            s: v[1],
            max_beta: v[2],
        },
        _ => return None,
    };
    let prediction = match v.get(4) {
        None => Prediction::Eps,
        Some(&1.0) => Prediction::V,
        Some(_) => return None,
    };
    if v.len() > 5 {
        return None;
    }
    Some(ScheduleConfig {
        kind,
        timesteps,
        prediction,
    })
}

/// The weights a checkpoint holds, with the model sizes and schedule recorded in it.
pub struct CheckpointWeights {
    /// Network architecture and sizes.
    pub model: ModelConfig,
    /// Noise schedule.
    pub schedule: ScheduleConfig,
    /// The tensors in `state_dict` order.
    pub tensors: Vec<(String, Tensor)>,
    /// Whether `tensors` are the EMA weights.
    pub ema: bool,
}

/// A checkpoint's tensors, read once, looked up by name with errors that name the file.
struct CheckpointTensors {
    what: String,
    tensors: Vec<(String, Tensor)>,
}

impl CheckpointTensors {
    fn read(path: &Path) -> Result<Self> {
        let what = path.display().to_string();
        let tensors = Tensor::read_safetensors(path)
            .with_context(|| format!("{what}: cannot read checkpoint"))?;
        Ok(Self { what, tensors })
    }

    fn find(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    fn get(&self, name: &str) -> Result<&Tensor> {
        self.find(name)
            .with_context(|| format!("{}: checkpoint has no {name}", self.what))
    }
}

/// The weights to export from a checkpoint: the EMA when `use_ema` and the checkpoint has
/// one, else the raw weights.
pub fn checkpoint_weights(path: &Path, use_ema: bool) -> Result<CheckpointWeights> {
    let ckpt = CheckpointTensors::read(path)?;
    let what = &ckpt.what;
    let m = Vec::<i64>::try_from(ckpt.get("state.model")?)?;
    let arch = match ckpt.find("state.arch") {
        Some(t) => Some(String::from_utf8_lossy(&Vec::<u8>::try_from(t)?).into_owned()),
        None => None,
    };
    let model = model_from_ints(arch.as_deref(), &m, what)?;
    model
        .validate()
        .map_err(|e| anyhow::anyhow!("{what}: state.model {model:?}: {e}"))?;
    let schedule = schedule_from_floats(&Vec::<f64>::try_from(ckpt.get("state.schedule")?)?)
        .with_context(|| format!("{what}: state.schedule is not a known schedule"))?;
    let has_ema = ckpt.tensors.iter().any(|(n, _)| n.starts_with("ema."));
    let prefix = if use_ema && has_ema { "ema." } else { "model." };
    let mut out = Vec::new();
    for spec in &model.tensor_specs() {
        let t = ckpt.get(&format!("{prefix}{}", spec.name))?;
        out.push((spec.name.to_owned(), t.shallow_clone()));
    }
    Ok(CheckpointWeights {
        model,
        schedule,
        tensors: out,
        ema: use_ema && has_ema,
    })
}

/// A 64-bit mix (splitmix64 finaliser) of the seed with a stream tag and a counter, folded into
/// the non-negative i64 range `tch::manual_seed` takes.
pub fn derive_seed(seed: u64, tag: u64, counter: u64) -> i64 {
    let mut z = seed
        ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ counter.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 1) as i64
}

const TAG_INIT: u64 = 1;
const TAG_EPOCH: u64 = 2;
const TAG_STEP: u64 = 3;

impl Trainer {
    /// Fresh weights (PyTorch's default initialisation, seeded), zero Adam state, EMA = weights.
    pub fn new(opts: &FitOptions) -> Result<Self> {
        tch::manual_seed(derive_seed(opts.seed, TAG_INIT, 0));
        let vs = nn::VarStore::new(opts.device);
        let net = Net::new(&vs.root(), opts.model);
        let params = model::named_params(&vs, &opts.model)?;
        let adam = params
            .iter()
            .map(|(_, p)| AdamState {
                exp_avg: p.zeros_like(),
                exp_avg_sq: p.zeros_like(),
            })
            .collect();
        let ema = opts
            .ema
            .map(|_| params.iter().map(|(_, p)| p.detach().copy()).collect());
        Ok(Self {
            vs,
            net,
            params,
            adam,
            ema,
            step: 0,
            epochs_done: 0,
            step_losses: Vec::new(),
            epoch_losses: Vec::new(),
            schedule: opts.schedule,
        })
    }

    /// Optimizer steps taken.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The weights to export: the EMA when kept, else the raw weights.
    pub fn export_params(&self) -> Vec<(String, Tensor)> {
        match &self.ema {
            Some(ema) => self
                .params
                .iter()
                .zip(ema)
                .map(|((n, _), e)| (n.clone(), e.shallow_clone()))
                .collect(),
            None => self
                .params
                .iter()
                .map(|(n, p)| (n.clone(), p.shallow_clone()))
                .collect(),
        }
    }

    /// PyTorch's Adam update (`torch.optim.Adam`, single-tensor path, no weight decay).
    fn adam_step(&mut self, lr: f64) {
        self.step += 1;
        let (b1, b2) = ADAM_BETAS;
        let n = self.step as i32;
        let bias1 = 1.0 - b1.powi(n);
        let bias2_sqrt = (1.0 - b2.powi(n)).sqrt();
        let step_size = lr / bias1;
        tch::no_grad(|| {
            for ((_, p), st) in self.params.iter_mut().zip(&mut self.adam) {
                let g = p.grad();
                let _ = st.exp_avg.lerp_(&g, 1.0 - b1);
                let _ = st.exp_avg_sq.g_mul_scalar_(b2);
                let _ = st.exp_avg_sq.addcmul_(&(&g * (1.0 - b2)), &g);
                let denom = st.exp_avg_sq.sqrt() / bias2_sqrt + ADAM_EPS;
                let _ = p.addcdiv_(&(&st.exp_avg * -step_size), &denom);
            }
        });
    }

    /// EMA update after step n (1-based): decay min(DECAY, (1 + n)/(10 + n)) with n counted
    /// from 0 at the first update, so early averages do not keep the random initial weights.
    fn ema_update(&mut self, decay: f64) {
        let n = (self.step - 1) as f64;
        let d = decay.min((1.0 + n) / (10.0 + n));
        if let Some(ema) = &mut self.ema {
            tch::no_grad(|| {
                for (e, (_, p)) in ema.iter_mut().zip(&self.params) {
                    let _ = e.lerp_(p, 1.0 - d);
                }
            });
        }
    }

    fn zero_grad(&mut self) {
        for (_, p) in self.params.iter_mut() {
            p.zero_grad();
        }
    }

    /// One optimizer step on the images `x0` (N×C×H×W in [−1, 1]); returns the loss tensor.
    pub fn train_step(
        &mut self,
        x0: &Tensor,
        sched: &DeviceSchedule,
        opts: &FitOptions,
        lr: f64,
    ) -> Tensor {
        tch::manual_seed(derive_seed(opts.seed, TAG_STEP, self.step));
        let b = x0.size()[0];
        let t = Tensor::randint(sched.timesteps, [b], (Kind::Int64, x0.device()));
        let noise = x0.randn_like();
        let a = sched
            .sqrt_alphas_cumprod
            .index_select(0, &t)
            .view([-1, 1, 1, 1]);
        let s = sched
            .sqrt_one_minus_alphas_cumprod
            .index_select(0, &t)
            .view([-1, 1, 1, 1]);
        let x_t = &a * x0 + &s * &noise;
        let t_in = t.to_kind(Kind::Float) / sched.timesteps as f64;
        let pred = self.net.forward(&x_t, &t_in);
        let target = match opts.schedule.prediction {
            Prediction::Eps => noise,
            Prediction::V => a * &noise - s * x0,
        };
        let loss = eps_loss(
            &pred,
            &target,
            &t,
            sched,
            opts.loss_weight,
            opts.schedule.prediction,
        );
        self.zero_grad();
        loss.backward();
        self.adam_step(lr);
        if let Some(decay) = opts.ema {
            self.ema_update(decay);
        }
        loss.detach()
    }

    /// Writes the checkpoint atomically.
    pub fn save_checkpoint(&self, path: &Path, identity: &str) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for ((name, p), st) in self.params.iter().zip(&self.adam) {
            named.push((format!("model.{name}"), p.detach()));
            named.push((format!("adam.exp_avg.{name}"), st.exp_avg.shallow_clone()));
            named.push((
                format!("adam.exp_avg_sq.{name}"),
                st.exp_avg_sq.shallow_clone(),
            ));
        }
        if let Some(ema) = &self.ema {
            for ((name, _), e) in self.params.iter().zip(ema) {
                named.push((format!("ema.{name}"), e.shallow_clone()));
            }
        }
        named.push(("state.step".into(), Tensor::from_slice(&[self.step as i64])));
        named.push((
            "state.epochs".into(),
            Tensor::from_slice(&[self.epochs_done as i64]),
        ));
        named.push((
            "state.identity".into(),
            Tensor::from_slice(identity.as_bytes()),
        ));
        let model = self.net.config();
        named.push((
            "state.model".into(),
            Tensor::from_slice(&model_to_ints(&model)),
        ));
        if let ModelConfig::TinyUNet(_) = model {
            named.push(("state.arch".into(), Tensor::from_slice(b"tiny")));
        }
        named.push((
            "state.schedule".into(),
            Tensor::from_slice(&schedule_to_floats(&self.schedule)),
        ));
        named.push((
            "state.step_losses".into(),
            Tensor::from_slice(&self.step_losses),
        ));
        named.push((
            "state.epoch_losses".into(),
            Tensor::from_slice(&self.epoch_losses),
        ));
        let cpu: Vec<(String, Tensor)> = named
            .into_iter()
            .map(|(n, t)| (n, t.to_device(Device::Cpu)))
            .collect();
        crate::atomic::write_atomic_with(path, |tmp| {
            Tensor::write_safetensors(&cpu, tmp)?;
            Ok(())
        })
    }

    /// Restores the state from a checkpoint written with the same identity.
    pub fn load_checkpoint(&mut self, path: &Path, identity: &str) -> Result<()> {
        let ckpt = CheckpointTensors::read(path)?;
        let what = &ckpt.what;
        let saved = Vec::<u8>::try_from(ckpt.get("state.identity")?)?;
        let saved = String::from_utf8_lossy(&saved);
        if saved != identity {
            bail!(
                "{what}: checkpoint was written with other settings; resume needs the same \
                 model, schedule, batch size, seed, EMA and data size.\n checkpoint:\n{saved} \
                 this run:\n{identity}"
            );
        }
        let device = self.vs.device();
        let copy_into = |dst: &mut Tensor, name: &str| -> Result<()> {
            let src = ckpt.get(name)?;
            if src.size() != dst.size() {
                bail!(
                    "{what}: {name} has shape {:?}, expected {:?}",
                    src.size(),
                    dst.size()
                );
            }
            tch::no_grad(|| dst.copy_(&src.to_device(device)));
            Ok(())
        };
        for i in 0..self.params.len() {
            let name = self.params[i].0.clone();
            copy_into(&mut self.params[i].1, &format!("model.{name}"))?;
            copy_into(&mut self.adam[i].exp_avg, &format!("adam.exp_avg.{name}"))?;
            copy_into(
                &mut self.adam[i].exp_avg_sq,
                &format!("adam.exp_avg_sq.{name}"),
            )?;
            if let Some(ema) = &mut self.ema {
                copy_into(&mut ema[i], &format!("ema.{name}"))?;
            }
        }
        self.step = ckpt.get("state.step")?.int64_value(&[0]) as u64;
        self.epochs_done = ckpt.get("state.epochs")?.int64_value(&[0]) as usize;
        self.step_losses = Vec::<f32>::try_from(ckpt.get("state.step_losses")?)?;
        self.epoch_losses = Vec::<f64>::try_from(ckpt.get("state.epoch_losses")?)?;
        Ok(())
    }

    /// The loss curve as CSV: `step,epoch,loss`.
    fn loss_csv(&self, steps_per_epoch: usize) -> String {
        let mut s = String::from("step,epoch,loss\n");
        for (i, l) in self.step_losses.iter().enumerate() {
            s.push_str(&format!("{},{},{l}\n", i + 1, i / steps_per_epoch + 1));
        }
        s
    }
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

/// Trains on `data` as `opts` says. Every epoch ends with a finite-loss check, then the
/// checkpoint and the loss CSV; a NaN or infinite loss stops with an error and leaves the last
/// good checkpoint in place.
pub fn fit(opts: &FitOptions, data: &Mnist, log: &mut dyn FnMut(&str)) -> Result<FitReport> {
    opts.model
        .validate()
        .map_err(|e| anyhow::anyhow!("model sizes {:?}: {e}", opts.model))?;
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
            let lr = opts.lr_schedule.rate(opts.lr, tr.step, total_steps);
            pending.push(tr.train_step(&x0, &sched, opts, lr));
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
            crate::atomic::write_atomic(csv, tr.loss_csv(steps_per_epoch).as_bytes())?;
        }
        if let Some((path, after)) = &opts.guide {
            if tr.epochs_done == *after {
                let note = format!("{} (autoguidance guide: after epoch {after})", opts.note);
                let bytes = export::model_file_bytes(
                    &opts.model,
                    &opts.schedule,
                    &tr.export_params(),
                    &note,
                )?;
                crate::atomic::write_atomic(path, &bytes)?;
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
        let bytes =
            export::model_file_bytes(&opts.model, &opts.schedule, &tr.export_params(), &opts.note)?;
        crate::atomic::write_atomic(out, &bytes)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
