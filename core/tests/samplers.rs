//! Sampler steps against their closed forms and against each other.

mod common;

use ddpm_core::diffusion::{
    ddim_step, ddpm_step, DdimConfig, DdpmConfig, DdpmVariance, Denoiser, SamplerConfig, Spacing,
};
use ddpm_core::{diffusion, GaussianNoise, Prediction, Result, Schedule, ScheduleConfig};

/// Relative agreement of two f32 evaluations of the same step formula written differently
/// (a handful of roundings each, on values of order 1–10).
const SAME_STEP_REL: f32 = 1e-5;

/// A denoiser with a fixed, input-dependent prediction, so samplers can be compared cheaply.
struct Toy;
impl Denoiser for Toy {
    fn image_len(&self) -> usize {
        16
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        for (i, (e, v)) in eps.iter_mut().zip(x).enumerate() {
            *e = 0.5 * v + 0.1 * (i as f32 - 8.0) * t_in;
        }
        Ok(())
    }
}

fn close(a: f32, b: f32, rel: f32) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

#[test]
fn ddpm_step_is_the_seeds_formula() {
    let s: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    let t = 150usize;
    let x0 = [0.3f32, -1.2, 2.0];
    let eps = [0.5f32, 0.1, -0.7];
    let z = [1.0f32, -0.5, 0.25];
    for variance in [DdpmVariance::FixedLarge, DdpmVariance::FixedSmall] {
        let mut x = x0;
        let cfg = DdpmConfig {
            variance,
            clip_x0: false,
        };
        ddpm_step(&s, &cfg, t as u32, &mut x, &eps, |i| z[i]).unwrap();
        let (b, a, acp) = (
            s.betas()[t] as f64,
            s.alphas()[t] as f64,
            s.alphas_cumprod()[t] as f64,
        );
        let var = match variance {
            DdpmVariance::FixedLarge => b,
            DdpmVariance::FixedSmall => s.posterior_variance()[t] as f64,
        };
        for i in 0..3 {
            let e = (x0[i] as f64 - b / (1.0 - acp).sqrt() * eps[i] as f64) / a.sqrt()
                + var.sqrt() * z[i] as f64;
            assert!(
                close(x[i], e as f32, SAME_STEP_REL),
                "{variance:?} {i}: {} vs {e}",
                x[i]
            );
        }
    }
    // No noise at t = 0.
    let mut x = x0;
    ddpm_step(&s, &DdpmConfig::default(), 0, &mut x, &eps, |_| 1e6).unwrap();
    assert!(x.iter().all(|v| v.abs() < 10.0));
}

#[test]
fn clipped_ddpm_equals_unclipped_when_nothing_clips() {
    // The posterior-mean form and the seed's form are the same update when x0 stays in [−1, 1].
    let s: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    let t = 40u32;
    let acp = s.alphas_cumprod()[t as usize];
    let x0 = [0.2f32, -0.4, 0.9, -0.95];
    let eps = [0.3f32, -1.0, 0.5, 0.0];
    let xt: Vec<f32> = x0
        .iter()
        .zip(&eps)
        .map(|(a, e)| acp.sqrt() * a + (1.0 - acp).sqrt() * e)
        .collect();
    let z = [0.1f32, 0.2, -0.3, 0.4];
    let mut a = xt.clone();
    let mut b = xt.clone();
    let small = |clip| DdpmConfig {
        variance: DdpmVariance::FixedSmall,
        clip_x0: clip,
    };
    ddpm_step(&s, &small(false), t, &mut a, &eps, |i| z[i]).unwrap();
    ddpm_step(&s, &small(true), t, &mut b, &eps, |i| z[i]).unwrap();
    for i in 0..4 {
        assert!(
            close(a[i], b[i], SAME_STEP_REL),
            "{i}: {} vs {}",
            a[i],
            b[i]
        );
    }
}

