//! ddpm-core on a Cortex-M4 (QEMU `mps2-an386`), in 64 KB of RAM and no heap.
//!
//! Prints over semihosting, in this order:
//! 1. the bits of the first 8 values of `GaussianNoise::new(42)`;
//! 2. the build settings, then one sample of [`demo_model`] as ASCII art, its u8 pixels in hex,
//!    the raw f32 bits of the sample and `checksum: 0x........` (CRC-32 of the pixels);
//! 3. `stack high-water: N bytes`;
//!
//! then exits QEMU with success, or with failure after printing the error. The host-side test
//! (`firmware-check`) runs it and compares every number with the same computation on the host.
//!
//! Expected for the default build (seed 42, 10 DDIM steps): noise bits starting `0xbe8986ed
//! 0x3f14fc0c` and the checksum pinned in `firmware-check/tests/qemu.rs`.
//!
//! Build settings: `DDPM_DEMO_SEED` (default 42), `DDPM_DEMO_STEPS` (default 10) and
//! `DDPM_DEMO_SAMPLER` (`ddim`, the default; `dpmpp-2m`; `unipc`: their history is a `static`
//! sized for the sampler, nothing for DDIM); cargo feature `tiny` samples the int8 TinyUNet
//! (`src/tiny_model.rs`) in the same 64 KB layout, and with `DDPM_DEMO_GUIDANCE=W` guided by
//! its int8 guide (embedded too) with weight W; `DDPM_DEMO_CLASS=K` draws digit K with the
//! class-conditional model (classifier-free guidance with `DDPM_DEMO_GUIDANCE`). The noise schedule's tables are computed
//! at build time from the embedded model file and kept in flash ([`SCHEDULE`]); the firmware
//! checks them against the file before sampling.

#![no_std]
#![no_main]

#[cfg(all(feature = "tiny", feature = "f32"))]
compile_error!("the `tiny` and `f32` features are exclusive");

// Both model modules serve the host-side check too, and name every sampler a build setting can
// pick: what one build does not use is not dead.
mod clock;
#[cfg(not(feature = "tiny"))]
#[allow(dead_code)]
mod demo_model;
/// The `tiny` build samples the int8 TinyUNet instead (same interface).
#[cfg(feature = "tiny")]
#[path = "tiny_model.rs"]
#[allow(dead_code)]
mod demo_model;
mod stack;

use core::panic::PanicInfo;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprint, hprintln};
use ddpm_core::diffusion::{GuidanceInterval, Plan};
use ddpm_core::{GaussianNoise, Schedule};
use demo_model::DemoSampler;

mod build_settings {
    include!(concat!(env!("OUT_DIR"), "/build_settings.rs"));
}

/// The embedded model's noise schedule, computed at build time by `build.rs` with ddpm-core
/// (`Schedule::new` of the file's schedule), in flash: 4,800 bytes that need no RAM.
static SCHEDULE: Schedule<{ demo_model::MAX_T }> =
    include!(concat!(env!("OUT_DIR"), "/schedule.rs"));

/// Seed of the sample.
const SEED: u64 = match build_settings::SEED_OVERRIDE {
    Some(s) => s,
    None => demo_model::DEFAULT_SEED,
};
/// Steps (network passes).
const STEPS: u32 = match build_settings::STEPS_OVERRIDE {
    Some(s) => s,
    None => demo_model::DEFAULT_STEPS,
};
/// The sampler.
const SAMPLER: DemoSampler = match build_settings::SAMPLER_OVERRIDE {
    Some(s) => s,
    None => DemoSampler::DEFAULT,
};
/// What an inpainting build completes (`DDPM_DEMO_INPAINT`; `tiny` builds only).
const INPAINT: Option<demo_model::DemoInpaint> = build_settings::INPAINT;
/// f32 values of the sampler's history (twice over when inpainting resamples).
const HISTORY_LEN: usize = SAMPLER.history_len() * demo_model::DemoInpaint::history_factor(INPAINT);
/// The guidance weight (`DDPM_DEMO_GUIDANCE`; `tiny` builds only), or `None` for unguided.
const GUIDANCE: Option<f32> = build_settings::GUIDANCE;
/// The steps the guidance applies at (`DDPM_DEMO_GUIDE_INTERVAL`; every step by default).
const GUIDE_INTERVAL: Option<(f32, f32)> = build_settings::GUIDE_INTERVAL;
/// The digit a class-conditional build draws (`DDPM_DEMO_CLASS`; `tiny` builds only).
const CLASS: Option<u32> = build_settings::CLASS;

/// Seed and count of the printed noise values (the cross-platform noise contract).
const NOISE_SEED: u64 = 42;
const NOISE_COUNT: usize = 8;

/// Darkest to brightest.
const ASCII_RAMP: &[u8] = b" .:-=+*#%@";

