//! The im2col + sgemm path against the reference loops on random weights and inputs.

mod common;

use common::{random_input, random_params, rel_err};
use ddpm_core::{fast::FastSimpleUNet, SimpleUNet, SimpleUNetConfig};

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
    let mut fast = FastSimpleUNet::new(&net);
    let mut ws = vec![0.0; cfg.workspace_len()];
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
