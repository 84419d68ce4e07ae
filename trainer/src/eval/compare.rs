//! `compare-int8`: sample quality of an int8 model against its f32 original with the same seeds.
//!
//! Image `i` of both sets starts from the noise of seed `seed + i` and goes through the same
//! sampler: the f32 model through `ddpm_core::host::HostModel::sample`, the int8 model through
//! the host int8 executor (`ddpm_core::simple_unet::fast_int8`), whose samples equal the
//! row-streaming executor's (`ddpm_core::simple_unet::stream::sample_streaming`, as on a
//! microcontroller) bit for bit.
//! Both are turned into u8 pixels with `ddpm_core::pixel_to_u8`. The figures:
//! - the mean absolute pixel difference (0–255 scale) and the largest one;
//! - the fraction of images the project's classifier ([`super::classifier`]) labels identically;
//! - for each set, the share the classifier labels with probability above
//!   [`CONFIDENT_PROB`] (its "recognisable digit" share) and the class histogram.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use ddpm_core::diffusion::SamplerConfig;
use ddpm_core::file::{ModelFile, Precision};
use ddpm_core::host::HostModel;
use ddpm_core::{ModelConfig, SimpleUNetConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::describe::{describe_model, describe_schedule};
use crate::draw::Draws;
use crate::eval::classifier::{Classifier, CLASSES, CONFIDENT_PROB, SIDE};
use crate::sample::{to_pixels, GridLayout};

/// What to sample.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Images per model.
    pub n: usize,
    /// Sampler (the same for both models).
    pub sampler: SamplerConfig,
    /// Image `i` uses noise seed `seed + i`.
    pub seed: u64,
    /// Threads for the int8 samples (the f32 ones take a small share of the time).
    pub workers: usize,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

/// The two sets of samples, as u8 pixels.
#[derive(Debug, Clone)]
pub struct SamplePair {
    /// Sizes of both models.
    pub config: SimpleUNetConfig,
    /// f32 samples, n·C·H·W.
    pub f32_pixels: Vec<u8>,
    /// int8 samples, n·C·H·W.
    pub int8_pixels: Vec<u8>,
    /// Wall time of the f32 samples, seconds.
    pub f32_seconds: f64,
    /// Wall time of the int8 samples, seconds.
    pub int8_seconds: f64,
}

/// What the classifier says about the two sets.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelAgreement {
    /// Images compared.
    pub n: usize,
    /// Fraction of image pairs given the same label.
    pub same_label: f64,
    /// Share of f32 images labelled with probability > [`CONFIDENT_PROB`].
    pub confident_f32: f64,
    /// Share of int8 images labelled with probability > [`CONFIDENT_PROB`].
    pub confident_int8: f64,
    /// Labels of the f32 images, per class.
    pub histogram_f32: [usize; CLASSES],
    /// Labels of the int8 images, per class.
    pub histogram_int8: [usize; CLASSES],
}

/// All figures of one comparison.
#[derive(Debug, Clone)]
pub struct CompareReport {
    /// Images per model.
    pub n: usize,
    /// Mean absolute pixel difference, 0–255 scale.
    pub mean_abs_diff: f64,
    /// Largest absolute pixel difference.
    pub max_abs_diff: u8,
    /// The classifier's figures.
    pub labels: LabelAgreement,
    /// Wall time of the f32 samples, seconds.
    pub f32_seconds: f64,
    /// Wall time of the int8 samples, seconds.
    pub int8_seconds: f64,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read model file", path.display()))
}

/// Checks that `f32_bytes` is an f32 model file and `int8_bytes` an int8 one of the same
/// network sizes and noise schedule; returns the sizes. `names` label the two in errors.
pub fn check_pair(
    f32_bytes: &[u8],
    int8_bytes: &[u8],
    names: (&str, &str),
) -> Result<SimpleUNetConfig> {
    let fa = ModelFile::parse(f32_bytes).map_err(|e| anyhow!("{}: {e}", names.0))?;
    let fb = ModelFile::parse(int8_bytes).map_err(|e| anyhow!("{}: {e}", names.1))?;
    let (ha, hb) = (fa.header(), fb.header());
    let precision = |p: Precision| match p {
        Precision::F32 => "f32",
        Precision::Int8 => "int8",
    };
    if ha.precision != Precision::F32 {
        bail!(
            "{}: an {} model file; --model takes the f32 one",
            names.0,
            precision(ha.precision)
        );
    }
    if hb.precision != Precision::Int8 {
        bail!(
            "{}: an {} model file; --int8-model takes one written by `trainer export --int8`",
            names.1,
            precision(hb.precision)
        );
    }
    let (ModelConfig::SimpleUNet(ca), ModelConfig::SimpleUNet(cb)) = (ha.model, hb.model) else {
        bail!(
            "{} and {}: int8 comparison runs SimpleUNet models only (found {} and {})",
            names.0,
            names.1,
            ha.model.arch_name(),
            hb.model.arch_name()
        );
    };
    if ca != cb {
        bail!(
            "{} is a {} but {} a {}: not the same network",
            names.0,
            describe_model(&ha.model),
            names.1,
            describe_model(&hb.model)
        );
    }
    if ha.schedule != hb.schedule {
        bail!(
            "{} has schedule {} but {} has {}: not the same model",
            names.0,
            describe_schedule(&ha.schedule),
            names.1,
            describe_schedule(&hb.schedule)
        );
    }
    Ok(ca)
}

