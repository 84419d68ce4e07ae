//! Int8 TinyUNet read in place from a model file's bytes (no weight is copied into RAM), with
//! two executors that give bit-identical results:
//! - [`Int8TinyUNet::forward_layerwise`]: every activation map whole, layer after layer (the
//!   integer oracle; activations x, s1, s2, d2, m, u2, u1, then the outputs of the further
//!   mid blocks m1, m2, …);
//! - [`Int8TinyUNet::forward_planned`]: one arena of [`arena_len`] bytes in which each tensor
//!   lives only as long as it is needed, with the full-resolution tail (up1 → out) streamed row
//!   by row (the out conv needs only 3 rows of up1's output).
//!
//! Arithmetic (TFLite Micro conventions, primitives of [`crate::quant`]): int8 weights per
//! output channel, symmetric; int8 activations per tensor, asymmetric; int32 bias with scale
//! `in_scale · w_scale[o]`; requantization by a Q31 multiplier and shift.
//!
//! - **Concatenation.** Both halves of each concatenation share one scale and zero point: the
//!   quantizer gives the *producers* of both halves the same output parameters (enc0 and up2
//!   emit at the `cat1` parameters, down1 and mid at the `cat2` parameters, each chosen from the
//!   union of the two halves' calibration ranges), so concatenation needs no requantization at
//!   all. Nearest up-sampling copies int8 values and is exact.
//! - **Stride 2.** down1 and down2 are the same integer conv evaluated at every second pixel.
//! - **Time embedding.** The time MLP and the per-block projections stay f32. Projection
//!   `proj[o]` of a block joins the integer path as the offset
//!   `round(proj[o] / (in_scale · w_scale[o]))` added to the int32 accumulator, in the bias's
//!   units, before requantization and ReLU (TinyUNet adds the projection before its ReLU).
//! - **Output.** The out conv is dequantized straight from its int32 accumulator
//!   (`ε = acc · in_scale · w_scale[o]`), so ε is never rounded to 8 bits.

use crate::config::{
    ModelConfig, TinyUNetConfig, TINY_MAX_MID_BLOCKS, TINY_MAX_PERIOD, TINY_TIME_SCALE,
};
use crate::error::{check_len, check_min_len, Error, Result};
use crate::format::{DType, ModelFile, Precision};
use crate::int8::{act_quant, tensor, F32Le, I32Le};
use crate::layers;
use crate::noise::GaussianNoise;
use crate::quant::{ActQuant, QuantizedMultiplier};
use crate::sampler::{ddim_step, ddpm_step, Plan, SamplerConfig};
use crate::schedule::Schedule;

/// The conv layers: the six main blocks and `out` in forward order, then the further mid blocks
/// (which run between `mid` and `up2`), of which a network has `mid_blocks − 1`.
pub const LAYERS: [&str; MAX_LAYERS] = [
    "enc0", "down1", "down2", "mid", "up2", "up1", "out", "mid1", "mid2", "mid3", "mid4", "mid5",
    "mid6", "mid7",
];

/// Most conv layers an int8 TinyUNet has.
pub const MAX_LAYERS: usize = 6 + TINY_MAX_MID_BLOCKS;
/// Index of `out` in [`LAYERS`].
pub const OUT: usize = 6;
/// Index of `mid1` in [`LAYERS`] (then `mid2`, …).
pub const EXTRA_MID_LAYER: usize = 7;
/// Most stored activations ([`Int8TinyUNet::activation_quants`]).
pub const MAX_ACTIVATIONS: usize = MAX_LAYERS;

/// Conv layers of a network with `cfg`'s sizes (the first entries of [`LAYERS`]), which is
/// also the number of stored activations (the input x and every layer's output but `out`'s).
pub const fn layer_count(cfg: &TinyUNetConfig) -> usize {
    6 + cfg.mid_blocks as usize
}

/// Index in [`LAYERS`] of the last mid block, whose output is concatenated into up2.
pub const fn last_mid(cfg: &TinyUNetConfig) -> usize {
    if cfg.mid_blocks <= 1 {
        3
    } else {
        EXTRA_MID_LAYER + cfg.mid_blocks as usize - 2
    }
}

/// Names of one layer's tensors in the int8 file.
struct LayerNames {
    weight: &'static str,
    bias: &'static str,
    multiplier: &'static str,
    shift: &'static str,
    bias_scale: &'static str,
    out_scale: &'static str,
    out_zp: &'static str,
    temb_w: &'static str,
    temb_b: &'static str,
}

macro_rules! names {
    ($l:literal) => {
        LayerNames {
            weight: concat!($l, ".weight"),
            bias: concat!($l, ".bias"),
            multiplier: concat!($l, ".multiplier"),
            shift: concat!($l, ".shift"),
            bias_scale: concat!($l, ".bias_scale"),
            out_scale: concat!($l, ".output_scale"),
            out_zp: concat!($l, ".output_zero_point"),
            temb_w: concat!($l, "_temb.weight"),
            temb_b: concat!($l, "_temb.bias"),
        }
    };
}

const NAMES: [LayerNames; MAX_LAYERS] = [
    names!("enc0"),
    names!("down1"),
    names!("down2"),
    names!("mid"),
    names!("up2"),
    names!("up1"),
    names!("out"),
    names!("mid1"),
    names!("mid2"),
    names!("mid3"),
    names!("mid4"),
    names!("mid5"),
    names!("mid6"),
    names!("mid7"),
];

/// Tensor names of a TinyUNet int8 file (besides `input.scale`, `input.zero_point` and the f32
/// time MLP `time_mlp.{0,2}.{weight,bias}`), for layer `k` of [`LAYERS`]: `<l>.weight` (i8
/// `[out, in, 3, 3]`), `<l>.bias`, `<l>.multiplier`, `<l>.shift` (i32 per output channel),
/// `<l>.bias_scale` (f32 per output channel: `in_scale · w_scale[o]`, the accumulator's unit),
/// `<l>.output_scale` / `<l>.output_zero_point` (one each; not for `out`) and, for the six
/// blocks, the f32 projection `<l>_temb.weight` / `<l>_temb.bias`.
pub fn tensor_names(k: usize) -> [&'static str; 9] {
    let n = &NAMES[k];
    [
        n.weight,
        n.bias,
        n.multiplier,
        n.shift,
        n.bias_scale,
        n.out_scale,
        n.out_zp,
        n.temb_w,
        n.temb_b,
    ]
}

/// One int8 3×3 padding-1 conv over borrowed file bytes.
#[derive(Debug, Clone, Copy)]
pub struct TinyQConv<'a> {
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// 1 or 2.
    pub stride: usize,
    weight: &'a [u8],
    bias: I32Le<'a>,
    multiplier: I32Le<'a>,
    shift: I32Le<'a>,
    bias_scale: F32Le<'a>,
    /// Input quantization.
    pub input: ActQuant,
    /// Output quantization (`None` for `out`, which is dequantized to f32).
    pub out: Option<ActQuant>,
    temb_w: F32Le<'a>,
    temb_b: F32Le<'a>,
}

