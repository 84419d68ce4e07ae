//! The test binaries find libtorch through the run path build.rs embeds, not through
//! `LD_LIBRARY_PATH`, so `cargo test -p ddpm-equivalence` works in a plain shell. (Linux: the
//! check reads the ELF dynamic section.)
#![cfg(target_os = "linux")]

#[test]
fn test_binary_embeds_the_libtorch_run_path() {
    let lib_dir = env!("DDPM_EQUIVALENCE_LIBTORCH_LIB");
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("readelf")
        .arg("-d")
        .arg(&exe)
        .output()
        .expect("running readelf (binutils) on the test binary");
    assert!(
        out.status.success(),
        "readelf -d {}: {out:?}",
        exe.display()
    );
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let run_path = dynamic
        .lines()
        .find(|l| l.contains("(RUNPATH)") || l.contains("(RPATH)"))
        .unwrap_or_else(|| panic!("no RPATH/RUNPATH in {}:\n{dynamic}", exe.display()));
    assert!(
        run_path.contains(lib_dir),
        "run path of {} does not name {lib_dir}: {run_path}",
        exe.display()
    );
    // And libtorch really is loaded from there: a tensor operation runs.
    assert_eq!(
        tch::Tensor::from_slice(&[1.0f32, 2.0])
            .sum(tch::Kind::Float)
            .double_value(&[]),
        3.0
    );
}
