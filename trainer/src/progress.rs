//! Progress bars on stderr, shown only when it is a terminal.
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether to show progress: not asked off (`--no-progress`) and stderr is a terminal.
pub fn wanted(no_progress: bool) -> bool {
    !no_progress && std::io::stderr().is_terminal()
}

/// A bar of `len` `unit`s with elapsed time and ETA when `show` and stderr is a terminal,
/// else a hidden one.
pub fn bar(len: u64, show: bool, unit: &str) -> ProgressBar {
    if !(show && std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} {unit} [{{elapsed_precise}}<{{eta_precise}}]"
        ))
        .expect("valid progress template"),
    );
    b
}
