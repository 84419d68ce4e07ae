//! The one sampling loop. [`sample_batch`] owns the walk over a sampler's plan: it fills the
//! images with seeded noise, then for each step asks a [`Network`] for its output at x_t and
//! applies the step (DDPM or DDIM, [`crate::diffusion::steps`]; DPM-Solver++(2M),
//! [`crate::diffusion::dpm_solver`], and UniPC, [`crate::diffusion::unipc`], with a
//! caller-owned history) to the image as that output
//! arrives. A network hands its output to an [`OutputSink`] whole, image by image (the
//! [`Denoiser`]s, the host's batches), or row by row (the int8 executors that never hold the
//! whole output: SimpleUNet streaming, TinyUNet planned), so a new sampler written here runs
//! on every executor, the firmware's included.

use crate::diffusion::denoiser::Denoiser;
use crate::diffusion::dpm_solver::{dpm_step, DpmStep};
use crate::diffusion::noise::GaussianNoise;
use crate::diffusion::plan::Plan;
use crate::diffusion::schedule::Schedule;
use crate::diffusion::steps::{ddim_step, ddpm_step, SamplerConfig};
use crate::diffusion::unipc::{unipc_step, UniPcStep};
use crate::error::{check_len, Error, Result};

/// Receives a network's output while one sampler step runs.
pub trait OutputSink {
    /// The whole output for image `i` of the batch `x` (`[c][h][w]`).
    fn image(&mut self, x: &mut [f32], i: usize, out: &[f32]) -> Result<()>;
    /// Row `y` of the output of a one-image batch `x`, every channel (`[c][width]`). The
    /// network must have read every row of `x` it still needs before it hands over row `y`:
    /// the sink may overwrite rows `≤ y`.
    fn row(&mut self, x: &mut [f32], y: usize, width: usize, out_row: &[f32]) -> Result<()>;
}

/// What the driver steps: a network evaluated on a batch of images (`x.len()` a multiple of
/// [`Network::image_len`]) at network time input `t_in` (= t/T), handing its output (ε, or v
/// for a network whose schedule says so) to `sink`.
pub trait Network {
    /// Elements of one image.
    fn image_len(&self) -> usize;
    /// Evaluates the network on `x` and passes every part of the output to `sink`.
    fn output(&mut self, x: &mut [f32], t_in: f32, sink: &mut dyn OutputSink) -> Result<()>;
}

/// A [`Denoiser`] as a [`Network`]: each image's whole output goes through `eps` (one image of
/// scratch).
pub struct WholeImages<'b, D: ?Sized> {
    den: &'b mut D,
    eps: &'b mut [f32],
}

impl<'b, D: Denoiser + ?Sized> WholeImages<'b, D> {
    /// Checks that `eps` holds one image.
    pub fn new(den: &'b mut D, eps: &'b mut [f32]) -> Result<Self> {
        check_len("eps", den.image_len(), eps.len())?;
        Ok(Self { den, eps })
    }
}

impl<D: Denoiser + ?Sized> Network for WholeImages<'_, D> {
    fn image_len(&self) -> usize {
        self.den.image_len()
    }
    fn output(&mut self, x: &mut [f32], t_in: f32, sink: &mut dyn OutputSink) -> Result<()> {
        let len = self.den.image_len();
        for i in 0..x.len() / len {
            self.den
                .predict_noise(&x[i * len..][..len], t_in, self.eps)?;
            sink.image(x, i, self.eps)?;
        }
        Ok(())
    }
}

/// An [`OutputSink`] that collects the output of one image whole into `out` (`[c][h][w]`), for
/// forward passes outside a sampler; it does not touch the image.
pub struct Collect<'e> {
    /// The output.
    pub out: &'e mut [f32],
}

impl OutputSink for Collect<'_> {
    fn image(&mut self, _x: &mut [f32], i: usize, out: &[f32]) -> Result<()> {
        self.out[i * out.len()..][..out.len()].copy_from_slice(out);
        Ok(())
    }
    fn row(&mut self, _x: &mut [f32], y: usize, width: usize, out_row: &[f32]) -> Result<()> {
        let h = self.out.len() / out_row.len();
        for (ch, part) in out_row.chunks(width).enumerate() {
            self.out[(ch * h + y) * width..][..width].copy_from_slice(part);
        }
        Ok(())
    }
}

