//! Feeds arbitrary bytes to the model-file decoder and the weight loader: any input must give
//! `Ok` or a typed error, never a panic, and a file that decodes must have self-consistent
//! tensors. Run: `cargo +nightly fuzz run model_file -- -max_total_time=60`.
#![no_main]

use ddpm_core::file::ModelFile;
use ddpm_core::host::HostModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = ModelFile::parse(data) {
        for t in file.tensors() {
            let n = t.numel().expect("parse checked the element count");
            assert_eq!(n * t.dtype.size(), t.data.len());
        }
    }
    // The loader checks shapes before allocating, so this cannot ask for unbounded memory.
    let _ = HostModel::from_bytes(data);
});
