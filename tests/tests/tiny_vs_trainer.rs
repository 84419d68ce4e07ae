//! TinyUNet: the core's forward pass (reference and fast path) against the trainer's tch
//! TinyUNet, with the weights carried by the real route (the trainer's initialisation, its
//! exporter, a model file, the core's loader); one DDPM and one DDIM step and whole sampler
//! trajectories, each side driven by its own network.

use ddpm_core::diffusion::{
    self, DdimConfig, DdpmConfig, DdpmVariance, Plan, SamplerConfig, Spacing,
};
use ddpm_core::host::{HostModel, Path};
use ddpm_core::tiny_unet::TINY_MAX_MID_BLOCKS;
use ddpm_core::{Schedule, ScheduleConfig, TinyUNetConfig};
use ddpm_equivalence::{
    check_property, export_to_core, forward_case, gaussian, rel_err, run_forward_case, tch_forward,
    tensor, trainer_model, trajectories, values, within, ForwardCase, MAX_BATCH,
};
use ddpm_equivalence::{guided_trajectories, inpaint_trajectories};
use ddpm_torch::model::Net;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// max |core − tch| / max |tch| for one forward pass: the bound of SimpleUNet's forward
/// property (FORWARD_REL in forward_vs_trainer.rs), for the same reasons. Every output of both
/// sides is an f32 sum over at most 9·(w3 + w2) = 1152 products (up2 with the default widths;
/// SimpleUNet's dec1 has as many) summed in different orders (oneDNN vs the core's loops,
/// sgemm and Winograd), through six layers. The time embedding adds sin/cos of arguments up
/// to 1000: both sides multiply 1000·t_in by the same f32 frequency table
/// (`ddpm_core::kernels::reference::sinusoidal_frequency`), so the arguments are bit-identical and only
/// libm's and libtorch's sin/cos differ, by about one ulp of values ≤ 1. Measured worst over
/// two runs of 256 cases: 4.9e-6 (default sizes, reference and fast path) and 4.3e-6 (other
/// sizes), as for SimpleUNet (worst 4.7e-6). A later run drew a rarer case at 1.23e-5 on the
/// reference path: weights ×10 through widths 35/3/5 (a 3-channel bottleneck), c = 2, 12×24,
/// where the output is much smaller than the sums it cancels from. The bound leaves 2× over
/// that; a real error (a wrong tap, a missing time projection) is of order 0.1 to 1.
const FORWARD_REL: f32 = 2.5e-5;

/// Runs one case at [`FORWARD_REL`].
fn run_case(c: ForwardCase<TinyUNetConfig>) -> Result<f64, TestCaseError> {
    run_forward_case(c, FORWARD_REL)
}

#[test]
fn default_tiny_forward_matches_trainer() {
    check_property(
        "forward, default TinyUNet (reference and fast path vs tch)",
        FORWARD_REL as f64,
        forward_case(Just(TinyUNetConfig::DEFAULT), Just(1)),
        run_case,
    );
}

/// c = 3 with 32×32 images, MNIST's shape, and small shapes (sides multiples of 4 down to 4,
/// where the quarter-resolution level is one pixel); widths on both sides of the fast path's
/// Winograd threshold (16 channels) and of its direct last-layer cut-off (≤ 4 outputs);
/// every number of mid blocks; embedding lengths from the smallest (4) up, and any D.
fn other_config() -> impl Strategy<Value = TinyUNetConfig> {
    (
        prop_oneof![
            Just((3u32, 32u32, 32u32)),
            Just((1, 28, 28)),
            (1u32..=3, 1u32..=6, 1u32..=6).prop_map(|(c, h, w)| (c, 4 * h, 4 * w)),
        ],
        (1u32..=40, 1u32..=40, 1u32..=40),
        1u32..=TINY_MAX_MID_BLOCKS as u32,
        2u32..=20,
        1u32..=48,
    )
        .prop_map(
            |((channels, height, width), (w1, w2, w3), mid_blocks, half, temb_dim)| {
                TinyUNetConfig {
                    channels,
                    height,
                    width,
                    widths: [w1, w2, w3],
                    mid_blocks,
                    emb_dim: 2 * half,
                    temb_dim,
                    classes: 0,
                }
            },
        )
}