#[test]
fn ddim_eta1_full_steps_equals_ddpm_fixed_small() {
    for sched_cfg in [ScheduleConfig::default(), ScheduleConfig::cosine(300)] {
        let s: Schedule = Schedule::new(&sched_cfg).unwrap();
        let ddim = DdimConfig {
            steps: 300,
            eta: 1.0,
            spacing: Spacing::Leading,
            ..Default::default()
        };
        let ddpm = DdpmConfig {
            variance: DdpmVariance::FixedSmall,
            clip_x0: false,
        };
        let mut g = GaussianNoise::new(5);
        let mut xa: Vec<f32> = (0..16).map(|_| g.next_gaussian()).collect();
        let mut xb = xa.clone();
        let mut eps = vec![0.0; 16];
        let mut worst = 0.0f32;
        for t in (0..300u32).rev() {
            // Same ε (from the same x) and the same z for both steps.
            Toy.predict_noise(&xa, t as f32 / 300.0, &mut eps).unwrap();
            let z: Vec<f32> = (0..16).map(|_| g.next_gaussian()).collect();
            let mut ya = xa.clone();
            ddim_step(&s, &ddim, t, t.checked_sub(1), &mut ya, &eps, |i| z[i]).unwrap();
            ddpm_step(&s, &ddpm, t, &mut xb, &eps, |i| z[i]).unwrap();
            for (p, q) in ya.iter().zip(&xb) {
                worst = worst.max((p - q).abs() / q.abs().max(1.0));
            }
            xa = ya;
            xb.copy_from_slice(&xa);
        }
        // Per step the two formulas differ only by f32 rounding: measured worst 1.9e-6 (linear)
        // and 3.0e-6 (cosine, whose last steps divide by a small 1 − ᾱ); bound 1e-5.
        assert!(
            worst <= 1e-5,
            "{sched_cfg:?}: worst per-step difference {worst}"
        );
    }
}

#[test]
fn ddim_eta0_is_deterministic_and_reaches_x0() {
    // With ε predicted exactly, DDIM η = 0 recovers x0 at the end.
    let s: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    let x0 = [0.5f32, -0.25, 0.75, -1.0];
    let e = [0.3f32, -1.1, 0.4, 2.0];
    let cfg = DdimConfig {
        steps: 10,
        ..Default::default()
    };
    let plan = diffusion::Plan::new(&SamplerConfig::Ddim(cfg), 300).unwrap();
    let (t0, _) = plan.step(0).unwrap();
    let a0 = s.alphas_cumprod()[t0 as usize];
    let mut x: Vec<f32> = x0
        .iter()
        .zip(&e)
        .map(|(a, n)| a0.sqrt() * a + (1.0 - a0).sqrt() * n)
        .collect();
    for k in 0..plan.len() {
        let (t, prev) = plan.step(k).unwrap();
        ddim_step(&s, &cfg, t, prev, &mut x, &e, |_| {
            panic!("η = 0 draws no noise")
        })
        .unwrap();
    }
    for i in 0..4 {
        assert!((x[i] - x0[i]).abs() < 1e-4, "{i}: {} vs {}", x[i], x0[i]);
    }
}

