//! The host's int8 TinyUNet executor (feature `fast`): the integers of the planned executor,
//! and so of the microcontroller, at a workstation's speed, for sampling and evaluating int8
//! models on the host. The convs run the 16-bit pair kernels of [`crate::kernels::int8_pairs`]
//! (AVX2 / AVX-512 VNNI where the CPU has them); requantization and the time offsets are the
//! planned executor's own functions. The up-sampling blocks' up-sampled channels go through
//! the up-sampling phases (4/9 of their multiply-adds).

use alloc::vec;
use alloc::vec::Vec;

use crate::diffusion::driver::{self, Network, OutputSink};
use crate::diffusion::GuidanceInterval;
use crate::error::{check_len, Error, Result};
pub use crate::kernels::int8_pairs::Int8Kernel;
use crate::kernels::int8_pairs::{
    conv_rows, ConvShape, Input, Layout, PackedConv, LANES, MAX_VECTORS,
};
use crate::nets::tiny_unet::int8::{widest, Int8TinyUNet, TimeScratch, TinyQConv};

/// A conv's file tensors and its weights laid out as pairs.
struct Layer<'a> {
    conv: TinyQConv<'a>,
    packed: PackedConv,
}

impl<'a> Layer<'a> {
    fn new(conv: TinyQConv<'a>, up_c: usize) -> Self {
        let shape = ConvShape {
            in_c: conv.in_c,
            out_c: conv.out_c,
            stride: conv.stride,
        };
        let packed = PackedConv::new(shape, up_c, |o, c, k| conv.tap(o, c, k));
        Self { conv, packed }
    }
}

/// The host's int8 TinyUNet executor over an [`Int8TinyUNet`] (the file's tensors borrowed):
/// the planned executor's integers, computed with the weights laid out once as 16-bit pairs
/// and AVX2 multiply-adds where the CPU has them (see the module's notes). Owns its scratch
/// (every activation map and the laid-out input of the widest layer), so one per thread.
pub struct FastInt8TinyUNet<'a> {
    net: Int8TinyUNet<'a>,
    /// The convs in forward order: enc0, down1, down2, mid, mid1 …, up2, up1, out.
    convs: Vec<Layer<'a>>,
    kernel: Int8Kernel,
    /// Activation maps: x, s1, s2, two quarter-resolution maps, u2, u1.
    maps: [Vec<i8>; 7],
    rows: Vec<u32>,
    emb: Vec<f32>,
    hidden: Vec<f32>,
    temb: Vec<f32>,
    offsets: Vec<i32>,
    eps: Vec<f32>,
}

impl<'a> FastInt8TinyUNet<'a> {
    /// Lays out `net`'s weights; runs the fastest kernel the CPU has ([`Int8Kernel::best`]).
    /// Errors for images wider than
    /// 32 columns (an output row is at most four vectors).
    pub fn new(net: Int8TinyUNet<'a>) -> Result<Self> {
        let cfg = *net.config();
        if cfg.width as usize > LANES * MAX_VECTORS {
            return Err(Error::InvalidConfig(
                "the host int8 executor takes images up to 32 columns wide",
            ));
        }
        let [enc0, down1, down2, mid, up2, up1, out] = net.layers;
        let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
        let mut convs: Vec<Layer<'a>> = [enc0, down1, down2, mid]
            .into_iter()
            .chain(net.extra_mid().copied())
            .map(|l| Layer::new(l, 0))
            .collect();
        convs.extend([(up2, w3), (up1, w2), (out, 0)].map(|(l, up_c)| Layer::new(l, up_c)));
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let maps = [
            cfg.image_len(),
            w1 * h * w,
            w2 * (h / 2) * (w / 2),
            w3 * (h / 4) * (w / 4),
            w3 * (h / 4) * (w / 4),
            w2 * (h / 2) * (w / 2),
            w1 * h * w,
        ]
        .map(|n| vec![0i8; n]);
        let sizes = [(h, w), (h, w), (h / 2, w / 2)];
        let mut longest = 0;
        for (k, pc) in convs.iter().enumerate() {
            let (in_h, in_w) = match k {
                0..=2 => sizes[k],
                _ if k == convs.len() - 3 => (h / 2, w / 2),
                _ if k >= convs.len() - 2 => (h, w),
                _ => (h / 4, w / 4),
            };
            longest = longest.max(Layout::new(&pc.packed, in_h, in_w).len());
        }
        Ok(Self {
            net,
            convs,
            kernel: Int8Kernel::best(),
            maps,
            rows: vec![0; longest],
            emb: vec![0.0; cfg.emb_dim as usize],
            hidden: vec![0.0; cfg.temb_dim as usize],
            temb: vec![0.0; cfg.temb_dim as usize],
            offsets: vec![0; widest(&cfg)],
            eps: vec![0.0; cfg.image_len()],
        })
    }

