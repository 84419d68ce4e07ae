//! Int8 TinyUNet read in place from a model file's bytes (no weight is copied into RAM), with
//! two executors that give bit-identical results:
//! - [`Int8TinyUNet::forward_layerwise`]: every activation map whole, layer after layer (the
//!   integer oracle; activations x, s1, s2, d2, m, u2, u1, then the outputs of the further
//!   mid blocks m1, m2, …);
//! - [`Int8TinyUNet::forward_planned`]: one arena of [`arena_len`] bytes in which each tensor
//!   lives only as long as it is needed, with the full-resolution tail (up1 → out) streamed row
//!   by row (the out conv needs only 3 rows of up1's output).
//!
//! Arithmetic (TFLite Micro conventions, primitives of [`crate::kernels::quant`]): int8 weights per
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

use crate::error::{check_len, check_min_len, Error, Result};
use crate::file::tensor::{act_quant, tensor, F32Le, I32Le, TimeMlp};
use crate::file::{DType, ModelFile, Precision};
use crate::kernels::quant::{ActQuant, QuantizedMultiplier};
use crate::kernels::reference::{self as layers, for_each_tap};
use crate::nets::spec::TINY_MAX_MID_BLOCKS;
pub(crate) use crate::nets::tiny_unet::sources::{Kernel, Plain, Ring, Source, UpCat, UpRingCat};
use crate::nets::tiny_unet::{TinyUNetConfig, TINY_MAX_PERIOD, TINY_TIME_SCALE};

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
    pub(crate) weight: &'static str,
    pub(crate) bias: &'static str,
    pub(crate) multiplier: &'static str,
    pub(crate) shift: &'static str,
    pub(crate) bias_scale: &'static str,
    pub(crate) out_scale: &'static str,
    pub(crate) out_zp: &'static str,
    pub(crate) temb_w: &'static str,
    pub(crate) temb_b: &'static str,
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
    pub(crate) weight: &'a [u8],
    pub(crate) bias: I32Le<'a>,
    pub(crate) multiplier: I32Le<'a>,
    pub(crate) shift: I32Le<'a>,
    pub(crate) bias_scale: F32Le<'a>,
    /// Input quantization.
    pub input: ActQuant,
    /// Output quantization (`None` for `out`, which is dequantized to f32).
    pub out: Option<ActQuant>,
    pub(crate) temb_w: F32Le<'a>,
    pub(crate) temb_b: F32Le<'a>,
}

/// The requantization of one output channel of a ReLU block ([`TinyQConv::requantizer`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requantizer {
    m: QuantizedMultiplier,
    zero_point: i32,
}

impl Requantizer {
    /// `clamp(max(round(acc · M), 0) + zp)` to int8. A non-positive accumulator with a
    /// non-negative multiplier rounds to a non-positive value, which the ReLU makes 0: that
    /// case skips the multiplication (the same result, for the many pixels the ReLU clears).
    #[inline(always)]
    pub(crate) fn apply(self, acc: i32) -> i8 {
        let v = if acc <= 0 && self.m.multiplier >= 0 {
            0
        } else {
            self.m.apply(acc).max(0)
        };
        v.saturating_add(self.zero_point).clamp(-128, 127) as i8
    }
}

impl<'a> TinyQConv<'a> {
    /// Tap `k` (= ky·3 + kx) from input channel `i` to output channel `o`.
    #[inline(always)]
    pub(crate) fn tap(&self, o: usize, i: usize, k: usize) -> i32 {
        self.weight[(o * self.in_c + i) * 9 + k] as i8 as i32
    }

