//! The planned int8 TinyUNet executor: one arena in which each tensor lives only as long as it
//! is needed, with the full-resolution tail (up1 → out) streamed row by row, and sampling with
//! no buffer for ε.

use crate::diffusion::driver::{self, Collect, Network, OutputSink};
use crate::diffusion::noise::GaussianNoise;
use crate::diffusion::schedule::Schedule;
use crate::diffusion::{GuidanceInterval, SamplerConfig};
use crate::error::{check_len, check_min_len, Error, Result};
use crate::nets::tiny_unet::int8::{
    max, widest, Int8TinyUNet, Kernel, Ring, TimeScratch, UpCat, UpRingCat, EXTRA_MID_LAYER,
    MAX_LAYERS, OUT,
};
use crate::nets::tiny_unet::TinyUNetConfig;

/// Bytes of the planned executor's int8 arena for `cfg`:
///
/// | region | size | holds |
/// | --- | --- | --- |
/// | A | w1·H·W | s1 (enc0 → up1) |
/// | B | max(w2·H/2·W/2, c·H·W) | the quantized image x (enc0), then s2 (down1 → up2) |
/// | C | w3·H/4·W/4 | m, the last mid block's output (→ up2) |
/// | D | max(w3·H/4·W/4, 2·w2·W/2) | d2 (down2 → mid), then the 2-row ring of up2's output |
/// | E | 3·w1·W | the 3-row ring of up1's output |
///
/// With further mid blocks, down2 and the mid blocks pass the quarter-resolution map back and
/// forth between C and D, starting in whichever makes the last one write C; the arena does not
/// grow. The tail is streamed by rows from up2 on: up2's rows are computed as up1 needs them
/// (up1's row r reads up2's rows (r − 1)/2 to (r + 1)/2, so two are enough), up1's rows as
/// out needs them, so neither up2's nor up1's whole output is ever stored.
///
/// 46,592 bytes for [`TinyUNetConfig::DEFAULT`] (25,088 + 12,544 + 3,136 + 3,136 + 2,688).
pub const fn arena_len(cfg: &TinyUNetConfig) -> usize {
    let [p1, _, p3] = cfg.planes();
    let [w1, _, w3] = cfg.widths_usize();
    w1 * p1 + region_b(cfg) + w3 * p3 + region_d(cfg) + region_e(cfg)
}

const fn region_b(cfg: &TinyUNetConfig) -> usize {
    let [p1, p2, _] = cfg.planes();
    max(cfg.widths[1] as usize * p2, cfg.channels as usize * p1)
}

const fn region_d(cfg: &TinyUNetConfig) -> usize {
    let [_, w2, w3] = cfg.widths_usize();
    max(w3 * cfg.planes()[2], 2 * w2 * (cfg.width as usize / 2))
}

const fn region_e(cfg: &TinyUNetConfig) -> usize {
    3 * cfg.widths[0] as usize * cfg.width as usize
}

/// Bytes of [`TinyInt8Workspace`]'s arena unless told otherwise: [`arena_len`] of
/// [`TinyUNetConfig::DEFAULT`].
pub const DEFAULT_ARENA_LEN: usize = arena_len(&TinyUNetConfig::DEFAULT);

