//! The core's forward pass (reference and fast path) against the trainer's tch forward pass on
//! the CPU in f32, with the weights carried by the real route: the trainer's own initialisation,
//! the trainer's exporter, a model file, the core's loader.

use ddpm_core::host::Path;
use ddpm_core::{ScheduleConfig, SimpleUNetConfig};
use ddpm_equivalence::{
    check_property, export_to_core, rel_err, tch_forward, trainer_net, uniform, within,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// max |core − tch| / max |tch| for one forward pass. Both sides compute every output as f32
/// sums of up to 9·hidden2 = 1152 products (dec1) in different orders (oneDNN's blocked
/// kernels vs the core's loops, sgemm and Winograd), each rounding error bounded by a few
/// 2⁻²⁴ ≈ 6e-8 of the running |sum|; cancellation between layers makes the output smaller than
/// the sums it came from. Measured on this machine (weights ×0.1 to ×10, inputs in [−3, 3]):
/// the reference path's plain running sums have median 1.3e-6 and worst 4.7e-6 over about a
/// thousand cases; the fast path (sgemm, Winograd) worst 2.5e-6 over 1500. The bound leaves
/// about 2× over the worst seen for other weights and CPUs' kernels, and is still four orders
/// of magnitude below a real error (a kernel not flipped in dec1 gives 0.16 to 0.9).
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

/// One forward-pass case: sizes, the trainer's initialisation, inputs and timesteps.
#[derive(Debug, Clone)]
struct Case {
    cfg: SimpleUNetConfig,
    /// Images in the tch batch; the core runs them one call each.
    batch: usize,
    /// Seed of libtorch's generator for the trainer's initialisation.
    init_seed: u32,
    /// Every initial parameter is multiplied by this.
    weight_scale: f64,
    /// Inputs: `amplitude` × uniform[−1, 1) drawn from `input_seed`, so within [−3, 3].
    input_seed: u64,
    amplitude: f32,
    /// One timestep per image (the first `batch` are used).
    t: Vec<u32>,
}

fn case(
    cfg: impl Strategy<Value = SimpleUNetConfig>,
    batch: impl Strategy<Value = usize>,
) -> impl Strategy<Value = Case> {
    (
        cfg,
        batch,
        any::<u32>(),
        scale(),
        any::<u64>(),
        0.0f32..=3.0,
        proptest::collection::vec(0..T, MAX_BATCH),
    )
        .prop_map(
            |(cfg, batch, init_seed, weight_scale, input_seed, amplitude, t)| Case {
                cfg,
                batch,
                init_seed,
                weight_scale,
                input_seed,
                amplitude,
                t,
            },
        )
}

/// Runs one case: the trainer's network on the whole batch in tch, the core's reference and
/// fast path on each image; returns the largest relative error.
fn run_case(c: Case) -> Result<f64, TestCaseError> {
    let cfg = c.cfg;
    let (vs, net) = trainer_net(cfg, c.init_seed as i64, c.weight_scale);
    let core = export_to_core(&vs, &cfg, &ScheduleConfig::default());
    let n = cfg.image_len();
    let x: Vec<f32> = uniform(c.input_seed, c.batch * n)
        .iter()
        .map(|v| v * c.amplitude)
        .collect();
    let t_in: Vec<f32> = c.t[..c.batch]
        .iter()
        .map(|&t| t as f32 / T as f32)
        .collect();
    let want = tch_forward(&net, &x, &t_in);
    let mut worst = 0.0f64;
    for path in [Path::Reference, Path::Fast] {
        let mut m = core.clone().with_path(path);
        let mut got = vec![0.0f32; n];
        for (i, &ti) in t_in.iter().enumerate() {
            m.forward(&x[i * n..(i + 1) * n], ti, &mut got).unwrap();
            let e = rel_err(&got, &want[i * n..(i + 1) * n]);
            worst = worst.max(within(format!("{path:?}, image {i}"), e, FORWARD_REL)?);
        }
    }
    Ok(worst)
}

const MAX_BATCH: usize = 3;

#[test]
fn seed_model_forward_matches_trainer() {
    check_property(
        "forward, seed model (reference and fast path vs tch)",
        FORWARD_REL as f64,
        case(Just(SimpleUNetConfig::SEED), Just(1)),
        run_case,
    );
}

/// The c = 3 with 32×32 images, MNIST's shape, and any small shape (sides down to 1,
/// where every 3×3 tap but the centre falls into the padding); hidden widths on both sides of
/// the fast path's Winograd threshold (16 channels) and of its direct-convolution cut-off for
/// the last layer (≤ 4 outputs).
fn other_config() -> impl Strategy<Value = SimpleUNetConfig> {
    (
        prop_oneof![
            Just((3, 32, 32)),
            Just((1, 28, 28)),
            (1u32..=3, 1u32..=32, 1u32..=32),
        ],
        1u32..=64,
        1u32..=128,
    )
        .prop_map(
            |((channels, height, width), hidden1, hidden2)| SimpleUNetConfig {
                channels,
                height,
                width,
                hidden1,
                hidden2,
            },
        )
}

#[test]
fn other_configs_and_batches_match_trainer() {
    check_property(
        "forward, other sizes, tch batch vs core single calls",
        FORWARD_REL as f64,
        case(other_config(), 1..=MAX_BATCH),
        run_case,
    );
}
