//! `trainer info`: what a model file holds — architecture and sizes, parameter count,
//! precision, schedule and prediction, the recipe it is meant to be sampled with (sampler and
//! guide), how it was made (its note), its tensors, size and CRC — as text or JSON.
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use ddpm_core::diffusion::{DdpmVariance, Prediction, SamplerConfig, ScheduleKind};
use ddpm_core::file::{DType, ModelFile, OwnedRecipe, Precision};
use ddpm_core::{ModelConfig, ScheduleConfig};

use crate::describe::{
    describe_model, describe_precision, describe_sampler, describe_schedule, solver_kind,
    spacing_name,
};
use crate::json::{json_num, json_str};
use crate::load;

/// One stored tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name.
    pub name: String,
    /// Element type (`f32`, `i8`, `i32`).
    pub dtype: &'static str,
    /// Dimensions.
    pub dims: Vec<u32>,
}

/// What `trainer info` reports about a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The network's sizes.
    pub model: ModelConfig,
    /// The noise schedule and what the network predicts.
    pub schedule: ScheduleConfig,
    /// f32 or int8.
    pub precision: Precision,
    /// Parameters of the network (elements of its f32 parameter tensors).
    pub params: usize,
    /// Multiply-adds of one forward pass.
    pub macs: u64,
    /// The format version of the file (1: before recipes).
    pub version: u16,
    /// Its recipe (the guide's file name relative to the model's folder).
    pub recipe: OwnedRecipe,
    /// How the model was made.
    pub note: String,
    /// Every stored tensor, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Bytes of the file.
    pub file_bytes: usize,
    /// The CRC-32 stored at the end of the file (checked when the file was read).
    pub crc: u32,
}

/// Reads and checks the model file at `path`.
pub fn read(path: &Path) -> Result<ModelInfo> {
    let bytes = load::read(path)?;
    let file = ModelFile::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid model file: {e}", path.display()))?;
    let crc_bytes: [u8; 4] = bytes[bytes.len() - 4..].try_into().expect("four bytes");
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    Ok(of_file(
        &file,
        version,
        bytes.len(),
        u32::from_le_bytes(crc_bytes),
    ))
}

/// The report of a parsed file of format `version`, `file_bytes` bytes, whose stored CRC is
/// `crc`.
pub fn of_file(file: &ModelFile<'_>, version: u16, file_bytes: usize, crc: u32) -> ModelInfo {
    let h = file.header();
    ModelInfo {
        model: h.model,
        schedule: h.schedule,
        precision: h.precision,
        params: h.model.param_count(),
        macs: h.model.macs(),
        version,
        recipe: (&h.recipe).into(),
        note: h.note.to_owned(),
        tensors: file
            .tensors()
            .map(|t| TensorInfo {
                name: t.name.to_owned(),
                dtype: dtype_name(t.dtype),
                dims: t.dims().to_vec(),
            })
            .collect(),
        file_bytes,
        crc,
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::I8 => "i8",
        DType::I32 => "i32",
    }
}

