//! Int8 SimpleUNet read in place from a model file's bytes, with two executors that give
//! bit-identical results:
//! - [`Int8SimpleUNet::forward_layerwise`]: whole activation maps, layer after layer (the plain
//!   integer oracle);
//! - [`crate::nets::simple_unet::stream`] (`forward_streaming`, `sample_streaming`): row by
//!   row, keeping a rolling window of 3 rows per intermediate layer (all four layers are 3×3
//!   stride 1, so an output row needs only 3 rows of its input).
//!
//! Arithmetic (see [`crate::kernels::quant`]): the input image is quantized per tensor; each conv
//! accumulates `Σ w·(q − zero_point)` in int32 on top of its int32 bias, requantizes with a
//! per-channel Q31 multiplier, applies ReLU by clamping at the output zero point, and saturates
//! to int8. The time MLP stays f32 (16.8 K multiply-adds per step): its output `temb[o]` joins
//! the int8 path as the integer offset `round(temb[o] / enc2_output_scale)`, added after enc2's
//! ReLU and before its zero point, which is exactly `relu(conv) + temb` in enc2's output scale.
//! The last layer is dequantized straight from its int32 accumulator
//! (`ε = acc · input_scale · weight_scale[o]`), so ε is never rounded to 8 bits.
use crate::error::{check_len, check_min_len, Error, Result};
use crate::file::tensor::{act_quant, tensor, F32Le, I32Le, TimeMlp};
use crate::file::{DType, ModelFile, Precision};
use crate::kernels::quant::{ActQuant, InputQuant, QuantizedMultiplier, INPUT16_MAX};
use crate::kernels::reference::for_each_tap;
use crate::nets::simple_unet::SimpleUNetConfig;

/// Bytes per quantized input value in the activation storage: the input is held as
/// little-endian `i16` (int16 files use the whole range; int8 files the int8 part of it).
pub const INPUT_BYTES: usize = 2;

/// Stores input value `v` at element `i` of the input region of the activation storage.
#[inline(always)]
pub fn store_input(acts: &mut [i8], i: usize, v: i16) {
    let [lo, hi] = v.to_le_bytes();
    acts[INPUT_BYTES * i] = lo as i8;
    acts[INPUT_BYTES * i + 1] = hi as i8;
}

/// Input value at element `i` of the input region of the activation storage.
#[inline(always)]
pub fn load_input(acts: &[i8], i: usize) -> i16 {
    i16::from_le_bytes([acts[INPUT_BYTES * i] as u8, acts[INPUT_BYTES * i + 1] as u8])
}

/// Tensor names of the int8 file, besides the PyTorch names of the weights and biases:
/// `<layer>.weight_scale` (f32 per output channel), `<layer>.multiplier` and `<layer>.shift`
/// (i32 per output channel), `<layer>.output_scale` and `<layer>.output_zero_point` (one each;
/// not for `dec2`), `dec2.dequant` (f32 per output channel), `input.scale` /
/// `input.zero_point`, and optionally `input.bits` (i32, 8 or 16; absent: 8). With 16 the input
/// is symmetric int16 (zero point 0) and enc1 multiplies int16 inputs by int8 weights.
pub const LAYERS: [&str; 4] = ["enc1", "enc2", "dec1", "dec2"];

/// One int8 3×3 stride-1 padding-1 layer (conv or transposed conv) over borrowed file bytes.
#[derive(Debug, Clone, Copy)]
pub struct QConv<'a> {
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// Whether `weight` is a ConvTranspose2d kernel `[in, out, 3, 3]` (read rotated 180°).
    pub transposed: bool,
    weight: &'a [u8],
    bias: I32Le<'a>,
    multiplier: I32Le<'a>,
    shift: I32Le<'a>,
    /// Input zero point.
    pub in_zp: i32,
    /// Output quantization (`None` for the last layer, which is dequantized to f32).
    pub out: Option<ActQuant>,
    dequant: F32Le<'a>,
    /// ReLU on the output.
    pub relu: bool,
}

impl<'a> QConv<'a> {
    /// Tap `k` (= ky·3 + kx) of the kernel from input channel `i` to output channel `o`, in
    /// convolution orientation.
    #[inline(always)]
    pub fn tap(&self, o: usize, i: usize, k: usize) -> i32 {
        let idx = if self.transposed {
            (i * self.out_c + o) * 9 + (8 - k)
        } else {
            (o * self.in_c + i) * 9 + k
        };
        self.weight[idx] as i8 as i32
    }

