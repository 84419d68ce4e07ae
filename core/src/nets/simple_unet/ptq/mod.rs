//! Post-training quantization of an f32 SimpleUNet into an int8 model file (host side).
//!
//! [`Calibrator`] runs the f32 reference forward pass on calibration inputs and records the
//! range of every activation tensor the int8 network stores (input, enc1, enc2 + time
//! embedding, dec1); [`quantize_simple_unet`] turns the ranges and the f32 weights into the
//! int8 file [`crate::nets::simple_unet::int8::Int8SimpleUNet`] reads.
//!
//! [`QuantPlan`] is the full post-training quantizer: it keeps the calibration inputs and,
//! besides the activation ranges, can choose per-channel weight clipping by MSE, equalize
//! weight ranges across consecutive ReLU layers and correct the bias that weight (and
//! activation) rounding leaves in each layer's output (Nagel et al. 2019, "Data-Free
//! Quantization Through Weight Equalization and Bias Correction", ICCV). It also simulates
//! the int8 network in real numbers with any part kept in f32 ([`QuantMask`]), which is how
//! the error of each part is measured ([`plan`]).

mod calibrator;
mod plan;
mod writer;

pub use calibrator::{quantize_simple_unet, Calibrator, ACTIVATIONS};
pub use plan::{QuantPlan, Trace};
pub use writer::{Equalize, QuantMask, QuantOptions, WeightClip};