/// All the working memory of the planned executor as one statically sized struct: its
/// `size_of` is the executor's whole RAM besides the sampler's image x and ε. The arena holds
/// `A` bytes: [`DEFAULT_ARENA_LEN`] unless a smaller network is all a build runs, in which case
/// `TinyInt8Workspace<{ arena_len(&ITS_CONFIG) }>` keeps only what that network needs (the
/// executor checks the length). The time scratch is sized for [`TinyUNetConfig::DEFAULT`]'s
/// embedding, MLP and widest layer.
pub struct TinyInt8Workspace<const A: usize = DEFAULT_ARENA_LEN> {
    /// The int8 arena ([`arena_len`] of the network it runs, at most `A`).
    pub arena: [i8; A],
    /// Sinusoidal embedding.
    pub emb: [f32; TinyUNetConfig::DEFAULT.emb_dim as usize],
    /// Time MLP hidden vector.
    pub hidden: [f32; TinyUNetConfig::DEFAULT.temb_dim as usize],
    /// temb.
    pub temb: [f32; TinyUNetConfig::DEFAULT.temb_dim as usize],
    /// One block's integer time offsets.
    pub offsets: [i32; widest(&TinyUNetConfig::DEFAULT)],
    /// up2's integer time offsets (up2 and up1 stream their rows together).
    pub up_offsets: [i32; widest(&TinyUNetConfig::DEFAULT)],
    /// One row of ε.
    pub row: [f32; (TinyUNetConfig::DEFAULT.channels * TinyUNetConfig::DEFAULT.width) as usize],
}

impl<const A: usize> TinyInt8Workspace<A> {
    /// Zeroed buffers as a constant, so a `static` of them lands in `.bss`.
    pub const ZEROED: Self = Self {
        arena: [0; A],
        emb: [0.0; TinyUNetConfig::DEFAULT.emb_dim as usize],
        hidden: [0.0; TinyUNetConfig::DEFAULT.temb_dim as usize],
        temb: [0.0; TinyUNetConfig::DEFAULT.temb_dim as usize],
        offsets: [0; widest(&TinyUNetConfig::DEFAULT)],
        up_offsets: [0; widest(&TinyUNetConfig::DEFAULT)],
        row: [0.0; (TinyUNetConfig::DEFAULT.channels * TinyUNetConfig::DEFAULT.width) as usize],
    };

    /// Whether this workspace holds everything the planned executor needs for `cfg`: an arena
    /// of [`arena_len`] bytes, and the time scratch's embedding, MLP vectors, offsets (widest
    /// layer) and ε row. Usable in a `const` assertion, so a build that names its network
    /// checks at compile time what the executor would otherwise refuse at run time.
    pub const fn fits(cfg: &TinyUNetConfig) -> bool {
        let d = TinyUNetConfig::DEFAULT;
        arena_len(cfg) <= A
            && cfg.emb_dim <= d.emb_dim
            && cfg.temb_dim <= d.temb_dim
            && widest(cfg) <= widest(&d)
            && cfg.channels * cfg.width <= d.channels * d.width
    }

    /// The arena, the time scratch and up2's time offsets.
    pub fn split(&mut self) -> (&mut [i8], TimeScratch<'_>, &mut [i32]) {
        (
            &mut self.arena,
            TimeScratch {
                emb: &mut self.emb,
                hidden: &mut self.hidden,
                temb: &mut self.temb,
                offsets: &mut self.offsets,
                row: &mut self.row,
            },
            &mut self.up_offsets,
        )
    }
}

/// The whole working memory of one int8 DDIM sample with [`TinyUNetConfig::DEFAULT`] through
/// [`sample_planned`]: the planned executor's workspace and the sampler's state x (f32). ε is
/// never stored whole: each row (C·W f32, on the stack) updates x as it appears. The noise
/// generator and the schedule are not included (the schedule lives where the caller puts it).
pub struct TinyInt8SampleMemory {
    /// Executor workspace.
    pub ws: TinyInt8Workspace,
    /// Sampler state x.
    pub x: [f32; TinyUNetConfig::DEFAULT.image_len()],
}

impl TinyInt8SampleMemory {
    /// Zeroed buffers as a constant, so a `static` of them lands in `.bss`.
    pub const ZEROED: Self = Self {
        ws: TinyInt8Workspace::ZEROED,
        x: [0.0; TinyUNetConfig::DEFAULT.image_len()],
    };
}

