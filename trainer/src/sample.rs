//! `trainer sample`: images drawn from a model file (and its guide) through the core's host
//! sampler or the batched tch samplers of `ddpm_torch::sample`, and the writers of what they
//! draw: pixels in u8, a PNG grid of images.
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use ddpm_core::diffusion::{GuidanceInterval, Inpainting, Resampling, SamplerConfig};
use ddpm_core::file::Precision;
use ddpm_core::host::HostModel;
use ddpm_core::{ModelConfig, ScheduleConfig};
use tch::{Device, Tensor};

use crate::draw::{self, Draws};
use crate::load::Header;
use crate::{load, progress};

/// Which implementation samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ddpm-core on the CPU (noise of image i from seed + i), the images shared out over this
    /// many threads in contiguous runs (the images do not depend on the count).
    Core {
        /// Threads (at least 1).
        threads: usize,
    },
    /// The same samplers in libtorch, batched, on this device.
    Torch(Device),
}

/// What to draw.
#[derive(Debug, Clone)]
pub struct SampleOptions<'a> {
    /// The f32 model file.
    pub model: &'a Path,
    /// Autoguidance: a weaker model file and the guidance weight w.
    pub guide: Option<(&'a Path, f32)>,
    /// The sampler.
    pub sampler: SamplerConfig,
    /// Number of images.
    pub n: usize,
    /// Noise seed (image i from seed + i with the core; libtorch's generator with torch).
    pub seed: u64,
    /// Which implementation samples.
    pub backend: Backend,
    /// Show a progress bar.
    pub progress: bool,
    /// A class-conditional model: one class label per image and the classifier-free guidance
    /// weight ([`draw::Classes`]).
    pub classes: Option<(Vec<u32>, f32)>,
    /// Complete known images by RePaint instead of drawing from noise alone.
    pub inpaint: Option<Inpaint>,
    /// The steps the guidance (the guide's or classifier-free) applies at.
    pub guidance_interval: GuidanceInterval,
}

/// What an inpainting run knows, owned: the known image(s) in [−1, 1] and the mask(s) (1 where
/// the known pixel is kept, 0 where the model draws), each one image (shared by every drawn
/// image) or one per drawn image, and RePaint's resampling.
#[derive(Debug, Clone)]
pub struct Inpaint {
    /// Known images, C·H·W values each.
    pub known: Vec<f32>,
    /// Masks, as long as `known`.
    pub mask: Vec<f32>,
    /// Passes per block and steps per block.
    pub resampling: Resampling,
}

impl Inpaint {
    /// The core's view of it, checked against a model drawing `n` images of `shape` (C, H, W).
    fn checked(&self, n: usize, shape: (usize, usize, usize)) -> Result<Inpainting<'_>> {
        let len = shape.0 * shape.1 * shape.2;
        if self.known.len() != len && self.known.len() != n * len {
            bail!(
                "the known image has {} values; the model draws {}×{}×{} images ({len} values)",
                self.known.len(),
                shape.0,
                shape.1,
                shape.2
            );
        }
        Inpainting::new(&self.known, &self.mask, self.resampling).map_err(|e| anyhow!("{e}"))
    }
}

/// What [`draw`] drew.
#[derive(Debug, Clone)]
pub struct Drawn {
    /// The model's sizes.
    pub model: ModelConfig,
    /// The model's schedule.
    pub schedule: ScheduleConfig,
    /// The model file's precision.
    pub precision: Precision,
    /// n·C·H·W values (not clamped).
    pub values: Vec<f32>,
    /// Seconds taken, loading included.
    pub seconds: f64,
}

