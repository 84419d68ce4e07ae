//! A small MNIST classifier, trained once by the trainer and cached, that judges samples: which
//! digit an image shows, how confident it is, and a 128-dimensional "penultimate features"
//! vector for a Fréchet distance between sets of images.
//!
//! Architecture (206,922 parameters, 0.83 MB of f32 in the safetensors file):
//! conv 3×3 1→16 (padding 1), ReLU, max-pool 2 → 16×14×14;
//! conv 3×3 16→32 (padding 1), ReLU, max-pool 2 → 32×7×7;
//! linear 1568→128, ReLU (the features); linear 128→10 (the logits).
//! Inputs are scaled like the trainer's: pixel/127.5 − 1, i.e. [−1, 1].
//!
//! The committed `models/mnist_classifier.safetensors` was made with
//! `trainer classifier --device cpu --threads 1` (the defaults: 5 epochs, batch 64, Adam
//! lr 1e-3, seed 0, the full 60,000-image MNIST train split): test accuracy 98.94% on the
//! 10,000 test images (98.62% after 2 epochs, 98.78% after 3), trained in 77 s on one CPU thread.
//! Other thread counts may sum in another order and land a little differently.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::data::idx::{Mnist, Split};
use crate::train::derive_seed;

/// Image height and width the classifier takes.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const IMAGE_LEN: usize = SIDE * SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;
/// Length of the penultimate feature vector.
pub const FEATURES: usize = 128;
/// Test accuracy the cached classifier must reach (issue 7: "test accuracy ≥ 98.5%"; the
/// PyTorch classifier the figures came from had 98.6%).
pub const REQUIRED_TEST_ACCURACY: f64 = 0.985;
/// A sample counts as confidently recognised when the top class probability is above this
/// (the threshold of issue 7's figures: 96.6% of real test digits pass it).
pub const CONFIDENT_PROB: f32 = 0.9;
/// Default location of the cached classifier, relative to the project root.
pub const DEFAULT_PATH: &str = "models/mnist_classifier.safetensors";

/// Architecture tag stored in the file; a file with another tag is refused.
const ARCH: &str = "mnist-cnn conv16-conv32-fc128-fc10 v1";
/// Images per forward pass when predicting (bounds memory, not results).
const EVAL_CHUNK: usize = 1000;
const TAG_INIT: u64 = 101;
const TAG_EPOCH: u64 = 102;

/// How to train the classifier.
#[derive(Debug, Clone)]
pub struct ClassifierOptions {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per Adam step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of the initial weights and the shuffles.
    pub seed: u64,
    /// Where to train.
    pub device: Device,
    /// Train on the first N training images only (quick runs and tests).
    pub limit: Option<usize>,
    /// Test accuracy below which training is reported as failed (and nothing is cached).
    pub min_accuracy: f64,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

impl ClassifierOptions {
    /// The settings of the committed classifier.
    pub fn standard(device: Device) -> Self {
        Self {
            epochs: 5,
            batch_size: 64,
            lr: 1e-3,
            seed: 0,
            device,
            limit: None,
            min_accuracy: REQUIRED_TEST_ACCURACY,
            progress: true,
        }
    }
}

/// What training achieved.
#[derive(Debug, Clone, Copy)]
pub struct TrainReport {
    /// Images trained on.
    pub train_images: usize,
    /// Fraction of the test split labelled correctly.
    pub test_accuracy: f64,
    /// Test images evaluated.
    pub test_images: usize,
    /// Wall time of training (without loading data), seconds.
    pub seconds: f64,
}

/// The classifier network.
pub struct Classifier {
    vs: nn::VarStore,
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("arch", &ARCH)
            .field("device", &self.vs.device())
            .finish()
    }
}

/// u8 pixels (n×28×28) → an n×1×28×28 float tensor in [−1, 1] on `device`, scaled as
/// [`crate::train::images_to_device`] scales training images.
fn to_input(images: &[u8], device: Device) -> Tensor {
    assert!(
        images.len().is_multiple_of(IMAGE_LEN),
        "classifier input: {} bytes is not a whole number of 28×28 images",
        images.len()
    );
    let n = (images.len() / IMAGE_LEN) as i64;
    let x = Tensor::from_slice(images)
        .view([n, 1, SIDE as i64, SIDE as i64])
        .to_device(device)
        .to_kind(Kind::Float);
    (x / 255.0 - 0.5) / 0.5
}

