//! The compact down-sampling U-Net (two stride-2 levels, skip connections, sinusoidal time
//! embedding). Variants: [`reference`] (plain loops, the oracle), [`fast`] (host: shifted-run
//! SIMD kernels), [`int8`] (weights read in place from the file, layer by layer), [`planned`]
//! (int8 in one arena, the tail streamed by rows: what the microcontroller runs),
//! [`fast_int8`] (host: the same integers through 16-bit pair multiply-adds) and [`ptq`] (the
//! post-training quantizer that writes the int8 file).

pub mod config;
#[cfg(feature = "fast")]
pub mod fast;
#[cfg(feature = "fast")]
pub mod fast_int8;
pub mod int8;
pub mod planned;
#[cfg(feature = "alloc")]
pub mod ptq;
pub mod reference;
mod row_conv;
mod sources;
#[cfg(all(test, feature = "std"))]
mod tests;

pub use crate::nets::spec::TINY_MAX_MID_BLOCKS;
pub use config::*;
#[cfg(feature = "fast")]
pub use fast::FastTinyUNet;
#[cfg(feature = "fast")]
pub use fast_int8::FastInt8TinyUNet;
pub use reference::*;
