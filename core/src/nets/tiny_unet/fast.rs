//! TinyUNet's host fast path: shifted-run convolutions over padded channels-first maps
//! ([`crate::kernels::shifted`]), the up-sampling folded into the up blocks' weights, layers
//! split over threads when they are large enough.

use alloc::vec;
use alloc::vec::Vec;

use crate::diffusion::Denoiser;
use crate::error::{check_len, Result};

use crate::kernels::gemm::grown;
use crate::kernels::rows::{run_images, run_split, Workers};
use crate::kernels::shifted::{Grid, Map, ShiftedConv, Taps, SR};

/// Strides of TinyUNet's enc0, down1, down2 and mid.
const TINY_STRIDES: [usize; 4] = [1, 2, 2, 1];

/// A TinyUNet layer is split over threads only when every thread gets at least this many
/// multiply-adds (about 2 µs of work, against about a microsecond to hand a part to a spinning
/// worker of the pool; `out`, one output channel, stays on one thread). With 400 k (enc0 and
/// out unsplit) batch 1 on 2 threads took 0.41–0.45 ms, with 80 k 0.40–0.45 (AMD EPYC, 2
/// vCPUs, against about 0.70 on one thread).
const MIN_SPLIT_MACS: usize = 80_000;

/// A 3×3 stride-1 convolution over `[up(a), s]`, the 2× nearest-neighbour up-sampling of a map
/// `a` concatenated with a skip map `s` (TinyUNet's up2 and up1). The up-sampling is never
/// formed: output pixel (2y + a', 2x + b') sees `up(a)` through only 2×2 distinct pixels of
/// `a`, so each of the four output phases is a four-tap convolution of `a` with summed
/// weights ([`Taps::phase`]): 4/9 of the multiply-adds of `a`'s channels. `s`'s channels
/// run as an ordinary [`ShiftedConv`] (with the bias), and the epilogue adds the two.
#[derive(Clone)]
struct UpConv {
    skip: ShiftedConv,
    /// Phases (0,0), (0,1), (1,0), (1,1).
    phases: [ShiftedConv; 4],
}

/// `FOLD[a][t]`: the kernel rows (or columns) that tap `t` of phase `a` of an [`UpConv`] sums.
const FOLD: [[&[usize]; 2]; 2] = [[&[0], &[1, 2]], [&[0, 1], &[2]]];

impl UpConv {
    /// From a Conv2d kernel `[out, ca + cs, 3, 3]` over `[up(a), s]` and bias `[out]`.
    fn new(weight: &[f32], bias: &[f32], (ca, cs): (usize, usize), out_c: usize) -> Self {
        let at = |o: usize, i: usize, ky: usize, kx: usize| {
            weight[(o * (ca + cs) + i) * 9 + ky * 3 + kx]
        };
        let skip = ShiftedConv::packed((cs, out_c, 9), 1, bias, |o, i, t| {
            at(o, ca + i, t / 3, t % 3)
        });
        let phases = core::array::from_fn(|ph| {
            let (a, b) = (ph / 2, ph % 2);
            ShiftedConv::packed((ca, out_c, 4), 1, &[], |o, i, t| {
                let mut sum = 0.0f32;
                for &ky in FOLD[a][t / 2] {
                    for &kx in FOLD[b][t % 2] {
                        sum += at(o, i, ky, kx);
                    }
                }
                sum
            })
        });
        Self { skip, phases }
    }
}

/// Rearranges `c` padded planes of grid `g` (even sizes) into their four stride-2 phases, in
/// place of each plane: phase (a, b) holds the plane's values at (2Y + a, 2X + b) as
/// `[(h+2)/2][(w+2)/2]`, the phases in the order (0,0), (0,1), (1,0), (1,1).
fn split_phases(src: &[f32], c: usize, g: Grid, dst: &mut [f32]) {
    let (pw, half) = (g.pw(), g.pw() / 2);
    let pp = g.plane() / 4;
    for (s, d) in src
        .chunks_exact(g.plane())
        .zip(dst.chunks_exact_mut(g.plane()))
        .take(c)
    {
        for (ph, q) in d.chunks_exact_mut(pp).enumerate() {
            let (a, b) = (ph / 2, ph % 2);
            for (yy, qrow) in q.chunks_exact_mut(half).enumerate() {
                let srow = &s[(2 * yy + a) * pw..][..pw];
                for (v, pair) in qrow.iter_mut().zip(srow.chunks_exact(2)) {
                    *v = pair[b];
                }
            }
        }
    }
}

