//! The row-streaming executor: computes the network's output row by row, keeping a rolling
//! window of 3 rows for the quantized input and for each intermediate map, instead of whole
//! activation maps.
//!
//! Stage `s` makes input row `s`, enc1 row `s − 1`, enc2 row `s − 2`, dec1 row `s − 3` and
//! output row `s − 4` (those in range), in that order: when a layer's row `r` is made, its
//! input rows `r − 1`, `r` and `r + 1` are all in the window (row `r + 1` was made earlier in
//! the same stage, row `r − 1` two stages before, and 3 slots keep three consecutive rows).
//! One pipeline serves the int8 network ([`Int8SimpleUNet`]) and the f32 one
//! ([`F32StreamNet`]) through the [`RowNet`] trait.
//!
//! Because input row `r` is read (and copied into the window) at stage `r`, while output row
//! `r` appears at stage `r + 4`, a sampler can update the image row by row as the output rows
//! appear, with no buffer for ε: [`Streamed`] plugs the executor into the sampling driver.
use crate::diffusion::driver::{self, Collect, Network, OutputSink};
use crate::diffusion::noise::GaussianNoise;
use crate::diffusion::schedule::Schedule;
use crate::diffusion::SamplerConfig;
use crate::error::{check_len, Error, Result};
use crate::file::{DType, F32Le, ModelFile, Precision};
use crate::kernels::reference::for_each_tap;
use crate::nets::simple_unet::int8::{Int8SimpleUNet, Scratch};
use crate::nets::simple_unet::SimpleUNetConfig;

/// A network that can produce one row of one layer from a 3-row window of the layer below.
pub trait RowNet {
    /// Activation element type (i8 or f32).
    type Act: Copy;
    /// The network's sizes.
    fn config(&self) -> &SimpleUNetConfig;
    /// Prepares per-call state (the time embedding) for network time input `t_in`.
    fn begin(&self, t_in: f32, scratch: &mut Scratch<'_, Self::Act>);
    /// Activation elements per input value in the input window (1 for f32; the int8 network
    /// holds its input as `i16` in [`crate::nets::simple_unet::int8::INPUT_BYTES`] elements).
    fn input_elems(&self) -> usize;
    /// Converts one input row (`[w]` values) to activations (`[w · input_elems]`).
    fn input_row(&self, src: &[f32], dst: &mut [Self::Act]);
    /// Row `r` of hidden layer `layer` (0 = enc1, 1 = enc2, 2 = dec1) into `dst` (`[out_c][w]`),
    /// reading the window `src` (`[3][in_c][w]`, row `q` in slot `q % 3`).
    fn hidden_row(
        &self,
        layer: usize,
        src: &[Self::Act],
        r: usize,
        offsets: &[i32],
        temb: &[f32],
        dst: &mut [Self::Act],
    );
    /// Row `r` of the output (`[c][w]`) from the window of dec1.
    fn output_row(&self, src: &[Self::Act], r: usize, dst: &mut [f32]);
    /// Whether `Scratch::offsets` is used.
    fn uses_offsets(&self) -> bool;
}

/// Input and output channels of layer `l` (0..4) of a SimpleUNet.
pub(crate) fn layer_channels(cfg: &SimpleUNetConfig, l: usize) -> (usize, usize) {
    let (c, h1, h2) = (
        cfg.channels as usize,
        cfg.hidden1 as usize,
        cfg.hidden2 as usize,
    );
    [(c, h1), (h1, h2), (h2, h1), (h1, c)][l]
}

/// Runs the network on `x` row by row; `sink` receives each output row `r` (`[c][w]`) as soon
/// as it exists, together with the image, whose rows up to `r + 4` have all been read already,
/// so the sink may overwrite rows `≤ r` of `x`.
pub fn run_streaming<N: RowNet>(
    net: &N,
    x: &mut [f32],
    t_in: f32,
    scratch: &mut Scratch<'_, N::Act>,
    sink: &mut dyn OutputSink,
) -> Result<()> {
    let cfg = *net.config();
    let (h, w) = (cfg.height as usize, cfg.width as usize);
    let c = cfg.channels as usize;
    let h2 = cfg.hidden2 as usize;
    check_len("input image", cfg.image_len(), x.len())?;
    scratch.check_streaming(&cfg, net.uses_offsets())?;
    net.begin(t_in, scratch);
    let Scratch {
        acts,
        temb,
        offsets,
        row,
        ..
    } = scratch;
    let (temb, offsets, row) = (&temb[..h2], &offsets[..], &mut row[..c * w]);
    // Windows: input, enc1, enc2, dec1.
    let ie = net.input_elems();
    let sizes = [
        3 * ie * c * w,
        3 * cfg.hidden1 as usize * w,
        3 * h2 * w,
        3 * cfg.hidden1 as usize * w,
    ];
    let (win0, rest) = acts.split_at_mut(sizes[0]);
    let (win1, rest) = rest.split_at_mut(sizes[1]);
    let (win2, rest) = rest.split_at_mut(sizes[2]);
    let win3 = &mut rest[..sizes[3]];
    for s in 0..h + 4 {
        if s < h {
            let slot = s % 3;
            for ch in 0..c {
                let src = &x[(ch * h + s) * w..][..w];
                net.input_row(src, &mut win0[(slot * c + ch) * ie * w..][..ie * w]);
            }
        }
        hidden_stage(net, 0, s, win0, win1, offsets, temb);
        hidden_stage(net, 1, s, win1, win2, offsets, temb);
        hidden_stage(net, 2, s, win2, win3, offsets, temb);
        if let Some(r) = s.checked_sub(4).filter(|&r| r < h) {
            net.output_row(&*win3, r, row);
            sink.row(x, r, w, row)?;
        }
    }
    Ok(())
}

/// At stage `s`, makes row `s − layer − 1` of hidden layer `layer` (when in range) from the
/// window `src` into the window `dst`.
fn hidden_stage<N: RowNet>(
    net: &N,
    layer: usize,
    s: usize,
    src: &[N::Act],
    dst: &mut [N::Act],
    offsets: &[i32],
    temb: &[f32],
) {
    let cfg = net.config();
    let Some(r) = s
        .checked_sub(layer + 1)
        .filter(|&r| r < cfg.height as usize)
    else {
        return;
    };
    let (_, out_c) = layer_channels(cfg, layer);
    let len = out_c * cfg.width as usize;
    let slot = r % 3;
    net.hidden_row(
        layer,
        src,
        r,
        offsets,
        temb,
        &mut dst[slot * len..(slot + 1) * len],
    );
}

impl<A> Scratch<'_, A> {
    fn check_streaming(&self, cfg: &SimpleUNetConfig, offsets: bool) -> Result<()> {
        self.check_sizes(cfg, cfg.streaming_act_len(), offsets, true)
    }
}

