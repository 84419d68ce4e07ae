//! Model-file round trip and every decoder error, including random corruption and truncation.

mod common;

use common::{model_bytes, random_input, random_params};
use ddpm_core::diffusion::{DdimConfig, DdpmConfig, DdpmVariance, SamplerConfig, Spacing};
use ddpm_core::file::{
    Guide, ModelFile, ModelWriter, Recipe, FORMAT_VERSION, FORMAT_VERSION_V1, PREFIX_LEN,
};
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
        recipe: ddpm_core::file::Recipe::LEGACY,
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

/// A file written by the format-1 writer (before recipes; `core/tests/data/model_v1.ddpm`:
/// the 6×5 SimpleUNet of `small_cfg`, cosine T = 50, weights ((i·7 mod 13) − 6)/8 per
/// tensor) still reads, with the legacy recipe, and its tensors are what that writer stored.
#[test]
fn a_version_1_file_reads_with_the_legacy_recipe() {
    let bytes = include_bytes!("data/model_v1.ddpm");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), FORMAT_VERSION_V1);
    let file = ModelFile::parse(bytes).unwrap();
    let h = file.header();
    assert_eq!(h.model, ModelConfig::SimpleUNet(small_cfg()));
    assert_eq!(h.schedule, ScheduleConfig::cosine(50));
    assert_eq!(h.note, "format version 1");
    assert_eq!(h.recipe, Recipe::LEGACY);
    assert_eq!(
        h.recipe.sampler,
        SamplerConfig::Ddpm(DdpmConfig {
            variance: DdpmVariance::FixedLarge,
            clip_x0: false
        })
    );
    assert_eq!(h.recipe.guide, None);
    let specs = small_cfg().tensor_specs();
    assert_eq!(file.tensors().count(), specs.len());
    for spec in specs.iter() {
        let t = file.tensor(spec.name).unwrap();
        let want: Vec<f32> = (0..t.numel().unwrap())
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
            .collect();
        assert_eq!(t.to_f32_vec().unwrap(), want, "{}", spec.name);
    }
    // Written again, it becomes a version-2 file with the same header, recipe and tensors.
    let mut w = ModelWriter::new(h.model, h.schedule, h.note).with_recipe(&h.recipe);
    for t in file.tensors() {
        w.push_f32(t.name, t.dims(), &t.to_f32_vec().unwrap())
            .unwrap();
    }
    let again = w.finish();
    assert_eq!(u16::from_le_bytes([again[8], again[9]]), FORMAT_VERSION);
    let f2 = ModelFile::parse(&again).unwrap();
    assert_eq!(f2.header().recipe, Recipe::LEGACY);
    assert!(file.tensors().eq(f2.tensors()));
    // So does a copy, and a copy with another note and recipe changes only those.
    let copy = ModelWriter::copy_of(&file).unwrap().finish();
    assert_eq!(copy, again);
    let tiny = Recipe::for_model(
        &ModelConfig::TinyUNet(ddpm_core::TinyUNetConfig::DEFAULT),
        &ScheduleConfig::cosine(50),
    );
    let edited = ModelWriter::copy_of(&file)
        .unwrap()
        .with_note("edited")
        .with_recipe(&tiny)
        .finish();
    let f3 = ModelFile::parse(&edited).unwrap();
    assert_eq!(f3.header().note, "edited");
    assert_eq!(f3.header().recipe, tiny);
    assert_eq!(f3.header().model, h.model);
    assert_eq!(f3.header().precision, h.precision);
    assert!(file.tensors().eq(f3.tensors()));
}

