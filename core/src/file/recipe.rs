//! The sampling recipe a model file carries (format version 2): the sampler the model is meant
//! to be drawn with and, optionally, the weaker model that guides it (autoguidance).
//!
//! Files of format version 1 carry no recipe and get [`Recipe::LEGACY`], the sampler the
//! trainer used when no flag said otherwise (DDPM over all T steps, σ² = β_t, no clipping).

use serde::{Deserialize, Serialize};

use crate::diffusion::{DdimConfig, SamplerConfig, ScheduleConfig, Spacing};
use crate::error::{Error, Result};
use crate::nets::ModelConfig;

/// The guide a recipe names: a model file next to this one, and the guidance weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Guide<'a> {
    /// File name of the guide, relative to the folder of the model file that names it (plain
    /// components only: no root, no `..`).
    pub file: &'a str,
    /// Guidance weight w: guide + w·(model − guide).
    pub weight: f32,
}

/// How a model is meant to be sampled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recipe<'a> {
    /// The sampler and its options.
    pub sampler: SamplerConfig,
    /// The guide, if the model is meant to be guided.
    #[serde(borrow)]
    pub guide: Option<Guide<'a>>,
}

impl Recipe<'static> {
    /// What a version-1 file (which records no recipe) is sampled with: DDPM over all T
    /// steps with σ² = β_t and no clipping, unguided.
    pub const LEGACY: Self = Self {
        sampler: SamplerConfig::LEGACY,
        guide: None,
    };

    /// The recipe a freshly trained model of this architecture is written with, unguided:
    /// the SimpleUNet keeps the lecture notes' DDPM sampler; the TinyUNet is drawn with DDIM
    /// over 50 steps (all T when T < 50) at η = 1, x0 clipped to [−1, 1] and ε recomputed
    /// from it (the sampler its committed model was tuned with; see docs/quality.md).
    pub fn for_model(model: &ModelConfig, schedule: &ScheduleConfig) -> Self {
        match model {
            ModelConfig::SimpleUNet(_) => Self::LEGACY,
            ModelConfig::TinyUNet(_) => Self {
                sampler: SamplerConfig::Ddim(DdimConfig {
                    steps: schedule.timesteps.clamp(1, 50),
                    eta: 1.0,
                    spacing: Spacing::Leading,
                    clip_x0: true,
                    recompute_eps: true,
                }),
                guide: None,
            },
        }
    }
}

impl Recipe<'_> {
    /// Checks what a file can get wrong without any other file at hand: a DDIM step count
    /// in 1..=`timesteps`, η in [0, 1], and a guide with a finite weight and a plain,
    /// relative, non-empty file name.
    pub fn check(&self, timesteps: u32) -> Result<()> {
        if let SamplerConfig::DpmSolver2M(d) | SamplerConfig::UniPc(d) = &self.sampler {
            if d.steps == 0 || d.steps > timesteps {
                return Err(Error::InvalidConfig(
                    "recipe: DPM-Solver/UniPC steps outside 1..=T of the schedule",
                ));
            }
        }
        if let SamplerConfig::Ddim(d) = &self.sampler {
            if d.steps == 0 || d.steps > timesteps {
                return Err(Error::InvalidConfig(
                    "recipe: DDIM steps outside 1..=T of the schedule",
                ));
            }
            if !(0.0..=1.0).contains(&d.eta) {
                return Err(Error::InvalidConfig("recipe: DDIM eta outside [0, 1]"));
            }
        }
        if let Some(g) = &self.guide {
            if !g.weight.is_finite() {
                return Err(Error::InvalidConfig("recipe: guidance weight not finite"));
            }
            let plain = !g.file.is_empty()
                && !g.file.starts_with(['/', '\\'])
                && !g.file.contains(':')
                && g.file
                    .split(['/', '\\'])
                    .all(|c| !c.is_empty() && c != "." && c != "..");
            if !plain {
                return Err(Error::InvalidConfig(
                    "recipe: guide file name not a plain relative path",
                ));
            }
        }
        Ok(())
    }
}

/// A [`Recipe`] that owns its guide's file name (feature `alloc`): what writers and host
/// programs keep after the file it came from is gone.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedRecipe {
    /// The sampler and its options.
    pub sampler: SamplerConfig,
    /// The guide's file name (relative to the model's folder) and weight.
    pub guide: Option<(alloc::string::String, f32)>,
}

#[cfg(feature = "alloc")]
impl OwnedRecipe {
    /// The recipe, borrowing the guide's name.
    pub fn as_recipe(&self) -> Recipe<'_> {
        Recipe {
            sampler: self.sampler,
            guide: self.guide.as_ref().map(|(file, weight)| Guide {
                file,
                weight: *weight,
            }),
        }
    }
}

#[cfg(feature = "alloc")]
impl From<&Recipe<'_>> for OwnedRecipe {
    fn from(r: &Recipe<'_>) -> Self {
        Self {
            sampler: r.sampler,
            guide: r.guide.map(|g| (g.file.into(), g.weight)),
        }
    }
}