/// [`split_phases`] of the channels shared out over the threads (each part writes its own
/// planes of `dst`).
fn split_phases_split(
    src: &[f32],
    c: usize,
    g: Grid,
    dst: &mut [f32],
    (workers, scratch): (&Workers, &mut [TinyScratch]),
) {
    let plane = g.plane();
    let dst = &mut dst[..c * plane];
    run_split(
        workers,
        c,
        dst,
        scratch,
        &|r| r.len() * plane,
        &|r, _, out| {
            split_phases(&src[r.start * plane..r.end * plane], r.len(), g, out);
        },
    );
}

/// Scratch of one thread of [`FastTinyUNet`]: the output of the rows it computes (grown as
/// needed).
#[derive(Clone, Default)]
struct TinyScratch {
    part: Vec<f32>,
}

/// Activations of one image of [`FastTinyUNet`], padded channels-first maps ([`Grid`]).
#[derive(Clone)]
struct TinyActs {
    x: Vec<f32>,
    /// The input of a stride-2 layer, split into phases ([`split_phases`]).
    phases: Vec<f32>,
    s1: Vec<f32>,
    s2: Vec<f32>,
    d2: Vec<f32>,
    m: Vec<f32>,
    u2: Vec<f32>,
    u1: Vec<f32>,
}

impl TinyActs {
    fn new(cfg: &crate::nets::tiny_unet::TinyUNetConfig) -> Self {
        let c = cfg.channels as usize;
        let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
        let [g1, g2, g3] = tiny_grids(cfg);
        Self {
            x: vec![0.0; g1.len(c)],
            phases: vec![0.0; g1.len(w1).max(g2.len(w2))],
            s1: vec![0.0; g1.len(w1)],
            s2: vec![0.0; g2.len(w2)],
            d2: vec![0.0; g3.len(w3)],
            m: vec![0.0; g3.len(w3)],
            u2: vec![0.0; g2.len(w2)],
            u1: vec![0.0; g1.len(w1)],
        }
    }
}

/// The full, half and quarter resolution grids of a TinyUNet.
fn tiny_grids(cfg: &crate::nets::tiny_unet::TinyUNetConfig) -> [Grid; 3] {
    let (h, w) = (cfg.height as usize, cfg.width as usize);
    [1, 2, 4].map(|s| Grid { h: h / s, w: w / s })
}

/// The packed weights of a [`FastTinyUNet`], shared by its threads.
#[derive(Clone)]
struct TinyLayers {
    cfg: crate::nets::tiny_unet::TinyUNetConfig,
    /// enc0, down1, down2, mid.
    enc: [ShiftedConv; 4],
    /// up2, up1.
    dec: [UpConv; 2],
    /// mid1, mid2, … (`mid_blocks − 1` of them).
    extra_mid: Vec<ShiftedConv>,
    out: ShiftedConv,
    time0_w: Vec<f32>,
    time0_b: Vec<f32>,
    time2_w: Vec<f32>,
    time2_b: Vec<f32>,
    /// Every block's time projection, in [`crate::nets::tiny_unet::block`] order.
    temb_w: Vec<Vec<f32>>,
    temb_b: Vec<Vec<f32>>,
    /// `class_emb.weight` of a class-conditional network (empty otherwise).
    class_emb: Vec<f32>,
    /// Use the AVX2 + FMA kernel where the CPU has it.
    simd: bool,
}

