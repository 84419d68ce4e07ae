//! The core's noise schedules against the trainer's schedule tensors, and both against the
//! seed's recipe computed independently in libtorch in f64 (`torch.linspace`, `torch.cumprod`).

use ddpm_core::{Schedule, ScheduleConfig, ScheduleKind};
use ddpm_equivalence::{check_property, torch_single_thread, values};
use ddpm_torch::schedule::DeviceSchedule;
use proptest::prelude::*;
use tch::{Device, Kind, Tensor};

/// |f32 table − f64 recipe| / |recipe|. Rounding an f64 once to f32 moves it by at most
/// 2⁻²⁴ of its magnitude; the two f64 computations (the core's closed form and running product,
/// libtorch's linspace and cumprod) differ by at most a few hundred f64 ulps after 1000
/// factors (≈ 1e-13), which can push a value just across an f32 rounding midpoint, so 1e-12
/// is added for that.
const F32_ROUNDING: f64 = 1.0 / (1u64 << 24) as f64 + 1e-12;

/// β, ᾱ and β̃ of the seed's recipe in f64, computed by libtorch.
fn torch_recipe(cfg: &ScheduleConfig) -> [Vec<f64>; 3] {
    torch_single_thread();
    let n = cfg.timesteps as i64;
    let opts = (Kind::Double, Device::Cpu);
    let betas = match cfg.kind {
        ScheduleKind::Linear {
            beta_start,
            beta_end,
        } => Tensor::linspace(beta_start, beta_end, n, opts),
        ScheduleKind::Cosine { s, max_beta } => {
            // ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s)·π/2), β_t = 1 − f(t+1)/f(t).
            let f = |t: &Tensor| {
                ((t / n as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2)
                    .cos()
                    .square()
            };
            let t = Tensor::arange(n, opts);
            (1.0f64 - f(&(&t + 1.0)) / f(&t)).clamp_max(max_beta)
        }
    };
    let acp = (1.0f64 - &betas).cumprod(0, Kind::Double);
    let acp_prev = Tensor::cat(&[Tensor::ones([1], opts), acp.narrow(0, 0, n - 1)], 0);
    let post = &betas * (1.0f64 - &acp_prev) / (1.0f64 - &acp);
    let v = |t: &Tensor| Vec::<f64>::try_from(t).unwrap();
    [v(&betas), v(&acp), v(&post)]
}

/// Largest |table − recipe| / |recipe| (0/0 counts as 0).
fn worst_rel(table: &[f32], recipe: &[f64]) -> f64 {
    assert_eq!(table.len(), recipe.len());
    table
        .iter()
        .zip(recipe)
        .map(|(&a, &b)| {
            let d = (a as f64 - b).abs();
            if d == 0.0 {
                0.0
            } else {
                d / b.abs()
            }
        })
        .fold(0.0, f64::max)
}

/// The trainer's tables equal the core's bit for bit, and both are the f64 recipe rounded once.
fn check_schedule(cfg: &ScheduleConfig) -> Result<f64, String> {
    let core: Box<Schedule> = Box::new(Schedule::new(cfg).map_err(|e| e.to_string())?);
    let (dev, _) = DeviceSchedule::new(cfg, Device::Cpu).map_err(|e| e.to_string())?;
    let trainer = [
        values(&dev.betas),
        values(&dev.alphas_cumprod),
        values(&dev.posterior_variance),
    ];
    let tables = [
        core.betas(),
        core.alphas_cumprod(),
        core.posterior_variance(),
    ];
    let recipe = torch_recipe(cfg);
    let mut worst = 0.0f64;
    for (name, ((t, c), r)) in ["beta", "alpha_bar", "posterior variance"]
        .iter()
        .zip(trainer.iter().zip(tables).zip(&recipe))
    {
        if t.as_slice() != c {
            return Err(format!("{cfg:?}: trainer's {name} differs from the core's"));
        }
        let e = worst_rel(c, r);
        if e.is_nan() || e > F32_ROUNDING {
            return Err(format!(
                "{cfg:?}: {name} is {e:.3e} (relative) from the f64 recipe, more than one f32 rounding"
            ));
        }
        worst = worst.max(e);
    }
    Ok(worst)
}

#[test]
fn linear_and_cosine_schedules_match_trainer_and_recipe() {
    for t in [10u32, 300, 1000] {
        for cfg in [
            ScheduleConfig::linear(t, 1e-4, 0.02),
            ScheduleConfig::cosine(t),
        ] {
            let worst = check_schedule(&cfg).unwrap_or_else(|e| panic!("{e}"));
            println!(
                "schedule {:?} T = {t}: trainer = core bit for bit; worst {worst:.3e} from the \
                 f64 recipe (bound {F32_ROUNDING:.3e})",
                cfg.kind
            );
        }
    }
}

#[test]
fn random_linear_ranges_match_trainer_and_recipe() {
    let strategy = (
        prop_oneof![Just(10u32), Just(300), Just(1000)],
        1e-5f64..1e-2,
        1e-3f64..0.05,
    );
    check_property(
        "linear schedules with random beta ranges, core vs trainer vs f64 recipe",
        F32_ROUNDING,
        strategy,
        |(t, beta_start, beta_end)| {
            check_schedule(&ScheduleConfig::linear(t, beta_start, beta_end))
                .map_err(proptest::test_runner::TestCaseError::fail)
        },
    );
}