impl<'a> Int8TinyUNet<'a> {
    /// The planned int8 forward pass: the same integers as [`Int8TinyUNet::forward_layerwise`]
    /// in an arena of [`arena_len`] bytes (regions and lifetimes documented there), with up1
    /// and out interleaved row by row, in the workspace `ws`. ε is written whole into `eps`.
    pub fn forward_planned<const A: usize>(
        &self,
        x: &[f32],
        t_in: f32,
        ws: &mut TinyInt8Workspace<A>,
        eps: &mut [f32],
    ) -> Result<()> {
        check_len("output image", self.cfg.image_len(), eps.len())?;
        self.begin_planned(x, t_in, ws)?;
        self.rows_planned(ws, &mut [], &mut Collect { out: eps })
    }

    /// First part of the planned pass: quantizes `x` into the arena and computes temb. After
    /// it, `x` is not read again, so a sampler may update it while the rows of ε appear.
    pub fn begin_planned<const A: usize>(
        &self,
        x: &[f32],
        t_in: f32,
        ws: &mut TinyInt8Workspace<A>,
    ) -> Result<()> {
        let cfg = self.cfg;
        let (arena, mut time, _) = ws.split();
        check_len("input image", cfg.image_len(), x.len())?;
        check_min_len("int8 arena", arena_len(&cfg), arena.len())?;
        self.time_embedding(t_in, &mut time)?;
        let (_, rest) = arena.split_at_mut(cfg.widths[0] as usize * cfg.planes()[0]);
        self.quantize_input(x, &mut rest[..cfg.image_len()]);
        Ok(())
    }

    /// Second part of the planned pass: every layer from the quantized input left in the arena
    /// by [`Int8TinyUNet::begin_planned`]; each row `y` of ε (`[c, W]`) is handed to `sink`
    /// (with the image `x`, which the pass no longer reads) as soon as it is computed, in
    /// increasing `y`. From up2 on the pass goes by rows ([`arena_len`]): up2's rows into the
    /// 2-row ring of region D as up1 needs them, up1's into the 3-row ring of region E, and
    /// after up1's row r, out's row r − 1 from up1 rows r − 2, r − 1, r.
    pub fn rows_planned<const A: usize>(
        &self,
        ws: &mut TinyInt8Workspace<A>,
        x: &mut [f32],
        sink: &mut dyn OutputSink,
    ) -> Result<()> {
        self.rows_planned_laps(ws, x, sink, &mut NoLaps)
    }

