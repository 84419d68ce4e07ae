//! [`Calibrator`]: activation ranges of an f32 SimpleUNet on calibration inputs, and
//! [`quantize_simple_unet`], the plain quantizer that writes them and per-channel weight scales.

use alloc::vec::Vec;

use crate::diffusion::schedule::ScheduleConfig;
use crate::error::Result;
use crate::kernels::calibrate::{Observer, RangeMethod};
use crate::nets::simple_unet::ptq::writer::{act_quants, weight_scales, write_int8, WeightClip};
use crate::nets::simple_unet::{SimpleUNet, SimpleUNetConfig};

/// The four activation tensors the int8 network stores.
pub const ACTIVATIONS: [&str; 4] = ["input", "enc1", "enc2", "dec1"];

/// Records activation ranges of an f32 SimpleUNet on calibration inputs, and keeps the inputs
/// themselves for [`QuantPlan`](crate::nets::simple_unet::ptq::QuantPlan).
pub struct Calibrator<'w> {
    pub(crate) obs: Observer<SimpleUNet<'w>, 4>,
    pub(crate) inputs: Vec<f32>,
    pub(crate) t_ins: Vec<f32>,
}

impl<'w> Calibrator<'w> {
    /// A calibrator for `net`; every `stride`-th value is kept for percentiles.
    pub fn new(net: SimpleUNet<'w>, stride: usize) -> Self {
        Self {
            obs: Observer::new(net, stride),
            inputs: Vec::new(),
            t_ins: Vec::new(),
        }
    }

    /// Runs the network on one input (`x` at time input `t_in`) and records its activations.
    pub fn observe(&mut self, x: &[f32], t_in: f32) -> Result<()> {
        let cfg = *self.obs.net.config();
        let plane = cfg.height as usize * cfg.width as usize;
        let (h1, h2) = (cfg.hidden1 as usize, cfg.hidden2 as usize);
        let parts = [
            0..h1 * plane,
            h1 * plane..(h1 + h2) * plane,
            (h1 + h2) * plane..(2 * h1 + h2) * plane,
        ];
        self.obs.observe(x, t_in, parts)?;
        self.inputs.extend_from_slice(x);
        self.t_ins.push(t_in);
        Ok(())
    }

    /// The chosen range of each of [`ACTIVATIONS`].
    pub fn ranges(&self, method: RangeMethod) -> [(f32, f32); 4] {
        self.obs.stats.ranges(method)
    }

    /// The inputs observed so far (concatenated images) and their time inputs.
    pub fn inputs(&self) -> (&[f32], &[f32]) {
        (&self.inputs, &self.t_ins)
    }
}

/// Writes the int8 model file of `net` with activation `ranges` (in [`ACTIVATIONS`] order),
/// weight scales from each output channel's largest magnitude and the f32 biases as they are.
pub fn quantize_simple_unet(
    net: &SimpleUNet<'_>,
    schedule: ScheduleConfig,
    ranges: [(f32, f32); 4],
    note: &str,
) -> Result<Vec<u8>> {
    let cfg: SimpleUNetConfig = *net.config();
    let p = net.params();
    let weights = [p.enc1_w, p.enc2_w, p.dec1_w, p.dec2_w];
    let biases = [p.enc1_b, p.enc2_b, p.dec1_b, p.dec2_b];
    let scales: [Vec<f32>; 4] =
        core::array::from_fn(|l| weight_scales(&cfg, l, weights[l], WeightClip::Max));
    write_int8(
        net,
        schedule,
        note,
        biases,
        &scales,
        act_quants(&ranges, 8),
        8,
    )
}
