//! Model and schedule configurations: what a model file records about the network it holds.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The architecture of a network and its sizes.
///
/// New architectures are added as new variants, so files written before them still decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelConfig {
    /// The seed's SimpleUNet (no down-sampling).
    SimpleUNet(SimpleUNetConfig),
}

impl ModelConfig {
    /// Image channels.
    pub fn channels(&self) -> usize {
        match self {
            ModelConfig::SimpleUNet(c) => c.channels as usize,
        }
    }
    /// Image height.
    pub fn height(&self) -> usize {
        match self {
            ModelConfig::SimpleUNet(c) => c.height as usize,
        }
    }
    /// Image width.
    pub fn width(&self) -> usize {
        match self {
            ModelConfig::SimpleUNet(c) => c.width as usize,
        }
    }
    /// Elements in one image (C·H·W).
    pub fn image_len(&self) -> usize {
        self.channels() * self.height() * self.width()
    }
}

/// Sizes of the seed's SimpleUNet.
///
/// enc1 Conv2d(c→hidden1), enc2 Conv2d(hidden1→hidden2), time MLP Linear(1→hidden2), ReLU,
/// Linear(hidden2→hidden2), dec1 ConvTranspose2d(hidden2→hidden1), dec2 ConvTranspose2d(hidden1→c);
/// all kernels 3×3, stride 1, padding 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleUNetConfig {
    /// Image channels `c` (1 for MNIST).
    pub channels: u32,
    /// Image height (28 for MNIST).
    pub height: u32,
    /// Image width (28 for MNIST).
    pub width: u32,
    /// Channels after enc1 (64 in the seed).
    pub hidden1: u32,
    /// Channels after enc2 and width of the time embedding (128 in the seed).
    pub hidden2: u32,
}

impl Default for SimpleUNetConfig {
    fn default() -> Self {
        Self::SEED
    }
}

/// Name and dimensions of one parameter tensor, in PyTorch's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpec {
    /// PyTorch state_dict name, e.g. `enc1.weight`.
    pub name: &'static str,
    /// Dimensions; only the first `rank` entries are used, the rest are 0.
    pub dims: [u32; 4],
    /// Number of dimensions.
    pub rank: usize,
}

impl TensorSpec {
    const fn new(name: &'static str, dims: [u32; 4], rank: usize) -> Self {
        Self { name, dims, rank }
    }
    /// The used dimensions.
    pub fn dims(&self) -> &[u32] {
        &self.dims[..self.rank]
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims().iter().map(|&d| d as usize).product()
    }
}

/// Largest image side and channel count accepted, so every index fits comfortably in `usize`
/// on 32-bit targets and no product of sizes can overflow.
pub const MAX_DIM: u32 = 4096;

impl SimpleUNetConfig {
    /// The seed's configuration: 1×28×28 images, hidden widths 64 and 128.
    pub const SEED: Self = Self {
        channels: 1,
        height: 28,
        width: 28,
        hidden1: 64,
        hidden2: 128,
    };

    /// Checks that every size is between 1 and [`MAX_DIM`].
    pub fn validate(&self) -> Result<()> {
        let ok = |v: u32| (1..=MAX_DIM).contains(&v);
        if !ok(self.channels) || !ok(self.hidden1) || !ok(self.hidden2) {
            return Err(Error::InvalidConfig("channel counts must be in 1..=4096"));
        }
        if !ok(self.height) || !ok(self.width) {
            return Err(Error::InvalidConfig("image sides must be in 1..=4096"));
        }
        let plane = self.height as u64 * self.width as u64;
        let widest = self.hidden1.max(self.hidden2).max(self.channels) as u64;
        if plane * widest * 9 > (i32::MAX as u64) {
            return Err(Error::InvalidConfig("activation maps too large"));
        }
        Ok(())
    }

