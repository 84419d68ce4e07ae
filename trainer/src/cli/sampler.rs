//! The sampler flags, one struct ([`SamplerArgs`]) for `sample`, `eval` and `compare-int8`.
//! What differs between them (the sampler they run when no flag says otherwise, the DDIM step
//! count, help texts, and the flags after the sampler's) is the [`Flavor`] parameter:
//! [`Guided`] for `sample` and `eval`, [`Compare`] for `compare-int8`.
//!
//! Every sampler flag is optional and [`SamplerArgs::resolve`] applies the given ones, field by
//! field, to a base sampler configuration (the flavor's [`Flavor::base`], or one a model file
//! carries). A flag that does not apply to the sampler that results is refused with a sentence
//! saying why.
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use ddpm_core::diffusion::{
    DdimConfig, DdpmConfig, DdpmVariance, GuidanceInterval, SamplerConfig, SolverConfig, Spacing,
};
use ddpm_core::file::{OwnedRecipe, Recipe};
use ddpm_trainer::draw::{ClassChoice, DEFAULT_CFG};
use ddpm_trainer::load::FileRecipe;

/// Guidance weight w of `--guide` when `--guidance` is not given.
pub const DEFAULT_GUIDANCE: f32 = 2.5;

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum SamplerArg {
    /// Ancestral sampling over all T steps (the lecture notes').
    Ddpm,
    /// DDIM over --steps of the T steps.
    Ddim,
    /// DPM-Solver++(2M) over --steps of the T steps (deterministic, second order; no
    /// clipping).
    #[value(name = "dpmpp-2m")]
    DpmSolver2M,
    /// UniPC (bh2, order 2, with the UniC corrector) over --steps of the T steps
    /// (deterministic; no clipping).
    #[value(name = "unipc")]
    UniPc,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum SpacingArg {
    /// DDIM: (S−1−k)·⌊T/S⌋; the solvers: (S−k)·⌊T/(S+1)⌋.
    Leading,
    /// round(T − k·T/S) − 1.
    Trailing,
    /// DDIM: round((S−1−k)·(T−1)/(S−1)); the solvers: round((S−k)·(T−1)/S).
    Linspace,
}

impl From<SpacingArg> for Spacing {
    fn from(s: SpacingArg) -> Self {
        match s {
            SpacingArg::Leading => Spacing::Leading,
            SpacingArg::Trailing => Spacing::Trailing,
            SpacingArg::Linspace => Spacing::Linspace,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum VarianceArg {
    /// σ² = β_t (the lecture notes').
    FixedLarge,
    /// σ² = β̃_t, the posterior variance.
    FixedSmall,
}

impl From<VarianceArg> for DdpmVariance {
    fn from(v: VarianceArg) -> Self {
        match v {
            VarianceArg::FixedLarge => DdpmVariance::FixedLarge,
            VarianceArg::FixedSmall => DdpmVariance::FixedSmall,
        }
    }
}

/// What one subcommand's sampler flags have of their own.
pub trait Flavor: Args {
    /// DDIM steps S when `--sampler ddim` turns a DDPM base into DDIM and `--steps` is not
    /// given.
    const DDIM_STEPS: u32;
    /// Help of --sampler (with its default).
    const SAMPLER_HELP: &'static str;
    /// Help of --steps (with its default).
    const STEPS_HELP: &'static str;
    /// Help of --variance (with its default).
    const VARIANCE_HELP: &'static str;
    /// Help of --clip-x0.
    const CLIP_X0_HELP: &'static str;
    /// The sampler the subcommand runs when no flag says otherwise.
    fn base() -> SamplerConfig;
    /// The subcommand's own flags given on the command line that belong to the recipe (the
    /// guide's), as they are spelt.
    fn given_own(&self) -> Vec<&'static str> {
        Vec::new()
    }
}

/// The guide flags given of a flavor with `--guide`, `--guidance` and `--no-guide`.
fn given_guide(guide: bool, guidance: bool, no_guide: bool) -> Vec<&'static str> {
    [
        (guide, "--guide"),
        (guidance, "--guidance"),
        (no_guide, "--no-guide"),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect()
}

/// The sampler flags; `F` adds the subcommand's own.
#[derive(Args, Clone)]
pub struct SamplerArgs<F: Flavor> {
    #[arg(long, value_enum, help = F::SAMPLER_HELP)]
    pub sampler: Option<SamplerArg>,
    #[arg(long, help = F::STEPS_HELP)]
    pub steps: Option<u32>,
    /// DDIM η in [0, 1] (0: deterministic) [default: the model's recipe for sample and eval,
    /// else 0].
    #[arg(long)]
    pub eta: Option<f32>,
    /// Timestep spacing of DDIM and the solvers, as diffusers computes each [default: the
    /// model's recipe for sample and eval, else leading for DDIM and linspace for the solvers].
    #[arg(long, value_enum)]
    pub spacing: Option<SpacingArg>,
    #[arg(long, value_enum, help = F::VARIANCE_HELP)]
    pub variance: Option<VarianceArg>,
    #[arg(long, help = F::CLIP_X0_HELP, conflicts_with = "no_clip_x0")]
    pub clip_x0: bool,
    /// Do not clip the predicted x0 (turns off the clipping of a model's recipe).
    #[arg(long)]
    pub no_clip_x0: bool,
    /// DDIM with --clip-x0: recompute ε from the clipped x0 (diffusers'
    /// use_clipped_model_output).
    #[arg(long, conflicts_with = "no_recompute_eps")]
    pub recompute_eps: bool,
    /// DDIM: do not recompute ε from the clipped x0 (turns off a recipe's recomputation).
    #[arg(long)]
    pub no_recompute_eps: bool,
    #[command(flatten)]
    pub own: F,
}

/// The sentence refusing a DDIM-only flag with DDPM.
fn ddim_only(flag: &str) -> String {
    let why = match flag {
        "--steps" => "DDPM runs all T steps",
        "--eta" => "DDPM's step noise is set by --variance",
        "--spacing" => "DDPM runs all T steps, so there are none to space out",
        _ => "DDPM with --clip-x0 steps through the posterior mean of the clipped x0, not ε",
    };
    format!("{flag} applies to --sampler ddim only: {why}")
}

impl<F: Flavor> SamplerArgs<F> {
    /// --clip-x0 (`Some(true)`), --no-clip-x0 (`Some(false)`) or neither.
    fn clip(&self) -> Option<bool> {
        switch_pair(self.clip_x0, self.no_clip_x0)
    }

    /// --recompute-eps (`Some(true)`), --no-recompute-eps (`Some(false)`) or neither.
    fn recompute(&self) -> Option<bool> {
        switch_pair(self.recompute_eps, self.no_recompute_eps)
    }

    /// The sampler and recipe flags given on the command line, as they are spelt.
    pub fn given(&self) -> Vec<&'static str> {
        let mut flags: Vec<&'static str> = [
            (self.sampler.is_some(), "--sampler"),
            (self.variance.is_some(), "--variance"),
            (self.clip_x0, "--clip-x0"),
            (self.no_clip_x0, "--no-clip-x0"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect();
        flags.extend(self.given_ddim_only());
        flags.extend(self.own.given_own());
        flags
    }

    /// The sampler flags given, as they are spelt, that only DDIM reads.
    fn given_ddim_only(&self) -> Vec<&'static str> {
        [
            (self.steps.is_some(), "--steps"),
            (self.eta.is_some(), "--eta"),
            (self.spacing.is_some(), "--spacing"),
            (self.recompute_eps, "--recompute-eps"),
            (self.no_recompute_eps, "--no-recompute-eps"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect()
    }

    /// The sampler `base` with the flags given applied to it, field by field.
    ///
    /// `--sampler` switches the kind: DDPM → DDIM takes [`DdimConfig::default`]'s η, spacing
    /// and ε recomputation, the flavor's [`Flavor::DDIM_STEPS`] steps and `base`'s clipping;
    /// DDIM → DDPM takes [`DdpmConfig::default`]'s variance and `base`'s clipping. Then every
    /// flag given replaces its field. A flag that does not apply to the resulting sampler
    /// (`--steps`, `--eta`, `--spacing`, `--recompute-eps`, `--no-recompute-eps` with DDPM,
    /// `--variance` with DDIM) is refused, and so is `--recompute-eps` without clipping. An ε
    /// recomputation that `base` carries is dropped with its clipping (`--no-clip-x0`).
    pub fn resolve(&self, base: SamplerConfig) -> Result<SamplerConfig> {
        self.resolve_impl(base, false)
    }

    /// [`Self::resolve`]; `variance_elsewhere`: --variance is read by something else too
    /// (`eval --nll`'s model p_θ), so it is not refused with DDIM.
    fn resolve_impl(&self, base: SamplerConfig, variance_elsewhere: bool) -> Result<SamplerConfig> {
        let kind = self.sampler.unwrap_or(match base {
            SamplerConfig::Ddpm(_) => SamplerArg::Ddpm,
            SamplerConfig::Ddim(_) => SamplerArg::Ddim,
            SamplerConfig::DpmSolver2M(_) => SamplerArg::DpmSolver2M,
            SamplerConfig::UniPc(_) => SamplerArg::UniPc,
        });
        if kind != SamplerArg::Ddpm && self.variance.is_some() && !variance_elsewhere {
            bail!(
                "--variance applies to --sampler ddpm only: DDIM's step noise is set by --eta, \
                 and DPM-Solver++ and UniPC add none"
            );
        }
        let base_clip = match base {
            SamplerConfig::Ddpm(d) => d.clip_x0,
            SamplerConfig::Ddim(d) => d.clip_x0,
            SamplerConfig::DpmSolver2M(_) | SamplerConfig::UniPc(_) => false,
        };
        let cfg = match kind {
            SamplerArg::Ddpm => {
                if let Some(flag) = self.given_ddim_only().first() {
                    bail!("{}", ddim_only(flag));
                }
                let variance = match base {
                    SamplerConfig::Ddpm(d) => d.variance,
                    _ => DdpmConfig::default().variance,
                };
                SamplerConfig::Ddpm(DdpmConfig {
                    variance: self.variance.map_or(variance, Into::into),
                    clip_x0: self.clip().unwrap_or(base_clip),
                })
            }
            SamplerArg::DpmSolver2M | SamplerArg::UniPc => {
                let (name, solver) = match kind {
                    SamplerArg::UniPc => ("unipc", "UniPC"),
                    _ => ("dpmpp-2m", "DPM-Solver++(2M)"),
                };
                let refused = [
                    (self.eta.is_some(), "--eta"),
                    (self.clip_x0, "--clip-x0"),
                    (self.no_clip_x0, "--no-clip-x0"),
                    (self.recompute_eps, "--recompute-eps"),
                    (self.no_recompute_eps, "--no-recompute-eps"),
                ];
                if let Some((_, flag)) = refused.iter().find(|f| f.0) {
                    bail!(
                        "{flag} does not apply to --sampler {name}: {solver} is deterministic \
                         and steps with the unclipped x0"
                    );
                }
                let (steps, spacing) = match base {
                    SamplerConfig::DpmSolver2M(d) | SamplerConfig::UniPc(d) => (d.steps, d.spacing),
                    SamplerConfig::Ddim(d) => (d.steps, Spacing::Linspace),
                    SamplerConfig::Ddpm(_) => (F::DDIM_STEPS, Spacing::Linspace),
                };
                let solver = SolverConfig {
                    steps: self.steps.unwrap_or(steps),
                    spacing: self.spacing.map_or(spacing, Into::into),
                };
                match kind {
                    SamplerArg::UniPc => SamplerConfig::UniPc(solver),
                    _ => SamplerConfig::DpmSolver2M(solver),
                }
            }
            SamplerArg::Ddim => {
                let d = match base {
                    SamplerConfig::Ddim(d) => d,
                    SamplerConfig::Ddpm(p) => DdimConfig {
                        steps: F::DDIM_STEPS,
                        clip_x0: p.clip_x0,
                        ..DdimConfig::default()
                    },
                    SamplerConfig::DpmSolver2M(p) | SamplerConfig::UniPc(p) => DdimConfig {
                        steps: p.steps,
                        ..DdimConfig::default()
                    },
                };
                let clip_x0 = self.clip().unwrap_or(d.clip_x0);
                let recompute_eps = match self.recompute() {
                    Some(true) if !clip_x0 => bail!(
                        "--recompute-eps needs clipping (--clip-x0): it recomputes ε from the \
                         clipped x0"
                    ),
                    Some(r) => r,
                    None => d.recompute_eps && clip_x0,
                };
                SamplerConfig::Ddim(DdimConfig {
                    steps: self.steps.unwrap_or(d.steps),
                    eta: self.eta.unwrap_or(d.eta),
                    spacing: self.spacing.map_or(d.spacing, Into::into),
                    clip_x0,
                    recompute_eps,
                })
            }
        };
        Ok(cfg)
    }

    /// The sampler the flags describe over the subcommand's own base, [`Flavor::base`].
    pub fn config(&self) -> Result<SamplerConfig> {
        self.resolve(F::base())
    }

    /// The DDPM model p_θ of `eval --nll` over `base`: --variance and --clip-x0 /
    /// --no-clip-x0 applied to `base`'s (to [`DdpmConfig::default`]'s variance and `base`'s
    /// clipping when `base` is DDIM). The flags only DDIM reads are the caller's to refuse.
    pub fn bound_model(&self, base: SamplerConfig) -> DdpmConfig {
        let (variance, clip_x0) = match base {
            SamplerConfig::Ddpm(d) => (d.variance, d.clip_x0),
            SamplerConfig::Ddim(d) => (DdpmConfig::default().variance, d.clip_x0),
            SamplerConfig::DpmSolver2M(_) | SamplerConfig::UniPc(_) => {
                (DdpmConfig::default().variance, false)
            }
        };
        DdpmConfig {
            variance: self.variance.map_or(variance, Into::into),
            clip_x0: self.clip().unwrap_or(clip_x0),
        }
    }

    /// `eval --nll --fid`: the sampler of --fid over `base` ([`Self::resolve`], except that
    /// --variance, which defines --nll's p_θ, is accepted with DDIM) and --nll's p_θ
    /// ([`Self::bound_model`]).
    pub fn resolve_with_bound(&self, base: SamplerConfig) -> Result<(SamplerConfig, DdpmConfig)> {
        Ok((self.resolve_impl(base, true)?, self.bound_model(base)))
    }

    /// `eval --nll` alone: refuses the sampler flags that only --fid's sampler reads.
    pub fn refuse_sampling_only(&self) -> Result<()> {
        let mut given = self.given_ddim_only();
        if self.sampler.is_some() {
            given.insert(0, "--sampler");
        }
        if let Some(flag) = given.first() {
            bail!(
                "{flag} applies to --fid's sampler: --nll bounds the likelihood of DDPM over all \
                 T steps, with --variance and --clip-x0"
            );
        }
        Ok(())
    }
}

/// A switch and its `--no-` twin (clap refuses both at once) as an optional override.
fn switch_pair(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    }
}

/// The sampler flags of `sample`, shared by `eval`: the seed and autoguidance.
#[derive(Args, Clone)]
pub struct Guided {
    /// Noise seed: image i starts from SEED + i (the core backend and `eval --fid`); it also
    /// seeds libtorch's generator (`--backend torch`) and the x_t draws of `eval --nll`.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Autoguidance: a weaker model file of the same schedule and parameterization (fewer
    /// epochs, fewer channels) whose output the model's is extrapolated away from at every
    /// step, guide + w·(model − guide) (Karras et al. 2024); two network passes per step
    /// [default: the guide the model's recipe names, if any].
    #[arg(long, value_name = "MODEL", conflicts_with = "no_guide")]
    pub guide: Option<PathBuf>,
    /// Guidance weight w of the guide (1: the model alone) [default: the recipe's, else 2.5].
    #[arg(long, conflicts_with = "no_guide")]
    pub guidance: Option<f32>,
    /// No autoguidance: the model alone, even when its recipe names a guide.
    #[arg(long)]
    pub no_guide: bool,
    /// A class-conditional model (`fit --conditional`): the digit to draw, 0 to 9, or `all`
    /// (sample: --n images of every class, a row per class; eval --fid: the samples shared
    /// equally among the classes, with a table per class), or for inpaint `visible` (each
    /// completion of a class drawn from p(class | kept part), estimated by a classifier trained
    /// on digits with that part hidden).
    #[arg(long, value_name = "K|all|visible", value_parser = ClassChoice::parse)]
    pub class: Option<ClassChoice>,
    /// Classifier-free guidance weight w of --class (Ho & Salimans 2022): uncond + w·(cond −
    /// uncond), both outputs from the one network, "no class" for uncond; two passes per step,
    /// one with w = 1 (the conditional output alone) [default: 1.3].
    #[arg(long, value_name = "W", requires = "class")]
    pub cfg: Option<f32>,
    /// Apply the guidance (the guide's, or --class's) only at the steps whose network time
    /// t/T lies in LO..=HI, e.g. `0.35,0.95` (Kynkäänniemi et al. 2024: guidance in a limited
    /// interval); the other steps run the model alone, one pass instead of two [default: every
    /// step].
    #[arg(long, value_name = "LO,HI", value_parser = parse_interval)]
    pub guide_interval: Option<GuidanceInterval>,
}

/// `LO,HI` with `0 ≤ LO ≤ HI ≤ 1`.
fn parse_interval(s: &str) -> std::result::Result<GuidanceInterval, String> {
    let (lo, hi) = s
        .split_once(',')
        .ok_or_else(|| format!("'{s}' is not LO,HI (two numbers, e.g. 0.35,0.95)"))?;
    let num = |v: &str| {
        v.trim()
            .parse::<f32>()
            .map_err(|_| format!("'{v}' in '{s}' is not a number"))
    };
    GuidanceInterval::new(num(lo)?, num(hi)?)
        .map_err(|_| format!("'{s}': the interval must have 0 ≤ LO ≤ HI ≤ 1"))
}

impl Guided {
    /// The steps the guidance applies at (--guide-interval, else every step); `guided` says
    /// whether anything guides (a guide, or a class with a weight other than 1): an interval
    /// with nothing to limit is refused.
    pub fn interval(&self, guided: bool) -> Result<GuidanceInterval> {
        match self.guide_interval {
            Some(_) if !guided => bail!(
                "--guide-interval limits guidance to some steps, but nothing guides this \
                 sampling: give a guide (--guide MODEL, or the model's recipe's) or --class \
                 with a --cfg other than 1"
            ),
            Some(i) => Ok(i),
            None => Ok(GuidanceInterval::ALWAYS),
        }
    }

    /// --class with its guidance weight (--cfg, else [`DEFAULT_CFG`]).
    pub fn classes(&self) -> Option<(ClassChoice, f32)> {
        self.class.map(|c| (c, self.cfg.unwrap_or(DEFAULT_CFG)))
    }

    /// The guide and its weight over `base` (a guide already chosen, e.g. carried by the model
    /// file): --no-guide drops it, --guide replaces its file (keeping `base`'s weight, or
    /// [`DEFAULT_GUIDANCE`] without a base), --guidance its weight. --guidance without a guide
    /// is refused.
    pub fn resolve_guide(&self, base: Option<(PathBuf, f32)>) -> Result<Option<(PathBuf, f32)>> {
        guide_over(
            self.guide.clone(),
            self.guidance,
            self.no_guide,
            base,
            "--guidance weighs a guide's output against the model's: give the guide with \
             --guide MODEL",
        )
    }

    /// The guide the flags name, with its weight.
    pub fn guide(&self) -> Result<Option<(PathBuf, f32)>> {
        self.resolve_guide(None)
    }
}

impl SamplerArgs<Guided> {
    /// The noise seed of image 0.
    pub fn seed(&self) -> u64 {
        self.own.seed
    }

    /// The sampler and guide of a model whose file carries `recipe`, with the flags given
    /// applied to them field by field ([`Self::resolve`], [`Guided::resolve_guide`]); `model`
    /// names the file in errors. A guide the recipe names must exist (or be dropped with
    /// --no-guide or replaced with --guide).
    pub fn over_recipe(
        &self,
        recipe: &FileRecipe,
        model: &Path,
    ) -> Result<(SamplerConfig, Option<(PathBuf, f32)>)> {
        Ok((
            self.resolve(recipe.sampler)?,
            self.recipe_guide(recipe, model)?,
        ))
    }

    /// The guide of [`Self::over_recipe`].
    pub fn recipe_guide(
        &self,
        recipe: &FileRecipe,
        model: &Path,
    ) -> Result<Option<(PathBuf, f32)>> {
        let guide = self.own.resolve_guide(recipe.guide.clone())?;
        if let (Some((g, _)), None) = (&guide, &self.own.guide) {
            if !g.is_file() {
                bail!(
                    "{}: its recipe names the guide {}, which is not there: put it next to \
                     the model, give another with --guide MODEL, or sample unguided with \
                     --no-guide",
                    model.display(),
                    g.display()
                );
            }
        }
        Ok(guide)
    }
}

impl Flavor for Guided {
    const DDIM_STEPS: u32 = 50;
    const SAMPLER_HELP: &'static str =
        "Sampler [default: the model file's recipe (`trainer info MODEL`); ddpm for a file \
         without one]";
    const STEPS_HELP: &'static str =
        "Steps S of DDIM, DPM-Solver++ and UniPC (1..=T) [default: the recipe's; 50 when \
         --sampler ddim turns a DDPM recipe into DDIM]";
    const VARIANCE_HELP: &'static str =
        "DDPM step variance (also the model variance of `eval --nll`) [default: the recipe's; \
         fixed-large]";
    const CLIP_X0_HELP: &'static str =
        "Clip the predicted x0 to [−1, 1] at every step (also the model mean of `eval --nll`)";

    /// DDPM, fixed-large variance, no clipping (the lecture notes' sampler).
    fn given_own(&self) -> Vec<&'static str> {
        let mut given = given_guide(self.guide.is_some(), self.guidance.is_some(), self.no_guide);
        if self.guide_interval.is_some() {
            given.push("--guide-interval");
        }
        given
    }

    fn base() -> SamplerConfig {
        SamplerConfig::Ddpm(DdpmConfig {
            variance: DdpmVariance::FixedLarge,
            clip_x0: false,
        })
    }
}

/// The sampler flags of `compare-int8`, with defaults suited to comparing many images (DDIM,
/// 10 steps): the seed only.
#[derive(Args, Clone)]
pub struct Compare {
    /// Noise seed of image 0.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SamplerArgs<Compare> {
    /// The noise seed of image 0.
    pub fn seed(&self) -> u64 {
        self.own.seed
    }
}

impl Flavor for Compare {
    const DDIM_STEPS: u32 = 10;
    const SAMPLER_HELP: &'static str = "Sampler [default: ddim]";
    const STEPS_HELP: &'static str =
        "Steps S of DDIM, DPM-Solver++ and UniPC (1..=T) [default: 10]";
    const VARIANCE_HELP: &'static str = "DDPM step variance [default: fixed-large]";
    const CLIP_X0_HELP: &'static str = "Clip the predicted x0 to [−1, 1] at every step";

    /// DDIM, 10 steps, η 0, leading spacing, no clipping.
    fn base() -> SamplerConfig {
        SamplerConfig::Ddim(DdimConfig {
            steps: 10,
            eta: 0.0,
            spacing: Spacing::Leading,
            clip_x0: false,
            recompute_eps: false,
        })
    }
}

/// The recipe flags of `export`: the sampler flags and the guide to record in the model file
/// written (no seed: a recipe draws with any).
#[derive(Args, Clone)]
pub struct Stored {
    /// The guide to record: a file name relative to the folder of --out (plain components, no
    /// `..`), which `sample` and `eval` then load next to the model [default: the source's
    /// guide, if any].
    #[arg(long, value_name = "FILE", conflicts_with = "no_guide")]
    pub guide: Option<String>,
    /// Guidance weight w to record [default: the source's, else 2.5].
    #[arg(long, conflicts_with = "no_guide")]
    pub guidance: Option<f32>,
    /// Record no guide, even when the source names one.
    #[arg(long)]
    pub no_guide: bool,
}

impl Flavor for Stored {
    const DDIM_STEPS: u32 = 50;
    const SAMPLER_HELP: &'static str =
        "Sampler to record in the model file's recipe [default: the source's recipe; a \
         checkpoint's architecture default]";
    const STEPS_HELP: &'static str =
        "Steps S (DDIM, DPM-Solver++, UniPC; 1..=T) to record [default: the recipe's]";
    const VARIANCE_HELP: &'static str = "DDPM step variance to record [default: the recipe's]";
    const CLIP_X0_HELP: &'static str = "Record clipping the predicted x0 to [−1, 1]";

    /// The lecture notes' sampler (DDPM, fixed-large, no clipping).
    fn given_own(&self) -> Vec<&'static str> {
        given_guide(self.guide.is_some(), self.guidance.is_some(), self.no_guide)
    }

    fn base() -> SamplerConfig {
        SamplerConfig::LEGACY
    }
}