#[test]
fn v_output_steps_like_the_eps_it_stands_for() {
    // A step fed a v-predicting network's output v must move x exactly as the step of an
    // ε-predicting network fed ε = √(1−ᾱ_t)·x + √ᾱ_t·v (the same prediction, converted), up
    // to rounding. t stays where √ᾱ_t is not tiny: the ε path divides by it.
    let x = [0.9f32, -0.4, 0.05, -1.3, 2.1, 0.0];
    let v = [0.2f32, -1.5, 0.7, 0.0, -0.3, 1.1];
    let z = [0.6f32, -0.2, 1.4, -0.9, 0.3, -1.7];
    for cfg in [ScheduleConfig::cosine(300), ScheduleConfig::default()] {
        let se: Schedule = Schedule::new(&cfg).unwrap();
        let sv: Schedule = Schedule::new(&cfg.predicting(Prediction::V)).unwrap();
        assert_eq!(sv.config().prediction, Prediction::V);
        for (t, prev) in [
            (0u32, None),
            (1, Some(0)),
            (150, Some(100)),
            (250, Some(244)),
        ] {
            let a = se.alphas_cumprod()[t as usize];
            let e: Vec<f32> = x
                .iter()
                .zip(&v)
                .map(|(xi, vi)| (1.0 - a).sqrt() * xi + a.sqrt() * vi)
                .collect();
            let check = |by_v: &[f32], by_e: &[f32], what: &str| {
                for (i, (p, q)) in by_v.iter().zip(by_e).enumerate() {
                    assert!(
                        close(*p, *q, SAME_STEP_REL),
                        "{what} t={t} [{i}]: {p} vs {q}"
                    );
                }
            };
            for variance in [DdpmVariance::FixedLarge, DdpmVariance::FixedSmall] {
                for clip_x0 in [false, true] {
                    let c = DdpmConfig { variance, clip_x0 };
                    let (mut xv, mut xe) = (x, x);
                    ddpm_step(&sv, &c, t, &mut xv, &v, |i| z[i]).unwrap();
                    ddpm_step(&se, &c, t, &mut xe, &e, |i| z[i]).unwrap();
                    check(&xv, &xe, &format!("{cfg:?} {c:?}"));
                }
            }
            for eta in [0.0, 1.0] {
                for (clip_x0, recompute_eps) in [(false, false), (true, false), (true, true)] {
                    let c = DdimConfig {
                        eta,
                        clip_x0,
                        recompute_eps,
                        ..Default::default()
                    };
                    let (mut xv, mut xe) = (x, x);
                    ddim_step(&sv, &c, t, prev, &mut xv, &v, |i| z[i]).unwrap();
                    ddim_step(&se, &c, t, prev, &mut xe, &e, |i| z[i]).unwrap();
                    check(&xv, &xe, &format!("{cfg:?} {c:?}"));
                }
            }
        }
    }
}

#[test]
fn v_prediction_keeps_x0_exact_at_the_noisiest_step() {
    // At t = T − 1 of the cosine schedule √ᾱ_t ≈ 1.7e-4. With the exact v, one DDIM step to
    // ᾱ_prev = 1 lands on x0 = √ᾱ·x − √(1−ᾱ)·v up to a few roundings; with the exact ε, the
    // same step computes x0 = (x − √(1−ᾱ)·ε)/√ᾱ, whose rounding error is amplified by 1/√ᾱ.
    let cfg = ScheduleConfig::cosine(300);
    let se: Schedule = Schedule::new(&cfg).unwrap();
    let sv: Schedule = Schedule::new(&cfg.predicting(Prediction::V)).unwrap();
    let t = 299u32;
    let a = se.alphas_cumprod()[t as usize];
    let (sa, s1a) = (a.sqrt(), (1.0 - a).sqrt());
    assert!(sa < 2e-4, "{sa}");
    let x0 = [0.5f32, -0.25, 0.75, -1.0, 0.0, 0.125];
    let e = [0.3f32, -1.1, 0.4, 2.0, -0.7, 1.3];
    let xt: Vec<f32> = x0.iter().zip(&e).map(|(a, n)| sa * a + s1a * n).collect();
    let v: Vec<f32> = x0.iter().zip(&e).map(|(a, n)| sa * n - s1a * a).collect();
    let step = |s: &Schedule, out: &[f32]| {
        let mut y = xt.clone();
        let c = DdimConfig {
            steps: 1,
            ..Default::default()
        };
        ddim_step(s, &c, t, None, &mut y, out, |_| 0.0).unwrap();
        y
    };
    let worst = |y: Vec<f32>| {
        y.iter()
            .zip(&x0)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max)
    };
    // A handful of f32 roundings on values of order 1.
    let by_v = worst(step(&sv, &v));
    assert!(by_v < 4.0 * f32::EPSILON, "{by_v}");
    // Half an ulp of x (2⁻²⁴ for |x| in [1, 2)) divided by √ᾱ: ~3e-4, far above.
    let by_eps = worst(step(&se, &e));
    assert!(
        by_eps > 100.0 * by_v.max(f32::EPSILON),
        "{by_eps} vs {by_v}"
    );
}

