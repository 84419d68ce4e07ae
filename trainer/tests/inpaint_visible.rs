//! `trainer inpaint --class visible`: the class-conditional model completes a digit as a class
//! drawn from p(class | kept part), which a classifier trained on digits with that part hidden
//! estimates; the classes are drawn, not the likeliest taken, and every misuse is a sentence.
mod common;

use common::{refused, shared_mnist, trainer};
use ddpm_trainer::data::idx;
use ddpm_trainer::inpaint::draw_classes;

const CONDITIONAL_INT8: &str = "models/tiny_unet_mnist_cond_int8.ddpm";

/// Classes drawn from a distribution follow it: a one-hot row always gives its class, and over
/// 20,000 draws each class's share is within 0.015 of its probability (about 4.5 standard
/// errors of the largest share here); the draws are a function of the seed.
#[test]
fn drawn_classes_follow_the_posterior() {
    let mut one_hot = [0.0f32; 10];
    one_hot[7] = 1.0;
    assert!(draw_classes(&one_hot, 50, 3).iter().all(|&k| k == 7));
    let p = [0.5f32, 0.25, 0.0, 0.0, 0.125, 0.0, 0.0, 0.0, 0.0, 0.125];
    let n = 20_000;
    let drawn = draw_classes(&p, n, 11);
    for (k, &pk) in p.iter().enumerate() {
        let share = drawn.iter().filter(|&&c| c == k as u32).count() as f64 / n as f64;
        assert!(
            (share - f64::from(pk)).abs() < 0.015,
            "class {k}: {share} vs {pk}"
        );
    }
    assert_eq!(drawn, draw_classes(&p, n, 11));
    assert_ne!(drawn[..100], draw_classes(&p, 100, 12)[..]);
    // One row per completion: completion i draws from row i.
    let mut rows = vec![0.0f32; 30];
    rows[2] = 1.0;
    rows[10 + 5] = 1.0;
    rows[20 + 9] = 1.0;
    assert_eq!(draw_classes(&rows, 3, 0), vec![2, 5, 9]);
}

/// A test digit with its top half hidden, completed by the int8 class-conditional model: the
/// command prints what the kept part suggests and the classes drawn, and writes the
/// completions (the kept half exact).
#[test]
fn a_digit_is_completed_as_the_classes_its_kept_part_suggests() {
    let dir = tempfile::tempdir().unwrap();
    let data = shared_mnist();
    let out_png = dir.path().join("grid.png");
    let idx_path = dir.path().join("done.idx");
    let args = [
        "inpaint",
        "--model",
        CONDITIONAL_INT8,
        "--image",
        "models/mnist_test_digits.idx",
        "--index",
        "0",
        "--mask",
        "top",
        "--class",
        "visible",
        "--visible-epochs",
        "1",
        "--n",
        "3",
        "--sampler",
        "ddim",
        "--steps",
        "6",
        "--no-progress",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out_png.to_str().unwrap(),
        "--idx",
        idx_path.to_str().unwrap(),
    ];
    let out = trainer(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("the kept part suggests"), "{err}");
    assert!(err.contains("completions of classes"), "{err}");
    let done = idx::read_idx(&idx_path).unwrap();
    assert_eq!(done.dims, vec![3, 28, 28]);
    let digit = idx::read_idx(&common::root().join("models/mnist_test_digits.idx")).unwrap();
    for c in done.data.chunks_exact(784) {
        assert_eq!(
            c[14 * 28..],
            digit.data[14 * 28..784],
            "the kept bottom half changed"
        );
    }
}

#[test]
fn visible_classes_are_refused_where_they_do_not_apply() {
    let err = refused(&["sample", "--model", CONDITIONAL_INT8, "--class", "visible"]);
    assert!(
        err.contains("--class visible") && err.contains("trainer inpaint"),
        "{err}"
    );
    let err = refused(&[
        "inpaint",
        "--image",
        "models/mnist_test_digits.idx",
        "--mask",
        "top",
        "--class",
        "visible",
    ]);
    assert!(err.contains("is unconditional"), "{err}");
    let err = refused(&[
        "inpaint",
        "--model",
        CONDITIONAL_INT8,
        "--image",
        "models/mnist_test_digits.idx",
        "--mask",
        "top",
        "--visible-epochs",
        "3",
    ]);
    assert!(
        err.contains("--visible-epochs") && err.contains("--class visible"),
        "{err}"
    );
    let err = refused(&["sample", "--model", CONDITIONAL_INT8, "--class", "seven"]);
    assert!(err.contains("visible"), "{err}");
}
