//! Places `memory.x` where the linker finds it, passes cortex-m-rt's linker script, and turns
//! the build-time settings `DDPM_DEMO_SEED` and `DDPM_DEMO_STEPS` into constants.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::exit;

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
    // The embedded model files.
    println!("cargo:rerun-if-changed=../models/simple_unet_mnist_int8.ddpm");
    println!("cargo:rerun-if-changed=../models/simple_unet_mnist.ddpm");
    println!("cargo:rerun-if-changed=../models/tiny_unet_mnist_int8.ddpm");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");

    let seed: Option<u64> = parse_env("DDPM_DEMO_SEED", "a decimal integer in 0..=2^64-1");
    let steps: Option<u32> = parse_env("DDPM_DEMO_STEPS", "a decimal number of DDIM steps");
    let settings = format!(
        "/// `DDPM_DEMO_SEED` at build time, if set.\n\
         pub const SEED_OVERRIDE: Option<u64> = {seed:?};\n\
         /// `DDPM_DEMO_STEPS` at build time, if set.\n\
         pub const STEPS_OVERRIDE: Option<u32> = {steps:?};\n"
    );
    fs::write(out.join("build_settings.rs"), settings)
        .unwrap_or_else(|e| panic!("cannot write build_settings.rs to {}: {e}", out.display()));
}
