//! One drawing, move by move: the page asks for the next move, then shows the image x_t and
//! the network's prediction of x0 before it asks again. The drawing is the core's own
//! computation ([`ddpm_core::diffusion::apply_move`] over the sampler's plan and RePaint's
//! walk), so a whole run equals what the host's core draws with the same settings, bit for
//! bit; this module adds only the prediction of x0 that the page shows beside x_t.

use ddpm_core::diffusion::{
    apply_move, split_output, GaussianNoise, Guided, Inpainting, Move, Moves, Network, OutputSink,
    Plan, Resampling, SamplerConfig, WholeImages,
};
use ddpm_core::file::{ModelFile, Precision};
use ddpm_core::tiny_unet::int8::Int8TinyUNet;
use ddpm_core::tiny_unet::planned::{Planned, PlannedGuided, TinyInt8Workspace};
use ddpm_core::tiny_unet::{self, FastTinyUNet, TinyUNet};
use ddpm_core::{pixel_to_u8, Error, ModelConfig, Result, Schedule, TinyUNetConfig};

/// A model file the page loaded, parsed and checked once: its bytes stay for the life of the
/// page (an int8 network reads its tensors in place).
pub struct Model {
    file: ModelFile<'static>,
    config: TinyUNetConfig,
    precision: Precision,
}

impl Model {
    /// Parses and checks `bytes` as a TinyUNet model file (f32 or int8). The bytes are kept
    /// for the rest of the program, as a device keeps its model in flash.
    pub fn load(bytes: Vec<u8>) -> Result<Self> {
        let bytes: &'static [u8] = Vec::leak(bytes);
        let file = ModelFile::parse(bytes)?;
        let header = *file.header();
        let ModelConfig::TinyUNet(config) = header.model else {
            return Err(Error::InvalidConfig(
                "this page draws with TinyUNet models; this file holds a SimpleUNet",
            ));
        };
        match header.precision {
            Precision::F32 => tiny_unet::check_params(&file, &config)?,
            Precision::Int8 => {
                Int8TinyUNet::from_file(&file)?;
            }
        }
        Ok(Self {
            file,
            config,
            precision: header.precision,
        })
    }

    /// The network's sizes.
    pub fn config(&self) -> &TinyUNetConfig {
        &self.config
    }

    /// f32 or int8.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The f32 fast path of this model computing for `class`, with its SIMD kernels when
    /// `simd` (SIMD128 in a browser built with it, AVX2 on x86-64) or the portable ones.
    fn fast(&self, class: Option<u32>, simd: bool) -> Result<FastTinyUNet> {
        let file = &self.file;
        let mut params = vec![0.0f32; self.config.param_count()];
        tiny_unet::load_params(file, &self.config, &mut params)?;
        let net = TinyUNet::from_flat(self.config, &params)?;
        let mut fast = if simd {
            FastTinyUNet::new(&net)
        } else {
            FastTinyUNet::portable(&net)
        };
        fast.set_class(class)?;
        Ok(fast)
    }

    /// The int8 network computing for `class`.
    fn int8(&self, class: Option<u32>) -> Result<Int8TinyUNet<'static>> {
        Int8TinyUNet::from_file(&self.file)?.with_class(class)
    }
}

/// What to draw.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The sampler and its options.
    pub sampler: SamplerConfig,
    /// Noise seed.
    pub seed: u64,
    /// Guidance weight w: `guide + w·(model − guide)`. The guide is the guide model when one
    /// is given (autoguidance), else the model itself without a class (classifier-free
    /// guidance of a class-conditional model); either computes for "no class".
    pub guidance: Option<f32>,
    /// The digit a class-conditional model draws.
    pub class: Option<u32>,
    /// The f32 fast path's SIMD kernels (off: the portable ones).
    pub simd: bool,
}

/// Known pixels to complete: the known image in the model's range and the mask (1 kept, 0
/// drawn), one image each, and RePaint's resampling.
#[derive(Debug, Clone)]
pub struct Known {
    /// The known image, `p/127.5 − 1` of its u8 pixels.
    pub image: Vec<f32>,
    /// 1 where the known image is kept, 0 where the model draws.
    pub mask: Vec<f32>,
    /// Passes over blocks of steps.
    pub resampling: Resampling,
}

