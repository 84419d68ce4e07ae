//! The networks, one folder each with its variants under the same names: `config` (sizes),
//! `reference` (f32 plain loops, the oracle), `fast` (host SIMD), `int8` (weights read in place
//! from the model file), `stream` / `planned` (int8 executors in microcontroller memory) and
//! `ptq` (post-training quantization). [`ModelConfig`] says which one a model file holds.

mod model;
pub mod simple_unet;
pub(crate) mod spec;
pub mod tiny_unet;

pub(crate) use model::NetConfig;
pub use model::{AsModelConfig, ModelConfig};
pub use spec::{TensorSpec, TensorSpecList, MAX_DIM, MAX_TENSORS};
