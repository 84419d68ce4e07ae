//! Owned, heap-using conveniences for host programs (the trainer, the tests, benchmarks).

use alloc::vec;
use alloc::vec::Vec;

use crate::diffusion::noise::GaussianNoise;
use crate::diffusion::schedule::Schedule;
use crate::diffusion::ScheduleConfig;
use crate::diffusion::{self as sampler, Denoiser, GuidanceInterval, SamplerConfig};
use crate::error::{check_len, Result};
use crate::file::{ModelFile, Precision};
use crate::nets::simple_unet::{self, SimpleUNet};
use crate::nets::tiny_unet::{self, TinyUNet};
use crate::nets::ModelConfig;

/// Which forward implementation a [`HostModel`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The plain-loop reference (the oracle).
    Reference,
    /// The host fast path, [`crate::nets::simple_unet::FastSimpleUNet`] or [`crate::nets::tiny_unet::FastTinyUNet`]
    /// (feature `fast`).
    #[cfg(feature = "fast")]
    Fast,
}

impl Path {
    /// The fastest path compiled in.
    pub fn best() -> Self {
        #[cfg(feature = "fast")]
        return Path::Fast;
        #[cfg(not(feature = "fast"))]
        return Path::Reference;
    }
}

/// The fast path of either architecture.
#[cfg(feature = "fast")]
#[derive(Clone)]
enum FastNet {
    Simple(alloc::boxed::Box<crate::nets::simple_unet::FastSimpleUNet>),
    Tiny(alloc::boxed::Box<crate::nets::tiny_unet::FastTinyUNet>),
}

#[cfg(feature = "fast")]
impl FastNet {
    fn forward_batch(&mut self, x: &[f32], t_in: &[f32], out: &mut [f32]) -> Result<()> {
        match self {
            FastNet::Simple(n) => n.forward_batch(x, t_in, out),
            FastNet::Tiny(n) => n.forward_batch(x, t_in, out),
        }
    }
}

/// A model (SimpleUNet or TinyUNet) loaded from a model file, with owned weights and schedule.
#[derive(Clone)]
pub struct HostModel {
    cfg: ModelConfig,
    schedule_cfg: ScheduleConfig,
    schedule: alloc::boxed::Box<Schedule>,
    params: Vec<f32>,
    workspace: Vec<f32>,
    #[cfg(feature = "fast")]
    fast: FastNet,
    path: Path,
    /// The class a class-conditional TinyUNet computes for (`None`: "no class").
    class: Option<u32>,
    /// The steps at which this model's outputs are guided (guided sampling and inpainting).
    guidance_interval: GuidanceInterval,
}