    /// [`Int8TinyUNet::rows_planned`] telling `laps` when each layer (and each row of up1,
    /// out and the sink) is done, for profiling; the integers are the same.
    pub fn rows_planned_laps<const A: usize>(
        &self,
        ws: &mut TinyInt8Workspace<A>,
        x: &mut [f32],
        sink: &mut dyn OutputSink,
        laps: &mut dyn LayerLaps,
    ) -> Result<()> {
        let cfg = self.cfg;
        let (arena, time, up_offs) = ws.split();
        check_min_len("int8 arena", arena_len(&cfg), arena.len())?;
        self.check_time(&time)?;
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
        let [p1, p2, p3] = cfg.planes();
        let (ra, rest) = arena.split_at_mut(w1 * p1);
        let (rb, rest) = rest.split_at_mut(region_b(&cfg));
        let (rc, rest) = rest.split_at_mut(w3 * p3);
        let (rd, re) = rest.split_at_mut(region_d(&cfg));
        let [enc0, down1, down2, mid, up2, up1, out] = &self.layers;
        let temb = &time.temb[..cfg.temb_dim as usize];
        let offs = &mut time.offsets[..];

        let xq = &rb[..cfg.image_len()];
        let s1 = &mut ra[..];
        let (h2, wd2) = (h / 2, w / 2);
        let (h4, w4) = (h / 4, w / 4);
        enc0.plain_block(Kernel::Rows, temb, offs, xq, (h, w), s1);
        laps.lap(0);
        let s2 = &mut rb[..w2 * p2];
        down1.plain_block(Kernel::Rows, temb, offs, s1, (h, w), s2);
        laps.lap(1);
        // down2 and the mid blocks pass the quarter-resolution map between regions C and D,
        // starting so that the last mid block writes C: down2 writes D for an odd number of
        // mid blocks, C for an even one.
        {
            let (mut cur, mut spare) = if cfg.mid_blocks % 2 == 1 {
                (&mut rd[..w3 * p3], &mut rc[..])
            } else {
                (&mut rc[..], &mut rd[..w3 * p3])
            };
            down2.plain_block(Kernel::Rows, temb, offs, s2, (h2, wd2), cur);
            laps.lap(2);
            for (k, l) in core::iter::once(mid).chain(self.extra_mid()).enumerate() {
                l.plain_block(Kernel::Rows, temb, offs, cur, (h4, w4), spare);
                core::mem::swap(&mut cur, &mut spare);
                laps.lap(if k == 0 { 3 } else { EXTRA_MID_LAYER + k - 1 });
            }
        }
        // d2 and every earlier mid output are dead: region D becomes the ring of up2's rows,
        // region E the ring of up1's.
        let cat2 = UpCat {
            up: rc,
            up_c: w3,
            skip: s2,
            h: h2,
            w: wd2,
        };
        up2.time_offsets(temb, up_offs);
        up1.time_offsets(temb, offs);
        let u2_ring = &mut rd[..2 * w2 * wd2];
        let ring = &mut re[..3 * w1 * w];
        let row_len = (cfg.channels * cfg.width) as usize;
        check_min_len("time scratch row", row_len, time.row.len())?;
        let eps_row = &mut time.row[..row_len];
        let mut u2_rows = 0;
        for r in 0..h {
            // up1's row r reads up2's rows up to (r + 1)/2.
            while u2_rows <= r.div_ceil(2).min(h2 - 1) {
                let slot = &mut u2_ring[(u2_rows % 2) * w2 * wd2..][..w2 * wd2];
                up2.block_row(Kernel::Rows, &cat2, h2, wd2, u2_rows, up_offs, slot, wd2);
                u2_rows += 1;
                laps.lap(4);
            }
            let cat1 = UpRingCat {
                ring: u2_ring,
                up_c: w2,
                skip: s1,
                h,
                w,
            };
            let slot = &mut ring[(r % 3) * w1 * w..(r % 3 + 1) * w1 * w];
            up1.block_row(Kernel::Rows, &cat1, h, w, r, offs, slot, w);
            laps.lap(UP1);
            if r >= 1 {
                let src = Ring {
                    rows: ring,
                    c: w1,
                    w,
                };
                out.dequant_row(Kernel::Rows, &src, h, w, r - 1, eps_row, w);
                laps.lap(OUT);
                sink.row(x, r - 1, w, eps_row)?;
                laps.lap(SINK_LAP);
            }
        }
        let src = Ring {
            rows: ring,
            c: w1,
            w,
        };
        out.dequant_row(Kernel::Rows, &src, h, w, h - 1, eps_row, w);
        laps.lap(OUT);
        sink.row(x, h - 1, w, eps_row)?;
        laps.lap(SINK_LAP);
        Ok(())
    }
}

/// Index of up1 in [`LAYERS`](crate::nets::tiny_unet::int8::LAYERS).
const UP1: usize = 5;

/// The lap of the sink's work on one row of ε ([`LayerLaps::lap`]), after the layers' indices.
pub const SINK_LAP: usize = MAX_LAYERS;

/// Told when each part of a planned pass is done, for profiling
/// ([`Int8TinyUNet::rows_planned_laps`]).
pub trait LayerLaps {
    /// The work since the previous lap was layer `k` of
    /// [`LAYERS`](crate::nets::tiny_unet::int8::LAYERS), or the sink's when `k` is
    /// [`SINK_LAP`]. up1, out and the sink are streamed, so their laps come once per row.
    fn lap(&mut self, k: usize);
}

