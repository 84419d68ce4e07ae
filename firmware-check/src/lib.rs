//! Host-side support for checking `firmware-demo`: the firmware's own model code compiled for
//! the host ([`demo_model`]), a parser for what the firmware prints ([`output`]) and a reader of
//! section sizes from its ELF file ([`elf`]).
//!
//! The test `tests/qemu.rs` builds the firmware, runs it under QEMU and compares.

#![warn(missing_docs)]

/// The firmware's model module, the very same source file, compiled for the host.
#[path = "../../firmware-demo/src/demo_model.rs"]
pub mod demo_model;

pub mod elf;
pub mod output;

/// RAM the firmware may use, bytes (the `RAM` region of `firmware-demo/link/memory.x`).
pub const RAM_BUDGET: usize = 64 * 1024;
