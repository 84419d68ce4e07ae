//! The core's forward pass (reference and fast path) against the trainer's tch forward pass on
//! the CPU in f32, with the weights carried by the real route: the trainer's own initialisation,
//! the trainer's exporter, a model file, the core's loader.

use ddpm_core::host::Path;
use ddpm_core::{ScheduleConfig, SimpleUNetConfig};
use ddpm_equivalence::{
    check_property, export_to_core, rel_err, tch_forward, trainer_net, uniform, within,
};
use proptest::prelude::*;

/// max |core − tch| / max |tch| for one forward pass. Both sides compute every output as f32
/// sums of up to 9·hidden2 = 1152 products (dec1) in different orders (oneDNN's blocked
/// kernels vs the core's loops, sgemm and Winograd), each rounding error bounded by a few
/// 2⁻²⁴ ≈ 6e-8 of the running |sum|; cancellation between layers makes the output smaller than
/// the sums it came from. Measured worst over 256 random cases: see the test's output and the
/// note in tests/README.md.
const FORWARD_REL: f32 = 1e-5;

const T: u32 = 300;

/// Scale factors for the trainer's initial weights: as initialised, and ten times smaller and
/// larger, plus anything log-uniform in between.
fn scale() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1.0),
        Just(0.1),
        Just(10.0),
        (-1.0f64..=1.0).prop_map(|e| 10f64.powf(e)),
    ]
}

#[test]
fn seed_model_forward_matches_trainer() {
    let cfg = SimpleUNetConfig::SEED;
    let strategy = (any::<u32>(), scale(), any::<u64>(), 0.0f32..=3.0, 0..T);
    check_property(
        "forward, seed model (reference and fast path vs tch)",
        FORWARD_REL as f64,
        strategy,
        |(seed, scale, input_seed, amplitude, t)| {
            let (vs, net) = trainer_net(cfg, seed as i64, scale);
            let core = export_to_core(&vs, &cfg, &ScheduleConfig::default());
            let x: Vec<f32> = uniform(input_seed, cfg.image_len())
                .iter()
                .map(|v| v * amplitude)
                .collect();
            let t_in = t as f32 / T as f32;
            let want = tch_forward(&net, &x, &[t_in]);
            let mut worst = 0.0f64;
            for path in [Path::Reference, Path::Fast] {
                let mut m = core.clone().with_path(path);
                let mut got = vec![0.0f32; cfg.image_len()];
                m.forward(&x, t_in, &mut got).unwrap();
                worst = worst.max(within(
                    format!("{path:?}"),
                    rel_err(&got, &want),
                    FORWARD_REL,
                )?);
            }
            Ok(worst)
        },
    );
}

/// (channels, height, width): the c = 3 with 32×32 images, MNIST's shape, and any small
/// shape (sides down to 1, where every 3×3 tap but the centre falls into the padding).
fn image_shape() -> impl Strategy<Value = (u32, u32, u32)> {
    prop_oneof![
        Just((3, 32, 32)),
        Just((1, 28, 28)),
        (1u32..=3, 1u32..=32, 1u32..=32),
    ]
}

#[test]
fn other_configs_and_batches_match_trainer() {
    // Hidden widths on both sides of the fast path's Winograd threshold (16 channels) and of
    // its direct-convolution cut-off for the last layer (≤ 4 outputs).
    let strategy = (
        image_shape(),
        1u32..=64,
        1u32..=128,
        1usize..=3,
        any::<u32>(),
        scale(),
        any::<u64>(),
        0.0f32..=3.0,
        proptest::collection::vec(0..T, 3),
    );
    check_property(
        "forward, other sizes, tch batch vs core single calls",
        FORWARD_REL as f64,
        strategy,
        |(
            (channels, height, width),
            hidden1,
            hidden2,
            batch,
            seed,
            scale,
            input_seed,
            amplitude,
            ts,
        )| {
            let cfg = SimpleUNetConfig {
                channels,
                height,
                width,
                hidden1,
                hidden2,
            };
            let (vs, net) = trainer_net(cfg, seed as i64, scale);
            let core = export_to_core(&vs, &cfg, &ScheduleConfig::default());
            let n = cfg.image_len();
            let x: Vec<f32> = uniform(input_seed, batch * n)
                .iter()
                .map(|v| v * amplitude)
                .collect();
            let t_in: Vec<f32> = ts[..batch].iter().map(|&t| t as f32 / T as f32).collect();
            let want = tch_forward(&net, &x, &t_in);
            let mut worst = 0.0f64;
            for path in [Path::Reference, Path::Fast] {
                let mut m = core.clone().with_path(path);
                for (i, &ti) in t_in.iter().enumerate() {
                    let mut got = vec![0.0f32; n];
                    m.forward(&x[i * n..(i + 1) * n], ti, &mut got).unwrap();
                    let e = rel_err(&got, &want[i * n..(i + 1) * n]);
                    worst = worst.max(within(format!("{path:?}, image {i}"), e, FORWARD_REL)?);
                }
            }
            Ok(worst)
        },
    );
}
