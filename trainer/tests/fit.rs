//! Training on CPU: a smoke fit whose loss decreases, exact resume, NaN handling, and the
//! trained model's trip through the model file into ddpm-core.

mod common;

use common::{lock, shared_mnist};
use std::path::Path;
use std::process::Command;

use ddpm_core::diffusion::{DdimConfig, SamplerConfig};
use ddpm_core::host::HostModel;
use ddpm_core::Prediction;
use ddpm_torch::model;
use ddpm_trainer::data::idx::{Mnist, Split};
use ddpm_trainer::train::{self, FitOptions};
use tch::{Device, Kind, Tensor};

fn mnist(n: usize) -> Mnist {
    let mut m = Mnist::load(&shared_mnist(), Split::Train, 28, 28).unwrap();
    m.truncate(n);
    m
}

fn opts(dir: &Path, batch: usize, epochs: usize) -> FitOptions {
    let mut o = FitOptions::seed_recipe(Device::Cpu, dir.join("ckpt.safetensors"));
    o.batch_size = batch;
    o.epochs = epochs;
    o.seed = 7;
    o.loss_csv = Some(dir.join("loss.csv"));
    o.out = Some(dir.join("model.ddpm"));
    o
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

/// Runs `trainer sample --sampler ddim --steps 5 --no-progress --backend BACKEND --model MODEL
/// --out OUT.png --idx OUT.idx` (and `--device cpu` for the torch backend, the only one that
/// takes a device) plus `extra`, asserts success and returns the IDX images written.
fn sample_cli(
    backend: &str,
    model: &Path,
    out: &Path,
    extra: &[&std::ffi::OsStr],
) -> ddpm_trainer::data::idx::IdxArray {
    let (png, idx) = (out.with_extension("png"), out.with_extension("idx"));
    let device: &[&str] = match backend {
        "torch" => &["--device", "cpu"],
        _ => &[],
    };
    let o = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([
            "sample",
            "--sampler",
            "ddim",
            "--steps",
            "5",
            "--no-progress",
        ])
        .args(device)
        .args(["--backend", backend, "--model"])
        .arg(model)
        .arg("--out")
        .arg(&png)
        .arg("--idx")
        .arg(&idx)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ddpm_trainer::data::idx::read_idx(&idx).unwrap()
}

#[test]
fn smoke_fit_512_images_loss_decreases_and_core_samples_the_export() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let data = mnist(512);
    let o = opts(dir.path(), 32, 1);
    let mut lines = Vec::new();
    let report = train::fit(&o, &data, &mut |m| lines.push(m.to_owned())).unwrap();
    assert_eq!(report.steps, 16);
    assert_eq!(report.step_losses.len(), 16);
    let (first, last) = (
        mean(&report.step_losses[..4]),
        mean(&report.step_losses[12..]),
    );
    assert!(
        last < 0.75 * first,
        "loss did not decrease: first steps {first}, last steps {last}: {:?}",
        report.step_losses
    );
    assert!(
        lines.iter().any(|l| l.starts_with("epoch 1/1: loss")),
        "{lines:?}"
    );
    let csv = std::fs::read_to_string(dir.path().join("loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 17, "{csv}");
    assert!(csv.starts_with("step,epoch,loss\n1,1,"), "{csv}");

    // The exported file loads in ddpm-core and computes what the tch model computes.
    let bytes = std::fs::read(dir.path().join("model.ddpm")).unwrap();
    let mut host = HostModel::from_bytes(&bytes).unwrap();
    assert_eq!(
        *host.config(),
        ddpm_core::ModelConfig::SimpleUNet(ddpm_core::SimpleUNetConfig::SEED)
    );
    let loaded = ddpm_torch::export::read_model_file(&dir.path().join("model.ddpm")).unwrap();
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let net = model::Net::new(&vs.root(), loaded.config);
    model::load_params(&mut vs, &loaded.config, &loaded.tensors, "model.ddpm").unwrap();
    tch::manual_seed(3);
    let x = Tensor::randn([3, 1, 28, 28], (Kind::Float, Device::Cpu));
    let ts = [0u32, 150, 299];
    let t_in = Tensor::from_slice(&ts.map(|t| t as f32 / 300.0));
    let torch_eps = model::to_f32_vec(&tch::no_grad(|| net.forward(&x, &t_in))).unwrap();
    let core_eps = host
        .forward_flat_batch(&model::to_f32_vec(&x).unwrap(), &ts)
        .unwrap();
    let max_diff = torch_eps
        .iter()
        .zip(&core_eps)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // Different summation orders in f32 over 1,152-term dot products.
    assert!(
        max_diff < 1e-4,
        "core and tch forward passes differ by {max_diff}"
    );

    let cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 10,
        ..Default::default()
    });
    let samples = host.sample(2, &cfg, 1).unwrap();
    assert_eq!(samples.len(), 2 * 784);
    assert!(samples.iter().all(|v| v.is_finite()));

    // The CLI samples the same file with both backends and writes PNG + IDX.
    for backend in ["core", "torch"] {
        let out = dir.path().join(backend);
        let idx = sample_cli(backend, &dir.path().join("model.ddpm"), &out, &[]);
        assert_eq!(idx.dims, vec![16, 28, 28]);
        let png_path = out.with_extension("png");
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&png_path).unwrap(),
        ));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (488, 488));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
    }
}