/// One forward pass through the streaming executor into `out` (the whole ε).
pub fn forward_streaming<N: RowNet>(
    net: &N,
    x: &[f32],
    t_in: f32,
    scratch: &mut Scratch<'_, N::Act>,
    x_copy_free: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    let cfg = *net.config();
    check_len("output image", cfg.image_len(), out.len())?;
    check_len("input copy", cfg.image_len(), x_copy_free.len())?;
    x_copy_free.copy_from_slice(x);
    run_streaming(net, x_copy_free, t_in, scratch, &mut Collect { out })
}

/// A [`RowNet`] with its scratch: the streaming executor as a [`Network`] of the sampling
/// driver, handing ε over row by row (no ε buffer exists).
pub struct Streamed<'n, 's, 'b, N: RowNet> {
    net: &'n N,
    scratch: &'s mut Scratch<'b, N::Act>,
}

impl<'n, 's, 'b, N: RowNet> Streamed<'n, 's, 'b, N> {
    /// The executor `net` over `scratch` (its sizes are checked on every pass).
    pub fn new(net: &'n N, scratch: &'s mut Scratch<'b, N::Act>) -> Self {
        Self { net, scratch }
    }
}

impl<N: RowNet> Network for Streamed<'_, '_, '_, N> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }
    fn output(&mut self, x: &mut [f32], t_in: f32, sink: &mut dyn OutputSink) -> Result<()> {
        run_streaming(self.net, x, t_in, self.scratch, sink)
    }
}

