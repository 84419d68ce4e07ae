//! Drawing many samples on several threads: each thread takes a contiguous run of whole images
//! (image `i` always from noise seed `seed + i`), so the result does not depend on the thread
//! count. [`draw_host`] runs the core's f32 networks (with an optional guide),
//! [`sample_int8_file`] the int8 executors the microcontroller runs.

use anyhow::{anyhow, bail, Result};
use ddpm_core::diffusion::{
    inpaint_batch, sample_batch_with_history, GaussianNoise, GuidanceInterval, Inpainting, Network,
    SamplerConfig,
};
use ddpm_core::file::ModelFile;
use ddpm_core::host::HostModel;
use ddpm_core::simple_unet::fast_int8::FastInt8SimpleUNet;
use ddpm_core::simple_unet::int8::Int8SimpleUNet;
use ddpm_core::tiny_unet::fast_int8::{FastInt8Guided, FastInt8TinyUNet};
use ddpm_core::tiny_unet::int8::Int8TinyUNet;
use ddpm_core::{ModelConfig, Schedule};

/// What to draw: `n` images, image `i` from noise seed `seed + i`, with `sampler`, on `workers`
/// threads that each take a contiguous run of whole images (so the result does not depend on
/// `workers`).
#[derive(Debug, Clone, Copy)]
pub struct Draws<'a> {
    /// Number of images.
    pub n: usize,
    /// The sampler.
    pub sampler: &'a SamplerConfig,
    /// Noise seed of image 0.
    pub seed: u64,
    /// Threads.
    pub workers: usize,
    /// A class-conditional model's classes (`None`: every image "no class", unguided).
    pub classes: Option<Classes<'a>>,
    /// Complete known images by RePaint instead of drawing from noise alone (the known
    /// image and mask shared, or one per image).
    pub inpaint: Option<Inpainting<'a>>,
    /// The steps the guidance (a guide's or classifier-free) applies at.
    pub interval: GuidanceInterval,
}

/// What a class-conditional model draws: image `i` of class `labels[i]`, each output guided
/// by classifier-free guidance `uncond + weight·(cond − uncond)` (Ho & Salimans 2022), where
/// `uncond` is the same network's "no class" output; weight 1 is the plain conditional model
/// (one pass per step).
#[derive(Debug, Clone, Copy)]
pub struct Classes<'a> {
    /// One class per image.
    pub labels: &'a [u32],
    /// The guidance weight w.
    pub weight: f32,
}

/// Classifier-free guidance weight w of `--class` when `--cfg` is not given: for the committed
/// class-conditional TinyUNet, the weight whose 1,000 samples keep the classifier FID below the
/// unconditional guided model's while drawing the digit asked for 97–100% of the time per
/// class (W 1: FID 7.0, 91–99%; W 1.3: FID 7.2, 97–100%; W 1.5: FID 10.1; W 2: FID 19.6;
/// docs/quality.md).
pub const DEFAULT_CFG: f32 = 1.3;

/// Which classes a class-conditional model is asked to draw (`--class K|all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassChoice {
    /// Every image of class K.
    One(u32),
    /// Every class, in equal contiguous runs.
    All,
    /// Inpainting: each completion of the class drawn from p(class | the kept part), as a
    /// classifier trained on digits with that part hidden estimates it (`trainer inpaint`).
    Visible,
}

