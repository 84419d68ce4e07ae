//! UniPC against golden vectors from diffusers' `UniPCMultistepScheduler`
//! (`tools/golden_solvers/make_solver_golden.py`, which records the diffusers version): the
//! timestep lists exactly, one deterministic trajectory per case within a relative tolerance;
//! the driver equals the step function applied by hand; typed errors, never panics, on random
//! configurations.

mod common;

use common::solver_golden::{
    any_spacing, check_trajectories, fnv1a64, model_output, parse, spacing, Json,
};
use ddpm_core::diffusion::{
    unipc_step, DpmOrder, DpmTimesteps, Prediction, Schedule, ScheduleConfig, SolverConfig,
    Spacing, UniPcPlan,
};
use ddpm_core::error::Error;
use proptest::prelude::*;

const GOLDEN: &str = include_str!("../../tools/golden_solvers/unipc_golden.json");

/// Largest relative deviation (max |x − golden| / max |golden| over the 16 values, after any
/// step) between this crate's f32 trajectory and diffusers' float64 one: the bound of the
/// DPM-Solver++ test (`dpm_solver.rs`, which explains it) for the same reasons; UniPC's
/// corrector adds one more f32 affine map per step and keeps its fixed part in f32 between
/// steps (diffusers keeps the corrected image and both x0 instead), a few ulps more. diffusers'
/// own float32 run of the same cases deviates by up to 5.2e-7 (recorded per case).
const TRAJECTORY_TOL: f64 = 1e-6;

fn golden() -> Json {
    parse(GOLDEN)
}

#[test]
fn golden_file_is_what_this_test_expects() {
    let g = golden();
    assert_eq!(g.get("diffusers_version").str(), "0.35.2");
    assert!(g
        .get("scheduler")
        .str()
        .starts_with("UniPCMultistepScheduler: bh2"));
    assert_eq!(g.get("T").num(), 300.0);
    assert_eq!(g.get("x_T").arr().len(), 16);
    // 2 schedules × 2 predictions × 3 spacings × 3 step counts.
    assert_eq!(g.get("cases").arr().len(), 36);
}

#[test]
fn timesteps_match_diffusers() {
    // diffusers' UniPC lists are DPM-Solver's formulas; checked against UniPC's own lists.
    let g = golden();
    let big_t = g.get("T").num() as u32;
    for case in g.get("cases").arr() {
        let n = case.get("steps").num() as u32;
        let sp = spacing(case.get("spacing").str());
        let plan = UniPcPlan::for_train_steps(big_t, n, sp).unwrap();
        let ours: Vec<u32> = plan.timesteps().iter().collect();
        assert_eq!(ours, case.get("timesteps").u32s(), "{n} steps {sp:?}");
    }
    for p in g.get("timestep_fingerprints").arr() {
        let big_t = p.get("T").num() as u32;
        let sp = spacing(p.get("spacing").str());
        let mut h = 0xCBF29CE484222325u64;
        for n in 1..=big_t {
            fnv1a64(&mut h, n);
            for t in DpmTimesteps::new(big_t, n, sp).unwrap().iter() {
                fnv1a64(&mut h, t);
            }
        }
        let want = p.get("fnv1a64").str();
        assert_eq!(format!("{h:016x}"), want, "T {big_t} {sp:?}");
    }
}

#[test]
fn trajectories_match_diffusers() {
    let g = golden();
    let big_t = g.get("T").num() as u32;
    check_trajectories(&g, TRAJECTORY_TOL, |name, sched, n, sp, rows, x| {
        let pred = sched.config().prediction;
        let plan = UniPcPlan::new(sched, n, sp).unwrap();
        assert_eq!(rows, plan.len(), "{name}");
        // Poisoned: the first step neither corrects nor reads the previous x0.
        let (mut m, mut c) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
        let mut out_rows = Vec::new();
        for k in 0..rows {
            let step = plan.step(sched, k).unwrap();
            let expect_order = if k == 0 || k + 1 == plan.len() {
                DpmOrder::First
            } else {
                DpmOrder::Second
            };
            assert_eq!(step.order, expect_order, "{name} step {k}");
            assert_eq!(step.k_corr.is_some(), k > 0, "{name} step {k}");
            let out: Vec<f32> = x.iter().map(|&v| model_output(v, step.t, big_t)).collect();
            unipc_step(&step, pred, x, &out, &mut m, &mut c).unwrap();
            out_rows.push(x.clone());
        }
        out_rows
    });
}

