//! `ddpm-torch`: the libtorch twin of ddpm-core, through tch. The trainer trains and samples
//! with it, the equivalence tests hold it against the core, and the benchmark times it.
//!
//! - [`model`]: the networks (SimpleUNet, TinyUNet) with PyTorch's `state_dict` names.
//! - [`schedule`]: the core's noise schedule as device tensors (bit-identical tables).
//! - [`sample`]: the DDPM and DDIM steps, autoguidance and the sampling loop, batched.
//! - [`export`]: a var store's tensors to and from the ddpm-core model file and PyTorch
//!   safetensors.
//! - [`atomic`]: the atomic file writes the writers use.
pub mod atomic;
pub mod export;
pub mod model;
pub mod sample;
pub mod schedule;