    /// The network.
    pub fn net(&self) -> &Int8TinyUNet<'a> {
        &self.net
    }

    /// Computes for `class` from now on (`None`: "no class"); errors as
    /// [`Int8TinyUNet::with_class`] does.
    pub fn set_class(&mut self, class: Option<u32>) -> Result<()> {
        self.net = self.net.with_class(class)?;
        Ok(())
    }

    /// The kernel that runs.
    pub fn kernel(&self) -> Int8Kernel {
        self.kernel
    }

    /// Runs `kernel` from now on (the integers are the same); errors where the CPU lacks its
    /// instructions.
    pub fn set_kernel(&mut self, kernel: Int8Kernel) -> Result<()> {
        self.kernel = kernel.checked()?;
        Ok(())
    }

    /// ε (or v) for `x` at time input `t_in` into `eps`: the integers of
    /// [`Int8TinyUNet::forward_planned`], bit for bit.
    pub fn forward(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        let cfg = *self.net.config();
        check_len("input image", cfg.image_len(), x.len())?;
        check_len("output image", cfg.image_len(), eps.len())?;
        self.net.time_embedding(
            t_in,
            &mut TimeScratch {
                emb: &mut self.emb,
                hidden: &mut self.hidden,
                temb: &mut self.temb,
                offsets: &mut self.offsets,
                row: &mut [],
            },
        )?;
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let [_, w2, w3] = cfg.widths.map(|v| v as usize);
        let [xq, s1, s2, qa, qb, u2, u1] = &mut self.maps;
        self.net.quantize_input(x, xq);
        let n = self.convs.len();
        let (convs, temb, kernel) = (&self.convs, &self.temb, self.kernel);
        let (rows, offs) = (&mut self.rows, &mut self.offsets);
        let mut run = |k: usize, input: Input<'_>, size, dst: Dst<'_>| {
            conv_layer(&convs[k], temb, offs, input, size, dst, rows, kernel)
        };
        run(0, Input::Plain(xq), (h, w), Dst::Int8(s1));
        run(1, Input::Plain(s1), (h, w), Dst::Int8(s2));
        run(2, Input::Plain(s2), (h / 2, w / 2), Dst::Int8(qa));
        let (mut cur, mut spare) = (qa, qb);
        for k in 3..n - 3 {
            run(k, Input::Plain(cur), (h / 4, w / 4), Dst::Int8(spare));
            core::mem::swap(&mut cur, &mut spare);
        }
        let up = Input::Up {
            up: cur,
            up_c: w3,
            skip: s2,
        };
        run(n - 3, up, (h / 2, w / 2), Dst::Int8(u2));
        let up = Input::Up {
            up: u2,
            up_c: w2,
            skip: s1,
        };
        run(n - 2, up, (h, w), Dst::Int8(u1));
        run(n - 1, Input::Plain(u1), (h, w), Dst::F32(eps));
        Ok(())
    }
}

