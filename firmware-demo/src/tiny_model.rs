//! What the `tiny` build samples: the int8 TinyUNet (1×28×28, widths 24/64/56, four
//! quarter-resolution mid blocks) of `models/tiny_unet_mnist_int8.ddpm`, embedded in flash with
//! `include_bytes!` and run by ddpm-core's planned int8 executor
//! (`ddpm_core::tiny_unet::planned`): one arena (38,864 bytes, sized for this network at compile
//! time) in which every activation lives only while it is needed, the tail from up2 on streamed
//! row by row, and no ε buffer (each row of ε updates the image as it appears). Same samplers as
//! the default build (DDIM, x0 clipped, ε recomputed, unless `DDPM_DEMO_SAMPLER` says otherwise).
//!
//! With `DDPM_DEMO_CLASS=K` (`cfg(conditional)`) the build embeds the class-conditional model of
//! the same sizes, `models/tiny_unet_mnist_cond_int8.ddpm`, and draws digit K; with
//! `DDPM_DEMO_GUIDANCE=W` too, classifier-free guidance: the same network without its class is
//! the guide (no second model in flash).
//!
//! With `DDPM_DEMO_INPAINT=top|bottom|left|right|center` (`cfg(inpaint)`) the build completes a
//! committed MNIST test digit (`DDPM_DEMO_DIGIT`, default 0) of which that part is hidden, by
//! RePaint (`ddpm_core::diffusion::inpaint_batch` over the same executor); the digit and the mask
//! are f32 tables in flash, so inpainting needs no more RAM than sampling.
//!
//! This module uses nothing but `core` and `ddpm_core`; the host-side check computes the same
//! sample with `ddpm_core::tiny_unet::planned::sample_planned_with_history` and compares it bit
//! for bit.

use ddpm_core::diffusion::{
    inpaint_batch, sample_batch_with_history, GaussianNoise, GuidanceInterval, Inpainting, Network,
    SamplerConfig,
};
use ddpm_core::file::ModelFile;
use ddpm_core::tiny_unet::int8::Int8TinyUNet;
use ddpm_core::tiny_unet::int8::{layer_count, LAYERS, MAX_LAYERS};
use ddpm_core::tiny_unet::planned::{
    arena_len, LayerLaps, Planned, PlannedGuided, TinyInt8Workspace, SINK_LAP,
};
use ddpm_core::{pixel_to_u8, Error, Result, Schedule, TinyUNetConfig};

/// The network of the embedded model file: TinyUNet on 1×28×28 images, widths 24/64/56, four
/// mid blocks (the file's header says so too; `Int8TinyUNet::from_file` reads it from there).
pub const CONFIG: TinyUNetConfig = TinyUNetConfig {
    widths: [24, 64, 56],
    mid_blocks: 4,
    classes: if cfg!(conditional) { 10 } else { 0 },
    ..TinyUNetConfig::DEFAULT
};

/// Bytes of the executor's arena for [`CONFIG`].
pub const ARENA_LEN: usize = arena_len(&CONFIG);
// The workspace's arena is sized for CONFIG; its time scratch for `TinyUNetConfig::DEFAULT`,
// which CONFIG must not exceed.
const _: () = assert!(
    TinyInt8Workspace::<ARENA_LEN>::fits(&CONFIG)
        && CONFIG.emb_dim == TinyUNetConfig::DEFAULT.emb_dim
        && CONFIG.temb_dim == TinyUNetConfig::DEFAULT.temb_dim
);
const _: () = assert!(CONFIG.image_len() == TinyUNetConfig::DEFAULT.image_len());
/// Elements of one image.
pub const IMAGE_LEN: usize = CONFIG.image_len();

/// The embedded model file (stays in flash).
#[cfg(not(conditional))]
pub static MODEL: &[u8] = include_bytes!("../../models/tiny_unet_mnist_int8.ddpm");
/// The embedded class-conditional model file (`DDPM_DEMO_CLASS` builds; stays in flash).
#[cfg(conditional)]
pub static MODEL: &[u8] = include_bytes!("../../models/tiny_unet_mnist_cond_int8.ddpm");

/// The embedded guide (`DDPM_DEMO_GUIDANCE` builds only): the int8 export of the model's guide,
/// `models/tiny_unet_mnist_guide_int8.ddpm` (the same run's weights after two epochs), in flash.
#[cfg(all(guided, not(conditional)))]
pub static GUIDE: &[u8] = include_bytes!("../../models/tiny_unet_mnist_guide_int8.ddpm");

/// f32 values of the guide's stored output: one image in a guided build, none otherwise.
const GUIDE_LEN: usize = if cfg!(guided) { IMAGE_LEN } else { 0 };

/// The embedded guide file, or the error that the build has none.
fn guide_file() -> Result<&'static [u8]> {
    #[cfg(all(guided, not(conditional)))]
    return Ok(GUIDE);
    #[cfg(not(all(guided, not(conditional))))]
    Err(Error::InvalidConfig(
        "this build embeds no guide (build with DDPM_DEMO_GUIDANCE=W)",
    ))
}