/// A layer's output map, written by the parts of a split layer at once, each into rows no
/// other part writes.
struct SharedMap {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the parts write disjoint elements (each output row of each channel belongs to one
// part, see `SharedMap::row`), and the map outlives the split (`run_split` returns after every
// part is done).
unsafe impl Sync for SharedMap {}

impl SharedMap {
    fn new(dst: &mut [f32]) -> Self {
        Self {
            ptr: dst.as_mut_ptr(),
            len: dst.len(),
        }
    }

    /// `n` values from `start`.
    ///
    /// # Safety
    /// No other part may read or write any of them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, start: usize, n: usize) -> &mut [f32] {
        assert!(start + n <= self.len, "a row past the output map");
        // SAFETY: in bounds (asserted); exclusive by the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), n) }
    }
}

/// `dst = ReLU(conv(input) + proj)` per output channel, or `dst = conv(input)` when `proj` is
/// `None`, for input grid `g` (`input` as [`ShiftedConv::run_channel_blocks`] takes it); `dst` is written
/// at map `to`. The output channels are split, in blocks of the kernel's width, over up to
/// `scratch.len()` threads (feature `threads`), each computing every row of its channels into
/// its own scratch and then writing them, with the projection and the ReLU, into `dst`
/// (channel blocks rather than rows: the 7×7 maps' rows cut 3 : 4, the blocks evenly, and each
/// thread reads only its channels' weights). Every output value goes through the same
/// operations whatever the split, so results do not depend on the thread count.
#[allow(clippy::too_many_arguments)]
fn tiny_layer(
    conv: &ShiftedConv,
    input: &[f32],
    g: Grid,
    proj: Option<&[f32]>,
    (workers, scratch): (&Workers, &mut [TinyScratch]),
    simd: bool,
    dst: &mut [f32],
    to: Map,
) {
    let og = conv.out_grid(g);
    let taps = Taps::new(g, conv.stride);
    let macs = conv.in_c * 9 * conv.out_c * og.h * og.w;
    let blocks = conv.blocks();
    let parts = scratch.len().min(blocks).min(macs / MIN_SPLIT_MACS).max(1);
    let scratch = &mut scratch[..parts];
    let np = taps.part_len(og.h);
    let out = SharedMap::new(dst);
    run_split(workers, blocks, &mut [], scratch, &|_| 0, &|b, sc, _| {
        let part = grown(&mut sc.part, b.len() * SR * np);
        conv.run_channel_blocks(input, taps, 0..og.h, b.clone(), part, simd);
        for o in SR * b.start..(SR * b.end).min(conv.out_c) {
            let po = o - SR * b.start;
            for y in 0..og.h {
                let src = &part[po * np + y * taps.row..][..og.w];
                // SAFETY: channel o belongs to this part's blocks `b` alone.
                let d = unsafe { out.row(to.at(o, y, 0), og.w) };
                match proj {
                    Some(pr) => {
                        for (d, &s) in d.iter_mut().zip(src) {
                            *d = add_relu(s, pr[o]);
                        }
                    }
                    None => d.copy_from_slice(src),
                }
            }
        }
    });
}

/// `ReLU(v + p)`.
fn add_relu(v: f32, p: f32) -> f32 {
    let s = v + p;
    if s < 0.0 {
        0.0
    } else {
        s
    }
}

/// `dst = ReLU(conv([up(a), s]) + proj)` per output channel for an [`UpConv`]: `a` the padded
/// map of grid `g`, `s` the padded map of the doubled grid; `dst` is written at map `to`. Split
/// over threads by blocks of output channels, like [`tiny_layer`].
#[allow(clippy::too_many_arguments)]
fn up_layer(
    conv: &UpConv,
    (a, g): (&[f32], Grid),
    s: &[f32],
    proj: &[f32],
    (workers, scratch): (&Workers, &mut [TinyScratch]),
    simd: bool,
    dst: &mut [f32],
    to: Map,
) {
    let big = Grid {
        h: 2 * g.h,
        w: 2 * g.w,
    };
    let (skip, ph) = (Taps::new(big, 1), Taps::phase(g, 0, 0));
    let (ca, cs, out_c) = (conv.phases[0].in_c, conv.skip.in_c, conv.skip.out_c);
    let macs = (ca * 4 + cs * 9) * out_c * big.h * big.w;
    let blocks = conv.skip.blocks();
    let parts = scratch.len().min(blocks).min(macs / MIN_SPLIT_MACS).max(1);
    let scratch = &mut scratch[..parts];
    let (ns, nl) = (skip.part_len(big.h), ph.part_len(g.h));
    let out = SharedMap::new(dst);
    run_split(workers, blocks, &mut [], scratch, &|_| 0, &|b, sc, _| {
        let cp = b.len() * SR;
        let part = grown(&mut sc.part, cp * (ns + 4 * nl));
        let (sp, up) = part.split_at_mut(cp * ns);
        conv.skip
            .run_channel_blocks(s, skip, 0..big.h, b.clone(), sp, simd);
        for (k, (c, u)) in conv
            .phases
            .iter()
            .zip(up.chunks_exact_mut(cp * nl))
            .enumerate()
        {
            let taps = Taps::phase(g, k / 2, k % 2);
            c.run_channel_blocks(a, taps, 0..g.h, b.clone(), u, simd);
        }
        let channels = SR * b.start..(SR * b.end).min(out_c);
        for (po, (o, &pr)) in channels.clone().zip(&proj[channels]).enumerate() {
            for y in 0..big.h {
                let src = &sp[po * ns + y * skip.row..][..big.w];
                let phase = |bb: usize| {
                    let k = (y % 2) * 2 + bb;
                    &up[(k * cp + po) * nl + (y / 2) * ph.row..][..g.w]
                };
                let (even, odd) = (phase(0), phase(1));
                // SAFETY: channel o belongs to this part's blocks `b` alone.
                let d = unsafe { out.row(to.at(o, y, 0), big.w) };
                for (((d, s), &e), &q) in d
                    .chunks_exact_mut(2)
                    .zip(src.chunks_exact(2))
                    .zip(even)
                    .zip(odd)
                {
                    d[0] = add_relu(s[0] + e, pr);
                    d[1] = add_relu(s[1] + q, pr);
                }
            }
        }
    });
}

impl TinyLayers {
    /// Output channels of each block, in [`crate::nets::tiny_unet::block`] order.
    fn block_widths(&self) -> impl Iterator<Item = usize> + '_ {
        let [e0, e1, e2, e3] = &self.enc;
        [e0, e1, e2, e3, &self.dec[0].skip, &self.dec[1].skip]
            .into_iter()
            .chain(&self.extra_mid)
            .map(|c| c.out_c)
    }