/// The networks one drawing runs, with their scratch.
enum Engine {
    F32 {
        model: Box<FastTinyUNet>,
        guide: Option<(Box<FastTinyUNet>, f32)>,
        out: Vec<f32>,
        guide_out: Vec<f32>,
    },
    Int8 {
        model: Box<Int8TinyUNet<'static>>,
        guide: Option<(Box<Int8TinyUNet<'static>>, f32)>,
        ws: Box<TinyInt8Workspace>,
        guide_out: Vec<f32>,
    },
}

/// A drawing in progress.
pub struct Session {
    engine: Engine,
    schedule: Box<Schedule>,
    cfg: SamplerConfig,
    plan: Plan,
    moves: Moves,
    known: Option<Known>,
    noise: [GaussianNoise; 1],
    x: Vec<f32>,
    x0: Vec<f32>,
    history: Vec<f32>,
    /// Network steps taken (resampled passes counted again).
    steps_done: usize,
    /// The last step's timestep.
    last_t: Option<u32>,
    finished: bool,
}

impl Session {
    /// Starts a drawing of `model` (guided by `guide` when given and `settings.guidance` is
    /// set), completing `known` when given. The image starts as the seed's noise.
    pub fn new(
        model: &Model,
        guide: Option<&Model>,
        settings: &Settings,
        known: Option<Known>,
    ) -> Result<Self> {
        let cfg = *model.config();
        let len = cfg.image_len();
        let schedule = Box::new(Schedule::new(&model.file.header().schedule)?);
        if let Some(g) = guide {
            let (a, b) = (model.config(), g.config());
            if (a.channels, a.height, a.width) != (b.channels, b.height, b.width)
                || g.precision != model.precision
                || g.file.header().schedule != model.file.header().schedule
            {
                return Err(Error::InvalidConfig(
                    "the guide is not a model of the same size, precision and schedule",
                ));
            }
        }
        let guidance =
            match (settings.guidance, guide) {
                (Some(w), Some(g)) => Some((w, g)),
                (Some(w), None) if cfg.is_conditional() => Some((w, model)),
                (Some(_), None) => return Err(Error::InvalidConfig(
                    "guidance needs a guide model, or a class-conditional model (classifier-free \
                     guidance)",
                )),
                (None, _) => None,
            };
        let engine = match model.precision {
            Precision::F32 => Engine::F32 {
                model: Box::new(model.fast(settings.class, settings.simd)?),
                guide: match guidance {
                    Some((w, g)) => Some((Box::new(g.fast(None, settings.simd)?), w)),
                    None => None,
                },
                out: vec![0.0; len],
                guide_out: vec![0.0; len],
            },
            Precision::Int8 => Engine::Int8 {
                model: Box::new(model.int8(settings.class)?),
                guide: match guidance {
                    Some((w, g)) => Some((Box::new(g.int8(None)?), w)),
                    None => None,
                },
                ws: Box::new(TinyInt8Workspace::ZEROED),
                guide_out: vec![0.0; len],
            },
        };
        let plan = Plan::new(&settings.sampler, schedule.len() as u32)?;
        let (resampling, history_len) = match &known {
            Some(k) => {
                check_len_of("known image", len, k.image.len())?;
                let inp = Inpainting::new(&k.image, &k.mask, k.resampling)?;
                (k.resampling, inp.history_len(&settings.sampler, len))
            }
            None => (Resampling::NONE, settings.sampler.history_len(len)),
        };
        let mut noise = [GaussianNoise::new(settings.seed)];
        let mut x = vec![0.0f32; len];
        noise[0].fill(&mut x);
        Ok(Self {
            engine,
            schedule,
            cfg: settings.sampler,
            moves: resampling.moves(&plan),
            plan,
            known,
            noise,
            x0: x.clone(),
            x,
            history: vec![0.0; history_len],
            steps_done: 0,
            last_t: None,
            finished: false,
        })
    }

    /// Carries out moves up to and including the next network step (RePaint's saves and jumps
    /// back go with the step that follows them). Returns `false` once the drawing is done.
    pub fn advance(&mut self) -> Result<bool> {
        loop {
            let Some(mv) = self.moves.next() else {
                self.finished = true;
                return Ok(false);
            };
            let inp = match &self.known {
                Some(k) => Some(Inpainting::new(&k.image, &k.mask, k.resampling)?),
                None => None,
            };
            let step = match mv {
                Move::Step(k) => Some(
                    self.plan
                        .step(k)
                        .ok_or(Error::InvalidConfig("step index past the plan"))?
                        .0,
                ),
                Move::Save | Move::Back { .. } => None,
            };
            let Self {
                engine,
                schedule,
                cfg,
                plan,
                noise,
                x,
                x0,
                history,
                ..
            } = self;
            let sched = &**schedule;
            let mut observe = |net: &mut dyn Network| -> Result<()> {
                let mut watched = WatchX0 {
                    inner: net,
                    x0,
                    scale: step.map(|t| {
                        let a = sched.alphas_cumprod()[t as usize];
                        (a.sqrt(), (1.0 - a).sqrt())
                    }),
                    prediction: sched.config().prediction,
                };
                apply_move(
                    &mut watched,
                    sched,
                    cfg,
                    plan,
                    mv,
                    inp.as_ref(),
                    noise,
                    x,
                    history,
                )
            };
            match engine {
                Engine::F32 {
                    model,
                    guide,
                    out,
                    guide_out,
                } => match guide {
                    None => observe(&mut WholeImages::new(&mut **model, out)?)?,
                    Some((g, w)) => {
                        let mut guided = Guided::new(&mut **model, &mut **g, *w, guide_out)?;
                        observe(&mut WholeImages::new(&mut guided, out)?)?
                    }
                },
                Engine::Int8 {
                    model,
                    guide,
                    ws,
                    guide_out,
                } => match guide {
                    None => observe(&mut Planned::new(model, ws))?,
                    Some((g, w)) => observe(&mut PlannedGuided::new(model, g, *w, ws, guide_out)?)?,
                },
            }
            if step.is_some() {
                self.steps_done += 1;
                self.last_t = step;
                return Ok(true);
            }
        }
    }