    /// The int32 bias of channel `o`.
    #[inline(always)]
    pub fn bias(&self, o: usize) -> i32 {
        self.bias.get(o)
    }

    /// Requantizes accumulator `acc` of channel `o` to int8, with ReLU and the integer `offset`
    /// (in output-scale units) added after the ReLU.
    #[inline(always)]
    pub fn requantize(&self, o: usize, acc: i32, offset: i32, out: ActQuant) -> i8 {
        let m = QuantizedMultiplier {
            multiplier: self.multiplier.get(o),
            shift: self.shift.get(o),
        };
        let mut v = m.apply(acc);
        if self.relu && v < 0 {
            v = 0;
        }
        v = v.saturating_add(offset).saturating_add(out.zero_point);
        v.clamp(-128, 127) as i8
    }

    /// Dequantizes accumulator `acc` of channel `o` (last layer).
    #[inline(always)]
    pub fn dequantize(&self, o: usize, acc: i32) -> f32 {
        acc as f32 * self.dequant.get(o)
    }

    fn load(
        file: &ModelFile<'a>,
        layer: usize,
        in_c: u32,
        out_c: u32,
        in_zp: i32,
        last: bool,
    ) -> Result<Self> {
        const W: [&str; 4] = ["enc1.weight", "enc2.weight", "dec1.weight", "dec2.weight"];
        const B: [&str; 4] = ["enc1.bias", "enc2.bias", "dec1.bias", "dec2.bias"];
        const M: [&str; 4] = [
            "enc1.multiplier",
            "enc2.multiplier",
            "dec1.multiplier",
            "dec2.multiplier",
        ];
        const S: [&str; 4] = ["enc1.shift", "enc2.shift", "dec1.shift", "dec2.shift"];
        const OS: [&str; 3] = [
            "enc1.output_scale",
            "enc2.output_scale",
            "dec1.output_scale",
        ];
        const OZ: [&str; 3] = [
            "enc1.output_zero_point",
            "enc2.output_zero_point",
            "dec1.output_zero_point",
        ];
        let transposed = layer >= 2;
        let wdims = if transposed {
            [in_c, out_c, 3, 3]
        } else {
            [out_c, in_c, 3, 3]
        };
        let weight = tensor(file, W[layer], DType::I8, &wdims)?.data;
        let bias = I32Le(tensor(file, B[layer], DType::I32, &[out_c])?.data);
        let multiplier = I32Le(tensor(file, M[layer], DType::I32, &[out_c])?.data);
        let shift = I32Le(tensor(file, S[layer], DType::I32, &[out_c])?.data);
        for o in 0..out_c as usize {
            if !(-31..=30).contains(&shift.get(o)) || multiplier.get(o) < 0 {
                return Err(Error::InvalidConfig(
                    "int8 requantization parameters out of range",
                ));
            }
        }
        let (out, dequant) = if last {
            let d = F32Le(tensor(file, "dec2.dequant", DType::F32, &[out_c])?.data);
            (None, d)
        } else {
            (Some(act_quant(file, OS[layer], OZ[layer])?), F32Le(&[]))
        };
        Ok(Self {
            in_c: in_c as usize,
            out_c: out_c as usize,
            transposed,
            weight,
            bias,
            multiplier,
            shift,
            in_zp,
            out,
            dequant,
            relu: !last,
        })
    }
}

impl TimeMlp<'_> {
    /// The time embedding of time input `t_in` (e = 1) into `temb`, via `hidden`.
    fn run(&self, t_in: f32, hidden: &mut [f32], temb: &mut [f32]) {
        let n = hidden.len();
        for (o, h) in hidden.iter_mut().enumerate() {
            let v = self.w0.get(o) * t_in + self.b0.get(o);
            *h = if v < 0.0 { 0.0 } else { v };
        }
        for (o, e) in temb.iter_mut().enumerate() {
            let mut acc = self.b2.get(o);
            for (i, h) in hidden.iter().enumerate() {
                acc += self.w2.get(o * n + i) * h;
            }
            *e = acc;
        }
    }
}

/// An int8 SimpleUNet whose weights stay in the model file's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Int8SimpleUNet<'a> {
    cfg: SimpleUNetConfig,
    input: InputQuant,
    layers: [QConv<'a>; 4],
    time: TimeMlp<'a>,
}

impl SimpleUNetConfig {
    /// Activation elements of [`Int8SimpleUNet::forward_layerwise`]: the quantized input
    /// ([`INPUT_BYTES`] per value) and three whole intermediate maps.
    pub const fn layerwise_act_len(&self) -> usize {
        let plane = self.height as usize * self.width as usize;
        plane
            * (INPUT_BYTES * self.channels as usize
                + 2 * self.hidden1 as usize
                + self.hidden2 as usize)
    }