    /// Length of one image's time projections (all blocks').
    fn proj_len(&self) -> usize {
        self.block_widths().sum()
    }

    /// Every block's time projections at network time input `t_in` (and class `label` of a
    /// class-conditional network), concatenated into `proj` ([`Self::proj_len`] values), with
    /// `emb`, `hidden` and `temb` as scratch.
    fn projections(
        &self,
        t_in: f32,
        label: u32,
        (emb, hidden, temb): (&mut [f32], &mut [f32], &mut [f32]),
        proj: &mut [f32],
    ) -> Result<()> {
        use crate::nets::tiny_unet::{TINY_MAX_PERIOD, TINY_TIME_SCALE};
        crate::kernels::reference::sinusoidal_embedding(
            t_in * TINY_TIME_SCALE,
            TINY_MAX_PERIOD,
            emb,
        )?;
        crate::kernels::reference::linear(emb, &self.time0_w, &self.time0_b, hidden)?;
        crate::kernels::reference::relu(hidden);
        crate::kernels::reference::linear(hidden, &self.time2_w, &self.time2_b, temb)?;
        crate::nets::tiny_unet::reference::add_class_row(&self.class_emb, label, temb);
        let mut rest = proj;
        for (k, width) in self.block_widths().enumerate() {
            let (pr, tail) = rest.split_at_mut(width);
            crate::kernels::reference::linear(temb, &self.temb_w[k], &self.temb_b[k], pr)?;
            rest = tail;
        }
        Ok(())
    }

    /// One image `x` through the network with its time projections `proj`; each layer's rows
    /// are split over `scratch.len()` threads.
    fn forward(
        &self,
        x: &[f32],
        proj: &[f32],
        acts: &mut TinyActs,
        (workers, scratch): (&Workers, &mut [TinyScratch]),
        out: &mut [f32],
    ) {
        let cfg = self.cfg;
        let (c, [w1, w2, _]) = (cfg.channels as usize, cfg.widths.map(|v| v as usize));
        let [g1, g2, g3] = tiny_grids(&cfg);
        let mut projs = [&[][..]; crate::nets::tiny_unet::block::MAX];
        let mut rest = proj;
        for (pr, width) in projs.iter_mut().zip(self.block_widths()) {
            (*pr, rest) = rest.split_at(width);
        }
        let [p0, p1, p2, p3, p4, p5, extra_projs @ ..] = projs;
        let TinyActs {
            x: xp,
            phases,
            s1,
            s2,
            d2,
            m,
            u2,
            u1,
        } = acts;
        let simd = self.simd;
        let [enc0, down1, down2, mid] = &self.enc;
        let [up2, up1] = &self.dec;
        let dense = Map::dense(g1.h, g1.w);
        copy_into_padded(x, dense, c, g1, xp);
        // enc0 → s1; down1 (on s1's phases) → s2; down2 (on s2's phases) → d2; mid → m.
        tiny_layer(
            enc0,
            xp,
            g1,
            Some(p0),
            (workers, &mut *scratch),
            simd,
            s1,
            g1.padded(),
        );
        split_phases_split(s1, w1, g1, phases, (workers, &mut *scratch));
        tiny_layer(
            down1,
            phases,
            g1,
            Some(p1),
            (workers, &mut *scratch),
            simd,
            s2,
            g2.padded(),
        );
        split_phases_split(s2, w2, g2, phases, (workers, &mut *scratch));
        tiny_layer(
            down2,
            phases,
            g2,
            Some(p2),
            (workers, &mut *scratch),
            simd,
            d2,
            g3.padded(),
        );
        tiny_layer(
            mid,
            d2,
            g3,
            Some(p3),
            (workers, &mut *scratch),
            simd,
            m,
            g3.padded(),
        );
        // mid1 …: the map passes between m and d2; `m` names the latest.
        let (mut m, mut spare) = (m, d2);
        for (conv, pr) in self.extra_mid.iter().zip(extra_projs) {
            tiny_layer(
                conv,
                m,
                g3,
                Some(pr),
                (workers, &mut *scratch),
                simd,
                spare,
                g3.padded(),
            );
            core::mem::swap(&mut m, &mut spare);
        }
        // up2: [up(m), s2] → u2; up1: [up(u2), s1] → u1.
        up_layer(
            up2,
            (m, g3),
            s2,
            p4,
            (workers, &mut *scratch),
            simd,
            u2,
            g2.padded(),
        );
        up_layer(
            up1,
            (u2, g2),
            s1,
            p5,
            (workers, &mut *scratch),
            simd,
            u1,
            g1.padded(),
        );
        // out, no ReLU.
        tiny_layer(
            &self.out,
            u1,
            g1,
            None,
            (workers, &mut *scratch),
            simd,
            out,
            dense,
        );
    }
}

