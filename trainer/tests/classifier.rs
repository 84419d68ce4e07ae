//! The MNIST classifier: the committed (cached) one labels real test digits and meets the
//! project's accuracy bar; training, saving and loading round-trip exactly; bad files and a
//! missed accuracy bar give errors that name the problem.

mod common;

use common::{lock, shared_mnist};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ddpm_trainer::data::idx::{Mnist, Split};
use ddpm_trainer::eval::classifier::{
    self, Classifier, ClassifierOptions, FEATURES, IMAGE_LEN, REQUIRED_TEST_ACCURACY,
};
use tch::{Device, Tensor};

fn split(s: Split, n: usize) -> Mnist {
    let mut m = Mnist::load(&shared_mnist(), s, 28, 28).unwrap();
    m.truncate(n);
    m
}

fn cached_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(classifier::DEFAULT_PATH)
}

/// Real test digits the label check uses.
const HANDFUL: usize = 100;
/// Of those, how many the cached classifier must get right. Its accuracy bar itself is checked
/// on the whole test split; here, at 98.5% accuracy 1.5 misses per 100 are expected (the
/// committed file misses 1), and 98 leaves that margin while a classifier much below the bar
/// would likely miss more.
const CACHED_MIN_CORRECT: usize = 98;
/// Without the cached file, a classifier trained on 6,000 images for 2 epochs (seconds) stands
/// in; such a model reaches about 95% on the whole test split, so 90 of the 100 (clean) first
/// test digits is a bar it passes while a broken training loop (10% chance level) cannot.
const QUICK_MIN_CORRECT: usize = 90;

fn quick_options(limit: usize, epochs: usize) -> ClassifierOptions {
    ClassifierOptions {
        epochs,
        limit: Some(limit),
        min_accuracy: 0.0,
        progress: false,
        ..ClassifierOptions::standard(Device::Cpu)
    }
}

/// 1,000 images, 2 epochs of batch 32 (63 steps): seconds.
fn round_trip_options() -> ClassifierOptions {
    ClassifierOptions {
        batch_size: 32,
        ..quick_options(1000, 2)
    }
}

#[test]
fn cached_classifier_or_quick_stand_in_labels_real_test_digits() {
    let _g = lock();
    let test = split(Split::Test, HANDFUL);
    let path = cached_path();
    let (clf, bar, which) = if path.is_file() {
        let clf = Classifier::load(&path, Device::Cpu).unwrap();
        // The committed file's claim, checked on the whole test split.
        let full = Mnist::load(&shared_mnist(), Split::Test, 28, 28).unwrap();
        let acc = clf.accuracy(&full);
        eprintln!("cached classifier: test accuracy {:.2}%", 100.0 * acc);
        assert!(
            acc >= REQUIRED_TEST_ACCURACY,
            "{}: test accuracy {acc} below {REQUIRED_TEST_ACCURACY}",
            path.display()
        );
        (clf, CACHED_MIN_CORRECT, "cached")
    } else {
        eprintln!(
            "{} absent: training a quick stand-in on 6,000 images",
            path.display()
        );
        let train = split(Split::Train, 6000);
        let (clf, _) =
            Classifier::train(&quick_options(6000, 2), &train, &test, &mut |_| {}).unwrap();
        (clf, QUICK_MIN_CORRECT, "quick stand-in")
    };
    let (labels, probs) = clf.predict(&test.images);
    assert_eq!(labels.len(), HANDFUL);
    let right = labels
        .iter()
        .zip(&test.labels)
        .filter(|(a, b)| a == b)
        .count();
    eprintln!("{which} classifier: {right} of {HANDFUL} real test digits right");
    assert!(
        right >= bar,
        "{which} classifier labelled only {right} of {HANDFUL} right (need {bar}): \
         labels {labels:?}, truth {:?}",
        test.labels
    );
    assert!(probs.iter().all(|p| (0.1..=1.0).contains(p)), "{probs:?}");
}

#[test]
fn training_learns_and_round_trips_through_the_file() {
    let _g = lock();
    let start = Instant::now();
    let train = split(Split::Train, 1000);
    let test = split(Split::Test, 500);
    let mut log = Vec::new();
    let (clf, report) = Classifier::train(&round_trip_options(), &train, &test, &mut |m| {
        log.push(m.to_owned())
    })
    .unwrap();
    assert_eq!(report.train_images, 1000);
    assert_eq!(log.len(), 2, "one line per epoch: {log:?}");
    // 1,000 images, 2 epochs of batch 32 reach about 86% on the test split; chance is 10%.
    assert!(
        report.test_accuracy >= 0.7,
        "accuracy {}",
        report.test_accuracy
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("clf.safetensors");
    clf.save(&path).unwrap();
    let back = Classifier::load(&path, Device::Cpu).unwrap();
    let imgs = &test.images[..20 * IMAGE_LEN];
    assert_eq!(clf.predict(imgs), back.predict(imgs));
    let (fa, fb) = (clf.features(imgs), back.features(imgs));
    assert_eq!(fa.len(), 20 * FEATURES);
    assert_eq!(fa, fb);
    assert!(fa.iter().all(|&v| v >= 0.0), "features come after a ReLU");
    assert!(fa.iter().any(|&v| v > 0.0));
    let p = clf.probabilities(imgs);
    for row in p.chunks_exact(10) {
        let s: f32 = row.iter().sum();
        assert!((s - 1.0).abs() < 1e-5, "probabilities sum to {s}");
    }

    // load_or_train returns the cached file without reading any data.
    let cached =
        classifier::load_or_train(&path, Path::new("/nonexistent/mnist"), Device::Cpu).unwrap();
    assert_eq!(cached.predict(imgs), clf.predict(imgs));
    eprintln!("train + round trip: {:.1} s", start.elapsed().as_secs_f64());
}

#[test]
fn bad_files_and_a_missed_bar_are_named_errors() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.safetensors");
    let e = Classifier::load(&missing, Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("none.safetensors"), "{e:#}");

    let wrong = dir.path().join("wrong.safetensors");
    Tensor::write_safetensors(
        &[
            ("meta.arch", Tensor::from_slice(b"something else")),
            ("fc1.weight", Tensor::zeros([2, 2], tch::kind::FLOAT_CPU)),
        ],
        &wrong,
    )
    .unwrap();
    let e = format!("{:#}", Classifier::load(&wrong, Device::Cpu).unwrap_err());
    assert!(
        e.contains("wrong.safetensors") && e.contains("something else"),
        "{e}"
    );

    let not_st = dir.path().join("garbage.safetensors");
    std::fs::write(&not_st, b"not a safetensors file").unwrap();
    let e = format!("{:#}", Classifier::load(&not_st, Device::Cpu).unwrap_err());
    assert!(e.contains("garbage.safetensors"), "{e}");

    let train = split(Split::Train, 64);
    let test = split(Split::Test, 100);
    let opts = ClassifierOptions {
        min_accuracy: REQUIRED_TEST_ACCURACY,
        ..quick_options(64, 1)
    };
    let e = Classifier::train(&opts, &train, &test, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("below the required"), "{e:#}");
}
