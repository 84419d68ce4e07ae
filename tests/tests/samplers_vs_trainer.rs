//! The trainer's tch sampler steps (`--backend torch`) against the core's step functions, fed the
//! same x_t, ε and z; and whole DDIM trajectories, each side driven by its own network.

use ddpm_core::diffusion::{
    self, DdimConfig, DdpmConfig, DdpmVariance, Plan, SamplerConfig, Spacing,
};
use ddpm_core::host::{HostModel, Path};
use ddpm_core::{Prediction, Schedule, ScheduleConfig, SimpleUNetConfig};
use ddpm_equivalence::{check_property, gaussian, rel_err, tensor, trajectories, values, within};
use ddpm_torch::model::Net;
use proptest::prelude::*;
use tch::nn;

/// One sampler step, max |tch − core| / max |core|. Both sides evaluate the same f32 formula
/// with the same f32 coefficients from the core's schedule; the issue asks for 1e-6, and a
/// reordering of one f32 multiply-add (libtorch fusing `a·x + b` differently) stays below
/// 2 ulp ≈ 2.4e-7 of the output's magnitude.
const STEP_REL: f32 = 1e-6;

/// Image size of the step properties: one MNIST image.
const LEN: usize = 784;

/// Linear (the seed's β range) or cosine, T ∈ {10, 300, 1000}, for a network that predicts ε
/// or v (the steps read the output as the schedule says).
fn schedule_config() -> impl Strategy<Value = ScheduleConfig> {
    (
        any::<bool>(),
        prop_oneof![Just(300u32), Just(10), Just(1000)],
        prop_oneof![Just(Prediction::Eps), Just(Prediction::V)],
    )
        .prop_map(|(cos, t, p)| {
            if cos {
                ScheduleConfig::cosine(t)
            } else {
                ScheduleConfig::linear(t, 1e-4, 0.02)
            }
            .predicting(p)
        })
}

/// x_t, ε and z drawn from three seeds; x_t scaled by up to 3 (ε and z stay standard normal).
fn step_inputs(seeds: (u64, u64, u64), x_scale: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = gaussian(seeds.0, LEN).iter().map(|v| v * x_scale).collect();
    (x, gaussian(seeds.1, LEN), gaussian(seeds.2, LEN))
}

#[test]
fn ddpm_step_matches_trainer() {
    let strategy = (
        schedule_config(),
        0.0f64..1.0,
        prop_oneof![
            Just(DdpmVariance::FixedLarge),
            Just(DdpmVariance::FixedSmall)
        ],
        any::<bool>(),
        any::<(u64, u64, u64)>(),
        0.0f32..=3.0,
    );
    check_property(
        "one DDPM step, tch vs core",
        STEP_REL as f64,
        strategy,
        |(sc, t_frac, variance, clip_x0, seeds, x_scale)| {
            let sched: Box<Schedule> = Box::new(Schedule::new(&sc).unwrap());
            let t = (t_frac * sc.timesteps as f64) as u32;
            let cfg = DdpmConfig { variance, clip_x0 };
            let (x, e, z) = step_inputs(seeds, x_scale);
            let mut core = x.clone();
            diffusion::ddpm_step(&sched, &cfg, t, &mut core, &e, |i| z[i]).unwrap();
            let shape = [1, 1, 28, 28];
            let torch = values(&ddpm_torch::sample::ddpm_step(
                &sched,
                &cfg,
                t,
                &tensor(&x, &shape),
                &tensor(&e, &shape),
                &tensor(&z, &shape),
            ));
            within(format!("t = {t}"), rel_err(&torch, &core), STEP_REL)
        },
    );
}