impl ClassChoice {
    /// `K` (a non-negative integer), `all` or `visible`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "all" => Ok(ClassChoice::All),
            "visible" => Ok(ClassChoice::Visible),
            t => t.parse().map(ClassChoice::One).map_err(|_| {
                format!(
                    "{s:?}: give a class index (0 to 9 for the digits) or `all` (or, for \
                     inpaint, `visible`: the class the kept part suggests)"
                )
            }),
        }
    }

    /// The labels of `n` images of a model with `classes` classes: all K, or for
    /// [`ClassChoice::All`] image i of class ⌊i·K/n⌋ (equal runs when K divides n).
    /// [`ClassChoice::Visible`] has no fixed labels (inpainting draws them per completion)
    /// and is refused.
    pub fn labels(self, n: usize, classes: u32) -> Result<Vec<u32>> {
        match self {
            ClassChoice::One(k) => Ok(vec![k; n]),
            ClassChoice::All => Ok((0..n)
                .map(|i| (i as u64 * u64::from(classes) / n as u64) as u32)
                .collect()),
            ClassChoice::Visible => bail!(
                "--class visible draws each completion's class from what the kept part of a \
                 digit suggests: it is for `trainer inpaint`; give a class index or `all`"
            ),
        }
    }

    /// Checks the choice against the model file `path` with configuration `model`; returns
    /// the model's number of classes. The sentences name the file and the problem: a class on
    /// an unconditional model, a class index past the model's classes.
    pub fn check(self, model: &ModelConfig, path: &std::path::Path) -> Result<u32> {
        let classes = match model {
            ModelConfig::TinyUNet(c) if c.is_conditional() => c.classes,
            _ => bail!(
                "--class: {} is unconditional (trained without `fit --conditional`), so it \
                 cannot be asked for a class; drop --class, or use a class-conditional model",
                path.display()
            ),
        };
        if let ClassChoice::One(k) = self {
            if k >= classes {
                bail!(
                    "--class {k}: {} has {classes} classes, 0 to {}",
                    path.display(),
                    classes - 1
                );
            }
        }
        Ok(classes)
    }
}

/// Before any sampling thread starts: refuses classifier-free guidance together with
/// autoguidance (`autoguided`: a guide model is given), and checks every label of `classes`
/// against `model` (a class-conditional TinyUNet, each label below its number of classes).
pub fn check_classes(
    model: &ModelConfig,
    classes: Option<Classes<'_>>,
    autoguided: bool,
) -> Result<()> {
    let Some(c) = classes else {
        return Ok(());
    };
    if autoguided {
        bail!(
            "classifier-free guidance (--class, --cfg) and autoguidance (--guide) are not \
             combined: sample a class-conditional model with --no-guide"
        );
    }
    for &k in c.labels {
        let checked = match model {
            ModelConfig::TinyUNet(t) => ddpm_core::tiny_unet::class_label(t, Some(k)).map(|_| ()),
            ModelConfig::SimpleUNet(_) => Err(ddpm_core::Error::InvalidConfig(
                "this model is unconditional: it takes no class",
            )),
        };
        checked.map_err(|e| anyhow!("class {k}: {e}"))?;
    }
    Ok(())
}

impl Classes<'_> {
    /// The guidance weight when it needs the unconditional pass (w ≠ 1).
    fn guided(&self) -> Option<f32> {
        (self.weight != 1.0).then_some(self.weight)
    }
}

impl<'a> Draws<'a> {
    /// `n` images from seeds `seed`, `seed + 1`, … with `sampler` on `workers` threads.
    pub fn new(n: usize, sampler: &'a SamplerConfig, seed: u64, workers: usize) -> Self {
        Self {
            n,
            sampler,
            seed,
            workers,
            classes: None,
            inpaint: None,
            interval: GuidanceInterval::ALWAYS,
        }
    }

    /// These draws guided only at the steps `interval` holds.
    pub fn with_guidance_interval(mut self, interval: GuidanceInterval) -> Self {
        self.interval = interval;
        self
    }

    /// These draws completing what `inpaint` knows (RePaint) rather than drawing from noise.
    pub fn with_inpainting(mut self, inpaint: Option<Inpainting<'a>>) -> Self {
        self.inpaint = inpaint;
        self
    }

    /// What the inpainting knows of image `i` alone (`None` when not inpainting).
    fn inpaint_of(&self, i: usize, len: usize) -> Result<Option<Inpainting<'a>>> {
        self.inpaint
            .map(|p| p.of_image(i, self.n, len))
            .transpose()
            .map_err(|e| anyhow!("inpainting image {i}: {e}"))
    }

    /// These draws of a class-conditional model, image `i` of class `labels[i]` (one per
    /// image) with guidance weight `weight`.
    pub fn with_classes(mut self, classes: Option<Classes<'a>>) -> Result<Self> {
        if let Some(c) = &classes {
            if c.labels.len() != self.n {
                bail!("{} class labels for {} images", c.labels.len(), self.n);
            }
            if !c.weight.is_finite() {
                bail!("the guidance weight must be finite, not {}", c.weight);
            }
        }
        self.classes = classes;
        Ok(self)
    }

    /// [`draw_in_runs`] of these draws: `n` images of `len` values on `workers` threads.
    pub fn run(
        &self,
        len: usize,
        what: &str,
        run: &(dyn Fn(usize, &mut [f32]) -> Result<()> + Sync),
    ) -> Result<Vec<f32>> {
        draw_in_runs(self.n, len, self.workers, what, run)
    }
}

