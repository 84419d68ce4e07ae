//! Lets `bench-cpu` find libtorch without `LD_LIBRARY_PATH`.
//!
//! torch-sys (`links = "tch"`) exports its libtorch lib directory only to packages that depend
//! on it directly, as `DEP_TCH_LIBTORCH_LIB`; this package does, so it embeds that directory as
//! a run path in the binary.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        // torch-sys only exports the directory on Linux and macOS.
        println!("cargo:warning=torch-sys did not export its libtorch lib dir; no rpath embedded");
        return;
    };
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" && target_os != "macos" {
        return;
    }
    let dir = std::path::PathBuf::from(lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