/// Copies `c` channels of the map `src` (at `from`) into the interior of the padded map `dst`
/// of grid `g`.
fn copy_into_padded(src: &[f32], from: Map, c: usize, g: Grid, dst: &mut [f32]) {
    let to = g.padded();
    for ch in 0..c {
        for y in 0..g.h {
            dst[to.at(ch, y, 0)..][..g.w].copy_from_slice(&src[from.at(ch, y, 0)..][..g.w]);
        }
    }
}

/// A TinyUNet with weights packed for the fast path: every conv computed straight from padded
/// channels-first maps by one kernel ([`ShiftedConv`]: no im2col, no packing, an AVX2 + FMA
/// kernel where the CPU has one), the stride-2 layers over their input's four phases, the
/// up-sampling blocks without forming the up-sampled map ([`UpConv`]), and the time projection
/// and ReLU applied as each layer's output is gathered. (The channels-last Winograd layers of
/// [`FastSimpleUNet`] round more; through a transpose adapter they put TinyUNet's forward
/// property at 1.05e-5 against its 1e-5 bound.) Owns its scratch (one set per thread), so one
/// instance runs one forward pass at a time.
#[derive(Clone)]
pub struct FastTinyUNet {
    layers: TinyLayers,
    emb: Vec<f32>,
    hidden: Vec<f32>,
    temb: Vec<f32>,
    /// `[n][proj_len]`: every image's six time projections.
    proj: Vec<f32>,
    /// One per thread.
    acts: Vec<TinyActs>,
    /// One per thread.
    scratch: Vec<TinyScratch>,
    /// The threads the layers and images are split over (feature `threads`).
    workers: Workers,
    /// The class label every pass computes for ("no class" unless set).
    label: u32,
}

impl FastTinyUNet {
    /// Packs the weights of `net`.
    pub fn new(net: &crate::nets::tiny_unet::TinyUNet<'_>) -> Self {
        let cfg = *net.config();
        let p = net.params();
        let c = cfg.channels as usize;
        let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
        let (e, d) = (cfg.emb_dim as usize, cfg.temb_dim as usize);
        let b = &p.blocks;
        use crate::nets::tiny_unet::block::EXTRA_MID;
        let blocks = EXTRA_MID + cfg.mid_blocks as usize - 1;
        let conv = |k: usize, in_c: usize, out_c: usize| {
            ShiftedConv::new(b[k].conv_w, b[k].conv_b, in_c, out_c, TINY_STRIDES[k])
        };
        let up = |k: usize, ca: usize, cs: usize, out_c: usize| {
            UpConv::new(b[k].conv_w, b[k].conv_b, (ca, cs), out_c)
        };
        let layers = TinyLayers {
            cfg,
            enc: [
                conv(0, c, w1),
                conv(1, w1, w2),
                conv(2, w2, w3),
                conv(3, w3, w3),
            ],
            dec: [up(4, w3, w2, w2), up(5, w2, w1, w1)],
            extra_mid: (0..blocks - EXTRA_MID)
                .map(|k| {
                    let b = &b[EXTRA_MID + k];
                    ShiftedConv::new(b.conv_w, b.conv_b, w3, w3, 1)
                })
                .collect(),
            out: ShiftedConv::new(p.out_w, p.out_b, w1, c, 1),
            time0_w: p.time0_w.to_vec(),
            time0_b: p.time0_b.to_vec(),
            time2_w: p.time2_w.to_vec(),
            time2_b: p.time2_b.to_vec(),
            temb_w: b[..blocks].iter().map(|b| b.temb_w.to_vec()).collect(),
            temb_b: b[..blocks].iter().map(|b| b.temb_b.to_vec()).collect(),
            class_emb: p.class_emb.to_vec(),
            simd: true,
        };
        Self {
            emb: vec![0.0; e],
            hidden: vec![0.0; d],
            temb: vec![0.0; d],
            proj: Vec::new(),
            acts: vec![TinyActs::new(&cfg)],
            scratch: vec![TinyScratch::default()],
            workers: Workers::new(1),
            label: net.label(),
            layers,
        }
    }

