//! The sampler flags, one struct ([`SamplerArgs`]) for `sample`, `eval` and `compare-int8`.
//! What differs between them (the defaults of --sampler and --steps, two help texts, and the
//! flags after --clip-x0) is the [`Flavor`] parameter: [`Guided`] for `sample` and `eval`,
//! [`Compare`] for `compare-int8`.
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ddpm_core::diffusion::{DdimConfig, DdpmConfig, DdpmVariance, SamplerConfig, Spacing};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    /// Ancestral sampling over all T steps (the seed's).
    Ddpm,
    /// DDIM over --steps of the T steps.
    Ddim,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SpacingArg {
    /// (S−1−k)·⌊T/S⌋.
    Leading,
    /// round(T − k·T/S) − 1.
    Trailing,
    /// round((S−1−k)·(T−1)/(S−1)).
    Linspace,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum VarianceArg {
    /// σ² = β_t (the seed's).
    FixedLarge,
    /// σ² = β̃_t, the posterior variance.
    FixedSmall,
}

/// What one subcommand's sampler flags have of their own.
pub trait Flavor: Args {
    /// Default of --sampler.
    const SAMPLER: &'static str;
    /// Default of --steps.
    const STEPS: &'static str;
    /// Help of --variance.
    const VARIANCE_HELP: &'static str;
    /// Help of --clip-x0.
    const CLIP_X0_HELP: &'static str;
    /// DDIM with --clip-x0: whether ε is recomputed from the clipped x0.
    fn recompute_eps(&self) -> bool;
    /// The noise seed of image 0.
    fn seed(&self) -> u64;
}

/// The sampler flags; `F` adds the subcommand's own.
#[derive(Args)]
pub struct SamplerArgs<F: Flavor> {
    /// Sampler.
    #[arg(long, value_enum, default_value = F::SAMPLER)]
    pub sampler: SamplerArg,
    /// DDIM steps S (1..=T).
    #[arg(long, default_value = F::STEPS)]
    pub steps: u32,
    /// DDIM η in [0, 1] (0: deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f32,
    /// DDIM timestep spacing.
    #[arg(long, value_enum, default_value = "leading")]
    pub spacing: SpacingArg,
    #[arg(long, value_enum, default_value = "fixed-large", help = F::VARIANCE_HELP)]
    pub variance: VarianceArg,
    #[arg(long, help = F::CLIP_X0_HELP)]
    pub clip_x0: bool,
    #[command(flatten)]
    pub own: F,
}

impl<F: Flavor> SamplerArgs<F> {
    /// The DDPM step variance.
    pub fn variance(&self) -> DdpmVariance {
        match self.variance {
            VarianceArg::FixedLarge => DdpmVariance::FixedLarge,
            VarianceArg::FixedSmall => DdpmVariance::FixedSmall,
        }
    }

    /// The sampler the flags describe.
    pub fn config(&self) -> SamplerConfig {
        match self.sampler {
            SamplerArg::Ddpm => SamplerConfig::Ddpm(DdpmConfig {
                variance: self.variance(),
                clip_x0: self.clip_x0,
            }),
            SamplerArg::Ddim => SamplerConfig::Ddim(DdimConfig {
                steps: self.steps,
                eta: self.eta,
                spacing: match self.spacing {
                    SpacingArg::Leading => Spacing::Leading,
                    SpacingArg::Trailing => Spacing::Trailing,
                    SpacingArg::Linspace => Spacing::Linspace,
                },
                clip_x0: self.clip_x0,
                recompute_eps: self.own.recompute_eps(),
            }),
        }
    }

    /// The noise seed of image 0.
    pub fn seed(&self) -> u64 {
        self.own.seed()
    }
}

/// The sampler flags of `sample`, shared by `eval`: the seed, ε recomputation and
/// autoguidance.
#[derive(Args)]
pub struct Guided {
    /// DDIM with --clip-x0: recompute ε from the clipped x0 (diffusers'
    /// use_clipped_model_output).
    #[arg(long, requires = "clip_x0")]
    pub recompute_eps: bool,
    /// Noise seed: image i starts from SEED + i (the core backend and `eval --fid`); it also
    /// seeds libtorch's generator (`--backend torch`) and the x_t draws of `eval --nll`.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Autoguidance: a weaker model file of the same schedule and parameterization (fewer
    /// epochs, fewer channels) whose output the model's is extrapolated away from at every
    /// step, guide + w·(model − guide) (Karras et al. 2024); two network passes per step.
    #[arg(long, value_name = "MODEL")]
    pub guide: Option<PathBuf>,
    /// Guidance weight w of --guide (1: the model alone).
    #[arg(long, default_value_t = 2.5, requires = "guide")]
    pub guidance: f32,
}

impl Flavor for Guided {
    const SAMPLER: &'static str = "ddpm";
    const STEPS: &'static str = "50";
    const VARIANCE_HELP: &'static str =
        "DDPM step variance (also the model variance of `eval --nll`)";
    const CLIP_X0_HELP: &'static str =
        "Clip the predicted x0 to [−1, 1] at every step (also the model mean of `eval --nll`)";

    fn recompute_eps(&self) -> bool {
        self.recompute_eps
    }

    fn seed(&self) -> u64 {
        self.seed
    }
}

/// The sampler flags of `compare-int8`, with defaults suited to comparing many images (DDIM,
/// 10 steps): the seed only.
#[derive(Args)]
pub struct Compare {
    /// Noise seed of image 0.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl Flavor for Compare {
    const SAMPLER: &'static str = "ddim";
    const STEPS: &'static str = "10";
    const VARIANCE_HELP: &'static str = "DDPM step variance";
    const CLIP_X0_HELP: &'static str = "Clip the predicted x0 to [−1, 1] at every step";

    fn recompute_eps(&self) -> bool {
        false
    }

    fn seed(&self) -> u64 {
        self.seed
    }
}
