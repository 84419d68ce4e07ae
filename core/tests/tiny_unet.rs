//! TinyUNet: the fast path against the reference loops, the model-file round trip through
//! `HostModel`, samplers on both paths, and SimpleUNet files still loading.

mod common;

#[cfg(feature = "threads")]
use common::single_runs;
use common::{assert_batch_equals_single, model_bytes, random_input, random_params, rel_err};
use ddpm_core::diffusion::{self, DdimConfig, GuidanceInterval, SamplerConfig};
use ddpm_core::file::ModelFile;
use ddpm_core::host::{HostModel, Path};
use ddpm_core::{
    tiny_unet::FastTinyUNet, ModelConfig, Schedule, ScheduleConfig, SimpleUNetConfig,
    TinyReferenceDenoiser, TinyUNet, TinyUNetConfig,
};

/// Largest |fast − reference| relative to the largest |reference| output. As for SimpleUNet
/// (core/tests/fast_path.rs, bound 5e-6), both paths sum the same f32 products in different
/// orders over at most 9·(w3 + w2) = 1152 terms per output (up2 with the default widths), and
/// the fast path's up-sampling blocks sum up to four weights before multiplying; the time
/// embedding and projections are the same loops on both paths. Measured worst over these
/// cases: 1.7e-6 (SimpleUNet's: 2.2e-6); the bound is the SimpleUNet one, 3× that.
const FAST_VS_REFERENCE: f32 = 5e-6;

fn check(cfg: TinyUNetConfig, seed: u64, scale: f32) -> f32 {
    let params = random_params(&cfg, seed, scale);
    let net = TinyUNet::from_flat(cfg, &params).unwrap();
    let mut ws = vec![0.0; cfg.workspace_len()];
    let mut worst = 0.0f32;
    // The AVX2 + FMA kernel (where the CPU has it) and the portable one.
    for mut fast in [FastTinyUNet::new(&net), FastTinyUNet::portable(&net)] {
        for (i, t_in) in [0.0f32, 0.37, 299.0 / 300.0].into_iter().enumerate() {
            let x = random_input(cfg.image_len(), seed * 10 + i as u64);
            let mut reference = vec![0.0; cfg.image_len()];
            let mut got = vec![0.0; cfg.image_len()];
            net.forward_reference(&x, t_in, &mut ws, &mut reference)
                .unwrap();
            fast.forward(&x, t_in, &mut got).unwrap();
            let e = rel_err(&got, &reference);
            assert!(
                e <= FAST_VS_REFERENCE,
                "cfg {cfg:?} seed {seed} scale {scale} t {t_in}: {e}"
            );
            // The output depends on the input and is not trivially zero.
            assert!(reference.iter().any(|v| v.abs() > 1e-6), "{cfg:?}");
            worst = worst.max(e);
        }
    }
    worst
}

#[test]
fn fast_path_matches_reference() {
    let mut worst = 0.0f32;
    for (seed, scale) in [(1, 1.0), (2, 0.1), (3, 10.0)] {
        worst = worst.max(check(TinyUNetConfig::DEFAULT, seed, scale));
    }
    let others = [
        // Three channels, 32×32, widths across the Winograd threshold (16 channels).
        TinyUNetConfig {
            channels: 3,
            height: 32,
            width: 32,
            widths: [8, 16, 24],
            mid_blocks: 2,
            emb_dim: 16,
            temb_dim: 8,
            classes: 0,
        },
        // Non-square, narrow widths (direct last layer, GEMM everywhere else).
        TinyUNetConfig {
            channels: 2,
            height: 8,
            width: 12,
            widths: [3, 2, 5],
            mid_blocks: 3,
            emb_dim: 4,
            temb_dim: 3,
            classes: 0,
        },
        // The smallest image: 4×4 → 2×2 → 1×1.
        TinyUNetConfig {
            channels: 1,
            height: 4,
            width: 4,
            widths: [1, 1, 1],
            mid_blocks: 4,
            emb_dim: 4,
            temb_dim: 1,
            classes: 0,
        },
    ];
    for (i, cfg) in others.into_iter().enumerate() {
        worst = worst.max(check(cfg, 100 + i as u64, 1.0));
    }
    println!("TinyUNet fast vs reference: worst {worst:.3e} (bound {FAST_VS_REFERENCE:.0e})");
}