fn checkpoint_tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut t = Tensor::read_safetensors(path).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn two_epochs_equal_one_epoch_resume_one_epoch_bit_for_bit() {
    let _g = lock();
    tch::set_num_threads(2);
    let data = mnist(192);
    let whole = tempfile::tempdir().unwrap();
    let split = tempfile::tempdir().unwrap();
    let mut a = opts(whole.path(), 64, 2);
    a.ema = Some(0.99);
    train::fit(&a, &data, &mut |_| {}).unwrap();

    let mut b = opts(split.path(), 64, 1);
    b.ema = Some(0.99);
    train::fit(&b, &data, &mut |_| {}).unwrap();
    b.epochs = 2;
    b.resume = true;
    let mut lines = Vec::new();
    train::fit(&b, &data, &mut |m| lines.push(m.to_owned())).unwrap();
    assert!(
        lines[0].contains("resumed from") && lines[0].contains("after epoch 1"),
        "{lines:?}"
    );

    let ta = checkpoint_tensors(&a.checkpoint);
    let tb = checkpoint_tensors(&b.checkpoint);
    let names: Vec<&str> = ta.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        tb.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
    );
    assert!(names.contains(&"ema.enc1.weight") && names.contains(&"adam.exp_avg_sq.dec2.bias"));
    for ((name, x), (_, y)) in ta.iter().zip(&tb) {
        assert!(x.equal(y), "{name} differs between the two runs");
    }
    // The exported models are the same bytes, and the loss curves the same text.
    assert_eq!(
        std::fs::read(whole.path().join("model.ddpm")).unwrap(),
        std::fs::read(split.path().join("model.ddpm")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(whole.path().join("loss.csv")).unwrap(),
        std::fs::read_to_string(split.path().join("loss.csv")).unwrap()
    );
    // The EMA is what gets exported, and it differs from the raw weights.
    let w = train::checkpoint_weights(&a.checkpoint, true).unwrap();
    let raw = train::checkpoint_weights(&a.checkpoint, false).unwrap();
    assert!(w.ema && !raw.ema);
    assert!(!w.tensors[0].1.equal(&raw.tensors[0].1));
}

/// Every tensor of a model file as (name, dims, f32 values), the note left out.
fn model_tensors(path: &Path) -> Vec<(String, Vec<u32>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = ddpm_core::file::ModelFile::parse(&bytes).unwrap();
    file.tensors()
        .map(|t| {
            (
                t.name.to_owned(),
                t.dims().to_vec(),
                t.to_f32_vec().unwrap(),
            )
        })
        .collect()
}

