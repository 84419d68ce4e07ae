//! Shared helpers of the equivalence tests: golden-vector loading, the golden noise recipe and
//! named tolerances.

use std::path::{Path, PathBuf};

/// Directory of the golden vectors written by `tools/golden/make_golden.py`.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/golden")
}

/// An f32 or i64 tensor read from a safetensors file, flattened.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// f32 data (i64 tensors are converted).
    pub data: Vec<f32>,
    /// i64 data, for integer tensors.
    pub ints: Vec<i64>,
}

/// Loads every tensor of a safetensors file, by name.
pub fn load_safetensors(path: &Path) -> std::collections::BTreeMap<String, Loaded> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = std::collections::BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let (data, ints) = match view.dtype() {
            safetensors::Dtype::F32 => (
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Vec::new(),
            ),
            safetensors::Dtype::I64 => {
                let ints: Vec<i64> = raw
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                (ints.iter().map(|&v| v as f32).collect(), ints)
            }
            other => panic!("{}: unexpected dtype {other:?} for {name}", path.display()),
        };
        out.insert(
            name.to_string(),
            Loaded {
                shape: view.shape().to_vec(),
                data,
                ints,
            },
        );
    }
    out
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The golden trajectory's noise (see `tools/golden/make_golden.py`): value `i` of stream `s` is
/// the sum of 12 uniforms minus 6, each uniform 24 bits of SplitMix64, exact in f64 and rounded
/// once to f32.
pub fn golden_noise(stream: u64, n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let acc: u64 = (0..16u64)
                .take(12)
                .map(|j| splitmix64((stream << 32) + i * 16 + j) >> 40)
                .sum();
            (acc as f64 * (1.0 / 16_777_216.0) - 6.0) as f32
        })
        .collect()
}

/// max |a − b| / max |b|; infinite on NaN/inf or a length mismatch, so a broken
/// implementation can never pass.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.iter().chain(b).any(|v| !v.is_finite()) {
        return f32::INFINITY;
    }
    let scale = b
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}