/// Where a conv reads its int8 input.
trait Source {
    /// The int8 value at channel `i`, row `y`, column `x` (in bounds).
    fn at(&self, i: usize, y: usize, x: usize) -> i32;
}

/// A whole `[C, H, W]` map.
struct Plain<'s> {
    data: &'s [i8],
    h: usize,
    w: usize,
}

impl Source for Plain<'_> {
    #[inline(always)]
    fn at(&self, i: usize, y: usize, x: usize) -> i32 {
        self.data[(i * self.h + y) * self.w + x] as i32
    }
}

/// `cat([upsample_nearest2x(up), skip], dim=0)` without storing either: channel `i < up_c`
/// reads `up` at `(y/2, x/2)`, the rest read `skip` at `(y, x)`.
struct UpCat<'s> {
    up: &'s [i8],
    up_c: usize,
    skip: &'s [i8],
    h: usize,
    w: usize,
}

impl Source for UpCat<'_> {
    #[inline(always)]
    fn at(&self, i: usize, y: usize, x: usize) -> i32 {
        if i < self.up_c {
            let (hh, hw) = (self.h / 2, self.w / 2);
            self.up[(i * hh + y / 2) * hw + x / 2] as i32
        } else {
            self.skip[((i - self.up_c) * self.h + y) * self.w + x] as i32
        }
    }
}

/// A ring of 3 rows of a `[C, H, W]` map: row `y` lives in slot `y % 3` (`[3, C, W]`).
struct Ring<'s> {
    rows: &'s [i8],
    c: usize,
    w: usize,
}

impl Source for Ring<'_> {
    #[inline(always)]
    fn at(&self, i: usize, y: usize, x: usize) -> i32 {
        self.rows[((y % 3) * self.c + i) * self.w + x] as i32
    }
}

impl<'a> TinyQConv<'a> {
    /// Tap `k` (= ky·3 + kx) from input channel `i` to output channel `o`.
    #[inline(always)]
    fn tap(&self, o: usize, i: usize, k: usize) -> i32 {
        self.weight[(o * self.in_c + i) * 9 + k] as i8 as i32
    }

    /// The int32 accumulator of output pixel `(y, x)` of channel `o` (input `in_h × in_w`):
    /// bias + `offset` + Σ w·(q − zero_point), zero padding contributing nothing.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn accumulate<S: Source>(
        &self,
        src: &S,
        in_h: usize,
        in_w: usize,
        o: usize,
        y: usize,
        x: usize,
        offset: i32,
    ) -> i32 {
        let zp = self.input.zero_point;
        let mut acc = self.bias.get(o).saturating_add(offset);
        let (cy, cx) = (y * self.stride, x * self.stride);
        for i in 0..self.in_c {
            for ky in 0..3 {
                let iy = cy + ky;
                if iy == 0 || iy > in_h {
                    continue;
                }
                for kx in 0..3 {
                    let ix = cx + kx;
                    if ix == 0 || ix > in_w {
                        continue;
                    }
                    let q = src.at(i, iy - 1, ix - 1);
                    acc = acc.wrapping_add(self.tap(o, i, ky * 3 + kx) * (q - zp));
                }
            }
        }
        acc
    }

    /// Requantizes accumulator `acc` of channel `o` to int8 with ReLU (clamp at the output
    /// zero point) and saturation.
    #[inline(always)]
    fn requantize(&self, o: usize, acc: i32, out: ActQuant) -> i8 {
        let m = QuantizedMultiplier {
            multiplier: self.multiplier.get(o),
            shift: self.shift.get(o),
        };
        let v = m.apply(acc).max(0);
        v.saturating_add(out.zero_point).clamp(-128, 127) as i8
    }

    /// Output row `y` (all channels, `[out_c, out_w]`) of a ReLU block into `dst`.
    #[allow(clippy::too_many_arguments)]
    fn block_row<S: Source>(
        &self,
        src: &S,
        in_h: usize,
        in_w: usize,
        y: usize,
        offsets: &[i32],
        dst: &mut [i8],
        dst_stride: usize,
    ) {
        let out = self.out.unwrap_or(self.input);
        let out_w = in_w / self.stride;
        for o in 0..self.out_c {
            for x in 0..out_w {
                let acc = self.accumulate(src, in_h, in_w, o, y, x, offsets[o]);
                dst[o * dst_stride + x] = self.requantize(o, acc, out);
            }
        }
    }

    /// A whole ReLU block: `dst` is `[out_c, in_h/stride, in_w/stride]`.
    fn block_map<S: Source>(
        &self,
        src: &S,
        in_h: usize,
        in_w: usize,
        offsets: &[i32],
        dst: &mut [i8],
    ) {
        let (oh, ow) = (in_h / self.stride, in_w / self.stride);
        for y in 0..oh {
            self.block_row(src, in_h, in_w, y, offsets, &mut dst[y * ow..], oh * ow);
        }
    }

    /// A whole ReLU block with its time offsets over the `[C, h, w]` map `data`: computes the
    /// offsets from `temb` into `offsets`, then [`TinyQConv::block_map`].
    fn plain_block(
        &self,
        temb: &[f32],
        offsets: &mut [i32],
        data: &[i8],
        (h, w): (usize, usize),
        dst: &mut [i8],
    ) {
        self.time_offsets(temb, offsets);
        self.block_map(&Plain { data, h, w }, h, w, offsets, dst);
    }

    /// [`TinyQConv::plain_block`] over `cat([upsample_nearest2x(up), skip])` at `h × w`
    /// (`up` has `up_c` channels).
    #[allow(clippy::too_many_arguments)]
    fn up_block(
        &self,
        temb: &[f32],
        offsets: &mut [i32],
        (up, up_c): (&[i8], usize),
        skip: &[i8],
        (h, w): (usize, usize),
        dst: &mut [i8],
    ) {
        self.time_offsets(temb, offsets);
        let src = UpCat {
            up,
            up_c,
            skip,
            h,
            w,
        };
        self.block_map(&src, h, w, offsets, dst);
    }

    /// Output row `y` of the dequantized last layer: channel `o`, column `x` into
    /// `dst[o · dst_stride + x]`.
    #[allow(clippy::too_many_arguments)]
    fn dequant_row<S: Source>(
        &self,
        src: &S,
        h: usize,
        w: usize,
        y: usize,
        dst: &mut [f32],
        dst_stride: usize,
    ) {
        for o in 0..self.out_c {
            let unit = self.bias_scale.get(o);
            for x in 0..w {
                let acc = self.accumulate(src, h, w, o, y, x, 0);
                dst[o * dst_stride + x] = acc as f32 * unit;
            }
        }
    }

    /// The block's integer time offsets: `round(proj[o] / bias_scale[o])` where
    /// `proj = temb_w · temb + temb_b` (f32), saturated to ±2³⁰ so that adding it to the bias
    /// cannot overflow on its own.
    fn time_offsets(&self, temb: &[f32], offsets: &mut [i32]) {
        let d = temb.len();
        for (o, off) in offsets[..self.out_c].iter_mut().enumerate() {
            let mut p = self.temb_b.get(o);
            for (i, t) in temb.iter().enumerate() {
                p += self.temb_w.get(o * d + i) * t;
            }
            let v = libm::roundf(p / self.bias_scale.get(o));
            *off = if v.is_nan() {
                0
            } else {
                v.clamp(-(1 << 30) as f32, (1 << 30) as f32) as i32
            };
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn load(
        file: &ModelFile<'a>,
        k: usize,
        in_c: u32,
        out_c: u32,
        stride: usize,
        input: ActQuant,
        temb_dim: u32,
    ) -> Result<Self> {
        let n = &NAMES[k];
        let weight = tensor(file, n.weight, DType::I8, &[out_c, in_c, 3, 3])?.data;
        let i32s = |name| -> Result<I32Le<'a>> {
            Ok(I32Le::new(tensor(file, name, DType::I32, &[out_c])?.data))
        };
        let (bias, multiplier, shift) = (i32s(n.bias)?, i32s(n.multiplier)?, i32s(n.shift)?);
        let bias_scale = F32Le::new(tensor(file, n.bias_scale, DType::F32, &[out_c])?.data);
        for o in 0..out_c as usize {
            if !(-31..=30).contains(&shift.get(o)) || multiplier.get(o) < 0 {
                return Err(Error::InvalidConfig(
                    "int8 requantization parameters out of range",
                ));
            }
            let s = bias_scale.get(o);
            if !(s > 0.0 && s.is_finite()) {
                return Err(Error::InvalidConfig("int8 bias scale must be positive"));
            }
        }
        let (out, temb_w, temb_b) = if k == OUT {
            (None, F32Le::new(&[]), F32Le::new(&[]))
        } else {
            let f = |name, dims: &[u32]| -> Result<F32Le<'a>> {
                Ok(F32Le::new(tensor(file, name, DType::F32, dims)?.data))
            };
            (
                Some(act_quant(file, n.out_scale, n.out_zp)?),
                f(n.temb_w, &[out_c, temb_dim])?,
                f(n.temb_b, &[out_c])?,
            )
        };
        Ok(Self {
            in_c: in_c as usize,
            out_c: out_c as usize,
            stride,
            weight,
            bias,
            multiplier,
            shift,
            bias_scale,
            input,
            out,
            temb_w,
            temb_b,
        })
    }
}

