//! Builds `firmware-demo` for the Cortex-M4, runs it under QEMU (`mps2-an386`) and checks that
//! it computes, bit for bit, what the same code computes on this host, and that it fits in
//! 64 KB of RAM.
//!
//! Needs the `thumbv7em-none-eabihf` Rust target and `qemu-system-arm` (tools/setup-embedded.sh
//! installs both). Run with `cargo test -p firmware-check -- --nocapture` to see the firmware's
//! output and its section sizes.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use ddpm_core::diffusion::GuidanceInterval;
use ddpm_core::{crc32, GaussianNoise};
use firmware_check::demo_model::{self, Buffers, DemoSampler, MAX_HISTORY_LEN};
use firmware_check::elf;
use firmware_check::output::FirmwareReport;
use firmware_check::RAM_BUDGET;

/// QEMU is killed after this long (a 10-step DDIM sample of the SimpleUNet takes about 30 s
/// under QEMU on an idle 2-core machine).
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

/// RAM the f32 build may use (the `RAM` region of `firmware-demo/link/memory-f32.x`).
const F32_RAM_BUDGET: usize = 128 * 1024;

/// CRC-32 of the u8 image the int8 default model draws with seed 42 and 10 DDIM steps (x0
/// clipped): the platform-independent result of the integer path, pinned so that a change of
/// model, quantizer, executor or sampler shows. `core/tests/int8.rs` pins the same value.
const PINNED_INT8_CHECKSUM_SEED42: u32 = 0x251c_dce9;

/// Every test builds into the same target directory and runs the binary it built, so they
/// take turns.
static FIRMWARE: Mutex<()> = Mutex::new(());

fn firmware_lock() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one can still build and run.
    FIRMWARE.lock().unwrap_or_else(|e| e.into_inner())
}

fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware-demo")
        .canonicalize()
        .expect("firmware-demo/ should sit next to firmware-check/")
}

/// Environment variables of the outer `cargo test` that must not reach the firmware build:
/// flags for the host (`RUSTFLAGS`, `CARGO_ENCODED_RUSTFLAGS`, `CARGO_BUILD_TARGET`, ...),
/// the outer target directory and jobserver, and the outer package's metadata.
fn leaks_from_outer_cargo(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "DDPM_DEMO_SEED",
        "DDPM_DEMO_STEPS",
        "DDPM_DEMO_SAMPLER",
        "DDPM_DEMO_GUIDANCE",
        "DDPM_DEMO_GUIDE_INTERVAL",
        "DDPM_DEMO_PROFILE",
        "DDPM_DEMO_CLASS",
        "DDPM_DEMO_INPAINT",
        "DDPM_DEMO_DIGIT",
        "DDPM_DEMO_RESAMPLE",
        "DDPM_DEMO_JUMP",
    ];
    const PREFIXES: &[&str] = &[
        "CARGO_ENCODED_",
        "CARGO_BUILD_",
        "CARGO_TARGET_",
        "CARGO_PROFILE_",
        "CARGO_MANIFEST_",
        "CARGO_PKG_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_CFG_",
        "__CARGO",
    ];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Builds the release firmware (seed from `DDPM_DEMO_SEED` when given, else its default; the
/// f32 model when `f32`) and returns the path of its ELF file.
fn build_firmware(seed: Option<u64>, f32: bool) -> PathBuf {
    build_firmware_with(seed, if f32 { Some("f32") } else { None }, None, None)
}

/// Builds firmware-demo with one optional cargo feature (`f32` or `tiny`), an optional
/// `DDPM_DEMO_SAMPLER` (the build's default, DDIM, when `None`) and an optional
/// `DDPM_DEMO_GUIDANCE` (unguided when `None`).
fn build_firmware_with(
    seed: Option<u64>,
    feature: Option<&str>,
    sampler: Option<DemoSampler>,
    guidance: Option<f32>,
) -> PathBuf {
    build_firmware_profiled(seed, feature, sampler, guidance, false)
}

/// [`build_firmware_with`], with the layer profile (`DDPM_DEMO_PROFILE=1`) when `profile`.
fn build_firmware_profiled(
    seed: Option<u64>,
    feature: Option<&str>,
    sampler: Option<DemoSampler>,
    guidance: Option<f32>,
    profile: bool,
) -> PathBuf {
    build_firmware_settings(seed, feature, sampler, guidance, None, profile)
}

/// [`build_firmware_profiled`] with an optional `DDPM_DEMO_CLASS` (the class-conditional
/// model, `tiny` builds).
fn build_firmware_settings(
    seed: Option<u64>,
    feature: Option<&str>,
    sampler: Option<DemoSampler>,
    guidance: Option<f32>,
    class: Option<u32>,
    profile: bool,
) -> PathBuf {
    let mut envs: Vec<(&str, String)> = Vec::new();
    if let Some(seed) = seed {
        envs.push(("DDPM_DEMO_SEED", seed.to_string()));
    }
    if let Some(sampler) = sampler {
        envs.push(("DDPM_DEMO_SAMPLER", sampler.name().to_owned()));
    }
    if let Some(w) = guidance {
        envs.push(("DDPM_DEMO_GUIDANCE", w.to_string()));
    }
    if let Some(k) = class {
        envs.push(("DDPM_DEMO_CLASS", k.to_string()));
    }
    if profile {
        envs.push(("DDPM_DEMO_PROFILE", "1".to_owned()));
    }
    build_firmware_env(feature, &envs)
}

/// Builds firmware-demo with one optional cargo feature and the build settings `envs`
/// (`DDPM_DEMO_*` names and values); returns the path of its ELF file.
fn build_firmware_env(feature: Option<&str>, envs: &[(&str, String)]) -> PathBuf {
    let dir = firmware_dir();
    let target_dir = dir.join("target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&dir).args(["build", "--release"]);
    if let Some(f) = feature {
        cmd.args(["--features", f]);
    }
    for (name, _) in env::vars_os() {
        if name.to_str().is_some_and(leaks_from_outer_cargo) {
            cmd.env_remove(&name);
        }
    }
    cmd.env("CARGO_TARGET_DIR", &target_dir);
    for (name, value) in envs {
        cmd.env(name, value);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build firmware-demo: {e}"));
    assert!(
        out.status.success(),
        "building firmware-demo ({envs:?}) failed with {}; is the thumbv7em-none-eabihf \
         target installed (`rustup target add thumbv7em-none-eabihf`)?\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join("thumbv7em-none-eabihf/release/firmware-demo")
}

/// The QEMU command line of `firmware-demo/.cargo/config.toml`'s runner, so the test boots the
/// firmware exactly as `cargo run` does.
fn qemu_command() -> Vec<String> {
    let path = firmware_dir().join(".cargo/config.toml");
    let config =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let runner = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("runner = \"")?.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{} has no `runner = \"...\"` line", path.display()));
    runner.split_whitespace().map(str::to_owned).collect()
}

/// Collects everything a child writes to one pipe, on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Whether QEMU's guest clock counts instructions (`-icount`, the runner's setting) or follows
/// the host's clock. Counting slows the emulation down by about half, so only the test that reads
/// the clock pays for it; the computed bits are the same either way.
#[derive(Clone, Copy, PartialEq)]
enum GuestClock {
    CountsInstructions,
    Free,
}

/// [`qemu_command`] with the `-icount` option removed when `clock` is [`GuestClock::Free`].
fn qemu_argv(clock: GuestClock) -> Vec<String> {
    let mut argv = qemu_command();
    if clock == GuestClock::Free {
        if let Some(i) = argv.iter().position(|a| a == "-icount") {
            argv.drain(i..(i + 2).min(argv.len()));
        }
    }
    argv
}

/// Boots `elf` in QEMU; returns its exit status, stdout and stderr. Kills QEMU after
/// [`QEMU_TIMEOUT`].
fn run_in_qemu(elf: &Path, clock: GuestClock) -> (ExitStatus, String, String) {
    let argv = qemu_argv(clock);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); install QEMU (Debian: `apt-get install qemu-system-arm`)",
                argv[0]
            )
        });
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("cannot wait for QEMU") {
            break Some(status);
        }
        if start.elapsed() >= QEMU_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) => (status, out, err),
        None => panic!(
            "QEMU did not exit within {} s and was killed; output so far:\n{out}\n{err}",
            QEMU_TIMEOUT.as_secs()
        ),
    }
}