/// Configurations for the batch and thread tests: the default network (28 rows: a layer
/// splits over up to 7 threads), three channels at 32×32, and a narrow non-square one.
fn batch_configs() -> [TinyUNetConfig; 3] {
    [
        TinyUNetConfig::DEFAULT,
        TinyUNetConfig {
            channels: 3,
            height: 32,
            width: 32,
            widths: [8, 16, 24],
            mid_blocks: 2,
            emb_dim: 16,
            temb_dim: 8,
            classes: 0,
        },
        TinyUNetConfig {
            channels: 2,
            height: 8,
            width: 12,
            widths: [3, 2, 5],
            mid_blocks: 3,
            emb_dim: 4,
            temb_dim: 3,
            classes: 0,
        },
    ]
}

/// A batch gives each image's single-image result bit for bit, also for a smaller batch after
/// a larger one (scratch already grown).
/// A class-conditional network: the fast path (AVX2 and portable) equals the reference for
/// every label within [`FAST_VS_REFERENCE`] (the class row is one f32 addition per temb
/// element, the same on both paths), and `HostModel::set_class` reaches both paths; classes
/// out of range are refused.
#[test]
fn conditional_fast_path_matches_reference_per_class() {
    let cfg = TinyUNetConfig {
        classes: 10,
        ..TinyUNetConfig::DEFAULT
    };
    let params = random_params(&cfg, 4, 1.0);
    let net = TinyUNet::from_flat(cfg, &params).unwrap();
    let mut ws = vec![0.0; cfg.workspace_len()];
    let x = random_input(cfg.image_len(), 77);
    let mut host = HostModel::from_params(cfg, ScheduleConfig::default(), params.clone()).unwrap();
    let mut by_class = Vec::new();
    for k in [Some(0), Some(4), Some(9), None] {
        let labelled = net.with_class(k).unwrap();
        let mut reference = vec![0.0; cfg.image_len()];
        labelled
            .forward_reference(&x, 0.5, &mut ws, &mut reference)
            .unwrap();
        for mut fast in [FastTinyUNet::new(&net), FastTinyUNet::portable(&net)] {
            fast.set_class(k).unwrap();
            let mut got = vec![0.0; cfg.image_len()];
            fast.forward(&x, 0.5, &mut got).unwrap();
            let e = rel_err(&got, &reference);
            assert!(e <= FAST_VS_REFERENCE, "class {k:?}: {e}");
        }
        for path in [Path::Reference, Path::Fast] {
            let mut h = host.clone().with_path(path);
            h.set_class(k).unwrap();
            let mut got = vec![0.0; cfg.image_len()];
            h.forward(&x, 0.5, &mut got).unwrap();
            assert!(
                rel_err(&got, &reference) <= FAST_VS_REFERENCE,
                "{path:?} {k:?}"
            );
        }
        by_class.push(reference);
    }
    assert_ne!(by_class[0], by_class[1], "the class changes the output");
    assert!(host.set_class(Some(10)).is_err());
    let plain = TinyUNetConfig::DEFAULT;
    let mut h = HostModel::from_params(
        plain,
        ScheduleConfig::default(),
        random_params(&plain, 4, 1.0),
    )
    .unwrap();
    assert!(h.set_class(Some(0)).is_err());
}

/// A conditional model's file says so (its header decodes to the same configuration) and
/// carries `class_emb.weight`; an unconditional one keeps the encoding files had before
/// classes existed, so old files and the pinned checksums are unchanged.
#[test]
fn conditional_model_file_round_trip() {
    let cfg = TinyUNetConfig {
        classes: 10,
        ..SMALL
    };
    let bytes = model_bytes(
        &cfg,
        ScheduleConfig::default(),
        &random_params(&cfg, 2, 1.0),
    );
    let file = ModelFile::parse(&bytes).unwrap();
    assert_eq!(file.header().model, ModelConfig::TinyUNet(cfg));
    let t = file.tensor("class_emb.weight").unwrap();
    assert_eq!(t.dims(), &[11, cfg.temb_dim][..]);
    assert!(HostModel::from_bytes(&bytes).is_ok());
    let plain = model_bytes(
        &SMALL,
        ScheduleConfig::default(),
        &random_params(&SMALL, 2, 1.0),
    );
    let header = ModelFile::parse(&plain).unwrap().header().model;
    assert_eq!(header, ModelConfig::TinyUNet(SMALL));
}

#[test]
fn batch_equals_single_images() {
    for (k, cfg) in batch_configs().into_iter().enumerate() {
        let params = random_params(&cfg, 40 + k as u64, 1.0);
        let net = TinyUNet::from_flat(cfg, &params).unwrap();
        let mut fast = FastTinyUNet::new(&net);
        let n = 4;
        let x = random_input(n * cfg.image_len(), 45 + k as u64);
        let t_in: Vec<f32> = (0..n).map(|i| i as f32 / 5.0).collect();
        assert_batch_equals_single(&mut fast, &x, &t_in, &format!("cfg {cfg:?}"));
    }
}

