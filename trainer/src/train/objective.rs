//! The training objective: the learning-rate schedule over a run and the per-image loss
//! weighting of the ε (or v) error.

use ddpm_core::Prediction;
use tch::{Kind, Reduction, Tensor};

use ddpm_torch::schedule::DeviceSchedule;

/// The learning rate over a run of `total` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    /// `--lr` at every step (the seed's).
    Constant,
    /// Linear warm-up from 0 over `warmup` steps, then half a cosine from `--lr` down to 0 at
    /// the last step (Loshchilov & Hutter 2017, without restarts).
    Cosine {
        /// Warm-up steps.
        warmup: u64,
    },
}

impl LrSchedule {
    /// The rate of step `step` (0-based) of `total`, for base rate `lr`.
    pub fn rate(&self, lr: f64, step: u64, total: u64) -> f64 {
        match *self {
            Self::Constant => lr,
            Self::Cosine { warmup } => {
                if step < warmup {
                    return lr * (step + 1) as f64 / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let done = ((step - warmup) as f64 / span).min(1.0);
                0.5 * lr * (1.0 + (std::f64::consts::PI * done).cos())
            }
        }
    }
}

/// The per-image weight of the ε-prediction error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossWeight {
    /// Every timestep alike: the seed's plain MSE ("L_simple" of Ho et al. 2020).
    Uniform,
    /// Min-SNR-γ (Hang et al. 2023): weight min(SNR_t, γ) / SNR_t with SNR_t = ᾱ_t / (1 − ᾱ_t),
    /// so the nearly clean timesteps, whose ε is hard to see and matters little, no longer
    /// dominate the gradient.
    MinSnr {
        /// γ (the paper's default is 5).
        gamma: f64,
    },
    /// For a v-predicting network: the x0 error weighted SNR_t + k, i.e. the v error weighted
    /// (SNR_t + k)/(SNR_t + 1). The plain ε MSE weights the x0 error SNR_t (k = 0), the plain v
    /// MSE SNR_t + 1 (k = 1); a larger k moves weight onto the noisiest timesteps (up to k× the
    /// plain v weight), where a sample's global shape is decided, and leaves the nearly clean
    /// ones as they were.
    SnrPlus {
        /// k (at least 0).
        k: f64,
    },
}

/// The training loss of predictions `pred` of `target` (the noise ε, or v for a v-predicting
/// network) drawn at timesteps `t` (N×C×H×W, N×C×H×W, N): the mean over the batch of each
/// image's weighted mean squared error.
pub fn eps_loss(
    pred: &Tensor,
    target: &Tensor,
    t: &Tensor,
    sched: &DeviceSchedule,
    weight: LossWeight,
    prediction: Prediction,
) -> Tensor {
    // Both weights are stated on the x0 error, the same in either parameterization: ‖ε̂ − ε‖²
    // is SNR times ‖x̂0 − x0‖², ‖v̂ − v‖² is SNR + 1 times it (Hang et al. 2023, section 3.4).
    // The plain MSE (the default) returns before any SNR is looked up.
    let snr_at_t = || sched.snr.index_select(0, t);
    let (snr, x0_weight) = match weight {
        LossWeight::Uniform => return pred.mse_loss(target, Reduction::Mean),
        LossWeight::MinSnr { gamma } => {
            let snr = snr_at_t();
            let w = snr.clamp_max(gamma);
            (snr, w)
        }
        LossWeight::SnrPlus { k } => {
            let snr = snr_at_t();
            let w = &snr + k;
            (snr, w)
        }
    };
    let per_image =
        (pred - target)
            .square()
            .flatten(1, -1)
            .mean_dim(&[1i64][..], false, Kind::Float);
    let w = match prediction {
        Prediction::Eps => x0_weight / &snr,
        Prediction::V => x0_weight / (&snr + 1.0),
    };
    (per_image * w).mean(Kind::Float)
}
