//! The torch sampler steps against ddpm-core's step functions, fed identical x_t, ε and z.
use ddpm_core::diffusion::{self, DdimConfig, DdpmConfig, DdpmVariance, Spacing};
use ddpm_core::{GaussianNoise, Schedule, ScheduleConfig};
use ddpm_torch::sample::{ddim_step, ddpm_step};
use tch::Tensor;

const LEN: usize = 2 * 784;

fn draw(seed: u64) -> Vec<f32> {
    let mut g = GaussianNoise::new(seed);
    let mut v = vec![0.0f32; LEN];
    g.fill(&mut v);
    v
}

/// Largest |a − b| relative to max(1, |b|).
fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// Both sides evaluate the same f32 operations in the same order with the same f32
/// coefficients, so on the CPU they agree bit for bit.
const TOL: f32 = 0.0;

fn schedules() -> Vec<Schedule> {
    vec![
        Schedule::new(&ScheduleConfig::default()).unwrap(),
        Schedule::new(&ScheduleConfig::cosine(300)).unwrap(),
    ]
}

fn tensors(x: &[f32], e: &[f32], z: &[f32]) -> (Tensor, Tensor, Tensor) {
    let shape = [2i64, 1, 28, 28];
    (
        Tensor::from_slice(x).view(shape),
        Tensor::from_slice(e).view(shape),
        Tensor::from_slice(z).view(shape),
    )
}

#[test]
fn ddpm_step_matches_core() {
    let (x, e, z) = (draw(1), draw(2), draw(3));
    let (xt, et, zt) = tensors(&x, &e, &z);
    for sched in schedules() {
        for variance in [DdpmVariance::FixedLarge, DdpmVariance::FixedSmall] {
            for clip_x0 in [false, true] {
                let cfg = DdpmConfig { variance, clip_x0 };
                for t in [0u32, 1, 17, 150, 299] {
                    let mut core = x.clone();
                    diffusion::ddpm_step(&sched, &cfg, t, &mut core, &e, |i| z[i]).unwrap();
                    let torch: Vec<f32> =
                        Vec::try_from(ddpm_step(&sched, &cfg, t, &xt, &et, &zt).view([-1]))
                            .unwrap();
                    let d = max_rel_diff(&torch, &core);
                    assert!(d <= TOL, "{cfg:?} t={t}: differs by {d}");
                    if t == 0 {
                        // No noise is added at the last step: z must not matter.
                        let other = Vec::<f32>::try_from(
                            ddpm_step(&sched, &cfg, 0, &xt, &et, &(&zt * 5.0)).view([-1]),
                        )
                        .unwrap();
                        assert_eq!(other, torch);
                    }
                }
            }
        }
    }
}

#[test]
fn ddim_step_matches_core() {
    let (x, e, z) = (draw(4), draw(5), draw(6));
    let (xt, et, zt) = tensors(&x, &e, &z);
    for sched in schedules() {
        for (eta, clip_x0, recompute_eps) in [
            (0.0, false, false),
            (0.5, false, false),
            (1.0, true, false),
            (0.3, true, true),
        ] {
            let cfg = DdimConfig {
                steps: 7,
                eta,
                spacing: Spacing::Trailing,
                clip_x0,
                recompute_eps,
            };
            for (t, prev) in [
                (299u32, Some(256u32)),
                (42, Some(0)),
                (0, None),
                (150, None),
            ] {
                let mut core = x.clone();
                diffusion::ddim_step(&sched, &cfg, t, prev, &mut core, &e, |i| z[i]).unwrap();
                let torch: Vec<f32> =
                    Vec::try_from(ddim_step(&sched, &cfg, t, prev, &xt, &et, &zt).view([-1]))
                        .unwrap();
                let d = max_rel_diff(&torch, &core);
                assert!(d <= TOL, "{cfg:?} t={t} prev={prev:?}: differs by {d}");
            }
        }
    }
}