/// Layers split over 2, 3 or 7 threads (batch 1) and images shared between them (batch 3)
/// give the single-thread result bit for bit, directly and through `HostModel`.
#[cfg(feature = "threads")]
#[test]
fn threads_equal_one_thread() {
    for (k, cfg) in batch_configs().into_iter().enumerate() {
        let params = random_params(&cfg, 60 + k as u64, 1.0);
        let net = TinyUNet::from_flat(cfg, &params).unwrap();
        let mut one = FastTinyUNet::new(&net);
        let sched = ScheduleConfig::linear(50, 1e-4, 0.02);
        let mut host = HostModel::from_params(cfg, sched, params.clone()).unwrap();
        for n in [1, 3] {
            let x = random_input(n * cfg.image_len(), 70 + k as u64);
            let t_in: Vec<f32> = (0..n).map(|i| 0.2 + i as f32 / 5.0).collect();
            let want = single_runs(&mut one, &x, &t_in);
            for threads in [2, 3, 7] {
                let mut fast = FastTinyUNet::new(&net);
                fast.set_threads(threads);
                assert_eq!(fast.threads(), threads);
                let mut got = vec![0.0f32; x.len()];
                fast.forward_batch(&x, &t_in, &mut got).unwrap();
                assert_eq!(got, want, "cfg {cfg:?}, batch {n}, {threads} threads");
                host.set_threads(threads);
                host.forward_images(&x, &t_in, &mut got).unwrap();
                assert_eq!(
                    got, want,
                    "HostModel, cfg {cfg:?}, batch {n}, {threads} threads"
                );
            }
        }
    }
}

#[test]
fn time_input_changes_the_output() {
    let cfg = TinyUNetConfig::DEFAULT;
    let params = random_params(&cfg, 5, 1.0);
    let net = TinyUNet::from_flat(cfg, &params).unwrap();
    let mut ws = vec![0.0; cfg.workspace_len()];
    let x = random_input(cfg.image_len(), 7);
    let (mut a, mut b) = (vec![0.0; 784], vec![0.0; 784]);
    net.forward_reference(&x, 0.1, &mut ws, &mut a).unwrap();
    net.forward_reference(&x, 0.1 + 1.0 / 300.0, &mut ws, &mut b)
        .unwrap();
    assert!(
        rel_err(&a, &b) > 1e-4,
        "one timestep apart: {}",
        rel_err(&a, &b)
    );
}

/// A small TinyUNet (12×8 images, two mid blocks) for the model-file and sampler tests.
const SMALL: TinyUNetConfig = TinyUNetConfig {
    channels: 1,
    height: 12,
    width: 8,
    widths: [4, 8, 6],
    mid_blocks: 2,
    emb_dim: 8,
    temb_dim: 5,
    classes: 0,
};

#[test]
fn model_file_round_trip_and_sampling_on_both_paths() {
    let cfg = SMALL;
    let params = random_params(&cfg, 11, 1.0);
    let bytes = model_bytes(&cfg, ScheduleConfig::cosine(40), &params);
    let file = ModelFile::parse(&bytes).unwrap();
    assert_eq!(file.header().model, ModelConfig::TinyUNet(cfg));
    let names: Vec<&str> = file.tensors().map(|t| t.name).collect();
    let want: Vec<&str> = cfg.tensor_specs().iter().map(|s| s.name).collect();
    assert_eq!(names, want);

    let host = HostModel::from_bytes(&bytes).unwrap();
    assert_eq!(*host.config(), ModelConfig::TinyUNet(cfg));
    assert_eq!(host.params(), &params[..]);
    let sampler_cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 10,
        ..Default::default()
    });
    let fast = host
        .clone()
        .with_path(Path::Fast)
        .sample(2, &sampler_cfg, 3)
        .unwrap();
    let reference = host
        .clone()
        .with_path(Path::Reference)
        .sample(2, &sampler_cfg, 3)
        .unwrap();
    // Ten DDIM steps do not amplify the forward passes' rounding differences (≤ 5e-6 each).
    assert!(
        rel_err(&fast, &reference) < 2e-5,
        "{}",
        rel_err(&fast, &reference)
    );

    // The no-heap route a device takes: TinyReferenceDenoiser over caller-owned buffers gives
    // the host's reference sample bit for bit.
    let net = TinyUNet::from_flat(cfg, &params).unwrap();
    let mut ws = vec![0.0; cfg.workspace_len()];
    let mut den = TinyReferenceDenoiser::new(net, &mut ws).unwrap();
    let schedule: Schedule = Schedule::new(&ScheduleConfig::cosine(40)).unwrap();
    let (mut x, mut eps) = (vec![0.0; cfg.image_len()], vec![0.0; cfg.image_len()]);
    diffusion::sample(&mut den, &schedule, &sampler_cfg, 3, &mut x, &mut eps).unwrap();
    assert_eq!(x, reference[..cfg.image_len()]);

    // A workspace one element short is an error, not a panic.
    let mut short = vec![0.0; cfg.workspace_len() - 1];
    assert!(TinyReferenceDenoiser::new(net, &mut short).is_err());
}

