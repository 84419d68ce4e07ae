//! `trainer inpaint`: what is known of a digit (an image and a mask), completed by RePaint
//! through the sampler of [`crate::sample`], and the measurement of how well completions keep
//! the digit: the project's classifier's label of the completion against the original's, beside
//! two baselines (the masked image with the hidden pixels zero, and plain samples) and the
//! ceiling that half a digit allows (a classifier trained on the visible part only).
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ddpm_core::diffusion::{MaskShape, Resampling};

use crate::data::idx::{self, Mnist, Split};
use crate::eval::classifier::{Classifier, ClassifierOptions};
use crate::sample::{self, Inpaint, SampleOptions};

/// Which pixels are hidden (drawn by the model); the rest are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskSpec {
    /// A half or the centre (`ddpm_core::diffusion::MaskShape`).
    Shape(MaskShape),
    /// A PNG of the image's size: white (≥ 128) hidden, black kept.
    File(PathBuf),
}

impl MaskSpec {
    /// The four half masks, as the measurement takes them.
    pub const HALVES: [MaskSpec; 4] = [
        MaskSpec::Shape(MaskShape::Top),
        MaskSpec::Shape(MaskShape::Bottom),
        MaskSpec::Shape(MaskShape::Left),
        MaskSpec::Shape(MaskShape::Right),
    ];

    /// `top`, `bottom`, `left`, `right`, `center`, or a PNG file's path.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match (s, MaskShape::from_name(s)) {
            ("", _) => Err("give a mask: top, bottom, left, right, center or FILE.png".into()),
            (_, Some(shape)) => Ok(MaskSpec::Shape(shape)),
            ("centre", None) => Ok(MaskSpec::Shape(MaskShape::Center)),
            (path, None) => Ok(MaskSpec::File(PathBuf::from(path))),
        }
    }

    /// The mask's name in reports.
    pub fn name(&self) -> String {
        match self {
            MaskSpec::Shape(m) => m.name().into(),
            MaskSpec::File(p) => p.display().to_string(),
        }
    }

    /// The mask for `h`×`w` images: 1.0 where the pixel is kept, 0.0 where it is hidden.
    pub fn keep(&self, h: usize, w: usize) -> Result<Vec<f32>> {
        match self {
            MaskSpec::Shape(m) => {
                let mut keep = vec![0.0f32; h * w];
                m.fill(h, w, &mut keep)
                    .map_err(|e| anyhow!("--mask {}: {e}", m.name()))?;
                Ok(keep)
            }
            MaskSpec::File(path) => {
                let (pixels, ph, pw) = read_png_gray(path)?;
                if (ph, pw) != (h, w) {
                    bail!(
                        "--mask {}: the mask is {ph}×{pw}, the images are {h}×{w}",
                        path.display()
                    );
                }
                Ok(pixels
                    .iter()
                    .map(|&p| if p >= 128 { 0.0 } else { 1.0 })
                    .collect())
            }
        }
    }
}

/// A PNG's pixels as 8-bit grey (colour averaged, alpha dropped) and its height and width.
pub fn read_png_gray(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| anyhow!("{}: not a readable PNG ({e})", path.display()))?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| anyhow!("{}: not a readable PNG ({e})", path.display()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let colour = match info.color_type {
        png::ColorType::GrayscaleAlpha => 1,
        png::ColorType::Rgba => 3,
        _ => channels,
    };
    let gray = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|px| {
            let sum: u32 = px[..colour].iter().map(|&v| u32::from(v)).sum();
            (sum / colour as u32) as u8
        })
        .collect();
    Ok((gray, h, w))
}

