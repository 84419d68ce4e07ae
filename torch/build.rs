//! Lets the test binaries (the unit tests and the integration tests) find libtorch without
//! `LD_LIBRARY_PATH` (see `libtorch_rpath`).
include!("../tools/build/libtorch_rpath.rs");

fn main() {
    let _ = libtorch_rpath();
}