#[test]
fn the_recipe_round_trips() {
    let cfg = small_cfg();
    let params = random_params(&cfg, 9, 1.0);
    let recipes = [
        Recipe::LEGACY,
        Recipe {
            sampler: SamplerConfig::Ddpm(DdpmConfig {
                variance: DdpmVariance::FixedSmall,
                clip_x0: true,
            }),
            guide: None,
        },
        Recipe {
            sampler: SamplerConfig::Ddim(DdimConfig {
                steps: 17,
                eta: 0.25,
                spacing: Spacing::Trailing,
                clip_x0: true,
                recompute_eps: true,
            }),
            guide: Some(Guide {
                file: "weights/guide.ddpm",
                weight: 2.5,
            }),
        },
    ];
    for recipe in recipes {
        let mut w = ModelWriter::new(
            ModelConfig::SimpleUNet(cfg),
            ScheduleConfig::cosine(50),
            "r",
        )
        .with_recipe(&recipe);
        let mut at = 0;
        for spec in cfg.tensor_specs().iter() {
            let n = spec.numel();
            w.push_f32(spec.name, spec.dims(), &params[at..at + n])
                .unwrap();
            at += n;
        }
        let bytes = w.finish();
        assert_eq!(ModelFile::parse(&bytes).unwrap().header().recipe, recipe);
    }
}

#[test]
fn new_files_get_their_architecture_s_recipe() {
    let simple = ModelConfig::SimpleUNet(small_cfg());
    let t300 = ScheduleConfig::cosine(300);
    assert_eq!(Recipe::for_model(&simple, &t300), Recipe::LEGACY);
    let tiny = ModelConfig::TinyUNet(ddpm_core::TinyUNetConfig::DEFAULT);
    let ddim = |steps| {
        SamplerConfig::Ddim(DdimConfig {
            steps,
            eta: 1.0,
            spacing: Spacing::Leading,
            clip_x0: true,
            recompute_eps: true,
        })
    };
    assert_eq!(Recipe::for_model(&tiny, &t300).sampler, ddim(50));
    // Fewer than 50 training steps: DDIM over all of them.
    let t40 = ScheduleConfig::cosine(40);
    assert_eq!(Recipe::for_model(&tiny, &t40).sampler, ddim(40));
    assert!(Recipe::for_model(&tiny, &t40).check(40).is_ok());
    let bytes = small_file();
    assert_eq!(
        ModelFile::parse(&bytes).unwrap().header().recipe,
        Recipe::LEGACY
    );
}

#[test]
fn a_recipe_the_schedule_cannot_run_or_naming_an_outside_guide_is_rejected() {
    let ddim = |steps, eta| Recipe {
        sampler: SamplerConfig::Ddim(DdimConfig {
            steps,
            eta,
            ..DdimConfig::default()
        }),
        guide: None,
    };
    let guided = |file, weight| Recipe {
        guide: Some(Guide { file, weight }),
        ..Recipe::LEGACY
    };
    assert!(ddim(50, 0.0).check(50).is_ok());
    assert!(ddim(1, 1.0).check(50).is_ok());
    assert!(guided("g.ddpm", 2.0).check(50).is_ok());
    assert!(guided("sub/g.ddpm", -1.0).check(50).is_ok());
    for bad in [
        ddim(0, 0.0),
        ddim(51, 0.0),
        ddim(10, 1.5),
        ddim(10, f32::NAN),
        guided("g.ddpm", f32::INFINITY),
        guided("", 2.0),
        guided("/etc/g.ddpm", 2.0),
        guided("../g.ddpm", 2.0),
        guided("a/../g.ddpm", 2.0),
        guided("C:\\g.ddpm", 2.0),
        guided("a//g.ddpm", 2.0),
    ] {
        assert!(
            matches!(bad.check(50), Err(Error::InvalidConfig(_))),
            "{bad:?} accepted"
        );
        // The writer writes it, and the decoder refuses the file.
        let bytes = ModelWriter::new(
            ModelConfig::SimpleUNet(small_cfg()),
            ScheduleConfig::cosine(50),
            "",
        )
        .with_recipe(&bad)
        .finish();
        assert!(
            matches!(ModelFile::parse(&bytes), Err(Error::InvalidConfig(_))),
            "{bad:?} decoded"
        );
    }
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