/// The f32 time MLP over borrowed file bytes.
#[derive(Debug, Clone, Copy)]
struct TimeMlp<'a> {
    w0: F32Le<'a>,
    b0: F32Le<'a>,
    w2: F32Le<'a>,
    b2: F32Le<'a>,
}

fn linear_le(input: &[f32], w: F32Le<'_>, b: F32Le<'_>, out: &mut [f32]) {
    let n = input.len();
    for (o, v) in out.iter_mut().enumerate() {
        let mut acc = b.get(o);
        for (i, x) in input.iter().enumerate() {
            acc += w.get(o * n + i) * x;
        }
        *v = acc;
    }
}

/// Bytes of the planned executor's int8 arena for `cfg`:
///
/// | region | size | holds |
/// | --- | --- | --- |
/// | A | w1·H·W | s1 (enc0 → up1) |
/// | B | max(w2·H/2·W/2, c·H·W, 3·w1·W) | the quantized image x (enc0), then s2 (down1 → up2), then the 3-row ring of up1's output (streamed tail) |
/// | C | w3·H/4·W/4 | m, the last mid block's output (→ up2) |
/// | D | max(w2·H/2·W/2, w3·H/4·W/4) | d2 (down2 → mid), then u2 (up2 → up1) |
///
/// With further mid blocks, down2 and the mid blocks pass the quarter-resolution map back and
/// forth between C and D, starting in whichever makes the last one write C; the arena does not
/// grow.
///
/// 53,312 bytes for [`TinyUNetConfig::DEFAULT`] (25,088 + 12,544 + 3,136 + 12,544).
pub const fn arena_len(cfg: &TinyUNetConfig) -> usize {
    let [p1, p2, p3] = cfg.planes();
    let [w1, w2, w3] = [
        cfg.widths[0] as usize,
        cfg.widths[1] as usize,
        cfg.widths[2] as usize,
    ];
    region_b(cfg) + w1 * p1 + w3 * p3 + max(w2 * p2, w3 * p3)
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

const fn region_b(cfg: &TinyUNetConfig) -> usize {
    let [p1, p2, _] = cfg.planes();
    let (c, w1, w2) = (
        cfg.channels as usize,
        cfg.widths[0] as usize,
        cfg.widths[1] as usize,
    );
    max(max(w2 * p2, c * p1), 3 * w1 * cfg.width as usize)
}

/// Elements of the layer-by-layer executor's activations: x, s1, s2, d2, m, u2, u1, m1, …
/// whole.
pub const fn layerwise_len(cfg: &TinyUNetConfig) -> usize {
    let o = layerwise_offsets(cfg);
    o[MAX_ACTIVATIONS]
}

/// Start of each of x, s1, s2, d2, m, u2, u1, m1, m2, m3 in the layer-by-layer activations,
/// then the end (the further mid blocks' outputs that `cfg` lacks take no room).
pub const fn layerwise_offsets(cfg: &TinyUNetConfig) -> [usize; MAX_ACTIVATIONS + 1] {
    let [p1, p2, p3] = cfg.planes();
    let c = cfg.channels as usize;
    let [w1, w2, w3] = [
        cfg.widths[0] as usize,
        cfg.widths[1] as usize,
        cfg.widths[2] as usize,
    ];
    let sizes = [c * p1, w1 * p1, w2 * p2, w3 * p3, w3 * p3, w2 * p2, w1 * p1];
    let mut out = [0usize; MAX_ACTIVATIONS + 1];
    let mut i = 0;
    while i < MAX_ACTIVATIONS {
        let size = if i < 7 {
            sizes[i]
        } else if i < layer_count(cfg) {
            w3 * p3
        } else {
            0
        };
        out[i + 1] = out[i] + size;
        i += 1;
    }
    out
}

/// Widest layer (for the projection / offset vectors).
const fn widest(cfg: &TinyUNetConfig) -> usize {
    let [w1, w2, w3] = [
        cfg.widths[0] as usize,
        cfg.widths[1] as usize,
        cfg.widths[2] as usize,
    ];
    max(max(w1, w2), max(w3, cfg.channels as usize))
}

/// Caller-owned f32/i32 time scratch of either executor, sized for the config: the sinusoidal
/// embedding (E), the MLP hidden vector and temb (D each) and one block's integer offsets.
pub struct TimeScratch<'b> {
    /// E elements.
    pub emb: &'b mut [f32],
    /// D elements.
    pub hidden: &'b mut [f32],
    /// D elements.
    pub temb: &'b mut [f32],
    /// Widest layer's channels.
    pub offsets: &'b mut [i32],
    /// One row of ε (C·W; the planned executor only, may be empty for the layerwise one).
    pub row: &'b mut [f32],
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

    /// The arena and the time scratch.
    pub fn split(&mut self) -> (&mut [i8], TimeScratch<'_>) {
        (
            &mut self.arena,
            TimeScratch {
                emb: &mut self.emb,
                hidden: &mut self.hidden,
                temb: &mut self.temb,
                offsets: &mut self.offsets,
                row: &mut self.row,
            },
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

/// An int8 TinyUNet whose weights stay in the model file's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Int8TinyUNet<'a> {
    cfg: TinyUNetConfig,
    input: ActQuant,
    layers: [TinyQConv<'a>; 7],
    /// mid1, mid2, … (the first `mid_blocks − 1` entries).
    extra_mid: [Option<TinyQConv<'a>>; TINY_MAX_MID_BLOCKS - 1],
    time: TimeMlp<'a>,
}

impl<'a> Int8TinyUNet<'a> {
    /// Checks an int8 TinyUNet file (precision, every tensor's dtype and shape, requantization
    /// parameters, shared parameters of both halves of each concatenation) and borrows its
    /// tensors.
    pub fn from_file(file: &ModelFile<'a>) -> Result<Self> {
        let h = file.header();
        if h.precision != Precision::Int8 {
            return Err(Error::InvalidConfig("not an int8 model file"));
        }
        let ModelConfig::TinyUNet(cfg) = h.model else {
            return Err(Error::InvalidConfig(
                "the TinyUNet int8 executor runs TinyUNet models only",
            ));
        };
        cfg.validate()?;
        let input = act_quant(file, "input.scale", "input.zero_point")?;
        let c = cfg.channels;
        let [w1, w2, w3] = cfg.widths;
        let d = cfg.temb_dim;
        let out_of = |l: &TinyQConv<'_>| l.out.unwrap_or(l.input);
        let enc0 = TinyQConv::load(file, 0, c, w1, 1, input, d)?;
        let down1 = TinyQConv::load(file, 1, w1, w2, 2, out_of(&enc0), d)?;
        let down2 = TinyQConv::load(file, 2, w2, w3, 2, out_of(&down1), d)?;
        let mid = TinyQConv::load(file, 3, w3, w3, 1, out_of(&down2), d)?;
        let mut extra_mid = [None; TINY_MAX_MID_BLOCKS - 1];
        let mut last = mid;
        for (k, slot) in extra_mid.iter_mut().enumerate() {
            if k + 1 < cfg.mid_blocks as usize {
                last = TinyQConv::load(file, EXTRA_MID_LAYER + k, w3, w3, 1, out_of(&last), d)?;
                *slot = Some(last);
            }
        }
        if out_of(&last) != out_of(&down1) {
            return Err(Error::InvalidConfig(
                "int8 TinyUNet: the last mid block and down1 (the halves of up2's \
                 concatenation) must share one output scale and zero point",
            ));
        }
        let up2 = TinyQConv::load(file, 4, w3 + w2, w2, 1, out_of(&last), d)?;
        if out_of(&up2) != out_of(&enc0) {
            return Err(Error::InvalidConfig(
                "int8 TinyUNet: up2 and enc0 (the halves of up1's concatenation) must share \
                 one output scale and zero point",
            ));
        }
        let up1 = TinyQConv::load(file, 5, w2 + w1, w1, 1, out_of(&up2), d)?;
        let out = TinyQConv::load(file, 6, w1, c, 1, out_of(&up1), d)?;
        let f = |name, dims: &[u32]| -> Result<F32Le<'a>> {
            Ok(F32Le::new(tensor(file, name, DType::F32, dims)?.data))
        };
        let e = cfg.emb_dim;
        let time = TimeMlp {
            w0: f("time_mlp.0.weight", &[d, e])?,
            b0: f("time_mlp.0.bias", &[d])?,
            w2: f("time_mlp.2.weight", &[d, d])?,
            b2: f("time_mlp.2.bias", &[d])?,
        };
        Ok(Self {
            cfg,
            input,
            layers: [enc0, down1, down2, mid, up2, up1, out],
            extra_mid,
            time,
        })
    }

    /// The network's sizes.
    pub fn config(&self) -> &TinyUNetConfig {
        &self.cfg
    }

    /// The input quantization.
    pub fn input_quant(&self) -> ActQuant {
        self.input
    }

    /// The seven main conv layers (the first seven of [`LAYERS`]).
    pub fn layers(&self) -> &[TinyQConv<'a>; 7] {
        &self.layers
    }

    /// The further mid blocks mid1, mid2, … (`mid_blocks − 1` of them).
    pub fn extra_mid(&self) -> impl Iterator<Item = &TinyQConv<'a>> {
        self.extra_mid.iter().flatten()
    }

    /// Quantization of x, s1, s2, d2, m, u2, u1, m1, … (the layer-by-layer activations'
    /// order); the first [`layer_count`] entries are the network's, the rest repeat x's.
    pub fn activation_quants(&self) -> [ActQuant; MAX_ACTIVATIONS] {
        let o = |l: &TinyQConv<'_>| l.out.unwrap_or(self.input);
        let mut q = [self.input; MAX_ACTIVATIONS];
        for (k, l) in self.layers[..6].iter().enumerate() {
            q[k + 1] = o(l);
        }
        for (k, l) in self.extra_mid().enumerate() {
            q[EXTRA_MID_LAYER + k] = o(l);
        }
        q
    }

    fn check_time(&self, t: &TimeScratch<'_>) -> Result<()> {
        let c = &self.cfg;
        check_min_len("time scratch emb", c.emb_dim as usize, t.emb.len())?;
        check_min_len("time scratch hidden", c.temb_dim as usize, t.hidden.len())?;
        check_min_len("time scratch temb", c.temb_dim as usize, t.temb.len())?;
        check_min_len("time scratch offsets", widest(c), t.offsets.len())
    }

    /// temb for time input `t_in` into `t.temb` (f32, as the f32 network computes it).
    fn time_embedding(&self, t_in: f32, t: &mut TimeScratch<'_>) -> Result<()> {
        let (e, d) = (self.cfg.emb_dim as usize, self.cfg.temb_dim as usize);
        let emb = &mut t.emb[..e];
        layers::sinusoidal_embedding(t_in * TINY_TIME_SCALE, TINY_MAX_PERIOD, emb)?;
        let hidden = &mut t.hidden[..d];
        linear_le(emb, self.time.w0, self.time.b0, hidden);
        layers::relu(hidden);
        linear_le(hidden, self.time.w2, self.time.b2, &mut t.temb[..d]);
        Ok(())
    }

    fn quantize_input(&self, x: &[f32], xq: &mut [i8]) {
        for (q, v) in xq.iter_mut().zip(x) {
            *q = self.input.quantize(*v);
        }
    }

    /// Layer-by-layer int8 forward pass: ε (f32) for `x` at time input `t_in`. `acts` holds
    /// [`layerwise_len`] bytes and keeps every activation (at [`layerwise_offsets`]).
    pub fn forward_layerwise(
        &self,
        x: &[f32],
        t_in: f32,
        acts: &mut [i8],
        time: &mut TimeScratch<'_>,
        eps: &mut [f32],
    ) -> Result<()> {
        let cfg = self.cfg;
        check_len("input image", cfg.image_len(), x.len())?;
        check_len("output image", cfg.image_len(), eps.len())?;
        check_min_len("int8 activations", layerwise_len(&cfg), acts.len())?;
        self.check_time(time)?;
        self.time_embedding(t_in, time)?;
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let [_, w2, w3] = cfg.widths.map(|v| v as usize);
        let o = layerwise_offsets(&cfg);
        let (xq, rest) = acts.split_at_mut(o[1]);
        let (s1, rest) = rest.split_at_mut(o[2] - o[1]);
        let (s2, rest) = rest.split_at_mut(o[3] - o[2]);
        let (d2, rest) = rest.split_at_mut(o[4] - o[3]);
        let (m, rest) = rest.split_at_mut(o[5] - o[4]);
        let (u2, rest) = rest.split_at_mut(o[6] - o[5]);
        let (u1, mut extra) = rest.split_at_mut(o[7] - o[6]);
        self.quantize_input(x, xq);
        let [enc0, down1, down2, mid, up2, up1, out] = &self.layers;
        let temb = &time.temb[..cfg.temb_dim as usize];
        let offs = &mut time.offsets[..];

        let (h2, wd2) = (h / 2, w / 2);
        let (h4, w4) = (h / 4, w / 4);
        enc0.plain_block(temb, offs, xq, (h, w), s1);
        down1.plain_block(temb, offs, s1, (h, w), s2);
        down2.plain_block(temb, offs, s2, (h2, wd2), d2);
        mid.plain_block(temb, offs, d2, (h4, w4), m);
        // m1, m2, … follow u1, each read by the next mid block; `m` names the latest.
        let mut m: &[i8] = m;
        for l in self.extra_mid() {
            let (next, tail) = core::mem::take(&mut extra).split_at_mut(w3 * h4 * w4);
            l.plain_block(temb, offs, m, (h4, w4), next);
            (m, extra) = (next, tail);
        }
        up2.up_block(temb, offs, (m, w3), s2, (h2, wd2), u2);
        up1.up_block(temb, offs, (u2, w2), s1, (h, w), u1);
        let src = Plain { data: u1, h, w };
        for y in 0..h {
            out.dequant_row(&src, h, w, y, &mut eps[y * w..], h * w);
        }
        Ok(())
    }

    /// The planned int8 forward pass: the same integers as [`Int8TinyUNet::forward_layerwise`]
    /// in an arena of [`arena_len`] bytes (regions and lifetimes documented there), with up1
    /// and out interleaved row by row. ε is written whole into `eps`.
    pub fn forward_planned(
        &self,
        x: &[f32],
        t_in: f32,
        arena: &mut [i8],
        time: &mut TimeScratch<'_>,
        eps: &mut [f32],
    ) -> Result<()> {
        let cfg = self.cfg;
        check_len("output image", cfg.image_len(), eps.len())?;
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        self.begin_planned(x, t_in, arena, time)?;
        self.rows_planned(arena, time, &mut RowsToMap { eps, h, w })
    }

    /// First part of the planned pass: quantizes `x` into the arena and computes temb. After
    /// it, `x` is not read again, so a sampler may update it while the rows of ε appear.
    pub fn begin_planned(
        &self,
        x: &[f32],
        t_in: f32,
        arena: &mut [i8],
        time: &mut TimeScratch<'_>,
    ) -> Result<()> {
        let cfg = self.cfg;
        check_len("input image", cfg.image_len(), x.len())?;
        check_min_len("int8 arena", arena_len(&cfg), arena.len())?;
        self.check_time(time)?;
        self.time_embedding(t_in, time)?;
        let (_, rest) = arena.split_at_mut(cfg.widths[0] as usize * cfg.planes()[0]);
        self.quantize_input(x, &mut rest[..cfg.image_len()]);
        Ok(())
    }

    /// Second part of the planned pass: every layer from the quantized input left in the arena
    /// by [`Int8TinyUNet::begin_planned`]; each row `y` of ε (`[c, W]`) is handed to `sink` as
    /// soon as it is computed, in increasing `y`. After up2, region B holds the ring of up1's
    /// rows: after up1's row r, out's row r − 1 is computed from up1 rows r − 2, r − 1, r.
    pub fn rows_planned(
        &self,
        arena: &mut [i8],
        time: &mut TimeScratch<'_>,
        sink: &mut dyn RowSink,
    ) -> Result<()> {
        let cfg = self.cfg;
        check_min_len("int8 arena", arena_len(&cfg), arena.len())?;
        self.check_time(time)?;
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
        let [p1, p2, p3] = cfg.planes();
        let (ra, rest) = arena.split_at_mut(w1 * p1);
        let (rb, rest) = rest.split_at_mut(region_b(&cfg));
        let (rc, rd) = rest.split_at_mut(w3 * p3);
        let [enc0, down1, down2, mid, up2, up1, out] = &self.layers;
        let temb = &time.temb[..cfg.temb_dim as usize];
        let offs = &mut time.offsets[..];

        let xq = &rb[..cfg.image_len()];
        let s1 = &mut ra[..];
        let (h2, wd2) = (h / 2, w / 2);
        let (h4, w4) = (h / 4, w / 4);
        enc0.plain_block(temb, offs, xq, (h, w), s1);
        let s2 = &mut rb[..w2 * p2];
        down1.plain_block(temb, offs, s1, (h, w), s2);
        // down2 and the mid blocks pass the quarter-resolution map between regions C and D,
        // starting so that the last mid block writes C: down2 writes D for an odd number of
        // mid blocks, C for an even one.
        {
            let (mut cur, mut spare) = if cfg.mid_blocks % 2 == 1 {
                (&mut rd[..w3 * p3], &mut rc[..])
            } else {
                (&mut rc[..], &mut rd[..w3 * p3])
            };
            down2.plain_block(temb, offs, s2, (h2, wd2), cur);
            for l in core::iter::once(mid).chain(self.extra_mid()) {
                l.plain_block(temb, offs, cur, (h4, w4), spare);
                core::mem::swap(&mut cur, &mut spare);
            }
        }
        let m = &rc[..];
        // d2 (and every earlier mid output) is dead: u2 takes region D.
        let u2 = &mut rd[..w2 * p2];
        up2.up_block(temb, offs, (m, w3), s2, (h2, wd2), u2);
        // s2 and m are dead: region B becomes the ring of up1's rows.
        up1.time_offsets(temb, offs);
        let cat1 = UpCat {
            up: u2,
            up_c: w2,
            skip: s1,
            h,
            w,
        };
        let ring = &mut rb[..3 * w1 * w];
        let row_len = (cfg.channels * cfg.width) as usize;
        check_min_len("time scratch row", row_len, time.row.len())?;
        let eps_row = &mut time.row[..row_len];
        for r in 0..h {
            let slot = &mut ring[(r % 3) * w1 * w..(r % 3 + 1) * w1 * w];
            up1.block_row(&cat1, h, w, r, offs, slot, w);
            if r >= 1 {
                let src = Ring {
                    rows: ring,
                    c: w1,
                    w,
                };
                out.dequant_row(&src, h, w, r - 1, eps_row, w);
                sink.row(r - 1, eps_row)?;
            }
        }
        let src = Ring {
            rows: ring,
            c: w1,
            w,
        };
        out.dequant_row(&src, h, w, h - 1, eps_row, w);
        sink.row(h - 1, eps_row)
    }
}

/// Receives the rows of ε from [`Int8TinyUNet::rows_planned`].
pub trait RowSink {
    /// Row `y` of ε, `[c, W]` (channel after channel).
    fn row(&mut self, y: usize, eps_row: &[f32]) -> Result<()>;
}

/// Writes rows of ε into a whole `[c, H, W]` map.
struct RowsToMap<'e> {
    eps: &'e mut [f32],
    h: usize,
    w: usize,
}

impl RowSink for RowsToMap<'_> {
    fn row(&mut self, y: usize, eps_row: &[f32]) -> Result<()> {
        for (ch, part) in eps_row.chunks(self.w).enumerate() {
            self.eps[(ch * self.h + y) * self.w..][..self.w].copy_from_slice(part);
        }
        Ok(())
    }
}