#[test]
fn guide_out_is_the_model_after_its_epoch_and_bad_guide_settings_are_refused() {
    let _g = lock();
    tch::set_num_threads(2);
    let data = mnist(128);
    let whole = tempfile::tempdir().unwrap();
    let short = tempfile::tempdir().unwrap();
    let guide = whole.path().join("guide.ddpm");
    let mut a = opts(whole.path(), 64, 2);
    a.ema = Some(0.99);
    a.guide = Some((guide.clone(), 1));
    let mut lines = Vec::new();
    train::fit(&a, &data, &mut |m| lines.push(m.to_owned())).unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("wrote the guide") && l.contains("after epoch 1")),
        "{lines:?}"
    );
    // The seed recipe's constant rate makes the first epoch of a two-epoch run the whole of a
    // one-epoch run, so the guide is that run's model, tensor for tensor.
    let mut b = opts(short.path(), 64, 1);
    b.ema = Some(0.99);
    train::fit(&b, &data, &mut |_| {}).unwrap();
    let g = model_tensors(&guide);
    assert_eq!(g, model_tensors(&short.path().join("model.ddpm")));
    assert_ne!(g, model_tensors(&whole.path().join("model.ddpm")));
    // The model's recipe names the guide written beside it (the SimpleUNet's sampler, the
    // recorded weight); the guide's and the unguided run's name none.
    let recipe = ddpm_trainer::load::recipe(&whole.path().join("model.ddpm")).unwrap();
    assert_eq!(recipe.sampler, SamplerConfig::LEGACY);
    assert_eq!(
        recipe.guide,
        Some((guide.clone(), train::RECORDED_GUIDANCE))
    );
    assert_eq!(ddpm_trainer::load::recipe(&guide).unwrap().guide, None);
    let alone = ddpm_trainer::load::recipe(&short.path().join("model.ddpm")).unwrap();
    assert_eq!(alone.guide, None);

    // `sample --guide` on both backends; the core backend's images are the core's guided
    // sampler's, pixel for pixel.
    let model_path = whole.path().join("model.ddpm");
    let mut host = HostModel::from_bytes(&std::fs::read(&model_path).unwrap()).unwrap();
    let mut guide_host = HostModel::from_bytes(&std::fs::read(&guide).unwrap()).unwrap();
    let cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 5,
        ..Default::default()
    });
    for backend in ["core", "torch"] {
        let extra = ["--n", "3", "--guidance", "2.5", "--guide"].map(std::ffi::OsStr::new);
        let extra = [&extra[..], &[guide.as_os_str()]].concat();
        let out = whole.path().join(format!("guided_{backend}"));
        let idx = sample_cli(backend, &model_path, &out, &extra);
        assert_eq!(idx.dims, vec![3, 28, 28]);
        if backend == "core" {
            let want = host
                .sample_guided(&mut guide_host, 2.5, 3, &cfg, 42)
                .unwrap();
            assert_eq!(idx.data, ddpm_trainer::sample::to_pixels(&want));
        }
    }

    // A guide epoch at or past the run's end is refused before training, naming the file.
    let mut c = opts(short.path(), 64, 2);
    c.guide = Some((short.path().join("g.ddpm"), 2));
    let e = format!("{:#}", train::fit(&c, &data, &mut |_| {}).unwrap_err());
    assert!(
        e.contains("g.ddpm") && e.contains("fewer than the run's 2 epochs"),
        "{e}"
    );
    // Resuming past the guide's epoch without the guide file cannot write it any more.
    let mut d = opts(short.path(), 64, 2);
    d.ema = Some(0.99);
    d.resume = true;
    d.guide = Some((short.path().join("missing.ddpm"), 1));
    let e = format!("{:#}", train::fit(&d, &data, &mut |_| {}).unwrap_err());
    assert!(
        e.contains("missing.ddpm") && e.contains("already past"),
        "{e}"
    );
}

#[test]
fn resume_refuses_other_settings_and_nan_keeps_the_last_good_checkpoint() {
    let _g = lock();
    let data = mnist(64);
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), 32, 1);
    train::fit(&o, &data, &mut |_| {}).unwrap();
    let good = std::fs::read(&o.checkpoint).unwrap();

    let mut other_seed = o.clone();
    other_seed.seed = 8;
    other_seed.epochs = 2;
    other_seed.resume = true;
    let e = train::fit(&other_seed, &data, &mut |_| {}).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("ckpt.safetensors") && msg.contains("seed=7") && msg.contains("seed=8"),
        "{msg}"
    );

    // An absurd learning rate blows the weights up: the loss turns infinite or NaN.
    o.epochs = 3;
    o.resume = true;
    o.lr = 1e15;
    let e = train::fit(&o, &data, &mut |_| {}).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("loss became"), "{msg}");
    assert!(
        msg.contains("after epoch 1") && msg.contains("is unchanged"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&o.checkpoint).unwrap(),
        good,
        "checkpoint was overwritten"
    );
}