impl HostModel {
    /// Parses and checks a model file and loads its weights.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_file(&ModelFile::parse(bytes)?)
    }

    /// Loads the weights of an already parsed (and checked) model file.
    pub fn from_file(file: &ModelFile<'_>) -> Result<Self> {
        let header = *file.header();
        if header.precision != Precision::F32 {
            return Err(crate::Error::InvalidConfig(
                "this is an int8 model file; load it with the int8 executor",
            ));
        }
        let cfg = header.model;
        match &cfg {
            ModelConfig::SimpleUNet(c) => simple_unet::check_params(file, c)?,
            ModelConfig::TinyUNet(c) => tiny_unet::check_params(file, c)?,
        }
        let schedule = alloc::boxed::Box::new(Schedule::new(&header.schedule)?);
        let mut params = vec![0.0f32; cfg.param_count()];
        match &cfg {
            ModelConfig::SimpleUNet(c) => simple_unet::load_params(file, c, &mut params)?,
            ModelConfig::TinyUNet(c) => tiny_unet::load_params(file, c, &mut params)?,
        }
        Self::from_parts(cfg, header.schedule, schedule, params)
    }

    /// A model from flat parameters in `state_dict` order; `cfg` is a [`ModelConfig`] or
    /// either architecture's own configuration.
    pub fn from_params(
        cfg: impl Into<ModelConfig>,
        schedule: ScheduleConfig,
        params: Vec<f32>,
    ) -> Result<Self> {
        let sched = alloc::boxed::Box::new(Schedule::new(&schedule)?);
        Self::from_parts(cfg.into(), schedule, sched, params)
    }

    fn from_parts(
        cfg: ModelConfig,
        schedule_cfg: ScheduleConfig,
        schedule: alloc::boxed::Box<Schedule>,
        params: Vec<f32>,
    ) -> Result<Self> {
        // from_flat checks the sizes for the reference path too.
        let workspace_len = match &cfg {
            ModelConfig::SimpleUNet(c) => {
                SimpleUNet::from_flat(*c, &params)?;
                c.workspace_len()
            }
            ModelConfig::TinyUNet(c) => {
                TinyUNet::from_flat(*c, &params)?;
                c.workspace_len()
            }
        };
        #[cfg(feature = "fast")]
        let fast = match &cfg {
            ModelConfig::SimpleUNet(c) => FastNet::Simple(alloc::boxed::Box::new(
                crate::nets::simple_unet::FastSimpleUNet::new(&SimpleUNet::from_flat(*c, &params)?),
            )),
            ModelConfig::TinyUNet(c) => FastNet::Tiny(alloc::boxed::Box::new(
                crate::nets::tiny_unet::FastTinyUNet::new(&TinyUNet::from_flat(*c, &params)?),
            )),
        };
        Ok(Self {
            cfg,
            schedule_cfg,
            schedule,
            workspace: vec![0.0; workspace_len],
            params,
            #[cfg(feature = "fast")]
            fast,
            path: Path::best(),
            class: None,
            guidance_interval: GuidanceInterval::ALWAYS,
        })
    }

    /// Makes a class-conditional TinyUNet compute for `class` (`None`: "no class", the
    /// unconditional output of classifier-free guidance) from now on. Errors for a class on
    /// an unconditional model and for a class index beyond the model's classes.
    pub fn set_class(&mut self, class: Option<u32>) -> Result<()> {
        match &self.cfg {
            ModelConfig::TinyUNet(c) => {
                tiny_unet::class_label(c, class)?;
            }
            ModelConfig::SimpleUNet(_) if class.is_some() => {
                return Err(crate::Error::InvalidConfig(
                    "this model is unconditional: it takes no class",
                ))
            }
            ModelConfig::SimpleUNet(_) => {}
        }
        #[cfg(feature = "fast")]
        if let FastNet::Tiny(f) = &mut self.fast {
            f.set_class(class)?;
        }
        self.class = class;
        Ok(())
    }

    /// The class set by [`Self::set_class`].
    pub fn class(&self) -> Option<u32> {
        self.class
    }

    /// Guides this model's outputs, in [`Self::sample_guided`] and guided [`Self::inpaint`],
    /// only at the steps `interval` holds (default: every step); at the others the model's
    /// output is used alone and the guide does not run.
    pub fn set_guidance_interval(&mut self, interval: GuidanceInterval) {
        self.guidance_interval = interval;
    }

    /// Repacks a SimpleUNet's fast path with Winograd output tiles `tile` (default
    /// [`crate::nets::simple_unet::fast::WINOGRAD_TILE`]); F(4×4, 3×3) does fewer multiplies but rounds more.
    /// A TinyUNet's fast path keeps its F(2×2, 3×3) tiles.
    #[cfg(feature = "fast")]
    pub fn with_winograd_tile(mut self, tile: crate::kernels::winograd::Tile) -> Result<Self> {
        if let (ModelConfig::SimpleUNet(c), FastNet::Simple(old)) = (&self.cfg, &self.fast) {
            let threads = old.threads();
            let net = SimpleUNet::from_flat(*c, &self.params)?;
            #[cfg_attr(not(feature = "threads"), allow(unused_mut))]
            let mut fast = crate::nets::simple_unet::FastSimpleUNet::with_tile(&net, tile);
            #[cfg(feature = "threads")]
            fast.set_threads(threads);
            let _ = threads;
            self.fast = FastNet::Simple(alloc::boxed::Box::new(fast));
        }
        Ok(self)
    }

    /// Chooses the forward implementation (default: [`Path::best`]).
    pub fn with_path(mut self, path: Path) -> Self {
        self.path = path;
        self
    }

    /// The network's architecture and sizes.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    /// The schedule the model was trained with.
    pub fn schedule_config(&self) -> &ScheduleConfig {
        &self.schedule_cfg
    }
    /// The precomputed schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    /// The flat parameters in `state_dict` order.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Predicted noise for one image at network time input `t_in` (= t/T).
    pub fn forward(&mut self, x: &[f32], t_in: f32, out: &mut [f32]) -> Result<()> {
        match (self.path, &self.cfg) {
            (Path::Reference, ModelConfig::SimpleUNet(c)) => SimpleUNet::from_flat(
                *c,
                &self.params,
            )?
            .forward_reference(x, t_in, &mut self.workspace, out),
            (Path::Reference, ModelConfig::TinyUNet(c)) => TinyUNet::from_flat(*c, &self.params)?
                .with_class(self.class)?
                .forward_reference(x, t_in, &mut self.workspace, out),
            #[cfg(feature = "fast")]
            (Path::Fast, _) => match &mut self.fast {
                FastNet::Simple(n) => n.forward(x, t_in, out),
                FastNet::Tiny(n) => n.forward(x, t_in, out),
            },
        }
    }

    /// Splits the fast path over `n` threads (feature `threads`); results do not depend on the
    /// thread count. A SimpleUNet runs threaded only with the Winograd pipeline (hidden widths
    /// ≥ [`crate::nets::simple_unet::fast::WINOGRAD_MIN_CHANNELS`]).
    #[cfg(feature = "threads")]
    pub fn set_threads(&mut self, n: usize) {
        match &mut self.fast {
            FastNet::Simple(f) => f.set_threads(n),
            FastNet::Tiny(f) => f.set_threads(n),
        }
    }

    /// Predicted noise for `t_in.len()` images (`x`, `out`: the images concatenated) at network
    /// time inputs `t_in`. The fast path shares a batch's images between its threads;
    /// each image's result equals [`Self::forward`] on it alone, bit for bit.
    pub fn forward_images(&mut self, x: &[f32], t_in: &[f32], out: &mut [f32]) -> Result<()> {
        let len = self.cfg.image_len();
        check_len("input images", len * t_in.len(), x.len())?;
        check_len("output images", len * t_in.len(), out.len())?;
        match self.path {
            #[cfg(feature = "fast")]
            Path::Fast => self.fast.forward_batch(x, t_in, out),
            Path::Reference => {
                for ((xi, oi), &ti) in x.chunks_exact(len).zip(out.chunks_exact_mut(len)).zip(t_in)
                {
                    self.forward(xi, ti, oi)?;
                }
                Ok(())
            }
        }
    }

    /// Predicted noise for a batch of images (`n` images of [`ModelConfig::image_len`]
    /// elements, concatenated) at integer timesteps `t` (one per image; the network sees t/T).
    pub fn forward_flat_batch(&mut self, x: &[f32], t: &[u32]) -> Result<Vec<f32>> {
        let big_t = self.schedule.len() as f32;
        let t_in: Vec<f32> = t.iter().map(|&ti| ti as f32 / big_t).collect();
        let mut out = vec![0.0f32; x.len()];
        self.forward_images(x, &t_in, &mut out)?;
        Ok(out)
    }

    /// Draws `n` samples; image `i` uses noise seed `seed + i`, so it equals the single sample a
    /// microcontroller draws with that seed. Returns `n·C·H·W` values (not clamped).
    ///
    /// The images advance in lockstep, one batched forward pass per step; each image draws its
    /// noise from its own generator in the order [`sampler::sample`] does, so the result equals
    /// `n` separate calls of it, bit for bit.
    pub fn sample(&mut self, n: usize, cfg: &SamplerConfig, seed: u64) -> Result<Vec<f32>> {
        self.sample_with(None, None, n, cfg, seed)
    }

    /// [`Self::sample`] with every network output guided by the weaker model `guide` with
    /// weight `weight` ([`sampler::guide_output`]); image `i` equals [`sampler::sample`] over a
    /// [`sampler::Guided`] of the two with seed `seed + i`. The guide must draw images of the
    /// same shape under the same schedule and parameterization (checked here).
    pub fn sample_guided(
        &mut self,
        guide: &mut HostModel,
        weight: f32,
        n: usize,
        cfg: &SamplerConfig,
        seed: u64,
    ) -> Result<Vec<f32>> {
        self.check_guide(guide, weight)?;
        self.sample_with(Some((guide, weight)), None, n, cfg, seed)
    }

    /// Errors unless `guide` draws images of this model's shape under its schedule and
    /// parameterization, and `weight` is finite.
    fn check_guide(&self, guide: &HostModel, weight: f32) -> Result<()> {
        let shape = |c: &ModelConfig| (c.channels(), c.height(), c.width());
        if shape(&self.cfg) != shape(&guide.cfg) {
            return Err(crate::Error::InvalidConfig(
                "the guide draws images of another shape",
            ));
        }
        if self.schedule_cfg != guide.schedule_cfg {
            return Err(crate::Error::InvalidConfig(
                "the guide has another schedule or parameterization",
            ));
        }
        if !weight.is_finite() {
            return Err(crate::Error::InvalidConfig(
                "guidance weight must be finite",
            ));
        }
        Ok(())
    }

    /// Completes `n` images by RePaint ([`sampler::inpaint_batch`]): what `inp` keeps (its
    /// known image and mask, one shared or one per image) stays, the rest is drawn, optionally
    /// guided by `guide` = (weaker model, w) as in [`Self::sample_guided`]; image `i` uses
    /// noise seed `seed + i`. The kept pixels of the result equal the known image exactly.
    pub fn inpaint(
        &mut self,
        guide: Option<(&mut HostModel, f32)>,
        inp: &sampler::Inpainting<'_>,
        n: usize,
        cfg: &SamplerConfig,
        seed: u64,
    ) -> Result<Vec<f32>> {
        if let Some((g, w)) = &guide {
            self.check_guide(g, *w)?;
        }
        self.sample_with(guide, Some(inp), n, cfg, seed)
    }

    fn sample_with(
        &mut self,
        guide: Option<(&mut HostModel, f32)>,
        inp: Option<&sampler::Inpainting<'_>>,
        n: usize,
        cfg: &SamplerConfig,
        seed: u64,
    ) -> Result<Vec<f32>> {
        let len = self.cfg.image_len();
        let schedule = self.schedule.clone();
        let mut x = vec![0.0f32; n * len];
        let mut noise: Vec<GaussianNoise> = (0..n)
            .map(|i| GaussianNoise::new(seed.wrapping_add(i as u64)))
            .collect();
        let mut batch = Batch {
            eps: vec![0.0f32; n * len],
            guide_eps: vec![0.0f32; if guide.is_some() { n * len } else { 0 }],
            t_in: vec![0.0f32; n],
            interval: self.guidance_interval,
            model: self,
            guide,
        };
        match inp {
            None => {
                let mut history = vec![0.0f32; cfg.history_len(n * len)];
                sampler::sample_batch_with_history(
                    &mut batch,
                    &*schedule,
                    cfg,
                    &mut noise,
                    &mut x,
                    &mut history,
                )?;
            }
            Some(inp) => {
                let mut history = vec![0.0f32; inp.history_len(cfg, n * len)];
                sampler::inpaint_batch(
                    &mut batch,
                    &*schedule,
                    cfg,
                    inp,
                    &mut noise,
                    &mut x,
                    &mut history,
                )?;
            }
        }
        Ok(x)
    }
}