/// `n` samples of the f32 model file `bytes` through `HostModel::sample` (image `i` from seed
/// `seed + i`); `done` is called after each image. Returns n·C·H·W values in [−1, 1]-ish.
pub fn sample_f32(
    bytes: &[u8],
    n: usize,
    cfg: &SamplerConfig,
    seed: u64,
    done: &mut dyn FnMut(),
) -> Result<Vec<f32>> {
    let mut host = HostModel::from_bytes(bytes).map_err(|e| anyhow!("{e}"))?;
    let len = host.config().image_len();
    let mut out = Vec::with_capacity(n * len);
    for i in 0..n {
        let one = host
            .sample(1, cfg, seed.wrapping_add(i as u64))
            .map_err(|e| anyhow!("f32 sampling: {e}"))?;
        out.extend_from_slice(&one);
        done();
    }
    Ok(out)
}

/// The samples `draws` asks for from the int8 model file `bytes` ([`crate::draw::sample_int8_file`]).
pub fn sample_int8(bytes: &[u8], draws: Draws<'_>, done: &(dyn Fn() + Sync)) -> Result<Vec<f32>> {
    sample_int8_guided(bytes, None, draws, done)
}

/// [`sample_int8`] guided by the int8 file `guide` = (bytes, w) if given.
pub fn sample_int8_guided(
    bytes: &[u8],
    guide: Option<(&[u8], f32)>,
    draws: Draws<'_>,
    done: &(dyn Fn() + Sync),
) -> Result<Vec<f32>> {
    let file = ModelFile::parse(bytes).map_err(|e| anyhow!("{e}"))?;
    let guide_file = match guide {
        Some((g, _)) => Some(ModelFile::parse(g).map_err(|e| anyhow!("the guide: {e}"))?),
        None => None,
    };
    let guide = guide_file.as_ref().zip(guide.map(|(_, w)| w));
    crate::draw::sample_int8_file(&file, guide, draws, done)
}

/// Samples both model files with the same seeds and sampler.
pub fn sample_pair(f32_path: &Path, int8_path: &Path, opts: &CompareOptions) -> Result<SamplePair> {
    if opts.n == 0 {
        bail!("compare: at least one image is needed");
    }
    let (a, b) = (read(f32_path)?, read(int8_path)?);
    let names = (
        f32_path.display().to_string(),
        int8_path.display().to_string(),
    );
    let config = check_pair(&a, &b, (&names.0, &names.1))?;
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(2 * opts.n as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} images ({msg}) [{elapsed_precise}<{eta_precise}]",
            )
            .expect("valid progress template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    bar.set_message("f32");
    let t0 = Instant::now();
    let fa = sample_f32(&a, opts.n, &opts.sampler, opts.seed, &mut || bar.inc(1))
        .with_context(|| names.0.clone())?;
    let f32_seconds = t0.elapsed().as_secs_f64();
    bar.set_message("int8 streaming");
    let t1 = Instant::now();
    let draws = Draws::new(opts.n, &opts.sampler, opts.seed, opts.workers);
    let fb = sample_int8(&b, draws, &|| bar.inc(1)).with_context(|| names.1.clone())?;
    let int8_seconds = t1.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(SamplePair {
        config,
        f32_pixels: to_pixels(&fa),
        int8_pixels: to_pixels(&fb),
        f32_seconds,
        int8_seconds,
    })
}

/// Mean absolute difference of two equally long u8 buffers (0–255 scale), and the largest.
pub fn abs_diff(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len(), "abs_diff: buffers of different lengths");
    if a.is_empty() {
        return (0.0, 0);
    }
    let (sum, max) = a.iter().zip(b).fold((0u64, 0u8), |(s, m), (&x, &y)| {
        let d = x.abs_diff(y);
        (s + d as u64, m.max(d))
    });
    (sum as f64 / a.len() as f64, max)
}