/// Hands the whole output `out` (`[c][h][w]`) of the one-image batch `x` to `sink` row by row
/// (`[c][w]` rows in order, as the row-streaming executors hand them over), so a whole-map
/// executor makes the same calls as a streamed one.
#[cfg(feature = "alloc")]
pub fn output_by_rows(
    out: &[f32],
    (c, h, w): (usize, usize, usize),
    x: &mut [f32],
    sink: &mut dyn OutputSink,
) -> Result<()> {
    check_len("output", c * h * w, out.len())?;
    let mut row = alloc::vec![0.0f32; c * w];
    for y in 0..h {
        for (ch, part) in row.chunks_exact_mut(w).enumerate() {
            part.copy_from_slice(&out[(ch * h + y) * w..][..w]);
        }
        sink.row(x, y, w, &row)?;
    }
    Ok(())
}

/// The coefficients of a multistep solver's step.
enum Multistep {
    Dpm(DpmStep),
    UniPc(UniPcStep),
}

/// Stores a guide network's output for [`guided_output`]: image `i` at `i·len`, row `y` at
/// `y·row_len` (each row's channels together), the order in which the model's output will
/// arrive; it does not touch the image.
struct GuideStore<'e> {
    out: &'e mut [f32],
}

impl OutputSink for GuideStore<'_> {
    fn image(&mut self, _x: &mut [f32], i: usize, out: &[f32]) -> Result<()> {
        let part = self
            .out
            .get_mut(i * out.len()..(i + 1) * out.len())
            .ok_or(Error::InvalidConfig("guide output shorter than the batch"))?;
        part.copy_from_slice(out);
        Ok(())
    }
    fn row(&mut self, _x: &mut [f32], y: usize, _width: usize, out_row: &[f32]) -> Result<()> {
        let n = out_row.len();
        let part = self
            .out
            .get_mut(y * n..(y + 1) * n)
            .ok_or(Error::InvalidConfig("guide output shorter than the image"))?;
        part.copy_from_slice(out_row);
        Ok(())
    }
}

/// Mixes the model's output with the stored guide's, `guide + w·(model − guide)` in f32 as
/// [`crate::diffusion::guide_output`] does, in place of the stored guide output, and hands the
/// mix on.
struct GuideMix<'e> {
    guide: &'e mut [f32],
    weight: f32,
    inner: &'e mut dyn OutputSink,
}

/// `guide[at..at + out.len()] ← guide + w·(out − guide)`, returned.
fn mix<'g>(guide: &'g mut [f32], weight: f32, at: usize, out: &[f32]) -> Result<&'g [f32]> {
    let g = guide
        .get_mut(at..at + out.len())
        .ok_or(Error::InvalidConfig(
            "guide output shorter than the model's",
        ))?;
    for (gv, &o) in g.iter_mut().zip(out) {
        *gv += weight * (o - *gv);
    }
    Ok(g)
}

impl OutputSink for GuideMix<'_> {
    fn image(&mut self, x: &mut [f32], i: usize, out: &[f32]) -> Result<()> {
        let mixed = mix(self.guide, self.weight, i * out.len(), out)?;
        self.inner.image(x, i, mixed)
    }
    fn row(&mut self, x: &mut [f32], y: usize, width: usize, out_row: &[f32]) -> Result<()> {
        let mixed = mix(self.guide, self.weight, y * out_row.len(), out_row)?;
        self.inner.row(x, y, width, mixed)
    }
}

/// Autoguidance over two passes of any networks (Karras et al. 2024): `guide` hands its
/// output at x_t to a sink that stores it in `guide_out` (as long as `x`), then `model` hands
/// its output to one that mixes it, `guide + w·(model − guide)` in f32 as
/// [`crate::diffusion::guide_output`] does, and passes the mix to `sink` — whole images or row
/// by row, as the networks hand them over, so a row-streaming executor needs one image of f32
/// for the guide and no second arena: both passes get `ctx` (their shared workspace) in turn.
/// Both networks must hand over their output the same way (whole, or rows of one width).
pub fn guided_output<C: ?Sized>(
    ctx: &mut C,
    x: &mut [f32],
    guide_out: &mut [f32],
    weight: f32,
    sink: &mut dyn OutputSink,
    guide: impl FnOnce(&mut C, &mut [f32], &mut dyn OutputSink) -> Result<()>,
    model: impl FnOnce(&mut C, &mut [f32], &mut dyn OutputSink) -> Result<()>,
) -> Result<()> {
    check_len("guide output", x.len(), guide_out.len())?;
    if !weight.is_finite() {
        return Err(Error::InvalidConfig("guidance weight must be finite"));
    }
    guide(ctx, x, &mut GuideStore { out: guide_out })?;
    let mut mix = GuideMix {
        guide: guide_out,
        weight,
        inner: sink,
    };
    model(ctx, x, &mut mix)
}

