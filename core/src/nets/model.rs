//! [`ModelConfig`]: which architecture a model file holds, and its sizes.

use crate::error::Result;
use crate::nets::simple_unet::SimpleUNetConfig;
use crate::nets::spec::TensorSpecList;
use crate::nets::tiny_unet::TinyUNetConfig;

/// The architecture of a network and its sizes.
///
/// New architectures are added as new variants, so files written before them still decode.
/// On the wire (postcard, in the model file's header) a TinyUNet with one mid block is written
/// as the original `TinyUNet` variant, without a `mid_blocks` field, so files written before
/// that field existed decode unchanged and such models still write the same bytes; a deeper
/// one is written as a third variant that carries every field ([`WireModelConfig`](crate::file::wire::WireModelConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelConfig {
    /// The seed's SimpleUNet (no down-sampling).
    SimpleUNet(SimpleUNetConfig),
    /// The compact down-sampling U-Net (two stride-2 levels, skip connections, sinusoidal
    /// timestep embedding). Appended after `SimpleUNet`, so files written before it still decode.
    TinyUNet(TinyUNetConfig),
}

/// The sizes of one architecture, as a [`ModelConfig`] carries them.
pub(crate) trait NetConfig: Sized {
    /// The sizes, if `m` is this architecture.
    fn pick(m: ModelConfig) -> Option<Self>;
    /// Checks the sizes (the architecture's `validate`).
    fn check(&self) -> Result<()>;
}

macro_rules! impl_net_config {
    ($cfg:ident, $variant:ident) => {
        impl NetConfig for $cfg {
            fn pick(m: ModelConfig) -> Option<Self> {
                match m {
                    ModelConfig::$variant(c) => Some(c),
                    _ => None,
                }
            }
            fn check(&self) -> Result<()> {
                self.validate()
            }
        }
    };
}
impl_net_config!(SimpleUNetConfig, SimpleUNet);
impl_net_config!(TinyUNetConfig, TinyUNet);

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
