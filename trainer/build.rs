//! Makes the `trainer` binary (and the package's tests) find libtorch without `LD_LIBRARY_PATH`,
//! and links libtorch_cuda for real when the libtorch in use ships it.
//!
//! torch-sys (`links = "tch"`) exports its libtorch lib directory to direct dependents as
//! `DEP_TCH_LIBTORCH_LIB`. We embed that directory as a run path and, when `libtorch_cuda.so` is
//! there, link it with `--no-as-needed`: nothing in our code references a CUDA symbol, so the
//! default `--as-needed` would drop it and `tch::Cuda::is_available()` would always say false.
include!("../tools/build/libtorch_rpath.rs");

fn main() {
    let Some((lib_dir, target_os)) = libtorch_rpath() else {
        return;
    };
    let dir = lib_dir.display();
    // Lets the tests find the directory the binary was linked against.
    println!("cargo:rustc-env=DDPM_TRAINER_LIBTORCH_LIB={dir}");
    let cuda = lib_dir.join("libtorch_cuda.so");
    if target_os == "linux" && cuda.exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg={}", cuda.display());
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