/// Applies step `t → prev` of a sampler to the parts of the images as they arrive; image `i`
/// draws its noise from `noise[i]`; a multistep solver's step reads and updates its history
/// (`[parts][n][image]`: DPM-Solver++ the x0 history, UniPC that and then the corrector's
/// fixed part, each as long as the batch).
struct Stepper<'s, const M: usize> {
    sched: &'s Schedule<M>,
    cfg: &'s SamplerConfig,
    t: u32,
    prev: Option<u32>,
    noise: &'s mut [GaussianNoise],
    multistep: Option<Multistep>,
    history: &'s mut [f32],
    batch_len: usize,
    image_len: usize,
}

const SHORT_HISTORY: Error = Error::InvalidConfig("sampler history shorter than the batch");

impl<const M: usize> Stepper<'_, M> {
    /// Steps `x`, the part of image `i` that starts at element `at` of it.
    fn apply(&mut self, i: usize, at: usize, x: &mut [f32], out: &[f32]) -> Result<()> {
        let start = i * self.image_len + at;
        let pred = self.sched.config().prediction;
        match &self.multistep {
            Some(Multistep::Dpm(step)) => {
                let history = self
                    .history
                    .get_mut(start..start + x.len())
                    .ok_or(SHORT_HISTORY)?;
                return dpm_step(step, pred, x, out, history);
            }
            Some(Multistep::UniPc(step)) => {
                let (m, c) = self.history.split_at_mut(self.batch_len);
                let m = m.get_mut(start..start + x.len()).ok_or(SHORT_HISTORY)?;
                let c = c.get_mut(start..start + x.len()).ok_or(SHORT_HISTORY)?;
                return unipc_step(step, pred, x, out, m, c);
            }
            None => {}
        }
        let noise = &mut self.noise[i];
        let z = |_: usize| noise.next_gaussian();
        match self.cfg {
            SamplerConfig::Ddpm(c) => ddpm_step(self.sched, c, self.t, x, out, z),
            SamplerConfig::Ddim(c) => ddim_step(self.sched, c, self.t, self.prev, x, out, z),
            SamplerConfig::DpmSolver2M(_) | SamplerConfig::UniPc(_) => Err(Error::InvalidConfig(
                "multistep solver step without its coefficients",
            )),
        }
    }
}

impl<const M: usize> OutputSink for Stepper<'_, M> {
    fn image(&mut self, x: &mut [f32], i: usize, out: &[f32]) -> Result<()> {
        let x = x
            .get_mut(i * out.len()..(i + 1) * out.len())
            .ok_or(Error::InvalidConfig("image index past the batch"))?;
        self.apply(i, 0, x, out)
    }
    fn row(&mut self, x: &mut [f32], y: usize, width: usize, out_row: &[f32]) -> Result<()> {
        let h = x.len() / out_row.len();
        for (ch, part) in out_row.chunks(width).enumerate() {
            let at = (ch * h + y) * width;
            self.apply(0, at, &mut x[at..][..width], part)?;
        }
        Ok(())
    }
}

