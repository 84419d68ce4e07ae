//! The sampler flags, one struct ([`SamplerArgs`]) for `sample`, `eval` and `compare-int8`.
//! What differs between them (the sampler they run when no flag says otherwise, the DDIM step
//! count, help texts, and the flags after the sampler's) is the [`Flavor`] parameter:
//! [`Guided`] for `sample` and `eval`, [`Compare`] for `compare-int8`.
//!
//! Every sampler flag is optional and [`SamplerArgs::resolve`] applies the given ones, field by
//! field, to a base sampler configuration (the flavor's [`Flavor::base`], or one a model file
//! carries). A flag that does not apply to the sampler that results is refused with a sentence
//! saying why.
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use ddpm_core::diffusion::{DdimConfig, DdpmConfig, DdpmVariance, SamplerConfig, Spacing};

/// Guidance weight w of `--guide` when `--guidance` is not given.
pub const DEFAULT_GUIDANCE: f32 = 2.5;

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum SamplerArg {
    /// Ancestral sampling over all T steps (the lecture notes').
    Ddpm,
    /// DDIM over --steps of the T steps.
    Ddim,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum SpacingArg {
    /// (S−1−k)·⌊T/S⌋.
    Leading,
    /// round(T − k·T/S) − 1.
    Trailing,
    /// round((S−1−k)·(T−1)/(S−1)).
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
    /// The noise seed of image 0.
    fn seed(&self) -> u64;
}

/// The sampler flags; `F` adds the subcommand's own.
#[derive(Args, Clone)]
pub struct SamplerArgs<F: Flavor> {
    #[arg(long, value_enum, help = F::SAMPLER_HELP)]
    pub sampler: Option<SamplerArg>,
    #[arg(long, help = F::STEPS_HELP)]
    pub steps: Option<u32>,
    /// DDIM η in [0, 1] (0: deterministic) [default: 0].
    #[arg(long)]
    pub eta: Option<f32>,
    /// DDIM timestep spacing [default: leading].
    #[arg(long, value_enum)]
    pub spacing: Option<SpacingArg>,
    #[arg(long, value_enum, help = F::VARIANCE_HELP)]
    pub variance: Option<VarianceArg>,
    #[arg(long, help = F::CLIP_X0_HELP, conflicts_with = "no_clip_x0")]
    pub clip_x0: bool,
    /// Do not clip the predicted x0 (the default; turns off a clipping the sampler would
    /// otherwise do).
    #[arg(long)]
    pub no_clip_x0: bool,
    /// DDIM with --clip-x0: recompute ε from the clipped x0 (diffusers'
    /// use_clipped_model_output).
    #[arg(long, conflicts_with = "no_recompute_eps")]
    pub recompute_eps: bool,
    /// DDIM: do not recompute ε from the clipped x0 (the default).
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
        let ddim = match self.sampler {
            Some(s) => s == SamplerArg::Ddim,
            None => matches!(base, SamplerConfig::Ddim(_)),
        };
        if ddim {
            if self.variance.is_some() && !variance_elsewhere {
                bail!(
                    "--variance applies to --sampler ddpm only: DDIM's step noise is set by \
                     --eta"
                );
            }
        } else if let Some(flag) = self.given_ddim_only().first() {
            bail!("{}", ddim_only(flag));
        }
        let cfg = match (base, ddim) {
            (SamplerConfig::Ddpm(d), false) => SamplerConfig::Ddpm(DdpmConfig {
                variance: self.variance.map_or(d.variance, Into::into),
                clip_x0: self.clip().unwrap_or(d.clip_x0),
            }),
            (SamplerConfig::Ddim(d), false) => SamplerConfig::Ddpm(DdpmConfig {
                variance: self
                    .variance
                    .map_or(DdpmConfig::default().variance, Into::into),
                clip_x0: self.clip().unwrap_or(d.clip_x0),
            }),
            (base, true) => {
                let d = match base {
                    SamplerConfig::Ddim(d) => d,
                    SamplerConfig::Ddpm(p) => DdimConfig {
                        steps: F::DDIM_STEPS,
                        clip_x0: p.clip_x0,
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

    /// The noise seed of image 0.
    pub fn seed(&self) -> u64 {
        self.own.seed()
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
    /// step, guide + w·(model − guide) (Karras et al. 2024); two network passes per step.
    #[arg(long, value_name = "MODEL", conflicts_with = "no_guide")]
    pub guide: Option<PathBuf>,
    /// Guidance weight w of --guide (1: the model alone) [default: 2.5].
    #[arg(long, conflicts_with = "no_guide")]
    pub guidance: Option<f32>,
    /// No autoguidance: the model alone (the default).
    #[arg(long)]
    pub no_guide: bool,
}

impl Guided {
    /// The guide and its weight over `base` (a guide already chosen, e.g. carried by the model
    /// file): --no-guide drops it, --guide replaces its file (keeping `base`'s weight, or
    /// [`DEFAULT_GUIDANCE`] without a base), --guidance its weight. --guidance without a guide
    /// is refused.
    pub fn resolve_guide(&self, base: Option<(PathBuf, f32)>) -> Result<Option<(PathBuf, f32)>> {
        if self.no_guide {
            return Ok(None);
        }
        let guide = match (&self.guide, base) {
            (Some(g), base) => Some((g.clone(), base.map_or(DEFAULT_GUIDANCE, |(_, w)| w))),
            (None, base) => base,
        };
        match (guide, self.guidance) {
            (None, Some(_)) => bail!(
                "--guidance weighs a guide's output against the model's: give the guide with \
                 --guide MODEL"
            ),
            (Some((g, w)), weight) => Ok(Some((g, weight.unwrap_or(w)))),
            (None, None) => Ok(None),
        }
    }

    /// The guide the flags name, with its weight.
    pub fn guide(&self) -> Result<Option<(PathBuf, f32)>> {
        self.resolve_guide(None)
    }
}

impl Flavor for Guided {
    const DDIM_STEPS: u32 = 50;
    const SAMPLER_HELP: &'static str = "Sampler [default: ddpm]";
    const STEPS_HELP: &'static str = "DDIM steps S (1..=T) [default: 50]";
    const VARIANCE_HELP: &'static str =
        "DDPM step variance (also the model variance of `eval --nll`) [default: fixed-large]";
    const CLIP_X0_HELP: &'static str =
        "Clip the predicted x0 to [−1, 1] at every step (also the model mean of `eval --nll`)";

    /// DDPM, fixed-large variance, no clipping (the lecture notes' sampler).
    fn base() -> SamplerConfig {
        SamplerConfig::Ddpm(DdpmConfig {
            variance: DdpmVariance::FixedLarge,
            clip_x0: false,
        })
    }

    fn seed(&self) -> u64 {
        self.seed
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

impl Flavor for Compare {
    const DDIM_STEPS: u32 = 10;
    const SAMPLER_HELP: &'static str = "Sampler [default: ddim]";
    const STEPS_HELP: &'static str = "DDIM steps S (1..=T) [default: 10]";
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

    fn seed(&self) -> u64 {
        self.seed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct GuidedCli {
        #[command(flatten)]
        s: SamplerArgs<Guided>,
    }

    #[derive(Parser)]
    struct CompareCli {
        #[command(flatten)]
        s: SamplerArgs<Compare>,
    }

    fn guided(args: &[&str]) -> SamplerArgs<Guided> {
        GuidedCli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .s
    }

    fn compare(args: &[&str]) -> SamplerArgs<Compare> {
        CompareCli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .s
    }

    fn ddim(steps: u32) -> DdimConfig {
        DdimConfig {
            steps,
            ..DdimConfig::default()
        }
    }

    fn err(r: Result<SamplerConfig>) -> String {
        format!("{:#}", r.unwrap_err())
    }

    #[test]
    fn the_defaults_are_the_samplers_of_before() {
        // Before the flags became optional: `sample`/`eval` ran DDPM fixed-large without
        // clipping, `compare-int8` DDIM 10 steps, η 0, leading spacing, without clipping.
        assert_eq!(
            guided(&[]).config().unwrap(),
            SamplerConfig::Ddpm(DdpmConfig {
                variance: DdpmVariance::FixedLarge,
                clip_x0: false
            })
        );
        assert_eq!(
            compare(&[]).config().unwrap(),
            SamplerConfig::Ddim(DdimConfig {
                steps: 10,
                eta: 0.0,
                spacing: Spacing::Leading,
                clip_x0: false,
                recompute_eps: false
            })
        );
        // And the flags of before give what they gave.
        assert_eq!(
            guided(&["--sampler", "ddim"]).config().unwrap(),
            SamplerConfig::Ddim(ddim(50))
        );
        assert_eq!(
            guided(&["--sampler", "ddim", "--steps", "5", "--eta", "0.5"])
                .config()
                .unwrap(),
            SamplerConfig::Ddim(DdimConfig {
                eta: 0.5,
                ..ddim(5)
            })
        );
        assert_eq!(
            guided(&["--sampler", "ddim", "--spacing", "trailing", "--clip-x0"])
                .config()
                .unwrap(),
            SamplerConfig::Ddim(DdimConfig {
                spacing: Spacing::Trailing,
                clip_x0: true,
                ..ddim(50)
            })
        );
        assert_eq!(
            guided(&["--sampler", "ddim", "--clip-x0", "--recompute-eps"])
                .config()
                .unwrap(),
            SamplerConfig::Ddim(DdimConfig {
                clip_x0: true,
                recompute_eps: true,
                ..ddim(50)
            })
        );
        assert_eq!(
            guided(&["--variance", "fixed-small", "--clip-x0"])
                .config()
                .unwrap(),
            SamplerConfig::Ddpm(DdpmConfig {
                variance: DdpmVariance::FixedSmall,
                clip_x0: true
            })
        );
        assert_eq!(
            compare(&["--steps", "3"]).config().unwrap(),
            SamplerConfig::Ddim(ddim(3))
        );
        assert_eq!(
            compare(&["--sampler", "ddpm"]).config().unwrap(),
            SamplerConfig::Ddpm(DdpmConfig::default())
        );
    }

    #[test]
    fn no_clip_x0_turns_off_the_clipping_of_the_base() {
        let base = SamplerConfig::Ddim(DdimConfig {
            clip_x0: true,
            recompute_eps: true,
            ..ddim(10)
        });
        assert_eq!(
            guided(&["--no-clip-x0"]).resolve(base).unwrap(),
            SamplerConfig::Ddim(ddim(10)),
            "the recomputation goes with the clipping"
        );
        assert_eq!(
            guided(&["--no-recompute-eps"]).resolve(base).unwrap(),
            SamplerConfig::Ddim(DdimConfig {
                clip_x0: true,
                ..ddim(10)
            })
        );
        let ddpm = SamplerConfig::Ddpm(DdpmConfig {
            variance: DdpmVariance::FixedSmall,
            clip_x0: true,
        });
        assert_eq!(
            guided(&["--no-clip-x0"]).resolve(ddpm).unwrap(),
            SamplerConfig::Ddpm(DdpmConfig {
                variance: DdpmVariance::FixedSmall,
                clip_x0: false
            })
        );
    }

    #[test]
    fn sampler_switches_the_kind_of_the_base() {
        let ddpm_clip = SamplerConfig::Ddpm(DdpmConfig {
            variance: DdpmVariance::FixedSmall,
            clip_x0: true,
        });
        assert_eq!(
            guided(&["--sampler", "ddim", "--steps", "20"])
                .resolve(ddpm_clip)
                .unwrap(),
            SamplerConfig::Ddim(DdimConfig {
                clip_x0: true,
                ..ddim(20)
            })
        );
        // Without --steps: the flavor's step count.
        assert_eq!(
            compare(&["--sampler", "ddim"])
                .resolve(SamplerConfig::Ddpm(DdpmConfig::default()))
                .unwrap(),
            SamplerConfig::Ddim(ddim(10))
        );
        // DDIM → DDPM: default variance, the base's clipping.
        let ddim_clip = SamplerConfig::Ddim(DdimConfig {
            clip_x0: true,
            eta: 1.0,
            ..ddim(7)
        });
        assert_eq!(
            guided(&["--sampler", "ddpm"]).resolve(ddim_clip).unwrap(),
            SamplerConfig::Ddpm(DdpmConfig {
                variance: DdpmVariance::FixedLarge,
                clip_x0: true
            })
        );
    }

    #[test]
    fn steps_alone_keeps_the_rest_of_a_ddim_base() {
        let base = SamplerConfig::Ddim(DdimConfig {
            steps: 25,
            eta: 0.3,
            spacing: Spacing::Linspace,
            clip_x0: true,
            recompute_eps: true,
        });
        assert_eq!(
            guided(&["--steps", "5"]).resolve(base).unwrap(),
            SamplerConfig::Ddim(DdimConfig {
                steps: 5,
                eta: 0.3,
                spacing: Spacing::Linspace,
                clip_x0: true,
                recompute_eps: true,
            })
        );
    }

    #[test]
    fn flags_of_the_other_sampler_are_refused_with_the_reason() {
        let ddpm = SamplerConfig::Ddpm(DdpmConfig::default());
        let e = err(guided(&["--steps", "20"]).resolve(ddpm));
        assert!(
            e.contains("--steps applies to --sampler ddim only")
                && e.contains("DDPM runs all T steps"),
            "{e}"
        );
        for (flags, flag) in [
            (&["--eta", "0.5"][..], "--eta"),
            (&["--spacing", "trailing"], "--spacing"),
            (&["--clip-x0", "--recompute-eps"], "--recompute-eps"),
            (&["--no-recompute-eps"], "--no-recompute-eps"),
        ] {
            let e = err(guided(flags).config());
            assert!(
                e.starts_with(&format!("{flag} applies to --sampler ddim only: ")),
                "{e}"
            );
        }
        let e = err(compare(&["--sampler", "ddpm", "--steps", "3"]).config());
        assert!(e.contains("--steps applies to --sampler ddim only"), "{e}");
        let e = err(compare(&["--variance", "fixed-small"]).config());
        assert!(
            e.contains("--variance applies to --sampler ddpm only") && e.contains("--eta"),
            "{e}"
        );
        let e = err(guided(&["--sampler", "ddim", "--recompute-eps"]).config());
        assert!(e.contains("--recompute-eps needs clipping"), "{e}");
        // A base that clips lets --recompute-eps stand alone.
        let clip = SamplerConfig::Ddim(DdimConfig {
            clip_x0: true,
            ..ddim(10)
        });
        assert_eq!(
            guided(&["--recompute-eps"]).resolve(clip).unwrap(),
            SamplerConfig::Ddim(DdimConfig {
                clip_x0: true,
                recompute_eps: true,
                ..ddim(10)
            })
        );
    }

    #[test]
    fn contradicting_switches_are_refused_by_the_parser() {
        for pair in [
            ["--clip-x0", "--no-clip-x0"],
            ["--recompute-eps", "--no-recompute-eps"],
        ] {
            let args = std::iter::once("t").chain(pair);
            assert!(GuidedCli::try_parse_from(args).is_err(), "{pair:?}");
        }
        let e = GuidedCli::try_parse_from(["t", "--guide", "g.ddpm", "--no-guide"]);
        assert!(e.is_err());
    }

    #[test]
    fn the_bound_model_of_eval_reads_variance_and_clipping() {
        let s = guided(&["--variance", "fixed-small", "--clip-x0"]);
        assert_eq!(
            s.bound_model(Guided::base()),
            DdpmConfig {
                variance: DdpmVariance::FixedSmall,
                clip_x0: true
            }
        );
        let s = guided(&[
            "--sampler",
            "ddim",
            "--steps",
            "3",
            "--variance",
            "fixed-small",
        ]);
        assert!(s.config().is_err());
        let (sampler, bound) = s.resolve_with_bound(Guided::base()).unwrap();
        assert_eq!(sampler, SamplerConfig::Ddim(ddim(3)));
        assert_eq!(bound.variance, DdpmVariance::FixedSmall);
        let e = guided(&["--steps", "3"])
            .refuse_sampling_only()
            .unwrap_err();
        assert!(format!("{e}").starts_with("--steps applies to --fid's sampler"));
        assert!(guided(&["--clip-x0"]).refuse_sampling_only().is_ok());
    }

    #[test]
    fn guide_weight_defaults_and_base_guides() {
        let g = |args: &[&str]| guided(args).own;
        assert_eq!(g(&[]).guide().unwrap(), None);
        assert_eq!(
            g(&["--guide", "g.ddpm"]).guide().unwrap(),
            Some((PathBuf::from("g.ddpm"), DEFAULT_GUIDANCE))
        );
        assert_eq!(
            g(&["--guide", "g.ddpm", "--guidance", "1.5"])
                .guide()
                .unwrap(),
            Some((PathBuf::from("g.ddpm"), 1.5))
        );
        let e = g(&["--guidance", "3"]).guide().unwrap_err();
        assert!(format!("{e}").contains("--guide MODEL"), "{e}");
        let base = Some((PathBuf::from("carried.ddpm"), 2.0));
        assert_eq!(
            g(&["--no-guide"]).resolve_guide(base.clone()).unwrap(),
            None
        );
        assert_eq!(
            g(&["--guidance", "3"]).resolve_guide(base.clone()).unwrap(),
            Some((PathBuf::from("carried.ddpm"), 3.0))
        );
        assert_eq!(g(&[]).resolve_guide(base.clone()).unwrap(), base);
    }
}
