//! `compare-int8` end to end on a tiny freshly initialised model and its int8 export: the same
//! seeds give the same images, image i really uses seed + i on both paths (the int8 one equal
//! to the core's row-streaming executor's sample), the PNG is written
//! with f32 rows over int8 rows, mismatched files are refused, and the CLI prints the figures.

mod common;

use common::{lock, shared_mnist};
use std::path::{Path, PathBuf};
use std::process::Command;

use ddpm_core::diffusion::{DdimConfig, SamplerConfig};
use ddpm_core::file::ModelFile;
use ddpm_core::host::HostModel;
use ddpm_core::simple_unet::int8::{Int8SimpleUNet, SeedInt8StreamBuffers};
use ddpm_core::simple_unet::ptq::QuantOptions;
use ddpm_core::simple_unet::stream::sample_streaming;
use ddpm_core::{Schedule, ScheduleConfig, SimpleUNetConfig};
use ddpm_torch::{export, model};
use ddpm_trainer::eval::classifier::Classifier;
use ddpm_trainer::eval::compare::{self, CompareOptions};
use ddpm_trainer::eval::Draws;
use ddpm_trainer::quantize::{quantize_model, CalibrationOptions};
use ddpm_trainer::sample;
use tch::{nn, Device};

/// 1×28×28 (so the classifier applies), tiny hidden widths, a 20-step schedule.
const TINY: SimpleUNetConfig = SimpleUNetConfig {
    channels: 1,
    height: 28,
    width: 28,
    hidden1: 4,
    hidden2: 8,
};

/// Writes a freshly initialised tiny f32 model and its int8 export into `dir`.
fn tiny_pair(dir: &Path, seed: i64, hidden1: u32) -> (PathBuf, PathBuf) {
    let cfg = SimpleUNetConfig { hidden1, ..TINY };
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = model::SimpleUNet::new(&vs.root(), cfg);
    let tensors = model::named_params(&vs, &cfg).unwrap();
    let sched = ScheduleConfig::linear(20, 1e-3, 0.2);
    let f32_bytes =
        export::model_file_bytes(&cfg, &sched, &tensors, "tiny test model", None).unwrap();
    let opts = CalibrationOptions {
        images: 16,
        trajectories: 1,
        trajectory_every: 4,
        quant: QuantOptions::PLAIN,
        seed: 1,
        eval_images: 4,
        ablation: false,
    };
    let (int8_bytes, _) =
        quantize_model(&f32_bytes, &shared_mnist(), &opts, "tiny test model (int8)").unwrap();
    let (a, b) = (
        dir.join(format!("tiny{hidden1}.ddpm")),
        dir.join(format!("tiny{hidden1}_int8.ddpm")),
    );
    std::fs::write(&a, f32_bytes).unwrap();
    std::fs::write(&b, int8_bytes).unwrap();
    (a, b)
}

fn ddim(steps: u32) -> SamplerConfig {
    SamplerConfig::Ddim(DdimConfig {
        steps,
        ..Default::default()
    })
}

fn png_size(path: &Path) -> (u32, u32) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = dec.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

