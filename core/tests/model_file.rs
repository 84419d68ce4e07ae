//! Model-file round trip and every decoder error, including random corruption and truncation.

mod common;

use common::{model_bytes, random_input, random_params};
use ddpm_core::file::{ModelFile, ModelWriter, FORMAT_VERSION, PREFIX_LEN};
use ddpm_core::host::{HostModel, Path};
use ddpm_core::{Error, ModelConfig, ScheduleConfig, SimpleUNetConfig};
use proptest::prelude::*;

fn small_cfg() -> SimpleUNetConfig {
    SimpleUNetConfig {
        channels: 1,
        height: 6,
        width: 5,
        hidden1: 4,
        hidden2: 6,
    }
}

fn small_file() -> Vec<u8> {
    let cfg = small_cfg();
    model_bytes(
        &cfg,
        ScheduleConfig::cosine(50),
        &random_params(&cfg, 9, 1.0),
    )
}

/// Recomputes the CRC after a deliberate edit, so the decoder reaches the later checks.
fn reseal(bytes: &mut [u8]) {
    let n = bytes.len() - 4;
    let crc = ddpm_core::crc32(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn round_trip() {
    let cfg = small_cfg();
    let params = random_params(&cfg, 9, 1.0);
    let bytes = model_bytes(&cfg, ScheduleConfig::cosine(50), &params);
    let file = ModelFile::parse(&bytes).unwrap();
    assert_eq!(file.header().model, ModelConfig::SimpleUNet(cfg));
    assert_eq!(file.header().schedule, ScheduleConfig::cosine(50));
    assert_eq!(file.header().note, "test model");
    let names: Vec<&str> = file.tensors().map(|t| t.name).collect();
    let expected: Vec<&str> = cfg.tensor_specs().iter().map(|s| s.name).collect();
    assert_eq!(names, expected);
    let mut model = HostModel::from_bytes(&bytes).unwrap();
    assert_eq!(model.params(), &params[..]);
    // The loaded model computes what the in-memory one does, on both paths.
    let x = random_input(cfg.image_len(), 1);
    let mut a = vec![0.0; cfg.image_len()];
    let mut b = vec![0.0; cfg.image_len()];
    model.forward(&x, 0.5, &mut a).unwrap();
    let mut reference = model.clone().with_path(Path::Reference);
    reference.forward(&x, 0.5, &mut b).unwrap();
    assert!(common::rel_err(&a, &b) < 5e-6);
    // Writing the decoded tensors again gives the same bytes.
    let mut w = ModelWriter::new(
        file.header().model,
        file.header().schedule,
        file.header().note,
    );
    for t in file.tensors() {
        w.push_f32(t.name, t.dims(), &t.to_f32_vec().unwrap())
            .unwrap();
    }
    assert_eq!(w.finish(), bytes);
}

#[test]
fn typed_errors() {
    let good = small_file();

    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(ModelFile::parse(&b).unwrap_err(), Error::BadMagic);

    let mut b = good.clone();
    b[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(
        ModelFile::parse(&b).unwrap_err(),
        Error::UnsupportedVersion {
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        }
    );

    assert!(matches!(
        ModelFile::parse(&good[..good.len() - 1]).unwrap_err(),
        Error::Truncated { .. }
    ));
    assert!(matches!(
        ModelFile::parse(&good[..5]).unwrap_err(),
        Error::Truncated { .. }
    ));
    assert!(matches!(
        ModelFile::parse(&[]).unwrap_err(),
        Error::Truncated { .. }
    ));

    let mut b = good.clone();
    b.push(0);
    assert_eq!(
        ModelFile::parse(&b).unwrap_err(),
        Error::TrailingBytes { extra: 1 }
    );

    let mut b = good.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    assert!(matches!(
        ModelFile::parse(&b).unwrap_err(),
        Error::ChecksumMismatch { .. }
    ));

    // A resealed but garbled payload: malformed, not a panic.
    let mut b = good.clone();
    for v in &mut b[PREFIX_LEN..PREFIX_LEN + 8] {
        *v = 0xFF;
    }
    reseal(&mut b);
    assert_eq!(ModelFile::parse(&b).unwrap_err(), Error::Malformed);

    // A well-formed file whose tensor shapes do not match its configuration.
    let cfg = small_cfg();
    let mut w = ModelWriter::new(ModelConfig::SimpleUNet(cfg), ScheduleConfig::default(), "");
    for spec in cfg.tensor_specs() {
        let mut dims = spec.dims;
        if spec.name == "enc2.weight" {
            dims[0] += 1;
        }
        let n: u32 = dims[..spec.rank].iter().product();
        w.push_f32(spec.name, &dims[..spec.rank], &vec![0.0; n as usize])
            .unwrap();
    }
    match HostModel::from_bytes(&w.finish()) {
        Err(Error::ShapeMismatch {
            name: "enc2.weight",
            ..
        }) => {}
        other => panic!("expected a shape mismatch, got {:?}", other.err()),
    }

    // A missing tensor.
    let mut w = ModelWriter::new(ModelConfig::SimpleUNet(cfg), ScheduleConfig::default(), "");
    w.push_f32("enc1.weight", &[4, 1, 3, 3], &[0.0; 36])
        .unwrap();
    match HostModel::from_bytes(&w.finish()) {
        Err(Error::MissingTensor { name: "enc1.bias" }) => {}
        other => panic!("expected a missing tensor, got {:?}", other.err()),
    }

    // A dtype mismatch.
    let mut w = ModelWriter::new(ModelConfig::SimpleUNet(cfg), ScheduleConfig::default(), "");
    w.push_i8("enc1.weight", &[4, 1, 3, 3], &[0; 36]).unwrap();
    match HostModel::from_bytes(&w.finish()) {
        Err(Error::DtypeMismatch {
            name: "enc1.weight",
        }) => {}
        other => panic!("expected a dtype mismatch, got {:?}", other.err()),
    }

    // The writer refuses data that does not match its dims.
    let mut w = ModelWriter::new(ModelConfig::SimpleUNet(cfg), ScheduleConfig::default(), "");
    assert!(w.push_f32("x", &[2, 2], &[0.0; 3]).is_err());
}

#[test]
fn a_tensor_record_lying_about_its_length_is_rejected() {
    // Hand-build a payload whose record claims dims [2] f32 (8 bytes) but carries 4 bytes.
    let header = ddpm_core::file::ModelHeader {
        model: ModelConfig::SimpleUNet(small_cfg()),
        schedule: ScheduleConfig::default(),
        precision: ddpm_core::file::Precision::F32,
        tensor_count: 1,
        note: "",
    };
    let rec = ddpm_core::file::TensorRecord {
        name: "enc1.bias",
        dtype: ddpm_core::file::DType::F32,
        rank: 1,
        dims: [2, 0, 0, 0],
        data: &[0, 0, 0, 0],
    };
    let mut payload = postcard::to_allocvec(&header).unwrap();
    payload.extend(postcard::to_allocvec(&rec).unwrap());
    let mut b = Vec::new();
    b.extend_from_slice(&ddpm_core::file::MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend(payload);
    b.extend_from_slice(&[0; 4]);
    reseal(&mut b);
    assert_eq!(
        ModelFile::parse(&b).unwrap_err(),
        Error::BadTensorLength {
            expected: 8,
            found: 4
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any flipped bytes give an error (almost always the checksum), never a panic.
    #[test]
    fn corruption_is_an_error(edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8)) {
        let mut b = small_file();
        let n = b.len();
        for (at, x) in &edits {
            b[at.index(n)] ^= x;
        }
        prop_assert!(ModelFile::parse(&b).is_err());
    }

    /// Any strict prefix is an error.
    #[test]
    fn truncation_is_an_error(cut in any::<prop::sample::Index>()) {
        let b = small_file();
        let n = cut.index(b.len());
        prop_assert!(ModelFile::parse(&b[..n]).is_err());
    }

    /// Corruption behind a valid checksum (as a buggy writer could produce) decodes to an error
    /// or to a file whose every tensor is self-consistent; loading it never panics.
    #[test]
    fn resealed_corruption_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut b = small_file();
        let n = b.len() - 4;
        for (at, x) in &edits {
            let i = PREFIX_LEN + at.index(n - PREFIX_LEN);
            b[i] = *x;
        }
        reseal(&mut b);
        if let Ok(file) = ModelFile::parse(&b) {
            for t in file.tensors() {
                prop_assert_eq!(t.numel().map(|e| e * t.dtype.size()), Some(t.data.len()));
            }
        }
        let _ = HostModel::from_bytes(&b);
    }
}