/// `n` images of `len` values drawn on `workers` threads, each taking a contiguous run of
/// whole images (so the result does not depend on `workers`): `run(first, images)` fills the
/// run that starts at image `first`; `what` names the threads in a panic.
pub fn draw_in_runs(
    n: usize,
    len: usize,
    workers: usize,
    what: &str,
    run: &(dyn Fn(usize, &mut [f32]) -> Result<()> + Sync),
) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; n * len];
    if n == 0 {
        return Ok(out);
    }
    let per = n.div_ceil(workers.clamp(1, n));
    std::thread::scope(|s| {
        let handles: Vec<_> = out
            .chunks_mut(per * len)
            .enumerate()
            .map(|(w, images)| s.spawn(move || run(w * per, images)))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| panic!("{what} thread panicked"))
        })
    })?;
    Ok(out)
}

/// Draws the samples `draws` asks for through `ddpm_core::host::HostModel` ([`Draws`]:
/// image `i` from seed `seed + i`; each thread samples a contiguous run of whole images with
/// its own copy of the networks, so the result does not depend on the thread count). `guide`
/// = (weaker model, w) guides every output (`HostModel::sample_guided`). `done` is called after
/// each image. Returns n·C·H·W values (not clamped).
pub fn draw_host(
    host: &HostModel,
    guide: Option<(&HostModel, f32)>,
    draws: Draws<'_>,
    done: &(dyn Fn() + Sync),
) -> Result<Vec<f32>> {
    let len = host.config().image_len();
    check_classes(host.config(), draws.classes, guide.is_some())?;
    draws.run(len, "sampling", &|first, images| {
        let mut host = host.clone();
        host.set_guidance_interval(draws.interval);
        let mut guide = guide.map(|(g, w)| (g.clone(), w));
        // Classifier-free guidance: the same network without its class is the guide.
        if let Some(w) = draws.classes.and_then(|c| c.guided()) {
            guide = Some((host.clone(), w));
        }
        for (k, x) in images.chunks_exact_mut(len).enumerate() {
            let i = first + k;
            let image_seed = draws.seed.wrapping_add(i as u64);
            if let Some(c) = draws.classes {
                host.set_class(Some(c.labels[i]))
                    .map_err(|e| anyhow!("image {i}: {e}"))?;
            }
            let one = match (guide.as_mut(), draws.inpaint_of(i, len)?) {
                (g, Some(inp)) => {
                    host.inpaint(g.map(|(g, w)| (g, *w)), &inp, 1, draws.sampler, image_seed)
                }
                (Some((g, weight)), None) => {
                    host.sample_guided(g, *weight, 1, draws.sampler, image_seed)
                }
                (None, None) => host.sample(1, draws.sampler, image_seed),
            }
            .map_err(|e| anyhow!("sampling image {i}: {e}"))?;
            x.copy_from_slice(&one);
            done();
        }
        Ok(())
    })
}

