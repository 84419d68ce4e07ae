//! Model and schedule configurations: what a model file records about the network it holds.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The architecture of a network and its sizes.
///
/// New architectures are added as new variants, so files written before them still decode.
/// On the wire (postcard, in the model file's header) a TinyUNet with one mid block is written
/// as the original `TinyUNet` variant, without a `mid_blocks` field, so files written before
/// that field existed decode unchanged and such models still write the same bytes; a deeper
/// one is written as a third variant that carries every field ([`WireModelConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "WireModelConfig", into = "WireModelConfig")]
pub enum ModelConfig {
    /// The seed's SimpleUNet (no down-sampling).
    SimpleUNet(SimpleUNetConfig),
    /// The compact down-sampling U-Net (two stride-2 levels, skip connections, sinusoidal
    /// timestep embedding). Appended after `SimpleUNet`, so files written before it still decode.
    TinyUNet(TinyUNetConfig),
}

/// A TinyUNet configuration as files wrote it before `mid_blocks` existed (one mid block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TinyUNetConfigV1 {
    channels: u32,
    height: u32,
    width: u32,
    widths: [u32; 3],
    emb_dim: u32,
    temb_dim: u32,
}

/// [`ModelConfig`] as postcard encodes it: the variant index first, so the order of these
/// variants is part of the file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireModelConfig {
    /// Variant 0: SimpleUNet.
    SimpleUNet(SimpleUNetConfig),
    /// Variant 1: a TinyUNet with one mid block.
    TinyUNet(TinyUNetConfigV1),
    /// Variant 2: a TinyUNet with any number of mid blocks.
    TinyUNetDeep(TinyUNetConfig),
}

impl From<WireModelConfig> for ModelConfig {
    fn from(w: WireModelConfig) -> Self {
        match w {
            WireModelConfig::SimpleUNet(c) => ModelConfig::SimpleUNet(c),
            WireModelConfig::TinyUNet(c) => ModelConfig::TinyUNet(TinyUNetConfig {
                channels: c.channels,
                height: c.height,
                width: c.width,
                widths: c.widths,
                mid_blocks: 1,
                emb_dim: c.emb_dim,
                temb_dim: c.temb_dim,
            }),
            WireModelConfig::TinyUNetDeep(c) => ModelConfig::TinyUNet(c),
        }
    }
}

impl From<ModelConfig> for WireModelConfig {
    fn from(m: ModelConfig) -> Self {
        match m {
            ModelConfig::SimpleUNet(c) => WireModelConfig::SimpleUNet(c),
            ModelConfig::TinyUNet(c) if c.mid_blocks == 1 => {
                WireModelConfig::TinyUNet(TinyUNetConfigV1 {
                    channels: c.channels,
                    height: c.height,
                    width: c.width,
                    widths: c.widths,
                    emb_dim: c.emb_dim,
                    temb_dim: c.temb_dim,
                })
            }
            ModelConfig::TinyUNet(c) => WireModelConfig::TinyUNetDeep(c),
        }
    }
}

impl From<SimpleUNetConfig> for ModelConfig {
    fn from(c: SimpleUNetConfig) -> Self {
        ModelConfig::SimpleUNet(c)
    }
}

impl From<TinyUNetConfig> for ModelConfig {
    fn from(c: TinyUNetConfig) -> Self {
        ModelConfig::TinyUNet(c)
    }
}

/// A configuration of either architecture, or a [`ModelConfig`]: what the functions that work
/// for every architecture take, by reference.
pub trait AsModelConfig {
    /// The configuration as a [`ModelConfig`].
    fn as_model_config(&self) -> ModelConfig;
}

impl AsModelConfig for ModelConfig {
    fn as_model_config(&self) -> ModelConfig {
        *self
    }
}

impl AsModelConfig for SimpleUNetConfig {
    fn as_model_config(&self) -> ModelConfig {
        ModelConfig::SimpleUNet(*self)
    }
}

impl AsModelConfig for TinyUNetConfig {
    fn as_model_config(&self) -> ModelConfig {
        ModelConfig::TinyUNet(*self)
    }
}

