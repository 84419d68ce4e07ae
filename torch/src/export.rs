//! Moving weights between the trainer, the ddpm-core model file and PyTorch safetensors files.
use std::path::Path;

use anyhow::{bail, Context, Result};
use ddpm_core::file::{ModelFile, ModelWriter, Precision};
use ddpm_core::{AsModelConfig, ModelConfig, ScheduleConfig};
use tch::{Device, Kind, Tensor};

use crate::model;

/// Encodes a ddpm-core model file (f32) from named tensors in `state_dict` order; `cfg` is a
/// `ModelConfig` or either architecture's configuration.
pub fn model_file_bytes(
    cfg: &impl AsModelConfig,
    schedule: &ScheduleConfig,
    params: &[(String, Tensor)],
    note: &str,
) -> Result<Vec<u8>> {
    let cfg = cfg.as_model_config();
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("model sizes {cfg:?}: {e}"))?;
    let mut w = ModelWriter::new(cfg, *schedule, note);
    for spec in &cfg.tensor_specs() {
        let t = model::named_tensor(
            params,
            spec,
            || format!("no tensor {} to export", spec.name),
            |has, want| {
                format!(
                    "tensor {} has shape {has:?}, the model file needs {want:?}",
                    spec.name
                )
            },
        )?;
        let data = model::to_f32_vec(t)?;
        w.push_f32(spec.name, spec.dims(), &data)
            .map_err(|e| anyhow::anyhow!("encoding {}: {e}", spec.name))?;
    }
    Ok(w.finish())
}

/// A model file read back: sizes, schedule, note and the tensors on the CPU.
pub struct LoadedModel {
    /// Network architecture and sizes.
    pub config: ModelConfig,
    /// The schedule it was trained with.
    pub schedule: ScheduleConfig,
    /// The file's note.
    pub note: String,
    /// Tensors in `state_dict` order (f32, CPU).
    pub tensors: Vec<(String, Tensor)>,
}

/// Reads and checks a ddpm-core model file (f32 precision).
pub fn read_model_file(path: &Path) -> Result<LoadedModel> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let file = ModelFile::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid model file: {e}", path.display()))?;
    from_model_file(&file, &path.display().to_string())
}

/// The sizes, schedule, note and tensors (f32, CPU) of an already parsed and checked model
/// file, which must be of f32 precision; `what` names it in errors.
pub fn from_model_file(file: &ModelFile<'_>, what: &str) -> Result<LoadedModel> {
    let header = *file.header();
    if header.precision != Precision::F32 {
        bail!("{what}: holds an int8 model; the trainer reads f32 model files");
    }
    let cfg = header.model;
    let mut tensors = Vec::new();
    for spec in &cfg.tensor_specs() {
        let rec = file
            .tensor(spec.name)
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        rec.check_f32(spec.name, spec.dims())
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        let data = rec
            .to_f32_vec()
            .with_context(|| format!("{what}: {} is not f32", spec.name))?;
        tensors.push((
            spec.name.to_owned(),
            Tensor::from_slice(&data).view(&model::dims_i64(spec)[..]),
        ));
    }
    Ok(LoadedModel {
        config: cfg,
        schedule: header.schedule,
        note: header.note.to_owned(),
        tensors,
    })
}

/// Writes the tensors as a safetensors file with the seed's `state_dict` names (f32),
/// atomically; PyTorch loads it with `safetensors.torch.load_file` + `load_state_dict`.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous(),
            )
        })
        .collect();
    crate::atomic::write_atomic_with(path, |tmp| {
        Tensor::write_safetensors(&cpu, tmp)?;
        Ok(())
    })
}

/// Reads a PyTorch safetensors `state_dict` of a SimpleUNet or a TinyUNet (told apart by their
/// tensor names). Accepts the bare names and names with a `model.` or `module.` prefix;
/// converts f16/bf16/f64 to f32. Returns the architecture and sizes inferred from the shapes
/// (height and width given by the caller) and the tensors in `state_dict` order.
pub fn read_safetensors_state_dict(
    path: &Path,
    height: u32,
    width: u32,
) -> Result<(ModelConfig, Vec<(String, Tensor)>)> {
    let what = path.display().to_string();
    let raw = Tensor::read_safetensors(path)
        .with_context(|| format!("{what}: cannot read as safetensors"))?;
    let strip = |n: &str| -> String {
        n.strip_prefix("module.")
            .or_else(|| n.strip_prefix("model."))
            .unwrap_or(n)
            .to_owned()
    };
    let all: Vec<(String, Tensor)> = raw.into_iter().map(|(n, t)| (strip(&n), t)).collect();
    let cfg = model::infer_config(&all, height, width, &what)?;
    let mut out = Vec::new();
    for spec in &cfg.tensor_specs() {
        let t = model::named_tensor(
            &all,
            spec,
            || format!("{what}: tensor {} is missing", spec.name),
            |has, want| {
                format!(
                    "{what}: tensor {} has shape {has:?}, expected {want:?} for {cfg:?}",
                    spec.name
                )
            },
        )?;
        if !t.is_floating_point() {
            bail!(
                "{what}: tensor {} is {:?}, not floating point",
                spec.name,
                t.kind()
            );
        }
        out.push((spec.name.to_owned(), t.to_kind(Kind::Float)));
    }
    let extra: Vec<&str> = all
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !cfg.tensor_specs().iter().any(|s| s.name == *n))
        .collect();
    if !extra.is_empty() {
        bail!(
            "{what}: tensors that are not part of {}: {}",
            match cfg {
                ModelConfig::SimpleUNet(_) => "SimpleUNet",
                ModelConfig::TinyUNet(_) => "TinyUNet",
            },
            extra.join(", ")
        );
    }
    Ok((cfg, out))
}
