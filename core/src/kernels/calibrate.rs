//! Calibration statistics shared by the post-training quantizers: how an activation range is
//! chosen from the values a calibration run saw (min/max, percentiles, or the range that
//! minimises the int8 rounding error).

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::diffusion::ReferenceNet;
use crate::error::Result;

use crate::kernels::quant::ActQuant;

/// How an activation range is chosen from the calibration values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeMethod {
    /// The smallest and largest value seen.
    MinMax,
    /// The given lower and upper percentiles (e.g. 0.01 and 99.99) of a fixed-stride
    /// subsample of the values seen.
    Percentile(f32),
    /// The range that minimises the mean squared quantization error (clipping plus rounding)
    /// of the values seen, searched over clipping thresholds.
    Mse,
    /// The ranges that minimise the mean squared error of the network's output ε over the
    /// calibration inputs ([`QuantPlan`] only): starting from [`RangeMethod::Mse`], each
    /// tensor in turn (input first) takes the clipping fraction of its observed range that
    /// gives the simulated int8 network the smallest ε error. A tensor's own MSE ignores how
    /// strongly the network amplifies its errors; the input's rounding, for one, is amplified
    /// at small t, where ε must be read from a nearly clean image. (Other planners fall back
    /// to [`RangeMethod::Mse`].)
    EpsMse,
}

/// A network's f32 reference pass over its own buffers, recording the ranges of its input
/// (tensor 0) and of parts of its workspace (tensors 1, 2, …) on calibration inputs.
pub(crate) struct Observer<Net, const N: usize> {
    pub(crate) net: Net,
    workspace: Vec<f32>,
    out: Vec<f32>,
    pub(crate) stats: RangeStats<N>,
}

impl<Net: ReferenceNet, const N: usize> Observer<Net, N> {
    /// Buffers for `net`; every `stride`-th value is kept for percentiles.
    pub(crate) fn new(net: Net, stride: usize) -> Self {
        Self {
            workspace: vec![0.0; net.workspace_len()],
            out: vec![0.0; net.image_len()],
            net,
            stats: RangeStats::new(stride),
        }
    }

    /// Runs the network on `x` at time input `t_in` and records `x` and the workspace
    /// ranges `parts`, in that order.
    pub(crate) fn observe(
        &mut self,
        x: &[f32],
        t_in: f32,
        parts: impl IntoIterator<Item = Range<usize>>,
    ) -> Result<()> {
        self.net
            .forward_reference(x, t_in, &mut self.workspace, &mut self.out)?;
        self.stats.record(0, x);
        for (k, r) in parts.into_iter().enumerate() {
            self.stats.record(k + 1, &self.workspace[r]);
        }
        Ok(())
    }
}

/// Minimum, maximum and a fixed-stride subsample of the values of each of `N` activation
/// tensors (one counter over all of them picks the subsample).
#[derive(Debug, Clone)]
pub(crate) struct RangeStats<const N: usize = 4> {
    pub(crate) min: [f32; N],
    pub(crate) max: [f32; N],
    pub(crate) samples: [Vec<f32>; N],
    pub(crate) stride: usize,
    pub(crate) counter: usize,
}

impl<const N: usize> RangeStats<N> {
    pub(crate) fn new(stride: usize) -> Self {
        Self {
            min: [f32::INFINITY; N],
            max: [f32::NEG_INFINITY; N],
            samples: core::array::from_fn(|_| Vec::new()),
            stride: stride.max(1),
            counter: 0,
        }
    }

    pub(crate) fn record(&mut self, k: usize, values: &[f32]) {
        for &v in values {
            self.min[k] = self.min[k].min(v);
            self.max[k] = self.max[k].max(v);
            self.counter += 1;
            if self.counter.is_multiple_of(self.stride) {
                self.samples[k].push(v);
            }
        }
    }

    /// The chosen range of every tensor ([`RangeStats::range`]).
    pub(crate) fn ranges(&self, method: RangeMethod) -> [(f32, f32); N] {
        core::array::from_fn(|k| self.range(k, method))
    }

    /// The chosen range of tensor `k`: the observed extremes when no value was subsampled.
    pub(crate) fn range(&self, k: usize, method: RangeMethod) -> (f32, f32) {
        let v = &self.samples[k];
        if v.is_empty() {
            return (self.min[k], self.max[k]);
        }
        match method {
            RangeMethod::MinMax => (self.min[k], self.max[k]),
            RangeMethod::Percentile(p) => {
                let mut v = v.clone();
                v.sort_by(|a, b| a.total_cmp(b));
                let at = |q: f32| {
                    let i = libm::roundf((q / 100.0) * (v.len() - 1) as f32) as usize;
                    v[i.min(v.len() - 1)]
                };
                (at(100.0 - p), at(p))
            }
            RangeMethod::Mse | RangeMethod::EpsMse => self.mse_range(k),
        }
    }

    /// The MSE-optimal range of tensor `k`'s subsample within its observed extremes.
    pub(crate) fn mse_range(&self, k: usize) -> (f32, f32) {
        mse_range(&self.samples[k], self.min[k], self.max[k])
    }
}

/// Candidate clipping fractions of the range searches: 1, 1 − 1/STEPS, …, 1/STEPS of the
/// observed extreme (the grid spacing bounds how far the chosen threshold is from the best).
const RANGE_SEARCH_STEPS: usize = 100;

/// Mean squared error of quantizing `values` with `q` (clipping included).
fn quant_mse(values: &[f32], q: &ActQuant) -> f64 {
    let sum: f64 = values
        .iter()
        .map(|&v| {
            let d = (q.dequantize(q.quantize(v)) - v) as f64;
            d * d
        })
        .sum();
    sum / values.len().max(1) as f64
}

/// The `[lo, hi]` (lo ≤ 0 ≤ hi, as [`ActQuant::from_range`] widens to) that minimises the
/// quantization MSE of `values`, searched over clipping fractions of `min` and `max`: first
/// each end with the other at its extreme, then the upper end again with the lower fixed
/// (coordinate descent; the error is close to separable because the two tails rarely share
/// a value).
pub(crate) fn mse_range(values: &[f32], min: f32, max: f32) -> (f32, f32) {
    let (lo0, hi0) = (min.min(0.0), max.max(0.0));
    let frac = |i: usize| (RANGE_SEARCH_STEPS - i) as f32 / RANGE_SEARCH_STEPS as f32;
    let best_of = |cands: &mut dyn Iterator<Item = (f32, f32)>| -> (f32, f32) {
        let mut best = ((lo0, hi0), f64::INFINITY);
        for (lo, hi) in cands {
            let e = quant_mse(values, &ActQuant::from_range(lo, hi));
            if e < best.1 {
                best = ((lo, hi), e);
            }
        }
        best.0
    };
    let (_, hi) = best_of(&mut (0..RANGE_SEARCH_STEPS).map(|i| (lo0, hi0 * frac(i))));
    if lo0 == 0.0 {
        return (0.0, hi);
    }
    let (lo, _) = best_of(&mut (0..RANGE_SEARCH_STEPS).map(|i| (lo0 * frac(i), hi)));
    best_of(&mut (0..RANGE_SEARCH_STEPS).map(|i| (lo, hi0 * frac(i))))
}

/// The MSE-optimal range of `values` ([`RangeMethod::Mse`]).
pub fn mse_range_of(values: &[f32]) -> (f32, f32) {
    let (min, max) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if values.is_empty() {
        return (0.0, 0.0);
    }
    mse_range(values, min, max)
}

/// Subsampling stride of the calibration values kept for percentiles and MSE searches.
pub const CALIBRATION_STRIDE: usize = 13;