impl SamplerArgs<Stored> {
    /// The recipe `base` with the flags given applied field by field.
    pub fn resolve_recipe(&self, base: &Recipe<'_>) -> Result<OwnedRecipe> {
        let guide = guide_over(
            self.own.guide.clone(),
            self.own.guidance,
            self.own.no_guide,
            base.guide.map(|g| (g.file.to_owned(), g.weight)),
            "--guidance is the weight of a recorded guide: name it with --guide FILE",
        )?;
        Ok(OwnedRecipe {
            sampler: self.resolve(base.sampler)?,
            guide,
        })
    }
}

/// A guide (file and weight) over `base`: `no_guide` drops it, `file` replaces its file
/// (keeping `base`'s weight, or [`DEFAULT_GUIDANCE`] without a base), `weight` its weight; a
/// weight with no guide to weigh is refused with `refusal`.
fn guide_over<T>(
    file: Option<T>,
    weight: Option<f32>,
    no_guide: bool,
    base: Option<(T, f32)>,
    refusal: &str,
) -> Result<Option<(T, f32)>> {
    if no_guide {
        return Ok(None);
    }
    let guide = match (file, base) {
        (Some(g), base) => Some((g, base.map_or(DEFAULT_GUIDANCE, |(_, w)| w))),
        (None, base) => base,
    };
    match (guide, weight) {
        (None, Some(_)) => bail!("{refusal}"),
        (Some((g, w)), weight) => Ok(Some((g, weight.unwrap_or(w)))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests;