#[test]
fn other_tiny_configs_and_batches_match_trainer() {
    check_property(
        "forward, other TinyUNet sizes, tch batch vs core single calls",
        FORWARD_REL as f64,
        forward_case(other_config(), 1..=MAX_BATCH),
        run_case,
    );
}

/// Class-conditional TinyUNets (1 to 12 classes, other sizes as [`other_config`]) on batches of
/// images with a class each, "no class" included: the tch batch with its labels against the
/// core's single calls (reference and fast path) with each image's class set. The class
/// embedding's row is added to temb in f32 on both sides, one addition per element, so the
/// bound stays [`FORWARD_REL`]. Initial weights are the trainer's own (scale 1), inputs within
/// [−3, 3].
#[test]
fn conditional_tiny_forward_matches_trainer() {
    let case = (
        other_config(),
        1u32..=12,
        1..=MAX_BATCH,
        any::<u32>(),
        any::<u64>(),
        proptest::collection::vec((0u32..=12, 0u32..300), MAX_BATCH),
    );
    check_property(
        "forward, class-conditional TinyUNets with labels (reference and fast path vs tch)",
        FORWARD_REL as f64,
        case,
        |(cfg, classes, batch, init_seed, input_seed, draws)| {
            let cfg = TinyUNetConfig { classes, ..cfg };
            let (vs, net) = trainer_model(cfg, init_seed as i64, 1.0);
            let core = export_to_core(&vs, &cfg, &ScheduleConfig::default());
            let n = cfg.image_len();
            let x: Vec<f32> = gaussian(input_seed, batch * n);
            // Label `classes` is "no class" (the core's None).
            let labels: Vec<u32> = draws[..batch].iter().map(|d| d.0 % (classes + 1)).collect();
            let t_in: Vec<f32> = draws[..batch].iter().map(|d| d.1 as f32 / 300.0).collect();
            let want = ddpm_equivalence::tch_forward(
                &ddpm_equivalence::Labelled::new(&net, &labels),
                &x,
                &t_in,
            );
            let mut worst = 0.0f64;
            for path in [Path::Reference, Path::Fast] {
                let mut m = core.clone().with_path(path);
                let mut got = vec![0.0f32; n];
                for (i, (&k, &ti)) in labels.iter().zip(&t_in).enumerate() {
                    m.set_class((k < classes).then_some(k)).unwrap();
                    m.forward(&x[i * n..(i + 1) * n], ti, &mut got).unwrap();
                    let e = rel_err(&got, &want[i * n..(i + 1) * n]);
                    within(format!("{path:?}, image {i}, label {k}"), e, FORWARD_REL)?;
                    worst = worst.max(f64::from(e));
                }
            }
            Ok(worst)
        },
    );
}

/// One sampler step with ε from each side's own TinyUNet, max |core − tch| / max |tch|. The
/// step arithmetic agrees to 2 ulp (STEP_REL = 1e-6 in samplers_vs_trainer.rs), so the
/// difference is the forward pass's (measured ≤ 4.6e-6 of max |ε| on default sizes) times the
/// step's ε coefficient, over max |x'|. For DDPM the coefficient β_t/√(1−ᾱ_t)/√α_t is small
/// next to x's own 1/√α_t (measured worst 6.6e-7 over 256 cases). For DDIM, x' =
/// √ᾱ_prev·x0 + c·ε with x0 = (x − √(1−ᾱ_t)·ε)/√ᾱ_t: the ε terms partly cancel x's, so max |x'|
/// can be smaller than the ε term and the relative difference larger than the forward
/// pass's (measured worst 6.1e-6 over 256 cases with the im2col fast path). With the
/// channels-last Winograd fast path the worst case grew to 3.6e-5: cosine T = 10, the last
/// step t = 9 → ᾱ_prev = 1, where x' = x0 itself and the ε difference is multiplied by
/// √(1−ᾱ_9)/√ᾱ_9 (ᾱ_9 of the cosine schedule at T = 10 is below 0.01). The bound leaves
/// about 2× over that.
const STEP_WITH_NET_REL: f32 = 8e-5;

