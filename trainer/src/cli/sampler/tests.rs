//! Unit tests of the sampler flags: resolution over a base, refusals, guides.
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
        e.contains("--steps applies to --sampler ddim only") && e.contains("DDPM runs all T steps"),
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