    /// Activation elements of the streaming executors: 3 rows of the quantized input
    /// ([`INPUT_BYTES`] elements per value, room the f32 executor leaves unused) and of each of
    /// the three intermediate maps.
    pub const fn streaming_act_len(&self) -> usize {
        3 * self.width as usize
            * (INPUT_BYTES * self.channels as usize
                + 2 * self.hidden1 as usize
                + self.hidden2 as usize)
    }

    /// Elements of one output row over all channels (C·W).
    pub const fn row_len(&self) -> usize {
        self.channels as usize * self.width as usize
    }
}

/// Caller-owned scratch of an executor with activations of type `A` (i8 or f32).
pub struct Scratch<'b, A> {
    /// Activation storage ([`SimpleUNetConfig::layerwise_act_len`] or
    /// [`SimpleUNetConfig::streaming_act_len`] elements).
    pub acts: &'b mut [A],
    /// Time MLP hidden vector (hidden2).
    pub hidden: &'b mut [f32],
    /// Time embedding (hidden2).
    pub temb: &'b mut [f32],
    /// Integer time-embedding offsets (hidden2; int8 only, may be empty for f32).
    pub offsets: &'b mut [i32],
    /// One output row of ε (C·W; streaming only).
    pub row: &'b mut [f32],
}

impl<A> Scratch<'_, A> {
    pub(crate) fn check_sizes(
        &self,
        cfg: &SimpleUNetConfig,
        acts: usize,
        offsets: bool,
        row: bool,
    ) -> Result<()> {
        let h2 = cfg.hidden2 as usize;
        check_min_len("scratch activations", acts, self.acts.len())?;
        check_min_len("scratch hidden", h2, self.hidden.len())?;
        check_min_len("scratch temb", h2, self.temb.len())?;
        if offsets {
            check_min_len("scratch offsets", h2, self.offsets.len())?;
        }
        if row {
            check_min_len("scratch row", cfg.row_len(), self.row.len())?;
        }
        Ok(())
    }
}

/// Statically sized storage for [`Scratch`]: `ACTS` activations, `H2` = hidden2, `ROW` = C·W.
/// Its `size_of` is the executor's whole working memory besides the sampler's image.
pub struct ScratchBuffers<A, const ACTS: usize, const H2: usize, const ROW: usize> {
    /// Activations.
    pub acts: [A; ACTS],
    /// Time MLP hidden vector.
    pub hidden: [f32; H2],
    /// Time embedding.
    pub temb: [f32; H2],
    /// Integer time-embedding offsets.
    pub offsets: [i32; H2],
    /// One output row.
    pub row: [f32; ROW],
}

impl<A: Copy + Default, const ACTS: usize, const H2: usize, const ROW: usize>
    ScratchBuffers<A, ACTS, H2, ROW>
{
    /// Zeroed buffers.
    pub fn new() -> Self {
        Self {
            acts: [A::default(); ACTS],
            hidden: [0.0; H2],
            temb: [0.0; H2],
            offsets: [0; H2],
            row: [0.0; ROW],
        }
    }

    /// The buffers as a [`Scratch`].
    pub fn scratch(&mut self) -> Scratch<'_, A> {
        Scratch {
            acts: &mut self.acts,
            hidden: &mut self.hidden,
            temb: &mut self.temb,
            offsets: &mut self.offsets,
            row: &mut self.row,
        }
    }
}

/// An activation element type of the executors (i8 or f32), with its zero as a constant.
pub trait ActElem: Copy {
    /// Zero.
    const ZERO: Self;
}

impl ActElem for i8 {
    const ZERO: Self = 0;
}

impl ActElem for f32 {
    const ZERO: Self = 0.0;
}

impl<A: ActElem, const ACTS: usize, const H2: usize, const ROW: usize>
    ScratchBuffers<A, ACTS, H2, ROW>
{
    /// Zeroed buffers as a constant, so a `static` of them lands in `.bss`.
    pub const ZEROED: Self = Self {
        acts: [A::ZERO; ACTS],
        hidden: [0.0; H2],
        temb: [0.0; H2],
        offsets: [0; H2],
        row: [0.0; ROW],
    };
}

impl<A: Copy + Default, const ACTS: usize, const H2: usize, const ROW: usize> Default
    for ScratchBuffers<A, ACTS, H2, ROW>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Int8 streaming scratch for the seed's 1×28×28 configuration.
