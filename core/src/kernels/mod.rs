//! Layer kernels: the plain-loop [`reference`] layers (the oracle), the integer arithmetic of
//! the int8 executors ([`quant`]), their row kernels (`int8_rows`) and the Cortex-M4's
//! register tiles (`int8_tiles`), calibration statistics
//! ([`calibrate`]), and the host's fast kernels (feature `fast`): [`gemm`], [`winograd`],
//! [`shifted`], [`rows`] and [`simd`], with the worker pool that splits layers over threads
//! (`pool`, feature `threads`).

#[cfg(feature = "alloc")]
pub mod calibrate;
pub(crate) mod dsp;
#[cfg(feature = "fast")]
pub mod gemm;
#[cfg(feature = "fast")]
pub mod int8_pairs;
pub(crate) mod int8_rows;
pub(crate) mod int8_tiles;
#[cfg(feature = "threads")]
pub(crate) mod pool;
pub mod quant;
pub mod reference;
#[cfg(feature = "fast")]
pub(crate) mod rows;
#[cfg(feature = "fast")]
pub(crate) mod shifted;
#[cfg(feature = "fast")]
pub mod simd;
#[cfg(feature = "fast")]
pub mod winograd;
