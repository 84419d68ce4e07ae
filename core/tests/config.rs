//! The configurations' sizes, validation and wire encodings: parameter and multiply-add
//! counts, and the bytes each configuration writes in a model file's header, including the
//! forms files written before later fields existed still decode from.

extern crate alloc;

use ddpm_core::nets::tiny_unet::TINY_MAX_MID_BLOCKS;
use ddpm_core::{ModelConfig, Prediction, ScheduleConfig, SimpleUNetConfig, TinyUNetConfig};
#[test]
fn seed_sizes() {
    let c = SimpleUNetConfig::SEED;
    // enc1 640 + enc2 73,856 + dec1 73,792 + dec2 577 + time MLP 256 + 16,512.
    assert_eq!(c.param_count(), 165_633);
    // 784 pixels · 9 taps · (64 + 8192 + 8192 + 64) channel pairs, plus the time MLP.
    assert_eq!(c.macs(), 116_508_672 + 128 + 16_384);
    assert_eq!(c.image_len(), 784);
    assert!(c.validate().is_ok());
    let bad = SimpleUNetConfig { hidden1: 0, ..c };
    assert!(bad.validate().is_err());
    let huge = SimpleUNetConfig {
        height: 4096,
        width: 4096,
        ..c
    };
    assert!(huge.validate().is_err());
}

