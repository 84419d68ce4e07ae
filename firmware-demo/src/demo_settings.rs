// What every build (default, `f32` and `tiny`) samples with, `include!`d into each model module
// (which defines IMAGE_LEN).

/// Largest number of timesteps the schedule storage holds (16 bytes each, in flash; the
/// trainer's default T = 300). `build.rs` writes the embedded model's schedule for exactly
/// this many; a model trained with more steps fails the build.
pub const MAX_T: usize = 300;

/// Seed of the sample when `DDPM_DEMO_SEED` is not set at build time.
pub const DEFAULT_SEED: u64 = 42;
/// Steps (network passes) when `DDPM_DEMO_STEPS` is not set at build time.
pub const DEFAULT_STEPS: u32 = 10;

/// The sampler a build runs, set by `DDPM_DEMO_SAMPLER` at build time (its [`Self::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoSampler {
    /// Deterministic DDIM (η = 0, `leading` spacing), x0 clipped to [−1, 1] with ε recomputed
    /// from it, which keeps few-step samples clean. The default.
    Ddim,
    /// DPM-Solver++(2M), `linspace` spacing: one more image of f32 history.
    DpmSolver2M,
    /// UniPC (bh2, order 2, UniC corrector), `linspace` spacing: two more images of f32
    /// history.
    UniPc,
}

impl DemoSampler {
    /// The sampler when `DDPM_DEMO_SAMPLER` is not set.
    pub const DEFAULT: Self = DemoSampler::Ddim;

    /// The name `DDPM_DEMO_SAMPLER` takes and the firmware prints (the trainer's `--sampler`).
    pub const fn name(self) -> &'static str {
        match self {
            DemoSampler::Ddim => "ddim",
            DemoSampler::DpmSolver2M => "dpmpp-2m",
            DemoSampler::UniPc => "unipc",
        }
    }

    /// The sampler called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Ddim, Self::DpmSolver2M, Self::UniPc]
            .into_iter()
            .find(|s| s.name() == name)
    }

    /// Its configuration for `steps` steps.
    pub const fn config(self, steps: u32) -> SamplerConfig {
        use ddpm_core::diffusion::{DdimConfig, SolverConfig, Spacing};
        let solver = SolverConfig {
            steps,
            spacing: Spacing::Linspace,
        };
        match self {
            DemoSampler::Ddim => SamplerConfig::Ddim(DdimConfig {
                steps,
                eta: 0.0,
                spacing: Spacing::Leading,
                clip_x0: true,
                recompute_eps: true,
            }),
            DemoSampler::DpmSolver2M => SamplerConfig::DpmSolver2M(solver),
            DemoSampler::UniPc => SamplerConfig::UniPc(solver),
        }
    }

    /// f32 values of history the sampler keeps for one image (0 for DDIM).
    pub const fn history_len(self) -> usize {
        self.config(1).history_len(IMAGE_LEN)
    }
}

/// The largest history any [`DemoSampler`] keeps (for host-side buffers that serve them all).
pub const MAX_HISTORY_LEN: usize = DemoSampler::UniPc.history_len();

/// The first `sampler.history_len()` values of `history`, or the error naming the sizes.
fn history_for(sampler: DemoSampler, history: &mut [f32]) -> Result<&mut [f32]> {
    let needed = sampler.history_len();
    let got = history.len();
    history.get_mut(..needed).ok_or(Error::BufferSize {
        what: "sampler history",
        needed,
        got,
    })
}

/// What an inpainting build (`DDPM_DEMO_INPAINT`, `tiny` builds) completes: digit `digit` of
/// `models/mnist_test_digits.idx` with the part `mask` names hidden, by RePaint with `resample`
/// passes over blocks of `jump` steps (`DDPM_DEMO_RESAMPLE`, `DDPM_DEMO_JUMP`; 1 and 1: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoInpaint {
    /// The hidden part: top, bottom, left, right or center.
    pub mask: &'static str,
    /// Which committed test digit.
    pub digit: usize,
    /// Passes over each block.
    pub resample: u32,
    /// Steps per block.
    pub jump: u32,
}

impl DemoInpaint {
    /// RePaint's resampling of it.
    pub const fn resampling(self) -> ddpm_core::diffusion::Resampling {
        ddpm_core::diffusion::Resampling {
            resample: self.resample,
            jump: self.jump,
        }
    }

    /// How many times the sampler's history the run keeps (twice when blocks are walked again:
    /// the saved copy).
    pub const fn history_factor(inpaint: Option<Self>) -> usize {
        match inpaint {
            Some(d) if d.resample > 1 => 2,
            _ => 1,
        }
    }
}
