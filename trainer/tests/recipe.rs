//! Models carry their recipe: `trainer sample` with no flags draws the committed TinyUNet with
//! its guide and sampler, flags override the recipe field by field, a missing guide is named,
//! and `trainer export` records a recipe while keeping the tensors.
mod common;

use std::path::Path;

use common::{root, trainer};
use ddpm_core::diffusion::{DdimConfig, SamplerConfig, Spacing};
use ddpm_core::file::ModelFile;
use ddpm_trainer::data::idx;

/// `trainer sample` with `args` (plus an output folder, --no-progress and two threads): the
/// u8 images and standard error.
fn sample(dir: &Path, name: &str, args: &[&str]) -> (Vec<u8>, String) {
    let png = dir.join(format!("{name}.png"));
    let idx_path = dir.join(format!("{name}.idx"));
    let mut all = vec!["sample", "--no-progress", "--threads", "2"];
    all.extend_from_slice(args);
    let (png_s, idx_s) = (png.display().to_string(), idx_path.display().to_string());
    all.extend_from_slice(&["--out", &png_s, "--idx", &idx_s]);
    let out = trainer(&all);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sample {args:?}: {err}");
    (idx::read_idx(&idx_path).unwrap().data, err)
}

/// The committed TinyUNet's recipe spelt out in flags.
const TINY_RECIPE: [&str; 12] = [
    "--model",
    "models/tiny_unet_mnist.ddpm",
    "--guide",
    "models/tiny_unet_mnist_guide.ddpm",
    "--guidance",
    "2.5",
    "--sampler",
    "ddim",
    "--eta",
    "1",
    "--clip-x0",
    "--recompute-eps",
];

#[test]
fn sample_without_flags_draws_the_tiny_unet_with_its_recipe_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, err) = sample(dir.path(), "plain", &["--n", "3"]);
    assert!(
        err.contains(
            "drew 3 images from models/tiny_unet_mnist.ddpm (TinyUNet, DDIM 50 steps, η 1, \
             leading spacing, clip x0 yes (ε recomputed), guided by \
             models/tiny_unet_mnist_guide.ddpm with weight 2.5; the model's recipe)"
        ),
        "{err}"
    );
    let mut explicit = vec!["--n", "3", "--steps", "50"];
    explicit.extend_from_slice(&TINY_RECIPE);
    let (spelt, _) = sample(dir.path(), "spelt", &explicit);
    assert_eq!(plain, spelt, "no flags and the recipe spelt out differ");

    // One field overridden: the rest stays the recipe's.
    let (fewer, err) = sample(dir.path(), "fewer", &["--n", "3", "--steps", "8"]);
    assert!(
        err.contains("DDIM 8 steps, η 1,") && err.contains("the model's recipe with --steps"),
        "{err}"
    );
    let mut explicit = vec!["--n", "3", "--steps", "8"];
    explicit.extend_from_slice(&TINY_RECIPE);
    assert_eq!(fewer, sample(dir.path(), "fewer_spelt", &explicit).0);
    assert_ne!(fewer, plain);

    // --no-guide drops the recipe's guide; the sampler stays.
    let (alone, err) = sample(
        dir.path(),
        "alone",
        &["--n", "3", "--steps", "8", "--no-guide"],
    );
    assert!(!err.contains("guided by"), "{err}");
    assert!(err.contains("with --steps, --no-guide"), "{err}");
    assert_ne!(alone, fewer);
}

