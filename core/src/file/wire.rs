//! The model file's backward-compatible encodings of the configurations: what postcard writes
//! for a [`ModelConfig`] and a [`ScheduleConfig`]. Each newer form is a new variant, so files
//! written before it decode unchanged and models that need no new field keep their bytes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::diffusion::schedule::{Prediction, ScheduleConfig, ScheduleKind};
use crate::nets::simple_unet::SimpleUNetConfig;
use crate::nets::tiny_unet::TinyUNetConfig;
use crate::nets::ModelConfig;

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

/// A TinyUNet configuration as files wrote it before `classes` existed (unconditional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TinyUNetConfigV2 {
    channels: u32,
    height: u32,
    width: u32,
    widths: [u32; 3],
    mid_blocks: u32,
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
    /// Variant 2: an unconditional TinyUNet with any number of mid blocks.
    TinyUNetDeep(TinyUNetConfigV2),
    /// Variant 3: a class-conditional TinyUNet.
    TinyUNetConditional(TinyUNetConfig),
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
                classes: 0,
            }),
            WireModelConfig::TinyUNetDeep(c) => ModelConfig::TinyUNet(TinyUNetConfig {
                channels: c.channels,
                height: c.height,
                width: c.width,
                widths: c.widths,
                mid_blocks: c.mid_blocks,
                emb_dim: c.emb_dim,
                temb_dim: c.temb_dim,
                classes: 0,
            }),
            WireModelConfig::TinyUNetConditional(c) => ModelConfig::TinyUNet(c),
        }
    }
}

impl From<ModelConfig> for WireModelConfig {
    fn from(m: ModelConfig) -> Self {
        match m {
            ModelConfig::SimpleUNet(c) => WireModelConfig::SimpleUNet(c),
            ModelConfig::TinyUNet(c) if c.is_conditional() => {
                WireModelConfig::TinyUNetConditional(c)
            }
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
            ModelConfig::TinyUNet(c) => WireModelConfig::TinyUNetDeep(TinyUNetConfigV2 {
                channels: c.channels,
                height: c.height,
                width: c.width,
                widths: c.widths,
                mid_blocks: c.mid_blocks,
                emb_dim: c.emb_dim,
                temb_dim: c.temb_dim,
            }),
        }
    }
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

/// Serializes and deserializes `$t` as its wire form `$wire` (converting both ways).
macro_rules! via_wire {
    ($t:ty, $wire:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
                <$wire>::from(*self).serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
                <$wire>::deserialize(d).map(Into::into)
            }
        }
    };
}

via_wire!(ModelConfig, WireModelConfig);
via_wire!(ScheduleConfig, WireScheduleConfig);