#[test]
fn bad_data_stops_before_training_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["fit", "--device", "cpu", "--height", "32", "--data"])
        .arg(shared_mnist())
        .arg("--out")
        .arg(dir.path().join("m.ddpm"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("train-images-idx3-ubyte.gz: images are 28x28, the model takes 32x28"),
        "{stderr}"
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    // A directory without MNIST says where it looked and how to fetch.
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["fit", "--device", "cpu", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("train-images-idx3-ubyte") && stderr.contains("fetch-data"),
        "{stderr}"
    );
}

#[test]
fn tiny_unet_resumes_bit_for_bit_exports_and_loads_in_the_core() {
    let _g = lock();
    tch::set_num_threads(2);
    let data = mnist(128);
    // Two mid blocks, so the checkpoint's sizes carry mid_blocks through the resume.
    let tiny = ddpm_core::ModelConfig::TinyUNet(ddpm_core::TinyUNetConfig {
        widths: [8, 16, 16],
        mid_blocks: 2,
        ..ddpm_core::TinyUNetConfig::DEFAULT
    });
    let whole = tempfile::tempdir().unwrap();
    let split = tempfile::tempdir().unwrap();
    let mut a = opts(whole.path(), 64, 2);
    a.model = tiny;
    a.ema = Some(0.99);
    let report = train::fit(&a, &data, &mut |_| {}).unwrap();
    assert_eq!(report.steps, 4);

    let mut b = opts(split.path(), 64, 1);
    b.model = tiny;
    b.ema = Some(0.99);
    train::fit(&b, &data, &mut |_| {}).unwrap();
    b.epochs = 2;
    b.resume = true;
    train::fit(&b, &data, &mut |_| {}).unwrap();
    let ta = checkpoint_tensors(&a.checkpoint);
    let tb = checkpoint_tensors(&b.checkpoint);
    let names: Vec<&str> = ta.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"ema.up2_temb.weight") && names.contains(&"state.arch"));
    assert!(names.contains(&"ema.mid1.weight") && names.contains(&"model.mid1_temb.bias"));
    assert_eq!(ta.len(), tb.len());
    for ((name, x), (_, y)) in ta.iter().zip(&tb) {
        assert!(x.equal(y), "{name} differs between the two runs");
    }
    let w = train::checkpoint_weights(&a.checkpoint, true).unwrap();
    assert_eq!(w.model, tiny);
    assert!(w.ema);

    // A SimpleUNet run does not resume from the TinyUNet checkpoint.
    let mut simple = b.clone();
    simple.model = ddpm_core::ModelConfig::SimpleUNet(ddpm_core::SimpleUNetConfig::SEED);
    simple.epochs = 3;
    let e = format!("{:#}", train::fit(&simple, &data, &mut |_| {}).unwrap_err());
    assert!(
        e.contains("model=TinyUNet") && e.contains("model=SimpleUNet"),
        "{e}"
    );

    // The export loads in ddpm-core and computes what the tch model computes.
    let path = whole.path().join("model.ddpm");
    let mut host = HostModel::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(*host.config(), tiny);
    let loaded = ddpm_torch::export::read_model_file(&path).unwrap();
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let net = model::Net::new(&vs.root(), loaded.config);
    model::load_params(&mut vs, &loaded.config, &loaded.tensors, "model.ddpm").unwrap();
    tch::manual_seed(3);
    let x = Tensor::randn([2, 1, 28, 28], (Kind::Float, Device::Cpu));
    let ts = [17u32, 250];
    let t_in = Tensor::from_slice(&ts.map(|t| t as f32 / 300.0));
    let torch_eps = model::to_f32_vec(&tch::no_grad(|| net.forward(&x, &t_in))).unwrap();
    let core_eps = host
        .forward_flat_batch(&model::to_f32_vec(&x).unwrap(), &ts)
        .unwrap();
    let scale = torch_eps.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max_diff = torch_eps
        .iter()
        .zip(&core_eps)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    // The equivalence tests' forward bound (1e-5 relative; see tests/tests/tiny_vs_trainer.rs).
    assert!(max_diff <= 1e-5 * scale, "{max_diff} vs scale {scale}");

    // The CLI samples it with both backends.
    for backend in ["core", "torch"] {
        let out = whole.path().join(backend);
        let idx = sample_cli(
            backend,
            &path,
            &out,
            &["--n", "4"].map(std::ffi::OsStr::new),
        );
        assert_eq!(idx.dims, vec![4, 28, 28]);
    }
}

