//! DPM-Solver++(2M) against golden vectors from diffusers' `DPMSolverMultistepScheduler`
//! (`tools/golden_solvers/make_solver_golden.py`, which records the diffusers version): the
//! timestep lists exactly, and one deterministic trajectory per case within a relative
//! tolerance; plus typed errors, never panics, on random configurations.

mod common;

use common::solver_golden::{
    any_spacing, check_trajectories, fnv1a64, model_output, parse, spacing, Json,
};
use ddpm_core::diffusion::{
    dpm_step, DpmOrder, DpmPlan, DpmTimesteps, Prediction, Schedule, ScheduleConfig, Spacing,
};
use ddpm_core::error::Error;
use proptest::prelude::*;

const GOLDEN: &str = include_str!("../../tools/golden_solvers/dpm_solver_golden.json");

/// Largest relative deviation (max |x − golden| / max |golden| over the 16 values, after any
/// step) allowed between this crate's f32 trajectory and diffusers' float64 one. Both use the
/// same f32 ᾱ table, so what separates them is f32 arithmetic only: the step coefficients are
/// computed in f64 and rounded once, but x0 = (x − σ·ε)/α, the model output and the affine
/// update run in f32 (a few ulps, ~2e-7, per step), and the ε prediction at the noisiest
/// timesteps divides by α = √ᾱ (1.6e-4 for the cosine schedule at t = 299), which scales a
/// rounding of x or σ·ε up relative to x0; the error then carries through up to 20 steps.
/// diffusers' own float32 run of the same cases deviates by up to 8.2e-7 (recorded per case).
const TRAJECTORY_TOL: f64 = 1e-6;

fn golden() -> Json {
    parse(GOLDEN)
}

#[test]
fn golden_file_is_what_this_test_expects() {
    let g = golden();
    assert_eq!(g.get("diffusers_version").str(), "0.35.2");
    assert_eq!(g.get("T").num(), 300.0);
    assert_eq!(g.get("x_T").arr().len(), 16);
    // 2 schedules × 2 predictions × 3 spacings × 3 step counts.
    assert_eq!(g.get("cases").arr().len(), 36);
}

#[test]
fn timesteps_match_diffusers() {
    let g = golden();
    let big_t = g.get("T").num() as u32;
    for case in g.get("cases").arr() {
        let n = case.get("steps").num() as u32;
        let sp = spacing(case.get("spacing").str());
        let ours: Vec<u32> = DpmTimesteps::new(big_t, n, sp).unwrap().iter().collect();
        assert_eq!(ours, case.get("timesteps").u32s(), "{n} steps {sp:?}");
    }
}

#[test]
fn timesteps_match_diffusers_for_every_step_count() {
    // Every N in 1..=T for T = 300 and 1000: FNV-1a over N and the list, as the generator hashes
    // diffusers' lists (cut to N entries where diffusers' trailing list has a spurious −1).
    let g = golden();
    let prints = g.get("timestep_fingerprints").arr();
    assert_eq!(prints.len(), 6);
    for p in prints {
        let big_t = p.get("T").num() as u32;
        let sp = spacing(p.get("spacing").str());
        let mut h = 0xCBF29CE484222325u64;
        for n in 1..=big_t {
            fnv1a64(&mut h, n);
            let list = DpmTimesteps::new(big_t, n, sp).unwrap();
            assert_eq!(list.iter().count(), n as usize);
            for t in list.iter() {
                fnv1a64(&mut h, t);
            }
        }
        assert_eq!(
            format!("{h:016x}"),
            p.get("fnv1a64").str(),
            "T {big_t} {sp:?}"
        );
    }
}

#[test]
fn trajectories_match_diffusers() {
    let g = golden();
    let big_t = g.get("T").num() as u32;
    check_trajectories(&g, TRAJECTORY_TOL, |name, sched, n, sp, rows, x| {
        let pred = sched.config().prediction;
        let plan = DpmPlan::new(sched, n, sp).unwrap();
        assert_eq!(rows, plan.len(), "{name}");
        // Poisoned: the first step is of first order and must not read the history.
        let mut history = vec![f32::NAN; x.len()];
        let mut out_rows = Vec::new();
        for k in 0..rows {
            let step = plan.step(sched, k).unwrap();
            let expect_order = if k == 0 || k + 1 == plan.len() {
                DpmOrder::First
            } else {
                DpmOrder::Second
            };
            assert_eq!(step.order, expect_order, "{name} step {k}");
            let out: Vec<f32> = x.iter().map(|&v| model_output(v, step.t, big_t)).collect();
            dpm_step(&step, pred, x, &out, &mut history).unwrap();
            out_rows.push(x.clone());
        }
        out_rows
    });
}

