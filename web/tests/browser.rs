//! The page in a real browser: `tools/build-web.sh` builds it, a static server serves
//! `web/www` on 127.0.0.1, and headless Chromium (driven through ChromeDriver's WebDriver
//! interface) draws with settings given in the address. Each drawing's pixel checksum, shown
//! on the page, must equal the host's for the same settings (the host's portable kernels: the
//! page's SIMD128 and portable kernels round as they do), the int8 drawing must equal the
//! firmware's pinned checksum, an inpainting run must keep the known pixels, and a missing or
//! damaged model file must show a sentence on the page. Screenshots go to `target/web/`.
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{drawn, model, root, test_digit, Browser, StaticServer};
use ddpm_core::diffusion::{
    DdimConfig, MaskShape, Resampling, SamplerConfig, SolverConfig, Spacing,
};
use ddpm_web::session::{Known, Settings};

/// The firmware's pinned checksum of the `tiny` build (int8 TinyUNet, DDIM 10 η 0 with x0
/// clipped, seed 42): `PINNED_TINY_INT8_CHECKSUM_SEED42` in firmware-check/tests/qemu.rs.
const FIRMWARE_TINY_CHECKSUM: u32 = 0xffa5_46f2;

/// How long one drawing may take in the browser (they take well under a second of computing
/// plus a frame per step; the margin is for a loaded machine).
const DRAW_LIMIT: Duration = Duration::from_secs(120);

/// Drawings per page for the timed settings: the first includes the browser's compilation of
/// the module's hot code by its optimizing tier; the median of the rest is reported.
const REPEAT: usize = 5;