#[test]
fn ddim_clipping_bounds_x0_and_recomputes_eps() {
    let s: Schedule = Schedule::new(&ScheduleConfig::cosine(300)).unwrap();
    // Near t = T the cosine schedule's ᾱ is tiny: an unclipped x0 explodes.
    let t = 299u32;
    let x = [1.0f32, -2.0];
    let eps = [0.0f32, 0.0];
    let run = |clip, recompute| {
        let cfg = DdimConfig {
            steps: 1,
            clip_x0: clip,
            recompute_eps: recompute,
            ..Default::default()
        };
        let mut y = x;
        ddim_step(&s, &cfg, t, None, &mut y, &eps, |_| 0.0).unwrap();
        y
    };
    let raw = run(false, false);
    assert!(raw[0].abs() > 100.0, "{raw:?}");
    // To ᾱ_prev = 1 the step lands on x0 itself: clipped to [−1, 1].
    assert_eq!(run(true, false), [1.0, -1.0]);
    assert_eq!(run(true, true), [1.0, -1.0]);
    // With an intermediate target, recomputing ε changes the result.
    let cfg = |r| DdimConfig {
        steps: 10,
        clip_x0: true,
        recompute_eps: r,
        ..Default::default()
    };
    let (mut a, mut b) = (x, x);
    ddim_step(&s, &cfg(false), t, Some(150), &mut a, &eps, |_| 0.0).unwrap();
    ddim_step(&s, &cfg(true), t, Some(150), &mut b, &eps, |_| 0.0).unwrap();
    assert_ne!(a, b);
}

#[test]
fn sample_loop_is_reproducible_and_seeded() {
    let s: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    let cfgs = [
        SamplerConfig::Ddpm(DdpmConfig::default()),
        SamplerConfig::Ddim(DdimConfig {
            steps: 20,
            eta: 0.5,
            ..Default::default()
        }),
    ];
    for cfg in cfgs {
        let run = |seed| {
            let (mut x, mut e) = (vec![0.0; 16], vec![0.0; 16]);
            diffusion::sample(&mut Toy, &s, &cfg, seed, &mut x, &mut e).unwrap();
            x
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
    let (mut x, mut e) = (vec![0.0; 15], vec![0.0; 16]);
    assert!(diffusion::sample(&mut Toy, &s, &cfgs[0], 1, &mut x, &mut e).is_err());
    let bad = SamplerConfig::Ddim(DdimConfig {
        eta: 1.5,
        ..Default::default()
    });
    let mut x = vec![0.0; 16];
    assert!(diffusion::sample(&mut Toy, &s, &bad, 1, &mut x, &mut e).is_err());
}

#[test]
fn pixels() {
    assert_eq!(ddpm_core::pixel_to_u8(-1.0), 0);
    assert_eq!(ddpm_core::pixel_to_u8(1.0), 255);
    assert_eq!(ddpm_core::pixel_to_u8(0.0), 128);
    assert_eq!(ddpm_core::pixel_to_u8(-7.0), 0);
    assert_eq!(ddpm_core::pixel_to_u8(f32::NAN), 0);
}

#[test]
fn guide_output_extrapolates_away_from_the_guide() {
    let mut out = [1.0f32, -2.0, 0.5, 3.0];
    let guide = [0.0f32, -1.0, 0.5, 1.0];
    // guide + w·(out − guide) at w = 2: every term is exact in f32.
    diffusion::guide_output(&mut out, &guide, 2.0).unwrap();
    assert_eq!(out, [2.0, -3.0, 0.5, 5.0]);
    // Weight 0 gives the guide, weight 1 the output (here exactly: the differences are exact).
    let mut same = [1.0f32, -2.0, 0.5, 3.0];
    diffusion::guide_output(&mut same, &guide, 1.0).unwrap();
    assert_eq!(same, [1.0, -2.0, 0.5, 3.0]);
    diffusion::guide_output(&mut same, &guide, 0.0).unwrap();
    assert_eq!(same, guide);
    // Lengths must agree.
    assert!(diffusion::guide_output(&mut same, &guide[..3], 2.0).is_err());
}