/// Step `k` of `plan` for the batch `x`: evaluates the network at x_t and updates `x` in place
/// as the output arrives; image `i` draws its noise from `noise[i]`. Noise is drawn in element
/// order for whole images; for a network that hands over rows, in row order (all channels of
/// row 0, then row 1, …), which is the same order when the image has one channel. A
/// multistep solver's step reads and writes `history` (`cfg.history_len(x.len())` long:
/// [`SamplerConfig::history_len`]; empty for DDPM and DDIM).
#[allow(clippy::too_many_arguments)]
pub fn step<N: Network + ?Sized, const M: usize>(
    net: &mut N,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    plan: &Plan,
    k: usize,
    noise: &mut [GaussianNoise],
    x: &mut [f32],
    history: &mut [f32],
) -> Result<()> {
    let (t, prev) = plan
        .step(k)
        .ok_or(Error::InvalidConfig("step index past the plan"))?;
    let multistep = match plan {
        Plan::Dpm(p) => {
            check_len("DPM-Solver history", x.len(), history.len())?;
            Some(Multistep::Dpm(p.step(sched, k)?))
        }
        Plan::UniPc(p) => {
            check_len("UniPC history", 2 * x.len(), history.len())?;
            Some(Multistep::UniPc(p.step(sched, k)?))
        }
        Plan::Ddpm { .. } | Plan::Ddim(_) => None,
    };
    let t_in = t as f32 / sched.len() as f32;
    let mut sink = Stepper {
        sched,
        cfg,
        t,
        prev,
        noise,
        multistep,
        history,
        batch_len: x.len(),
        image_len: net.image_len(),
    };
    net.output(x, t_in, &mut sink)
}

/// Draws `noise.len()` images into `x` (`[n][image]`): fills image `i` with N(0, 1) noise from
/// `noise[i]`, runs every step of the sampler and leaves the final images (nominally in
/// [−1, 1], not clamped) in `x`. The multistep solvers keep a history: use
/// [`sample_batch_with_history`].
pub fn sample_batch<N: Network + ?Sized, const M: usize>(
    net: &mut N,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    noise: &mut [GaussianNoise],
    x: &mut [f32],
) -> Result<()> {
    sample_batch_with_history(net, sched, cfg, noise, x, &mut [])
}

/// [`sample_batch`] with the history a multistep sampler keeps,
/// `history.len() == cfg.history_len(x.len())` (caller-owned): for DPM-Solver++(2M) the previous
/// step's x0 per element (on a device, one more image of f32), for UniPC that and the
/// corrector's fixed part (two images); empty for DDPM and DDIM.
pub fn sample_batch_with_history<N: Network + ?Sized, const M: usize>(
    net: &mut N,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    noise: &mut [GaussianNoise],
    x: &mut [f32],
    history: &mut [f32],
) -> Result<()> {
    let len = net.image_len();
    check_len("image", noise.len() * len, x.len())?;
    let plan = Plan::new(cfg, sched.len() as u32)?;
    check_len(
        "sampler history (DPM-Solver++: one per image element; UniPC: two; none for DDPM and DDIM)",
        cfg.history_len(x.len()),
        history.len(),
    )?;
    for (img, g) in x.chunks_exact_mut(len).zip(noise.iter_mut()) {
        g.fill(img);
    }
    for k in 0..plan.len() {
        step(net, sched, cfg, &plan, k, noise, x, history)?;
    }
    Ok(())
}

/// One step of `plan` (step index `k`) for a [`Denoiser`]: evaluates the network on `x` into
/// `eps`, then updates `x` in place, drawing noise from `noise` as the step needs it.
#[allow(clippy::too_many_arguments)]
pub fn sample_step<D: Denoiser + ?Sized, const M: usize>(
    den: &mut D,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    plan: &Plan,
    k: usize,
    noise: &mut GaussianNoise,
    x: &mut [f32],
    eps: &mut [f32],
) -> Result<()> {
    check_len("image", den.image_len(), x.len())?;
    let mut net = WholeImages::new(den, eps)?;
    let noise = core::slice::from_mut(noise);
    step(&mut net, sched, cfg, plan, k, noise, x, &mut [])
}

/// Draws one sample with a [`Denoiser`]: fills `x` with N(0, 1) noise from `seed`, runs every
/// step of the sampler and leaves the final image (nominally in [−1, 1], not clamped) in `x`.
/// `eps` is scratch of the same length.
pub fn sample<D: Denoiser + ?Sized, const M: usize>(
    den: &mut D,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    seed: u64,
    x: &mut [f32],
    eps: &mut [f32],
) -> Result<()> {
    check_len("image", den.image_len(), x.len())?;
    let noise = &mut [GaussianNoise::new(seed)];
    sample_batch(&mut WholeImages::new(den, eps)?, sched, cfg, noise, x)
}