/// Linear (the seed's β range) or cosine, T ∈ {10, 300, 1000}.
fn schedule_config() -> impl Strategy<Value = ScheduleConfig> {
    (
        any::<bool>(),
        prop_oneof![Just(300u32), Just(10), Just(1000)],
    )
        .prop_map(|(cos, t)| {
            if cos {
                ScheduleConfig::cosine(t)
            } else {
                ScheduleConfig::linear(t, 1e-4, 0.02)
            }
        })
}

/// x_t (scaled by up to 3) and z, and the trainer initialisation of the default TinyUNet.
fn step_setup(
    sc: &ScheduleConfig,
    init_seed: u32,
    seeds: (u64, u64),
    x_scale: f32,
) -> (Net, HostModel, Vec<f32>, Vec<f32>) {
    let cfg = TinyUNetConfig::DEFAULT;
    let (vs, net) = trainer_model(cfg, init_seed as i64, 1.0);
    let core = export_to_core(&vs, &cfg, sc);
    let x = gaussian(seeds.0, 784).iter().map(|v| v * x_scale).collect();
    (net, core, x, gaussian(seeds.1, 784))
}

/// ε of the trainer's network for one 1×28×28 image, as a tensor.
fn tch_eps(net: &Net, x: &[f32], t_in: f32) -> tch::Tensor {
    tensor(&tch_forward(net, x, &[t_in]), &[1, 1, 28, 28])
}

#[test]
fn ddpm_step_with_tiny_eps_matches_trainer() {
    let strategy = (
        schedule_config(),
        0.0f64..1.0,
        prop_oneof![
            Just(DdpmVariance::FixedLarge),
            Just(DdpmVariance::FixedSmall)
        ],
        any::<bool>(),
        any::<u32>(),
        any::<(u64, u64)>(),
        0.0f32..=3.0,
        prop_oneof![Just(Path::Fast), Just(Path::Reference)],
    );
    check_property(
        "one DDPM step, each side's own TinyUNet ε, tch vs core",
        STEP_WITH_NET_REL as f64,
        strategy,
        |(sc, t_frac, variance, clip_x0, init_seed, seeds, x_scale, path)| {
            let (net, core, x, z) = step_setup(&sc, init_seed, seeds, x_scale);
            let mut core = core.with_path(path);
            let sched: Box<Schedule> = Box::new(Schedule::new(&sc).unwrap());
            let t = (t_frac * sc.timesteps as f64) as u32;
            let t_in = t as f32 / sc.timesteps as f32;
            let cfg = DdpmConfig { variance, clip_x0 };
            let mut eps = vec![0.0f32; 784];
            core.forward(&x, t_in, &mut eps).unwrap();
            let mut stepped = x.clone();
            diffusion::ddpm_step(&sched, &cfg, t, &mut stepped, &eps, |i| z[i]).unwrap();
            let shape = [1, 1, 28, 28];
            let torch = values(&ddpm_torch::sample::ddpm_step(
                &sched,
                &cfg,
                t,
                &tensor(&x, &shape),
                &tch_eps(&net, &x, t_in),
                &tensor(&z, &shape),
            ));
            within(
                format!("{path:?}, t = {t}"),
                rel_err(&stepped, &torch),
                STEP_WITH_NET_REL,
            )
        },
    );
}