#[test]
fn the_final_step_returns_x0_and_the_corrector_uses_the_new_x0() {
    let sched: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    let plan = UniPcPlan::new(&sched, 4, Spacing::Trailing).unwrap();
    let last = plan.step(&sched, 3).unwrap();
    assert_eq!(last.t_prev, None);
    assert_eq!((last.cx, last.c0, last.cd), (0.0, 1.0, 0.0));
    let (mut x, out, mut m, mut c) = ([0.3f32, -0.7], [0.1f32, 0.2], [5.0f32, 6.0], [1.0, 2.0]);
    unipc_step(&last, Prediction::Eps, &mut x, &out, &mut m, &mut c).unwrap();
    let acp = sched.alphas_cumprod()[last.t as usize];
    let x0 = (0.3 - (1.0 - acp).sqrt() * 0.1) / acp.sqrt();
    assert!((x[0] - x0).abs() <= 1e-6 * x0.abs(), "{} vs {x0}", x[0]);
    assert_eq!(
        x, m,
        "the final image is this step's x0, which the history keeps"
    );
    // The corrector moves the image by −k·(x0 − m): with the same x, ε and c, a different
    // previous x0 changes the result of a corrected step by k·cx·Δm (first-order predictor).
    let mid = plan.step(&sched, 1).unwrap();
    let k = mid.k_corr.unwrap();
    assert!(k.is_finite() && k != 0.0);
    let a = mid.apply(Prediction::Eps, 0.3, 0.1, 0.0, 0.2).0;
    let b = mid.apply(Prediction::Eps, 0.3, 0.1, 0.01, 0.2).0;
    let moved = (b - a) as f64;
    let second = mid.order == DpmOrder::Second;
    let want = 0.01 * (k * mid.cx + if second { mid.cd } else { 0.0 }) as f64;
    assert!((moved - want).abs() <= 1e-6, "{moved} vs {want}");
}

