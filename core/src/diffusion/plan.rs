//! The walk of a sampler over the timesteps: which (t, previous t) pairs it visits.

use crate::diffusion::dpm_solver::DpmPlan;
use crate::diffusion::steps::{DdimTimesteps, SamplerConfig};
use crate::diffusion::unipc::UniPcPlan;
use crate::error::{Error, Result};

/// The order of (timestep, previous timestep) pairs a sampler visits; `None` as the previous
/// timestep means "after the last step", where ᾱ = 1.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// All T timesteps, T − 1 down to 0.
    Ddpm {
        /// T.
        train_steps: u32,
    },
    /// The DDIM list.
    Ddim(DdimTimesteps),
    /// The DPM-Solver list.
    Dpm(DpmPlan),
    /// The UniPC list (DPM-Solver's).
    UniPc(UniPcPlan),
}

impl Plan {
    /// The plan of `cfg` for a schedule of `train_steps` timesteps.
    pub fn new(cfg: &SamplerConfig, train_steps: u32) -> Result<Self> {
        match cfg {
            SamplerConfig::Ddpm(_) => Ok(Plan::Ddpm { train_steps }),
            SamplerConfig::Ddim(d) => {
                if !(0.0..=1.0).contains(&d.eta) {
                    return Err(Error::InvalidConfig("DDIM: eta must be in [0, 1]"));
                }
                Ok(Plan::Ddim(DdimTimesteps::new(
                    train_steps,
                    d.steps,
                    d.spacing,
                )?))
            }
            SamplerConfig::DpmSolver2M(d) => Ok(Plan::Dpm(DpmPlan::for_train_steps(
                train_steps,
                d.steps,
                d.spacing,
            )?)),
            SamplerConfig::UniPc(d) => Ok(Plan::UniPc(UniPcPlan::for_train_steps(
                train_steps,
                d.steps,
                d.spacing,
            )?)),
        }
    }
    /// Number of network evaluations.
    pub fn len(&self) -> usize {
        match self {
            Plan::Ddpm { train_steps } => *train_steps as usize,
            Plan::Ddim(d) => d.len(),
            Plan::Dpm(d) => d.len(),
            Plan::UniPc(d) => d.len(),
        }
    }
    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Step k: (t, previous t).
    pub fn step(&self, k: usize) -> Option<(u32, Option<u32>)> {
        match self {
            Plan::Ddpm { train_steps } => {
                let n = *train_steps as usize;
                (k < n).then(|| {
                    let t = (n - 1 - k) as u32;
                    (t, t.checked_sub(1))
                })
            }
            Plan::Ddim(d) => d.get(k).map(|t| (t, d.get(k + 1))),
            Plan::Dpm(d) => {
                let ts = d.timesteps();
                ts.get(k).map(|t| (t, ts.get(k + 1)))
            }
            Plan::UniPc(d) => {
                let ts = d.timesteps();
                ts.get(k).map(|t| (t, ts.get(k + 1)))
            }
        }
    }
}