#[test]
fn ddim_step_with_tiny_eps_matches_trainer() {
    let strategy = (
        schedule_config(),
        prop_oneof![Just(0.0f32), Just(1.0)],
        prop_oneof![
            Just(Spacing::Leading),
            Just(Spacing::Trailing),
            Just(Spacing::Linspace)
        ],
        (0.0f64..1.0, 0.0f64..1.0),
        (any::<bool>(), any::<bool>()),
        any::<u32>(),
        any::<(u64, u64)>(),
        0.0f32..=3.0,
        prop_oneof![Just(Path::Fast), Just(Path::Reference)],
    );
    check_property(
        "one DDIM step, each side's own TinyUNet ε, tch vs core",
        STEP_WITH_NET_REL as f64,
        strategy,
        |(
            sc,
            eta,
            spacing,
            (s_frac, k_frac),
            (clip_x0, recompute_eps),
            init_seed,
            seeds,
            x_scale,
            path,
        )| {
            let (net, core, x, z) = step_setup(&sc, init_seed, seeds, x_scale);
            let mut core = core.with_path(path);
            let sched: Box<Schedule> = Box::new(Schedule::new(&sc).unwrap());
            let steps = 1 + (s_frac * sc.timesteps as f64) as u32;
            let cfg = DdimConfig {
                steps,
                eta,
                spacing,
                clip_x0,
                recompute_eps,
            };
            let plan = Plan::new(&SamplerConfig::Ddim(cfg), sc.timesteps).unwrap();
            let k = (k_frac * plan.len() as f64) as usize;
            let (t, prev) = plan.step(k).unwrap();
            let t_in = t as f32 / sc.timesteps as f32;
            let mut eps = vec![0.0f32; 784];
            core.forward(&x, t_in, &mut eps).unwrap();
            let mut stepped = x.clone();
            diffusion::ddim_step(&sched, &cfg, t, prev, &mut stepped, &eps, |i| z[i]).unwrap();
            let shape = [1, 1, 28, 28];
            let torch = values(&ddpm_torch::sample::ddim_step(
                &sched,
                &cfg,
                t,
                prev,
                &tensor(&x, &shape),
                &tch_eps(&net, &x, t_in),
                &tensor(&z, &shape),
            ));
            within(
                format!("{path:?}, S = {steps}, step {k}: t = {t}, prev = {prev:?}"),
                rel_err(&stepped, &torch),
                STEP_WITH_NET_REL,
            )
        },
    );
}

/// A whole trajectory, each side driven by its own forward pass, max |tch − core| / max |tch|
/// after the last step. The steps agree to 2 ulp, so the difference is the forward passes'
/// summation order fed back through the steps. With a fresh initialisation or a 16-step smoke
/// fit it stays put (measured 8.9e-7 and 1.6e-6), but a trained model amplifies it along some
/// trajectories, and how much depends on the model. The committed model
/// (models/tiny_unet_mnist.ddpm: widths 24/64/56, four mid blocks, batch 16, 41,250 steps,
/// v-prediction) measured on the fast path: DDIM η 0 ≤ 5.4e-6 (seeds 0–3), DDIM η 1 1.3e-6,
/// 1.94e-5, 4.9e-6 and 1.8e-6 (seeds 0–3), DDPM ≤ 6.5e-7 (seeds 0–1); on the reference path
/// DDIM η 0 ≤ 4.7e-6 (seeds 0 and 3). The same network trained on ε (the previous committed
/// model) measured up to 1.74e-4 (DDIM η 1, seed 3): v keeps x0 better conditioned at the
/// noisiest steps, where ε-prediction divides forward-pass differences by √ᾱ_t. The model
/// before (widths 32/64/56, three mid blocks) reached
/// 2.52e-4 with DDIM η 0 on seed 3 (fast path; 6.6e-5 on the reference path, so the
/// amplification is the trajectory's, not one path's); the ones before stayed below 9.6e-5.
/// The bound is 2× the worst seen over these models; a wrong step or forward pass gives errors
/// of order 1.
const TRAJECTORY_REL: f32 = 5e-4;

/// The committed TinyUNet, written by `trainer fit --arch tiny` (see the README).
const DEFAULT_TINY_MODEL: &str = "models/tiny_unet_mnist.ddpm";