fn build_page() -> PathBuf {
    let script = root().join("tools/build-web.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    root().join("web/www")
}

fn hex(sum: u32) -> String {
    format!("{sum:#010x}")
}

fn ddim(steps: u32, eta: f32) -> SamplerConfig {
    SamplerConfig::Ddim(DdimConfig {
        steps,
        eta,
        spacing: Spacing::Leading,
        clip_x0: true,
        recompute_eps: true,
    })
}

fn unipc(steps: u32) -> SamplerConfig {
    SamplerConfig::UniPc(SolverConfig {
        steps,
        spacing: Spacing::Linspace,
    })
}

/// The host's settings: the portable kernels, the page's arithmetic.
fn host(sampler: SamplerConfig, guidance: Option<f32>, class: Option<u32>) -> Settings {
    Settings {
        sampler,
        seed: 42,
        guidance,
        class,
        simd: false,
    }
}

#[test]
fn the_page_draws_what_the_host_and_the_firmware_draw() {
    let www = build_page();
    let shots = root().join("target/web");
    std::fs::create_dir_all(&shots).unwrap();
    let mut damaged = std::fs::read(root().join("models/tiny_unet_mnist.ddpm")).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    let server = StaticServer::start(www, vec![("models/damaged.ddpm".into(), damaged)]);
    let browser = Browser::start();

    let f32_model = model("tiny_unet_mnist.ddpm");
    let f32_guide = model("tiny_unet_mnist_guide.ddpm");
    let int8_model = model("tiny_unet_mnist_int8.ddpm");
    let int8_guide = model("tiny_unet_mnist_guide_int8.ddpm");
    let cond = model("tiny_unet_mnist_cond.ddpm");

    let run = |query: &str, shot: &str| {
        browser.goto(&server.url(&format!("index.html?{query}&auto=1")));
        let runs = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("repeat="))
            .map_or(1, |n| n.parse().unwrap());
        let r = browser.wait_result(runs, DRAW_LIMIT);
        std::fs::write(shots.join(format!("{shot}.png")), browser.screenshot()).unwrap();
        r
    };
    let expect = |query: &str, shot: &str, want: u32| {
        let r = run(query, shot);
        assert_eq!(r.state, "done", "{query}: {}", r.error);
        assert_eq!(
            r.checksum,
            hex(want),
            "{query}: the page's checksum differs"
        );
        println!(
            "{query}: {} as the host; last drawing {:.0} ms computing, {:.0} ms with a frame \
             drawn per step, {} per step",
            r.checksum,
            r.compute_ms.last().unwrap(),
            r.wall_ms.unwrap(),
            r.step_time
        );
        r
    };

    // The f32 TinyUNet guided by its snapshot, DDIM 20 (40 network passes), SIMD128 and
    // portable kernels, each drawn REPEAT times in one page: every drawing equals the host's
    // portable path (the checksum shown is the last one's; all are the same computation).
    let want = drawn(
        &f32_model,
        Some(&f32_guide),
        &host(ddim(20, 1.0), Some(2.5), None),
        None,
    );
    let want = ddpm_core::crc32(&want.pixels());
    let q = format!(
        "model=f32&sampler=ddim&steps=20&eta=1&clip=1&guided=1&weight=2.5&seed=42&repeat={REPEAT}"
    );
    let simd = expect(&format!("{q}&simd=1"), "f32_guided_ddim20", want);
    let portable = expect(&format!("{q}&simd=0"), "f32_guided_ddim20_portable", want);
    let median = |v: &[f64]| {
        let mut w = v[1..].to_vec();
        w.sort_by(f64::total_cmp);
        w[w.len() / 2]
    };
    println!(
        "guided 20-step sample (40 passes), ms of computing per drawing, first (compiling) then \
         the rest: SIMD128 {:.0?}, median after the first {:.0}; portable {:.0?}, median {:.0}",
        simd.compute_ms,
        median(&simd.compute_ms),
        portable.compute_ms,
        median(&portable.compute_ms)
    );

    // What the microcontroller draws: the `tiny` firmware build's pinned checksum, and the
    // guided UniPC build as the host's planned executor computes it.
    expect(
        "model=int8&sampler=ddim&steps=10&eta=0&clip=1&guided=0&seed=42",
        "int8_ddim10",
        FIRMWARE_TINY_CHECKSUM,
    );
    let want = drawn(
        &int8_model,
        Some(&int8_guide),
        &host(unipc(10), Some(2.5), None),
        None,
    );
    expect(
        "model=int8&sampler=unipc&steps=10&guided=1&weight=2.5&seed=42",
        "int8_guided_unipc10",
        ddpm_core::crc32(&want.pixels()),
    );

    // The class-conditional model draws a 3 with classifier-free guidance.
    let want = drawn(&cond, None, &host(ddim(20, 1.0), Some(2.0), Some(3)), None);
    expect(
        "model=cond&class=3&sampler=ddim&steps=20&eta=1&guided=1&weight=2&seed=42",
        "cond_class3",
        ddpm_core::crc32(&want.pixels()),
    );

    // Inpainting: the top half of test digit 0 hidden, RePaint with U = 2, j = 5; the kept
    // half comes back unchanged.
    let digit = test_digit(0);
    let mut mask = vec![0.0f32; 784];
    MaskShape::Top.fill(28, 28, &mut mask).unwrap();
    let known = Known {
        image: digit.iter().map(|&p| f32::from(p) / 127.5 - 1.0).collect(),
        mask,
        resampling: Resampling {
            resample: 2,
            jump: 5,
        },
    };
    let want = drawn(
        &f32_model,
        Some(&f32_guide),
        &host(ddim(20, 1.0), Some(2.5), None),
        Some(known),
    );
    let r = expect(
        "model=f32&sampler=ddim&steps=20&eta=1&guided=1&weight=2.5&seed=42&inpaint=top&digit=0\
         &resample=2&jump=5",
        "inpaint_top",
        ddpm_core::crc32(&want.pixels()),
    );
    assert_eq!(r.kept_worst, Some(0), "a kept pixel changed");

    // A missing and a damaged model file: a sentence on the page, naming the file.
    let r = run("model=f32&file=missing.ddpm", "missing_model");
    assert_eq!(r.state, "error");
    assert!(
        r.error.contains("models/missing.ddpm") && r.error.contains("404"),
        "missing file: {}",
        r.error
    );
    let r = run("model=f32&file=damaged.ddpm", "damaged_model");
    assert_eq!(r.state, "error");
    assert!(
        r.error.contains("models/damaged.ddpm") && r.error.contains("CRC"),
        "damaged file: {}",
        r.error
    );
    println!("screenshots in {}", shots.display());
}