#[entry]
fn main() -> ! {
    // cortex-m-rt turns this into a `&'static mut` local to `main`: no heap, no unsafe, and the
    // buffers show up in `.bss`, not on the stack.
    static mut BUFFERS: demo_model::Buffers<HISTORY_LEN> = demo_model::Buffers::ZEROED;

    let painted = stack::paint();
    let result = run(BUFFERS);
    if let Err(e) = &result {
        hprintln!("error: {}", e);
    }
    let usage = stack::usage();
    hprintln!(
        "stack high-water: {} bytes (stack region {} bytes, {} painted)",
        usage.high_water,
        usage.size,
        painted
    );
    let stack_ok = !usage.exhausted();
    if !stack_ok {
        hprintln!("error: the stack used all of its region and may have overwritten statics");
    }
    exit(result.is_ok() && stack_ok)
}

/// Everything the demo computes and prints, up to the stack report.
fn run(bufs: &mut demo_model::Buffers<HISTORY_LEN>) -> ddpm_core::Result<()> {
    let mut noise = GaussianNoise::new(NOISE_SEED);
    hprint!("noise bits (seed {}, first {}):", NOISE_SEED, NOISE_COUNT);
    for _ in 0..NOISE_COUNT {
        hprint!(" {:#010x}", noise.next_gaussian().to_bits());
    }
    hprintln!();

    let cfg = demo_model::CONFIG;
    hprintln!("seed: {}", SEED);
    hprintln!("steps: {}", STEPS);
    hprintln!("sampler: {}", SAMPLER.name());
    match GUIDANCE {
        Some(w) => hprintln!("guidance: {}", w),
        None => hprintln!("guidance: none"),
    }
    if let Some((lo, hi)) = GUIDE_INTERVAL {
        hprintln!("guide interval: {} {}", lo, hi);
    }
    if let Some(k) = CLASS {
        hprintln!("class: {}", k);
    }
    if let Some(d) = INPAINT {
        hprintln!(
            "inpaint: {} hidden, digit {}, resample {}, jump {}",
            d.mask,
            d.digit,
            d.resample,
            d.jump
        );
    }
    hprintln!("model: {}", demo_model::DESCRIPTION);

    clock::start();
    let [short, long] = clock::calibrate();
    let [n_short, n_long] = clock::CALIBRATION_ITERATIONS;
    hprintln!(
        "clock calibration: {} ticks for {} iterations, {} ticks for {} ({} instructions each)",
        short,
        n_short,
        long,
        n_long,
        clock::INSTRUCTIONS_PER_ITERATION
    );
    #[cfg(profile)]
    {
        let mut noise = GaussianNoise::new(SEED);
        for v in bufs.x.iter_mut() {
            *v = noise.next_gaussian();
        }
        let p = demo_model::profile(bufs, (SCHEDULE.len() - 1) as f32, clock::now)?;
        hprintln!("profile begin: {} ticks", p.begin);
        for (name, ticks, macs) in p.layers() {
            hprintln!("profile layer {}: {} ticks, {} macs", name, ticks, macs);
        }
        hprintln!("profile sink: {} ticks", p.sink);
    }
    let interval = match GUIDE_INTERVAL {
        Some((lo, hi)) => GuidanceInterval::new(lo, hi)?,
        None => GuidanceInterval::ALWAYS,
    };
    let t0 = clock::now();
    demo_model::generate(
        bufs, &SCHEDULE, SAMPLER, GUIDANCE, interval, CLASS, INPAINT, SEED, STEPS,
    )?;
    let ticks = clock::now().wrapping_sub(t0);
    let resample = INPAINT.map_or(1, |d| d.resample);
    // A guided step is two passes, the guide's and the model's.
    let plan = Plan::new(&SAMPLER.config(STEPS), SCHEDULE.len() as u32)?;
    let guided_steps = (0..plan.len())
        .filter_map(|k| plan.step(k))
        .filter(|&(t, _)| interval.contains(t as f32 / SCHEDULE.len() as f32))
        .count() as u32;
    let passes = resample * (STEPS + if GUIDANCE.is_some() { guided_steps } else { 0 });
    hprintln!("sample clock: {} ticks, {} network passes", ticks, passes);

    let image = bufs.image();
    let width = cfg.width as usize;
    hprintln!("image:");
    for row in image.chunks(width) {
        for &px in row {
            let c = ASCII_RAMP[px as usize * ASCII_RAMP.len() / 256] as char;
            hprint!("{}{}", c, c);
        }
        hprintln!();
    }
    // The raw f32 result before rounding to u8: compared bit for bit with the host, it shows a
    // difference that clamping or rounding would hide.
    hprint!("x bits:");
    for &v in bufs.x.iter() {
        hprint!(" {:#010x}", v.to_bits());
    }
    hprintln!();
    hprint!("pixels:");
    for &px in image.iter() {
        hprint!(" {:02x}", px);
    }
    hprintln!();
    hprintln!("checksum: {:#010x}", ddpm_core::crc32(image));
    Ok(())
}

/// Ends the QEMU session with success or failure through semihosting.
fn exit(success: bool) -> ! {
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Only reached when no debugger or emulator handles semihosting.
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    exit(false)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("error: hard fault at pc {:#010x}", frame.pc());
    exit(false)
}