#[test]
fn tiny_sizes() {
    let c = TinyUNetConfig::DEFAULT;
    // time MLP 32·64 + 64 + 64·64 + 64 = 6,272; convs enc0 320, down1 18,496, down2 36,928,
    // mid 36,928, up2 73,792, up1 27,680, out 289 = 194,433; projections 64·320 + 320 =
    // 20,800.
    assert_eq!(c.param_count(), 6_272 + 194_433 + 20_800);
    assert_eq!(c.param_count(), 221_505);
    // int8 weights (one byte each) fit 256 KB.
    assert!(c.param_count() <= 250_000);
    let m = ModelConfig::TinyUNet(c);
    assert_eq!(m.tensor_specs().len(), 30);
    assert_eq!(
        m.tensor_specs().iter().map(|s| s.numel()).sum::<usize>(),
        221_505
    );
    assert!(c.validate().is_ok());
    // 784·9·(32 + 32·96) + 196·9·(32·64 + 128·64) + 49·9·(64·64·2) + 784·9·32 and the
    // time MLP and projections.
    let convs = 9 * (784 * 32 + 196 * 32 * 64 + 49 * 64 * 64 * 2 + 196 * 128 * 64)
        + 9 * (784 * 96 * 32 + 784 * 32);
    assert_eq!(c.macs(), convs + 32 * 64 + 64 * 64 + 64 * 320);
    // Live int8 bytes per layer; the peak is at up1: s1 25,088 + u2 12,544 + u1 25,088.
    assert_eq!(
        c.int8_live_bytes(),
        [25_872, 37_632, 40_768, 43_904, 53_312, 62_720, 25_088]
    );
    assert_eq!(c.int8_peak_activation_bytes(), 62_720);
    for bad in [
        TinyUNetConfig { height: 30, ..c },
        TinyUNetConfig { emb_dim: 31, ..c },
        TinyUNetConfig { emb_dim: 2, ..c },
        TinyUNetConfig {
            widths: [32, 0, 64],
            ..c
        },
        TinyUNetConfig { temb_dim: 0, ..c },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn simple_unet_files_still_decode_after_tiny_unet_was_added() {
    // postcard writes an enum as its variant index; SimpleUNet stays variant 0, so the
    // bytes a file written before TinyUNet existed holds decode to the same value.
    let old = ModelConfig::SimpleUNet(SimpleUNetConfig::SEED);
    let bytes = postcard::to_allocvec(&old).unwrap();
    assert_eq!(bytes[0], 0);
    // Then the five u32 sizes as varints (128 takes two bytes: 0x80 0x01).
    assert_eq!(bytes[1..], [1, 28, 28, 64, 0x80, 0x01]);
    assert_eq!(postcard::from_bytes::<ModelConfig>(&bytes).unwrap(), old);
    let tiny = ModelConfig::TinyUNet(TinyUNetConfig::DEFAULT);
    let bytes = postcard::to_allocvec(&tiny).unwrap();
    // A one-mid-block TinyUNet keeps the bytes written before `mid_blocks` existed:
    // variant 1, then c, h, w, the three widths, E and D.
    assert_eq!(bytes, [1, 1, 28, 28, 32, 64, 64, 32, 64]);
    assert_eq!(postcard::from_bytes::<ModelConfig>(&bytes).unwrap(), tiny);
}

#[test]
fn eps_schedules_keep_their_bytes_and_v_has_its_own_variant() {
    // Before `prediction` existed a schedule was written as the kind's variant, its two
    // f64 fields, then T; ε-predicting schedules still are.
    let cos = ScheduleConfig::cosine(300);
    let bytes = postcard::to_allocvec(&cos).unwrap();
    let mut want = alloc::vec![1u8];
    want.extend_from_slice(&0.008f64.to_le_bytes());
    want.extend_from_slice(&0.999f64.to_le_bytes());
    want.extend_from_slice(&[0xAC, 0x02]); // 300 as a varint
    assert_eq!(bytes, want);
    assert_eq!(postcard::from_bytes::<ScheduleConfig>(&bytes).unwrap(), cos);
    let lin = ScheduleConfig::default();
    let bytes = postcard::to_allocvec(&lin).unwrap();
    assert_eq!((bytes[0], bytes.len()), (0, 1 + 8 + 8 + 2));
    assert_eq!(postcard::from_bytes::<ScheduleConfig>(&bytes).unwrap(), lin);
    // v: variant 2, the original kind (variant and fields), the prediction's variant, T.
    let v = cos.predicting(Prediction::V);
    let bytes = postcard::to_allocvec(&v).unwrap();
    let mut want = alloc::vec![2u8, 1];
    want.extend_from_slice(&0.008f64.to_le_bytes());
    want.extend_from_slice(&0.999f64.to_le_bytes());
    want.extend_from_slice(&[1, 0xAC, 0x02]);
    assert_eq!(bytes, want);
    assert_eq!(postcard::from_bytes::<ScheduleConfig>(&bytes).unwrap(), v);
    // Variant 2 with ε decodes too (a reader accepts both spellings of ε).
    let mut eps = bytes.clone();
    eps[18] = 0;
    assert_eq!(postcard::from_bytes::<ScheduleConfig>(&eps).unwrap(), cos);
    // An unknown prediction is refused.
    let mut bad = bytes;
    bad[18] = 2;
    assert!(postcard::from_bytes::<ScheduleConfig>(&bad).is_err());
}

#[test]
fn deeper_tiny_unets_have_their_own_variant() {
    let deep = ModelConfig::TinyUNet(TinyUNetConfig {
        widths: [32, 64, 56],
        mid_blocks: 3,
        ..TinyUNetConfig::DEFAULT
    });
    let bytes = postcard::to_allocvec(&deep).unwrap();
    // Variant 2, then the fields in declaration order, mid_blocks after the widths.
    assert_eq!(bytes, [2, 1, 28, 28, 32, 64, 56, 3, 32, 64]);
    assert_eq!(postcard::from_bytes::<ModelConfig>(&bytes).unwrap(), deep);
    // A reader of this version also takes variant 2 with one mid block.
    let mut one = bytes.clone();
    one[7] = 1;
    assert_eq!(
        postcard::from_bytes::<ModelConfig>(&one).unwrap(),
        ModelConfig::TinyUNet(TinyUNetConfig {
            widths: [32, 64, 56],
            ..TinyUNetConfig::DEFAULT
        })
    );
}

#[test]
fn mid_blocks_add_tensors_parameters_and_work() {
    let one = TinyUNetConfig::DEFAULT;
    for mids in 2..=TINY_MAX_MID_BLOCKS as u32 {
        let c = TinyUNetConfig {
            mid_blocks: mids,
            ..one
        };
        assert!(c.validate().is_ok());
        let extra = (mids - 1) as usize;
        assert_eq!(c.tensor_count(), 30 + 4 * extra);
        assert_eq!(c.tensor_specs().len(), c.tensor_count());
        // Each: conv 64·64·9 + 64, projection 64·64 + 64.
        assert_eq!(
            c.param_count(),
            one.param_count() + extra * (36_864 + 64 + 4_096 + 64)
        );
        assert_eq!(
            c.macs(),
            one.macs() + extra as u64 * (49 * 9 * 64 * 64 + 64 * 64)
        );
        assert_eq!(c.workspace_len(), one.workspace_len() + extra * 64 * 49);
        // mid1 … follow mid in forward order, then up2.
        let names: alloc::vec::Vec<&str> = c.tensor_specs().iter().map(|s| s.name).collect();
        let at = names.iter().position(|n| *n == "mid.weight").unwrap();
        assert_eq!(names[at + 4], "mid1.weight");
        assert_eq!(names[at + 4 * mids as usize], "up2.weight");
    }
    for bad in [0, TINY_MAX_MID_BLOCKS as u32 + 1] {
        let c = TinyUNetConfig {
            mid_blocks: bad,
            ..one
        };
        assert!(c.validate().is_err(), "{bad} mid blocks");
    }
}
