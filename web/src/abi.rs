//! The functions the page calls, as plain WebAssembly exports (numbers and pointers into the
//! module's memory; no generated glue). The page copies a model file into memory it asks for
//! ([`ddpm_alloc`]), hands it over ([`ddpm_load`]) and gets a handle; it writes the known
//! digit and the mask into [`ddpm_known_ptr`] and [`ddpm_mask_ptr`], starts a drawing
//! ([`ddpm_begin`]) and calls [`ddpm_advance`] once per frame, reading x_t and x0 through
//! [`ddpm_x_ptr`] and [`ddpm_x0_ptr`]. A call that fails returns a negative number and leaves
//! a sentence at [`ddpm_error_ptr`] ([`ddpm_error_len`] bytes of UTF-8).
//!
//! The module is single-threaded; its state lives in one thread-local.

use std::cell::RefCell;

use ddpm_core::diffusion::{DdimConfig, DdpmConfig, Resampling, SamplerConfig, SolverConfig};
use ddpm_core::diffusion::{DdpmVariance, Spacing};
use ddpm_core::file::Precision;

use crate::session::{Known, Model, Session, Settings};

/// Elements of the known image and mask buffers (one 28×28 digit).
pub const IMAGE_LEN: usize = 28 * 28;

#[derive(Default)]
struct State {
    models: Vec<Model>,
    session: Option<Session>,
    error: String,
    known: Vec<u8>,
    mask: Vec<u8>,
    pixels: Vec<u8>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State {
        known: vec![0; IMAGE_LEN],
        mask: vec![0; IMAGE_LEN],
        ..State::default()
    });
}

fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// Runs `f`; an error becomes the message and `-1`.
fn status(f: impl FnOnce(&mut State) -> Result<i32, String>) -> i32 {
    with(|s| match f(s) {
        Ok(v) => v,
        Err(e) => {
            s.error = e;
            -1
        }
    })
}

/// `len` bytes of memory for the page to fill (a model file for [`ddpm_load`]).
#[no_mangle]
pub extern "C" fn ddpm_alloc(len: usize) -> *mut u8 {
    let mut v = vec![0u8; len];
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

/// Takes the `len` bytes at `ptr` (from [`ddpm_alloc`]) as a model file: returns its handle
/// (0, 1, …), or −1 with the reason at [`ddpm_error_ptr`] (not a model file, damaged, not a
/// TinyUNet).
///
/// # Safety
/// `ptr` and `len` must be what [`ddpm_alloc`] returned and was asked for; the memory is
/// taken over and must not be used again.
#[no_mangle]
pub unsafe extern "C" fn ddpm_load(ptr: *mut u8, len: usize) -> i32 {
    // SAFETY: the caller passes back the allocation of `ddpm_alloc(len)`, a Vec<u8> of
    // length and capacity `len` that it no longer uses.
    let bytes = unsafe { Vec::from_raw_parts(ptr, len, len) };
    status(|s| {
        let model =
            Model::load(bytes).map_err(|e| format!("not a model this page can draw with: {e}"))?;
        s.models.push(model);
        Ok(s.models.len() as i32 - 1)
    })
}

/// 1 when model `h` is int8, 0 when f32, −1 for no such model.
#[no_mangle]
pub extern "C" fn ddpm_model_int8(h: i32) -> i32 {
    with(|s| match s.models.get(h as usize) {
        Some(m) => i32::from(m.precision() == Precision::Int8),
        None => -1,
    })
}

/// The classes of a class-conditional model `h` (0: unconditional; −1: no such model).
#[no_mangle]
pub extern "C" fn ddpm_model_classes(h: i32) -> i32 {
    with(|s| match s.models.get(h as usize) {
        Some(m) => m.config().classes as i32,
        None => -1,
    })
}

/// The known digit's u8 pixels ([`IMAGE_LEN`] bytes) for an inpainting [`ddpm_begin`].
#[no_mangle]
pub extern "C" fn ddpm_known_ptr() -> *mut u8 {
    with(|s| s.known.as_mut_ptr())
}

/// The mask ([`IMAGE_LEN`] bytes): 1 where the model draws (hidden), 0 where the known digit
/// is kept.
#[no_mangle]
pub extern "C" fn ddpm_mask_ptr() -> *mut u8 {
    with(|s| s.mask.as_mut_ptr())
}

/// The sampler of `kind` (0 DDIM, 1 DPM-Solver++(2M), 2 UniPC, 3 DDPM over every timestep)
/// with `steps` steps; DDIM with `eta`, and x0 clipped (ε recomputed) when `clip` is nonzero;
/// the solvers with `linspace` spacing, DDIM with `leading`, as the firmware draws.
fn sampler(kind: i32, steps: u32, eta: f32, clip: bool) -> Result<SamplerConfig, String> {
    let solver = SolverConfig {
        steps,
        spacing: Spacing::Linspace,
    };
    Ok(match kind {
        0 => SamplerConfig::Ddim(DdimConfig {
            steps,
            eta,
            spacing: Spacing::Leading,
            clip_x0: clip,
            recompute_eps: clip,
        }),
        1 => SamplerConfig::DpmSolver2M(solver),
        2 => SamplerConfig::UniPc(solver),
        3 => SamplerConfig::Ddpm(DdpmConfig {
            variance: DdpmVariance::FixedLarge,
            clip_x0: clip,
        }),
        k => return Err(format!("no sampler number {k}")),
    })
}

/// Starts a drawing with model `model`, guided by model `guide` (−1: none; with a
/// class-conditional model and no guide, `guidance` is classifier-free) with weight
/// `guidance` (NaN: unguided), drawing digit `class` (−1: none) from noise seed `seed` (a
/// whole number, 0 to 2⁵³), with the sampler of `sampler`, `steps`, `eta`, `clip`; when
/// `inpaint` is nonzero it completes the known digit under the mask with RePaint's `resample`
/// passes over blocks of `jump` steps. `simd` nonzero: the SIMD128 kernels (when built with
/// them), else the portable ones. Returns the number of network steps the drawing takes, or
/// −1.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ddpm_begin(
    model: i32,
    guide: i32,
    sampler_kind: i32,
    steps: u32,
    eta: f32,
    clip: i32,
    guidance: f32,
    class: i32,
    seed: f64,
    inpaint: i32,
    resample: u32,
    jump: u32,
    simd: i32,
) -> i32 {
    status(|s| {
        s.session = None;
        s.pixels.clear();
        let m = s
            .models
            .get(model as usize)
            .ok_or_else(|| format!("no model number {model}"))?;
        let g = match guide {
            -1 => None,
            g => Some(
                s.models
                    .get(g as usize)
                    .ok_or_else(|| format!("no guide model number {g}"))?,
            ),
        };
        if !(seed >= 0.0 && seed.fract() == 0.0 && seed <= 9_007_199_254_740_992.0) {
            return Err(format!(
                "the seed must be a whole number from 0 to 2^53, not {seed}"
            ));
        }
        let settings = Settings {
            sampler: sampler(sampler_kind, steps, eta, clip != 0)?,
            seed: seed as u64,
            guidance: (!guidance.is_nan()).then_some(guidance),
            class: u32::try_from(class).ok(),
            simd: simd != 0,
        };
        let known = (inpaint != 0).then(|| Known {
            image: s
                .known
                .iter()
                .map(|&p| f32::from(p) / 127.5 - 1.0)
                .collect(),
            mask: s
                .mask
                .iter()
                .map(|&h| if h != 0 { 0.0 } else { 1.0 })
                .collect(),
            resampling: Resampling { resample, jump },
        });
        let session = Session::new(m, g, &settings, known).map_err(|e| e.to_string())?;
        let total = session.steps_total() as i32;
        s.session = Some(session);
        Ok(total)
    })
}

