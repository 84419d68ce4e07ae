//! Weights through PyTorch safetensors and the model file and back, bit for bit.
use std::process::Command;

use ddpm_core::{ModelConfig, ScheduleConfig, SimpleUNetConfig, TinyUNetConfig};
use ddpm_torch::export;
use ddpm_torch::model::{self, Net, SimpleUNet};
use tch::{nn, Device, Kind, Tensor};

fn trainer(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "trainer {args:?} failed: {stderr}");
    stderr
}

#[test]
fn model_file_to_safetensors_to_model_file_round_trip() {
    // A small non-seed configuration with a cosine schedule, so sizes and schedule must travel.
    round_trip(ModelConfig::SimpleUNet(SimpleUNetConfig {
        channels: 1,
        height: 28,
        width: 28,
        hidden1: 8,
        hidden2: 16,
    }));
}

#[test]
fn tiny_unet_model_file_to_safetensors_to_model_file_round_trip() {
    round_trip(ModelConfig::TinyUNet(TinyUNetConfig {
        widths: [8, 16, 12],
        emb_dim: 8,
        temb_dim: 16,
        classes: 0,
        ..TinyUNetConfig::DEFAULT
    }));
    // Three mid blocks: the import finds mid1 and mid2 by their names.
    round_trip(ModelConfig::TinyUNet(TinyUNetConfig {
        widths: [8, 16, 12],
        mid_blocks: 3,
        emb_dim: 8,
        temb_dim: 16,
        classes: 0,
        ..TinyUNetConfig::DEFAULT
    }));
}

fn round_trip(cfg: ModelConfig) {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let schedule = ScheduleConfig::cosine(100);
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = Net::new(&vs.root(), cfg);
    let params = model::named_params(&vs, &cfg).unwrap();
    let bytes = export::model_file_bytes(&cfg, &schedule, &params, "round trip", None).unwrap();
    std::fs::write(p("a.ddpm"), &bytes).unwrap();

    trainer(&[
        "export".as_ref(),
        "--model".as_ref(),
        p("a.ddpm").as_os_str(),
        "--safetensors".as_ref(),
        "--out".as_ref(),
        p("a.safetensors").as_os_str(),
    ]);
    // The safetensors file holds exactly the state_dict names of the architecture.
    let st = Tensor::read_safetensors(p("a.safetensors")).unwrap();
    let mut names: Vec<&str> = st.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    let mut want: Vec<&str> = cfg.tensor_specs().iter().map(|s| s.name).collect();
    want.sort();
    assert_eq!(names, want);

    trainer(&[
        "import".as_ref(),
        "--safetensors".as_ref(),
        p("a.safetensors").as_os_str(),
        "--schedule".as_ref(),
        "cosine".as_ref(),
        "--timesteps".as_ref(),
        "100".as_ref(),
        "--note".as_ref(),
        "round trip".as_ref(),
        "--out".as_ref(),
        p("b.ddpm").as_os_str(),
    ]);
    // Same sizes, schedule, note and weights: the same bytes.
    assert_eq!(std::fs::read(p("b.ddpm")).unwrap(), bytes);
    let b = export::read_model_file(&p("b.ddpm")).unwrap();
    assert_eq!(b.config, cfg);
    assert_eq!(b.schedule, schedule);
    for ((n, x), (_, y)) in params.iter().zip(&b.tensors) {
        assert!(x.equal(y), "{n} changed");
    }
}

#[test]
fn import_accepts_prefixed_f64_state_dicts_and_rejects_wrong_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimpleUNetConfig::SEED;
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = SimpleUNet::new(&vs.root(), cfg);
    let params = model::named_params(&vs, &cfg).unwrap();
    // As saved from a DataParallel-wrapped model in f64.
    let prefixed: Vec<(String, Tensor)> = params
        .iter()
        .map(|(n, t)| (format!("module.{n}"), t.to_kind(Kind::Double)))
        .collect();
    let path = dir.path().join("p.safetensors");
    Tensor::write_safetensors(&prefixed, &path).unwrap();
    let (got_cfg, tensors) = export::read_safetensors_state_dict(&path, 28, 28).unwrap();
    assert_eq!(got_cfg, ModelConfig::SimpleUNet(cfg));
    for ((n, x), (_, y)) in params.iter().zip(&tensors) {
        assert!(x.equal(y), "{n} changed");
    }

    let mut wrong: Vec<(String, Tensor)> = params
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    wrong[4].1 = Tensor::zeros([3, 3], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&wrong, &path).unwrap();
    let e = export::read_safetensors_state_dict(&path, 28, 28).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("p.safetensors") && msg.contains("dec1.weight"),
        "{msg}"
    );
}

#[test]
fn the_committed_tiny_unet_comes_back_from_safetensors_without_schedule_flags() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = root.join("models/tiny_unet_mnist.ddpm");
    let original = export::read_model_file(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    trainer(&[
        "export".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--safetensors".as_ref(),
        "--out".as_ref(),
        p("t.safetensors").as_os_str(),
    ]);
    // The metadata records the architecture, image size, schedule and prediction.
    let (arch, h, w, schedule) = export::read_metadata(&p("t.safetensors")).unwrap().unwrap();
    assert_eq!((arch.as_str(), h, w), ("tiny", 28, 28));
    assert_eq!(schedule, original.schedule);
    let note = original.note.clone();
    trainer(&[
        "import".as_ref(),
        "--safetensors".as_ref(),
        p("t.safetensors").as_os_str(),
        "--note".as_ref(),
        note.as_ref(),
        "--out".as_ref(),
        p("t.ddpm").as_os_str(),
    ]);
    // No --schedule cosine --prediction v retyped: the same model. A safetensors file records
    // no recipe, so the import carries the TinyUNet's default (DDIM 50, η 1, clipped, ε
    // recomputed, unguided); recording the committed guide again gives the same file, byte for
    // byte.
    let imported = std::fs::read(p("t.ddpm")).unwrap();
    let committed = std::fs::read(&model).unwrap();
    let (a, b) = (
        ddpm_core::file::ModelFile::parse(&imported).unwrap(),
        ddpm_core::file::ModelFile::parse(&committed).unwrap(),
    );
    assert_eq!(a.header().recipe.sampler, b.header().recipe.sampler);
    assert_eq!(a.header().recipe.guide, None);
    assert!(a.tensors().eq(b.tensors()));
    trainer(&[
        "export".as_ref(),
        "--model".as_ref(),
        p("t.ddpm").as_os_str(),
        "--guide".as_ref(),
        "tiny_unet_mnist_guide.ddpm".as_ref(),
        "--guidance".as_ref(),
        "2.5".as_ref(),
        "--out".as_ref(),
        p("t2.ddpm").as_os_str(),
    ]);
    assert_eq!(std::fs::read(p("t2.ddpm")).unwrap(), committed);
    // A flag that contradicts the metadata is refused, naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["import", "--prediction", "eps", "--safetensors"])
        .arg(p("t.safetensors"))
        .arg("--out")
        .arg(p("u.ddpm"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--prediction") && stderr.contains("metadata"),
        "{stderr}"
    );
    assert!(!p("u.ddpm").exists());
}