/// Applies one sampler step to the image rows as ε's rows appear.
struct StepRows<'s, const M: usize> {
    sched: &'s Schedule<M>,
    cfg: &'s SamplerConfig,
    t: u32,
    prev: Option<u32>,
    noise: &'s mut GaussianNoise,
    x: &'s mut [f32],
    h: usize,
    w: usize,
}

impl<const M: usize> RowSink for StepRows<'_, M> {
    fn row(&mut self, y: usize, eps_row: &[f32]) -> Result<()> {
        for (ch, er) in eps_row.chunks(self.w).enumerate() {
            let xr = &mut self.x[(ch * self.h + y) * self.w..][..self.w];
            let noise = &mut *self.noise;
            let z = |_: usize| noise.next_gaussian();
            match self.cfg {
                SamplerConfig::Ddpm(c) => ddpm_step(self.sched, c, self.t, xr, er, z)?,
                SamplerConfig::Ddim(c) => ddim_step(self.sched, c, self.t, self.prev, xr, er, z)?,
            }
        }
        Ok(())
    }
}

/// A whole sample through the planned executor with no ε buffer: `x` is filled with noise
/// from `seed` and updated row by row as each step's ε rows appear (x is read by the network
/// only while it is quantized, before the first row). With one image channel, noise is drawn
/// in the order of [`crate::sampler::sample`], so the result equals
/// `sampler::sample(Int8TinyPlanned)` bit for bit. Working memory: `x`, `ws`, the schedule.
pub fn sample_planned<const M: usize, const A: usize>(
    net: &Int8TinyUNet<'_>,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    seed: u64,
    x: &mut [f32],
    ws: &mut TinyInt8Workspace<A>,
) -> Result<()> {
    let ncfg = *net.config();
    check_len("image", ncfg.image_len(), x.len())?;
    let plan = Plan::new(cfg, sched.len() as u32)?;
    let mut noise = GaussianNoise::new(seed);
    noise.fill(x);
    let (arena, mut time) = ws.split();
    for k in 0..plan.len() {
        let (t, prev) = plan
            .step(k)
            .ok_or(Error::InvalidConfig("step index past the plan"))?;
        let t_in = t as f32 / sched.len() as f32;
        net.begin_planned(x, t_in, arena, &mut time)?;
        let mut sink = StepRows {
            sched,
            cfg,
            t,
            prev,
            noise: &mut noise,
            x: &mut *x,
            h: ncfg.height as usize,
            w: ncfg.width as usize,
        };
        net.rows_planned(arena, &mut time, &mut sink)?;
    }
    Ok(())
}

