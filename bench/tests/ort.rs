//! `bench-cpu --ort` runs ONNX Runtime on the ONNX export of the same network and weights, and
//! refuses to time it unless its forward pass equals the core's within `ORT_REL_BOUND`
//! (bench/src/main.rs): a short run on both committed networks checks the export, the
//! companion script's protocol and that bound (needs the venv's onnxruntime: tools/setup.sh).
use std::path::Path;
use std::process::Command;

fn bench(model: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_bench-cpu"))
        .current_dir(&root)
        .args([
            "--model", model, "--ort", "--iters", "2", "--burst", "2", "--warmup", "1",
        ])
        .args(["--threads", "1,2", "--no-progress"])
        .output()
        .expect("bench-cpu runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bench-cpu --ort on {model} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn onnx_runtime_computes_what_the_core_computes_on_both_networks() {
    for model in [
        "models/simple_unet_mnist.ddpm",
        "models/tiny_unet_mnist.ddpm",
    ] {
        let text = bench(model);
        assert!(text.contains("ONNX Runtime: onnxruntime 1.32.0"), "{text}");
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("| forward"))
            .collect();
        assert_eq!(rows.len(), 4, "two cases × two thread counts:\n{text}");
        for row in rows {
            // The last column: libtorch's and ONNX Runtime's max relative differences.
            let last = row.trim_end_matches(" |").rsplit(" | ").next().unwrap();
            let ort: f64 = last.split(", ").nth(1).unwrap().parse().unwrap();
            assert!(ort <= 1e-4, "{model}: {row}");
        }
    }
}
