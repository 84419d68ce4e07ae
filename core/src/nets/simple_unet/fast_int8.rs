//! The host's int8 SimpleUNet executor (feature `fast`): the integers of the layer-by-layer
//! and row-streaming executors (and so of the microcontroller) at a workstation's speed, for
//! sampling and evaluating int8 SimpleUNet files on the host. Its four 3×3 layers run the
//! 16-bit pair kernels of [`crate::kernels::int8_pairs`] (AVX2 / AVX-512 VNNI where the CPU
//! has them; enc1 multiplies the int16 input, whose values fit the pairs' 16 bits, as the
//! others multiply int8 ones); requantization, the time offsets and the last layer's
//! dequantization are [`QConv`]'s own functions.

use alloc::vec;
use alloc::vec::Vec;

use crate::diffusion::driver::{self, Network, OutputSink};
use crate::error::{check_len, Error, Result};
pub use crate::kernels::int8_pairs::Int8Kernel;
use crate::kernels::int8_pairs::{conv_rows, ConvShape, Input, Layout, PackedConv};
use crate::kernels::int8_pairs::{LANES, MAX_VECTORS};
use crate::nets::simple_unet::int8::{Int8SimpleUNet, QConv, Scratch};

/// The host's int8 SimpleUNet executor over an [`Int8SimpleUNet`] (the file's tensors
/// borrowed): [`Int8SimpleUNet::forward_layerwise`]'s integers, computed with the weights laid
/// out once as 16-bit pairs. Owns its scratch (the three intermediate maps and the laid-out
/// input of the widest layer), so one per thread.
pub struct FastInt8SimpleUNet<'a> {
    net: Int8SimpleUNet<'a>,
    /// enc1, enc2, dec1, dec2.
    packed: [PackedConv; 4],
    kernel: Int8Kernel,
    input: Vec<i16>,
    /// enc1's, enc2's and dec1's outputs.
    maps: [Vec<i8>; 3],
    rows: Vec<u32>,
    hidden: Vec<f32>,
    temb: Vec<f32>,
    offsets: Vec<i32>,
    eps: Vec<f32>,
}

impl<'a> FastInt8SimpleUNet<'a> {
    /// Lays out `net`'s weights; runs the fastest kernel the CPU has ([`Int8Kernel::best`]).
    /// Errors for images wider than 32 columns (an output row is at most four vectors).
    pub fn new(net: Int8SimpleUNet<'a>) -> Result<Self> {
        let cfg = *net.config();
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        if w > LANES * MAX_VECTORS {
            return Err(Error::InvalidConfig(
                "the host int8 executor takes images up to 32 columns wide",
            ));
        }
        let packed = net.layers().map(|l: QConv<'a>| {
            let shape = ConvShape {
                in_c: l.in_c,
                out_c: l.out_c,
                stride: 1,
            };
            PackedConv::new(shape, 0, |o, c, k| l.tap(o, c, k))
        });
        let longest = packed
            .iter()
            .map(|p| Layout::new(p, h, w).len())
            .max()
            .unwrap_or(0);
        let (h1, h2) = (cfg.hidden1 as usize, cfg.hidden2 as usize);
        Ok(Self {
            net,
            packed,
            kernel: Int8Kernel::best(),
            input: vec![0; cfg.image_len()],
            maps: [h1, h2, h1].map(|c| vec![0i8; c * h * w]),
            rows: vec![0; longest],
            hidden: vec![0.0; h2],
            temb: vec![0.0; h2],
            offsets: vec![0; h2],
            eps: vec![0.0; cfg.image_len()],
        })
    }

    /// The network.
    pub fn net(&self) -> &Int8SimpleUNet<'a> {
        &self.net
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

    /// ε for `x` at time input `t_in` into `eps`: the integers of
    /// [`Int8SimpleUNet::forward_layerwise`], bit for bit.
    pub fn forward(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        let cfg = *self.net.config();
        check_len("input image", cfg.image_len(), x.len())?;
        check_len("output image", cfg.image_len(), eps.len())?;
        self.net.time_offsets(
            t_in,
            &mut Scratch {
                acts: &mut [],
                hidden: &mut self.hidden,
                temb: &mut self.temb,
                offsets: &mut self.offsets,
                row: &mut [],
            },
        );
        let quant = self.net.input_quant();
        for (q, &v) in self.input.iter_mut().zip(x) {
            *q = quant.quantize(v);
        }
        let size = (cfg.height as usize, cfg.width as usize);
        let plane = size.0 * size.1;
        let [enc1, enc2, dec1, dec2] = self.net.layers();
        let [p1, p2, p3, p4] = &self.packed;
        let [a1, a2, a3] = &mut self.maps;
        let (rows, kernel, offsets) = (&mut self.rows, self.kernel, &self.offsets);
        // A ReLU layer into its int8 map, `offset(o)` added after the ReLU (enc2's time).
        let mut hidden =
            |l: &QConv<'_>, p, input, dst: &mut [i8], offset: &dyn Fn(usize) -> i32| {
                let out = l.out.unwrap_or(quant.q);
                conv_rows(p, input, l.in_zp, size, rows, kernel, |o, y, acc| {
                    let (bias, off) = (l.bias(o), offset(o));
                    let row = &mut dst[o * plane + y * size.1..][..size.1];
                    for (d, &a) in row.iter_mut().zip(acc) {
                        *d = l.requantize(o, bias.wrapping_add(a), off, out);
                    }
                });
            };
        hidden(enc1, p1, Input::Wide(&self.input), a1, &|_| 0);
        hidden(enc2, p2, Input::Plain(a1), a2, &|o| offsets[o]);
        hidden(dec1, p3, Input::Plain(a2), a3, &|_| 0);
        conv_rows(
            p4,
            Input::Plain(a3),
            dec2.in_zp,
            size,
            rows,
            kernel,
            |o, y, acc| {
                let bias = dec2.bias(o);
                let row = &mut eps[o * plane + y * size.1..][..size.1];
                for (d, &a) in row.iter_mut().zip(acc) {
                    *d = dec2.dequantize(o, bias.wrapping_add(a));
                }
            },
        );
        Ok(())
    }
}

impl Network for FastInt8SimpleUNet<'_> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }

    /// ε of each row handed over as the streaming executor hands it (`[c][W]` rows in order),
    /// so the samplers see the same calls.
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