impl ModelConfig {
    /// Image channels.
    pub fn channels(&self) -> usize {
        match self {
            ModelConfig::SimpleUNet(c) => c.channels as usize,
            ModelConfig::TinyUNet(c) => c.channels as usize,
        }
    }
    /// Image height.
    pub fn height(&self) -> usize {
        match self {
            ModelConfig::SimpleUNet(c) => c.height as usize,
            ModelConfig::TinyUNet(c) => c.height as usize,
        }
    }
    /// Image width.
    pub fn width(&self) -> usize {
        match self {
            ModelConfig::SimpleUNet(c) => c.width as usize,
            ModelConfig::TinyUNet(c) => c.width as usize,
        }
    }
    /// Elements in one image (C·H·W).
    pub fn image_len(&self) -> usize {
        self.channels() * self.height() * self.width()
    }
    /// The architecture's name as the trainer's `--arch` flag spells it.
    pub fn arch_name(&self) -> &'static str {
        match self {
            ModelConfig::SimpleUNet(_) => "simple",
            ModelConfig::TinyUNet(_) => "tiny",
        }
    }
    /// Checks every size (see the variants' `validate`).
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelConfig::SimpleUNet(c) => c.validate(),
            ModelConfig::TinyUNet(c) => c.validate(),
        }
    }
    /// The parameter tensors in PyTorch `state_dict` order.
    pub fn tensor_specs(&self) -> TensorSpecList {
        match self {
            ModelConfig::SimpleUNet(c) => TensorSpecList::from_slice(&c.tensor_specs()),
            ModelConfig::TinyUNet(c) => c.tensor_specs(),
        }
    }
    /// Total number of parameters.
    pub fn param_count(&self) -> usize {
        match self {
            ModelConfig::SimpleUNet(c) => c.param_count(),
            ModelConfig::TinyUNet(c) => c.param_count(),
        }
    }
    /// Multiply-adds of one forward pass.
    pub fn macs(&self) -> u64 {
        match self {
            ModelConfig::SimpleUNet(c) => c.macs(),
            ModelConfig::TinyUNet(c) => c.macs(),
        }
    }
}

/// Most w3 → w3 blocks a TinyUNet may have at quarter resolution.
pub const TINY_MAX_MID_BLOCKS: usize = 8;

/// Most parameter tensors any architecture has (TinyUNet: 26 plus 4 per mid block).
pub const MAX_TENSORS: usize = 26 + 4 * TINY_MAX_MID_BLOCKS;

/// The parameter tensors of one architecture, in `state_dict` order, without a heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpecList {
    specs: [TensorSpec; MAX_TENSORS],
    len: usize,
}