/// What the model is, for the printout.
pub const DESCRIPTION: &str = if cfg!(conditional) {
    "TinyUNet 1x28x28, widths 24/64/56, 4 mid blocks, 10 classes, int8, planned arena + \
     row-streamed tail"
} else {
    "TinyUNet 1x28x28, widths 24/64/56, 4 mid blocks, int8, planned arena + row-streamed tail"
};

include!("demo_settings.rs");

/// The known digit and the mask of an inpainting build, in flash (written by `build.rs`).
#[cfg(inpaint)]
mod inpaint_tables {
    include!(concat!(env!("OUT_DIR"), "/inpaint.rs"));
}

/// The embedded known digit and mask, or the error that the build has none.
fn inpaint_tables() -> Result<(&'static [f32], &'static [f32])> {
    #[cfg(inpaint)]
    return Ok((&inpaint_tables::KNOWN, &inpaint_tables::MASK));
    #[cfg(not(inpaint))]
    Err(Error::InvalidConfig(
        "this build embeds no digit to complete (build with DDPM_DEMO_INPAINT=top|...)",
    ))
}

/// Every buffer sampling needs, sized at compile time so it can live in a `static`; `H` f32
/// values of sampler history (at least the sampler's [`DemoSampler::history_len`]).
pub struct Buffers<const H: usize> {
    /// The planned executor's arena and time scratch.
    pub ws: TinyInt8Workspace<ARENA_LEN>,
    /// The image being denoised (ε is never stored whole).
    pub x: [f32; IMAGE_LEN],
    /// The multistep sampler's history.
    pub history: [f32; H],
    /// The guide's output of the current step (guided builds).
    pub guide_out: [f32; GUIDE_LEN],
}

impl<const H: usize> Buffers<H> {
    /// All zeros (a `const`, so a `static` of it lands in `.bss`).
    pub const ZEROED: Self = Self {
        ws: TinyInt8Workspace::ZEROED,
        x: [0.0; IMAGE_LEN],
        history: [0.0; H],
        guide_out: [0.0; GUIDE_LEN],
    };

    /// The finished image as u8 pixels: kept in the first bytes of the arena, which is free
    /// once sampling is done (this saves 784 bytes of RAM).
    pub fn image(&self) -> &[u8] {
        let pixels = &self.ws.arena[..IMAGE_LEN];
        // SAFETY: i8 and u8 have the same size, alignment and validity (every bit pattern), so
        // the same bytes may be viewed as u8 for as long as the i8 borrow lives.
        unsafe { core::slice::from_raw_parts(pixels.as_ptr().cast::<u8>(), pixels.len()) }
    }
}

/// Samples one image with `sampler`, `seed` and `steps` steps (pixels: [`Buffers::image`]),
/// guided by the embedded guide with weight w when `guidance` is `Some(w)` (two passes a
/// step at the steps `interval` holds, one at the others; the guide's output kept in
/// `bufs.guide_out`). A conditional build draws `class`
/// (`None`: "no class"), and its guide is the same network without the class
/// (classifier-free guidance). With `inpaint` (inpainting builds) the image completes the
/// embedded digit by RePaint instead. `schedule` must hold exactly the tables
/// of the embedded model's schedule (checked bit for bit: the firmware keeps them in flash,
/// written at build time).
#[allow(clippy::too_many_arguments)]
pub fn generate<const H: usize>(
    bufs: &mut Buffers<H>,
    schedule: &Schedule<MAX_T>,
    sampler: DemoSampler,
    guidance: Option<f32>,
    interval: GuidanceInterval,
    class: Option<u32>,
    inpaint: Option<DemoInpaint>,
    seed: u64,
    steps: u32,
) -> Result<()> {
    let file = ModelFile::parse(MODEL)?;
    schedule.check_tables(&file.header().schedule)?;
    let unlabelled = Int8TinyUNet::from_file(&file)?;
    let net = unlabelled.with_class(class)?;
    if *net.config() != CONFIG {
        return Err(Error::InvalidConfig(
            "the embedded model's sizes are not tiny_model::CONFIG",
        ));
    }
    let cfg = sampler.config(steps);
    let known = match inpaint {
        Some(d) => {
            let (known, mask) = inpaint_tables()?;
            Some(Inpainting::new(known, mask, d.resampling())?)
        }
        None => None,
    };
    let needed = sampler.history_len() * DemoInpaint::history_factor(inpaint);
    let got = bufs.history.len();
    let history = bufs.history.get_mut(..needed).ok_or(Error::BufferSize {
        what: "sampler history",
        needed,
        got,
    })?;
    let noise = &mut [GaussianNoise::new(seed)];
    let x = &mut bufs.x;
    match guidance {
        None => drive(
            &mut Planned::new(&net, &mut bufs.ws),
            schedule,
            &cfg,
            known.as_ref(),
            noise,
            x,
            history,
        )?,
        Some(w) => {
            let guide = if CONFIG.is_conditional() {
                unlabelled
            } else {
                let gfile = ModelFile::parse(guide_file()?)?;
                if gfile.header().schedule != file.header().schedule {
                    return Err(Error::InvalidConfig(
                        "the embedded guide was trained on another schedule than the model",
                    ));
                }
                Int8TinyUNet::from_file(&gfile)?
            };
            let mut guided =
                PlannedGuided::new(&net, &guide, w, &mut bufs.ws, &mut bufs.guide_out)?
                    .with_interval(interval);
            drive(
                &mut guided,
                schedule,
                &cfg,
                known.as_ref(),
                noise,
                x,
                history,
            )?
        }
    }
    for (px, &v) in bufs.ws.arena.iter_mut().zip(bufs.x.iter()) {
        *px = pixel_to_u8(v) as i8;
    }
    Ok(())
}