#[test]
fn ddim_step_matches_trainer() {
    let strategy = (
        schedule_config(),
        prop_oneof![Just(0.0f32), Just(1.0)],
        prop_oneof![
            Just(Spacing::Leading),
            Just(Spacing::Trailing),
            Just(Spacing::Linspace)
        ],
        0.0f64..1.0,
        0.0f64..1.0,
        (any::<bool>(), any::<bool>()),
        any::<(u64, u64, u64)>(),
        0.0f32..=3.0,
    );
    check_property(
        "one DDIM step (eta 0 and 1, three spacings, random S), tch vs core",
        STEP_REL as f64,
        strategy,
        |(sc, eta, spacing, s_frac, k_frac, (clip_x0, recompute_eps), seeds, x_scale)| {
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
            let (x, e, z) = step_inputs(seeds, x_scale);
            let mut core = x.clone();
            diffusion::ddim_step(&sched, &cfg, t, prev, &mut core, &e, |i| z[i]).unwrap();
            let shape = [1, 1, 28, 28];
            let torch = values(&ddpm_torch::sample::ddim_step(
                &sched,
                &cfg,
                t,
                prev,
                &tensor(&x, &shape),
                &tensor(&e, &shape),
                &tensor(&z, &shape),
            ));
            within(
                format!("S = {steps}, step {k}: t = {t}, prev = {prev:?}"),
                rel_err(&torch, &core),
                STEP_REL,
            )
        },
    );
}

/// A whole 50-step DDIM trajectory, each side driven by its own forward pass, max |tch − core| /
/// max |tch| after the last step. The steps themselves agree bit for bit (the properties
/// above), so all of the difference is the forward passes' f32 summation order (≤ 4.4e-6 of
/// |ε| per pass, FORWARD_REL in forward_vs_trainer.rs), fed back through 50 steps. With a fresh
/// trainer initialisation or a model trained for one epoch the differences stay put: measured
/// 1.2e-6 and 1.0e-6 worst. The trained default model (models/simple_unet_mnist.ddpm, 5 epochs)
/// amplifies them along some trajectories: seed 3 (η = 0) ends at 7.4e-6 on the reference
/// path, 1.16e-5 on the earlier im2col/matrixmultiply fast path and 1.46e-5 on the AVX2
/// Winograd fast path, while per-pass differences stay below 5e-7 of |ε|. The bound is 2× the
/// worst seen; a wrong step or forward pass gives errors of order 1.
const TRAJECTORY_REL: f32 = 3e-5;

/// The trained default model, written by `trainer fit` (see the README).
const DEFAULT_MODEL: &str = "models/simple_unet_mnist.ddpm";

/// The model the trajectories run: the file named by `DDPM_EQUIVALENCE_MODEL`, else the trained
/// default model when present, else a SimpleUNet freshly initialised by the trainer (seed 0).
fn trajectory_model() -> (String, nn::VarStore, Net, HostModel) {
    ddpm_equivalence::trajectory_model(
        "DDPM_EQUIVALENCE_MODEL",
        DEFAULT_MODEL,
        SimpleUNetConfig::SEED,
    )
}

#[test]
fn ddim_50_step_trajectories_match_trainer() {
    let (what, _vs, net, core) = trajectory_model();
    println!("trajectories: {what}");
    let seeds = [0u64, 1, 2, 3];
    let mut worst = 0.0f32;
    for (path, eta, seeds) in [
        (Path::Fast, 0.0f32, &seeds[..]),
        (Path::Fast, 1.0, &seeds[..]),
        (Path::Reference, 0.0, &seeds[..1]),
    ] {
        let cfg = DdimConfig {
            steps: 50,
            eta,
            ..DdimConfig::default()
        };
        let errs = trajectories(&net, &core, path, &SamplerConfig::Ddim(cfg), seeds);
        let shown: Vec<String> = errs.iter().map(|e| format!("{e:.2e}")).collect();
        println!(
            "DDIM 50 steps, eta {eta}, core {path:?} path, seeds {seeds:?}: relative error after \
             the last step {} (bound {TRAJECTORY_REL:.0e})",
            shown.join(", ")
        );
        for (s, e) in seeds.iter().zip(&errs) {
            assert!(
                *e <= TRAJECTORY_REL,
                "{path:?}, eta {eta}, seed {s}: {e:.3e}"
            );
            worst = worst.max(*e);
        }
    }
    println!("trajectories: worst {worst:.3e}");
}