#[test]
fn same_seeds_same_images_and_the_png_is_written() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let (f32_path, int8_path) = tiny_pair(dir.path(), 3, TINY.hidden1);
    let clf = Classifier::new(Device::Cpu, 0);
    let n = 5;
    let opts = CompareOptions {
        n,
        sampler: ddim(5),
        seed: 100,
        workers: 1,
        progress: false,
    };
    let png = dir.path().join("out").join("side.png");
    let (r1, p1) = compare::compare(&f32_path, &int8_path, &clf, &opts, Some(&png)).unwrap();
    let (r2, p2) = compare::compare(&f32_path, &int8_path, &clf, &opts, None).unwrap();
    assert_eq!(p1.f32_pixels, p2.f32_pixels);
    assert_eq!(p1.int8_pixels, p2.int8_pixels);
    assert_eq!(r1.mean_abs_diff, r2.mean_abs_diff);
    assert_eq!(r1.labels, r2.labels);
    assert_eq!(r1.n, n);
    assert_eq!(p1.f32_pixels.len(), n * 784);
    let (mad, max) = compare::abs_diff(&p1.f32_pixels, &p1.int8_pixels);
    assert_eq!((mad, max), (r1.mean_abs_diff, r1.max_abs_diff));
    eprintln!(
        "tiny model: mean |f32 - int8| {:.2}, largest {}",
        r1.mean_abs_diff, r1.max_abs_diff
    );

    // Another seed gives other images.
    let other = CompareOptions {
        seed: 7,
        ..opts.clone()
    };
    let p3 = compare::sample_pair(&f32_path, &int8_path, &other).unwrap();
    assert_ne!(p3.f32_pixels, p1.f32_pixels);
    assert_ne!(p3.int8_pixels, p1.int8_pixels);

    // f32 image i is HostModel's sample with seed + i.
    let bytes = std::fs::read(&f32_path).unwrap();
    let mut host = HostModel::from_bytes(&bytes).unwrap();
    let direct = sample::to_pixels(&host.sample(n, &opts.sampler, opts.seed).unwrap());
    assert_eq!(direct, p1.f32_pixels);
    // int8 image 3 is the first image of a run started at seed + 3 (no state carried over
    // from earlier images through the reused scratch).
    let int8_bytes = std::fs::read(&int8_path).unwrap();
    let draws = |n, seed, workers| Draws::new(n, &opts.sampler, seed, workers);
    let one = compare::sample_int8(&int8_bytes, draws(1, opts.seed + 3, 1), &|| {}).unwrap();
    assert_eq!(sample::to_pixels(&one), p1.int8_pixels[3 * 784..4 * 784]);
    // ... and the core's row-streaming sample (the microcontroller's computation) from seed + 3.
    let file = ModelFile::parse(&int8_bytes).unwrap();
    let q = Int8SimpleUNet::from_file(&file).unwrap();
    let sched: Schedule = Schedule::new(&file.header().schedule).unwrap();
    let mut bufs = Box::new(SeedInt8StreamBuffers::ZEROED);
    let mut x = vec![0.0f32; 784];
    sample_streaming(
        &q,
        &sched,
        &opts.sampler,
        opts.seed + 3,
        &mut x,
        &mut bufs.scratch(),
    )
    .unwrap();
    assert_eq!(sample::to_pixels(&x), p1.int8_pixels[3 * 784..4 * 784]);
    // Threads split the images, not the work on one: any count gives the same samples.
    for workers in [2, 3, 8] {
        let count = std::sync::atomic::AtomicUsize::new(0);
        let v = compare::sample_int8(&int8_bytes, draws(n, opts.seed, workers), &|| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(sample::to_pixels(&v), p1.int8_pixels, "{workers} workers");
        assert_eq!(count.into_inner(), n, "one progress tick per image");
    }

    // The PNG: 5 images → 3 columns × 2 rows, doubled to 4 rows; border 2, scale 4.
    assert_eq!(png_size(&png), ((3 * 28 + 4 * 2) * 4, (4 * 28 + 5 * 2) * 4));
}

#[test]
fn mismatched_files_are_refused_by_name() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let (f32_a, int8_a) = tiny_pair(dir.path(), 4, TINY.hidden1);
    let (_, int8_b) = tiny_pair(dir.path(), 5, 6);
    let opts = CompareOptions {
        n: 1,
        sampler: ddim(2),
        seed: 0,
        workers: 2,
        progress: false,
    };
    let err = |a: &Path, b: &Path| format!("{:#}", compare::sample_pair(a, b, &opts).unwrap_err());
    let e = err(&f32_a, &f32_a);
    assert!(
        e.contains("tiny4.ddpm") && e.contains("--int8-model"),
        "{e}"
    );
    let e = err(&int8_a, &int8_a);
    assert!(
        e.contains("tiny4_int8.ddpm") && e.contains("--model"),
        "{e}"
    );
    let e = err(&f32_a, &int8_b);
    assert!(e.contains("not the same network"), "{e}");
    let e = err(&f32_a, &dir.path().join("missing.ddpm"));
    assert!(e.contains("missing.ddpm"), "{e}");
}

#[test]
fn cli_prints_the_figures_and_writes_the_png() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let (f32_path, int8_path) = tiny_pair(dir.path(), 6, TINY.hidden1);
    let clf_path = dir.path().join("clf.safetensors");
    Classifier::new(Device::Cpu, 1).save(&clf_path).unwrap();
    let png = dir.path().join("side.png");
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["compare-int8", "--model"])
        .arg(&f32_path)
        .arg("--int8-model")
        .arg(&int8_path)
        .args([
            "--n",
            "4",
            "--steps",
            "3",
            "--device",
            "cpu",
            "--threads",
            "1",
        ])
        .arg("--classifier")
        .arg(&clf_path)
        .arg("--out")
        .arg(&png)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for want in [
        "mean |f32 - int8| pixel difference",
        "same classifier label",
        "classifier-confident (top probability > 0.9)",
        "labels int8:",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert!(png.is_file());

    // A missing int8 file is named before any work.
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["compare-int8", "--model"])
        .arg(&f32_path)
        .arg("--int8-model")
        .arg(dir.path().join("nope_int8.ddpm"))
        .arg("--classifier")
        .arg(&clf_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope_int8.ddpm") && stderr.contains("export"),
        "{stderr}"
    );
}