pub type SeedInt8StreamBuffers = ScratchBuffers<
    i8,
    { SimpleUNetConfig::SEED.streaming_act_len() },
    128,
    { SimpleUNetConfig::SEED.row_len() },
>;

/// f32 streaming scratch for the seed's 1×28×28 configuration.
pub type SeedF32StreamBuffers = ScratchBuffers<
    f32,
    { SimpleUNetConfig::SEED.streaming_act_len() },
    128,
    { SimpleUNetConfig::SEED.row_len() },
>;

impl<'a> Int8SimpleUNet<'a> {
    /// Checks an int8 model file (precision, every tensor's dtype and shape, requantization
    /// parameters) and borrows its tensors.
    pub fn from_file(file: &ModelFile<'a>) -> Result<Self> {
        let only = "the int8 executor runs SimpleUNet models only";
        let cfg: SimpleUNetConfig = file.config_for(Precision::Int8, only)?;
        let q = act_quant(file, "input.scale", "input.zero_point")?;
        let bits = match file.tensor("input.bits") {
            Err(Error::MissingTensor { .. }) => 8,
            _ => I32Le(tensor(file, "input.bits", DType::I32, &[1])?.data).get(0),
        };
        let input = match bits {
            8 => InputQuant { q, bits: 8 },
            16 if q.zero_point == 0 => InputQuant { q, bits: 16 },
            16 => {
                return Err(Error::InvalidConfig(
                    "int16 input must have zero point 0 (symmetric)",
                ))
            }
            _ => return Err(Error::InvalidConfig("input.bits must be 8 or 16")),
        };
        let (c, h1, h2) = (cfg.channels, cfg.hidden1, cfg.hidden2);
        let enc1 = QConv::load(file, 0, c, h1, input.q.zero_point, false)?;
        if bits == 16 {
            // enc1's int32 accumulator: |bias| + 9·c_in taps of |int16 input| ≤ 32767 times
            // |int8 weight| ≤ 127 (a weight of −128 is never written) must not overflow.
            let worst = int16_enc1_worst_case(c as usize);
            let bias = (0..h1 as usize)
                .map(|o| (enc1.bias(o) as i64).abs())
                .max()
                .unwrap_or(0);
            if worst + bias > i32::MAX as i64 {
                return Err(Error::InvalidConfig(
                    "int16 input: enc1 accumulator could overflow int32",
                ));
            }
        }
        let enc2 = QConv::load(file, 1, h1, h2, enc1.out.map_or(0, |q| q.zero_point), false)?;
        let dec1 = QConv::load(file, 2, h2, h1, enc2.out.map_or(0, |q| q.zero_point), false)?;
        let dec2 = QConv::load(file, 3, h1, c, dec1.out.map_or(0, |q| q.zero_point), true)?;
        let time = TimeMlp::load(file, 1, h2)?;
        Ok(Self {
            cfg,
            input,
            layers: [enc1, enc2, dec1, dec2],
            time,
        })
    }

    /// The network's sizes.
    pub fn config(&self) -> &SimpleUNetConfig {
        &self.cfg
    }

    /// The input quantization.
    pub fn input_quant(&self) -> InputQuant {
        self.input
    }

    /// The four conv layers: enc1, enc2, dec1, dec2.
    pub fn layers(&self) -> &[QConv<'a>; 4] {
        &self.layers
    }

    /// Runs the time MLP and converts its output to enc2's integer offsets.
    pub(crate) fn time_offsets(&self, t_in: f32, s: &mut Scratch<'_, i8>) {
        let h2 = self.cfg.hidden2 as usize;
        let (hidden, temb, offsets) =
            (&mut s.hidden[..h2], &mut s.temb[..h2], &mut s.offsets[..h2]);
        self.time.run(t_in, hidden, temb);
        let scale = self.layers[1].out.map_or(1.0, |q| q.scale);
        for (o, e) in offsets.iter_mut().zip(temb.iter()) {
            let v = libm::roundf(*e / scale);
            *o = if v.is_nan() {
                0
            } else {
                v.clamp(-1.0e9, 1.0e9) as i32
            };
        }
    }

