//! Owned, heap-using conveniences for host programs (the trainer, the tests, benchmarks).

use alloc::vec;
use alloc::vec::Vec;

use crate::config::{ModelConfig, ScheduleConfig};
use crate::error::{check_len, Result};
use crate::format::{ModelFile, Precision};
use crate::sampler::{self, Denoiser, SamplerConfig};
use crate::schedule::Schedule;
use crate::simple_unet::{self, SimpleUNet};
use crate::tiny_unet::{self, TinyUNet};

/// Which forward implementation a [`HostModel`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The plain-loop reference (the oracle).
    Reference,
    /// im2col + sgemm (feature `fast`).
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
    Simple(alloc::boxed::Box<crate::fast::FastSimpleUNet>),
    Tiny(alloc::boxed::Box<crate::fast::FastTinyUNet>),
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
        let cfg = header.model;
        match &cfg {
            ModelConfig::SimpleUNet(c) => simple_unet::check_params(&file, c)?,
            ModelConfig::TinyUNet(c) => tiny_unet::check_params(&file, c)?,
        }
        let schedule = alloc::boxed::Box::new(Schedule::new(&header.schedule)?);
        let mut params = vec![0.0f32; cfg.param_count()];
        match &cfg {
            ModelConfig::SimpleUNet(c) => simple_unet::load_params(&file, c, &mut params)?,
            ModelConfig::TinyUNet(c) => tiny_unet::load_params(&file, c, &mut params)?,
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
                crate::fast::FastSimpleUNet::new(&SimpleUNet::from_flat(*c, &params)?),
            )),
            ModelConfig::TinyUNet(c) => FastNet::Tiny(alloc::boxed::Box::new(
                crate::fast::FastTinyUNet::new(&TinyUNet::from_flat(*c, &params)?),
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
        })
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
                .forward_reference(x, t_in, &mut self.workspace, out),
            #[cfg(feature = "fast")]
            (Path::Fast, _) => match &mut self.fast {
                FastNet::Simple(n) => n.forward(x, t_in, out),
                FastNet::Tiny(n) => n.forward(x, t_in, out),
            },
        }
    }

    /// Predicted noise for a batch of images (`n` images of [`ModelConfig::image_len`]
    /// elements, concatenated) at integer timesteps `t` (one per image; the network sees t/T).
    pub fn forward_flat_batch(&mut self, x: &[f32], t: &[u32]) -> Result<Vec<f32>> {
        let len = self.cfg.image_len();
        check_len("batch", len * t.len(), x.len())?;
        let big_t = self.schedule.len() as f32;
        let mut out = vec![0.0f32; x.len()];
        for ((xi, oi), &ti) in x.chunks_exact(len).zip(out.chunks_exact_mut(len)).zip(t) {
            self.forward(xi, ti as f32 / big_t, oi)?;
        }
        Ok(out)
    }

    /// Draws `n` samples; image `i` uses noise seed `seed + i`, so it equals the single sample a
    /// microcontroller draws with that seed. Returns `n·C·H·W` values (not clamped).
    pub fn sample(&mut self, n: usize, cfg: &SamplerConfig, seed: u64) -> Result<Vec<f32>> {
        let len = self.cfg.image_len();
        let mut out = vec![0.0f32; n * len];
        let mut eps = vec![0.0f32; len];
        for (i, img) in out.chunks_exact_mut(len).enumerate() {
            let schedule = self.schedule.clone();
            sampler::sample(
                self,
                &schedule,
                cfg,
                seed.wrapping_add(i as u64),
                img,
                &mut eps,
            )?;
        }
        Ok(out)
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