#[test]
fn the_final_step_returns_x0_and_the_history_is_the_previous_x0() {
    let sched: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    let plan = DpmPlan::new(&sched, 3, Spacing::Trailing).unwrap();
    let last = plan.step(&sched, 2).unwrap();
    assert_eq!(last.t_prev, None);
    assert_eq!((last.cx, last.c0, last.c1), (0.0, 1.0, 0.0));
    let (mut x, out, mut hist) = ([0.3f32, -0.7], [0.1f32, 0.2], [5.0f32, 6.0]);
    dpm_step(&last, Prediction::Eps, &mut x, &out, &mut hist).unwrap();
    let acp = sched.alphas_cumprod()[last.t as usize];
    let x0 = (0.3 - (1.0 - acp).sqrt() * 0.1) / acp.sqrt();
    assert!((x[0] - x0).abs() <= 1e-6 * x0.abs(), "{} vs {x0}", x[0]);
    assert_eq!(x, hist, "the history holds this step's x0");
    // A second-order step's coefficients are an affine combination in (x0, x0_prev).
    let mid = plan.step(&sched, 1).unwrap();
    assert_eq!(mid.order, DpmOrder::Second);
    assert!(mid.c1 < 0.0 && mid.c0 > 0.0);
}

#[test]
fn errors_are_typed() {
    let sched: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    for sp in [Spacing::Linspace, Spacing::Leading, Spacing::Trailing] {
        assert!(matches!(
            DpmTimesteps::new(300, 0, sp),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            DpmPlan::new(&sched, 301, sp),
            Err(Error::InvalidConfig(_))
        ));
    }
    // linspace(0, 299, 301) repeats timesteps: diffusers would divide by h = 0.
    assert!(matches!(
        DpmPlan::new(&sched, 300, Spacing::Linspace),
        Err(Error::InvalidConfig(_))
    ));
    let plan = DpmPlan::new(&sched, 10, Spacing::Leading).unwrap();
    assert!(plan.step(&sched, 10).is_err());
    let other: Schedule = Schedule::new(&ScheduleConfig::linear(200, 1e-4, 0.02)).unwrap();
    assert!(plan.step(&other, 0).is_err());
    let step = plan.step(&sched, 1).unwrap();
    let mut x = [0.0f32; 4];
    assert_eq!(
        dpm_step(&step, Prediction::Eps, &mut x, &[0.0; 4], &mut [0.0; 3]),
        Err(Error::BufferSize {
            what: "DPM-Solver history",
            needed: 4,
            got: 3
        })
    );
    assert!(dpm_step(&step, Prediction::Eps, &mut x, &[0.0; 5], &mut [0.0; 4]).is_err());
    // β = 1e-8: ᾱ_0 rounds to 1 in f32 (σ = 0, λ = ∞ at t = 0) and neighbouring ᾱ round to
    // the same f32 (h = 0): such steps are errors; 10 steps far apart are finite.
    let flat: Schedule = Schedule::new(&ScheduleConfig::linear(300, 1e-8, 1e-8)).unwrap();
    assert_eq!(flat.alphas_cumprod()[0], 1.0);
    let plan = DpmPlan::new(&flat, 300, Spacing::Trailing).unwrap();
    assert_eq!(plan.timesteps().get(299), Some(0));
    assert!(matches!(
        plan.step(&flat, 299),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        plan.step(&flat, 100),
        Err(Error::InvalidConfig(_))
    ));
    let plan = DpmPlan::new(&flat, 10, Spacing::Trailing).unwrap();
    for k in 0..10 {
        let s = plan.step(&flat, k).unwrap();
        assert!(s.cx.is_finite() && s.c0.is_finite() && s.c1.is_finite());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_configs_give_typed_errors_or_finite_values(
        big_t in 1u32..400,
        steps in 0u32..400,
        sp in any_spacing(),
        cosine in any::<bool>(),
        v in any::<bool>(),
        len in 1usize..24,
        hist_len in 0usize..24,
        seed in any::<u32>(),
    ) {
        let cfg = if cosine { ScheduleConfig::cosine(big_t) } else { ScheduleConfig::linear(big_t, 1e-4, 0.02) };
        let pred = if v { Prediction::V } else { Prediction::Eps };
        let sched: Schedule = Schedule::new(&cfg.predicting(pred)).unwrap();
        match DpmTimesteps::new(big_t, steps, sp) {
            Err(e) => prop_assert!(matches!(e, Error::InvalidConfig(_)) && (steps == 0 || steps > big_t)),
            Ok(list) => {
                prop_assert_eq!(list.iter().count(), steps as usize);
                prop_assert!(list.iter().all(|t| t < big_t));
            }
        }
        let plan = match DpmPlan::new(&sched, steps, sp) {
            Ok(p) => p,
            Err(e) => {
                prop_assert!(matches!(e, Error::InvalidConfig(_)));
                return Ok(());
            }
        };
        let mut x: Vec<f32> = (0..len).map(|i| ((seed as usize + i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
        let mut hist = vec![0.0f32; hist_len];
        for k in 0..plan.len() {
            let step = match plan.step(&sched, k) {
                Ok(s) => s,
                Err(e) => {
                    prop_assert!(matches!(e, Error::InvalidConfig(_)));
                    return Ok(());
                }
            };
            prop_assert!(step.cx.is_finite() && step.c0.is_finite() && step.c1.is_finite());
            let out: Vec<f32> = x.iter().map(|&v| model_output(v, step.t, big_t)).collect();
            match dpm_step(&step, pred, &mut x, &out, &mut hist) {
                Ok(()) => prop_assert!(x.iter().chain(&hist).all(|v| v.is_finite())),
                Err(e) => {
                    prop_assert!(hist_len != len);
                    prop_assert!(matches!(e, Error::BufferSize { .. }), "{:?}", e);
                    return Ok(());
                }
            }
        }
        prop_assert!(plan.step(&sched, plan.len()).is_err());
    }
}

/// The sampling driver runs DPM-Solver++(2M) on any network: over a model file's network it
/// equals the step functions applied by hand, bit for bit, and it refuses a history of the
/// wrong length (or none) with a typed error.
#[test]
fn the_driver_runs_dpm_solver_with_a_history_and_refuses_a_wrong_one() {
    use ddpm_core::diffusion::{
        sample_batch, sample_batch_with_history, GaussianNoise, SamplerConfig, SolverConfig,
        WholeImages,
    };
    use ddpm_core::host::HostModel;
    use ddpm_core::{ModelConfig, ScheduleConfig, SimpleUNetConfig};
    let cfg = SimpleUNetConfig {
        channels: 1,
        height: 6,
        width: 5,
        hidden1: 4,
        hidden2: 6,
    };
    let bytes = {
        let mut w = ddpm_core::file::ModelWriter::new(
            ModelConfig::SimpleUNet(cfg),
            ScheduleConfig::cosine(50),
            "",
        );
        for spec in cfg.tensor_specs().iter() {
            let data: Vec<f32> = (0..spec.numel())
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 16.0)
                .collect();
            w.push_f32(spec.name, spec.dims(), &data).unwrap();
        }
        w.finish()
    };
    let mut model = HostModel::from_bytes(&bytes).unwrap();
    let sched = model.schedule().clone();
    let len = cfg.image_len();
    let sampler = SamplerConfig::DpmSolver2M(SolverConfig {
        steps: 7,
        spacing: Spacing::Linspace,
    });
    // By the driver.
    let mut eps = vec![0.0f32; len];
    let mut x = vec![0.0f32; len];
    let mut history = vec![0.0f32; len];
    let mut noise = [GaussianNoise::new(5)];
    {
        let mut net = WholeImages::new(&mut model, &mut eps).unwrap();
        sample_batch_with_history(&mut net, &sched, &sampler, &mut noise, &mut x, &mut history)
            .unwrap();
    }
    // By hand.
    let plan = DpmPlan::new(&sched, 7, Spacing::Linspace).unwrap();
    let mut y = vec![0.0f32; len];
    GaussianNoise::new(5).fill(&mut y);
    let mut h = vec![0.0f32; len];
    for k in 0..plan.len() {
        let st = plan.step(&sched, k).unwrap();
        let t_in = st.t as f32 / 50.0;
        ddpm_core::diffusion::Denoiser::predict_noise(&mut model, &y, t_in, &mut eps).unwrap();
        dpm_step(&st, sched.config().prediction, &mut y, &eps, &mut h).unwrap();
    }
    assert_eq!(x, y);
    assert!(x.iter().all(|v| v.is_finite()));
    // No history, or one of the wrong length: typed errors.
    let mut net = WholeImages::new(&mut model, &mut eps).unwrap();
    let e = sample_batch(&mut net, &sched, &sampler, &mut noise, &mut x).unwrap_err();
    assert!(matches!(e, Error::BufferSize { .. }), "{e:?}");
    let mut short = vec![0.0f32; len - 1];
    let e = sample_batch_with_history(&mut net, &sched, &sampler, &mut noise, &mut x, &mut short)
        .unwrap_err();
    assert!(matches!(e, Error::BufferSize { .. }), "{e:?}");
}
