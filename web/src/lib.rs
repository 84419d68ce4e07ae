//! `ddpm-web`: the no_std core compiled to WebAssembly for the page in `web/www/`, which
//! draws digits step by step in a browser with the same bits as the host and the
//! microcontroller.
//!
//! - [`session`]: one drawing, move by move (the core's sampler and RePaint walk), with the
//!   network's prediction of x0 at every step for the page to show beside x_t.
//! - [`abi`]: the module's exports (numbers and pointers; the page needs no generated glue).
//!
//! Build it with `tools/build-web.sh` (`wasm32-unknown-unknown`, SIMD128 on); the host tests
//! run the same code natively with the portable kernels, which compute the same bits.

pub mod abi;
pub mod session;