    /// The parameter tensors in PyTorch `state_dict` order.
    pub const fn tensor_specs(&self) -> [TensorSpec; 12] {
        let (c, h1, h2) = (self.channels, self.hidden1, self.hidden2);
        [
            TensorSpec::new("enc1.weight", [h1, c, 3, 3], 4),
            TensorSpec::new("enc1.bias", [h1, 0, 0, 0], 1),
            TensorSpec::new("enc2.weight", [h2, h1, 3, 3], 4),
            TensorSpec::new("enc2.bias", [h2, 0, 0, 0], 1),
            TensorSpec::new("dec1.weight", [h2, h1, 3, 3], 4),
            TensorSpec::new("dec1.bias", [h1, 0, 0, 0], 1),
            TensorSpec::new("dec2.weight", [h1, c, 3, 3], 4),
            TensorSpec::new("dec2.bias", [c, 0, 0, 0], 1),
            TensorSpec::new("time_mlp.0.weight", [h2, 1, 0, 0], 2),
            TensorSpec::new("time_mlp.0.bias", [h2, 0, 0, 0], 1),
            TensorSpec::new("time_mlp.2.weight", [h2, h2, 0, 0], 2),
            TensorSpec::new("time_mlp.2.bias", [h2, 0, 0, 0], 1),
        ]
    }

    /// Total number of parameters (165,633 for the seed's configuration with c = 1).
    pub const fn param_count(&self) -> usize {
        let specs = self.tensor_specs();
        let mut total = 0;
        let mut i = 0;
        while i < specs.len() {
            let d = specs[i].dims;
            let mut n = 1usize;
            let mut k = 0;
            while k < specs[i].rank {
                n *= d[k] as usize;
                k += 1;
            }
            total += n;
            i += 1;
        }
        total
    }

    /// Elements in one image (C·H·W).
    pub const fn image_len(&self) -> usize {
        self.channels as usize * self.height as usize * self.width as usize
    }

    /// f32 elements of scratch the reference forward pass needs: the enc1, enc2 and dec1
    /// activation maps plus the two time-MLP vectors.
    pub const fn workspace_len(&self) -> usize {
        let plane = self.height as usize * self.width as usize;
        let (h1, h2) = (self.hidden1 as usize, self.hidden2 as usize);
        plane * (h1 + h2 + h1) + 2 * h2
    }

    /// Multiply-adds of one forward pass (116.5 M for the seed's configuration).
    pub const fn macs(&self) -> u64 {
        let plane = self.height as u64 * self.width as u64;
        let (c, h1, h2) = (
            self.channels as u64,
            self.hidden1 as u64,
            self.hidden2 as u64,
        );
        plane * 9 * (c * h1 + h1 * h2 + h2 * h1 + h1 * c) + h2 + h2 * h2
    }
}

/// How the noise variances β_t are laid out over the timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ScheduleKind {
    /// β evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020; the seed's choice).
    Linear {
        /// β at t = 0.
        beta_start: f64,
        /// β at t = T − 1.
        beta_end: f64,
    },
    /// ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s)·π/2) (Nichol & Dhariwal 2021).
    Cosine {
        /// Offset `s` (0.008 in the paper).
        s: f64,
        /// Upper clip of β (0.999 in the paper).
        max_beta: f64,
    },
}

/// A noise schedule: its kind and the number of diffusion steps T.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// The β layout.
    pub kind: ScheduleKind,
    /// Number of diffusion steps T; timesteps run 0..T.
    pub timesteps: u32,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self::linear(300, 1e-4, 0.02)
    }
}

impl ScheduleConfig {
    /// A linear schedule.
    pub const fn linear(timesteps: u32, beta_start: f64, beta_end: f64) -> Self {
        Self {
            kind: ScheduleKind::Linear {
                beta_start,
                beta_end,
            },
            timesteps,
        }
    }

    /// The cosine schedule with the paper's s = 0.008 and β ≤ 0.999.
    pub const fn cosine(timesteps: u32) -> Self {
        Self {
            kind: ScheduleKind::Cosine {
                s: 0.008,
                max_beta: 0.999,
            },
            timesteps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_sizes() {
        let c = SimpleUNetConfig::SEED;
        // enc1 640 + enc2 73,856 + dec1 73,792 + dec2 577 + time MLP 256 + 16,512.
        assert_eq!(c.param_count(), 165_633);
        // 784 pixels · 9 taps · (64 + 8192 + 8192 + 64) channel pairs, plus the time MLP.
        assert_eq!(c.macs(), 116_508_672 + 128 + 16_384);
        assert_eq!(c.image_len(), 784);
        assert!(c.validate().is_ok());
        let bad = SimpleUNetConfig { hidden1: 0, ..c };
        assert!(bad.validate().is_err());
        let huge = SimpleUNetConfig {
            height: 4096,
            width: 4096,
            ..c
        };
        assert!(huge.validate().is_err());
    }
}