/// The classifier's labels of two sets of n 28×28 images, compared pairwise.
pub fn label_agreement(clf: &Classifier, a: &[u8], b: &[u8]) -> LabelAgreement {
    assert_eq!(a.len(), b.len(), "label_agreement: sets of different sizes");
    let (la, pa) = clf.predict(a);
    let (lb, pb) = clf.predict(b);
    let n = la.len();
    let share = |p: &[f32]| p.iter().filter(|&&v| v > CONFIDENT_PROB).count() as f64 / n as f64;
    let hist = |l: &[u8]| {
        let mut h = [0usize; CLASSES];
        for &k in l {
            h[k as usize] += 1;
        }
        h
    };
    LabelAgreement {
        n,
        same_label: la.iter().zip(&lb).filter(|(x, y)| x == y).count() as f64 / n as f64,
        confident_f32: share(&pa),
        confident_int8: share(&pb),
        histogram_f32: hist(&la),
        histogram_int8: hist(&lb),
    }
}

/// Arranges two sets of `n` C×H×W images for a grid: rows of `cols` f32 images, each followed
/// by the row of their int8 counterparts, so every int8 image sits right below its f32 twin.
/// Returns the pixels of all grid slots (empty slots black) and the layout.
pub fn side_by_side(
    top: &[u8],
    bottom: &[u8],
    n: usize,
    (c, h, w): (usize, usize, usize),
) -> (Vec<u8>, GridLayout) {
    let len = c * h * w;
    assert!(
        top.len() == n * len && bottom.len() == n * len,
        "side_by_side: expected {n} images of {len} pixels in each set"
    );
    let base = GridLayout::for_count(n);
    let layout = GridLayout {
        rows: 2 * base.rows,
        ..base
    };
    let mut px = vec![0u8; layout.rows * layout.cols * len];
    for i in 0..n {
        let (r, col) = (i / base.cols, i % base.cols);
        for (set, src) in [top, bottom].into_iter().enumerate() {
            let slot = (2 * r + set) * base.cols + col;
            px[slot * len..][..len].copy_from_slice(&src[i * len..][..len]);
        }
    }
    (px, layout)
}

/// Writes [`side_by_side`] as a PNG, atomically.
pub fn write_side_by_side(
    path: &Path,
    top: &[u8],
    bottom: &[u8],
    n: usize,
    chw: (usize, usize, usize),
) -> Result<()> {
    let (px, layout) = side_by_side(top, bottom, n, chw);
    crate::sample::write_png_grid(path, &px, layout.rows * layout.cols, chw, layout)
}

/// Figures of a sample pair.
pub fn report(pair: &SamplePair, clf: &Classifier) -> Result<CompareReport> {
    let c = pair.config;
    if (c.channels, c.height, c.width) != (1, SIDE as u32, SIDE as u32) {
        bail!(
            "the classifier reads 1×28×28 images; the models draw {}×{}×{}",
            c.channels,
            c.height,
            c.width
        );
    }
    let (mean_abs_diff, max_abs_diff) = abs_diff(&pair.f32_pixels, &pair.int8_pixels);
    let labels = label_agreement(clf, &pair.f32_pixels, &pair.int8_pixels);
    Ok(CompareReport {
        n: labels.n,
        mean_abs_diff,
        max_abs_diff,
        labels,
        f32_seconds: pair.f32_seconds,
        int8_seconds: pair.int8_seconds,
    })
}

/// Samples both models, writes the side-by-side PNG to `png` (when given) and returns the
/// figures together with the samples.
pub fn compare(
    f32_path: &Path,
    int8_path: &Path,
    clf: &Classifier,
    opts: &CompareOptions,
    png: Option<&Path>,
) -> Result<(CompareReport, SamplePair)> {
    let pair = sample_pair(f32_path, int8_path, opts)?;
    let rep = report(&pair, clf)?;
    if let Some(p) = png {
        let c = pair.config;
        write_side_by_side(
            p,
            &pair.f32_pixels,
            &pair.int8_pixels,
            opts.n,
            (c.channels as usize, c.height as usize, c.width as usize),
        )?;
    }
    Ok((rep, pair))
}

/// A histogram as "0:12 1:30 …".
pub fn format_histogram(h: &[usize; CLASSES]) -> String {
    h.iter()
        .enumerate()
        .map(|(k, c)| format!("{k}:{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abs_diff_on_known_values() {
        assert_eq!(abs_diff(&[0, 10, 255, 7], &[4, 10, 0, 9]), (65.25, 255));
        assert_eq!(abs_diff(&[], &[]), (0.0, 0));
    }

    #[test]
    fn int8_image_sits_below_its_f32_twin() {
        // Five 1×1×1 images: grid of 3 columns × 2 rows, doubled to 4 rows.
        let top = [1, 2, 3, 4, 5];
        let bottom = [11, 12, 13, 14, 15];
        let (px, l) = side_by_side(&top, &bottom, 5, (1, 1, 1));
        assert_eq!((l.cols, l.rows), (3, 4));
        assert_eq!(px, [1, 2, 3, 11, 12, 13, 4, 5, 0, 14, 15, 0]);
    }
}