/// The digit to complete: a PNG (grey, or colour averaged) or one image of an IDX file (u8,
/// N×H×W; `index` picks it, default the first). Returns its pixels, height and width.
pub fn read_image(path: &Path, index: Option<usize>) -> Result<(Vec<u8>, usize, usize)> {
    let mut head = [0u8; 8];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("--image {}", path.display()))?;
    if head[..n.min(8)] == *b"\x89PNG\r\n\x1a\n" {
        if index.is_some() {
            bail!(
                "--index picks an image of an IDX file; {} is a PNG",
                path.display()
            );
        }
        return read_png_gray(path);
    }
    let arr = idx::read_idx(path).map_err(|e| {
        anyhow!(
            "--image {}: neither a PNG nor an IDX file of images ({e})",
            path.display()
        )
    })?;
    if arr.dims.len() != 3 {
        bail!(
            "--image {}: an IDX file of images is N×H×W; this one has dimensions {:?}",
            path.display(),
            arr.dims
        );
    }
    let (count, h, w) = (arr.dims[0], arr.dims[1], arr.dims[2]);
    let i = index.unwrap_or(0);
    if i >= count {
        bail!(
            "--index {i}: {} holds {count} images (0 to {})",
            path.display(),
            count.saturating_sub(1)
        );
    }
    Ok((arr.data[i * h * w..][..h * w].to_vec(), h, w))
}

/// u8 pixels in the model's range: p/127.5 − 1 (which [`ddpm_core::pixel_to_u8`] maps back
/// to p exactly).
pub fn to_model(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&p| f32::from(p) / 127.5 - 1.0).collect()
}

/// The pixels with the hidden ones (mask < 1) set to `fill`.
pub fn fill_hidden(pixels: &[u8], keep: &[f32], fill: u8) -> Vec<u8> {
    pixels
        .iter()
        .zip(keep.iter().cycle())
        .map(|(&p, &k)| if k >= 1.0 { p } else { fill })
        .collect()
}

/// The grey that marks hidden pixels in the grid's "masked input" image.
pub const HIDDEN_GREY: u8 = 128;

/// The largest |completion − original| over kept pixels (u8 levels) of `n` images.
pub fn kept_deviation(completed: &[u8], original: &[u8], keep: &[f32]) -> u8 {
    completed
        .iter()
        .zip(original)
        .zip(keep.iter().cycle())
        .filter(|(_, &k)| k >= 1.0)
        .map(|((&a, &b), _)| a.abs_diff(b))
        .max()
        .unwrap_or(0)
}

/// How to measure inpainting.
#[derive(Debug, Clone)]
pub struct MeasureOptions<'a> {
    /// The sampling settings (model, guide, sampler, seed, backend, progress, class); `n` and
    /// `inpaint` are set per mask.
    pub sampling: SampleOptions<'a>,
    /// Test digits per mask (the first ones of the MNIST test split).
    pub digits: usize,
    /// Masks.
    pub masks: Vec<MaskSpec>,
    /// RePaint's resampling.
    pub resampling: Resampling,
    /// MNIST directory.
    pub data: PathBuf,
    /// The judging classifier.
    pub classifier: &'a Classifier,
    /// Train a classifier on the visible part of each mask for this many epochs and report
    /// the ceiling E[p(true label | visible part)] (`None`: no ceiling).
    pub ceiling_epochs: Option<usize>,
    /// `--class visible`: complete each digit with the class-conditional model, its class
    /// drawn from p(class | visible part) of a classifier trained this many epochs on that
    /// part (seed [`VISIBLE_CLASS_SEED`]), under classifier-free guidance of this weight.
    pub class_from_visible: Option<(usize, f32)>,
}

/// One mask's figures.
#[derive(Debug, Clone)]
pub struct MaskReport {
    /// The mask's name.
    pub mask: String,
    /// Share of completions the classifier labels as the original.
    pub completed: f64,
    /// Share of zero-filled masked images labelled as the original.
    pub zero_filled: f64,
    /// E[p(true label | visible part)] on the test split, when measured.
    pub ceiling: Option<f64>,
    /// The largest kept-pixel deviation of a completion from the original (u8 levels).
    pub kept_max_diff: u8,
    /// Seconds of drawing.
    pub seconds: f64,
}

/// All the figures of a measurement.
#[derive(Debug, Clone)]
pub struct MeasureReport {
    /// Share of plain samples labelled as the test digit of the same index.
    pub unconditional: f64,
    /// Per mask.
    pub masks: Vec<MaskReport>,
    /// Test digits per mask.
    pub digits: usize,
}

/// Share of `predicted` equal to `labels`.
fn agreement(predicted: &[u8], labels: &[u8]) -> f64 {
    let same = predicted.iter().zip(labels).filter(|(a, b)| a == b).count();
    same as f64 / predicted.len().max(1) as f64
}