impl TensorSpecList {
    fn from_slice(s: &[TensorSpec]) -> Self {
        let mut specs = [TensorSpec::new("", [0; 4], 0); MAX_TENSORS];
        specs[..s.len()].copy_from_slice(s);
        Self {
            specs,
            len: s.len(),
        }
    }
    const fn empty() -> Self {
        Self {
            specs: [TensorSpec::new("", [0; 4], 0); MAX_TENSORS],
            len: 0,
        }
    }
    const fn push(mut self, spec: TensorSpec) -> Self {
        self.specs[self.len] = spec;
        self.len += 1;
        self
    }
    /// A block's four tensors: 3×3 conv `names[0]` `[o, i, 3, 3]` and bias, time projection
    /// `names[2]` `[o, d]` and bias.
    const fn push_block(self, names: &[&'static str; 4], o: u32, i: u32, d: u32) -> Self {
        self.push(TensorSpec::new(names[0], [o, i, 3, 3], 4))
            .push(TensorSpec::new(names[1], [o, 0, 0, 0], 1))
            .push(TensorSpec::new(names[2], [o, d, 0, 0], 2))
            .push(TensorSpec::new(names[3], [o, 0, 0, 0], 1))
    }
    /// Number of specs.
    pub const fn len(&self) -> usize {
        self.len
    }
    /// Whether the list is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The specs as a slice.
    pub fn as_slice(&self) -> &[TensorSpec] {
        &self.specs[..self.len]
    }
}

impl core::ops::Deref for TensorSpecList {
    type Target = [TensorSpec];
    fn deref(&self) -> &[TensorSpec] {
        self.as_slice()
    }
}

impl IntoIterator for TensorSpecList {
    type Item = TensorSpec;
    type IntoIter = core::iter::Take<core::array::IntoIter<TensorSpec, MAX_TENSORS>>;
    fn into_iter(self) -> Self::IntoIter {
        self.specs.into_iter().take(self.len)
    }
}

impl<'a> IntoIterator for &'a TensorSpecList {
    type Item = &'a TensorSpec;
    type IntoIter = core::slice::Iter<'a, TensorSpec>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
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

/// Sizes of the compact down-sampling U-Net (TinyUNet).
///
/// With `w = widths`, `E = emb_dim`, `D = temb_dim`, all convolutions 3×3 with padding 1 and
/// the PyTorch `state_dict` names of [`TinyUNetConfig::tensor_specs`]:
///
/// | block | layer | output |
/// | --- | --- | --- |
/// | time | sinusoidal(E) of 1000·t_in → `time_mlp.0` Linear(E→D) → ReLU → `time_mlp.2` Linear(D→D) = temb | D |
/// | `enc0` | Conv2d(c→w1) + `enc0_temb`(temb), ReLU; skip s1 | w1 × H × W |
/// | `down1` | Conv2d(w1→w2, stride 2) + `down1_temb`(temb), ReLU; skip s2 | w2 × H/2 × W/2 |
/// | `down2` | Conv2d(w2→w3, stride 2) + `down2_temb`(temb), ReLU | w3 × H/4 × W/4 |
/// | `mid` | Conv2d(w3→w3) + `mid_temb`(temb), ReLU | w3 × H/4 × W/4 |
/// | `mid1` … | as `mid`, `mid_blocks − 1` more times (`mid1`, `mid2`, …) | w3 × H/4 × W/4 |
/// | `up2` | nearest ×2, concat [up, s2], Conv2d(w3+w2→w2) + `up2_temb`(temb), ReLU | w2 × H/2 × W/2 |
/// | `up1` | nearest ×2, concat [up, s1], Conv2d(w2+w1→w1) + `up1_temb`(temb), ReLU | w1 × H × W |
/// | `out` | Conv2d(w1→c), no ReLU | c × H × W |
///
/// Each `*_temb` is a Linear(D→block channels) whose output is added per channel before the
/// block's ReLU. No normalisation layers. H and W must be multiples of 4, so that the two
/// up-samplings land exactly on the skip tensors' sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TinyUNetConfig {
    /// Image channels `c` (1 for MNIST).
    pub channels: u32,
    /// Image height (28 for MNIST; a multiple of 4).
    pub height: u32,
    /// Image width (28 for MNIST; a multiple of 4).
    pub width: u32,
    /// Channels of the three levels `[w1, w2, w3]` (full, half and quarter resolution).
    pub widths: [u32; 3],
    /// Number of w3 → w3 blocks at quarter resolution (`mid`, `mid1`, …), 1 to
    /// [`TINY_MAX_MID_BLOCKS`]. Each adds 8 pixels to an output pixel's receptive field.
    pub mid_blocks: u32,
    /// Length E of the sinusoidal timestep embedding (even, at least 4).
    pub emb_dim: u32,
    /// Width D of the time MLP's output `temb`.
    pub temb_dim: u32,
}

/// The tensor names of TinyUNet's six main blocks (enc0, down1, down2, mid, up2, up1): conv
/// weight and bias, time projection weight and bias.
pub const TINY_BLOCK_NAMES: [[&str; 4]; 6] = [
    [
        "enc0.weight",
        "enc0.bias",
        "enc0_temb.weight",
        "enc0_temb.bias",
    ],
    [
        "down1.weight",
        "down1.bias",
        "down1_temb.weight",
        "down1_temb.bias",
    ],
    [
        "down2.weight",
        "down2.bias",
        "down2_temb.weight",
        "down2_temb.bias",
    ],
    ["mid.weight", "mid.bias", "mid_temb.weight", "mid_temb.bias"],
    ["up2.weight", "up2.bias", "up2_temb.weight", "up2_temb.bias"],
    ["up1.weight", "up1.bias", "up1_temb.weight", "up1_temb.bias"],
];

/// The tensor names of the mid blocks `mid`, `mid1`, …, `mid7`.
pub const TINY_MID_NAMES: [[&str; 4]; TINY_MAX_MID_BLOCKS] = [
    TINY_BLOCK_NAMES[3],
    [
        "mid1.weight",
        "mid1.bias",
        "mid1_temb.weight",
        "mid1_temb.bias",
    ],
    [
        "mid2.weight",
        "mid2.bias",
        "mid2_temb.weight",
        "mid2_temb.bias",
    ],
    [
        "mid3.weight",
        "mid3.bias",
        "mid3_temb.weight",
        "mid3_temb.bias",
    ],
    [
        "mid4.weight",
        "mid4.bias",
        "mid4_temb.weight",
        "mid4_temb.bias",
    ],
    [
        "mid5.weight",
        "mid5.bias",
        "mid5_temb.weight",
        "mid5_temb.bias",
    ],
    [
        "mid6.weight",
        "mid6.bias",
        "mid6_temb.weight",
        "mid6_temb.bias",
    ],
    [
        "mid7.weight",
        "mid7.bias",
        "mid7_temb.weight",
        "mid7_temb.bias",
    ],
];

impl Default for TinyUNetConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The network's time input `t_in = t/T` is scaled by this before the sinusoidal embedding, so
/// the embedding sees `t·1000/T`: the timestep range of T = 1000 whatever T the schedule has
/// (the `rescale_timesteps` choice of Nichol & Dhariwal 2021's improved DDPM).
pub const TINY_TIME_SCALE: f32 = 1000.0;

/// The `max_period` of the sinusoidal embedding (Vaswani et al. 2017; Ho et al. 2020).
pub const TINY_MAX_PERIOD: f64 = 10_000.0;

impl TinyUNetConfig {
    /// The default: 1×28×28 images, widths 32/64/64, E = 32, D = 64 (221,505 parameters).
    pub const DEFAULT: Self = Self {
        channels: 1,
        height: 28,
        width: 28,
        widths: [32, 64, 64],
        mid_blocks: 1,
        emb_dim: 32,
        temb_dim: 64,
    };

