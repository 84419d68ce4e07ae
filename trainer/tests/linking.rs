//! The `trainer` binary must find libtorch without `LD_LIBRARY_PATH` and, when the libtorch it
//! was built against ships CUDA, really depend on libtorch_cuda (so `--device cuda` works).
use std::path::Path;
use std::process::Command;

fn dynamic_section(bin: &str) -> String {
    let out = Command::new("readelf")
        .args(["-d", bin])
        .output()
        .expect("running readelf (binutils) on the trainer binary");
    assert!(out.status.success(), "readelf -d {bin} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn binary_embeds_libtorch_run_path_and_links_cuda_when_present() {
    let bin = env!("CARGO_BIN_EXE_trainer");
    let lib_dir = env!("DDPM_TRAINER_LIBTORCH_LIB");
    let dynamic = dynamic_section(bin);
    let run_path = dynamic
        .lines()
        .find(|l| l.contains("(RUNPATH)") || l.contains("(RPATH)"))
        .unwrap_or_else(|| panic!("no RPATH/RUNPATH in {bin}:\n{dynamic}"));
    assert!(
        run_path.contains(lib_dir),
        "run path of {bin} does not name {lib_dir}: {run_path}"
    );
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(
        needed.iter().any(|l| l.contains("libtorch_cpu.so")),
        "libtorch_cpu.so not NEEDED by {bin}:\n{dynamic}"
    );
    if Path::new(lib_dir).join("libtorch_cuda.so").exists() {
        assert!(
            needed.iter().any(|l| l.contains("[libtorch_cuda.so]")),
            "{lib_dir} has libtorch_cuda.so but {bin} does not NEED it:\n{dynamic}"
        );
    }
}

#[test]
fn binary_starts_without_the_loader_path_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("--help")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("starting the trainer binary");
    assert!(
        out.status.success(),
        "trainer --help failed without LD_LIBRARY_PATH: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