/// Builds and boots the firmware, checks that it exited with success and parses its report.
fn build_and_run(seed: Option<u64>, f32: bool) -> (PathBuf, FirmwareReport) {
    let elf = build_firmware(seed, f32);
    let (status, out, err) = run_in_qemu(&elf, GuestClock::Free);
    println!("--- firmware output (seed {seed:?}) ---\n{out}{err}---");
    assert!(
        status.success(),
        "the firmware exited with {status}:\n{out}\n{err}"
    );
    let report = FirmwareReport::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    (elf, report)
}

/// What the firmware's sampling computes, computed here.
struct HostSample {
    /// Bits of the f32 result.
    x_bits: Vec<u32>,
    /// The u8 image.
    pixels: Vec<u8>,
}

impl HostSample {
    /// The sample `x` (f32) and its u8 image.
    fn of(x: &[f32]) -> Self {
        Self {
            x_bits: bits(x),
            pixels: x.iter().map(|&v| ddpm_core::pixel_to_u8(v)).collect(),
        }
    }
}

/// The bytes of the committed file `models/NAME` (a model file or a digit file).
fn model_bytes(name: &str) -> Vec<u8> {
    let path = firmware_dir().join("../models").join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The schedule of the model file `models/NAME`, as `firmware-demo/build.rs` computes it.
fn model_schedule(name: &str) -> Box<ddpm_core::Schedule<{ demo_model::MAX_T }>> {
    let bytes = model_bytes(name);
    let file = ddpm_core::file::ModelFile::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut schedule = Box::new(ddpm_core::Schedule::EMPTY);
    schedule.fill(&file.header().schedule).unwrap();
    schedule
}

fn host_sample(sampler: DemoSampler, seed: u64, steps: u32) -> HostSample {
    let mut bufs = Box::new(Buffers::<MAX_HISTORY_LEN>::ZEROED);
    let schedule = model_schedule("simple_unet_mnist_int8.ddpm");
    demo_model::generate(
        &mut bufs,
        &schedule,
        sampler,
        None,
        GuidanceInterval::ALWAYS,
        None,
        None,
        seed,
        steps,
    )
    .unwrap_or_else(|e| panic!("host sampling failed: {e}"));
    HostSample {
        x_bits: bufs.x.iter().map(|v| v.to_bits()).collect(),
        pixels: bufs.image.to_vec(),
    }
}

/// The host int8 executor's sample of the default SimpleUNet (`FastInt8SimpleUNet`, the
/// fastest kernel this CPU has: what `trainer sample`, `eval` and `compare-int8` run for an
/// int8 SimpleUNet).
fn host_fast_simple_int8_sample(sampler: DemoSampler, seed: u64, steps: u32) -> HostSample {
    use ddpm_core::diffusion::sample_batch_with_history;
    use ddpm_core::file::ModelFile;
    use ddpm_core::simple_unet::fast_int8::FastInt8SimpleUNet;
    use ddpm_core::simple_unet::int8::Int8SimpleUNet;
    let bytes = model_bytes("simple_unet_mnist_int8.ddpm");
    let file = ModelFile::parse(&bytes).unwrap();
    let mut net = FastInt8SimpleUNet::new(Int8SimpleUNet::from_file(&file).unwrap()).unwrap();
    let schedule = model_schedule("simple_unet_mnist_int8.ddpm");
    let mut x = vec![0.0f32; net.net().config().image_len()];
    let mut history = vec![0.0f32; sampler.history_len()];
    let (cfg, noise) = (sampler.config(steps), &mut [GaussianNoise::new(seed)]);
    sample_batch_with_history(&mut net, &schedule, &cfg, noise, &mut x, &mut history)
        .unwrap_or_else(|e| panic!("host int8 executor: {e}"));
    HostSample::of(&x)
}

/// One line per element that differs, `what i: firmware …, host …`.
fn mismatches<T: PartialEq + std::fmt::LowerHex>(what: &str, firmware: &[T], host: &[T]) -> String {
    let mut lines: Vec<String> = firmware
        .iter()
        .zip(host)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("{what} {i}: firmware {a:#x}, host {b:#x}"))
        .collect();
    if firmware.len() != host.len() {
        lines.push(format!(
            "{what}: firmware printed {}, the host has {}",
            firmware.len(),
            host.len()
        ));
    }
    lines.join("\n")
}