/// Where a layer writes: a ReLU block's int8 map, or `out`'s dequantized f32.
enum Dst<'d> {
    Int8(&'d mut [i8]),
    F32(&'d mut [f32]),
}

/// One conv layer from `input` (`in_h × in_w`) into `dst` (`[out_c, out_h, out_w]`).
#[allow(clippy::too_many_arguments)]
fn conv_layer(
    layer: &Layer<'_>,
    temb: &[f32],
    offsets: &mut [i32],
    input: Input<'_>,
    size: (usize, usize),
    dst: Dst<'_>,
    rows: &mut [u32],
    kernel: Int8Kernel,
) {
    let (conv, pc) = (&layer.conv, &layer.packed);
    let out_w = size.1 / conv.stride;
    let plane = size.0 / conv.stride * out_w;
    let zp = conv.input.zero_point;
    match dst {
        Dst::Int8(dst) => {
            conv.time_offsets(temb, offsets);
            let out_q = conv.out.unwrap_or(conv.input);
            conv_rows(pc, input, zp, size, rows, kernel, |o, y, acc| {
                let start = conv.bias.get(o).saturating_add(offsets[o]);
                let r = conv.requantizer(o, out_q);
                let row = &mut dst[o * plane + y * out_w..][..out_w];
                for (d, &a) in row.iter_mut().zip(acc) {
                    *d = r.apply(start.wrapping_add(a));
                }
            });
        }
        Dst::F32(dst) => conv_rows(pc, input, zp, size, rows, kernel, |o, y, acc| {
            let (start, unit) = (conv.bias.get(o), conv.bias_scale.get(o));
            let row = &mut dst[o * plane + y * out_w..][..out_w];
            for (d, &a) in row.iter_mut().zip(acc) {
                *d = start.wrapping_add(a) as f32 * unit;
            }
        }),
    }
}

impl Network for FastInt8TinyUNet<'_> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }

    /// ε of each row handed over as the planned executor hands it (`[c][W]` rows in order),
    /// so guided sampling and the samplers see the same calls.
    fn output(&mut self, x: &mut [f32], t_in: f32, sink: &mut dyn OutputSink) -> Result<()> {
        let mut eps = core::mem::take(&mut self.eps);
        let result = self.forward(x, t_in, &mut eps).and_then(|()| {
            let cfg = self.net.config();
            let (c, h, w) = (
                cfg.channels as usize,
                cfg.height as usize,
                cfg.width as usize,
            );
            driver::output_by_rows(&eps, (c, h, w), x, sink)
        });
        self.eps = eps;
        result
    }
}

/// Autoguided sampling with two host executors (`guide + w·(model − guide)`), as
/// [`crate::tiny_unet::planned::PlannedGuided`] computes it on the device.
pub struct FastInt8Guided<'n, 'a> {
    model: &'n mut FastInt8TinyUNet<'a>,
    guide: &'n mut FastInt8TinyUNet<'a>,
    weight: f32,
    interval: GuidanceInterval,
    guide_out: Vec<f32>,
}

impl<'n, 'a> FastInt8Guided<'n, 'a> {
    /// `model` guided by `guide` with weight `weight`: errors when they draw images of another
    /// size, or the weight is not finite.
    pub fn new(
        model: &'n mut FastInt8TinyUNet<'a>,
        guide: &'n mut FastInt8TinyUNet<'a>,
        weight: f32,
    ) -> Result<Self> {
        let (c, g) = (model.net.config(), guide.net.config());
        if (c.channels, c.height, c.width) != (g.channels, g.height, g.width) {
            return Err(Error::InvalidConfig(
                "the guide draws images of another size than the model",
            ));
        }
        if !weight.is_finite() {
            return Err(Error::InvalidConfig("guidance weight must be finite"));
        }
        let guide_out = vec![0.0; c.image_len()];
        Ok(Self {
            model,
            guide,
            weight,
            interval: GuidanceInterval::ALWAYS,
            guide_out,
        })
    }

    /// Guided only at the steps `interval` holds, as
    /// [`PlannedGuided::with_interval`](crate::tiny_unet::planned::PlannedGuided::with_interval).
    pub fn with_interval(mut self, interval: GuidanceInterval) -> Self {
        self.interval = interval;
        self
    }
}

impl Network for FastInt8Guided<'_, '_> {
    fn image_len(&self) -> usize {
        self.model.image_len()
    }

    fn output(&mut self, x: &mut [f32], t_in: f32, sink: &mut dyn OutputSink) -> Result<()> {
        let (model, guide) = (&mut *self.model, &mut *self.guide);
        if !self.interval.contains(t_in) {
            return model.output(x, t_in, sink);
        }
        driver::guided_output(
            &mut (),
            x,
            &mut self.guide_out,
            self.weight,
            sink,
            |_, x, s| guide.output(x, t_in, s),
            |_, x, s| model.output(x, t_in, s),
        )
    }
}

#[cfg(test)]
mod tests;