    /// Number of parameter tensors (30 with one mid block).
    pub const fn tensor_count(&self) -> usize {
        26 + 4 * self.mid_blocks as usize
    }

    /// Checks every size: channel counts, widths, E and D in 1..=[`MAX_DIM`], E even and at
    /// least 4, image sides multiples of 4 up to [`MAX_DIM`].
    pub fn validate(&self) -> Result<()> {
        let ok = |v: u32| (1..=MAX_DIM).contains(&v);
        if !ok(self.channels) || !self.widths.iter().all(|&w| ok(w)) {
            return Err(Error::InvalidConfig("channel counts must be in 1..=4096"));
        }
        if !ok(self.emb_dim) || !ok(self.temb_dim) {
            return Err(Error::InvalidConfig("embedding widths must be in 1..=4096"));
        }
        if !(1..=TINY_MAX_MID_BLOCKS as u32).contains(&self.mid_blocks) {
            return Err(Error::InvalidConfig(
                "TinyUNet: the number of mid blocks must be in 1..=4",
            ));
        }
        if self.emb_dim % 2 != 0 || self.emb_dim < 4 {
            return Err(Error::InvalidConfig(
                "TinyUNet: the sinusoidal embedding length must be even and at least 4",
            ));
        }
        if !ok(self.height) || !ok(self.width) {
            return Err(Error::InvalidConfig("image sides must be in 1..=4096"));
        }
        if self.height % 4 != 0 || self.width % 4 != 0 {
            return Err(Error::InvalidConfig(
                "TinyUNet: image sides must be multiples of 4 (two stride-2 levels)",
            ));
        }
        let plane = self.height as u64 * self.width as u64;
        let [w1, w2, _] = self.widths;
        let widest = (w1 + w2).max(self.channels) as u64;
        if plane * widest * 9 > (i32::MAX as u64) {
            return Err(Error::InvalidConfig("activation maps too large"));
        }
        Ok(())
    }

    /// The parameter tensors in `state_dict` order: the time MLP, then each block's conv
    /// (`[out, in, 3, 3]`, bias) and time projection (`[out, D]`, bias) in forward order (enc0,
    /// down1, down2, mid, mid1 …, up2, up1), then `out`.
    pub const fn tensor_specs(&self) -> TensorSpecList {
        let c = self.channels;
        let [w1, w2, w3] = self.widths;
        let (e, d) = (self.emb_dim, self.temb_dim);
        let mut l = TensorSpecList::empty()
            .push(TensorSpec::new("time_mlp.0.weight", [d, e, 0, 0], 2))
            .push(TensorSpec::new("time_mlp.0.bias", [d, 0, 0, 0], 1))
            .push(TensorSpec::new("time_mlp.2.weight", [d, d, 0, 0], 2))
            .push(TensorSpec::new("time_mlp.2.bias", [d, 0, 0, 0], 1));
        l = l.push_block(&TINY_BLOCK_NAMES[0], w1, c, d);
        l = l.push_block(&TINY_BLOCK_NAMES[1], w2, w1, d);
        l = l.push_block(&TINY_BLOCK_NAMES[2], w3, w2, d);
        let mut k = 0;
        while k < self.mid_blocks as usize && k < TINY_MAX_MID_BLOCKS {
            l = l.push_block(&TINY_MID_NAMES[k], w3, w3, d);
            k += 1;
        }
        l = l.push_block(&TINY_BLOCK_NAMES[4], w2, w3 + w2, d);
        l = l.push_block(&TINY_BLOCK_NAMES[5], w1, w2 + w1, d);
        l.push(TensorSpec::new("out.weight", [c, w1, 3, 3], 4))
            .push(TensorSpec::new("out.bias", [c, 0, 0, 0], 1))
    }