impl Classifier {
    /// Fresh weights (libtorch's default initialisation) from `seed`.
    pub fn new(device: Device, seed: u64) -> Self {
        tch::manual_seed(derive_seed(seed, TAG_INIT, 0));
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let pad = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let conv1 = nn::conv2d(&root / "conv1", 1, 16, 3, pad);
        let conv2 = nn::conv2d(&root / "conv2", 16, 32, 3, pad);
        let fc1 = nn::linear(
            &root / "fc1",
            32 * 7 * 7,
            FEATURES as i64,
            Default::default(),
        );
        let fc2 = nn::linear(
            &root / "fc2",
            FEATURES as i64,
            CLASSES as i64,
            Default::default(),
        );
        Self {
            vs,
            conv1,
            conv2,
            fc1,
            fc2,
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Number of weights.
    pub fn param_count(&self) -> usize {
        self.vs
            .variables()
            .values()
            .map(|t| t.numel())
            .sum::<usize>()
    }

    fn features_t(&self, x: &Tensor) -> Tensor {
        x.apply(&self.conv1)
            .relu()
            .max_pool2d_default(2)
            .apply(&self.conv2)
            .relu()
            .max_pool2d_default(2)
            .flatten(1, -1)
            .apply(&self.fc1)
            .relu()
    }

    fn logits_t(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.features_t(x))
    }

    /// Runs `f` on chunks of the images without gradients and concatenates the f32 results.
    fn map_chunks(&self, images: &[u8], f: impl Fn(&Tensor) -> Tensor) -> Vec<f32> {
        let mut out = Vec::new();
        tch::no_grad(|| {
            for chunk in images.chunks(EVAL_CHUNK * IMAGE_LEN) {
                let y = f(&to_input(chunk, self.device()))
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float)
                    .contiguous()
                    .flatten(0, -1);
                out.extend(Vec::<f32>::try_from(&y).expect("f32 tensor to Vec"));
            }
        });
        out
    }

    /// Class probabilities, n × 10 row-major, of u8 images (n×28×28).
    ///
    /// # Panics
    /// When `images.len()` is not a multiple of 784.
    pub fn probabilities(&self, images: &[u8]) -> Vec<f32> {
        self.map_chunks(images, |x| self.logits_t(x).softmax(-1, Kind::Float))
    }

    /// The most likely label of each image and its probability.
    ///
    /// # Panics
    /// When `images.len()` is not a multiple of 784.
    pub fn predict(&self, images: &[u8]) -> (Vec<u8>, Vec<f32>) {
        let probs = self.probabilities(images);
        probs
            .chunks_exact(CLASSES)
            .map(|p| {
                let (k, &v) = p
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .expect("10 classes");
                (k as u8, v)
            })
            .unzip()
    }

    /// Penultimate features (after the hidden layer's ReLU), n × [`FEATURES`] row-major.
    ///
    /// # Panics
    /// When `images.len()` is not a multiple of 784.
    pub fn features(&self, images: &[u8]) -> Vec<f32> {
        self.map_chunks(images, |x| self.features_t(x))
    }

    /// Fraction of `data`'s images labelled correctly.
    pub fn accuracy(&self, data: &Mnist) -> f64 {
        let (labels, _) = self.predict(&data.images);
        let right = labels
            .iter()
            .zip(&data.labels)
            .filter(|(a, b)| a == b)
            .count();
        right as f64 / data.len.max(1) as f64
    }

