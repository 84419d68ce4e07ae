//! The host fast path (Winograd with AVX2 + FMA or portable kernels for wide networks, im2col +
//! sgemm for narrow ones) against the reference loops on random weights and inputs; batches,
//! thread splits and the batched sampler against single-image runs, bit for bit.

mod common;

#[cfg(feature = "threads")]
use common::single_runs;
use common::{assert_batch_equals_single, random_input, random_params, rel_err};
use ddpm_core::diffusion::{self, DdimConfig, DdpmConfig, SamplerConfig};
use ddpm_core::host::HostModel;
use ddpm_core::kernels::winograd::Tile;
use ddpm_core::{
    simple_unet::FastSimpleUNet, Schedule, ScheduleConfig, SimpleUNet, SimpleUNetConfig,
};

/// Largest |fast − reference| relative to the largest |reference| output. The paths sum the
/// same f32 products in different orders (the GEMM adds the bias last, the loop first) over up
/// to 9·hidden2 = 1152 terms per output, and the Winograd F(2×2, 3×3) layers add their
/// transforms' roundings (they multiply by ½ and add at most four terms per stage); measured
/// worst case over these cases: 2.2e-6 (≈ 18 ulp of the largest output). The bound is ~2.3×
/// that.
const FAST_VS_REFERENCE: f32 = 5e-6;

fn check(cfg: SimpleUNetConfig, seed: u64, scale: f32) {
    let params = random_params(&cfg, seed, scale);
    let net = SimpleUNet::from_flat(cfg, &params).unwrap();
    let mut ws = vec![0.0; cfg.workspace_len()];
    for mut fast in [
        FastSimpleUNet::new(&net),
        FastSimpleUNet::portable_winograd(&net, Tile::F2),
    ] {
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
                "cfg {cfg:?} seed {seed} scale {scale} t {t_in} simd {}: {e}",
                fast.uses_simd()
            );
        }
    }
}

#[test]
fn seed_config() {
    for (seed, scale) in [(1, 1.0), (2, 0.1), (3, 10.0)] {
        check(SimpleUNetConfig::SEED, seed, scale);
    }
}

#[test]
fn other_configs() {
    let cfgs = [
        SimpleUNetConfig {
            channels: 3,
            height: 32,
            width: 32,
            hidden1: 16,
            hidden2: 24,
        },
        SimpleUNetConfig {
            channels: 2,
            height: 5,
            width: 9,
            hidden1: 3,
            hidden2: 7,
        },
        SimpleUNetConfig {
            channels: 1,
            height: 1,
            width: 1,
            hidden1: 1,
            hidden2: 1,
        },
        SimpleUNetConfig {
            channels: 1,
            height: 2,
            width: 1,
            hidden1: 4,
            hidden2: 2,
        },
    ];
    for (i, cfg) in cfgs.into_iter().enumerate() {
        check(cfg, 100 + i as u64, 1.0);
    }
}

/// Networks of both pipelines (Winograd: hidden widths ≥ 16, with partial channel blocks and
/// odd sizes; im2col + sgemm below).
fn batch_configs() -> [SimpleUNetConfig; 3] {
    [
        SimpleUNetConfig::SEED,
        SimpleUNetConfig {
            channels: 2,
            height: 9,
            width: 7,
            hidden1: 17,
            hidden2: 35,
        },
        SimpleUNetConfig {
            channels: 1,
            height: 6,
            width: 5,
            hidden1: 4,
            hidden2: 7,
        },
    ]
}

/// A batch through each layer at once equals one image at a time, bit for bit: every output
/// value is computed from its own tile or pixel by the same operations.
#[test]
fn batch_equals_single_images() {
    for (k, cfg) in batch_configs().into_iter().enumerate() {
        let params = random_params(&cfg, 40 + k as u64, 1.0);
        let net = SimpleUNet::from_flat(cfg, &params).unwrap();
        for simd in [true, false] {
            let mut fast = if simd {
                FastSimpleUNet::new(&net)
            } else {
                FastSimpleUNet::portable_winograd(&net, Tile::F2)
            };
            let n = 5;
            let x = random_input(n * cfg.image_len(), 50 + k as u64);
            let t_in: Vec<f32> = (0..n).map(|i| i as f32 / 7.0).collect();
            assert_batch_equals_single(&mut fast, &x, &t_in, &format!("cfg {cfg:?}, simd {simd}"));
        }
    }
}

/// Rows split over 2, 3 or 7 threads give the single-thread result bit for bit, for batches
/// of 1 and 3 images.
#[cfg(feature = "threads")]
#[test]
fn threads_equal_one_thread() {
    for (k, cfg) in batch_configs().into_iter().enumerate() {
        let params = random_params(&cfg, 60 + k as u64, 1.0);
        let net = SimpleUNet::from_flat(cfg, &params).unwrap();
        let mut one = FastSimpleUNet::new(&net);
        for n in [1, 3] {
            let x = random_input(n * cfg.image_len(), 70 + k as u64);
            let t_in: Vec<f32> = (0..n).map(|i| 0.2 + i as f32 / 5.0).collect();
            let want = single_runs(&mut one, &x, &t_in);
            for threads in [2, 3, 7] {
                let mut fast = FastSimpleUNet::new(&net);
                fast.set_threads(threads);
                let mut got = vec![0.0f32; x.len()];
                fast.forward_batch(&x, &t_in, &mut got).unwrap();
                assert_eq!(got, want, "cfg {cfg:?}, batch {n}, {threads} threads");
            }
        }
    }
}

/// `HostModel::sample` (all images in lockstep, batched forward passes) equals the core's
/// one-image sampler driven by the fast path, image by image, bit for bit: DDIM and DDPM.
#[test]
fn batched_sampler_equals_single_samples() {
    let cfg = SimpleUNetConfig {
        channels: 1,
        height: 8,
        width: 8,
        hidden1: 16,
        hidden2: 24,
    };
    let sched_cfg = ScheduleConfig::linear(40, 1e-4, 0.02);
    let params = random_params(&cfg, 80, 1.0);
    let net = SimpleUNet::from_flat(cfg, &params).unwrap();
    let schedule: Schedule = Schedule::new(&sched_cfg).unwrap();
    let mut host = HostModel::from_params(cfg, sched_cfg, params.clone()).unwrap();
    let len = cfg.image_len();
    for scfg in [
        SamplerConfig::Ddim(DdimConfig {
            steps: 10,
            eta: 0.5,
            ..Default::default()
        }),
        SamplerConfig::Ddpm(DdpmConfig::default()),
    ] {
        let seed = 9;
        let got = host.sample(4, &scfg, seed).unwrap();
        let mut fast = FastSimpleUNet::new(&net);
        for (i, img) in got.chunks_exact(len).enumerate() {
            let (mut x, mut eps) = (vec![0.0f32; len], vec![0.0f32; len]);
            diffusion::sample(
                &mut fast,
                &schedule,
                &scfg,
                seed + i as u64,
                &mut x,
                &mut eps,
            )
            .unwrap();
            assert_eq!(img, &x[..], "{scfg:?}, image {i}");
        }
    }
}
