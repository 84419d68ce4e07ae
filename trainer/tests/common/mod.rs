//! Helpers shared by the trainer's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// libtorch's generator and thread count are process-wide: tests that create weights, train or
/// set threads run one at a time.
static TORCH: Mutex<()> = Mutex::new(());

/// The turn of a test that touches libtorch's process-wide state (a failed test does not
/// poison it for the others).
pub fn lock() -> MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// The MNIST IDX files beside the repository (`../shared/data/mnist`).
pub fn shared_mnist() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist");
    assert!(
        dir.is_dir(),
        "{} missing: the tests read the shared MNIST files",
        dir.display()
    );
    dir
}

/// The repository root, where the trainer runs in these tests.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `trainer ARGS` in the repository root.
pub fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap()
}

/// Standard error of a run that must fail, checked to fail without a panic.
pub fn refused(args: &[&str]) -> String {
    let out = trainer(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    err
}