#[test]
fn errors_are_typed() {
    let sched: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    for sp in [Spacing::Linspace, Spacing::Leading, Spacing::Trailing] {
        for n in [0, 301] {
            assert!(matches!(
                UniPcPlan::new(&sched, n, sp),
                Err(Error::InvalidConfig(_))
            ));
        }
    }
    assert!(matches!(
        UniPcPlan::new(&sched, 300, Spacing::Linspace),
        Err(Error::InvalidConfig(_))
    ));
    let plan = UniPcPlan::new(&sched, 10, Spacing::Leading).unwrap();
    assert!(plan.step(&sched, 10).is_err());
    let other: Schedule = Schedule::new(&ScheduleConfig::linear(200, 1e-4, 0.02)).unwrap();
    assert!(plan.step(&other, 0).is_err());
    let step = plan.step(&sched, 2).unwrap();
    let mut x = [0.0f32; 4];
    assert_eq!(
        unipc_step(
            &step,
            Prediction::Eps,
            &mut x,
            &[0.0; 4],
            &mut [0.0; 4],
            &mut [0.0; 3]
        ),
        Err(Error::BufferSize {
            what: "UniPC history (corrector)",
            needed: 4,
            got: 3
        })
    );
    assert!(unipc_step(
        &step,
        Prediction::Eps,
        &mut x,
        &[0.0; 4],
        &mut [0.0; 5],
        &mut [0.0; 4]
    )
    .is_err());
    let flat: Schedule = Schedule::new(&ScheduleConfig::linear(300, 1e-8, 1e-8)).unwrap();
    let plan = UniPcPlan::new(&flat, 300, Spacing::Trailing).unwrap();
    assert!(matches!(
        plan.step(&flat, 299),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        plan.step(&flat, 100),
        Err(Error::InvalidConfig(_))
    ));
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
        m_len in 0usize..24,
        c_len in 0usize..24,
        seed in any::<u32>(),
    ) {
        let cfg = if cosine { ScheduleConfig::cosine(big_t) } else { ScheduleConfig::linear(big_t, 1e-4, 0.02) };
        let pred = if v { Prediction::V } else { Prediction::Eps };
        let sched: Schedule = Schedule::new(&cfg.predicting(pred)).unwrap();
        let plan = match UniPcPlan::new(&sched, steps, sp) {
            Ok(p) => p,
            Err(e) => {
                prop_assert!(matches!(e, Error::InvalidConfig(_)));
                return Ok(());
            }
        };
        prop_assert!(steps >= 1 && steps <= big_t);
        let mut x: Vec<f32> = (0..len).map(|i| ((seed as usize + i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
        let (mut m, mut c) = (vec![0.0f32; m_len], vec![0.0f32; c_len]);
        for k in 0..plan.len() {
            let step = match plan.step(&sched, k) {
                Ok(s) => s,
                Err(e) => {
                    prop_assert!(matches!(e, Error::InvalidConfig(_)));
                    return Ok(());
                }
            };
            let coefs = [step.cx, step.c0, step.cd, step.cd_next, step.k_corr.unwrap_or(0.0)];
            prop_assert!(coefs.iter().all(|c| c.is_finite()));
            let out: Vec<f32> = x.iter().map(|&v| model_output(v, step.t, big_t)).collect();
            match unipc_step(&step, pred, &mut x, &out, &mut m, &mut c) {
                Ok(()) => prop_assert!(x.iter().chain(&m).chain(&c).all(|v| v.is_finite())),
                Err(e) => {
                    prop_assert!(m_len != len || c_len != len);
                    prop_assert!(matches!(e, Error::BufferSize { .. }), "{:?}", e);
                    return Ok(());
                }
            }
        }
        prop_assert!(plan.step(&sched, plan.len()).is_err());
    }

    /// The driver with a random sampler configuration and history length: a typed error or
    /// finite images, never a panic.
    #[test]
    fn the_driver_takes_random_solver_configs(
        unipc in any::<bool>(),
        steps in 0u32..60,
        sp in any_spacing(),
        hist_len in 0usize..80,
        n in 1usize..3,
    ) {
        use ddpm_core::diffusion::{sample_batch_with_history, GaussianNoise, SamplerConfig, WholeImages};
        let mut model = tiny_model();
        let sched = model.schedule().clone();
        let cfg = SolverConfig { steps, spacing: sp };
        let sampler = if unipc { SamplerConfig::UniPc(cfg) } else { SamplerConfig::DpmSolver2M(cfg) };
        let len = 30;
        let mut eps = vec![0.0f32; len];
        let mut x = vec![0.0f32; n * len];
        let mut history = vec![0.0f32; hist_len];
        let mut noise: Vec<GaussianNoise> = (0..n).map(|i| GaussianNoise::new(i as u64)).collect();
        let mut net = WholeImages::new(&mut model, &mut eps).unwrap();
        match sample_batch_with_history(&mut net, &sched, &sampler, &mut noise, &mut x, &mut history) {
            Ok(()) => {
                prop_assert_eq!(hist_len, sampler.history_len(n * len));
                prop_assert!(x.iter().all(|v| v.is_finite()));
            }
            Err(e) => prop_assert!(
                matches!(e, Error::InvalidConfig(_) | Error::BufferSize { .. }),
                "{:?}", e
            ),
        }
    }
}

/// A SimpleUNet on 1×6×5 images with fixed weights over a 50-step cosine schedule.
fn tiny_model() -> ddpm_core::host::HostModel {
    use ddpm_core::{ModelConfig, SimpleUNetConfig};
    let cfg = SimpleUNetConfig {
        channels: 1,
        height: 6,
        width: 5,
        hidden1: 4,
        hidden2: 6,
    };
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
    ddpm_core::host::HostModel::from_bytes(&w.finish()).unwrap()
}

/// The sampling driver runs UniPC on any network: over a model file's network it equals the
/// step function applied by hand, bit for bit (history laid out as [x0 | corrector part]).
#[test]
fn the_driver_runs_unipc_with_a_two_part_history() {
    use ddpm_core::diffusion::{
        sample_batch, sample_batch_with_history, Denoiser, GaussianNoise, SamplerConfig,
        WholeImages,
    };
    let mut model = tiny_model();
    let sched = model.schedule().clone();
    let len = 30;
    let sampler = SamplerConfig::UniPc(SolverConfig {
        steps: 7,
        spacing: Spacing::Linspace,
    });
    assert_eq!(sampler.history_len(2 * len), 4 * len);
    let mut eps = vec![0.0f32; len];
    let mut x = vec![0.0f32; 2 * len];
    let mut history = vec![0.0f32; 4 * len];
    let mut noise = [GaussianNoise::new(5), GaussianNoise::new(6)];
    {
        let mut net = WholeImages::new(&mut model, &mut eps).unwrap();
        sample_batch_with_history(&mut net, &sched, &sampler, &mut noise, &mut x, &mut history)
            .unwrap();
    }
    let plan = UniPcPlan::new(&sched, 7, Spacing::Linspace).unwrap();
    for (i, seed) in [5u64, 6].into_iter().enumerate() {
        let mut y = vec![0.0f32; len];
        GaussianNoise::new(seed).fill(&mut y);
        let (mut m, mut c) = (vec![0.0f32; len], vec![0.0f32; len]);
        for k in 0..plan.len() {
            let st = plan.step(&sched, k).unwrap();
            model
                .predict_noise(&y, st.t as f32 / 50.0, &mut eps)
                .unwrap();
            unipc_step(&st, sched.config().prediction, &mut y, &eps, &mut m, &mut c).unwrap();
        }
        assert_eq!(&x[i * len..][..len], &y[..], "image {i}");
        assert_eq!(
            &history[i * len..][..len],
            &m[..],
            "x0 history of image {i}"
        );
        assert_eq!(
            &history[(2 + i) * len..][..len],
            &c[..],
            "corrector part of image {i}"
        );
    }
    let mut net = WholeImages::new(&mut model, &mut eps).unwrap();
    let e = sample_batch(&mut net, &sched, &sampler, &mut noise, &mut x).unwrap_err();
    assert!(matches!(e, Error::BufferSize { .. }), "{e:?}");
    let mut dpm_sized = vec![0.0f32; 2 * len];
    let e = sample_batch_with_history(
        &mut net,
        &sched,
        &sampler,
        &mut noise,
        &mut x,
        &mut dpm_sized,
    )
    .unwrap_err();
    assert!(matches!(e, Error::BufferSize { .. }), "{e:?}");
}
