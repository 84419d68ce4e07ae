//! Lets the test binaries (the integration tests and the library's unit-test binary) find
//! libtorch without `LD_LIBRARY_PATH` (see `libtorch_rpath`), and tells them where it is.
include!("../tools/build/libtorch_rpath.rs");

fn main() {
    if let Some((dir, _)) = libtorch_rpath() {
        println!(
            "cargo:rustc-env=DDPM_EQUIVALENCE_LIBTORCH_LIB={}",
            dir.display()
        );
    }
}