    /// Total number of parameters (221,505 for [`TinyUNetConfig::DEFAULT`]).
    pub const fn param_count(&self) -> usize {
        let specs = self.tensor_specs();
        let mut total = 0;
        let mut i = 0;
        while i < specs.len {
            let d = specs.specs[i].dims;
            let mut n = 1usize;
            let mut k = 0;
            while k < specs.specs[i].rank {
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

    /// Pixels of one channel at full, half and quarter resolution.
    pub const fn planes(&self) -> [usize; 3] {
        let (h, w) = (self.height as usize, self.width as usize);
        [h * w, (h / 2) * (w / 2), (h / 4) * (w / 4)]
    }

    /// f32 elements of scratch the reference forward pass needs: the two concatenation buffers
    /// `[up(u2), s1]` and `[up(mid), s2]` (each skip tensor is written straight into the back of
    /// the buffer it is concatenated into), up1's and up2's outputs, down2's and every mid
    /// block's outputs, and the time vectors (embedding E, hidden D, temb D, one block
    /// projection).
    pub const fn workspace_len(&self) -> usize {
        let [p1, p2, p3] = self.planes();
        let [w1, w2, w3] = [
            self.widths[0] as usize,
            self.widths[1] as usize,
            self.widths[2] as usize,
        ];
        let widest = if w1 > w2 { w1 } else { w2 };
        let widest = if widest > w3 { widest } else { w3 };
        (w2 + w1) * p1
            + w1 * p1
            + (w3 + w2) * p2
            + w2 * p2
            + (1 + self.mid_blocks as usize) * w3 * p3
            + self.emb_dim as usize
            + 2 * self.temb_dim as usize
            + widest
    }

    /// Multiply-adds of one forward pass (convolutions, time MLP and projections).
    pub const fn macs(&self) -> u64 {
        let [p1, p2, p3] = self.planes();
        let (p1, p2, p3) = (p1 as u64, p2 as u64, p3 as u64);
        let c = self.channels as u64;
        let [w1, w2, w3] = [
            self.widths[0] as u64,
            self.widths[1] as u64,
            self.widths[2] as u64,
        ];
        let (e, d) = (self.emb_dim as u64, self.temb_dim as u64);
        let mids = self.mid_blocks as u64;
        9 * (p1 * c * w1
            + p2 * w1 * w2
            + p3 * w2 * w3
            + mids * p3 * w3 * w3
            + p2 * (w3 + w2) * w2
            + p1 * (w2 + w1) * w1
            + p1 * w1 * c)
            + e * d
            + d * d
            + d * (2 * w1 + 2 * w2 + (1 + mids) * w3)
    }

    /// Bytes of int8 activations alive while each layer of a layer-by-layer int8 pass runs
    /// (enc0, down1, down2, mid, up2, up1, out), one byte per element, each skip tensor kept
    /// only until the layer that consumes it has run:
    ///
    /// - enc0 reads the int8 image x and writes s1;
    /// - down1 reads s1 (kept for up1) and writes s2 (kept for up2);
    /// - down2 reads s2 and writes d2; mid reads d2 and writes m (further mid blocks pass the
    ///   map back and forth between these two buffers, with the same bytes alive);
    /// - up2 reads m (nearest up-sampling done while reading: input pixel (y/2, x/2)) and s2 as
    ///   one conv over two inputs, so neither the up-sampled map nor the concatenation is
    ///   stored, and writes u2; d2 is gone;
    /// - up1 reads u2 (up-sampled while reading) and s1 and writes u1; s2 and m are gone;
    /// - out reads u1 and dequantizes its int32 accumulators straight into the caller's f32 ε
    ///   (as the SimpleUNet int8 executor does), so only u1 is counted.
    ///
    /// The time embedding (f32 vectors of E, D and per-block projections) is not included.
    pub const fn int8_live_bytes(&self) -> [usize; 7] {
        let [p1, p2, p3] = self.planes();
        let c = self.channels as usize;
        let [w1, w2, w3] = [
            self.widths[0] as usize,
            self.widths[1] as usize,
            self.widths[2] as usize,
        ];
        let (x, s1, s2, d2, m, u2, u1) =
            (c * p1, w1 * p1, w2 * p2, w3 * p3, w3 * p3, w2 * p2, w1 * p1);
        [
            x + s1,
            s1 + s2,
            s1 + s2 + d2,
            s1 + s2 + d2 + m,
            s1 + s2 + m + u2,
            s1 + u2 + u1,
            u1,
        ]
    }

    /// The peak of [`TinyUNetConfig::int8_live_bytes`]: the int8 activation memory a
    /// layer-by-layer int8 pass needs (62,720 bytes for [`TinyUNetConfig::DEFAULT`], at up1).
    pub const fn int8_peak_activation_bytes(&self) -> usize {
        let live = self.int8_live_bytes();
        let mut peak = 0;
        let mut i = 0;
        while i < live.len() {
            if live[i] > peak {
                peak = live[i];
            }
            i += 1;
        }
        peak
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

/// What the network's output stands for; the samplers turn it into ε and x0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Prediction {
    /// The noise ε in x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε (Ho et al. 2020; the seed's choice).
    #[default]
    Eps,
    /// The velocity v = √ᾱ_t·ε − √(1−ᾱ_t)·x0 (Salimans & Ho 2022, section 4), from which
    /// x0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v and ε = √(1−ᾱ_t)·x_t + √ᾱ_t·v. Unlike ε it keeps x0 well
    /// conditioned where ᾱ_t → 0, at the noisiest steps that decide a sample's shape.
    V,
}

/// A noise schedule: its kind, the number of diffusion steps T, and what the network trained
/// on it predicts.
///
/// On the wire (postcard, in the model file's header) a schedule for an ε-predicting network
/// is written exactly as files wrote it before [`Prediction`] existed (the kind's variant, its
/// fields, T), so those files decode unchanged and such models still write the same bytes; any
/// other prediction is written as a third kind variant that wraps the kind and the prediction
/// ([`WireScheduleKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "WireScheduleConfig", into = "WireScheduleConfig")]
pub struct ScheduleConfig {
    /// The β layout.
    pub kind: ScheduleKind,
    /// Number of diffusion steps T; timesteps run 0..T.
    pub timesteps: u32,
    /// What the network's output stands for.
    pub prediction: Prediction,
}

/// [`ScheduleKind`] as postcard encodes it in a [`WireScheduleConfig`]: variants 0 and 1 are
/// the original kinds (ε prediction), variant 2 carries a kind and a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum WireScheduleKind {
    /// Variant 0: a linear schedule, ε prediction.
    Linear {
        /// β at t = 0.
        beta_start: f64,
        /// β at t = T − 1.
        beta_end: f64,
    },
    /// Variant 1: a cosine schedule, ε prediction.
    Cosine {
        /// Offset `s`.
        s: f64,
        /// Upper clip of β.
        max_beta: f64,
    },
    /// Variant 2: any kind with any prediction.
    Predicting {
        /// The β layout.
        kind: ScheduleKind,
        /// What the network predicts.
        prediction: Prediction,
    },
}

/// [`ScheduleConfig`] as postcard encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WireScheduleConfig {
    /// The kind (and, in variant 2, the prediction).
    pub kind: WireScheduleKind,
    /// T.
    pub timesteps: u32,
}

impl From<WireScheduleConfig> for ScheduleConfig {
    fn from(w: WireScheduleConfig) -> Self {
        let (kind, prediction) = match w.kind {
            WireScheduleKind::Linear {
                beta_start,
                beta_end,
            } => (
                ScheduleKind::Linear {
                    beta_start,
                    beta_end,
                },
                Prediction::Eps,
            ),
            WireScheduleKind::Cosine { s, max_beta } => {
                (ScheduleKind::Cosine { s, max_beta }, Prediction::Eps)
            }
            WireScheduleKind::Predicting { kind, prediction } => (kind, prediction),
        };
        Self {
            kind,
            timesteps: w.timesteps,
            prediction,
        }
    }
}

impl From<ScheduleConfig> for WireScheduleConfig {
    fn from(c: ScheduleConfig) -> Self {
        let kind = match (c.prediction, c.kind) {
            (
                Prediction::Eps,
                ScheduleKind::Linear {
                    beta_start,
                    beta_end,
                },
            ) => WireScheduleKind::Linear {
                beta_start,
                beta_end,
            },
            (Prediction::Eps, ScheduleKind::Cosine { s, max_beta }) => {
                WireScheduleKind::Cosine { s, max_beta }
            }
            (prediction, kind) => WireScheduleKind::Predicting { kind, prediction },
        };
        Self {
            kind,
            timesteps: c.timesteps,
        }
    }
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
            prediction: Prediction::Eps,
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
            prediction: Prediction::Eps,
        }
    }