#[test]
fn v_prediction_is_recorded_in_checkpoint_and_model_file_and_resumes_only_as_v() {
    let _g = lock();
    let data = mnist(64);
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), 32, 1);
    o.model = ddpm_core::ModelConfig::TinyUNet(ddpm_core::TinyUNetConfig {
        widths: [8, 16, 16],
        ..ddpm_core::TinyUNetConfig::DEFAULT
    });
    o.schedule = ddpm_core::ScheduleConfig::cosine(300).predicting(Prediction::V);
    let report = train::fit(&o, &data, &mut |_| {}).unwrap();
    assert!(report.step_losses.iter().all(|l| l.is_finite()));
    let w = train::checkpoint_weights(&o.checkpoint, false).unwrap();
    assert_eq!(w.schedule, o.schedule);
    let file = std::fs::read(dir.path().join("model.ddpm")).unwrap();
    let parsed = ddpm_core::file::ModelFile::parse(&file).unwrap();
    assert_eq!(parsed.header().schedule.prediction, Prediction::V);

    // The same run predicting ε does not resume from it, and the message says why.
    let mut eps = o.clone();
    eps.schedule = ddpm_core::ScheduleConfig::cosine(300);
    eps.epochs = 2;
    eps.resume = true;
    let e = format!("{:#}", train::fit(&eps, &data, &mut |_| {}).unwrap_err());
    assert!(e.contains("prediction=v"), "{e}");
}

#[test]
fn core_samples_do_not_depend_on_the_thread_count() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (model, guide) = (
        root.join("models/tiny_unet_mnist.ddpm"),
        root.join("models/tiny_unet_mnist_guide.ddpm"),
    );
    let dir = tempfile::tempdir().unwrap();
    let run = |threads: &str| {
        // η 0 and no clipping (not the model's recipe): the sampler `cfg` below.
        let extra = [
            "--n",
            "5",
            "--threads",
            threads,
            "--eta",
            "0",
            "--no-clip-x0",
            "--guidance",
            "2.5",
            "--guide",
        ]
        .map(std::ffi::OsStr::new);
        let mut extra = extra.to_vec();
        extra.push(guide.as_os_str());
        sample_cli(
            "core",
            &model,
            &dir.path().join(format!("t{threads}")),
            &extra,
        )
        .data
    };
    let one = run("1");
    // Image i is the core's guided sample with seed 42 + i, whatever the thread count.
    let mut host = HostModel::from_bytes(&std::fs::read(&model).unwrap()).unwrap();
    let mut g = HostModel::from_bytes(&std::fs::read(&guide).unwrap()).unwrap();
    let cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 5,
        ..Default::default()
    });
    let want =
        ddpm_trainer::sample::to_pixels(&host.sample_guided(&mut g, 2.5, 5, &cfg, 42).unwrap());
    assert_eq!(one, want);
    for threads in ["2", "3"] {
        assert_eq!(run(threads), one, "--threads {threads}");
    }
}

#[test]
fn sample_runs_int8_files_through_the_planned_executor_bit_for_bit() {
    use ddpm_core::file::ModelFile;
    use ddpm_core::tiny_unet::int8::Int8TinyUNet;
    use ddpm_core::tiny_unet::planned::{sample_planned, TinyInt8Workspace};
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny_unet_mnist_int8.ddpm");
    let dir = tempfile::tempdir().unwrap();
    let extra =
        ["--n", "3", "--threads", "2", "--clip-x0", "--recompute-eps"].map(std::ffi::OsStr::new);
    let got = sample_cli("core", &model, &dir.path().join("int8"), &extra);
    // What the firmware computes: sample_planned, image i from seed 42 + i.
    let bytes = std::fs::read(&model).unwrap();
    let file = ModelFile::parse(&bytes).unwrap();
    let net = Int8TinyUNet::from_file(&file).unwrap();
    let sched: ddpm_core::Schedule = ddpm_core::Schedule::new(&file.header().schedule).unwrap();
    let cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 5,
        clip_x0: true,
        recompute_eps: true,
        ..Default::default()
    });
    let mut ws: Box<TinyInt8Workspace> = Box::new(TinyInt8Workspace::ZEROED);
    let mut want = Vec::new();
    for i in 0..3u64 {
        let mut x = vec![0.0f32; 784];
        sample_planned(&net, &sched, &cfg, 42 + i, &mut x, &mut ws).unwrap();
        want.extend(ddpm_trainer::sample::to_pixels(&x));
    }
    assert_eq!(got.data, want);
}
