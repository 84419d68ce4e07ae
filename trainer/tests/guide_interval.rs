//! `--guide-interval LO,HI` from the command line: guidance (autoguidance or classifier-free)
//! only at the steps with t/T in the interval, on the core (f32), the int8 executors and
//! libtorch; an interval that holds no step draws the unguided images exactly, and an interval
//! with nothing to limit, or a malformed one, is a sentence naming the problem.
mod common;

use std::path::Path;

use common::{refused, root, trainer};
use ddpm_core::diffusion::{GuidanceInterval, SamplerConfig, SolverConfig, Spacing};
use ddpm_core::host::HostModel;
use ddpm_trainer::data::idx;

const MODEL: &str = "models/tiny_unet_mnist.ddpm";
const GUIDE: &str = "models/tiny_unet_mnist_guide.ddpm";
const INT8: &str = "models/tiny_unet_mnist_int8.ddpm";
const INT8_GUIDE: &str = "models/tiny_unet_mnist_guide_int8.ddpm";

/// `trainer sample` of 2 images with UniPC 6 and `extra` flags into `dir/name.idx`; returns the
/// pixels and standard error.
fn draw(dir: &Path, name: &str, extra: &[&str]) -> (Vec<u8>, String) {
    let (png, idx_path) = (
        dir.join(format!("{name}.png")),
        dir.join(format!("{name}.idx")),
    );
    let mut args = vec![
        "sample",
        "--n",
        "2",
        "--sampler",
        "unipc",
        "--steps",
        "6",
        "--no-progress",
        "--out",
        png.to_str().unwrap(),
        "--idx",
        idx_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = trainer(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {err}");
    (idx::read_idx(&idx_path).unwrap().data, err)
}

#[test]
fn the_core_guides_only_the_steps_in_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--model", MODEL, "--guide", GUIDE, "--guidance", "2.5"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> { [&flags[..], extra].concat() };
    let (partly, err) = draw(
        dir.path(),
        "partly",
        &with(&["--guide-interval", "0.3,0.8"]),
    );
    assert!(err.contains("guided at t/T in [0.3, 0.8]"), "{err}");
    assert!(
        err.contains("--guide-interval"),
        "the flags given are listed: {err}"
    );
    // The same draw in-process.
    let read = |p: &str| HostModel::from_bytes(&std::fs::read(root().join(p)).unwrap()).unwrap();
    let (mut model, mut guide) = (read(MODEL), read(GUIDE));
    model.set_guidance_interval(GuidanceInterval::new(0.3, 0.8).unwrap());
    let cfg = SamplerConfig::UniPc(SolverConfig {
        steps: 6,
        spacing: Spacing::Linspace,
    });
    let want = model.sample_guided(&mut guide, 2.5, 2, &cfg, 42).unwrap();
    let want: Vec<u8> = want.iter().map(|&v| ddpm_core::pixel_to_u8(v)).collect();
    assert_eq!(partly, want);
    let (always, _) = draw(dir.path(), "always", &flags);
    let (never, _) = draw(dir.path(), "never", &with(&["--guide-interval", "1,1"]));
    let (unguided, _) = draw(dir.path(), "unguided", &["--model", MODEL, "--no-guide"]);
    assert_eq!(
        never, unguided,
        "an interval holding no step is the model alone"
    );
    assert_ne!(partly, always);
    assert_ne!(partly, unguided);
}

#[test]
fn int8_and_torch_take_the_interval_too() {
    let dir = tempfile::tempdir().unwrap();
    let int8 = ["--model", INT8, "--guide", INT8_GUIDE, "--guidance", "2.5"];
    let (never, _) = draw(
        dir.path(),
        "i_never",
        &[&int8[..], &["--guide-interval", "1,1"]].concat(),
    );
    let (unguided, _) = draw(dir.path(), "i_unguided", &["--model", INT8]);
    assert_eq!(
        never, unguided,
        "int8: an interval holding no step is the model alone"
    );
    let (partly, err) = draw(
        dir.path(),
        "i_partly",
        &[&int8[..], &["--guide-interval", "0.3,0.8"]].concat(),
    );
    assert!(
        err.contains("int8") && err.contains("guided at t/T in [0.3, 0.8]"),
        "{err}"
    );
    let (always, _) = draw(dir.path(), "i_always", &int8);
    assert_ne!(partly, always);
    assert_ne!(partly, unguided);
    let torch = [
        "--model",
        MODEL,
        "--guide",
        GUIDE,
        "--backend",
        "torch",
        "--device",
        "cpu",
    ];
    let (t_never, _) = draw(
        dir.path(),
        "t_never",
        &[&torch[..], &["--guide-interval", "1,1"]].concat(),
    );
    let (t_unguided, _) = draw(
        dir.path(),
        "t_unguided",
        &[
            "--model",
            MODEL,
            "--no-guide",
            "--backend",
            "torch",
            "--device",
            "cpu",
        ],
    );
    assert_eq!(
        t_never, t_unguided,
        "torch: an interval holding no step is the model alone"
    );
    let (t_partly, err) = draw(
        dir.path(),
        "t_partly",
        &[&torch[..], &["--guide-interval", "0.3,0.8"]].concat(),
    );
    assert!(err.contains("guided at t/T in [0.3, 0.8]"), "{err}");
    assert_ne!(t_partly, t_never);
}

#[test]
fn an_interval_needs_guidance_and_two_ends_in_order() {
    let err = refused(&[
        "sample",
        "--model",
        MODEL,
        "--no-guide",
        "--guide-interval",
        "0.3,0.8",
    ]);
    assert!(
        err.contains("--guide-interval") && err.contains("nothing guides"),
        "{err}"
    );
    let err = refused(&[
        "eval",
        "--nll",
        "--limit",
        "2",
        "--model",
        "models/simple_unet_mnist.ddpm",
        "--guide-interval",
        "0.3,0.8",
    ]);
    assert!(err.contains("--guide-interval"), "{err}");
    for bad in ["0.8,0.3", "0.3", "a,b", "-0.1,0.5", "0.2,1.5"] {
        let flag = format!("--guide-interval={bad}");
        let err = refused(&["sample", "--model", MODEL, &flag]);
        assert!(
            err.contains("--guide-interval") && err.contains(bad),
            "{bad}: {err}"
        );
    }
}