/// A [`Denoiser`](crate::sampler::Denoiser) running the planned int8 executor.
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

impl crate::sampler::Denoiser for Int8TinyPlanned<'_, '_> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        let (arena, mut time) = self.ws.split();
        self.net.forward_planned(x, t_in, arena, &mut time, eps)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    extern crate alloc;
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::config::ScheduleConfig;
    use crate::format::ModelWriter;
    use crate::quantize::RangeMethod;
    use crate::tiny_quantize::{activation_quants, quantize_tiny_unet, TinyCalibrator};
    use crate::tiny_unet::TinyUNet;

    /// Deterministic pseudo-random values in [−1, 1).
    fn lcg(state: &mut u64) -> f32 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Random TinyUNet parameters with He-like scales (so activations neither vanish nor
    /// explode through the seven convs) and time projections comparable to the conv outputs.
    fn random_params(cfg: &TinyUNetConfig, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut p = Vec::with_capacity(cfg.param_count());
        for spec in cfg.tensor_specs() {
            let d = spec.dims();
            let fan_in = if d.len() > 1 {
                d[1..].iter().product::<u32>() as f32
            } else {
                1.0
            };
            let scale = if d.len() > 1 {
                (6.0 / fan_in).sqrt()
            } else {
                0.1
            };
            for _ in 0..spec.numel() {
                p.push(lcg(&mut s) * scale);
            }
        }
        p
    }

    fn noisy_image(cfg: &TinyUNetConfig, s: &mut u64) -> Vec<f32> {
        (0..cfg.image_len()).map(|_| lcg(s) * 1.5).collect()
    }

    struct Fixture {
        params: Vec<f32>,
        int8: Vec<u8>,
    }

    fn fixture(cfg: TinyUNetConfig) -> Fixture {
        let params = random_params(&cfg, 7);
        let net = TinyUNet::from_flat(cfg, &params).unwrap();
        let mut cal = TinyCalibrator::new(net, 7);
        let mut s = 99u64;
        for k in 0..16 {
            let x = noisy_image(&cfg, &mut s);
            cal.observe(&x, k as f32 / 16.0).unwrap();
        }
        let int8 = quantize_tiny_unet(
            &net,
            ScheduleConfig::default(),
            &cal.ranges(RangeMethod::MinMax),
            "test",
        )
        .unwrap();
        Fixture { params, int8 }
    }

    fn time_vecs(cfg: &TinyUNetConfig) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<i32>) {
        (
            vec![0.0; cfg.emb_dim as usize],
            vec![0.0; cfg.temb_dim as usize],
            vec![0.0; cfg.temb_dim as usize],
            vec![0; widest(cfg)],
        )
    }

    /// The default network, and deeper ones with an even and an odd number of mid blocks (the
    /// planned pass starts its C/D ping-pong in a different region for each parity), all within
    /// the default's workspace.
    fn int8_configs() -> [TinyUNetConfig; 5] {
        let d = TinyUNetConfig::DEFAULT;
        [
            d,
            TinyUNetConfig { mid_blocks: 2, ..d },
            TinyUNetConfig {
                widths: [32, 64, 56],
                mid_blocks: 3,
                ..d
            },
            SMALLER,
            // More mid blocks than the first limit of four (run Y of the README's levers).
            TinyUNetConfig {
                widths: [24, 64, 48],
                mid_blocks: 6,
                ..d
            },
        ]
    }

    /// The committed model's sizes, whose arena is smaller than the default one's.
    const SMALLER: TinyUNetConfig = TinyUNetConfig {
        widths: [24, 64, 56],
        mid_blocks: 4,
        ..TinyUNetConfig::DEFAULT
    };

    /// The planned executor (arena, streamed tail) gives exactly the layerwise oracle's ε.
    #[test]
    fn planned_equals_layerwise_bit_for_bit() {
        for cfg in int8_configs() {
            planned_equals_layerwise(cfg);
        }
    }

    fn planned_equals_layerwise(cfg: TinyUNetConfig) {
        let f = fixture(cfg);
        let file = ModelFile::parse(&f.int8).unwrap();
        let q = Int8TinyUNet::from_file(&file).unwrap();
        let mut acts = vec![0i8; layerwise_len(&cfg)];
        let mut ws = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
        let (mut emb, mut hidden, mut temb, mut offsets) = time_vecs(&cfg);
        let mut s = 5u64;
        for k in 0..4 {
            let x = noisy_image(&cfg, &mut s);
            let t_in = 0.1 + 0.27 * k as f32;
            let mut e_lw = vec![0.0f32; cfg.image_len()];
            let mut e_pl = vec![1.0f32; cfg.image_len()];
            let mut t = TimeScratch {
                emb: &mut emb,
                hidden: &mut hidden,
                temb: &mut temb,
                offsets: &mut offsets,
                row: &mut [],
            };
            q.forward_layerwise(&x, t_in, &mut acts, &mut t, &mut e_lw)
                .unwrap();
            let (arena, mut t2) = ws.split();
            // Dirty the arena: the planned pass must not depend on its previous contents.
            arena.iter_mut().enumerate().for_each(|(i, v)| *v = i as i8);
            q.forward_planned(&x, t_in, arena, &mut t2, &mut e_pl)
                .unwrap();
            assert_eq!(
                e_lw.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                e_pl.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{cfg:?} input {k}"
            );
        }
    }

    /// The default schedule and a 3-step DDIM (x0 clipped, ε recomputed): a short sample.
    fn three_ddim_steps() -> (Schedule, SamplerConfig) {
        let sched = Schedule::new(&ScheduleConfig::default()).unwrap();
        let scfg = SamplerConfig::Ddim(crate::sampler::DdimConfig {
            steps: 3,
            clip_x0: true,
            recompute_eps: true,
            ..crate::sampler::DdimConfig::default()
        });
        (sched, scfg)
    }

    /// The row-streamed sampler (no ε buffer, x updated as ε's rows appear) equals the
    /// generic sampler driving the planned executor with a whole ε, bit for bit.
    #[test]
    fn sample_planned_equals_generic_sampler() {
        use crate::sampler;
        let cfg = TinyUNetConfig::DEFAULT;
        let f = fixture(cfg);
        let file = ModelFile::parse(&f.int8).unwrap();
        let q = Int8TinyUNet::from_file(&file).unwrap();
        let (sched, scfg) = three_ddim_steps();
        let mut ws = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
        let mut x1 = vec![0.0f32; cfg.image_len()];
        sample_planned(&q, &sched, &scfg, 42, &mut x1, &mut ws).unwrap();
        let mut den = Int8TinyPlanned::new(q, &mut ws).unwrap();
        let (mut x2, mut eps) = (vec![0.0f32; cfg.image_len()], vec![0.0f32; cfg.image_len()]);
        sampler::sample(&mut den, &sched, &scfg, 42, &mut x2, &mut eps).unwrap();
        assert_eq!(
            x1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            x2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(x1.iter().any(|v| *v != 0.0));
    }

    /// A workspace whose arena is sized for a smaller network samples exactly as the default
    /// workspace does, and one byte less is refused with the sizes named.
    #[test]
    fn workspace_sized_for_its_network_samples_the_same() {
        const SIZED: usize = arena_len(&SMALLER);
        const { assert!(SIZED == 18_816 + 12_544 + 2_744 + 12_544 && SIZED < DEFAULT_ARENA_LEN) };
        const {
            assert!(TinyInt8Workspace::<SIZED>::fits(&SMALLER));
            assert!(!TinyInt8Workspace::<{ SIZED - 1 }>::fits(&SMALLER));
        };
        let f = fixture(SMALLER);
        let file = ModelFile::parse(&f.int8).unwrap();
        let q = Int8TinyUNet::from_file(&file).unwrap();
        let (sched, scfg) = three_ddim_steps();
        let sample = |ws: &mut dyn FnMut(&mut [f32]) -> Result<()>| {
            let mut x = vec![0.0f32; SMALLER.image_len()];
            ws(&mut x).map(|()| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
        };
        let mut big = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
        let mut sized = alloc::boxed::Box::new(TinyInt8Workspace::<SIZED>::ZEROED);
        let mut short = alloc::boxed::Box::new(TinyInt8Workspace::<{ SIZED - 1 }>::ZEROED);
        let want = sample(&mut |x| sample_planned(&q, &sched, &scfg, 7, x, &mut big)).unwrap();
        let got = sample(&mut |x| sample_planned(&q, &sched, &scfg, 7, x, &mut sized)).unwrap();
        assert_eq!(got, want);
        assert!(want.iter().any(|&b| b != 0));
        let err = sample(&mut |x| sample_planned(&q, &sched, &scfg, 7, x, &mut short));
        assert_eq!(
            err,
            Err(Error::BufferSize {
                what: "int8 arena",
                needed: SIZED,
                got: SIZED - 1
            })
        );
    }

    /// Relative RMS error of int8 ε against f32 ε on inputs outside the calibration set.
    ///
    /// With 8-bit activations through seven layers, each rounding adds an error of about
    /// scale/√12 per value; on these random networks the measured errors are 0.0119 (default),
    /// 0.0127 (two mid blocks), 0.0184 (widths 32/64/56, three mid blocks), 0.0184 (widths
    /// 24/64/56, four mid blocks) and 0.0262 (widths 24/64/48, six mid blocks: each mid block
    /// adds a rounding; the arithmetic is deterministic). The bound 0.03 leaves 1.6× room on the
    /// shallower networks and 1.15× on the deepest while failing on any systematic error (a
    /// wrong zero point, scale or time offset gives errors of order 0.1 to 1).
    const INT8_EPS_REL_RMS_MAX: f64 = 0.03;

    #[test]
    fn int8_tracks_f32() {
        for cfg in int8_configs() {
            int8_tracks_f32_on(cfg);
        }
    }

    fn int8_tracks_f32_on(cfg: TinyUNetConfig) {
        let f = fixture(cfg);
        let net = TinyUNet::from_flat(cfg, &f.params).unwrap();
        let file = ModelFile::parse(&f.int8).unwrap();
        let q = Int8TinyUNet::from_file(&file).unwrap();
        let mut ws = vec![0.0f32; cfg.workspace_len()];
        let mut ws8 = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
        let mut s = 1234u64;
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for k in 0..4 {
            let x = noisy_image(&cfg, &mut s);
            let t_in = 0.05 + 0.3 * k as f32;
            let mut e32 = vec![0.0f32; cfg.image_len()];
            let mut e8 = vec![0.0f32; cfg.image_len()];
            net.forward_reference(&x, t_in, &mut ws, &mut e32).unwrap();
            let (arena, mut t) = ws8.split();
            q.forward_planned(&x, t_in, arena, &mut t, &mut e8).unwrap();
            for (a, b) in e8.iter().zip(&e32) {
                num += ((a - b) as f64).powi(2);
                den += (*b as f64).powi(2);
            }
        }
        let rel = (num / den).sqrt();
        std::eprintln!("{cfg:?}: int8 vs f32 ε relative RMS error: {rel:.4}");
        assert!(
            rel < INT8_EPS_REL_RMS_MAX,
            "{cfg:?}: relative RMS error {rel}"
        );
    }

    /// Both halves of each concatenation share one quantization that covers both ranges.
    #[test]
    fn concatenation_halves_share_parameters() {
        let ranges = [
            (-3.0, 3.0),
            (0.0, 2.0), // s1
            (0.0, 9.0), // s2
            (0.0, 1.0),
            (0.0, 4.0), // m
            (0.0, 5.0), // u2
            (0.0, 7.0),
        ];
        let cfg = TinyUNetConfig::DEFAULT;
        let a = activation_quants(&cfg, &ranges).unwrap();
        assert_eq!(a[1], a[5], "s1 and u2");
        assert_eq!(a[2], a[4], "s2 and m");
        assert_eq!(a[1], ActQuant::from_range(0.0, 5.0));
        assert_eq!(a[2], ActQuant::from_range(0.0, 9.0));
        assert_eq!(a[0], ActQuant::from_range(-3.0, 3.0));
        assert!(activation_quants(&cfg, &ranges[..6]).is_err());
        // Three mid blocks: m1 (index 7) and m2 (index 8, the last mid output) follow u1; s2
        // now shares with m2, and m keeps its own range.
        let deep = TinyUNetConfig {
            mid_blocks: 3,
            ..cfg
        };
        let mut r = ranges.to_vec();
        r.extend([(0.0, 6.0), (0.0, 11.0)]);
        let a = activation_quants(&deep, &r).unwrap();
        assert_eq!(a[2], a[8], "s2 and m2");
        assert_eq!(a[2], ActQuant::from_range(0.0, 11.0));
        assert_eq!(a[4], ActQuant::from_range(0.0, 4.0));
        assert_eq!(a[7], ActQuant::from_range(0.0, 6.0));
        assert_eq!(a[1], a[5], "s1 and u2");
    }

    /// A file whose concatenation halves do not share parameters is refused by name.
    #[test]
    fn mismatched_concatenation_parameters_are_refused() {
        let cfg = TinyUNetConfig {
            height: 8,
            width: 8,
            widths: [4, 6, 8],
            emb_dim: 4,
            temb_dim: 6,
            ..TinyUNetConfig::DEFAULT
        };
        let f = fixture(cfg);
        let file = ModelFile::parse(&f.int8).unwrap();
        assert!(Int8TinyUNet::from_file(&file).is_ok());
        for bad in ["up2.output_scale", "mid.output_scale"] {
            let h = file.header();
            let mut w = ModelWriter::new(h.model, h.schedule, "bad").with_precision(h.precision);
            for t in file.tensors() {
                let dims = t.dims();
                match t.dtype {
                    DType::F32 => {
                        let mut v: Vec<f32> = t
                            .data
                            .chunks(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                            .collect();
                        if t.name == bad {
                            v[0] *= 1.5;
                        }
                        w.push_f32(t.name, dims, &v).unwrap();
                    }
                    DType::I32 => {
                        let v: Vec<i32> = t
                            .data
                            .chunks(4)
                            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                            .collect();
                        w.push_i32(t.name, dims, &v).unwrap();
                    }
                    DType::I8 => {
                        let v: Vec<i8> = t.data.iter().map(|&b| b as i8).collect();
                        w.push_i8(t.name, dims, &v).unwrap();
                    }
                }
            }
            let bytes = w.finish();
            let file = ModelFile::parse(&bytes).unwrap();
            let err = Int8TinyUNet::from_file(&file).unwrap_err();
            assert!(
                alloc::format!("{err}").contains("concatenation"),
                "{bad}: {err}"
            );
        }
    }

    /// Each block's time projection joins the accumulator as `round(proj / bias_scale)`:
    /// within half an accumulator unit of the f32 projection.
    #[test]
    fn time_offsets_are_the_rounded_projection() {
        let cfg = TinyUNetConfig::DEFAULT;
        let f = fixture(cfg);
        let net = TinyUNet::from_flat(cfg, &f.params).unwrap();
        let file = ModelFile::parse(&f.int8).unwrap();
        let q = Int8TinyUNet::from_file(&file).unwrap();
        let (mut emb, mut hidden, mut temb, mut offsets) = time_vecs(&cfg);
        let (mut e2, mut h2, mut t2) = (emb.clone(), hidden.clone(), temb.clone());
        let t_in = 0.37;
        net.time_embedding(t_in, &mut e2, &mut h2, &mut t2).unwrap();
        let mut t = TimeScratch {
            emb: &mut emb,
            hidden: &mut hidden,
            temb: &mut temb,
            offsets: &mut offsets,
            row: &mut [],
        };
        q.time_embedding(t_in, &mut t).unwrap();
        assert_eq!(t.temb, &t2[..], "temb is the f32 network's");
        for (k, layer) in q.layers()[..6].iter().enumerate() {
            let b = &net.params().blocks[k];
            let mut proj = vec![0.0f32; layer.out_c];
            layers::linear(&t2, b.temb_w, b.temb_b, &mut proj).unwrap();
            layer.time_offsets(t.temb, t.offsets);
            for (o, &p) in proj.iter().enumerate() {
                let unit = layer.bias_scale.get(o) as f64;
                let err = (t.offsets[o] as f64 * unit - p as f64).abs();
                // Half a unit from the rounding, plus f32 rounding of proj (a few ulps).
                assert!(
                    err <= 0.5 * unit + 1e-5 * (p.abs() as f64),
                    "{}: channel {o}: offset {} · {unit} vs {}",
                    LAYERS[k],
                    t.offsets[o],
                    p
                );
            }
        }
    }

    /// The whole working memory of an int8 DDIM sample (arena, time scratch, x and ε) fits the
    /// Cortex-M4 demo's 64 KiB of RAM with room left for the stack.
    #[test]
    fn sample_memory_fits_64k() {
        let cfg = TinyUNetConfig::DEFAULT;
        assert_eq!(arena_len(&cfg), 25_088 + 12_544 + 3_136 + 12_544);
        assert!(arena_len(&cfg) < cfg.int8_peak_activation_bytes());
        let time = 4 * (32 + 64 + 64) + 4 * 64 + 4 * 28;
        assert_eq!(
            core::mem::size_of::<TinyInt8Workspace>(),
            arena_len(&cfg) + time
        );
        let total = core::mem::size_of::<TinyInt8SampleMemory>();
        assert_eq!(total, arena_len(&cfg) + time + 4 * cfg.image_len());
        assert_eq!(total, 57_456);
        // RAM of the demo board's layout, less 4 KiB kept for the stack and other statics.
        const RAM: usize = 64 * 1024;
        const STACK_AND_STATICS: usize = 4 * 1024;
        assert!(total <= RAM - STACK_AND_STATICS, "{total} bytes");
    }

    #[test]
    fn wrong_architecture_is_refused() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/simple_unet_mnist_int8.ddpm"
        ))
        .unwrap();
        let file = ModelFile::parse(&bytes).unwrap();
        assert!(Int8TinyUNet::from_file(&file).is_err());
    }
}