/// A whole sample through the streaming executor ([`crate::diffusion::sample_batch`] of one): `x` is
/// filled with noise from `seed`, and holds the final image at the end. Working memory: `x`,
/// the scratch and the schedule.
pub fn sample_streaming<N: RowNet, const M: usize>(
    net: &N,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    seed: u64,
    x: &mut [f32],
    scratch: &mut Scratch<'_, N::Act>,
) -> Result<()> {
    sample_streaming_with_history(net, sched, cfg, seed, x, scratch, &mut [])
}

/// [`sample_streaming`] with a multistep sampler's history (DPM-Solver++(2M): the previous
/// step's x0, as long as `x`; empty for DDPM and DDIM), see
/// [`crate::diffusion::sample_batch_with_history`].
pub fn sample_streaming_with_history<N: RowNet, const M: usize>(
    net: &N,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    seed: u64,
    x: &mut [f32],
    scratch: &mut Scratch<'_, N::Act>,
    history: &mut [f32],
) -> Result<()> {
    let noise = &mut [GaussianNoise::new(seed)];
    driver::sample_batch_with_history(
        &mut Streamed::new(net, scratch),
        sched,
        cfg,
        noise,
        x,
        history,
    )
}

impl RowNet for Int8SimpleUNet<'_> {
    type Act = i8;
    fn config(&self) -> &SimpleUNetConfig {
        Int8SimpleUNet::config(self)
    }
    fn begin(&self, t_in: f32, scratch: &mut Scratch<'_, i8>) {
        self.time_offsets(t_in, scratch);
    }
    fn input_elems(&self) -> usize {
        crate::nets::simple_unet::int8::INPUT_BYTES
    }
    fn input_row(&self, src: &[f32], dst: &mut [i8]) {
        let q = self.input_quant();
        for (i, v) in src.iter().enumerate() {
            crate::nets::simple_unet::int8::store_input(dst, i, q.quantize(*v));
        }
    }
    fn hidden_row(
        &self,
        layer: usize,
        src: &[i8],
        r: usize,
        offsets: &[i32],
        _temb: &[f32],
        dst: &mut [i8],
    ) {
        let l = &self.layers()[layer];
        let h = self.config().height as usize;
        let w = self.config().width as usize;
        let out = l.out.unwrap_or(self.input_quant().q);
        for o in 0..l.out_c {
            let off = if layer == 1 { offsets[o] } else { 0 };
            for (x, d) in dst[o * w..(o + 1) * w].iter_mut().enumerate() {
                let acc = if layer == 0 {
                    int8_acc(
                        l,
                        |j| crate::nets::simple_unet::int8::load_input(src, j) as i32,
                        h,
                        w,
                        r,
                        x,
                        o,
                    )
                } else {
                    int8_acc(l, |j| src[j] as i32, h, w, r, x, o)
                };
                *d = l.requantize(o, acc, off, out);
            }
        }
    }
    fn output_row(&self, src: &[i8], r: usize, dst: &mut [f32]) {
        let l = &self.layers()[3];
        let h = self.config().height as usize;
        let w = self.config().width as usize;
        for o in 0..l.out_c {
            for (x, d) in dst[o * w..(o + 1) * w].iter_mut().enumerate() {
                *d = l.dequantize(o, int8_acc(l, |j| src[j] as i32, h, w, r, x, o));
            }
        }
    }
    fn uses_offsets(&self) -> bool {
        true
    }
}

/// The int32 accumulator of output pixel (r, x) of channel `o`, from a 3-row window
/// (`src(j)`: element `j` of the `[3][in_c][w]` window as an integer).
#[inline(always)]
fn int8_acc(
    l: &crate::nets::simple_unet::int8::QConv<'_>,
    src: impl Fn(usize) -> i32,
    h: usize,
    w: usize,
    r: usize,
    x: usize,
    o: usize,
) -> i32 {
    let mut acc = l.bias(o);
    for i in 0..l.in_c {
        for_each_tap!(r, x, h, w, |k, iy, ix| {
            let q = src(((iy % 3) * l.in_c + i) * w + ix);
            acc = acc.wrapping_add(l.tap(o, i, k) * (q - l.in_zp));
        });
    }
    acc
}