#[test]
fn wrong_shapes_are_errors() {
    let cfg = TinyUNetConfig::DEFAULT;
    let params = random_params(&cfg, 1, 1.0);
    let bytes = model_bytes(&cfg, ScheduleConfig::default(), &params);
    // The same bytes under another header (widths 32/64/32) no longer fit.
    let other = TinyUNetConfig {
        widths: [32, 64, 32],
        ..cfg
    };
    let mut w = ddpm_core::file::ModelWriter::new(
        ModelConfig::TinyUNet(other),
        ScheduleConfig::default(),
        "",
    );
    let file = ModelFile::parse(&bytes).unwrap();
    for t in file.tensors() {
        w.push_f32(t.name, t.dims(), &t.to_f32_vec().unwrap())
            .unwrap();
    }
    match HostModel::from_bytes(&w.finish()) {
        Err(ddpm_core::Error::ShapeMismatch { name, .. }) => assert_eq!(name, "down2.weight"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a mismatched file loaded"),
    }
}

#[test]
fn simple_unet_model_files_still_load() {
    // The committed default model was written before TinyUNet existed.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/simple_unet_mnist.ddpm"
    );
    let bytes = std::fs::read(path).unwrap();
    let host = HostModel::from_bytes(&bytes).unwrap();
    assert_eq!(
        *host.config(),
        ModelConfig::SimpleUNet(SimpleUNetConfig::SEED)
    );
}

#[test]
fn guided_sampling_equals_the_no_heap_guided_denoiser() {
    let good_cfg = SMALL;
    // A weaker guide: fewer channels and one mid block, the same image shape and schedule.
    let guide_cfg = TinyUNetConfig {
        widths: [2, 4, 4],
        mid_blocks: 1,
        ..good_cfg
    };
    let sched_cfg = ScheduleConfig::cosine(40);
    let good_params = random_params(&good_cfg, 21, 1.0);
    let guide_params = random_params(&guide_cfg, 22, 1.0);
    let host = HostModel::from_params(good_cfg, sched_cfg, good_params.clone())
        .unwrap()
        .with_path(Path::Reference);
    let guide = HostModel::from_params(guide_cfg, sched_cfg, guide_params.clone())
        .unwrap()
        .with_path(Path::Reference);
    let sampler_cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 10,
        eta: 1.0,
        ..Default::default()
    });
    let weight = 1.5;
    let guided = host
        .clone()
        .sample_guided(&mut guide.clone(), weight, 2, &sampler_cfg, 3)
        .unwrap();

    // The no-heap route: Guided over two reference denoisers and one image of scratch gives
    // each image bit for bit.
    let schedule: Schedule = Schedule::new(&sched_cfg).unwrap();
    let len = good_cfg.image_len();
    for (i, image) in guided.chunks_exact(len).enumerate() {
        let mut ws_good = vec![0.0; good_cfg.workspace_len()];
        let mut ws_guide = vec![0.0; guide_cfg.workspace_len()];
        let mut good = TinyReferenceDenoiser::new(
            TinyUNet::from_flat(good_cfg, &good_params).unwrap(),
            &mut ws_good,
        )
        .unwrap();
        let mut weak = TinyReferenceDenoiser::new(
            TinyUNet::from_flat(guide_cfg, &guide_params).unwrap(),
            &mut ws_guide,
        )
        .unwrap();
        let mut scratch = vec![0.0; len];
        let mut den = diffusion::Guided::new(&mut good, &mut weak, weight, &mut scratch).unwrap();
        let (mut x, mut eps) = (vec![0.0; len], vec![0.0; len]);
        diffusion::sample(
            &mut den,
            &schedule,
            &sampler_cfg,
            3 + i as u64,
            &mut x,
            &mut eps,
        )
        .unwrap();
        assert_eq!(x, image, "image {i}");
    }

    // Weight 0 is the guide alone, exactly (g + 0·(o − g) = g); the guidance changes the
    // samples at weight 1.5.
    let guide_alone = guide.clone().sample(2, &sampler_cfg, 3).unwrap();
    let weight0 = host
        .clone()
        .sample_guided(&mut guide.clone(), 0.0, 2, &sampler_cfg, 3)
        .unwrap();
    assert_eq!(weight0, guide_alone);
    let unguided = host.clone().sample(2, &sampler_cfg, 3).unwrap();
    assert!(rel_err(&guided, &unguided) > 1e-2);

    // A guide of another schedule or image shape, or a weight that is not finite, is refused.
    let other_sched =
        HostModel::from_params(guide_cfg, ScheduleConfig::cosine(50), guide_params.clone())
            .unwrap();
    let other_shape = TinyUNetConfig {
        height: 8,
        ..guide_cfg
    };
    let other_shape =
        HostModel::from_params(other_shape, sched_cfg, random_params(&other_shape, 23, 1.0))
            .unwrap();
    for (mut g, w) in [
        (other_sched, weight),
        (other_shape, weight),
        (guide.clone(), f32::NAN),
    ] {
        assert!(matches!(
            host.clone().sample_guided(&mut g, w, 1, &sampler_cfg, 3),
            Err(ddpm_core::Error::InvalidConfig(_))
        ));
    }
}