/// Completes the first `digits` MNIST test digits under every mask and judges them.
pub fn measure(opts: &MeasureOptions<'_>, log: &mut dyn FnMut(&str)) -> Result<MeasureReport> {
    let mut test = Mnist::load(&opts.data, Split::Test, 28, 28)
        .with_context(|| format!("MNIST test split in {}", opts.data.display()))?;
    let all_test = test.clone();
    if opts.digits == 0 || opts.digits > test.len {
        bail!(
            "--measure {}: the test split holds {} digits",
            opts.digits,
            test.len
        );
    }
    test.truncate(opts.digits);
    let n = opts.digits;
    let clf = opts.classifier;
    let plain = sample::draw(&SampleOptions {
        n,
        inpaint: None,
        ..opts.sampling.clone()
    })?;
    let (plain_labels, _) = clf.predict(&sample::to_pixels(&plain.values));
    let unconditional = agreement(&plain_labels, &test.labels);
    log(&format!(
        "plain samples: {:.1}% share the test digit's label ({n} samples, {:.0} s)",
        100.0 * unconditional,
        plain.seconds
    ));
    let mut masks = Vec::new();
    for spec in &opts.masks {
        let keep = spec.keep(test.height, test.width)?;
        let classes = match opts.class_from_visible {
            Some((epochs, weight)) => {
                let device = clf.device();
                let c = visible_classifier(
                    &opts.data,
                    &all_test,
                    &keep,
                    epochs,
                    VISIBLE_CLASS_SEED,
                    device,
                )?;
                let probs = c.probabilities(&fill_hidden(&test.images, &keep, 0));
                Some((draw_classes(&probs, n, opts.sampling.seed), weight))
            }
            None => opts.sampling.classes.clone(),
        };
        let drawn = sample::draw(&SampleOptions {
            n,
            classes,
            inpaint: Some(Inpaint {
                known: to_model(&test.images),
                mask: keep.repeat(n),
                resampling: opts.resampling,
            }),
            ..opts.sampling.clone()
        })?;
        let pixels = sample::to_pixels(&drawn.values);
        let (labels, _) = clf.predict(&pixels);
        let zero = fill_hidden(&test.images, &keep, 0);
        let (zero_labels, _) = clf.predict(&zero);
        let ceiling = match opts.ceiling_epochs {
            Some(epochs) => Some(visible_ceiling(
                &opts.data,
                &all_test,
                &keep,
                epochs,
                clf.device(),
            )?),
            None => None,
        };
        let r = MaskReport {
            mask: spec.name(),
            completed: agreement(&labels, &test.labels),
            zero_filled: agreement(&zero_labels, &test.labels),
            ceiling,
            kept_max_diff: kept_deviation(&pixels, &test.images, &keep),
            seconds: drawn.seconds,
        };
        log(&format!(
            "{} hidden: completions {:.1}%, zero-filled {:.1}%{}, kept pixels within {} \
             levels ({:.0} s)",
            r.mask,
            100.0 * r.completed,
            100.0 * r.zero_filled,
            r.ceiling
                .map_or(String::new(), |c| format!(", ceiling {:.1}%", 100.0 * c)),
            r.kept_max_diff,
            r.seconds
        ));
        masks.push(r);
    }
    Ok(MeasureReport {
        unconditional,
        masks,
        digits: n,
    })
}

/// The seed of the classifier whose estimate of p(class | kept part) `--class visible` draws
/// classes from; the ceiling's classifier has seed 0, so the two are independent estimates.
pub const VISIBLE_CLASS_SEED: u64 = 1;

/// A classifier of the kept part of digits under `keep`: the project's classifier (its
/// settings, seed `seed`) trained `epochs` epochs on the MNIST training digits with the hidden
/// pixels zero, its accuracy taken on the test digits `test` so masked.
pub fn visible_classifier(
    data: &Path,
    test: &Mnist,
    keep: &[f32],
    epochs: usize,
    seed: u64,
    device: tch::Device,
) -> Result<Classifier> {
    let mut train = Mnist::load(data, Split::Train, 28, 28)
        .with_context(|| format!("MNIST training split in {}", data.display()))?;
    train.images = fill_hidden(&train.images, keep, 0);
    let mut test_visible = test.clone();
    test_visible.images = fill_hidden(&test.images, keep, 0);
    let opts = ClassifierOptions {
        epochs,
        seed,
        min_accuracy: 0.0,
        progress: false,
        ..ClassifierOptions::standard(device)
    };
    let (net, _) = Classifier::train(&opts, &train, &test_visible, &mut |_| {})?;
    Ok(net)
}