/// The TinyUNet the trajectories run: the model file named by `DDPM_EQUIVALENCE_TINY_MODEL`
/// (e.g. one from `trainer fit --arch tiny`), else the committed model when present, else the
/// default TinyUNet freshly initialised by the trainer (seed 0).
fn trajectory_model() -> (String, tch::nn::VarStore, Net, HostModel) {
    ddpm_equivalence::trajectory_model(
        "DDPM_EQUIVALENCE_TINY_MODEL",
        DEFAULT_TINY_MODEL,
        TinyUNetConfig::DEFAULT,
    )
}

/// DDIM with 50 leading steps at `eta`, with or without x0 clipping (and ε recomputed).
fn ddim50(eta: f32, clip: bool) -> SamplerConfig {
    SamplerConfig::Ddim(DdimConfig {
        steps: 50,
        eta,
        clip_x0: clip,
        recompute_eps: clip,
        ..DdimConfig::default()
    })
}

/// DPM-Solver++(2M) with `steps` linspace steps (diffusers' default spacing for it).
fn dpm(steps: u32) -> SamplerConfig {
    SamplerConfig::DpmSolver2M(ddpm_core::diffusion::SolverConfig {
        steps,
        spacing: ddpm_core::diffusion::Spacing::Linspace,
    })
}

/// UniPC (bh2, order 2) with `steps` linspace steps (diffusers' default spacing for it).
fn unipc(steps: u32) -> SamplerConfig {
    SamplerConfig::UniPc(ddpm_core::diffusion::SolverConfig {
        steps,
        spacing: ddpm_core::diffusion::Spacing::Linspace,
    })
}

/// Prints one sampler's per-seed errors and asserts each within [`TRAJECTORY_REL`]; returns
/// the largest.
fn check_trajectories(name: &str, path: Path, seeds: &[u64], errs: &[f32]) -> f32 {
    let shown: Vec<String> = errs.iter().map(|e| format!("{e:.2e}")).collect();
    println!(
        "{name}, core {path:?} path, seeds {seeds:?}: relative error after the last step {} \
         (bound {TRAJECTORY_REL:.0e})",
        shown.join(", ")
    );
    for (s, e) in seeds.iter().zip(errs) {
        assert!(*e <= TRAJECTORY_REL, "{name}, {path:?}, seed {s}: {e:.3e}");
    }
    errs.iter().fold(0.0, |m, &e| m.max(e))
}

#[test]
fn tiny_trajectories_match_trainer() {
    let (what, _vs, net, core) = trajectory_model();
    println!("trajectories: {what}");
    let seeds = [0u64, 1, 2, 3];
    let ddim = |eta| ddim50(eta, false);
    let ddpm = SamplerConfig::Ddpm(DdpmConfig::default());
    let mut worst = 0.0f32;
    for (name, path, cfg, seeds) in [
        ("DDIM 50 steps, eta 0", Path::Fast, ddim(0.0), &seeds[..]),
        ("DDIM 50 steps, eta 1", Path::Fast, ddim(1.0), &seeds[..]),
        ("DDIM 50 steps, eta 0", Path::Reference, ddim(0.0), &[0, 3]),
        ("DDPM all T steps", Path::Fast, ddpm, &seeds[..2]),
        ("DPM-Solver++(2M) 10 steps", Path::Fast, dpm(10), &seeds[..]),
        ("DPM-Solver++(2M) 20 steps", Path::Reference, dpm(20), &[0]),
        ("UniPC 10 steps", Path::Fast, unipc(10), &seeds[..]),
        ("UniPC 20 steps", Path::Reference, unipc(20), &[0]),
    ] {
        let errs = trajectories(&net, &core, path, &cfg, seeds);
        worst = worst.max(check_trajectories(name, path, seeds, &errs));
    }
    println!("trajectories: worst {worst:.3e}");
}

/// The committed guide of the committed TinyUNet: the same run's weights after two of its eleven
/// epochs (`trainer fit --guide-out`, see the README).
const DEFAULT_TINY_GUIDE: &str = "models/tiny_unet_mnist_guide.ddpm";

/// The guidance weight the README's figures use.
const README_GUIDANCE: f32 = 2.5;