    /// The int32 accumulator of output pixel `(y, x)` of channel `o` (input `in_h × in_w`):
    /// bias + `offset` + Σ w·(q − zero_point), zero padding contributing nothing.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accumulate<S: Source>(
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
            for_each_tap!(cy, cx, in_h, in_w, |k, iy, ix| {
                let q = src.at(i, iy, ix);
                acc = acc.wrapping_add(self.tap(o, i, k) * (q - zp));
            });
        }
        acc
    }

    /// The requantization of channel `o`'s accumulators to int8 with ReLU (clamp at the output
    /// zero point) and saturation, the channel's parameters read once.
    #[inline(always)]
    pub(crate) fn requantizer(&self, o: usize, out: ActQuant) -> Requantizer {
        Requantizer {
            m: QuantizedMultiplier {
                multiplier: self.multiplier.get(o),
                shift: self.shift.get(o),
            },
            zero_point: out.zero_point,
        }
    }

    /// Output row `y` (all channels, `[out_c, out_w]`) of a ReLU block into `dst`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block_row<S: Source>(
        &self,
        kernel: Kernel,
        src: &S,
        in_h: usize,
        in_w: usize,
        y: usize,
        offsets: &[i32],
        dst: &mut [i8],
        dst_stride: usize,
    ) {
        let out = self.out.unwrap_or(self.input);
        // Channels two at a time (the last alone when out_c is odd).
        let pairs = if kernel == Kernel::Rows {
            self.out_c / 2
        } else {
            0
        };
        for o in (0..2 * pairs).step_by(2) {
            let offs = [offsets[o], offsets[o + 1]];
            let r = [self.requantizer(o, out), self.requantizer(o + 1, out)];
            self.for_each_acc2(kernel, src, in_h, in_w, o, y, offs, |k, x, acc| {
                dst[(o + k) * dst_stride + x] = r[k].apply(acc);
            });
        }
        for o in 2 * pairs..self.out_c {
            let dst = &mut dst[o * dst_stride..];
            let r = self.requantizer(o, out);
            self.for_each_acc(kernel, src, in_h, in_w, o, y, offsets[o], |x, acc| {
                dst[x] = r.apply(acc);
            });
        }
    }

    /// A whole ReLU block: `dst` is `[out_c, in_h/stride, in_w/stride]`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block_map<S: Source>(
        &self,
        kernel: Kernel,
        src: &S,
        in_h: usize,
        in_w: usize,
        offsets: &[i32],
        dst: &mut [i8],
    ) {
        let (oh, ow) = (in_h / self.stride, in_w / self.stride);
        for y in 0..oh {
            self.block_row(
                kernel,
                src,
                in_h,
                in_w,
                y,
                offsets,
                &mut dst[y * ow..],
                oh * ow,
            );
        }
    }

    /// A whole ReLU block with its time offsets over the `[C, h, w]` map `data`: computes the
    /// offsets from `temb` into `offsets`, then [`TinyQConv::block_map`].
    pub(crate) fn plain_block(
        &self,
        kernel: Kernel,
        temb: &[f32],
        offsets: &mut [i32],
        data: &[i8],
        (h, w): (usize, usize),
        dst: &mut [i8],
    ) {
        self.time_offsets(temb, offsets);
        self.block_map(kernel, &Plain { data, h, w }, h, w, offsets, dst);
    }

    /// [`TinyQConv::plain_block`] over `cat([upsample_nearest2x(up), skip])` at `h × w`
    /// (`up` has `up_c` channels).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn up_block(
        &self,
        kernel: Kernel,
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
        self.block_map(kernel, &src, h, w, offsets, dst);
    }

    /// Output row `y` of the dequantized last layer: channel `o`, column `x` into
    /// `dst[o · dst_stride + x]`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dequant_row<S: Source>(
        &self,
        kernel: Kernel,
        src: &S,
        h: usize,
        w: usize,
        y: usize,
        dst: &mut [f32],
        dst_stride: usize,
    ) {
        for o in 0..self.out_c {
            let unit = self.bias_scale.get(o);
            let dst = &mut dst[o * dst_stride..];
            self.for_each_acc(kernel, src, h, w, o, y, 0, |x, acc| {
                dst[x] = acc as f32 * unit;
            });
        }
    }

    /// The block's integer time offsets: `round(proj[o] / bias_scale[o])` where
    /// `proj = temb_w · temb + temb_b` (f32), saturated to ±2³⁰ so that adding it to the bias
    /// cannot overflow on its own.
    pub(crate) fn time_offsets(&self, temb: &[f32], offsets: &mut [i32]) {
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
    pub(crate) fn load(
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

pub(crate) const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
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
    let [w1, w2, w3] = cfg.widths_usize();
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
pub(crate) const fn widest(cfg: &TinyUNetConfig) -> usize {
    let [w1, w2, w3] = cfg.widths_usize();
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

/// An int8 TinyUNet whose weights stay in the model file's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Int8TinyUNet<'a> {
    pub(crate) cfg: TinyUNetConfig,
    pub(crate) input: ActQuant,
    pub(crate) layers: [TinyQConv<'a>; 7],
    /// mid1, mid2, … (the first `mid_blocks − 1` entries).
    pub(crate) extra_mid: [Option<TinyQConv<'a>>; TINY_MAX_MID_BLOCKS - 1],
    pub(crate) time: TimeMlp<'a>,
    /// `class_emb.weight` (f32, `[K + 1, D]`) of a class-conditional network.
    pub(crate) class_emb: Option<F32Le<'a>>,
    /// The class label every pass computes for ("no class" unless set).
    pub(crate) label: u32,
}

impl<'a> Int8TinyUNet<'a> {
    /// Checks an int8 TinyUNet file (precision, every tensor's dtype and shape, requantization
    /// parameters, shared parameters of both halves of each concatenation) and borrows its
    /// tensors.
    pub fn from_file(file: &ModelFile<'a>) -> Result<Self> {
        let only = "the TinyUNet int8 executor runs TinyUNet models only";
        let cfg: TinyUNetConfig = file.config_for(Precision::Int8, only)?;
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
        let time = TimeMlp::load(file, cfg.emb_dim, d)?;
        let class_emb = match cfg.is_conditional() {
            true => Some(F32Le(
                tensor(file, "class_emb.weight", DType::F32, &[cfg.classes + 1, d])?.data,
            )),
            false => None,
        };
        Ok(Self {
            cfg,
            input,
            layers: [enc0, down1, down2, mid, up2, up1, out],
            extra_mid,
            time,
            class_emb,
            label: cfg.null_class(),
        })
    }

    /// The same network computing for `class` (`None`: "no class"); errors as
    /// [`TinyUNet::with_class`](crate::TinyUNet::with_class) does.
    pub fn with_class(mut self, class: Option<u32>) -> Result<Self> {
        self.label = crate::nets::tiny_unet::reference::class_label(&self.cfg, class)?;
        Ok(self)
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

    /// Multiply-adds of layer `k` of [`LAYERS`] in one pass, as the layer's nominal size
    /// counts them (9 per input channel, output channel and output pixel, the zero padding
    /// included), or `None` for a layer this network lacks.
    pub fn layer_macs(&self, k: usize) -> Option<u64> {
        let l = match k {
            0..=6 => &self.layers[k],
            _ => self
                .extra_mid
                .get(k.checked_sub(EXTRA_MID_LAYER)?)?
                .as_ref()?,
        };
        // Output resolution: full for enc0, up1 and out, half for down1 and up2, a quarter
        // for down2 and the mid blocks.
        let plane = self.cfg.planes()[match k {
            0 | 5 | OUT => 0,
            1 | 4 => 1,
            _ => 2,
        }];
        Some(9 * (l.in_c * l.out_c * plane) as u64)
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

    pub(crate) fn check_time(&self, t: &TimeScratch<'_>) -> Result<()> {
        let c = &self.cfg;
        check_min_len("time scratch emb", c.emb_dim as usize, t.emb.len())?;
        check_min_len("time scratch hidden", c.temb_dim as usize, t.hidden.len())?;
        check_min_len("time scratch temb", c.temb_dim as usize, t.temb.len())?;
        check_min_len("time scratch offsets", widest(c), t.offsets.len())
    }

    /// temb for time input `t_in` into `t.temb` (f32, as the f32 network computes it), after
    /// checking the scratch sizes ([`Int8TinyUNet::check_time`]).
    pub(crate) fn time_embedding(&self, t_in: f32, t: &mut TimeScratch<'_>) -> Result<()> {
        self.check_time(t)?;
        let (e, d) = (self.cfg.emb_dim as usize, self.cfg.temb_dim as usize);
        let emb = &mut t.emb[..e];
        layers::sinusoidal_embedding(t_in * TINY_TIME_SCALE, TINY_MAX_PERIOD, emb)?;
        let hidden = &mut t.hidden[..d];
        linear_le(emb, self.time.w0, self.time.b0, hidden);
        layers::relu(hidden);
        let temb = &mut t.temb[..d];
        linear_le(hidden, self.time.w2, self.time.b2, temb);
        if let Some(table) = self.class_emb {
            let row = self.label as usize * d;
            for (k, v) in temb.iter_mut().enumerate() {
                *v += table.get(row + k);
            }
        }
        Ok(())
    }

    pub(crate) fn quantize_input(&self, x: &[f32], xq: &mut [i8]) {
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
        enc0.plain_block(Kernel::Oracle, temb, offs, xq, (h, w), s1);
        down1.plain_block(Kernel::Oracle, temb, offs, s1, (h, w), s2);
        down2.plain_block(Kernel::Oracle, temb, offs, s2, (h2, wd2), d2);
        mid.plain_block(Kernel::Oracle, temb, offs, d2, (h4, w4), m);
        // m1, m2, … follow u1, each read by the next mid block; `m` names the latest.
        let mut m: &[i8] = m;
        for l in self.extra_mid() {
            let (next, tail) = core::mem::take(&mut extra).split_at_mut(w3 * h4 * w4);
            l.plain_block(Kernel::Oracle, temb, offs, m, (h4, w4), next);
            (m, extra) = (next, tail);
        }
        up2.up_block(Kernel::Oracle, temb, offs, (m, w3), s2, (h2, wd2), u2);
        up1.up_block(Kernel::Oracle, temb, offs, (u2, w2), s1, (h, w), u1);
        let src = Plain { data: u1, h, w };
        for y in 0..h {
            out.dequant_row(Kernel::Oracle, &src, h, w, y, &mut eps[y * w..], h * w);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut for non-positive accumulators gives what the full requantization gives,
    /// for multipliers of both signs (a damaged file's negative one takes the full path), left
    /// and right shifts and zero points across the int8 range.
    #[test]
    fn requantizer_equals_the_full_formula() {
        let accs = [
            i32::MIN,
            -1 << 20,
            -12_345,
            -2,
            -1,
            0,
            1,
            2,
            999,
            1 << 24,
            i32::MAX,
        ];
        for multiplier in [0, 1 << 30, 1_518_500_250, i32::MAX, -(1 << 30)] {
            for shift in [-31, -9, -1, 0, 3] {
                for zero_point in [-128, -7, 0, 127] {
                    let m = QuantizedMultiplier { multiplier, shift };
                    let r = Requantizer { m, zero_point };
                    for acc in accs {
                        let full = m
                            .apply(acc)
                            .max(0)
                            .saturating_add(zero_point)
                            .clamp(-128, 127);
                        assert_eq!(r.apply(acc) as i32, full, "{m:?} zp {zero_point} acc {acc}");
                    }
                }
            }
        }
    }
}
