//! Places `memory.x` where the linker finds it, passes cortex-m-rt's linker script, turns the
//! build-time settings `DDPM_DEMO_SEED`, `DDPM_DEMO_STEPS`, `DDPM_DEMO_SAMPLER`,
//! `DDPM_DEMO_GUIDANCE` (also `cfg(guided)`, which embeds the guide), `DDPM_DEMO_GUIDE_INTERVAL`,
//! `DDPM_DEMO_CLASS` (also
//! `cfg(conditional)`, which embeds the class-conditional model instead) and `DDPM_DEMO_INPAINT`
//! with `DDPM_DEMO_DIGIT`, `DDPM_DEMO_RESAMPLE` and `DDPM_DEMO_JUMP` (also `cfg(inpaint)`, which
//! embeds a committed MNIST test digit and the mask as f32 tables) into constants, and writes the
//! embedded model's noise schedule tables (computed by ddpm-core's `Schedule::new`, as the
//! firmware would at run time) as a `static` for flash.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::exit;

use ddpm_core::diffusion::{MaskShape, Prediction, Schedule, ScheduleConfig, ScheduleKind};
use ddpm_core::file::ModelFile;

/// `demo_settings.rs`'s `MAX_T` (the generated `static` fails to compile if they differ).
const MAX_T: usize = 300;

/// The samplers `DDPM_DEMO_SAMPLER` takes and the `DemoSampler` variants they name.
const SAMPLERS: [(&str, &str); 3] = [
    ("ddim", "Ddim"),
    ("dpmpp-2m", "DpmSolver2M"),
    ("unipc", "UniPc"),
];

/// Rust source of `cfg` (exact: `{:?}` of a float round-trips).
fn schedule_config_source(cfg: &ScheduleConfig) -> String {
    let kind = match cfg.kind {
        ScheduleKind::Linear {
            beta_start,
            beta_end,
        } => {
            format!("ScheduleKind::Linear {{ beta_start: {beta_start:?}, beta_end: {beta_end:?} }}")
        }
        ScheduleKind::Cosine { s, max_beta } => {
            format!("ScheduleKind::Cosine {{ s: {s:?}, max_beta: {max_beta:?} }}")
        }
    };
    let prediction = match cfg.prediction {
        Prediction::Eps => "Eps",
        Prediction::V => "V",
    };
    format!(
        "ScheduleConfig {{ kind: {kind}, timesteps: {}, prediction: Prediction::{prediction} }}",
        cfg.timesteps
    )
}

/// Rust source of `Schedule::from_tables` for the schedule of the model file `path`.
fn schedule_source(path: &str) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| {
        eprintln!("error: cannot read the embedded model file {path}: {e}");
        exit(1);
    });
    let file = ModelFile::parse(&bytes).unwrap_or_else(|e| {
        eprintln!("error: {path}: {e}");
        exit(1);
    });
    let cfg = file.header().schedule;
    let sched: Schedule<MAX_T> = Schedule::new(&cfg).unwrap_or_else(|e| {
        eprintln!("error: {path}: its schedule does not fit the firmware's {MAX_T} steps: {e}");
        exit(1);
    });
    let table = |values: &[f32]| {
        let mut out = String::from("[");
        for t in 0..MAX_T {
            // {:?} of an f32 is the shortest text that parses back to the same bits.
            let v = values.get(t).copied().unwrap_or(0.0);
            write!(out, "{v:?},").unwrap();
        }
        out.push(']');
        out
    };
    format!(
        "{{\n    use ddpm_core::diffusion::{{Prediction, ScheduleConfig, ScheduleKind}};\n    \
         ddpm_core::Schedule::from_tables(\n        {},\n        {},\n        {},\n        {},\n        {},\n    )\n}}\n",
        schedule_config_source(&cfg),
        table(sched.betas()),
        table(sched.alphas()),
        table(sched.alphas_cumprod()),
        table(sched.posterior_variance()),
    )
}

/// Parses the environment variable `name` as a decimal number, if it is set.
fn parse_env<T: std::str::FromStr>(name: &str, what: &str) -> Option<T> {
    println!("cargo:rerun-if-env-changed={name}");
    let raw = env::var(name).ok()?;
    match raw.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => {
            eprintln!("error: {name} must be {what}, got {raw:?}");
            exit(1);
        }
    }
}

