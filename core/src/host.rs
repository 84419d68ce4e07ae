//! Owned, heap-using conveniences for host programs (the trainer, the tests, benchmarks).

use alloc::vec;
use alloc::vec::Vec;

use crate::config::{ModelConfig, ScheduleConfig, SimpleUNetConfig};
use crate::error::{check_len, Result};
use crate::format::{ModelFile, Precision};
use crate::noise::GaussianNoise;
use crate::sampler::{self, Denoiser, SamplerConfig};
use crate::schedule::Schedule;
use crate::simple_unet::{self, SimpleUNet};

/// Which forward implementation a [`HostModel`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The plain-loop reference (the oracle).
    Reference,
    /// The host fast path, [`crate::fast::FastSimpleUNet`] (feature `fast`).
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

/// A model loaded from a model file, with owned weights and schedule.
#[derive(Clone)]
pub struct HostModel {
    cfg: SimpleUNetConfig,
    schedule_cfg: ScheduleConfig,
    schedule: alloc::boxed::Box<Schedule>,
    params: Vec<f32>,
    workspace: Vec<f32>,
    #[cfg(feature = "fast")]
    fast: alloc::boxed::Box<crate::fast::FastSimpleUNet>,
    path: Path,
}

impl HostModel {
    /// Parses and checks a model file and loads its weights.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let file = ModelFile::parse(bytes)?;
        let header = *file.header();
        if header.precision != Precision::F32 {
            return Err(crate::Error::InvalidConfig(
                "this is an int8 model file; load it with the int8 executor",
            ));
        }
        let ModelConfig::SimpleUNet(cfg) = header.model;
        simple_unet::check_params(&file, &cfg)?;
        let schedule = alloc::boxed::Box::new(Schedule::new(&header.schedule)?);
        let mut params = vec![0.0f32; cfg.param_count()];
        simple_unet::load_params(&file, &cfg, &mut params)?;
        Self::from_parts(cfg, header.schedule, schedule, params)
    }

    /// A model from flat parameters in `state_dict` order.
    pub fn from_params(
        cfg: SimpleUNetConfig,
        schedule: ScheduleConfig,
        params: Vec<f32>,
    ) -> Result<Self> {
        let sched = alloc::boxed::Box::new(Schedule::new(&schedule)?);
        Self::from_parts(cfg, schedule, sched, params)
    }

    fn from_parts(
        cfg: SimpleUNetConfig,
        schedule_cfg: ScheduleConfig,
        schedule: alloc::boxed::Box<Schedule>,
        params: Vec<f32>,
    ) -> Result<Self> {
        let net = SimpleUNet::from_flat(cfg, &params)?;
        #[cfg(feature = "fast")]
        let fast = alloc::boxed::Box::new(crate::fast::FastSimpleUNet::new(&net));
        let _ = net;
        Ok(Self {
            cfg,
            schedule_cfg,
            schedule,
            workspace: vec![0.0; cfg.workspace_len()],
            params,
            #[cfg(feature = "fast")]
            fast,
            path: Path::best(),
        })
    }

    /// Repacks the fast path with Winograd output tiles `tile` (default
    /// [`crate::fast::WINOGRAD_TILE`]); F(4×4, 3×3) does fewer multiplies but rounds more.
    #[cfg(feature = "fast")]
    pub fn with_winograd_tile(mut self, tile: crate::winograd::Tile) -> Result<Self> {
        let threads = self.fast.threads();
        let net = SimpleUNet::from_flat(self.cfg, &self.params)?;
        let mut fast = crate::fast::FastSimpleUNet::with_tile(&net, tile);
        #[cfg(feature = "threads")]
        fast.set_threads(threads);
        let _ = threads;
        self.fast = alloc::boxed::Box::new(fast);
        Ok(self)
    }

    /// Chooses the forward implementation (default: [`Path::best`]).
    pub fn with_path(mut self, path: Path) -> Self {
        self.path = path;
        self
    }

    /// The network's sizes.
    pub fn config(&self) -> &SimpleUNetConfig {
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
        match self.path {
            Path::Reference => SimpleUNet::from_flat(self.cfg, &self.params)?.forward_reference(
                x,
                t_in,
                &mut self.workspace,
                out,
            ),
            #[cfg(feature = "fast")]
            Path::Fast => self.fast.forward(x, t_in, out),
        }
    }

    /// Splits the fast path's layers over `n` threads (feature `threads`); results do not
    /// depend on the thread count.
    #[cfg(feature = "threads")]
    pub fn set_threads(&mut self, n: usize) {
        self.fast.set_threads(n);
    }

    /// Predicted noise for `t_in.len()` images (`x`, `out`: the images concatenated) at network
    /// time inputs `t_in`. The fast path runs the whole batch through each layer at once; each
    /// image's result equals [`Self::forward`] on it alone, bit for bit.
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

    /// Predicted noise for a batch of images (`n` images of [`SimpleUNetConfig::image_len`]
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
        let len = self.cfg.image_len();
        let schedule = self.schedule.clone();
        let plan = sampler::Plan::new(cfg, schedule.len() as u32)?;
        let mut x = vec![0.0f32; n * len];
        let mut noise: Vec<GaussianNoise> = (0..n)
            .map(|i| GaussianNoise::new(seed.wrapping_add(i as u64)))
            .collect();
        for (img, g) in x.chunks_exact_mut(len).zip(&mut noise) {
            g.fill(img);
        }
        let mut eps = vec![0.0f32; n * len];
        let mut t_in = vec![0.0f32; n];
        for k in 0..plan.len() {
            let (t, prev) = plan
                .step(k)
                .ok_or(crate::Error::InvalidConfig("step index past the plan"))?;
            t_in.fill(t as f32 / schedule.len() as f32);
            self.forward_images(&x, &t_in, &mut eps)?;
            for ((xi, ei), g) in x
                .chunks_exact_mut(len)
                .zip(eps.chunks_exact(len))
                .zip(&mut noise)
            {
                let z = |_: usize| g.next_gaussian();
                match cfg {
                    SamplerConfig::Ddpm(c) => sampler::ddpm_step(&schedule, c, t, xi, ei, z)?,
                    SamplerConfig::Ddim(c) => sampler::ddim_step(&schedule, c, t, prev, xi, ei, z)?,
                }
            }
        }
        Ok(x)
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
        let expected = (
            t.len(),
            c.channels as usize,
            c.height as usize,
            c.width as usize,
        );
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