/// Laps that nobody times.
pub struct NoLaps;

impl LayerLaps for NoLaps {
    #[inline(always)]
    fn lap(&mut self, _: usize) {}
}

/// The planned executor with its workspace as a [`Network`] of the sampling driver: x is read
/// only while it is quantized, before the first row of ε, which then updates x row by row (no
/// ε buffer exists).
pub struct Planned<'n, 'a, 'w, const A: usize> {
    net: &'n Int8TinyUNet<'a>,
    ws: &'w mut TinyInt8Workspace<A>,
}

impl<'n, 'a, 'w, const A: usize> Planned<'n, 'a, 'w, A> {
    /// The executor `net` over `ws` (the arena's length is checked on every pass).
    pub fn new(net: &'n Int8TinyUNet<'a>, ws: &'w mut TinyInt8Workspace<A>) -> Self {
        Self { net, ws }
    }
}

impl<const A: usize> Network for Planned<'_, '_, '_, A> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }
    fn output(&mut self, x: &mut [f32], t_in: f32, sink: &mut dyn OutputSink) -> Result<()> {
        self.net.begin_planned(x, t_in, self.ws)?;
        self.net.rows_planned(self.ws, x, sink)
    }
}

/// A whole sample through the planned executor with no ε buffer
/// ([`crate::diffusion::sample_batch`] of one over [`Planned`]): `x` is filled with noise from `seed`
/// and updated row by row as each step's ε rows appear. With one image channel, noise is drawn
/// in the order of [`crate::diffusion::sample`], so the result equals
/// `sampler::sample(Int8TinyPlanned)` bit for bit. Working memory: `x`, `ws`, the schedule.
pub fn sample_planned<const M: usize, const A: usize>(
    net: &Int8TinyUNet<'_>,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    seed: u64,
    x: &mut [f32],
    ws: &mut TinyInt8Workspace<A>,
) -> Result<()> {
    sample_planned_with_history(net, sched, cfg, seed, x, ws, &mut [])
}

/// [`sample_planned`] with a multistep sampler's history (`cfg.history_len(x.len())` long:
/// DPM-Solver++(2M) one value per element, UniPC two; empty for DDPM and DDIM), see
/// [`crate::diffusion::sample_batch_with_history`].
pub fn sample_planned_with_history<const M: usize, const A: usize>(
    net: &Int8TinyUNet<'_>,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    seed: u64,
    x: &mut [f32],
    ws: &mut TinyInt8Workspace<A>,
    history: &mut [f32],
) -> Result<()> {
    let noise = &mut [GaussianNoise::new(seed)];
    driver::sample_batch_with_history(&mut Planned::new(net, ws), sched, cfg, noise, x, history)
}

/// Autoguided sampling through the planned executor (`guide + w·(model − guide)`): at every
/// step the guide's pass runs first and its output is kept in `guide_out` (one image of f32),
/// then the model's pass, whose rows are mixed with the guide's as they appear and step the
/// image ([`driver::guided_output`]). Both networks run in the one workspace in turn, so guided
/// sampling needs one more image of f32 and no second arena; each step costs two passes.
pub struct PlannedGuided<'n, 'a, 'w, 'g, const A: usize> {
    net: &'n Int8TinyUNet<'a>,
    guide: &'n Int8TinyUNet<'a>,
    weight: f32,
    interval: GuidanceInterval,
    ws: &'w mut TinyInt8Workspace<A>,
    guide_out: &'g mut [f32],
}