/// Loads the model (and the guide, checked against it) and draws `opts.n` images.
pub fn draw(opts: &SampleOptions<'_>) -> Result<Drawn> {
    let start = Instant::now();
    let guide_path = opts.guide.map(|(g, _)| g);
    let w = opts.guide.map_or(1.0, |(_, w)| w);
    let classes = opts.classes.as_ref().map(|(labels, weight)| draw::Classes {
        labels,
        weight: *weight,
    });
    let (mcfg, schedule, precision, values) = match opts.backend {
        Backend::Core { threads } => load::with_model_file(opts.model, |file| {
            let header = file.header();
            let m = header.model;
            let inpaint = opts
                .inpaint
                .as_ref()
                .map(|p| p.checked(opts.n, (m.channels(), m.height(), m.width())))
                .transpose()?;
            let draws = Draws::new(opts.n, &opts.sampler, opts.seed, threads)
                .with_classes(classes)?
                .with_inpainting(inpaint)
                .with_guidance_interval(opts.guidance_interval);
            let bar = progress::bar(opts.n as u64, opts.progress, "images");
            let values = if header.precision == Precision::Int8 {
                let model_err = |e: anyhow::Error| anyhow!("{}: {e}", opts.model.display());
                match guide_path {
                    None => draw::sample_int8_file(file, None, draws, &|| bar.inc(1))
                        .map_err(model_err)?,
                    Some(g) => load::with_model_file(g, |gfile| {
                        if gfile.header().precision != Precision::Int8 {
                            bail!(
                                "--guide {}: an int8 model is guided by an int8 guide (as on \
                                 the microcontroller); export one with `trainer export --int8`",
                                g.display()
                            );
                        }
                        let (gh, mh) = (gfile.header(), header);
                        load::check_guide((&mh.model, &mh.schedule), (&gh.model, &gh.schedule), g)?;
                        draw::sample_int8_file(file, Some((gfile, w)), draws, &|| bar.inc(1))
                            .map_err(model_err)
                    })?,
                }
            } else {
                let host = HostModel::from_file(file)
                    .map_err(|e| anyhow!("{}: {e}", opts.model.display()))?;
                let guide = match guide_path {
                    Some(g) => {
                        let gm = load::host_model(g)?;
                        load::check_guide(host.header(), gm.header(), g)?;
                        Some(gm)
                    }
                    None => None,
                };
                draw::draw_host(&host, guide.as_ref().map(|g| (g, w)), draws, &|| bar.inc(1))?
            };
            bar.finish_and_clear();
            Ok((header.model, header.schedule, header.precision, values))
        })?,
        Backend::Torch(device) => {
            let (m, guide) =
                load::with_guide(opts.model, guide_path, |p| load::torch_model(p, device))?;
            let sched = ddpm_core::Schedule::new(&m.file.schedule)
                .map_err(|e| anyhow!("{}: schedule: {e}", opts.model.display()))?;
            let bar = progress::bar(0, opts.progress, "steps");
            draw::check_classes(&m.file.config, classes, guide.is_some())?;
            let labels = opts.classes.as_ref().map(|(labels, w)| {
                let y: Vec<i64> = labels.iter().map(|&k| i64::from(k)).collect();
                (Tensor::from_slice(&y).to_device(device), *w)
            });
            let c = m.file.config;
            let shape = (c.channels(), c.height(), c.width());
            let inpaint = match &opts.inpaint {
                Some(p) => {
                    p.checked(opts.n, shape)?;
                    let dims = [-1, shape.0 as i64, shape.1 as i64, shape.2 as i64];
                    let on_device =
                        |v: &[f32]| Tensor::from_slice(v).reshape(dims).to_device(device);
                    Some(ddpm_torch::sample::TorchInpainting {
                        known: on_device(&p.known),
                        mask: on_device(&p.mask),
                        resampling: p.resampling,
                    })
                }
                None => None,
            };
            let x = ddpm_torch::sample::sample_torch(
                &m.net,
                guide.as_ref().map(|g| (&g.net, w)),
                labels.as_ref().map(|(y, w)| (y, *w)),
                opts.guidance_interval,
                inpaint.as_ref(),
                &sched,
                &opts.sampler,
                opts.n,
                opts.seed,
                device,
                |k, n| {
                    bar.set_length(n as u64);
                    bar.set_position(k as u64);
                },
            )?;
            bar.finish_and_clear();
            (
                m.file.config,
                m.file.schedule,
                Precision::F32,
                ddpm_torch::model::to_f32_vec(&x)?,
            )
        }
    };
    Ok(Drawn {
        model: mcfg,
        schedule,
        precision,
        values,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The characters of [`ascii_art`], dark to light (the firmware prints its digit with the same
/// ramp).
pub const ASCII_RAMP: &[u8] = b" .:-=+*#%@";

/// One `h × w` u8 image as text: a character per pixel from [`ASCII_RAMP`], a line per row.
pub fn ascii_art(pixels: &[u8], h: usize, w: usize) -> String {
    let mut s = String::with_capacity(h * (w + 1));
    for row in pixels.chunks(w).take(h) {
        for &p in row {
            s.push(ASCII_RAMP[p as usize * ASCII_RAMP.len() / 256] as char);
        }
        s.push('\n');
    }
    s
}

/// Model outputs in [−1, 1] to u8 pixels with the core's mapping.
pub fn to_pixels(values: &[f32]) -> Vec<u8> {
    values.iter().map(|&v| ddpm_core::pixel_to_u8(v)).collect()
}

/// Layout of an image grid.
#[derive(Debug, Clone, Copy)]
pub struct GridLayout {
    /// Images per row.
    pub cols: usize,
    /// Rows.
    pub rows: usize,
    /// Border around and between images, in image pixels (before upscaling).
    pub border: usize,
    /// Integer upscale factor.
    pub scale: usize,
}

impl GridLayout {
    /// A near-square grid for `n` images (4×4 for 16) with a 2-pixel border, upscaled ×4.
    pub fn for_count(n: usize) -> Self {
        let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
        Self {
            cols,
            rows: n.div_ceil(cols).max(1),
            border: 2,
            scale: 4,
        }
    }
}

/// Renders `n` C×H×W u8 images (C = 1 grey or 3 RGB) into one grid image; returns
/// (width, height, channels, pixels).
pub fn render_grid(
    pixels: &[u8],
    n: usize,
    (c, h, w): (usize, usize, usize),
    layout: GridLayout,
) -> (usize, usize, usize, Vec<u8>) {
    let b = layout.border;
    let gw = layout.cols * w + (layout.cols + 1) * b;
    let gh = layout.rows * h + (layout.rows + 1) * b;
    let (sw, sh) = (gw * layout.scale, gh * layout.scale);
    let mut out = vec![0u8; sw * sh * c];
    for i in 0..n {
        let (gr, gc) = (i / layout.cols, i % layout.cols);
        let (oy, ox) = (b + gr * (h + b), b + gc * (w + b));
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let v = pixels[((i * c + ch) * h + y) * w + x];
                    for dy in 0..layout.scale {
                        let row = (oy + y) * layout.scale + dy;
                        for dx in 0..layout.scale {
                            let col = (ox + x) * layout.scale + dx;
                            out[(row * sw + col) * c + ch] = v;
                        }
                    }
                }
            }
        }
    }
    (sw, sh, c, out)
}

/// Writes `n` C×H×W u8 images as a PNG grid, atomically.
pub fn write_png_grid(
    path: &Path,
    pixels: &[u8],
    n: usize,
    chw: (usize, usize, usize),
    layout: GridLayout,
) -> Result<()> {
    let (w, h, c, data) = render_grid(pixels, n, chw, layout);
    let color = match c {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        other => anyhow::bail!("a PNG grid needs 1 or 3 channels, the images have {other}"),
    };
    ddpm_torch::atomic::write_atomic_with(path, |tmp| {
        let file = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        let mut enc = png::Encoder::new(file, w as u32, h as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&data)?;
        writer.finish()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_images_with_borders() {
        // Two 1×2×2 images side by side, border 1, no upscaling.
        let layout = GridLayout {
            cols: 2,
            rows: 1,
            border: 1,
            scale: 1,
        };
        let px = [1, 2, 3, 4, 5, 6, 7, 8];
        let (w, h, c, out) = render_grid(&px, 2, (1, 2, 2), layout);
        assert_eq!((w, h, c), (7, 4, 1));
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 0, 0, 0, 0,
            0, 1, 2, 0, 5, 6, 0,
            0, 3, 4, 0, 7, 8, 0,
            0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn sixteen_images_make_a_four_by_four_grid_scaled_by_four() {
        let l = GridLayout::for_count(16);
        assert_eq!((l.cols, l.rows, l.border, l.scale), (4, 4, 2, 4));
        let (w, h, _, _) = render_grid(&vec![255; 16 * 784], 16, (1, 28, 28), l);
        assert_eq!((w, h), ((4 * 28 + 5 * 2) * 4, (4 * 28 + 5 * 2) * 4));
        assert_eq!(GridLayout::for_count(5).rows, 2);
    }
}