/// E[p(true label | visible part)] over the whole MNIST test split, from a classifier trained
/// `epochs` epochs on the training images with the hidden pixels zero (the project's classifier
/// and settings otherwise).
pub fn visible_ceiling(
    data: &Path,
    test: &Mnist,
    keep: &[f32],
    epochs: usize,
    device: tch::Device,
) -> Result<f64> {
    let net = visible_classifier(data, test, keep, epochs, 0, device)?;
    let probs = net.probabilities(&fill_hidden(&test.images, keep, 0));
    let sum: f64 = probs
        .chunks_exact(10)
        .zip(&test.labels)
        .map(|(p, &y)| f64::from(p[y as usize]))
        .sum();
    Ok(sum / test.len as f64)
}

/// The classes of completions `0..n` drawn from `probs`, p(class | kept part) of each masked
/// image (10 values per image: one image's shared by every completion, or one row per
/// completion): completion i's class by inverse transform of a uniform number derived from
/// noise seed `seed + i`, so that the completions follow p(hidden | kept) = Σ_class
/// p(class | kept) · p(hidden | kept, class) rather than all taking the likeliest class.
pub fn draw_classes(probs: &[f32], n: usize, seed: u64) -> Vec<u32> {
    let rows = probs.len() / 10;
    (0..n)
        .map(|i| {
            let p = &probs[(i % rows.max(1)) * 10..][..10];
            let u = unit_uniform(seed.wrapping_add(i as u64));
            let mut acc = 0.0f64;
            for (k, &pk) in p.iter().enumerate() {
                acc += f64::from(pk);
                if u < acc {
                    return k as u32;
                }
            }
            // Rounding left the sum just under u: the last class with any probability.
            p.iter().rposition(|&pk| pk > 0.0).unwrap_or(9) as u32
        })
        .collect()
}

/// A uniform number in [0, 1) from `seed` (SplitMix64's finaliser, 53 bits).
fn unit_uniform(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The report as a table.
pub fn format_report(r: &MeasureReport) -> String {
    let mut s = format!(
        "inpainting, {} MNIST test digits per mask: share labelled as the original\n\
         {:<8} {:>11} {:>11} {:>11} {:>9} {:>10} {:>10}\n",
        r.digits, "hidden", "completed", "zero-fill", "plain", "ceiling", "/ceiling", "kept diff"
    );
    for m in &r.masks {
        let pct = |v: f64| format!("{:.1}%", 100.0 * v);
        s += &format!(
            "{:<8} {:>11} {:>11} {:>11} {:>9} {:>10} {:>10}\n",
            m.mask,
            pct(m.completed),
            pct(m.zero_filled),
            pct(r.unconditional),
            m.ceiling.map_or("-".into(), pct),
            m.ceiling
                .map_or("-".into(), |c| format!("{:.1}%", 100.0 * m.completed / c)),
            m.kept_max_diff
        );
    }
    s
}

/// The report as JSON.
pub fn report_json(r: &MeasureReport) -> String {
    let masks: Vec<String> = r
        .masks
        .iter()
        .map(|m| {
            format!(
                "{{\"mask\": {:?}, \"completed\": {:.4}, \"zero_filled\": {:.4}, \"ceiling\": {}, \
                 \"kept_max_diff\": {}, \"seconds\": {:.1}}}",
                m.mask,
                m.completed,
                m.zero_filled,
                m.ceiling.map_or("null".into(), |c| format!("{c:.4}")),
                m.kept_max_diff,
                m.seconds
            )
        })
        .collect();
    format!(
        "{{\"digits\": {}, \"unconditional\": {:.4}, \"masks\": [{}]}}\n",
        r.digits,
        r.unconditional,
        masks.join(", ")
    )
}