/// Guided trajectories (the committed model and its guide, or `DDPM_EQUIVALENCE_TINY_GUIDE`;
/// freshly initialised networks when the files are absent): each side guides its own
/// network's output with its own guide's, so every step carries two forward passes' rounding
/// differences, combined as w·d_model − (w − 1)·d_guide, up to (2w − 1) = 4× one pass's at
/// w = 2.5. Held to the unguided bound [`TRAJECTORY_REL`] (measured: see the test's output).
#[test]
fn tiny_guided_trajectories_match_trainer() {
    let (what, _vs, net, core) = trajectory_model();
    let (guide_what, _gvs, guide_net, guide_core) = ddpm_equivalence::trajectory_model(
        "DDPM_EQUIVALENCE_TINY_GUIDE",
        DEFAULT_TINY_GUIDE,
        TinyUNetConfig {
            widths: [16, 32, 32],
            ..TinyUNetConfig::DEFAULT
        },
    );
    println!("guided trajectories: {what}, guided by {guide_what}, w = {README_GUIDANCE}");
    let seeds = [0u64, 1, 2, 3];
    let ddim = |eta| ddim50(eta, true);
    let guide = (
        &guide_net as &dyn ddpm_equivalence::TchNet,
        &guide_core,
        README_GUIDANCE,
    );
    let mut worst = 0.0f32;
    for (name, path, cfg, seeds) in [
        ("DDIM 50 steps, eta 1", Path::Fast, ddim(1.0), &seeds[..]),
        ("DDIM 50 steps, eta 0", Path::Fast, ddim(0.0), &seeds[..2]),
        (
            "DDIM 50 steps, eta 1",
            Path::Reference,
            ddim(1.0),
            &seeds[..1],
        ),
        (
            "DPM-Solver++(2M) 10 steps",
            Path::Fast,
            dpm(10),
            &seeds[..2],
        ),
        ("UniPC 10 steps", Path::Fast, unipc(10), &seeds[..2]),
    ] {
        let errs = guided_trajectories(&net, &core, Some(guide), path, &cfg, seeds);
        let clipped = match cfg {
            SamplerConfig::Ddim(d) if d.clip_x0 => ", x0 clipped",
            _ => "",
        };
        let name = format!("guided {name}{clipped}");
        worst = worst.max(check_trajectories(&name, path, seeds, &errs));
    }
    println!("guided trajectories: worst {worst:.3e}");
}

/// The committed class-conditional TinyUNet (`trainer fit --conditional`, see docs/trainer.md).
const DEFAULT_TINY_CONDITIONAL: &str = "models/tiny_unet_mnist_cond.ddpm";

/// Classifier-free guidance trajectories: each side runs its network labelled with the class
/// and guides it by the same network's "no class" output (`uncond + w·(cond − uncond)`), the
/// arithmetic of autoguidance with the unconditional pass as the guide, so the bound is
/// [`TRAJECTORY_REL`] as for [`tiny_guided_trajectories_match_trainer`]. The committed
/// conditional model (or `DDPM_EQUIVALENCE_TINY_CONDITIONAL`; a freshly initialised
/// conditional TinyUNet when absent), four seeds of four different digits.
#[test]
fn tiny_classifier_free_guided_trajectories_match_trainer() {
    let (what, _vs, net, core) = ddpm_equivalence::trajectory_model(
        "DDPM_EQUIVALENCE_TINY_CONDITIONAL",
        DEFAULT_TINY_CONDITIONAL,
        TinyUNetConfig {
            classes: 10,
            ..TinyUNetConfig::DEFAULT
        },
    );
    assert!(
        matches!(core.config(), ddpm_core::ModelConfig::TinyUNet(c) if c.classes == 10),
        "{what}: not a 10-class conditional TinyUNet"
    );
    let w = README_CFG;
    println!("classifier-free guided trajectories: {what}, w = {w}");
    let mut worst = 0.0f32;
    for (name, path, cfg, seeds, class) in [
        (
            "DDIM 50 steps, eta 1",
            Path::Fast,
            ddim50(1.0, true),
            &[0u64, 1][..],
            7,
        ),
        (
            "DDIM 50 steps, eta 1",
            Path::Reference,
            ddim50(1.0, true),
            &[2][..],
            3,
        ),
        ("UniPC 10 steps", Path::Fast, unipc(10), &[3, 4][..], 0),
    ] {
        let labelled = ddpm_equivalence::Labelled::new(&net, &vec![class; seeds.len()]);
        let mut cond = core.clone();
        cond.set_class(Some(class)).unwrap();
        let guide = (&net as &dyn ddpm_equivalence::TchNet, &core, w);
        let errs = guided_trajectories(&labelled, &cond, Some(guide), path, &cfg, seeds);
        let name = format!("class {class}, guided {name}");
        worst = worst.max(check_trajectories(&name, path, seeds, &errs));
    }
    println!("classifier-free guided trajectories: worst {worst:.3e}");
}

