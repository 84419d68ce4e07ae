//! The model file: the one contract between the trainer and the core. [`format`] defines the
//! container (magic, version, header, named tensors, CRC) and its writer, [`wire`] the
//! backward-compatible encodings of the configurations it records, [`recipe`] the sampler
//! (and guide) a model is meant to be drawn with, [`tensor`] the
//! little-endian views the int8 executors read tensors through, in place.

mod crc32;
pub mod format;
pub mod recipe;
pub mod tensor;
pub mod wire;

pub use crc32::crc32;
pub use format::*;
#[cfg(feature = "alloc")]
pub use recipe::OwnedRecipe;
pub use recipe::{Guide, Recipe};
pub use tensor::{F32Le, I32Le};