    /// Trains fresh weights on `train` with Adam (cross-entropy), then measures accuracy on
    /// `test`. Fails when the accuracy is below `opts.min_accuracy`.
    pub fn train(
        opts: &ClassifierOptions,
        train: &Mnist,
        test: &Mnist,
        log: &mut dyn FnMut(&str),
    ) -> Result<(Self, TrainReport)> {
        for (what, d) in [("training", train), ("test", test)] {
            if (d.height, d.width) != (SIDE, SIDE) {
                bail!(
                    "{}: the classifier takes 28×28 images, the {what} images are {}×{}",
                    d.images_path.display(),
                    d.height,
                    d.width
                );
            }
        }
        if opts.batch_size == 0 || opts.epochs == 0 {
            bail!("classifier: epochs and batch size must be at least 1");
        }
        let n = opts.limit.map_or(train.len, |l| l.min(train.len));
        if n == 0 {
            bail!("{}: no training images", train.images_path.display());
        }
        let start = Instant::now();
        let net = Self::new(opts.device, opts.seed);
        let mut opt = nn::Adam::default()
            .build(&net.vs, opts.lr)
            .context("classifier: creating the Adam optimizer")?;
        let x_all = to_input(&train.images[..n * IMAGE_LEN], opts.device);
        let y_all = Tensor::from_slice(&train.labels[..n])
            .to_kind(Kind::Int64)
            .to_device(opts.device);
        let steps_per_epoch = n.div_ceil(opts.batch_size);
        let bar = if opts.progress && std::io::stderr().is_terminal() {
            let b = ProgressBar::new((steps_per_epoch * opts.epochs) as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps, loss {msg} [{elapsed_precise}<{eta_precise}]",
                )
                .expect("valid progress template"),
            );
            b
        } else {
            ProgressBar::hidden()
        };
        for epoch in 0..opts.epochs {
            tch::manual_seed(derive_seed(opts.seed, TAG_EPOCH, epoch as u64));
            let perm = Tensor::randperm(n as i64, (Kind::Int64, opts.device));
            let mut sum = 0.0f64;
            for s in 0..steps_per_epoch {
                let lo = s * opts.batch_size;
                let len = opts.batch_size.min(n - lo);
                let idx = perm.narrow(0, lo as i64, len as i64);
                let x = x_all.index_select(0, &idx);
                let y = y_all.index_select(0, &idx);
                let loss = net.logits_t(&x).cross_entropy_for_logits(&y);
                opt.backward_step(&loss);
                let l = loss.double_value(&[]);
                if !l.is_finite() {
                    bail!(
                        "classifier: loss became {l} at epoch {} step {s}",
                        epoch + 1
                    );
                }
                sum += l;
                bar.set_message(format!("{l:.4}"));
                bar.inc(1);
            }
            let acc = net.accuracy(test);
            bar.suspend(|| {
                log(&format!(
                    "classifier epoch {}/{}: mean loss {:.4}, test accuracy {:.2}%",
                    epoch + 1,
                    opts.epochs,
                    sum / steps_per_epoch as f64,
                    100.0 * acc
                ))
            });
        }
        bar.finish_and_clear();
        let test_accuracy = net.accuracy(test);
        let report = TrainReport {
            train_images: n,
            test_accuracy,
            test_images: test.len,
            seconds: start.elapsed().as_secs_f64(),
        };
        if test_accuracy < opts.min_accuracy {
            bail!(
                "classifier: test accuracy {:.2}% is below the required {:.2}% \
                 (more --epochs, or another --seed)",
                100.0 * test_accuracy,
                100.0 * opts.min_accuracy
            );
        }
        Ok((net, report))
    }

    /// Writes the weights (and the architecture tag) as safetensors, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach().to_device(Device::Cpu)))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named.push(("meta.arch".into(), Tensor::from_slice(ARCH.as_bytes())));
        ddpm_torch::atomic::write_atomic_with(path, |tmp| {
            Tensor::write_safetensors(&named, tmp)?;
            Ok(())
        })
    }

    /// Reads weights written by [`Classifier::save`] onto `device`.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let what = path.display().to_string();
        if !path.is_file() {
            bail!(
                "{what}: no such classifier file (make one with `trainer classifier --out {what}`)"
            );
        }
        let tensors = Tensor::read_safetensors(path)
            .with_context(|| format!("{what}: cannot read as safetensors"))?;
        let get = |name: &str| -> Result<&Tensor> {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .with_context(|| format!("{what}: no tensor {name}; not a classifier file"))
        };
        let arch = Vec::<u8>::try_from(get("meta.arch")?)
            .with_context(|| format!("{what}: meta.arch is not a byte string"))?;
        if arch != ARCH.as_bytes() {
            bail!(
                "{what}: classifier architecture {:?}, this trainer reads {ARCH:?}",
                String::from_utf8_lossy(&arch)
            );
        }
        let net = Self::new(device, 0);
        let mut vars: Vec<(String, Tensor)> = net.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, dst) in &mut vars {
            let src = get(name)?;
            if src.size() != dst.size() || src.kind() != dst.kind() {
                bail!(
                    "{what}: {name} is {:?} {:?}, expected {:?} {:?}",
                    src.kind(),
                    src.size(),
                    dst.kind(),
                    dst.size()
                );
            }
            tch::no_grad(|| dst.copy_(&src.to_device(device)));
        }
        Ok(net)
    }
}

/// Loads the MNIST train and test splits from `data_dir` and trains a classifier.
pub fn train_from_dir(
    data_dir: &Path,
    opts: &ClassifierOptions,
    log: &mut dyn FnMut(&str),
) -> Result<(Classifier, TrainReport)> {
    let train = Mnist::load(data_dir, Split::Train, SIDE, SIDE)
        .with_context(|| format!("classifier training data in {}", data_dir.display()))?;
    let test = Mnist::load(data_dir, Split::Test, SIDE, SIDE)
        .with_context(|| format!("classifier test data in {}", data_dir.display()))?;
    Classifier::train(opts, &train, &test, log)
}

/// The cached classifier at `path`; when the file does not exist, trains one with the standard
/// settings on the MNIST files in `data_dir`, writes it to `path` and returns it.
pub fn load_or_train(path: &Path, data_dir: &Path, device: Device) -> Result<Classifier> {
    if path.is_file() {
        return Classifier::load(path, device);
    }
    eprintln!(
        "{}: no cached classifier; training one on {} (about two minutes on two CPU cores)",
        path.display(),
        data_dir.display()
    );
    let (net, report) = train_from_dir(data_dir, &ClassifierOptions::standard(device), &mut |m| {
        eprintln!("{m}")
    })?;
    net.save(path)?;
    eprintln!(
        "classifier: test accuracy {:.2}% on {} images, trained in {:.0} s; cached in {}",
        100.0 * report.test_accuracy,
        report.test_images,
        report.seconds,
        path.display()
    );
    Ok(net)
}
