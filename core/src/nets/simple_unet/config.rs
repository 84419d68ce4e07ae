//! [`SimpleUNetConfig`]: the sizes of the lecture notes' SimpleUNet.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nets::spec::{total_numel, TensorSpec, MAX_DIM};

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
        total_numel(&self.tensor_specs())
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