/// An f32 SimpleUNet for the streaming executor, with weights read in place from the model
/// file's bytes (from flash on a microcontroller).
#[derive(Debug, Clone, Copy)]
pub struct F32StreamNet<'a> {
    cfg: SimpleUNetConfig,
    /// enc1, enc2, dec1, dec2 weights in PyTorch layout, then their biases.
    weights: [F32Le<'a>; 4],
    biases: [F32Le<'a>; 4],
    time: [F32Le<'a>; 4],
}

impl<'a> F32StreamNet<'a> {
    /// Checks an f32 model file and borrows its tensors.
    pub fn from_file(file: &ModelFile<'a>) -> Result<Self> {
        let only = "the f32 row-streaming executor runs SimpleUNet models only";
        let cfg: SimpleUNetConfig = file.config_for(Precision::F32, only)?;
        crate::nets::simple_unet::check_params(file, &cfg)?;
        let get = |name: &'static str| -> Result<F32Le<'a>> {
            let t = file.tensor(name)?;
            if t.dtype != DType::F32 {
                return Err(Error::DtypeMismatch { name });
            }
            Ok(F32Le::new(t.data))
        };
        Ok(Self {
            cfg,
            weights: [
                get("enc1.weight")?,
                get("enc2.weight")?,
                get("dec1.weight")?,
                get("dec2.weight")?,
            ],
            biases: [
                get("enc1.bias")?,
                get("enc2.bias")?,
                get("dec1.bias")?,
                get("dec2.bias")?,
            ],
            time: [
                get("time_mlp.0.weight")?,
                get("time_mlp.0.bias")?,
                get("time_mlp.2.weight")?,
                get("time_mlp.2.bias")?,
            ],
        })
    }

    /// The f32 accumulator of output pixel (r, x) of channel `o` of layer `l`.
    #[inline(always)]
    fn acc(&self, l: usize, src: &[f32], r: usize, x: usize, o: usize) -> f32 {
        let (in_c, out_c) = layer_channels(&self.cfg, l);
        let (h, w) = (self.cfg.height as usize, self.cfg.width as usize);
        let wt = &self.weights[l];
        let mut acc = self.biases[l].get(o);
        for i in 0..in_c {
            for_each_tap!(r, x, h, w, |k, iy, ix| {
                let idx = if l >= 2 {
                    (i * out_c + o) * 9 + (8 - k)
                } else {
                    (o * in_c + i) * 9 + k
                };
                acc += wt.get(idx) * src[((iy % 3) * in_c + i) * w + ix];
            });
        }
        acc
    }
}

impl RowNet for F32StreamNet<'_> {
    type Act = f32;
    fn config(&self) -> &SimpleUNetConfig {
        &self.cfg
    }
    fn begin(&self, t_in: f32, scratch: &mut Scratch<'_, f32>) {
        let h2 = self.cfg.hidden2 as usize;
        let [w0, b0, w2, b2] = &self.time;
        let (hidden, temb) = (&mut scratch.hidden[..h2], &mut scratch.temb[..h2]);
        for (o, hv) in hidden.iter_mut().enumerate() {
            let v = w0.get(o) * t_in + b0.get(o);
            *hv = if v < 0.0 { 0.0 } else { v };
        }
        for (o, e) in temb.iter_mut().enumerate() {
            let mut acc = b2.get(o);
            for (i, hv) in hidden.iter().enumerate() {
                acc += w2.get(o * h2 + i) * hv;
            }
            *e = acc;
        }
    }
    fn input_elems(&self) -> usize {
        1
    }
    fn input_row(&self, src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn hidden_row(
        &self,
        layer: usize,
        src: &[f32],
        r: usize,
        _offsets: &[i32],
        temb: &[f32],
        dst: &mut [f32],
    ) {
        let w = self.cfg.width as usize;
        let (_, out_c) = layer_channels(&self.cfg, layer);
        for o in 0..out_c {
            for (x, d) in dst[o * w..(o + 1) * w].iter_mut().enumerate() {
                let a = self.acc(layer, src, r, x, o);
                let v = if a < 0.0 { 0.0 } else { a };
                *d = if layer == 1 { v + temb[o] } else { v };
            }
        }
    }
    fn output_row(&self, src: &[f32], r: usize, dst: &mut [f32]) {
        let w = self.cfg.width as usize;
        for o in 0..self.cfg.channels as usize {
            for (x, d) in dst[o * w..(o + 1) * w].iter_mut().enumerate() {
                *d = self.acc(3, src, r, x, o);
            }
        }
    }
    fn uses_offsets(&self) -> bool {
        false
    }
}
