//! Checkpoints: the training state's sizes and schedule as the checkpoint stores them, and
//! the weights `export` takes from a checkpoint.
use std::path::Path;

use anyhow::{bail, Context, Result};
use ddpm_core::{
    ModelConfig, Prediction, ScheduleConfig, ScheduleKind, SimpleUNetConfig, TinyUNetConfig,
};
use tch::Tensor;

/// The sizes as the checkpoint's `state.model` integers: SimpleUNet [c, h, w, hidden1,
/// hidden2]; TinyUNet [c, h, w, w1, w2, w3, E, D, mid blocks], then the classes K of a
/// class-conditional one (its checkpoints also hold `state.arch` = "tiny"; one without
/// `state.arch` is a SimpleUNet, as before TinyUNet existed).
pub(super) fn model_to_ints(m: &ModelConfig) -> Vec<i64> {
    match m {
        ModelConfig::SimpleUNet(m) => [m.channels, m.height, m.width, m.hidden1, m.hidden2]
            .map(i64::from)
            .to_vec(),
        ModelConfig::TinyUNet(m) => {
            let mut v = [
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
            .to_vec();
            if m.is_conditional() {
                v.push(i64::from(m.classes));
            }
            v
        }
    }
}

/// The inverse of [`model_to_ints`], given the checkpoint's `state.arch` (None when absent).
pub(super) fn model_from_ints(arch: Option<&str>, m: &[i64], what: &str) -> Result<ModelConfig> {
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
            // 8 entries before mid_blocks existed (one mid block), 9 since, 10 for a
            // class-conditional one.
            if !(8..=10).contains(&m.len()) {
                bail!(
                    "{what}: state.model has {} entries, a TinyUNet has 8 to 10",
                    m.len()
                );
            }
            Ok(ModelConfig::TinyUNet(TinyUNetConfig {
                channels: u(0),
                height: u(1),
                width: u(2),
                widths: [u(3), u(4), u(5)],
                mid_blocks: if m.len() >= 9 { u(8) } else { 1 },
                emb_dim: u(6),
                temb_dim: u(7),
                classes: if m.len() == 10 { u(9) } else { 0 },
            }))
        }
        Some(other) => bail!("{what}: unknown architecture {other:?} in state.arch"),
    }
}

/// The schedule as the checkpoint's `state.schedule` floats: kind (0 linear, 1 cosine), its two
/// parameters, T, and for a v-predicting network a fifth entry 1 (ε-predicting networks keep
/// the four entries checkpoints had before the prediction was recorded).
pub(super) fn schedule_to_floats(s: &ScheduleConfig) -> Vec<f64> {
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

pub(super) fn schedule_from_floats(v: &[f64]) -> Option<ScheduleConfig> {
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
pub(super) struct CheckpointTensors {
    pub(super) what: String,
    pub(super) tensors: Vec<(String, Tensor)>,
}

impl CheckpointTensors {
    pub(super) fn read(path: &Path) -> Result<Self> {
        let what = path.display().to_string();
        let tensors = Tensor::read_safetensors(path)
            .with_context(|| format!("{what}: cannot read checkpoint"))?;
        Ok(Self { what, tensors })
    }

    pub(super) fn find(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub(super) fn get(&self, name: &str) -> Result<&Tensor> {
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
    model.validate().map_err(|e| {
        anyhow::anyhow!(
            "{what}: state.model {}: {e}",
            crate::describe::describe_model(&model)
        )
    })?;
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