    /// The same schedule for a network that predicts `prediction`.
    pub const fn predicting(self, prediction: Prediction) -> Self {
        Self { prediction, ..self }
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

    #[test]
    fn tiny_sizes() {
        let c = TinyUNetConfig::DEFAULT;
        // time MLP 32·64 + 64 + 64·64 + 64 = 6,272; convs enc0 320, down1 18,496, down2 36,928,
        // mid 36,928, up2 73,792, up1 27,680, out 289 = 194,433; projections 64·320 + 320 =
        // 20,800.
        assert_eq!(c.param_count(), 6_272 + 194_433 + 20_800);
        assert_eq!(c.param_count(), 221_505);
        // int8 weights (one byte each) fit 256 KB.
        assert!(c.param_count() <= 250_000);
        let m = ModelConfig::TinyUNet(c);
        assert_eq!(m.tensor_specs().len(), 30);
        assert_eq!(
            m.tensor_specs().iter().map(|s| s.numel()).sum::<usize>(),
            221_505
        );
        assert!(c.validate().is_ok());
        // 784·9·(32 + 32·96) + 196·9·(32·64 + 128·64) + 49·9·(64·64·2) + 784·9·32 and the
        // time MLP and projections.
        let convs = 9 * (784 * 32 + 196 * 32 * 64 + 49 * 64 * 64 * 2 + 196 * 128 * 64)
            + 9 * (784 * 96 * 32 + 784 * 32);
        assert_eq!(c.macs(), convs + 32 * 64 + 64 * 64 + 64 * 320);
        // Live int8 bytes per layer; the peak is at up1: s1 25,088 + u2 12,544 + u1 25,088.
        assert_eq!(
            c.int8_live_bytes(),
            [25_872, 37_632, 40_768, 43_904, 53_312, 62_720, 25_088]
        );
        assert_eq!(c.int8_peak_activation_bytes(), 62_720);
        for bad in [
            TinyUNetConfig { height: 30, ..c },
            TinyUNetConfig { emb_dim: 31, ..c },
            TinyUNetConfig { emb_dim: 2, ..c },
            TinyUNetConfig {
                widths: [32, 0, 64],
                ..c
            },
            TinyUNetConfig { temb_dim: 0, ..c },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn simple_unet_files_still_decode_after_tiny_unet_was_added() {
        // postcard writes an enum as its variant index; SimpleUNet stays variant 0, so the
        // bytes a file written before TinyUNet existed holds decode to the same value.
        let old = ModelConfig::SimpleUNet(SimpleUNetConfig::SEED);
        let bytes = postcard::to_allocvec(&old).unwrap();
        assert_eq!(bytes[0], 0);
        // Then the five u32 sizes as varints (128 takes two bytes: 0x80 0x01).
        assert_eq!(bytes[1..], [1, 28, 28, 64, 0x80, 0x01]);
        assert_eq!(postcard::from_bytes::<ModelConfig>(&bytes).unwrap(), old);
        let tiny = ModelConfig::TinyUNet(TinyUNetConfig::DEFAULT);
        let bytes = postcard::to_allocvec(&tiny).unwrap();
        // A one-mid-block TinyUNet keeps the bytes written before `mid_blocks` existed:
        // variant 1, then c, h, w, the three widths, E and D.
        assert_eq!(bytes, [1, 1, 28, 28, 32, 64, 64, 32, 64]);
        assert_eq!(postcard::from_bytes::<ModelConfig>(&bytes).unwrap(), tiny);
    }

    #[test]
    fn eps_schedules_keep_their_bytes_and_v_has_its_own_variant() {
        // Before `prediction` existed a schedule was written as the kind's variant, its two
        // f64 fields, then T; ε-predicting schedules still are.
        let cos = ScheduleConfig::cosine(300);
        let bytes = postcard::to_allocvec(&cos).unwrap();
        let mut want = alloc::vec![1u8];
        want.extend_from_slice(&0.008f64.to_le_bytes());
        want.extend_from_slice(&0.999f64.to_le_bytes());
        want.extend_from_slice(&[0xAC, 0x02]); // 300 as a varint
        assert_eq!(bytes, want);
        assert_eq!(postcard::from_bytes::<ScheduleConfig>(&bytes).unwrap(), cos);
        let lin = ScheduleConfig::default();
        let bytes = postcard::to_allocvec(&lin).unwrap();
        assert_eq!((bytes[0], bytes.len()), (0, 1 + 8 + 8 + 2));
        assert_eq!(postcard::from_bytes::<ScheduleConfig>(&bytes).unwrap(), lin);
        // v: variant 2, the original kind (variant and fields), the prediction's variant, T.
        let v = cos.predicting(Prediction::V);
        let bytes = postcard::to_allocvec(&v).unwrap();
        let mut want = alloc::vec![2u8, 1];
        want.extend_from_slice(&0.008f64.to_le_bytes());
        want.extend_from_slice(&0.999f64.to_le_bytes());
        want.extend_from_slice(&[1, 0xAC, 0x02]);
        assert_eq!(bytes, want);
        assert_eq!(postcard::from_bytes::<ScheduleConfig>(&bytes).unwrap(), v);
        // Variant 2 with ε decodes too (a reader accepts both spellings of ε).
        let mut eps = bytes.clone();
        eps[18] = 0;
        assert_eq!(postcard::from_bytes::<ScheduleConfig>(&eps).unwrap(), cos);
        // An unknown prediction is refused.
        let mut bad = bytes;
        bad[18] = 2;
        assert!(postcard::from_bytes::<ScheduleConfig>(&bad).is_err());
    }

    #[test]
    fn deeper_tiny_unets_have_their_own_variant() {
        let deep = ModelConfig::TinyUNet(TinyUNetConfig {
            widths: [32, 64, 56],
            mid_blocks: 3,
            ..TinyUNetConfig::DEFAULT
        });
        let bytes = postcard::to_allocvec(&deep).unwrap();
        // Variant 2, then the fields in declaration order, mid_blocks after the widths.
        assert_eq!(bytes, [2, 1, 28, 28, 32, 64, 56, 3, 32, 64]);
        assert_eq!(postcard::from_bytes::<ModelConfig>(&bytes).unwrap(), deep);
        // A reader of this version also takes variant 2 with one mid block.
        let mut one = bytes.clone();
        one[7] = 1;
        assert_eq!(
            postcard::from_bytes::<ModelConfig>(&one).unwrap(),
            ModelConfig::TinyUNet(TinyUNetConfig {
                widths: [32, 64, 56],
                ..TinyUNetConfig::DEFAULT
            })
        );
    }

    #[test]
    fn mid_blocks_add_tensors_parameters_and_work() {
        let one = TinyUNetConfig::DEFAULT;
        for mids in 2..=TINY_MAX_MID_BLOCKS as u32 {
            let c = TinyUNetConfig {
                mid_blocks: mids,
                ..one
            };
            assert!(c.validate().is_ok());
            let extra = (mids - 1) as usize;
            assert_eq!(c.tensor_count(), 30 + 4 * extra);
            assert_eq!(c.tensor_specs().len(), c.tensor_count());
            // Each: conv 64·64·9 + 64, projection 64·64 + 64.
            assert_eq!(
                c.param_count(),
                one.param_count() + extra * (36_864 + 64 + 4_096 + 64)
            );
            assert_eq!(
                c.macs(),
                one.macs() + extra as u64 * (49 * 9 * 64 * 64 + 64 * 64)
            );
            assert_eq!(c.workspace_len(), one.workspace_len() + extra * 64 * 49);
            // mid1 … follow mid in forward order, then up2.
            let names: alloc::vec::Vec<&str> = c.tensor_specs().iter().map(|s| s.name).collect();
            let at = names.iter().position(|n| *n == "mid.weight").unwrap();
            assert_eq!(names[at + 4], "mid1.weight");
            assert_eq!(names[at + 4 * mids as usize], "up2.weight");
        }
        for bad in [0, TINY_MAX_MID_BLOCKS as u32 + 1] {
            let c = TinyUNetConfig {
                mid_blocks: bad,
                ..one
            };
            assert!(c.validate().is_err(), "{bad} mid blocks");
        }
    }
}
