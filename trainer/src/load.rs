//! Model files from disk, each read once and parsed and checked (CRC included) once, then
//! handed on as the network that samples: the core's `HostModel` or the tch network; and the
//! guide of autoguidance (`--guide FILE`), read and checked the same way and refused when it
//! cannot guide the model ([`check_guide`]); and the recipe a model file carries
//! ([`recipe`]), with its guide's file found next to the model.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use ddpm_core::diffusion::SamplerConfig;
use ddpm_core::file::{ModelFile, Precision};
use ddpm_core::host::HostModel;
use ddpm_core::{ModelConfig, ScheduleConfig};
use ddpm_torch::export::{self, LoadedModel};
use ddpm_torch::model::{self, Net};
use tch::{nn, Device};

/// The bytes of the file at `path`.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// Reads the model file at `path`, parses and checks it, and hands it to `f` (which may take
/// its tensors, quantize it, …, all from this one parse).
pub fn with_model_file<T>(path: &Path, f: impl FnOnce(&ModelFile<'_>) -> Result<T>) -> Result<T> {
    let bytes = read(path)?;
    let file = ModelFile::parse(&bytes)
        .map_err(|e| anyhow!("{}: not a valid model file: {e}", path.display()))?;
    f(&file)
}

/// How a model file says it is meant to be sampled, as the sampling commands use it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecipe {
    /// The recipe's sampler.
    pub sampler: SamplerConfig,
    /// The recipe's guide: its path (the recorded file name in the model's folder) and
    /// weight.
    pub guide: Option<(PathBuf, f32)>,
    /// The file's precision.
    pub precision: Precision,
    /// T of the file's schedule.
    pub timesteps: u32,
}

/// The recipe of the model file at `path` (read and checked; the guide it names is not
/// opened here).
pub fn recipe(path: &Path) -> Result<FileRecipe> {
    with_model_file(path, |file| {
        let h = file.header();
        let folder = path.parent().unwrap_or(Path::new(""));
        Ok(FileRecipe {
            sampler: h.recipe.sampler,
            guide: h.recipe.guide.map(|g| (folder.join(g.file), g.weight)),
            precision: h.precision,
            timesteps: h.schedule.timesteps,
        })
    })
}