impl<'n, 'a, 'w, 'g, const A: usize> PlannedGuided<'n, 'a, 'w, 'g, A> {
    /// `net` guided by `guide` with weight `weight` over `ws`; `guide_out` holds one image.
    /// Errors when the two networks draw images of different sizes, `guide_out` is not one
    /// image long or the weight is not finite (the arena is checked on every pass, for each
    /// network).
    pub fn new(
        net: &'n Int8TinyUNet<'a>,
        guide: &'n Int8TinyUNet<'a>,
        weight: f32,
        ws: &'w mut TinyInt8Workspace<A>,
        guide_out: &'g mut [f32],
    ) -> Result<Self> {
        let (c, g) = (net.config(), guide.config());
        if (c.channels, c.height, c.width) != (g.channels, g.height, g.width) {
            return Err(Error::InvalidConfig(
                "the guide draws images of another size than the model",
            ));
        }
        check_len("guide output", c.image_len(), guide_out.len())?;
        if !weight.is_finite() {
            return Err(Error::InvalidConfig("guidance weight must be finite"));
        }
        Ok(Self {
            net,
            guide,
            weight,
            interval: GuidanceInterval::ALWAYS,
            ws,
            guide_out,
        })
    }

    /// Guided only at the steps `interval` holds; at the others the model's pass alone runs
    /// (one pass, not two).
    pub fn with_interval(mut self, interval: GuidanceInterval) -> Self {
        self.interval = interval;
        self
    }
}

impl<const A: usize> Network for PlannedGuided<'_, '_, '_, '_, A> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }
    fn output(&mut self, x: &mut [f32], t_in: f32, sink: &mut dyn OutputSink) -> Result<()> {
        let (net, guide) = (self.net, self.guide);
        let pass = |n: &Int8TinyUNet<'_>,
                    ws: &mut TinyInt8Workspace<A>,
                    x: &mut [f32],
                    s: &mut dyn OutputSink| {
            n.begin_planned(x, t_in, ws)?;
            n.rows_planned(ws, x, s)
        };
        if !self.interval.contains(t_in) {
            return pass(net, self.ws, x, sink);
        }
        driver::guided_output(
            self.ws,
            x,
            self.guide_out,
            self.weight,
            sink,
            |ws, x, s| pass(guide, ws, x, s),
            |ws, x, s| pass(net, ws, x, s),
        )
    }
}

/// [`sample_planned_with_history`] guided by `guide` with weight `weight` ([`PlannedGuided`]):
/// working memory `x`, `ws`, `guide_out` (one image of f32) and the sampler's history.
#[allow(clippy::too_many_arguments)]
pub fn sample_planned_guided<const M: usize, const A: usize>(
    net: &Int8TinyUNet<'_>,
    guide: &Int8TinyUNet<'_>,
    weight: f32,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    seed: u64,
    x: &mut [f32],
    ws: &mut TinyInt8Workspace<A>,
    guide_out: &mut [f32],
    history: &mut [f32],
) -> Result<()> {
    let noise = &mut [GaussianNoise::new(seed)];
    let mut guided = PlannedGuided::new(net, guide, weight, ws, guide_out)?;
    driver::sample_batch_with_history(&mut guided, sched, cfg, noise, x, history)
}

/// A [`Denoiser`](crate::diffusion::Denoiser) running the planned int8 executor.
pub struct Int8TinyPlanned<'a, 'b> {
    net: Int8TinyUNet<'a>,
    ws: &'b mut TinyInt8Workspace,
}

impl<'a, 'b> Int8TinyPlanned<'a, 'b> {
    /// Checks that the network has the workspace's configuration ([`TinyUNetConfig::DEFAULT`]).
    pub fn new(net: Int8TinyUNet<'a>, ws: &'b mut TinyInt8Workspace) -> Result<Self> {
        if *net.config() != TinyUNetConfig::DEFAULT {
            return Err(Error::InvalidConfig(
                "TinyInt8Workspace is sized for TinyUNetConfig::DEFAULT",
            ));
        }
        Ok(Self { net, ws })
    }
}

impl crate::diffusion::Denoiser for Int8TinyPlanned<'_, '_> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        self.net.forward_planned(x, t_in, self.ws, eps)
    }
}