/// The next network step of the drawing: 1 when a step was taken, 0 when the drawing is
/// done, −1 on error.
#[no_mangle]
pub extern "C" fn ddpm_advance() -> i32 {
    status(|s| {
        let session = s.session.as_mut().ok_or("no drawing started")?;
        let stepped = session.advance().map_err(|e| e.to_string())?;
        if !stepped {
            s.pixels = session.pixels();
        }
        Ok(i32::from(stepped))
    })
}

/// The drawing's image x_t ([`IMAGE_LEN`] f32), or null before [`ddpm_begin`].
#[no_mangle]
pub extern "C" fn ddpm_x_ptr() -> *const f32 {
    with(|s| {
        s.session
            .as_ref()
            .map_or(std::ptr::null(), |d| d.x().as_ptr())
    })
}

/// The last step's prediction of x0 ([`IMAGE_LEN`] f32), or null before [`ddpm_begin`].
#[no_mangle]
pub extern "C" fn ddpm_x0_ptr() -> *const f32 {
    with(|s| {
        s.session
            .as_ref()
            .map_or(std::ptr::null(), |d| d.x0().as_ptr())
    })
}

/// Network steps taken so far.
#[no_mangle]
pub extern "C" fn ddpm_steps_done() -> i32 {
    with(|s| s.session.as_ref().map_or(0, |d| d.steps_done() as i32))
}

/// The timestep of the last step (−1 before the first).
#[no_mangle]
pub extern "C" fn ddpm_timestep() -> i32 {
    with(|s| {
        s.session
            .as_ref()
            .and_then(|d| d.timestep())
            .map_or(-1, |t| t as i32)
    })
}

/// The finished drawing's u8 pixels ([`IMAGE_LEN`] bytes; zero until it is finished).
#[no_mangle]
pub extern "C" fn ddpm_pixels_ptr() -> *const u8 {
    with(|s| {
        s.pixels.resize(IMAGE_LEN, 0);
        s.pixels.as_ptr()
    })
}

/// CRC-32 of the finished drawing's pixels (the firmware's and the trainer's checksum).
#[no_mangle]
pub extern "C" fn ddpm_checksum() -> u32 {
    with(|s| ddpm_core::crc32(&s.pixels))
}

/// 1 when this build has the SIMD128 kernels.
#[no_mangle]
pub extern "C" fn ddpm_simd128() -> i32 {
    i32::from(cfg!(all(
        target_arch = "wasm32",
        target_feature = "simd128"
    )))
}

/// The last error's message (UTF-8, [`ddpm_error_len`] bytes).
#[no_mangle]
pub extern "C" fn ddpm_error_ptr() -> *const u8 {
    with(|s| s.error.as_ptr())
}

/// Bytes of the last error's message.
#[no_mangle]
pub extern "C" fn ddpm_error_len() -> usize {
    with(|s| s.error.len())
}