/// A model (and optionally its guide) over a whole batch at once, as a network of the sampling
/// driver: one batched forward pass per step, the guide's output mixed in, then each image's
/// output handed on.
struct Batch<'m> {
    model: &'m mut HostModel,
    guide: Option<(&'m mut HostModel, f32)>,
    interval: GuidanceInterval,
    eps: Vec<f32>,
    guide_eps: Vec<f32>,
    t_in: Vec<f32>,
}

impl sampler::Network for Batch<'_> {
    fn image_len(&self) -> usize {
        self.model.cfg.image_len()
    }
    fn output(
        &mut self,
        x: &mut [f32],
        t_in: f32,
        sink: &mut dyn sampler::OutputSink,
    ) -> Result<()> {
        self.t_in.fill(t_in);
        self.model.forward_images(x, &self.t_in, &mut self.eps)?;
        if let Some((g, w)) = self.guide.as_mut().filter(|_| self.interval.contains(t_in)) {
            g.forward_images(x, &self.t_in, &mut self.guide_eps)?;
            sampler::guide_output(&mut self.eps, &self.guide_eps, *w)?;
        }
        let len = self.model.cfg.image_len();
        for (i, eps) in self.eps.chunks_exact(len).enumerate() {
            sink.image(x, i, eps)?;
        }
        Ok(())
    }
}

impl Denoiser for HostModel {
    fn image_len(&self) -> usize {
        self.cfg.image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        self.forward(x, t_in, eps)
    }
}

#[cfg(feature = "ndarray")]
impl HostModel {
    /// Predicted noise for an `N×C×H×W` batch at integer timesteps `t` (length N).
    pub fn forward_batch(
        &mut self,
        x: ndarray::ArrayView4<'_, f32>,
        t: &[u32],
    ) -> Result<ndarray::Array4<f32>> {
        let c = self.cfg;
        let expected = (t.len(), c.channels(), c.height(), c.width());
        if x.dim() != expected {
            return Err(crate::Error::BufferSize {
                what: "N×C×H×W batch",
                needed: expected.0 * expected.1 * expected.2 * expected.3,
                got: x.len(),
            });
        }
        let flat: Vec<f32> = x.iter().copied().collect();
        let out = self.forward_flat_batch(&flat, t)?;
        ndarray::Array4::from_shape_vec(expected, out)
            .map_err(|_| crate::Error::InvalidConfig("batch shape"))
    }
}