/// A guidance interval: `HostModel::sample_guided` guided only at some steps equals the
/// no-heap `Guided` denoiser with the same interval bit for bit; an interval holding no step
/// gives the unguided sample exactly, one holding every step the fully guided one, and one
/// holding some steps neither.
#[test]
fn a_guidance_interval_guides_only_its_steps() {
    let cfg = SMALL;
    let sched_cfg = ScheduleConfig::cosine(40);
    let (p_good, p_weak) = (random_params(&cfg, 31, 1.0), random_params(&cfg, 32, 1.0));
    let host = HostModel::from_params(cfg, sched_cfg, p_good.clone())
        .unwrap()
        .with_path(Path::Reference);
    let guide = HostModel::from_params(cfg, sched_cfg, p_weak.clone())
        .unwrap()
        .with_path(Path::Reference);
    let sampler_cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 8,
        eta: 1.0,
        ..Default::default()
    });
    let guided_in = |interval: GuidanceInterval| {
        let mut h = host.clone();
        h.set_guidance_interval(interval);
        h.sample_guided(&mut guide.clone(), 2.0, 2, &sampler_cfg, 5)
            .unwrap()
    };
    let some = GuidanceInterval::new(0.3, 0.8).unwrap();
    let partly = guided_in(some);
    let schedule: Schedule = Schedule::new(&sched_cfg).unwrap();
    let len = cfg.image_len();
    for (i, image) in partly.chunks_exact(len).enumerate() {
        let (mut ws_a, mut ws_b) = (
            vec![0.0; cfg.workspace_len()],
            vec![0.0; cfg.workspace_len()],
        );
        let (net_good, net_weak) = (
            TinyUNet::from_flat(cfg, &p_good).unwrap(),
            TinyUNet::from_flat(cfg, &p_weak).unwrap(),
        );
        let mut good = TinyReferenceDenoiser::new(net_good, &mut ws_a).unwrap();
        let mut weak = TinyReferenceDenoiser::new(net_weak, &mut ws_b).unwrap();
        let mut scratch = vec![0.0; len];
        let mut den = diffusion::Guided::new(&mut good, &mut weak, 2.0, &mut scratch)
            .unwrap()
            .with_interval(some);
        let (mut x, mut eps) = (vec![0.0; len], vec![0.0; len]);
        diffusion::sample(
            &mut den,
            &schedule,
            &sampler_cfg,
            5 + i as u64,
            &mut x,
            &mut eps,
        )
        .unwrap();
        assert_eq!(x, image, "image {i}");
    }
    let never = guided_in(GuidanceInterval::new(1.0, 1.0).unwrap());
    assert_eq!(never, host.clone().sample(2, &sampler_cfg, 5).unwrap());
    let always = guided_in(GuidanceInterval::ALWAYS);
    let plain_guided = host
        .clone()
        .sample_guided(&mut guide.clone(), 2.0, 2, &sampler_cfg, 5)
        .unwrap();
    assert_eq!(always, plain_guided);
    assert!(rel_err(&partly, &always) > 1e-3 && rel_err(&partly, &never) > 1e-3);
    for (lo, hi) in [(-0.1, 0.5), (0.6, 0.5), (0.2, 1.5), (f32::NAN, 0.5)] {
        assert!(GuidanceInterval::new(lo, hi).is_err(), "[{lo}, {hi}]");
    }
}