/// The samples `draws` asks for from a parsed int8 model file, with the integers the
/// microcontroller computes, through the host int8 executors (`FastInt8SimpleUNet`,
/// `FastInt8TinyUNet`, whose samples equal the row-streaming and planned executors' bit for
/// bit: the core's tests) (image `i` from seed `seed + i`, the int8 tensors read in place; each
/// thread with its own executor, so the result does not depend on the thread count, and each
/// image equals the core's `sample_streaming` / `sample_planned` bit for bit); `done` is
/// called after each image. `guide` = (an int8 TinyUNet file, w) guides the TinyUNet as
/// `sample_planned_guided` does (the guided firmware's computation); the SimpleUNet samples
/// unguided.
pub fn sample_int8_file(
    file: &ModelFile<'_>,
    guide: Option<(&ModelFile<'_>, f32)>,
    draws: Draws<'_>,
    done: &(dyn Fn() + Sync),
) -> Result<Vec<f32>> {
    let sched: Schedule = Schedule::new(&file.header().schedule).map_err(|e| anyhow!("{e}"))?;
    let sched = &sched;
    let len = file.header().model.image_len();
    let image_seed = |i: usize| draws.seed.wrapping_add(i as u64);
    check_classes(&file.header().model, draws.classes, guide.is_some())?;
    match file.header().model {
        ModelConfig::SimpleUNet(_) => {
            if guide.is_some() {
                bail!(
                    "guided int8 sampling runs on the TinyUNet's planned executor; the \
                     SimpleUNet's streaming executor samples unguided"
                );
            }
            if draws.inpaint.is_some() {
                bail!(
                    "int8 inpainting runs on the TinyUNet's planned executor; inpaint with the \
                     f32 SimpleUNet, or an int8 TinyUNet"
                );
            }
            let net = Int8SimpleUNet::from_file(file).map_err(|e| anyhow!("{e}"))?;
            let net = &net;
            draws.run(len, "int8 sampling", &|first, images| {
                let mut host = FastInt8SimpleUNet::new(*net).map_err(|e| anyhow!("{e}"))?;
                for (k, x) in images.chunks_exact_mut(len).enumerate() {
                    let i = first + k;
                    drive(&mut host, sched, &draws, None, image_seed(i), x)
                        .map_err(|e| anyhow!("int8 sampling, image {i}: {e}"))?;
                    done();
                }
                Ok(())
            })
        }
        ModelConfig::TinyUNet(_) => {
            let net = Int8TinyUNet::from_file(file).map_err(|e| anyhow!("{e}"))?;
            let net = &net;
            let guide = match guide {
                None => None,
                Some((g, w)) => {
                    let gnet = match g.header().model {
                        ModelConfig::TinyUNet(_) => {
                            Int8TinyUNet::from_file(g).map_err(|e| anyhow!("the guide: {e}"))?
                        }
                        _ => bail!("the guide of an int8 TinyUNet must be an int8 TinyUNet"),
                    };
                    Some((gnet, w))
                }
            };
            let guide = guide.as_ref();
            draws.run(len, "int8 sampling", &|first, images| {
                fn host<'a>(n: &Int8TinyUNet<'a>) -> Result<FastInt8TinyUNet<'a>> {
                    FastInt8TinyUNet::new(*n).map_err(|e| anyhow!("{e}"))
                }
                let mut model = host(net)?;
                // The guide: the autoguidance model, or for a class-conditional model the
                // same network without a class (classifier-free guidance).
                let mut other = match (guide, draws.classes) {
                    (Some((g, _)), _) => Some(host(g)?),
                    (None, Some(c)) if c.guided().is_some() => Some(host(net)?),
                    _ => None,
                };
                for (k, x) in images.chunks_exact_mut(len).enumerate() {
                    let i = first + k;
                    // A class-conditional image: the network labelled with its class, guided
                    // (w ≠ 1) by itself without the class.
                    let weight = match draws.classes {
                        Some(c) => {
                            model.set_class(Some(c.labels[i]))?;
                            c.guided()
                        }
                        None => guide.map(|&(_, w)| w),
                    };
                    let inpaint = draws.inpaint_of(i, len)?;
                    match (other.as_mut(), weight) {
                        (Some(g), Some(w)) => drive(
                            &mut FastInt8Guided::new(&mut model, g, w)?
                                .with_interval(draws.interval),
                            sched,
                            &draws,
                            inpaint,
                            image_seed(i),
                            x,
                        ),
                        _ => drive(&mut model, sched, &draws, inpaint, image_seed(i), x),
                    }
                    .map_err(|e| anyhow!("int8 sampling, image {i}: {e}"))?;
                    done();
                }
                Ok(())
            })
        }
    }
}

/// One image `x` through `net` with the draws' sampler from noise seed `seed`: sampled, or
/// completed by RePaint when `inpaint` is given, with the sampler's history allocated here.
fn drive(
    net: &mut dyn Network,
    sched: &Schedule,
    draws: &Draws<'_>,
    inpaint: Option<Inpainting<'_>>,
    seed: u64,
    x: &mut [f32],
) -> ddpm_core::Result<()> {
    let noise = &mut [GaussianNoise::new(seed)];
    match inpaint {
        Some(inp) => {
            let mut history = vec![0.0f32; inp.history_len(draws.sampler, x.len())];
            inpaint_batch(net, sched, draws.sampler, &inp, noise, x, &mut history)
        }
        None => {
            let mut history = vec![0.0f32; draws.sampler.history_len(x.len())];
            sample_batch_with_history(net, sched, draws.sampler, noise, x, &mut history)
        }
    }
}