/// One image through `net`: sampled ([`sample_batch_with_history`], what
/// `sample_planned_with_history` and `sample_planned_guided` run), or completing `known` by
/// RePaint ([`inpaint_batch`]).
fn drive(
    net: &mut dyn Network,
    schedule: &Schedule<MAX_T>,
    cfg: &SamplerConfig,
    known: Option<&Inpainting<'_>>,
    noise: &mut [GaussianNoise],
    x: &mut [f32],
    history: &mut [f32],
) -> Result<()> {
    match known {
        Some(inp) => inpaint_batch(net, schedule, cfg, inp, noise, x, history),
        None => sample_batch_with_history(net, schedule, cfg, noise, x, history),
    }
}

/// Ticks of one profiled pass of the embedded model ([`profile`]): `begin` is the time MLP and
/// the input's quantization, `layers[k]` layer `k` of [`LAYERS`], `sink` the sampler's row
/// updates, each with the layer's multiply-adds in `macs`.
pub struct Profile {
    /// Time MLP and quantizing the input.
    pub begin: u32,
    /// Each layer of [`LAYERS`] (0 for the layers the network lacks).
    pub layers: [u32; MAX_LAYERS],
    /// Multiply-adds of each layer in one pass.
    pub macs: [u64; MAX_LAYERS],
    /// The sampler's work on the rows of ε (here: none, a sink that only reads them).
    pub sink: u32,
}

impl Profile {
    /// Name, ticks and multiply-adds of every layer of [`CONFIG`]'s network, in forward order
    /// of [`LAYERS`].
    pub fn layers(&self) -> impl Iterator<Item = (&'static str, u32, u64)> + '_ {
        (0..layer_count(&CONFIG)).map(|k| (LAYERS[k], self.layers[k], self.macs[k]))
    }
}

/// Adds the ticks since the last lap to the lap's layer.
struct Laps {
    now: fn() -> u32,
    last: u32,
    ticks: [u32; MAX_LAYERS + 1],
}

impl LayerLaps for Laps {
    fn lap(&mut self, k: usize) {
        let t = (self.now)();
        self.ticks[k] = self.ticks[k].wrapping_add(t.wrapping_sub(self.last));
        self.last = (self.now)();
    }
}

/// Discards the rows of ε.
struct Discard;

impl ddpm_core::diffusion::driver::OutputSink for Discard {
    fn image(&mut self, _: &mut [f32], _: usize, _: &[f32]) -> Result<()> {
        Ok(())
    }
    fn row(&mut self, _: &mut [f32], _: usize, _: usize, _: &[f32]) -> Result<()> {
        Ok(())
    }
}

/// Times one pass of the embedded model on `bufs.x` (as it stands) at time input `t_in`, in the
/// executor sampling uses, layer by layer with the clock `now` (ticks). The time spent reading
/// the clock itself at each lap is left out of every figure.
pub fn profile<const H: usize>(
    bufs: &mut Buffers<H>,
    t_in: f32,
    now: fn() -> u32,
) -> Result<Profile> {
    let file = ModelFile::parse(MODEL)?;
    let net = Int8TinyUNet::from_file(&file)?;
    let t0 = now();
    net.begin_planned(&bufs.x, t_in, &mut bufs.ws)?;
    let begin = now().wrapping_sub(t0);
    let mut laps = Laps {
        now,
        last: now(),
        ticks: [0; MAX_LAYERS + 1],
    };
    net.rows_planned_laps(&mut bufs.ws, &mut [], &mut Discard, &mut laps)?;
    let mut layers = [0; MAX_LAYERS];
    layers.copy_from_slice(&laps.ticks[..MAX_LAYERS]);
    let mut macs = [0; MAX_LAYERS];
    for (k, m) in macs.iter_mut().enumerate() {
        *m = net.layer_macs(k).unwrap_or(0);
    }
    Ok(Profile {
        begin,
        layers,
        macs,
        sink: laps.ticks[SINK_LAP],
    })
}