/// The f32 values' bits.
fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Asserts that the `build` firmware's f32 sample has the host's bits, listing the
/// mismatches otherwise.
fn assert_same_sample(build: &str, firmware: &[u32], host: &[u32]) {
    assert!(
        firmware == host,
        "the {build} firmware's f32 sample differs from the host's:\n{}",
        mismatches("x", firmware, host)
    );
}

/// Prints the section sizes and fails if `.data` + `.bss` (+ `.uninit`) + the stack
/// high-water mark pass `budget`.
fn check_memory(elf_path: &Path, stack_high_water: usize, budget: usize) {
    let bytes =
        fs::read(elf_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", elf_path.display()));
    let sections = elf::sections(&bytes).unwrap_or_else(|e| panic!("{}: {e}", elf_path.display()));
    let size = |name| elf::section_size(&sections, name) as usize;
    let (vectors, text, rodata) = (size(".vector_table"), size(".text"), size(".rodata"));
    let (data, bss, uninit) = (size(".data"), size(".bss"), size(".uninit"));
    let flash = vectors + text + rodata + data;
    let ram = data + bss + uninit + stack_high_water;
    println!(".vector_table {vectors:>7} bytes");
    println!(".text         {text:>7} bytes");
    println!(".rodata       {rodata:>7} bytes");
    println!(".data         {data:>7} bytes");
    println!(".bss          {bss:>7} bytes");
    println!(".uninit       {uninit:>7} bytes");
    println!("stack (high-water) {stack_high_water:>7} bytes");
    println!("flash {flash} bytes; RAM {ram} of {budget} bytes");
    assert!(text > 0, "no .text section in {}", elf_path.display());
    assert!(
        ram <= budget,
        "the firmware needs {ram} bytes of RAM (.data {data} + .bss {bss} + .uninit {uninit} + \
         stack {stack_high_water}), more than the {budget} bytes budget"
    );
}

#[test]
fn firmware_matches_the_host_bit_for_bit_and_fits_in_64k() {
    let _turn = firmware_lock();
    let (elf_path, report) = build_and_run(None, false);

    let mut noise = GaussianNoise::new(42);
    let host_bits: Vec<u32> = (0..8).map(|_| noise.next_gaussian().to_bits()).collect();
    assert_eq!(
        report.noise_bits, host_bits,
        "GaussianNoise::new(42) differs between the Cortex-M4 and this host"
    );

    assert_eq!(report.seed, demo_model::DEFAULT_SEED, "default seed");
    assert_eq!(report.steps, demo_model::DEFAULT_STEPS, "default steps");
    assert_eq!(
        report.sampler,
        DemoSampler::DEFAULT.name(),
        "default sampler"
    );
    let host = host_sample(DemoSampler::DEFAULT, report.seed, report.steps);
    assert_eq!(
        report.checksum,
        crc32(&report.pixels),
        "the printed checksum is not the CRC-32 of the printed pixels"
    );
    assert_same_sample("default", &report.x_bits, &host.x_bits);
    let fast = host_fast_simple_int8_sample(DemoSampler::DEFAULT, report.seed, report.steps);
    assert_same_sample("default, host int8 executor", &report.x_bits, &fast.x_bits);
    assert!(
        report.pixels == host.pixels,
        "the firmware's image differs from the host's:\n{}",
        mismatches("pixel", &report.pixels, &host.pixels)
    );
    assert_eq!(
        report.checksum,
        crc32(&host.pixels),
        "checksum vs the host's"
    );

    assert_eq!(
        report.checksum, PINNED_INT8_CHECKSUM_SEED42,
        "the int8 sample's checksum changed"
    );
    check_memory(&elf_path, report.stack_high_water, RAM_BUDGET);
}

#[test]
fn another_seed_gives_another_image_on_both_sides() {
    const OTHER_SEED: u64 = 7;
    let _turn = firmware_lock();
    let (_, report) = build_and_run(Some(OTHER_SEED), false);
    assert_eq!(
        report.seed, OTHER_SEED,
        "DDPM_DEMO_SEED did not reach the build"
    );
    let host = host_sample(DemoSampler::DEFAULT, OTHER_SEED, report.steps);
    assert_eq!(
        report.checksum,
        crc32(&host.pixels),
        "checksum for seed {OTHER_SEED} vs the host's:\n{}",
        mismatches("pixel", &report.pixels, &host.pixels)
    );
    let default = host_sample(DemoSampler::DEFAULT, demo_model::DEFAULT_SEED, report.steps);
    assert_ne!(
        report.checksum,
        crc32(&default.pixels),
        "seeds {OTHER_SEED} and {} gave the same checksum",
        demo_model::DEFAULT_SEED
    );
}

/// The f32 model through the f32 streaming path, computed on the host the way the firmware's
/// `f32` build does.
fn host_f32_sample(seed: u64, steps: u32) -> Vec<u32> {
    use ddpm_core::file::ModelFile;
    use ddpm_core::simple_unet::int8::SeedF32StreamBuffers;
    use ddpm_core::simple_unet::stream::{sample_streaming, F32StreamNet};
    let bytes = model_bytes("simple_unet_mnist.ddpm");
    let file = ModelFile::parse(&bytes).unwrap_or_else(|e| panic!("simple_unet_mnist.ddpm: {e}"));
    let net = F32StreamNet::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let mut schedule: Box<ddpm_core::Schedule<300>> = Box::new(ddpm_core::Schedule::EMPTY);
    schedule.fill(&file.header().schedule).unwrap();
    let mut scratch = Box::new(SeedF32StreamBuffers::ZEROED);
    let mut x = vec![0.0f32; demo_model::IMAGE_LEN];
    sample_streaming(
        &net,
        &schedule,
        &DemoSampler::DEFAULT.config(steps),
        seed,
        &mut x,
        &mut scratch.scratch(),
    )
    .unwrap_or_else(|e| panic!("host f32 sampling failed: {e}"));
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn f32_build_matches_the_host_and_fits_in_128k() {
    let _turn = firmware_lock();
    let (elf_path, report) = build_and_run(None, true);
    let host = host_f32_sample(report.seed, report.steps);
    assert!(
        report.x_bits == host,
        "the f32 firmware's sample differs from the host's:\n{}",
        mismatches("x", &report.x_bits, &host)
    );
    check_memory(&elf_path, report.stack_high_water, F32_RAM_BUDGET);
}

/// CRC-32 of the u8 image the `tiny` build draws (seed 42, 10 DDIM steps, x0 clipped) from
/// `models/tiny_unet_mnist_int8.ddpm`. After swapping in another model file
/// (`tools/export_tiny_int8.sh`), `tiny_host_checksum_is_pinned` fails and prints the new value
/// to paste here.
const PINNED_TINY_INT8_CHECKSUM_SEED42: u32 = 0xffa5_46f2;

/// The `tiny` build's sample computed on the host with the same executor and sampler.
fn host_tiny_sample(sampler: DemoSampler, seed: u64, steps: u32) -> HostSample {
    host_tiny_guided_sample(sampler, None, seed, steps)
}

/// [`host_tiny_sample`], guided by the int8 guide with weight `w` when `guidance` is `Some(w)`
/// (`sample_planned_guided`, what a `DDPM_DEMO_GUIDANCE` build computes).
fn host_tiny_guided_sample(
    sampler: DemoSampler,
    guidance: Option<f32>,
    seed: u64,
    steps: u32,
) -> HostSample {
    host_tiny_guided_sample_in(sampler, guidance, GuidanceInterval::ALWAYS, seed, steps)
}

/// [`host_tiny_guided_sample`] guided only at the steps `interval` holds (`PlannedGuided`
/// with the interval, what a `DDPM_DEMO_GUIDE_INTERVAL` build computes).
fn host_tiny_guided_sample_in(
    sampler: DemoSampler,
    guidance: Option<f32>,
    interval: GuidanceInterval,
    seed: u64,
    steps: u32,
) -> HostSample {
    use ddpm_core::diffusion::sample_batch_with_history;
    use ddpm_core::file::ModelFile;
    use ddpm_core::tiny_unet::int8::Int8TinyUNet;
    use ddpm_core::tiny_unet::planned::{
        sample_planned_with_history, PlannedGuided, TinyInt8Workspace,
    };
    let bytes = model_bytes("tiny_unet_mnist_int8.ddpm");
    let file =
        ModelFile::parse(&bytes).unwrap_or_else(|e| panic!("tiny_unet_mnist_int8.ddpm: {e}"));
    let net =
        Int8TinyUNet::from_file(&file).unwrap_or_else(|e| panic!("tiny_unet_mnist_int8.ddpm: {e}"));
    let schedule = model_schedule("tiny_unet_mnist_int8.ddpm");
    let mut ws = Box::new(<TinyInt8Workspace>::ZEROED);
    let mut x = vec![0.0f32; net.config().image_len()];
    let mut history = vec![0.0f32; sampler.history_len()];
    let cfg = sampler.config(steps);
    let guide_bytes = match guidance {
        Some(_) => model_bytes("tiny_unet_mnist_guide_int8.ddpm"),
        None => Vec::new(),
    };
    match guidance {
        None => {
            sample_planned_with_history(&net, &schedule, &cfg, seed, &mut x, &mut ws, &mut history)
        }
        Some(w) => {
            let gfile = ModelFile::parse(&guide_bytes).unwrap();
            let guide = Int8TinyUNet::from_file(&gfile).unwrap();
            let mut guide_out = vec![0.0f32; x.len()];
            let mut guided = PlannedGuided::new(&net, &guide, w, &mut ws, &mut guide_out)
                .unwrap()
                .with_interval(interval);
            let noise = &mut [GaussianNoise::new(seed)];
            sample_batch_with_history(&mut guided, &schedule, &cfg, noise, &mut x, &mut history)
        }
    }
    .unwrap_or_else(|e| panic!("host tiny sampling failed: {e}"));
    HostSample::of(&x)
}

/// The host int8 executor's sample (`FastInt8TinyUNet`, the fastest kernel this CPU has:
/// what `trainer sample` and `eval` run for an int8 TinyUNet), guided like
/// [`host_tiny_guided_sample`] when `guidance` is `Some(w)`.
fn host_fast_int8_sample(
    sampler: DemoSampler,
    guidance: Option<f32>,
    seed: u64,
    steps: u32,
) -> HostSample {
    use ddpm_core::diffusion::sample_batch_with_history;
    use ddpm_core::file::ModelFile;
    use ddpm_core::tiny_unet::fast_int8::{FastInt8Guided, FastInt8TinyUNet};
    use ddpm_core::tiny_unet::int8::Int8TinyUNet;
    let (bytes, guide_bytes) = (
        model_bytes("tiny_unet_mnist_int8.ddpm"),
        model_bytes("tiny_unet_mnist_guide_int8.ddpm"),
    );
    let (file, gfile) = (
        ModelFile::parse(&bytes).unwrap(),
        ModelFile::parse(&guide_bytes).unwrap(),
    );
    let net = |f| FastInt8TinyUNet::new(Int8TinyUNet::from_file(f).unwrap()).unwrap();
    let (mut model, mut guide) = (net(&file), net(&gfile));
    let schedule = model_schedule("tiny_unet_mnist_int8.ddpm");
    let mut x = vec![0.0f32; model.net().config().image_len()];
    let mut history = vec![0.0f32; sampler.history_len()];
    let (cfg, noise) = (sampler.config(steps), &mut [GaussianNoise::new(seed)]);
    match guidance {
        None => sample_batch_with_history(&mut model, &schedule, &cfg, noise, &mut x, &mut history),
        Some(w) => sample_batch_with_history(
            &mut FastInt8Guided::new(&mut model, &mut guide, w).unwrap(),
            &schedule,
            &cfg,
            noise,
            &mut x,
            &mut history,
        ),
    }
    .unwrap_or_else(|e| panic!("host int8 executor: {e}"));
    HostSample::of(&x)
}

#[test]
fn tiny_host_checksum_is_pinned() {
    let host = host_tiny_sample(DemoSampler::DEFAULT, 42, 10);
    // The host int8 executor (SIMD) computes the same bits as the planned executor the
    // firmware runs, so its samples equal the device's too.
    let fast = host_fast_int8_sample(DemoSampler::DEFAULT, None, 42, 10);
    assert_same_sample("host int8 executor", &fast.x_bits, &host.x_bits);
    let sum = crc32(&host.pixels);
    assert_eq!(
        sum, PINNED_TINY_INT8_CHECKSUM_SEED42,
        "the int8 TinyUNet sample's checksum is {sum:#010x}, pinned {:#010x}; if the model file \
         models/tiny_unet_mnist_int8.ddpm was replaced on purpose, set \
         PINNED_TINY_INT8_CHECKSUM_SEED42 in firmware-check/tests/qemu.rs to {sum:#010x}",
        PINNED_TINY_INT8_CHECKSUM_SEED42
    );
}

#[test]
fn tiny_build_matches_the_host_bit_for_bit_and_fits_in_64k() {
    /// Bytes of int8 weights the tiny build may embed.
    const INT8_WEIGHT_BUDGET: usize = 256 * 1024;
    let _turn = firmware_lock();
    let elf_path = build_firmware_with(None, Some("tiny"), None, None);
    let (status, out, err) = run_in_qemu(&elf_path, GuestClock::Free);
    println!("--- tiny firmware output ---\n{out}{err}---");
    assert!(
        status.success(),
        "the firmware exited with {status}:\n{out}\n{err}"
    );
    let report = FirmwareReport::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(
        report.sampler,
        DemoSampler::DEFAULT.name(),
        "default sampler"
    );
    let host = host_tiny_sample(DemoSampler::DEFAULT, report.seed, report.steps);
    assert_same_sample("tiny", &report.x_bits, &host.x_bits);
    assert!(
        report.pixels == host.pixels,
        "the tiny firmware's image differs from the host's:\n{}",
        mismatches("pixel", &report.pixels, &host.pixels)
    );
    assert_eq!(
        report.checksum,
        crc32(&host.pixels),
        "checksum vs the host's"
    );
    // Int8 weights embedded: every i8 tensor of the model file.
    let bytes = model_bytes("tiny_unet_mnist_int8.ddpm");
    let file = ddpm_core::file::ModelFile::parse(&bytes).unwrap();
    let int8_bytes: usize = file
        .tensors()
        .filter(|t| t.dtype == ddpm_core::file::DType::I8)
        .map(|t| t.data.len())
        .sum();
    println!(
        "model file {} bytes, of which int8 weights {int8_bytes} bytes",
        bytes.len()
    );
    assert!(
        int8_bytes <= INT8_WEIGHT_BUDGET,
        "{int8_bytes} bytes of int8 weights"
    );
    check_memory(&elf_path, report.stack_high_water, RAM_BUDGET);
}

/// The multistep solvers on the device: `DDPM_DEMO_SAMPLER=dpmpp-2m` and `unipc` builds of the
/// int8 TinyUNet, and `unipc` of the int8 SimpleUNet, each equal to the host bit for bit and
/// within 64 KB of RAM with their history (one and two images of f32).
#[test]
fn solver_builds_match_the_host_bit_for_bit_and_fit_in_64k() {
    let _turn = firmware_lock();
    for (feature, sampler) in [
        (Some("tiny"), DemoSampler::DpmSolver2M),
        (Some("tiny"), DemoSampler::UniPc),
        (None, DemoSampler::UniPc),
    ] {
        let what = format!("{} build, {}", feature.unwrap_or("default"), sampler.name());
        let elf_path = build_firmware_with(None, feature, Some(sampler), None);
        let (status, out, err) = run_in_qemu(&elf_path, GuestClock::Free);
        println!("--- firmware output ({what}) ---\n{out}{err}---");
        assert!(
            status.success(),
            "{what}: exited with {status}:\n{out}\n{err}"
        );
        let report = FirmwareReport::parse(&out).unwrap_or_else(|e| panic!("{what}: {e}\n{out}"));
        assert_eq!(
            report.sampler,
            sampler.name(),
            "DDPM_DEMO_SAMPLER did not reach the build"
        );
        let host = match feature {
            Some(_) => host_tiny_sample(sampler, report.seed, report.steps),
            None => host_sample(sampler, report.seed, report.steps),
        };
        assert!(
            report.x_bits == host.x_bits,
            "{what}: the firmware's f32 sample differs from the host's:\n{}",
            mismatches("x", &report.x_bits, &host.x_bits)
        );
        assert_eq!(report.pixels, host.pixels, "{what}: image vs the host's");
        assert_eq!(report.checksum, crc32(&host.pixels), "{what}: checksum");
        // Another sampler than DDIM draws another image from the same noise.
        let ddim = match feature {
            Some(_) => host_tiny_sample(DemoSampler::Ddim, report.seed, report.steps),
            None => host_sample(DemoSampler::Ddim, report.seed, report.steps),
        };
        assert_ne!(
            report.pixels, ddim.pixels,
            "{what}: the same image as DDIM's"
        );
        println!("{what}: checksum {:#010x}", report.checksum);
        check_memory(&elf_path, report.stack_high_water, RAM_BUDGET);
    }
}

/// Guided sampling on the device: the `tiny` build with `DDPM_DEMO_GUIDANCE=2.5` embeds the
/// int8 guide beside the model (within the 1 MiB flash region) and computes, bit for bit, what
/// `sample_planned_guided` computes on the host, within 64 KB of RAM (one more image of f32
/// for the guide's output), with DPM-Solver++(2M) and with UniPC (two images of history).
#[test]
fn guided_tiny_build_matches_the_host_bit_for_bit_and_fits_in_64k() {
    const WEIGHT: f32 = 2.5;
    let _turn = firmware_lock();
    for sampler in [DemoSampler::DpmSolver2M, DemoSampler::UniPc] {
        let elf_path = build_firmware_with(None, Some("tiny"), Some(sampler), Some(WEIGHT));
        let (status, out, err) = run_in_qemu(&elf_path, GuestClock::Free);
        println!("--- guided tiny firmware output ---\n{out}{err}---");
        assert!(status.success(), "exited with {status}:\n{out}\n{err}");
        let report = FirmwareReport::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(
            report.guidance,
            Some(WEIGHT),
            "DDPM_DEMO_GUIDANCE did not reach the build"
        );
        assert_eq!(report.sampler, sampler.name());
        let host = host_tiny_guided_sample(sampler, Some(WEIGHT), report.seed, report.steps);
        let build = format!("guided {}", sampler.name());
        assert_same_sample(&build, &report.x_bits, &host.x_bits);
        let fast = host_fast_int8_sample(sampler, Some(WEIGHT), report.seed, report.steps);
        assert_same_sample(
            &format!("{build}, host int8 executor"),
            &report.x_bits,
            &fast.x_bits,
        );
        assert_eq!(report.pixels, host.pixels, "image vs the host's");
        let unguided = host_tiny_sample(sampler, report.seed, report.steps);
        assert_ne!(report.pixels, unguided.pixels, "the guide changed nothing");
        println!(
            "guided tiny build, {}: checksum {:#010x}",
            sampler.name(),
            report.checksum
        );
        check_memory(&elf_path, report.stack_high_water, RAM_BUDGET);
    }
}

/// A guidance interval on the device: the guided UniPC build with `DDPM_DEMO_GUIDANCE=3
/// DDPM_DEMO_GUIDE_INTERVAL=0.35,0.95` guides the steps with t/T in [0.35, 0.95] only (6 of
/// its 10: 16 network passes instead of 20), bit for bit as the host computes it, under QEMU's
/// `-icount` so that its instructions are counted too.
#[test]
fn guide_interval_build_guides_only_its_steps_and_matches_the_host() {
    const WEIGHT: f32 = 3.0;
    let (lo, hi) = (0.35f32, 0.95f32);
    let _turn = firmware_lock();
    let sampler = DemoSampler::UniPc;
    let envs = [
        ("DDPM_DEMO_SAMPLER", sampler.name().to_owned()),
        ("DDPM_DEMO_GUIDANCE", WEIGHT.to_string()),
        ("DDPM_DEMO_GUIDE_INTERVAL", format!("{lo},{hi}")),
    ];
    let elf_path = build_firmware_env(Some("tiny"), &envs);
    let (status, out, err) = run_in_qemu(&elf_path, GuestClock::CountsInstructions);
    println!("--- guide-interval tiny firmware output ---\n{out}{err}---");
    assert!(status.success(), "exited with {status}:\n{out}\n{err}");
    let report = FirmwareReport::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(report.guidance, Some(WEIGHT));
    assert_eq!(
        report.guide_interval,
        Some((lo, hi)),
        "DDPM_DEMO_GUIDE_INTERVAL did not reach the build"
    );
    assert_eq!(report.clock.passes, 16, "10 steps, 6 of them guided");
    let interval = GuidanceInterval::new(lo, hi).unwrap();
    let host =
        host_tiny_guided_sample_in(sampler, Some(WEIGHT), interval, report.seed, report.steps);
    assert_same_sample("guide interval", &report.x_bits, &host.x_bits);
    assert_eq!(report.pixels, host.pixels, "image vs the host's");
    let every_step = host_tiny_guided_sample(sampler, Some(WEIGHT), report.seed, report.steps);
    assert_ne!(
        report.pixels, every_step.pixels,
        "the interval changed nothing"
    );
    let total = report.clock.sample_instructions();
    let [t_lo, t_hi] = CPI_RANGE.map(|cpi| total * cpi / DEVICE_HZ);
    println!(
        "guided {} {} steps, interval [{lo}, {hi}] ({} passes): {total:.0} instructions; at \
         168 MHz and {}–{} cycles per instruction: {t_lo:.1}–{t_hi:.1} s per sample; checksum \
         {:#010x}",
        sampler.name(),
        report.steps,
        report.clock.passes,
        CPI_RANGE[0],
        CPI_RANGE[1],
        report.checksum
    );
    check_memory(&elf_path, report.stack_high_water, RAM_BUDGET);
}

/// The class-conditional model on the device: the `tiny` build with `DDPM_DEMO_CLASS=7` and
/// `DDPM_DEMO_GUIDANCE=1.3` (the trainer's default weight) embeds `models/tiny_unet_mnist_cond_int8.ddpm` (no guide file) and
/// computes, bit for bit, what the host computes with `sample_planned_guided` of the network
/// labelled 7 guided by itself without a class (classifier-free guidance), with UniPC, within
/// 64 KB of RAM.
#[test]
fn class_conditional_tiny_build_matches_the_host_bit_for_bit_and_fits_in_64k() {
    use ddpm_core::file::ModelFile;
    use ddpm_core::tiny_unet::int8::Int8TinyUNet;
    use ddpm_core::tiny_unet::planned::{sample_planned_guided, TinyInt8Workspace};
    const WEIGHT: f32 = 1.3;
    const CLASS: u32 = 7;
    let _turn = firmware_lock();
    let sampler = DemoSampler::UniPc;
    let elf_path = build_firmware_settings(
        None,
        Some("tiny"),
        Some(sampler),
        Some(WEIGHT),
        Some(CLASS),
        false,
    );
    let (status, out, err) = run_in_qemu(&elf_path, GuestClock::Free);
    println!("--- class-conditional tiny firmware output ---\n{out}{err}---");
    assert!(status.success(), "exited with {status}:\n{out}\n{err}");
    let report = FirmwareReport::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(
        report.class,
        Some(CLASS),
        "DDPM_DEMO_CLASS did not reach the build"
    );
    assert_eq!(report.guidance, Some(WEIGHT));
    let bytes = model_bytes("tiny_unet_mnist_cond_int8.ddpm");
    let file =
        ModelFile::parse(&bytes).unwrap_or_else(|e| panic!("tiny_unet_mnist_cond_int8.ddpm: {e}"));
    let net = Int8TinyUNet::from_file(&file)
        .unwrap_or_else(|e| panic!("tiny_unet_mnist_cond_int8.ddpm: {e}"));
    let schedule = model_schedule("tiny_unet_mnist_cond_int8.ddpm");
    let mut ws = Box::new(<TinyInt8Workspace>::ZEROED);
    let len = net.config().image_len();
    let (mut x, mut guide_out) = (vec![0.0f32; len], vec![0.0f32; len]);
    let mut history = vec![0.0f32; sampler.history_len()];
    sample_planned_guided(
        &net.with_class(Some(CLASS)).unwrap(),
        &net,
        WEIGHT,
        &schedule,
        &sampler.config(report.steps),
        report.seed,
        &mut x,
        &mut ws,
        &mut guide_out,
        &mut history,
    )
    .unwrap_or_else(|e| panic!("host class-conditional sampling failed: {e}"));
    assert_same_sample("class-conditional", &report.x_bits, &bits(&x));
    println!(
        "class-conditional tiny build, class {CLASS}: checksum {:#010x}",
        report.checksum
    );
    check_memory(&elf_path, report.stack_high_water, RAM_BUDGET);
}

/// CRC-32 of the digit the 5-step class-conditional build draws (class 7, seed 42): the host's
/// `sample_planned` computes it too, so a change to either side shows here.
const PINNED_FIVE_PASS_CLASS7_CHECKSUM: u32 = 0x3032_fc58;

/// The device's quickest build of record: the class-conditional model alone (no guidance: one
/// pass per step) with UniPC in 5 steps, `DDPM_DEMO_CLASS=7 DDPM_DEMO_SAMPLER=unipc
/// DDPM_DEMO_STEPS=5`, bit for bit as the host computes it (`sample_planned` of the network
/// labelled 7), in 5 network passes, under QEMU's `-icount` so that its instructions are counted
/// (printed with the time estimated at 168 MHz).
#[test]
fn five_pass_class_conditional_build_matches_the_host() {
    use ddpm_core::file::ModelFile;
    use ddpm_core::tiny_unet::int8::Int8TinyUNet;
    use ddpm_core::tiny_unet::planned::{sample_planned_with_history, TinyInt8Workspace};
    const CLASS: u32 = 7;
    const STEPS: u32 = 5;
    let _turn = firmware_lock();
    let sampler = DemoSampler::UniPc;
    let envs = [
        ("DDPM_DEMO_SAMPLER", sampler.name().to_owned()),
        ("DDPM_DEMO_CLASS", CLASS.to_string()),
        ("DDPM_DEMO_STEPS", STEPS.to_string()),
    ];
    let elf_path = build_firmware_env(Some("tiny"), &envs);
    let (status, out, err) = run_in_qemu(&elf_path, GuestClock::CountsInstructions);
    println!("--- five-pass class-conditional firmware output ---\n{out}{err}---");
    assert!(status.success(), "exited with {status}:\n{out}\n{err}");
    let report = FirmwareReport::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(
        report.class,
        Some(CLASS),
        "DDPM_DEMO_CLASS did not reach the build"
    );
    assert_eq!(
        report.steps, STEPS,
        "DDPM_DEMO_STEPS did not reach the build"
    );
    assert_eq!(report.guidance, None, "the model alone: no guidance");
    assert_eq!(report.clock.passes, 5, "one pass per step");
    let bytes = model_bytes("tiny_unet_mnist_cond_int8.ddpm");
    let file =
        ModelFile::parse(&bytes).unwrap_or_else(|e| panic!("tiny_unet_mnist_cond_int8.ddpm: {e}"));
    let net = Int8TinyUNet::from_file(&file)
        .unwrap_or_else(|e| panic!("tiny_unet_mnist_cond_int8.ddpm: {e}"));
    let schedule = model_schedule("tiny_unet_mnist_cond_int8.ddpm");
    let mut ws = Box::new(<TinyInt8Workspace>::ZEROED);
    let mut x = vec![0.0f32; net.config().image_len()];
    let mut history = vec![0.0f32; sampler.history_len()];
    sample_planned_with_history(
        &net.with_class(Some(CLASS)).unwrap(),
        &schedule,
        &sampler.config(STEPS),
        report.seed,
        &mut x,
        &mut ws,
        &mut history,
    )
    .unwrap_or_else(|e| panic!("host class-conditional sampling failed: {e}"));
    assert_same_sample("five-pass class-conditional", &report.x_bits, &bits(&x));
    assert_eq!(
        report.checksum, PINNED_FIVE_PASS_CLASS7_CHECKSUM,
        "the five-pass class-conditional sample's checksum changed: {:#010x}",
        report.checksum
    );
    let total = report.clock.sample_instructions();
    let [t_lo, t_hi] = CPI_RANGE.map(|cpi| total * cpi / DEVICE_HZ);
    println!(
        "class-conditional, class {CLASS}, {} {STEPS} steps ({} passes): {total:.0} \
         instructions; at 168 MHz and {}–{} cycles per instruction: {t_lo:.2}–{t_hi:.2} s per \
         sample; checksum {:#010x}",
        sampler.name(),
        report.clock.passes,
        CPI_RANGE[0],
        CPI_RANGE[1],
        report.checksum
    );
    check_memory(&elf_path, report.stack_high_water, RAM_BUDGET);
}

/// Inpainting on the device: the `tiny` build with `DDPM_DEMO_INPAINT=top`, `DDPM_DEMO_DIGIT=0`
/// (the committed test digit 0, a 7), `DDPM_DEMO_RESAMPLE=2` and `DDPM_DEMO_JUMP=5` completes
/// the digit's hidden top half by RePaint and computes, bit for bit, what the host computes with
/// `inpaint_batch` over the planned executor from the same digit file and mask; the bottom half
/// comes back exactly, within 64 KB of RAM.
#[test]
fn inpainting_tiny_build_keeps_the_known_half_and_matches_the_host() {
    use ddpm_core::diffusion::{inpaint_batch, Inpainting, MaskShape, Resampling};
    use ddpm_core::file::ModelFile;
    use ddpm_core::tiny_unet::int8::Int8TinyUNet;
    use ddpm_core::tiny_unet::planned::{Planned, TinyInt8Workspace};
    const SIDE: usize = 28;
    let _turn = firmware_lock();
    let settings = [
        ("DDPM_DEMO_INPAINT", "top".to_owned()),
        ("DDPM_DEMO_DIGIT", "0".to_owned()),
        ("DDPM_DEMO_RESAMPLE", "2".to_owned()),
        ("DDPM_DEMO_JUMP", "5".to_owned()),
    ];
    let elf_path = build_firmware_env(Some("tiny"), &settings);
    let (status, out, err) = run_in_qemu(&elf_path, GuestClock::Free);
    println!("--- inpainting tiny firmware output ---\n{out}{err}---");
    assert!(status.success(), "exited with {status}:\n{out}\n{err}");
    let report = FirmwareReport::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(
        report.inpaint.as_deref(),
        Some("top hidden, digit 0, resample 2, jump 5"),
        "DDPM_DEMO_INPAINT did not reach the build"
    );
    assert_eq!(report.clock.passes, 2 * report.steps);
    let digits = model_bytes("mnist_test_digits.idx");
    let digit = &digits[16..16 + SIDE * SIDE];
    let known: Vec<f32> = digit.iter().map(|&p| f32::from(p) / 127.5 - 1.0).collect();
    let mut mask = vec![0.0f32; SIDE * SIDE];
    MaskShape::Top.fill(SIDE, SIDE, &mut mask).unwrap();
    let resampling = Resampling {
        resample: 2,
        jump: 5,
    };
    let inp = Inpainting::new(&known, &mask, resampling).unwrap();
    let bytes = model_bytes("tiny_unet_mnist_int8.ddpm");
    let file =
        ModelFile::parse(&bytes).unwrap_or_else(|e| panic!("tiny_unet_mnist_int8.ddpm: {e}"));
    let net =
        Int8TinyUNet::from_file(&file).unwrap_or_else(|e| panic!("tiny_unet_mnist_int8.ddpm: {e}"));
    let schedule = model_schedule("tiny_unet_mnist_int8.ddpm");
    let mut ws = Box::new(<TinyInt8Workspace>::ZEROED);
    let mut x = vec![0.0f32; SIDE * SIDE];
    let cfg = DemoSampler::DEFAULT.config(report.steps);
    let mut history = vec![0.0f32; inp.history_len(&cfg, x.len())];
    let noise = &mut [GaussianNoise::new(report.seed)];
    let mut planned = Planned::new(&net, &mut ws);
    inpaint_batch(
        &mut planned,
        &schedule,
        &cfg,
        &inp,
        noise,
        &mut x,
        &mut history,
    )
    .unwrap_or_else(|e| panic!("host inpainting failed: {e}"));
    assert_same_sample("inpainting", &report.x_bits, &bits(&x));
    assert_eq!(
        report.pixels[SIDE * SIDE / 2..],
        digit[SIDE * SIDE / 2..],
        "the kept bottom half changed"
    );
    assert_ne!(report.pixels[..SIDE * SIDE / 2], digit[..SIDE * SIDE / 2]);
    println!("inpainting tiny build: checksum {:#010x}", report.checksum);
    check_memory(&elf_path, report.stack_high_water, RAM_BUDGET);
}

/// Cortex-M4 clock of the time estimates (an STM32F407-class part at its top speed).
const DEVICE_HZ: f64 = 168e6;
/// The cycles-per-instruction range of the time estimates: 1 is the floor (data processing,
/// MUL and MLA take one cycle on a Cortex-M4), 1.5 allows for the int8 loops' loads (two
/// cycles unless pipelined with the next load or store) and taken branches (one to three
/// more cycles to refill the pipeline), per the Cortex-M4 technical reference manual's
/// instruction timings; flash wait states are assumed hidden by the part's prefetch/cache.
const CPI_RANGE: [f64; 2] = [1.0, 1.5];

/// The cost of the device's guided sample in instructions: the guided UniPC build of
/// [`guided_tiny_build_matches_the_host_bit_for_bit_and_fits_in_64k`], with the layer
/// profile, under QEMU's `-icount shift=0` (the runner's setting), where the board timer
/// counts instructions. Checks that the timer does count instructions (both calibration
/// loops give the same rate), that the profile accounts for a pass, and that profiling left
/// the sample unchanged; prints instructions per sample, per pass and per multiply-add of
/// each layer, and the time estimated at 168 MHz.
#[test]
fn guided_tiny_sample_cost_in_instructions() {
    const WEIGHT: f32 = 2.5;
    let _turn = firmware_lock();
    let sampler = DemoSampler::UniPc;
    let elf_path = build_firmware_profiled(None, Some("tiny"), Some(sampler), Some(WEIGHT), true);
    let (status, out, err) = run_in_qemu(&elf_path, GuestClock::CountsInstructions);
    assert!(status.success(), "exited with {status}:\n{out}\n{err}");
    let report = FirmwareReport::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let host = host_tiny_guided_sample(sampler, Some(WEIGHT), report.seed, report.steps);
    assert!(
        report.x_bits == host.x_bits,
        "profiling changed the sample:\n{}",
        mismatches("x", &report.x_bits, &host.x_bits)
    );
    let clock = &report.clock;
    let rate = clock.instructions_per_tick();
    // Under -icount the short loop alone gives the same rate, up to the timer's resolution
    // (one tick at each read) and the few instructions that read it.
    let short = clock.calibration_ticks[0] as f64 * rate;
    let expected = (clock.calibration_iterations[0] * clock.instructions_per_iteration) as f64;
    assert!(
        (short - expected).abs() <= 2.0 * rate,
        "the timer does not count instructions (is QEMU run with -icount?): the short loop's \
         {expected} instructions read as {short:.0}"
    );
    let profile = clock
        .profile
        .as_ref()
        .expect("the profiling build prints a profile");
    let layer_ticks: u64 = profile.layers.iter().map(|l| l.1).sum();
    let pass_ticks = clock.sample_ticks as f64 / clock.passes as f64;
    let covered = (profile.begin_ticks + layer_ticks + profile.sink_ticks) as f64 / pass_ticks;
    assert!(
        (0.9..=1.0).contains(&covered),
        "the profiled pass is {covered:.3} of an average pass of the sample"
    );
    println!("instructions per tick: {rate}");
    println!("| layer | multiply-adds | instructions | per multiply-add |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, ticks, macs) in &profile.layers {
        let instr = *ticks as f64 * rate;
        println!(
            "| {name} | {macs} | {instr:.0} | {:.2} |",
            instr / *macs as f64
        );
    }
    let macs: u64 = profile.layers.iter().map(|l| l.2).sum();
    let pass = pass_ticks * rate;
    println!(
        "| one pass (with time MLP and sampler) | {macs} | {pass:.0} | {:.2} |",
        pass / macs as f64
    );
    let total = clock.sample_instructions();
    let [lo, hi] = CPI_RANGE.map(|cpi| total * cpi / DEVICE_HZ);
    println!(
        "guided {} {} steps ({} passes): {total:.0} instructions, {:.3e} per pass; at 168 MHz \
         and {}–{} cycles per instruction: {lo:.1}–{hi:.1} s per sample",
        sampler.name(),
        report.steps,
        clock.passes,
        total / clock.passes as f64,
        CPI_RANGE[0],
        CPI_RANGE[1]
    );
}