#[test]
fn a_missing_recipe_guide_is_named_and_no_guide_samples_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("lone.ddpm");
    std::fs::copy(root().join("models/tiny_unet_mnist.ddpm"), &lone).unwrap();
    let lone_s = lone.display().to_string();
    let out = trainer(&["sample", "--model", &lone_s, "--n", "1", "--no-progress"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let missing = dir.path().join("tiny_unet_mnist_guide.ddpm");
    assert!(
        err.contains(&format!(
            "its recipe names the guide {}, which is not there",
            missing.display()
        )) && err.contains("--no-guide"),
        "{err}"
    );
    let (_, err) = sample(
        dir.path(),
        "lone",
        &["--model", &lone_s, "--n", "1", "--steps", "2", "--no-guide"],
    );
    assert!(!err.contains("guided by"), "{err}");
}

#[test]
fn inapplicable_recipe_overrides_are_refused() {
    // The committed TinyUNet's recipe is DDIM: --variance does not apply unless --sampler ddpm.
    let out = trainer(&["sample", "--n", "1", "--variance", "fixed-small"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--variance applies to --sampler ddpm only"),
        "{err}"
    );
    // The SimpleUNet's recipe is DDPM: --steps does not apply.
    let out = trainer(&[
        "sample",
        "--model",
        "models/simple_unet_mnist.ddpm",
        "--n",
        "1",
        "--steps",
        "5",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--steps applies to --sampler ddim only"),
        "{err}"
    );
    // An int8 file's recipe names no guide, and --guidance has none to weigh.
    let out = trainer(&[
        "sample",
        "--model",
        "models/tiny_unet_mnist_int8.ddpm",
        "--n",
        "1",
        "--guidance",
        "3",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--guidance"), "{err}");
}

/// An export's source, its recipe flags, and the sampler and guide it must record.
type Case = (
    &'static str,
    &'static [&'static str],
    SamplerConfig,
    Option<(&'static str, f32)>,
);

#[test]
fn export_records_a_recipe_and_keeps_every_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [Case; 3] = [
        (
            "models/tiny_unet_mnist.ddpm",
            &[
                "--steps",
                "20",
                "--spacing",
                "trailing",
                "--guidance",
                "1.5",
            ],
            SamplerConfig::Ddim(DdimConfig {
                steps: 20,
                eta: 1.0,
                spacing: Spacing::Trailing,
                clip_x0: true,
                recompute_eps: true,
            }),
            Some(("tiny_unet_mnist_guide.ddpm", 1.5)),
        ),
        (
            "models/tiny_unet_mnist.ddpm",
            &["--no-guide", "--no-clip-x0", "--eta", "0"],
            SamplerConfig::Ddim(DdimConfig {
                steps: 50,
                eta: 0.0,
                spacing: Spacing::Leading,
                clip_x0: false,
                recompute_eps: false,
            }),
            None,
        ),
        (
            "models/tiny_unet_mnist_int8.ddpm",
            &["--steps", "12"],
            SamplerConfig::Ddim(DdimConfig {
                steps: 12,
                eta: 0.0,
                spacing: Spacing::Leading,
                clip_x0: true,
                recompute_eps: true,
            }),
            None,
        ),
    ];
    for (k, (source, flags, sampler, guide)) in cases.into_iter().enumerate() {
        let out_path = dir.path().join(format!("export_{k}.ddpm"));
        let out_s = out_path.display().to_string();
        let mut args = vec!["export", "--model", source, "--out", &out_s];
        args.extend_from_slice(flags);
        let out = trainer(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let src = std::fs::read(root().join(source)).unwrap();
        let written = std::fs::read(&out_path).unwrap();
        let (a, b) = (
            ModelFile::parse(&src).unwrap(),
            ModelFile::parse(&written).unwrap(),
        );
        assert_eq!(b.header().recipe.sampler, sampler, "{flags:?}");
        assert_eq!(
            b.header().recipe.guide.map(|g| (g.file, g.weight)),
            guide,
            "{flags:?}"
        );
        assert_eq!(a.header().note, b.header().note);
        assert_eq!(a.header().precision, b.header().precision);
        assert!(a.tensors().eq(b.tensors()), "{source}: tensors changed");
    }
    // A guide outside the model's folder cannot be recorded; neither can a guide in an int8
    // file, or a recipe in a safetensors file.
    let out_s = dir.path().join("bad.ddpm").display().to_string();
    for (flags, needle) in [
        (
            &[
                "--model",
                "models/tiny_unet_mnist.ddpm",
                "--guide",
                "../g.ddpm",
            ][..],
            "guide file name not a plain relative path",
        ),
        (
            &[
                "--model",
                "models/tiny_unet_mnist_int8.ddpm",
                "--int8",
                "--guide",
                "g.ddpm",
            ][..],
            "--guide applies to f32 model files",
        ),
        (
            &[
                "--model",
                "models/tiny_unet_mnist.ddpm",
                "--safetensors",
                "--steps",
                "5",
            ][..],
            "--steps applies to model files: a safetensors file records no recipe",
        ),
    ] {
        let mut args = vec!["export", "--out", &out_s];
        args.extend_from_slice(flags);
        let out = trainer(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{flags:?}: {err}"
        );
        assert!(!Path::new(&out_s).exists(), "{flags:?} wrote a file");
    }
}

#[test]
fn dpm_solver_is_selectable_and_refuses_what_it_does_not_read() {
    for (name, described) in [
        (
            "dpmpp-2m",
            "DPM-Solver++(2M) 4 steps, linspace spacing; the model's recipe with",
        ),
        (
            "unipc",
            "UniPC (bh2, order 2) 4 steps, linspace spacing; the model's recipe with",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (images, err) = sample(
            dir.path(),
            name,
            &["--n", "2", "--sampler", name, "--steps", "4", "--no-guide"],
        );
        assert_eq!(images.len(), 2 * 28 * 28);
        assert!(err.contains(described), "{err}");
        for (flag, value) in [("--eta", Some("0.5")), ("--clip-x0", None)] {
            let mut args = vec!["sample", "--n", "1", "--sampler", name, flag];
            args.extend(value);
            let out = trainer(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{flag}: {err}");
            assert!(
                err.contains(&format!("{flag} does not apply to --sampler {name}")),
                "{err}"
            );
        }
    }
}

/// An int8 file with DPM-Solver++(2M) or UniPC: the planned executor with its history, what
/// the microcontroller computes, bit for bit.
#[test]
fn int8_dpm_solver_samples_are_the_planned_executor_s() {
    use ddpm_core::diffusion::SolverConfig;
    use ddpm_core::tiny_unet::int8::Int8TinyUNet;
    use ddpm_core::tiny_unet::planned::{sample_planned_with_history, TinyInt8Workspace};
    let bytes = std::fs::read(root().join("models/tiny_unet_mnist_int8.ddpm")).unwrap();
    let file = ModelFile::parse(&bytes).unwrap();
    let net = Int8TinyUNet::from_file(&file).unwrap();
    let sched: ddpm_core::Schedule = ddpm_core::Schedule::new(&file.header().schedule).unwrap();
    let solver = SolverConfig {
        steps: 3,
        spacing: Spacing::Linspace,
    };
    for (name, described, cfg) in [
        (
            "dpmpp-2m",
            "TinyUNet int8, DPM-Solver++(2M) 3 steps",
            SamplerConfig::DpmSolver2M(solver),
        ),
        (
            "unipc",
            "TinyUNet int8, UniPC (bh2, order 2) 3 steps",
            SamplerConfig::UniPc(solver),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "--model",
            "models/tiny_unet_mnist_int8.ddpm",
            "--n",
            "2",
            "--sampler",
            name,
            "--steps",
            "3",
        ];
        let (images, err) = sample(dir.path(), &format!("int8_{name}"), &args);
        assert!(err.contains(described), "{err}");
        let mut ws = Box::new(<TinyInt8Workspace>::ZEROED);
        let mut want = Vec::new();
        for seed in [42u64, 43] {
            let (mut x, mut h) = (vec![0.0f32; 784], vec![0.0f32; cfg.history_len(784)]);
            sample_planned_with_history(&net, &sched, &cfg, seed, &mut x, &mut ws, &mut h).unwrap();
            want.extend(ddpm_trainer::sample::to_pixels(&x));
        }
        assert_eq!(images, want, "{name}");
    }
}

/// An int8 TinyUNet guided by the int8 guide: the images are `sample_planned_guided`'s (what a
/// `DDPM_DEMO_GUIDANCE` firmware computes), bit for bit; an f32 guide for an int8 model is
/// refused with the reason.
#[test]
fn int8_guided_samples_are_the_planned_guided_executor_s() {
    use ddpm_core::diffusion::SolverConfig;
    use ddpm_core::tiny_unet::int8::Int8TinyUNet;
    use ddpm_core::tiny_unet::planned::{sample_planned_guided, TinyInt8Workspace};
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--model",
        "models/tiny_unet_mnist_int8.ddpm",
        "--guide",
        "models/tiny_unet_mnist_guide_int8.ddpm",
        "--guidance",
        "2.5",
        "--n",
        "2",
        "--sampler",
        "unipc",
        "--steps",
        "3",
    ];
    let (images, err) = sample(dir.path(), "int8_guided", &args);
    assert!(
        err.contains(
            "TinyUNet int8, UniPC (bh2, order 2) 3 steps, linspace spacing, guided by \
                      models/tiny_unet_mnist_guide_int8.ddpm with weight 2.5"
        ),
        "{err}"
    );
    let read = |p: &str| std::fs::read(root().join(p)).unwrap();
    let (mb, gb) = (
        read("models/tiny_unet_mnist_int8.ddpm"),
        read("models/tiny_unet_mnist_guide_int8.ddpm"),
    );
    let (mf, gf) = (
        ModelFile::parse(&mb).unwrap(),
        ModelFile::parse(&gb).unwrap(),
    );
    let (net, guide) = (
        Int8TinyUNet::from_file(&mf).unwrap(),
        Int8TinyUNet::from_file(&gf).unwrap(),
    );
    let sched: ddpm_core::Schedule = ddpm_core::Schedule::new(&mf.header().schedule).unwrap();
    let cfg = SamplerConfig::UniPc(SolverConfig {
        steps: 3,
        spacing: Spacing::Linspace,
    });
    let mut ws = Box::new(<TinyInt8Workspace>::ZEROED);
    let mut want = Vec::new();
    for seed in [42u64, 43] {
        let mut x = vec![0.0f32; 784];
        let (mut g, mut h) = (vec![0.0f32; 784], vec![0.0f32; cfg.history_len(784)]);
        sample_planned_guided(
            &net, &guide, 2.5, &sched, &cfg, seed, &mut x, &mut ws, &mut g, &mut h,
        )
        .unwrap();
        want.extend(ddpm_trainer::sample::to_pixels(&x));
    }
    assert_eq!(images, want);
    let out = trainer(&[
        "sample",
        "--model",
        "models/tiny_unet_mnist_int8.ddpm",
        "--guide",
        "models/tiny_unet_mnist_guide.ddpm",
        "--n",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("an int8 model is guided by an int8 guide"),
        "{err}"
    );
}
