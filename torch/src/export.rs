//! Moving weights between the trainer, the ddpm-core model file and PyTorch safetensors files.
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ddpm_core::file::{ModelFile, ModelWriter, OwnedRecipe, Precision, Recipe};
use ddpm_core::{AsModelConfig, ModelConfig, Prediction, ScheduleConfig, ScheduleKind};
use tch::{Device, Kind, Tensor};

use crate::model;

/// Encodes a ddpm-core model file (f32) from named tensors in `state_dict` order; `cfg` is a
/// `ModelConfig` or either architecture's configuration; `recipe` is how the model is meant
/// to be sampled (`None`: the architecture's default, [`Recipe::for_model`]).
pub fn model_file_bytes(
    cfg: &impl AsModelConfig,
    schedule: &ScheduleConfig,
    params: &[(String, Tensor)],
    note: &str,
    recipe: Option<&Recipe<'_>>,
) -> Result<Vec<u8>> {
    let cfg = cfg.as_model_config();
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("{} sizes: {e}", cfg.arch_name()))?;
    let recipe = recipe
        .copied()
        .unwrap_or_else(|| Recipe::for_model(&cfg, schedule));
    recipe
        .check(schedule.timesteps)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut w = ModelWriter::new(cfg, *schedule, note).with_recipe(&recipe);
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

/// A model file read back: sizes, schedule, note, recipe and the tensors on the CPU.
pub struct LoadedModel {
    /// Network architecture and sizes.
    pub config: ModelConfig,
    /// The schedule it was trained with.
    pub schedule: ScheduleConfig,
    /// The file's note.
    pub note: String,
    /// The file's recipe (its guide's name relative to the model's folder).
    pub recipe: OwnedRecipe,
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
        recipe: (&header.recipe).into(),
        tensors,
    })
}

/// Writes the tensors as a safetensors file with the seed's `state_dict` names (f32),
/// atomically; PyTorch loads it with `safetensors.torch.load_file` + `load_state_dict`. With
/// `about` = (sizes, schedule), the file's metadata records the architecture, the image size,
/// the schedule and what the network predicts ([`metadata`]), which [`read_metadata`] gives
/// back, so an import needs no flags for them.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    about: Option<(&ModelConfig, &ScheduleConfig)>,
) -> Result<()> {
    let mut views = Vec::with_capacity(tensors.len());
    for (n, t) in tensors {
        let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(t.flatten(0, -1))
            .with_context(|| format!("tensor {n}: cannot read its values"))?;
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        views.push((n.clone(), F32View { shape, data }));
    }
    let info = about.map(|(m, s)| metadata(m, s).into_iter().collect());
    crate::atomic::write_atomic_with(path, |tmp| {
        safetensors::serialize_to_file(views.iter().map(|(n, v)| (n.as_str(), v)), info, tmp)
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    })
}

/// An f32 tensor's bytes for the safetensors writer.
struct F32View {
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &F32View {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.data[..]).into()
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// The safetensors metadata entries of a model: `ddpm.arch` (`simple` or `tiny`),
/// `ddpm.height`, `ddpm.width`, `ddpm.schedule` (`linear` or `cosine`), `ddpm.timesteps`,
/// `ddpm.beta_start` and `ddpm.beta_end` (linear) or `ddpm.cosine_s` and `ddpm.max_beta`
/// (cosine), and `ddpm.prediction` (`eps` or `v`). The other sizes follow from the tensors'
/// shapes.
pub fn metadata(model: &ModelConfig, schedule: &ScheduleConfig) -> Vec<(String, String)> {
    let mut m = vec![
        ("ddpm.arch".to_owned(), model.arch_name().to_owned()),
        ("ddpm.height".to_owned(), model.height().to_string()),
        ("ddpm.width".to_owned(), model.width().to_string()),
        ("ddpm.timesteps".to_owned(), schedule.timesteps.to_string()),
    ];
    match schedule.kind {
        ScheduleKind::Linear {
            beta_start,
            beta_end,
        } => m.extend([
            ("ddpm.schedule".to_owned(), "linear".to_owned()),
            ("ddpm.beta_start".to_owned(), beta_start.to_string()),
            ("ddpm.beta_end".to_owned(), beta_end.to_string()),
        ]),
        ScheduleKind::Cosine { s, max_beta } => m.extend([
            ("ddpm.schedule".to_owned(), "cosine".to_owned()),
            ("ddpm.cosine_s".to_owned(), s.to_string()),
            ("ddpm.max_beta".to_owned(), max_beta.to_string()),
        ]),
    }
    let p = match schedule.prediction {
        Prediction::Eps => "eps",
        Prediction::V => "v",
    };
    m.push(("ddpm.prediction".to_owned(), p.to_owned()));
    m
}

/// What a safetensors file's metadata says about its model ([`metadata`]): the architecture
/// name, the image height and width, and the schedule; `None` when the file has no `ddpm.*`
/// entries.
pub fn read_metadata(path: &Path) -> Result<Option<(String, u32, u32, ScheduleConfig)>> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("{what}: cannot read"))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{what}: cannot read as safetensors: {e}"))?;
    let Some(m) = meta.metadata() else {
        return Ok(None);
    };
    if !m.keys().any(|k| k.starts_with("ddpm.")) {
        return Ok(None);
    }
    let get = |k: &str| -> Result<&str> {
        m.get(k)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("{what}: metadata has ddpm entries but no {k}"))
    };
    fn num<T: std::str::FromStr>(what: &str, k: &str, v: &str) -> Result<T> {
        v.parse()
            .map_err(|_| anyhow!("{what}: metadata {k} = {v:?} is not a number"))
    }
    let timesteps = num(&what, "ddpm.timesteps", get("ddpm.timesteps")?)?;
    let schedule = match get("ddpm.schedule")? {
        "linear" => ScheduleConfig::linear(
            timesteps,
            num(&what, "ddpm.beta_start", get("ddpm.beta_start")?)?,
            num(&what, "ddpm.beta_end", get("ddpm.beta_end")?)?,
        ),
        "cosine" => ScheduleConfig {
            kind: ScheduleKind::Cosine {
                s: num(&what, "ddpm.cosine_s", get("ddpm.cosine_s")?)?,
                max_beta: num(&what, "ddpm.max_beta", get("ddpm.max_beta")?)?,
            },
            timesteps,
            prediction: Prediction::Eps,
        },
        other => bail!("{what}: metadata ddpm.schedule = {other:?} (linear or cosine)"),
    };
    let prediction = match get("ddpm.prediction")? {
        "eps" => Prediction::Eps,
        "v" => Prediction::V,
        other => bail!("{what}: metadata ddpm.prediction = {other:?} (eps or v)"),
    };
    Ok(Some((
        get("ddpm.arch")?.to_owned(),
        num(&what, "ddpm.height", get("ddpm.height")?)?,
        num(&what, "ddpm.width", get("ddpm.width")?)?,
        schedule.predicting(prediction),
    )))
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
                    "{what}: tensor {} has shape {has:?}, expected {want:?} for the {}",
                    spec.name,
                    cfg.arch_name()
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