    /// Computes for `class` from now on (`None`: "no class"); errors as
    /// [`TinyUNet::with_class`](crate::TinyUNet::with_class) does.
    pub fn set_class(&mut self, class: Option<u32>) -> Result<()> {
        self.label = crate::nets::tiny_unet::reference::class_label(&self.layers.cfg, class)?;
        Ok(())
    }

    /// Packs the weights of `net` for the portable kernels on any CPU (for tests and timing;
    /// the AVX2 + FMA kernel stays off).
    pub fn portable(net: &crate::nets::tiny_unet::TinyUNet<'_>) -> Self {
        let mut s = Self::new(net);
        s.layers.simd = false;
        s
    }

    /// The network's sizes.
    pub fn config(&self) -> &crate::nets::tiny_unet::TinyUNetConfig {
        &self.layers.cfg
    }

    /// Runs on `n` threads (at least 1; feature `threads`): a batch's images are shared out
    /// between the threads, and a single image's larger layers are split by output rows.
    /// Results do not depend on the thread count: every output value is computed by the same
    /// operations.
    #[cfg(feature = "threads")]
    pub fn set_threads(&mut self, n: usize) {
        let cfg = self.layers.cfg;
        self.scratch.resize_with(n.max(1), Default::default);
        self.workers = Workers::new(n.max(1));
        self.acts.resize_with(n.max(1), || TinyActs::new(&cfg));
    }

    /// Threads a forward pass uses.
    pub fn threads(&self) -> usize {
        self.scratch.len()
    }

    /// Predicted noise for one image; same contract as
    /// [`TinyUNet::forward_reference`](crate::TinyUNet::forward_reference).
    pub fn forward(&mut self, x: &[f32], t_in: f32, out: &mut [f32]) -> Result<()> {
        self.forward_batch(x, &[t_in], out)
    }

    /// Predicted noise for `t_in.len()` images (`x` and `out`: the images' `[c][h][w]` values
    /// concatenated), image `i` at network time input `t_in[i]`. Each image's result equals
    /// [`Self::forward`] on that image alone, bit for bit.
    pub fn forward_batch(&mut self, x: &[f32], t_in: &[f32], out: &mut [f32]) -> Result<()> {
        let n = t_in.len();
        let len = self.layers.cfg.image_len();
        check_len("input image", n * len, x.len())?;
        check_len("output image", n * len, out.len())?;
        let pl = self.layers.proj_len();
        grown(&mut self.proj, n * pl);
        for (&t, pr) in t_in.iter().zip(self.proj.chunks_exact_mut(pl)) {
            let time = (&mut self.emb[..], &mut self.hidden[..], &mut self.temb[..]);
            self.layers.projections(t, self.label, time, pr)?;
        }
        let Self {
            layers,
            proj,
            acts,
            scratch,
            workers,
            ..
        } = self;
        let (layers, proj, workers) = (&*layers, &proj[..], &*workers);
        run_images(workers, n, len, acts, scratch, out, &|i, a, sc, o| {
            let x = &x[i * len..][..len];
            layers.forward(x, &proj[i * pl..][..pl], a, (workers, sc), o);
        });
        Ok(())
    }
}

impl Denoiser for FastTinyUNet {
    fn image_len(&self) -> usize {
        self.layers.cfg.image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        self.forward(x, t_in, eps)
    }
}
