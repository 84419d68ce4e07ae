//! Makes the `trainer` binary (and the package's tests) find libtorch without `LD_LIBRARY_PATH`,
//! and links libtorch_cuda for real when the libtorch in use ships it.
//!
//! torch-sys (`links = "tch"`) exports its libtorch lib directory to direct dependents as
//! `DEP_TCH_LIBTORCH_LIB`. We embed that directory as a run path and, when `libtorch_cuda.so` is
//! there, link it with `--no-as-needed`: nothing in our code references a CUDA symbol, so the
//! default `--as-needed` would drop it and `tch::Cuda::is_available()` would always say false.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        // torch-sys only exports the directory on Linux and macOS.
        println!("cargo:warning=torch-sys did not export its libtorch lib dir; no rpath embedded");
        return;
    };
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" && target_os != "macos" {
        return;
    }
    let dir = lib_dir.display();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    // Lets the tests find the directory the binary was linked against.
    println!("cargo:rustc-env=DDPM_TRAINER_LIBTORCH_LIB={dir}");
    let cuda = lib_dir.join("libtorch_cuda.so");
    if target_os == "linux" && cuda.exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg={}", cuda.display());
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
