//! Like `model_file`, but first rewrites the length field and the CRC-32 so that mutated inputs
//! get past the checksum and exercise the postcard decoding, record validation and shape checks
//! behind it (what a buggy writer, rather than a damaged file, would produce).
#![no_main]

use ddpm_core::file::{ModelFile, PREFIX_LEN, SUFFIX_LEN};
use ddpm_core::host::HostModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < PREFIX_LEN + SUFFIX_LEN {
        return;
    }
    let mut bytes = data.to_vec();
    let body_end = bytes.len() - SUFFIX_LEN;
    let payload_len = (body_end - PREFIX_LEN) as u32;
    bytes[10..14].copy_from_slice(&payload_len.to_le_bytes());
    let crc = ddpm_core::crc32(&bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&crc.to_le_bytes());
    if let Ok(file) = ModelFile::parse(&bytes) {
        for t in file.tensors() {
            let n = t.numel().expect("parse checked the element count");
            assert_eq!(n * t.dtype.size(), t.data.len());
        }
    }
    let _ = HostModel::from_bytes(&bytes);
});
