//! The class-conditional TinyUNet from the command line: `sample --class K --cfg W` draws what
//! the core's classifier-free guidance computes, `--class all` a grid with a row per digit, and
//! every bad request (a class for an unconditional model, a class index past the model's, a
//! class with autoguidance, training flags without `--conditional`) is a sentence naming the
//! problem.
mod common;

use common::{refused, root, trainer};
use ddpm_core::diffusion::{DdimConfig, SamplerConfig};
use ddpm_core::host::HostModel;
use ddpm_trainer::data::idx;

/// The committed class-conditional TinyUNet.
const CONDITIONAL: &str = "models/tiny_unet_mnist_cond.ddpm";

#[test]
fn sample_class_is_the_cores_classifier_free_guidance() {
    let dir = tempfile::tempdir().unwrap();
    let idx_path = dir.path().join("sevens.idx");
    let png = dir.path().join("sevens.png");
    let out = trainer(&[
        "sample",
        "--model",
        CONDITIONAL,
        "--class",
        "7",
        "--cfg",
        "3",
        "--n",
        "2",
        "--sampler",
        "ddim",
        "--steps",
        "5",
        "--eta",
        "0",
        "--no-progress",
        "--out",
        png.to_str().unwrap(),
        "--idx",
        idx_path.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("drew 2 images of class 7"), "{err}");
    assert!(err.contains("classifier-free guidance weight 3"), "{err}");
    let got = idx::read_idx(&idx_path).unwrap().data;
    // The same draw in-process: the model labelled 7 guided by itself without a class.
    let bytes = std::fs::read(root().join(CONDITIONAL)).unwrap();
    let mut model = HostModel::from_bytes(&bytes).unwrap();
    let mut uncond = model.clone();
    model.set_class(Some(7)).unwrap();
    uncond.set_class(None).unwrap();
    let base = ddpm_trainer::load::recipe(&root().join(CONDITIONAL))
        .unwrap()
        .sampler;
    let SamplerConfig::Ddim(d) = base else {
        panic!("the conditional model's recipe is DDIM")
    };
    let cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 5,
        eta: 0.0,
        ..d
    });
    let want = model.sample_guided(&mut uncond, 3.0, 2, &cfg, 42).unwrap();
    let want: Vec<u8> = want.iter().map(|&v| ddpm_core::pixel_to_u8(v)).collect();
    assert_eq!(got, want);
    // Another class draws other images from the same noise.
    let other = dir.path().join("ones.idx");
    let out = trainer(&[
        "sample",
        "--model",
        CONDITIONAL,
        "--class",
        "1",
        "--n",
        "2",
        "--steps",
        "5",
        "--eta",
        "0",
        "--sampler",
        "ddim",
        "--no-progress",
        "--out",
        png.to_str().unwrap(),
        "--idx",
        other.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_ne!(idx::read_idx(&other).unwrap().data, got);
}

#[test]
fn class_all_draws_a_row_per_digit() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("all.png");
    let idx_path = dir.path().join("all.idx");
    let out = trainer(&[
        "sample",
        "--model",
        CONDITIONAL,
        "--class",
        "all",
        "--n",
        "2",
        "--steps",
        "3",
        "--sampler",
        "ddim",
        "--no-progress",
        "--out",
        png.to_str().unwrap(),
        "--idx",
        idx_path.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("drew 20 images (2 of each class)"), "{err}");
    assert_eq!(idx::read_idx(&idx_path).unwrap().dims, vec![20, 28, 28]);
    // Two columns and ten rows of 28-pixel images with 2-pixel borders, upscaled ×4.
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!(
        (info.width, info.height),
        ((2 * 28 + 3 * 2) * 4, (10 * 28 + 11 * 2) * 4)
    );
}

#[test]
fn bad_class_requests_are_sentences() {
    let base = [
        "sample",
        "--n",
        "1",
        "--steps",
        "2",
        "--no-progress",
        "--out",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("x.png");
    let png = png.to_str().unwrap();
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.push(png);
        a.extend_from_slice(extra);
        refused(&a)
    };
    let e = with(&[
        "--model",
        "models/tiny_unet_mnist.ddpm",
        "--class",
        "7",
        "--no-guide",
    ]);
    assert!(
        e.contains("models/tiny_unet_mnist.ddpm is unconditional"),
        "{e}"
    );
    let e = with(&["--model", CONDITIONAL, "--class", "10"]);
    assert!(
        e.contains("--class 10: models/tiny_unet_mnist_cond.ddpm has 10 classes, 0 to 9"),
        "{e}"
    );
    let e = with(&["--model", CONDITIONAL, "--class", "seven"]);
    assert!(
        e.contains("give a class index (0 to 9 for the digits) or `all`"),
        "{e}"
    );
    let e = with(&["--model", CONDITIONAL, "--cfg", "2"]);
    assert!(e.contains("--class"), "{e}");
    let e = with(&[
        "--model",
        CONDITIONAL,
        "--class",
        "3",
        "--guide",
        "models/tiny_unet_mnist_guide.ddpm",
    ]);
    assert!(e.contains("are not combined"), "{e}");
    let e = refused(&["eval", "--model", CONDITIONAL, "--nll", "--class", "3"]);
    assert!(e.contains("--class applies to --fid"), "{e}");
    let e = refused(&["fit", "--arch", "tiny", "--label-drop", "0.2"]);
    assert!(
        e.contains("--label-drop applies to --conditional only"),
        "{e}"
    );
    let e = refused(&[
        "fit",
        "--arch",
        "tiny",
        "--conditional",
        "--label-drop",
        "1.5",
    ]);
    assert!(e.contains("must be in [0, 1)"), "{e}");
    let e = refused(&["fit", "--conditional"]);
    assert!(
        e.contains("--conditional applies to --arch tiny only"),
        "{e}"
    );
}

/// `--backend torch` samples a class too: from the same libtorch noise (its own generator,
/// seeded by --seed), another class or another guidance weight gives other images, and the same
/// settings give the same images again.
#[test]
fn torch_backend_takes_the_class_and_the_weight() {
    let dir = tempfile::tempdir().unwrap();
    let draw = |name: &str, class: &str, cfg: &str| {
        let idx_path = dir.path().join(format!("{name}.idx"));
        let png = dir.path().join(format!("{name}.png"));
        let out = trainer(&[
            "sample",
            "--model",
            CONDITIONAL,
            "--class",
            class,
            "--cfg",
            cfg,
            "--n",
            "2",
            "--steps",
            "5",
            "--eta",
            "0",
            "--sampler",
            "ddim",
            "--backend",
            "torch",
            "--device",
            "cpu",
            "--no-progress",
            "--out",
            png.to_str().unwrap(),
            "--idx",
            idx_path.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{name}: {err}");
        assert!(err.contains(&format!("of class {class}")), "{err}");
        idx::read_idx(&idx_path).unwrap().data
    };
    let four = draw("four", "4", "2");
    assert_eq!(draw("again", "4", "2"), four);
    assert_ne!(draw("one", "1", "2"), four);
    assert_ne!(draw("unguided", "4", "1"), four);
}