/// The committed MNIST test digits an inpainting build completes (u8 IDX, N×28×28).
const DIGITS: &str = "../models/mnist_test_digits.idx";

/// Rust source of an f32 array (exact: `{:?}` of an f32 parses back to the same bits).
fn f32_array(values: &[f32]) -> String {
    let mut out = String::from("[");
    for v in values {
        write!(out, "{v:?},").unwrap();
    }
    out.push(']');
    out
}

/// Rust source of the inpainting tables of digit `digit` of [`DIGITS`] under `shape`: the known
/// image (p/127.5 − 1, as the trainer maps pixels) and the mask, both `static` (flash).
fn inpaint_source(shape: MaskShape, digit: usize) -> String {
    let bytes = fs::read(DIGITS).unwrap_or_else(|e| {
        eprintln!("error: cannot read the digits to inpaint, {DIGITS}: {e}");
        exit(1);
    });
    let word = |i: usize| u32::from_be_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap());
    if bytes.len() < 16 || word(0) != 0x0803 || (word(2), word(3)) != (28, 28) {
        eprintln!("error: {DIGITS} is not an IDX file of 28×28 u8 images");
        exit(1);
    }
    let count = word(1) as usize;
    if digit >= count || bytes.len() < 16 + count * 784 {
        eprintln!(
            "error: DDPM_DEMO_DIGIT={digit}: {DIGITS} holds {count} digits (0 to {})",
            count.saturating_sub(1)
        );
        exit(1);
    }
    let known: Vec<f32> = bytes[16 + digit * 784..][..784]
        .iter()
        .map(|&p| f32::from(p) / 127.5 - 1.0)
        .collect();
    let mut mask = vec![0.0f32; 784];
    shape.fill(28, 28, &mut mask).expect("a 28×28 mask");
    format!(
        "/// The known digit (test digit {digit} of `models/mnist_test_digits.idx`, p/127.5 − 1).\n\
         pub static KNOWN: [f32; 784] = {};\n\
         /// The mask: 1 kept, 0 hidden ({}).\n\
         pub static MASK: [f32; 784] = {};\n",
        f32_array(&known),
        shape.name(),
        f32_array(&mask)
    )
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));

    // The f32 build needs more RAM than the int8 build's 64 KB (see link/memory-f32.x). Both
    // live in link/, not next to Cargo.toml: the linker looks in its working directory (the
    // crate root) before OUT_DIR, so a memory.x there would win over the one chosen here.
    let memory: &[u8] = if env::var_os("CARGO_FEATURE_F32").is_some() {
        include_bytes!("link/memory-f32.x")
    } else {
        include_bytes!("link/memory.x")
    };
    fs::write(out.join("memory.x"), memory)
        .unwrap_or_else(|e| panic!("cannot write memory.x to {}: {e}", out.display()));
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=link/memory.x");
    println!("cargo:rerun-if-changed=link/memory-f32.x");
    // The embedded model files; the build's schedule comes from the one its model embeds.
    let class: Option<u32> = parse_env("DDPM_DEMO_CLASS", "a digit, 0 to 9");
    if let Some(k) = class {
        if k > 9 {
            eprintln!("error: DDPM_DEMO_CLASS must be a digit, 0 to 9, got {k}");
            exit(1);
        }
        if env::var_os("CARGO_FEATURE_TINY").is_none() {
            eprintln!(
                "error: DDPM_DEMO_CLASS needs the `tiny` feature: the class-conditional model \
                 is a TinyUNet"
            );
            exit(1);
        }
    }
    println!("cargo:rustc-check-cfg=cfg(conditional)");
    println!("cargo:rerun-if-changed=../models/tiny_unet_mnist_cond_int8.ddpm");
    let model = if class.is_some() {
        println!("cargo:rustc-cfg=conditional");
        "../models/tiny_unet_mnist_cond_int8.ddpm"
    } else if env::var_os("CARGO_FEATURE_TINY").is_some() {
        "../models/tiny_unet_mnist_int8.ddpm"
    } else if env::var_os("CARGO_FEATURE_F32").is_some() {
        "../models/simple_unet_mnist.ddpm"
    } else {
        "../models/simple_unet_mnist_int8.ddpm"
    };
    fs::write(out.join("schedule.rs"), schedule_source(model))
        .unwrap_or_else(|e| panic!("cannot write schedule.rs to {}: {e}", out.display()));
    println!("cargo:rerun-if-changed=../models/simple_unet_mnist_int8.ddpm");
    println!("cargo:rerun-if-changed=../models/simple_unet_mnist.ddpm");
    println!("cargo:rerun-if-changed=../models/tiny_unet_mnist_int8.ddpm");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");

    let seed: Option<u64> = parse_env("DDPM_DEMO_SEED", "a decimal integer in 0..=2^64-1");
    let steps: Option<u32> = parse_env("DDPM_DEMO_STEPS", "a decimal number of steps");
    println!("cargo:rerun-if-env-changed=DDPM_DEMO_SAMPLER");
    let sampler = env::var("DDPM_DEMO_SAMPLER").ok().map(|raw| {
        let name = raw.trim();
        match SAMPLERS.iter().find(|(n, _)| *n == name) {
            Some((_, variant)) => format!("Some(crate::demo_model::DemoSampler::{variant})"),
            None => {
                let names: Vec<&str> = SAMPLERS.iter().map(|s| s.0).collect();
                eprintln!(
                    "error: DDPM_DEMO_SAMPLER must be one of {}, got {raw:?}",
                    names.join(", ")
                );
                exit(1);
            }
        }
    });
    let sampler = sampler.unwrap_or_else(|| "None".to_owned());
    println!("cargo:rustc-check-cfg=cfg(guided)");
    println!("cargo:rerun-if-changed=../models/tiny_unet_mnist_guide_int8.ddpm");
    let guidance: Option<f32> = parse_env("DDPM_DEMO_GUIDANCE", "a finite guidance weight");
    if let Some(w) = guidance {
        if !w.is_finite() {
            eprintln!("error: DDPM_DEMO_GUIDANCE must be finite, got {w}");
            exit(1);
        }
        if env::var_os("CARGO_FEATURE_TINY").is_none() {
            eprintln!(
                "error: DDPM_DEMO_GUIDANCE needs the `tiny` feature: guided sampling runs on \
                 the TinyUNet's planned executor"
            );
            exit(1);
        }
        println!("cargo:rustc-cfg=guided");
    }
    println!("cargo:rerun-if-env-changed=DDPM_DEMO_GUIDE_INTERVAL");
    let interval = env::var("DDPM_DEMO_GUIDE_INTERVAL").ok().map(|raw| {
        let parsed = raw.split_once(',').and_then(|(lo, hi)| {
            let (lo, hi) = (lo.trim().parse::<f32>().ok()?, hi.trim().parse::<f32>().ok()?);
            ((0.0..=1.0).contains(&lo) && (lo..=1.0).contains(&hi)).then_some((lo, hi))
        });
        let Some((lo, hi)) = parsed else {
            eprintln!(
                "error: DDPM_DEMO_GUIDE_INTERVAL must be LO,HI with 0 ≤ LO ≤ HI ≤ 1 (network \
                 time t/T), got {raw:?}"
            );
            exit(1);
        };
        if guidance.is_none() {
            eprintln!(
                "error: DDPM_DEMO_GUIDE_INTERVAL limits guidance to some steps: set \
                 DDPM_DEMO_GUIDANCE=W too"
            );
            exit(1);
        }
        // {:?} of an f32 parses back to the same bits.
        format!("Some(({lo:?}f32, {hi:?}f32))")
    });
    let interval = interval.unwrap_or_else(|| "None".to_owned());
    println!("cargo:rustc-check-cfg=cfg(profile)");
    println!("cargo:rerun-if-env-changed=DDPM_DEMO_PROFILE");
    match env::var("DDPM_DEMO_PROFILE").ok().as_deref().map(str::trim) {
        None | Some("") | Some("0") => {}
        Some("1") => {
            if env::var_os("CARGO_FEATURE_TINY").is_none() {
                eprintln!(
                    "error: DDPM_DEMO_PROFILE needs the `tiny` feature: the layer profile \
                     times the TinyUNet's planned executor"
                );
                exit(1);
            }
            println!("cargo:rustc-cfg=profile");
        }
        Some(other) => {
            eprintln!("error: DDPM_DEMO_PROFILE must be 0 or 1, got {other:?}");
            exit(1);
        }
    }
    println!("cargo:rustc-check-cfg=cfg(inpaint)");
    println!("cargo:rerun-if-env-changed=DDPM_DEMO_INPAINT");
    println!("cargo:rerun-if-changed={DIGITS}");
    let shape = env::var("DDPM_DEMO_INPAINT").ok().map(|raw| {
        MaskShape::from_name(raw.trim()).unwrap_or_else(|| {
            let names: Vec<&str> = MaskShape::ALL.iter().map(|m| m.name()).collect();
            eprintln!(
                "error: DDPM_DEMO_INPAINT must be one of {}, got {raw:?}",
                names.join(", ")
            );
            exit(1);
        })
    });
    let digit: Option<usize> = parse_env("DDPM_DEMO_DIGIT", "a digit index, 0 to 9");
    let resample: Option<u32> = parse_env("DDPM_DEMO_RESAMPLE", "a number of passes, at least 1");
    let jump: Option<u32> = parse_env("DDPM_DEMO_JUMP", "a number of steps, at least 1");
    if shape.is_none() && (digit.is_some() || resample.is_some() || jump.is_some()) {
        eprintln!(
            "error: DDPM_DEMO_DIGIT, DDPM_DEMO_RESAMPLE and DDPM_DEMO_JUMP apply to inpainting \
             builds: set DDPM_DEMO_INPAINT=top|bottom|left|right|center"
        );
        exit(1);
    }
    if resample == Some(0) || jump == Some(0) {
        eprintln!("error: DDPM_DEMO_RESAMPLE and DDPM_DEMO_JUMP must be at least 1");
        exit(1);
    }
    let inpaint = match shape {
        Some(shape) => {
            if env::var_os("CARGO_FEATURE_TINY").is_none() {
                eprintln!(
                    "error: DDPM_DEMO_INPAINT needs the `tiny` feature: inpainting runs on the \
                     TinyUNet's planned executor"
                );
                exit(1);
            }
            println!("cargo:rustc-cfg=inpaint");
            fs::write(
                out.join("inpaint.rs"),
                inpaint_source(shape, digit.unwrap_or(0)),
            )
            .unwrap_or_else(|e| panic!("cannot write inpaint.rs to {}: {e}", out.display()));
            format!(
                "Some(crate::demo_model::DemoInpaint {{ mask: {:?}, digit: {}, resample: {}, jump: {} }})",
                shape.name(),
                digit.unwrap_or(0),
                resample.unwrap_or(1),
                jump.unwrap_or(1)
            )
        }
        None => "None".to_owned(),
    };
    // {:?} of an f32 parses back to the same bits.
    let guidance = match guidance {
        Some(w) => format!("Some({w:?}f32)"),
        None => "None".to_owned(),
    };
    let settings = format!(
        "/// `DDPM_DEMO_SEED` at build time, if set.\n\
         pub const SEED_OVERRIDE: Option<u64> = {seed:?};\n\
         /// `DDPM_DEMO_STEPS` at build time, if set.\n\
         pub const STEPS_OVERRIDE: Option<u32> = {steps:?};\n\
         /// `DDPM_DEMO_SAMPLER` at build time, if set.\n\
         pub const SAMPLER_OVERRIDE: Option<crate::demo_model::DemoSampler> = {sampler};\n\
         /// `DDPM_DEMO_GUIDANCE` at build time, if set.\n\
         pub const GUIDANCE: Option<f32> = {guidance};\n\
         /// `DDPM_DEMO_GUIDE_INTERVAL` at build time (lo, hi), if set.\n\
         pub const GUIDE_INTERVAL: Option<(f32, f32)> = {interval};\n\
         /// `DDPM_DEMO_CLASS` at build time, if set.\n\
         pub const CLASS: Option<u32> = {class:?};\n\
         /// `DDPM_DEMO_INPAINT` (with `DDPM_DEMO_DIGIT`, `DDPM_DEMO_RESAMPLE`, `DDPM_DEMO_JUMP`) at build time, if set.\n\
         pub const INPAINT: Option<crate::demo_model::DemoInpaint> = {inpaint};\n"
    );
    fs::write(out.join("build_settings.rs"), settings)
        .unwrap_or_else(|e| panic!("cannot write build_settings.rs to {}: {e}", out.display()));
}