    /// Layer-by-layer int8 forward pass: predicted ε (f32) for `x` at time input `t_in`.
    pub fn forward_layerwise(
        &self,
        x: &[f32],
        t_in: f32,
        scratch: &mut Scratch<'_, i8>,
        out: &mut [f32],
    ) -> Result<()> {
        let cfg = self.cfg;
        scratch.check_sizes(&cfg, cfg.layerwise_act_len(), true, false)?;
        check_len("input image", cfg.image_len(), x.len())?;
        check_len("output image", cfg.image_len(), out.len())?;
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let plane = h * w;
        let (c, h1, h2) = (
            cfg.channels as usize,
            cfg.hidden1 as usize,
            cfg.hidden2 as usize,
        );
        self.time_offsets(t_in, scratch);
        let offsets = &scratch.offsets[..h2];
        let (xq, rest) = scratch.acts.split_at_mut(INPUT_BYTES * c * plane);
        let (a1, rest) = rest.split_at_mut(h1 * plane);
        let (a2, rest) = rest.split_at_mut(h2 * plane);
        let a3 = &mut rest[..h1 * plane];
        for (i, v) in x.iter().enumerate() {
            store_input(xq, i, self.input.quantize(*v));
        }
        let xq = &*xq;
        let fallback = self.input.q;
        let [enc1, enc2, dec1, dec2] = &self.layers;
        layerwise_conv(
            enc1,
            |j| load_input(xq, j) as i32,
            h,
            w,
            |o, acc| LayerOut::Q(enc1.requantize(o, acc, 0, enc1.out.unwrap_or(fallback))),
            a1.iter_mut().map(Slot::Q),
        );
        layerwise_conv(
            enc2,
            |j| a1[j] as i32,
            h,
            w,
            |o, acc| LayerOut::Q(enc2.requantize(o, acc, offsets[o], enc2.out.unwrap_or(fallback))),
            a2.iter_mut().map(Slot::Q),
        );
        layerwise_conv(
            dec1,
            |j| a2[j] as i32,
            h,
            w,
            |o, acc| LayerOut::Q(dec1.requantize(o, acc, 0, dec1.out.unwrap_or(fallback))),
            a3.iter_mut().map(Slot::Q),
        );
        layerwise_conv(
            dec2,
            |j| a3[j] as i32,
            h,
            w,
            |o, acc| LayerOut::F(dec2.dequantize(o, acc)),
            out.iter_mut().map(Slot::F),
        );
        Ok(())
    }
}

enum LayerOut {
    Q(i8),
    F(f32),
}

enum Slot<'s> {
    Q(&'s mut i8),
    F(&'s mut f32),
}

/// The worst-case magnitude of enc1's int32 accumulator over its taps with an int16 input:
/// `9 · c_in · 32767 · 127` (for the seed's c_in = 1: 37,452,681, far below 2³¹ − 1; int32
/// holds it up to c_in = 57).
pub const fn int16_enc1_worst_case(c_in: usize) -> i64 {
    9 * c_in as i64 * INPUT16_MAX as i64 * 127
}

/// The plain integer oracle: every output pixel of every channel from the whole input map
/// (`input(j)`: element `j` of the `[in_c][h][w]` input as an integer).
fn layerwise_conv<'s>(
    layer: &QConv<'_>,
    input: impl Fn(usize) -> i32,
    h: usize,
    w: usize,
    finish: impl Fn(usize, i32) -> LayerOut,
    outputs: impl Iterator<Item = Slot<'s>>,
) {
    let mut outputs = outputs;
    for o in 0..layer.out_c {
        for y in 0..h {
            for x in 0..w {
                let mut acc = layer.bias(o);
                for i in 0..layer.in_c {
                    for_each_tap!(y, x, h, w, |k, iy, ix| {
                        let q = input((i * h + iy) * w + ix);
                        acc = acc.wrapping_add(layer.tap(o, i, k) * (q - layer.in_zp));
                    });
                }
                match (outputs.next(), finish(o, acc)) {
                    (Some(Slot::Q(d)), LayerOut::Q(v)) => *d = v,
                    (Some(Slot::F(d)), LayerOut::F(v)) => *d = v,
                    _ => {}
                }
            }
        }
    }
}

/// A [`Denoiser`](crate::diffusion::Denoiser) running the layer-by-layer int8 executor.
pub struct Int8Layerwise<'a, 'b> {
    net: Int8SimpleUNet<'a>,
    scratch: Scratch<'b, i8>,
}

impl<'a, 'b> Int8Layerwise<'a, 'b> {
    /// Checks the scratch sizes once, here.
    pub fn new(net: Int8SimpleUNet<'a>, scratch: Scratch<'b, i8>) -> Result<Self> {
        scratch.check_sizes(net.config(), net.config().layerwise_act_len(), true, false)?;
        Ok(Self { net, scratch })
    }
}

impl crate::diffusion::Denoiser for Int8Layerwise<'_, '_> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        self.net.forward_layerwise(x, t_in, &mut self.scratch, eps)
    }
}
