// Shared by the build scripts of the packages that depend on torch-sys directly (`include!`d,
// not a crate of its own).
//
// torch-sys (`links = "tch"`) exports its libtorch lib directory only to packages that depend
// on it directly, as `DEP_TCH_LIBTORCH_LIB`. `libtorch_rpath` embeds that directory as a run
// path in everything the package links, so that its binaries find libtorch without
// `LD_LIBRARY_PATH`, and returns it with the target OS; `None` when torch-sys did not export it
// (it does so on Linux and macOS only) or the target is neither.

/// Embeds libtorch's lib directory as a run path; returns it and the target OS.
fn libtorch_rpath() -> Option<(std::path::PathBuf, String)> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(std::path::PathBuf::from)
    else {
        println!("cargo:warning=torch-sys did not export its libtorch lib dir; no rpath embedded");
        return None;
    };
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" && target_os != "macos" {
        return None;
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    Some((lib_dir, target_os))
}