/// The classifier-free guidance weight the README's class-conditional figures use (`trainer
/// sample --class` without `--cfg`).
const README_CFG: f32 = 2.0;

/// A ring of radius 8 around the centre of a 28×28 image, in [−1, 1] (background −1): a stand-in
/// digit to complete.
fn ring() -> Vec<f32> {
    (0..28 * 28)
        .map(|i| {
            let (y, x) = ((i / 28) as f32 - 13.5, (i % 28) as f32 - 13.5);
            if ((x * x + y * y).sqrt() - 8.0).abs() < 2.0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
}

/// Inpainting (RePaint) trajectories: the committed TinyUNet and its guide complete the top
/// half of a ring on both sides, each side pasting the known pixels and jumping back with its
/// own arithmetic, with resampling (a multistep solver's history saved and restored by each
/// side its own way) and without. Pasting and jumping back are affine maps of x with
/// coefficients below 1 applied elementwise, so they add a rounding per element and no
/// amplification: held to [`TRAJECTORY_REL`] as plain sampling is (measured: the output).
#[test]
fn tiny_inpainting_trajectories_match_trainer() {
    let (what, _vs, net, core) = trajectory_model();
    let (_, _gvs, guide_net, guide_core) = ddpm_equivalence::trajectory_model(
        "DDPM_EQUIVALENCE_TINY_GUIDE",
        DEFAULT_TINY_GUIDE,
        TinyUNetConfig {
            widths: [16, 32, 32],
            ..TinyUNetConfig::DEFAULT
        },
    );
    println!("inpainting trajectories: {what}, guided, w = {README_GUIDANCE}");
    let known = ring();
    let mask: Vec<f32> = (0..28 * 28)
        .map(|i| if i < 14 * 28 { 0.0 } else { 1.0 })
        .collect();
    let guide = (
        &guide_net as &dyn ddpm_equivalence::TchNet,
        &guide_core,
        README_GUIDANCE,
    );
    let r = |resample, jump| diffusion::Resampling { resample, jump };
    let mut worst = 0.0f32;
    for (name, cfg, resampling, seeds) in [
        (
            "DDIM 50 steps, eta 1",
            ddim50(1.0, true),
            r(2, 5),
            &[0u64, 1][..],
        ),
        ("DDIM 50 steps, eta 0", ddim50(0.0, true), r(1, 1), &[2][..]),
        ("UniPC 10 steps", unipc(10), r(3, 2), &[3][..]),
        ("DPM-Solver++(2M) 10 steps", dpm(10), r(2, 3), &[4][..]),
    ] {
        let errs = inpaint_trajectories(
            &net,
            &core,
            Some(guide),
            Path::Fast,
            &cfg,
            seeds,
            Some((&known, &mask, resampling)),
        );
        let name = format!(
            "inpainting, guided {name}, resample {} jump {}",
            resampling.resample, resampling.jump
        );
        worst = worst.max(check_trajectories(&name, Path::Fast, seeds, &errs));
    }
    println!("inpainting trajectories: worst {worst:.3e}");
}