impl ModelInfo {
    /// The report as text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "model:      {}", describe_model(&self.model));
        let _ = writeln!(
            s,
            "parameters: {} ({} multiply-adds per forward pass)",
            self.params, self.macs
        );
        let _ = writeln!(s, "precision:  {}", describe_precision(self.precision));
        let _ = writeln!(s, "schedule:   {}", describe_schedule(&self.schedule));
        let _ = writeln!(
            s,
            "sampler:    {}{}",
            describe_sampler(&self.recipe.sampler, self.schedule.timesteps),
            if self.version == ddpm_core::file::FORMAT_VERSION_V1 {
                " (format 1 file, which records no recipe: the default)"
            } else {
                ""
            }
        );
        let _ = match &self.recipe.guide {
            Some((file, w)) => writeln!(s, "guide:      {file} (next to the model), weight {w}"),
            None => writeln!(s, "guide:      (none)"),
        };
        let _ = writeln!(
            s,
            "file:       format {}, {} bytes, CRC-32 {:#010x}",
            self.version, self.file_bytes, self.crc
        );
        let _ = writeln!(
            s,
            "note:       {}",
            if self.note.is_empty() {
                "(none)"
            } else {
                &self.note
            }
        );
        let width = self.tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
        let _ = writeln!(s, "tensors:    {}", self.tensors.len());
        for t in &self.tensors {
            let dims: Vec<String> = t.dims.iter().map(u32::to_string).collect();
            let _ = writeln!(
                s,
                "  {:width$}  {:3}  [{}]",
                t.name,
                t.dtype,
                dims.join(", ")
            );
        }
        s
    }

    /// The report as one JSON object.
    pub fn json(&self) -> String {
        let arch = match self.model {
            ModelConfig::SimpleUNet(_) => "simple",
            ModelConfig::TinyUNet(_) => "tiny",
        };
        let sizes = match self.model {
            ModelConfig::SimpleUNet(c) => format!(
                "{{\"channels\": {}, \"height\": {}, \"width\": {}, \"hidden1\": {}, \
                 \"hidden2\": {}}}",
                c.channels, c.height, c.width, c.hidden1, c.hidden2
            ),
            ModelConfig::TinyUNet(c) => format!(
                "{{\"channels\": {}, \"height\": {}, \"width\": {}, \"widths\": [{}, {}, {}], \
                 \"mid_blocks\": {}, \"emb_dim\": {}, \"temb_dim\": {}}}",
                c.channels,
                c.height,
                c.width,
                c.widths[0],
                c.widths[1],
                c.widths[2],
                c.mid_blocks,
                c.emb_dim,
                c.temb_dim
            ),
        };
        let kind = match self.schedule.kind {
            ScheduleKind::Linear {
                beta_start,
                beta_end,
            } => format!(
                "{{\"kind\": \"linear\", \"beta_start\": {}, \"beta_end\": {}",
                json_num(beta_start),
                json_num(beta_end)
            ),
            ScheduleKind::Cosine { s, max_beta } => format!(
                "{{\"kind\": \"cosine\", \"s\": {}, \"max_beta\": {}",
                json_num(s),
                json_num(max_beta)
            ),
        };
        let schedule = format!(
            "{kind}, \"timesteps\": {}, \"prediction\": \"{}\"}}",
            self.schedule.timesteps,
            match self.schedule.prediction {
                Prediction::Eps => "eps",
                Prediction::V => "v",
            }
        );
        let sampler = match self.recipe.sampler {
            SamplerConfig::Ddpm(d) => format!(
                "{{\"kind\": \"ddpm\", \"variance\": \"{}\", \"clip_x0\": {}}}",
                match d.variance {
                    DdpmVariance::FixedLarge => "fixed-large",
                    DdpmVariance::FixedSmall => "fixed-small",
                },
                d.clip_x0
            ),
            SamplerConfig::Ddim(d) => format!(
                "{{\"kind\": \"ddim\", \"steps\": {}, \"eta\": {}, \"spacing\": \"{}\", \
                 \"clip_x0\": {}, \"recompute_eps\": {}}}",
                d.steps,
                json_num(f64::from(d.eta)),
                spacing_name(d.spacing),
                d.clip_x0,
                d.recompute_eps
            ),
            SamplerConfig::DpmSolver2M(d) | SamplerConfig::UniPc(d) => format!(
                "{{\"kind\": \"{}\", \"steps\": {}, \"spacing\": \"{}\"}}",
                solver_kind(&self.recipe.sampler),
                d.steps,
                spacing_name(d.spacing)
            ),
        };
        let guide = match &self.recipe.guide {
            Some((file, w)) => format!(
                "{{\"file\": {}, \"weight\": {}}}",
                json_str(file),
                json_num(f64::from(*w))
            ),
            None => "null".to_owned(),
        };
        let tensors: Vec<String> = self
            .tensors
            .iter()
            .map(|t| {
                let dims: Vec<String> = t.dims.iter().map(u32::to_string).collect();
                format!(
                    "{{\"name\": {}, \"dtype\": \"{}\", \"dims\": [{}]}}",
                    json_str(&t.name),
                    t.dtype,
                    dims.join(", ")
                )
            })
            .collect();
        format!(
            "{{\"arch\": \"{arch}\", \"sizes\": {sizes}, \"parameters\": {}, \"macs\": {}, \
             \"precision\": \"{}\", \"schedule\": {schedule}, \"recipe\": {{\"sampler\": \
             {sampler}, \"guide\": {guide}}}, \"note\": {}, \"format_version\": {}, \
             \"file_bytes\": {}, \"crc32\": \"{:#010x}\", \"tensors\": [{}]}}\n",
            self.params,
            self.macs,
            match self.precision {
                Precision::F32 => "f32",
                Precision::Int8 => "int8",
            },
            json_str(&self.note),
            self.version,
            self.file_bytes,
            self.crc,
            tensors.join(", ")
        )
    }
}