    /// Runs the drawing to its end.
    pub fn finish(&mut self) -> Result<()> {
        while self.advance()? {}
        Ok(())
    }

    /// The image now: x_t after the last step, the drawn image once finished.
    pub fn x(&self) -> &[f32] {
        &self.x
    }

    /// The network's prediction of the clean image at the last step (before the known pixels
    /// were pasted back).
    pub fn x0(&self) -> &[f32] {
        &self.x0
    }

    /// Network steps taken so far (a resampled block's steps count each time).
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    /// Network steps the whole drawing takes.
    pub fn steps_total(&self) -> usize {
        let r = self
            .known
            .as_ref()
            .map_or(Resampling::NONE, |k| k.resampling);
        r.moves(&self.plan)
            .filter(|m| matches!(m, Move::Step(_)))
            .count()
    }

    /// The timestep of the last step taken.
    pub fn timestep(&self) -> Option<u32> {
        self.last_t
    }

    /// Whether the drawing is done.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The image as u8 pixels, as the trainer and the firmware round it.
    pub fn pixels(&self) -> Vec<u8> {
        self.x.iter().map(|&v| pixel_to_u8(v)).collect()
    }
}

fn check_len_of(what: &'static str, needed: usize, got: usize) -> Result<()> {
    if needed == got {
        Ok(())
    } else {
        Err(Error::BufferSize { what, needed, got })
    }
}

/// A network whose output, on its way to the sampler's step, also gives the prediction of x0
/// at the step's timestep (`scale` = (√ᾱ_t, √(1−ᾱ_t))), from the image before the step updates
/// it.
struct WatchX0<'a> {
    inner: &'a mut dyn Network,
    x0: &'a mut [f32],
    scale: Option<(f32, f32)>,
    prediction: ddpm_core::Prediction,
}

impl Network for WatchX0<'_> {
    fn image_len(&self) -> usize {
        self.inner.image_len()
    }
    fn output(&mut self, x: &mut [f32], t_in: f32, sink: &mut dyn OutputSink) -> Result<()> {
        let mut tee = TeeX0 {
            inner: sink,
            x0: self.x0,
            scale: self.scale,
            prediction: self.prediction,
        };
        self.inner.output(x, t_in, &mut tee)
    }
}

struct TeeX0<'a> {
    inner: &'a mut dyn OutputSink,
    x0: &'a mut [f32],
    scale: Option<(f32, f32)>,
    prediction: ddpm_core::Prediction,
}

impl TeeX0<'_> {
    /// x0 at elements `at..at + x.len()` of the image from their values `x` and the
    /// network's output `out` there.
    fn predict(&mut self, at: usize, x: &[f32], out: &[f32]) {
        let Some((sa, s1a)) = self.scale else { return };
        for ((d, &xv), &o) in self.x0[at..][..x.len()].iter_mut().zip(x).zip(out) {
            *d = split_output(self.prediction, xv, o, sa, s1a).0;
        }
    }
}

impl OutputSink for TeeX0<'_> {
    fn image(&mut self, x: &mut [f32], i: usize, out: &[f32]) -> Result<()> {
        if i == 0 {
            self.predict(0, &x[..out.len()], out);
        }
        self.inner.image(x, i, out)
    }
    fn row(&mut self, x: &mut [f32], y: usize, width: usize, out_row: &[f32]) -> Result<()> {
        let h = x.len() / out_row.len();
        for (ch, part) in out_row.chunks(width).enumerate() {
            let at = (ch * h + y) * width;
            self.predict(at, &x[at..][..width], part);
        }
        self.inner.row(x, y, width, out_row)
    }
}