/// The core's network of the f32 model file at `path`.
pub fn host_model(path: &Path) -> Result<HostModel> {
    let bytes = read(path)?;
    let file = ModelFile::parse(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    HostModel::from_file(&file).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The tch network of an f32 model file on a device, with the file's header fields.
pub struct TorchModel {
    /// Holds the network's parameters.
    pub vs: nn::VarStore,
    /// The network.
    pub net: Net,
    /// The file's sizes, schedule and note, and its tensors on the CPU.
    pub file: LoadedModel,
}

/// The tch network of the f32 model file at `path`, on `device`.
pub fn torch_model(path: &Path, device: Device) -> Result<TorchModel> {
    let file = with_model_file(path, |f| {
        export::from_model_file(f, &path.display().to_string())
    })?;
    let (vs, net) = model::load_net(
        file.config,
        &file.tensors,
        device,
        &path.display().to_string(),
    )?;
    Ok(TorchModel { vs, net, file })
}

/// What a loaded model says about the images it draws and how.
pub trait Header {
    /// The network's sizes and the schedule it was trained with.
    fn header(&self) -> (&ModelConfig, &ScheduleConfig);
}

impl Header for HostModel {
    fn header(&self) -> (&ModelConfig, &ScheduleConfig) {
        (self.config(), self.schedule_config())
    }
}

impl Header for TorchModel {
    fn header(&self) -> (&ModelConfig, &ScheduleConfig) {
        (&self.file.config, &self.file.schedule)
    }
}

/// The model at `path` and, with `guide`, its guide, both loaded by `load`; the guide is
/// refused when it cannot guide the model ([`check_guide`]).
pub fn with_guide<M: Header>(
    path: &Path,
    guide: Option<&Path>,
    load: impl Fn(&Path) -> Result<M>,
) -> Result<(M, Option<M>)> {
    let m = load(path)?;
    let g = match guide {
        Some(g) => {
            let gm = load(g)?;
            check_guide(m.header(), gm.header(), g)?;
            Some(gm)
        }
        None => None,
    };
    Ok((m, g))
}

/// Refuses a guide (`guide_path`, its header's model and schedule) that cannot guide a model
/// with `model` and `schedule`: the two must draw images of one shape under one schedule and
/// parameterization, or `guide + w·(model − guide)` mixes unrelated quantities.
pub fn check_guide(
    (model, schedule): (&ddpm_core::ModelConfig, &ddpm_core::ScheduleConfig),
    (guide, guide_schedule): (&ddpm_core::ModelConfig, &ddpm_core::ScheduleConfig),
    guide_path: &Path,
) -> Result<()> {
    let shape =
        |c: &ddpm_core::ModelConfig| format!("{}×{}×{}", c.channels(), c.height(), c.width());
    if shape(model) != shape(guide) {
        anyhow::bail!(
            "{}: the guide draws {} images (channels×height×width), the model {}",
            guide_path.display(),
            shape(guide),
            shape(model)
        );
    }
    if schedule != guide_schedule {
        anyhow::bail!(
            "{}: the guide was trained with another schedule or parameterization ({}) than \
             the model ({})",
            guide_path.display(),
            crate::describe::describe_schedule(guide_schedule),
            crate::describe::describe_schedule(schedule)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_s_guide_is_found_next_to_its_model() {
        use ddpm_core::diffusion::{DdimConfig, SamplerConfig};
        use ddpm_core::file::{Guide, ModelWriter, Recipe};
        use ddpm_core::{ModelConfig, ScheduleConfig, SimpleUNetConfig};
        let dir = std::env::temp_dir().join(format!("ddpm-recipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sampler = SamplerConfig::Ddim(DdimConfig {
            steps: 7,
            ..DdimConfig::default()
        });
        let write = |name: &str, guide: Option<Guide<'_>>| {
            let bytes = ModelWriter::new(
                ModelConfig::SimpleUNet(SimpleUNetConfig::SEED),
                ScheduleConfig::default(),
                "",
            )
            .with_recipe(&Recipe { sampler, guide })
            .finish();
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let guided = write(
            "guided.ddpm",
            Some(Guide {
                file: "guides/g.ddpm",
                weight: 1.5,
            }),
        );
        let r = recipe(&guided).unwrap();
        assert_eq!(r.sampler, sampler);
        assert_eq!(r.guide, Some((dir.join("guides/g.ddpm"), 1.5)));
        assert_eq!(r.precision, Precision::F32);
        assert_eq!(r.timesteps, 300);
        let alone = write("alone.ddpm", None);
        assert_eq!(recipe(&alone).unwrap().guide, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_guide_of_another_shape_or_schedule_is_refused_naming_its_file() {
        use ddpm_core::{ModelConfig, Prediction, ScheduleConfig, TinyUNetConfig};
        let model = ModelConfig::TinyUNet(TinyUNetConfig::DEFAULT);
        let smaller = ModelConfig::TinyUNet(TinyUNetConfig {
            widths: [16, 32, 32],
            ..TinyUNetConfig::DEFAULT
        });
        let sched = ScheduleConfig::cosine(300).predicting(Prediction::V);
        let g = Path::new("runs/g.ddpm");
        // Another architecture or width is what a guide may be.
        check_guide((&model, &sched), (&smaller, &sched), g).unwrap();
        let taller = ModelConfig::TinyUNet(TinyUNetConfig {
            height: 32,
            ..TinyUNetConfig::DEFAULT
        });
        let e = check_guide((&model, &sched), (&taller, &sched), g).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("runs/g.ddpm: the guide draws 1×32×28 images"),
            "{e}"
        );
        for other in [ScheduleConfig::cosine(300), ScheduleConfig::cosine(1000)] {
            let e = check_guide((&model, &sched), (&smaller, &other), g).unwrap_err();
            assert!(
                e.to_string()
                    .contains("another schedule or parameterization"),
                "{e}"
            );
        }
    }
}
