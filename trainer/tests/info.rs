//! `trainer info`: text and JSON reports of the committed models, and a clear error for a file
//! that is not a model file.
use std::path::Path;
use std::process::Command;

use ddpm_core::file::ModelFile;

fn info(args: &[&str]) -> (bool, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(root)
        .arg("info")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tensor_count(path: &str) -> usize {
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)).unwrap();
    ModelFile::parse(&bytes).unwrap().tensors().count()
}

#[test]
fn text_report_of_the_committed_tiny_unet() {
    let (ok, out, err) = info(&["models/tiny_unet_mnist.ddpm"]);
    assert!(ok, "{err}");
    for needle in [
        "model:      TinyUNet 1×28×28, widths 24/64/56, 4 mid blocks",
        "parameters: 283905",
        "precision:  f32",
        "schedule:   cosine (s 0.008, β ≤ 0.999), T = 300, predicts v",
        "sampler:    DDIM 50 steps, η 1, leading spacing, clip x0 yes (ε recomputed)\n",
        "guide:      tiny_unet_mnist_guide.ddpm (next to the model), weight 2.5\n",
        "note:       trainer fit --arch tiny",
        "enc0.weight",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    let n = tensor_count("models/tiny_unet_mnist.ddpm");
    assert!(out.contains(&format!("tensors:    {n}\n")), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("  ")).count(), n);
    let bytes = std::fs::metadata(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny_unet_mnist.ddpm"),
    )
    .unwrap()
    .len();
    assert!(
        out.contains(&format!("file:       format 2, {bytes} bytes, CRC-32 0x")),
        "{out}"
    );
}

#[test]
fn json_report_of_the_int8_tiny_unet() {
    let (ok, out, err) = info(&["--json", "models/tiny_unet_mnist_int8.ddpm"]);
    assert!(ok, "{err}");
    for needle in [
        "\"arch\": \"tiny\"",
        "\"widths\": [24, 64, 56]",
        "\"mid_blocks\": 4",
        "\"parameters\": 283905",
        "\"precision\": \"int8\"",
        "\"kind\": \"cosine\"",
        "\"prediction\": \"v\"",
        "{\"name\": \"enc0.weight\", \"dtype\": \"i8\", \"dims\": [24, 1, 3, 3]}",
        "\"recipe\": {\"sampler\": {\"kind\": \"ddim\", \"steps\": 10, \"eta\": 0, \
         \"spacing\": \"leading\", \"clip_x0\": true, \"recompute_eps\": true}, \"guide\": null}",
        "\"format_version\": 2",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    assert_eq!(
        out.matches("\"name\": ").count(),
        tensor_count("models/tiny_unet_mnist_int8.ddpm")
    );
    assert_eq!(out.matches('{').count(), out.matches('}').count());
    assert!(out.starts_with('{') && out.trim_end().ends_with('}'));
}

#[test]
fn a_file_that_is_not_a_model_file_is_named() {
    let (ok, _, err) = info(&["README.md"]);
    assert!(!ok);
    assert!(err.contains("README.md: not a valid model file"), "{err}");
}

#[test]
fn a_format_1_file_shows_the_legacy_recipe() {
    let (ok, out, err) = info(&["core/tests/data/model_v1.ddpm"]);
    assert!(ok, "{err}");
    for needle in [
        "sampler:    DDPM 50 steps, fixed-large variance, clip x0 no (format 1 file, which \
         records no recipe: the default)\n",
        "guide:      (none)\n",
        "file:       format 1, 2598 bytes",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    let (ok, out, err) = info(&["--json", "core/tests/data/model_v1.ddpm"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "\"recipe\": {\"sampler\": {\"kind\": \"ddpm\", \"variance\": \"fixed-large\", \
             \"clip_x0\": false}, \"guide\": null}"
        ) && out.contains("\"format_version\": 1"),
        "{out}"
    );
}
