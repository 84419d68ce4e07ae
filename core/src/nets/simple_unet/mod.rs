//! The lecture notes' SimpleUNet: four 3×3 layers (two convs, two transposed convs) and a time
//! MLP, with no down-sampling. Variants: [`reference`] (plain loops, the oracle), [`fast`]
//! (host: Winograd and direct SIMD kernels), [`int8`] (weights read in place from the file,
//! layer by layer), [`stream`] (int8 or f32, row by row in a 3-row window), [`fast_int8`] (host:
//! the same integers through 16-bit pair multiply-adds) and [`ptq`] (the post-training
//! quantizer that writes the int8 file).

pub mod config;
#[cfg(feature = "fast")]
pub mod fast;
#[cfg(feature = "fast")]
pub mod fast_int8;
pub mod int8;
#[cfg(feature = "alloc")]
pub mod ptq;
pub mod reference;
pub mod stream;

pub use config::SimpleUNetConfig;
#[cfg(feature = "fast")]
pub use fast::FastSimpleUNet;
#[cfg(feature = "fast")]
pub use fast_int8::FastInt8SimpleUNet;
pub use reference::{check_params, load_params, SimpleUNet, SimpleUNetParams};
