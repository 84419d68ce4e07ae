//! The main job (`tools/run.sh`) draws real digits: its sampling flags (`tools/main_job.args`:
//! the count only, so the committed TinyUNet's recipe) give 64 images that the project's
//! classifier labels with confidence (probability > 0.9) at least 80% of the time. The
//! committed model, guide and classifier; no MNIST needed.
use std::path::Path;
use std::process::Command;

use ddpm_trainer::data::idx;
use ddpm_trainer::eval::classifier::{self, Classifier, CONFIDENT_PROB};
use tch::Device;

/// The share of the 64 images the classifier must be confident on.
const MIN_CONFIDENT: f64 = 0.8;

#[test]
fn main_job_grid_is_judged_confident() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let args_file = root.join("tools/main_job.args");
    let text = std::fs::read_to_string(&args_file).unwrap();
    let args: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .flat_map(|l| l.split_whitespace())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("samples.png");
    let idx_path = dir.path().join("samples.idx");
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(&root)
        .arg("sample")
        .args(&args)
        .arg("--out")
        .arg(&png)
        .arg("--idx")
        .arg(&idx_path)
        .args(["--no-progress", "--ascii"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(png.is_file());
    // One line says what was drawn and how.
    assert!(
        stderr.contains(
            "drew 64 images from models/tiny_unet_mnist.ddpm (TinyUNet, DDIM 50 steps, η 1, \
             leading spacing, clip x0 yes (ε recomputed), guided by \
             models/tiny_unet_mnist_guide.ddpm with weight 2.5; the model's recipe)"
        ),
        "{stderr}"
    );
    // The first digit as 28 lines of 28 characters of the ramp.
    let art = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = art.lines().collect();
    assert_eq!(lines.len(), 28, "{art}");
    assert!(lines.iter().all(|l| l.chars().count() == 28), "{art}");
    assert!(art.contains('@'), "a digit has saturated strokes:\n{art}");

    let images = idx::read_idx(&idx_path).unwrap();
    assert_eq!(images.dims, vec![64, 28, 28]);
    let clf = Classifier::load(&root.join(classifier::DEFAULT_PATH), Device::Cpu).unwrap();
    let (_, probs) = clf.predict(&images.data);
    let confident = probs.iter().filter(|&&p| p > CONFIDENT_PROB).count() as f64 / 64.0;
    assert!(
        confident >= MIN_CONFIDENT,
        "the classifier is confident on {:.1}% of the main job's digits (at least {:.0}% \
         expected)",
        100.0 * confident,
        100.0 * MIN_CONFIDENT
    );
}
