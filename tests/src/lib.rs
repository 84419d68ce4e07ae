//! Shared helpers of the equivalence tests: golden-vector loading, the golden noise recipe, the
//! relative-error measure, the trainer's side of the comparisons (its initialisation, its export
//! route, its tch forward pass) and a property runner that counts and reports its cases.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ddpm_core::diffusion::{self, Plan, SamplerConfig};
use ddpm_core::host::{self, HostModel};
use ddpm_core::{AsModelConfig, GaussianNoise, ModelConfig, ScheduleConfig, SimpleUNetConfig};
use ddpm_torch::model::{self, Net, SimpleUNet, TinyUNet};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tch::{nn, Device, Kind, Tensor};

/// Directory of the golden vectors written by `tools/golden/make_golden.py`.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/golden")
}

/// An f32 or i64 tensor read from a safetensors file, flattened.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// f32 data (i64 tensors are converted).
    pub data: Vec<f32>,
    /// i64 data, for integer tensors.
    pub ints: Vec<i64>,
}

/// Loads every tensor of a safetensors file, by name.
pub fn load_safetensors(path: &Path) -> std::collections::BTreeMap<String, Loaded> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = std::collections::BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let (data, ints) = match view.dtype() {
            safetensors::Dtype::F32 => (
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Vec::new(),
            ),
            safetensors::Dtype::I64 => {
                let ints: Vec<i64> = raw
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                (ints.iter().map(|&v| v as f32).collect(), ints)
            }
            other => panic!("{}: unexpected dtype {other:?} for {name}", path.display()),
        };
        out.insert(
            name.to_string(),
            Loaded {
                shape: view.shape().to_vec(),
                data,
                ints,
            },
        );
    }
    out
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The golden trajectory's noise (see `tools/golden/make_golden.py`): value `i` of stream `s` is
/// the sum of 12 uniforms minus 6, each uniform 24 bits of SplitMix64, exact in f64 and rounded
/// once to f32.
pub fn golden_noise(stream: u64, n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let acc: u64 = (0..16u64)
                .take(12)
                .map(|j| splitmix64((stream << 32) + i * 16 + j) >> 40)
                .sum();
            (acc as f64 * (1.0 / 16_777_216.0) - 6.0) as f32
        })
        .collect()
}

/// max |a − b| / max |b|; infinite on NaN/inf or a length mismatch, so a broken
/// implementation can never pass.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    err_against(a, b, b)
}

/// max |a − b| / max |scale|: [`rel_err`] with the denominator taken from `scale` (e.g. the
/// magnitudes of the sums `b` was made of, see [`run_forward_case`]); infinite on NaN/inf or a
/// length mismatch.
pub fn err_against(a: &[f32], b: &[f32], scale: &[f32]) -> f32 {
    if a.len() != b.len()
        || scale.len() != b.len()
        || a.iter().chain(b).chain(scale).any(|v| !v.is_finite())
    {
        return f32::INFINITY;
    }
    let scale = scale
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Value `i` of a uniform stream in [−1, 1) (53 bits of SplitMix64), for test inputs that a
/// proptest seed describes compactly.
pub fn uniform(seed: u64, n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let u = (splitmix64(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ i) >> 11) as f64;
            (u * (2.0 / (1u64 << 53) as f64) - 1.0) as f32
        })
        .collect()
}

/// One libtorch thread per test thread: the test harness already runs tests in parallel, and
/// libtorch's own thread pool on top of it only oversubscribes the cores (a 1.3 ms forward pass
/// took 30–170 ms that way on a busy 2-core machine).
pub fn torch_single_thread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| tch::set_num_threads(1));
}

/// libtorch's random generator is one global; tests in one binary run on several threads, so
/// whoever seeds it and draws from it holds this lock, which keeps every case reproducible.
pub fn torch_rng() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A trainer network on the CPU with the trainer's own initialisation drawn from `seed`, every
/// parameter then multiplied by `scale`.
pub fn trainer_net(cfg: SimpleUNetConfig, seed: i64, scale: f64) -> (nn::VarStore, SimpleUNet) {
    torch_single_thread();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = {
        let _rng = torch_rng();
        tch::manual_seed(seed);
        SimpleUNet::new(&vs.root(), cfg)
    };
    if scale != 1.0 {
        tch::no_grad(|| {
            for (_, mut t) in vs.variables() {
                let _ = t.f_mul_scalar_(scale).expect("scaling a parameter");
            }
        });
    }
    (vs, net)
}

/// A trainer network of either architecture on the CPU with the trainer's own initialisation
/// drawn from `seed`, every parameter then multiplied by `scale`.
pub fn trainer_model(cfg: impl Into<ModelConfig>, seed: i64, scale: f64) -> (nn::VarStore, Net) {
    torch_single_thread();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = {
        let _rng = torch_rng();
        tch::manual_seed(seed);
        Net::new(&vs.root(), cfg)
    };
    if scale != 1.0 {
        tch::no_grad(|| {
            for (_, mut t) in vs.variables() {
                let _ = t.f_mul_scalar_(scale).expect("scaling a parameter");
            }
        });
    }
    (vs, net)
}

/// The real route from the trainer to the core: the trainer's parameters in `state_dict` order,
/// encoded by the trainer's exporter into model-file bytes, parsed and loaded by the core.
/// `cfg` is a `ModelConfig` or either architecture's configuration.
pub fn export_to_core(
    vs: &nn::VarStore,
    cfg: &impl AsModelConfig,
    schedule: &ScheduleConfig,
) -> HostModel {
    let cfg = cfg.as_model_config();
    let params = model::named_params(vs, &cfg).expect("trainer parameters");
    let bytes =
        ddpm_torch::export::model_file_bytes(&cfg, schedule, &params, "equivalence test", None)
            .expect("trainer export");
    HostModel::from_bytes(&bytes).expect("the core loads the trainer's model file")
}

/// A trainer network the tests drive: its forward pass and its configuration.
pub trait TchNet {
    /// Predicted noise for `x` (N×C×H×W) at time inputs `t_in` (N values of t/T).
    fn forward(&self, x: &Tensor, t_in: &Tensor) -> Tensor;
    /// The architecture and sizes.
    fn model_config(&self) -> ModelConfig;
}

impl TchNet for SimpleUNet {
    fn forward(&self, x: &Tensor, t_in: &Tensor) -> Tensor {
        SimpleUNet::forward(self, x, t_in)
    }
    fn model_config(&self) -> ModelConfig {
        ModelConfig::SimpleUNet(*self.config())
    }
}

impl TchNet for TinyUNet {
    fn forward(&self, x: &Tensor, t_in: &Tensor) -> Tensor {
        TinyUNet::forward(self, x, t_in)
    }
    fn model_config(&self) -> ModelConfig {
        ModelConfig::TinyUNet(*self.config())
    }
}

impl TchNet for Net {
    fn forward(&self, x: &Tensor, t_in: &Tensor) -> Tensor {
        Net::forward(self, x, t_in)
    }
    fn model_config(&self) -> ModelConfig {
        self.config()
    }
}

/// A class-conditional trainer network computing for fixed class labels, one per image of the
/// batches it is given (index K, the model's number of classes, is "no class").
pub struct Labelled<'a> {
    /// The network.
    pub net: &'a Net,
    /// N int64 labels.
    pub labels: Tensor,
}

impl<'a> Labelled<'a> {
    /// `net` computing for `labels`.
    pub fn new(net: &'a Net, labels: &[u32]) -> Self {
        let y: Vec<i64> = labels.iter().map(|&k| i64::from(k)).collect();
        Self {
            net,
            labels: Tensor::from_slice(&y),
        }
    }
}

impl TchNet for Labelled<'_> {
    fn forward(&self, x: &Tensor, t_in: &Tensor) -> Tensor {
        self.net.forward_labelled(x, t_in, Some(&self.labels))
    }
    fn model_config(&self) -> ModelConfig {
        self.net.config()
    }
}

/// The trainer's tch forward pass on the CPU in f32: `x` holds `t_in.len()` images of `cfg`'s
/// size, `t_in` the network's time inputs (t/T). Returns the flat N×C×H×W output.
pub fn tch_forward(net: &impl TchNet, x: &[f32], t_in: &[f32]) -> Vec<f32> {
    torch_single_thread();
    let c = net.model_config();
    let shape = [
        t_in.len() as i64,
        c.channels() as i64,
        c.height() as i64,
        c.width() as i64,
    ];
    let out = tch::no_grad(|| {
        net.forward(
            &Tensor::from_slice(x).view(shape),
            &Tensor::from_slice(t_in),
        )
    });
    assert_eq!(
        out.kind(),
        Kind::Float,
        "the trainer's forward must stay in f32"
    );
    model::to_f32_vec(&out).expect("reading the tch output")
}

/// A CPU f32 tensor of `shape` holding `data`.
pub fn tensor(data: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(data).view(shape)
}

/// The flat values of a CPU tensor.
pub fn values(t: &Tensor) -> Vec<f32> {
    model::to_f32_vec(t).expect("reading tensor values")
}

/// Cases per property: the issue asks for at least 256; `PROPTEST_CASES` may ask for more.
pub fn property_cases() -> u32 {
    proptest::test_runner::Config::default().cases.max(256)
}

/// Runs a property over `strategy` with shrinking, prints how many cases it ran and the worst
/// value of the measure the test reports (its relative error), and panics with the shrunk case
/// when it fails. `test` returns the measure of one case, or a failure message.
pub fn check_property<S: proptest::strategy::Strategy>(
    name: &str,
    bound: f64,
    strategy: S,
    test: impl Fn(S::Value) -> Result<f64, proptest::test_runner::TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    use proptest::test_runner::{Config, TestError, TestRunner};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let config = Config {
        cases: property_cases(),
        // A shrink step re-runs a whole case (up to several forward passes); the strategies
        // here are a handful of numbers, so this many steps reach a minimal case.
        max_shrink_iters: 2048,
        // Failures are reported with their shrunk case; nothing is written into the tree.
        failure_persistence: None,
        ..Config::default()
    };
    let runs = AtomicUsize::new(0);
    let worst = AtomicU64::new(0f64.to_bits());
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(&strategy, |value| {
        runs.fetch_add(1, Ordering::Relaxed);
        let m = test(value)?;
        if m > f64::from_bits(worst.load(Ordering::Relaxed)) || m.is_nan() {
            worst.store(m.to_bits(), Ordering::Relaxed);
        }
        Ok(())
    });
    let runs = runs.into_inner();
    let worst = f64::from_bits(worst.into_inner());
    match result {
        Ok(()) => println!(
            "property {name}: {runs} cases passed (asked for {}), worst {worst:.3e}, bound {bound:.1e}",
            config.cases
        ),
        Err(TestError::Fail(reason, case)) => panic!(
            "property {name} FAILED after {runs} runs (cases and shrink steps)\n\
             shrunk case: {case:#?}\nreason: {reason}"
        ),
        Err(TestError::Abort(reason)) => panic!("property {name} aborted: {reason}"),
    }
}

/// Fails the case when `measure` is not within `bound` (NaN fails too), else returns it.
pub fn within(
    what: impl std::fmt::Display,
    measure: f32,
    bound: f32,
) -> Result<f64, proptest::test_runner::TestCaseError> {
    if measure <= bound {
        Ok(measure as f64)
    } else {
        Err(proptest::test_runner::TestCaseError::fail(format!(
            "{what}: relative error {measure:.3e} > bound {bound:.1e}"
        )))
    }
}

/// `n` standard normal values of the core's seeded generator.
pub fn gaussian(seed: u64, n: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    GaussianNoise::new(seed).fill(&mut v);
    v
}

/// Timesteps of the forward-pass properties (t/T with T = 300, as the seed's schedule).
pub const FORWARD_T: u32 = 300;

/// Most images in one forward-pass case's tch batch.
pub const MAX_BATCH: usize = 3;

/// Scale factors for the trainer's initial weights: as initialised, and ten times smaller and
/// larger, plus anything log-uniform in between.
pub fn weight_scale() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1.0),
        Just(0.1),
        Just(10.0),
        (-1.0f64..=1.0).prop_map(|e| 10f64.powf(e)),
    ]
}

/// One forward-pass case: sizes (`C` is either architecture's configuration), the trainer's
/// initialisation, inputs and timesteps.
#[derive(Debug, Clone)]
pub struct ForwardCase<C> {
    /// Architecture and sizes.
    pub cfg: C,
    /// Images in the tch batch; the core runs them one call each.
    pub batch: usize,
    /// Seed of libtorch's generator for the trainer's initialisation.
    pub init_seed: u32,
    /// Every initial parameter is multiplied by this.
    pub weight_scale: f64,
    /// Inputs: `amplitude` × uniform[−1, 1) drawn from `input_seed`, so within [−3, 3].
    pub input_seed: u64,
    /// See `input_seed`.
    pub amplitude: f32,
    /// One timestep per image (the first `batch` are used).
    pub t: Vec<u32>,
}

/// Forward-pass cases of configurations from `cfg` with tch batches from `batch`
/// (≤ [`MAX_BATCH`]).
pub fn forward_case<C: std::fmt::Debug + Clone>(
    cfg: impl Strategy<Value = C>,
    batch: impl Strategy<Value = usize>,
) -> impl Strategy<Value = ForwardCase<C>> {
    (
        cfg,
        batch,
        any::<u32>(),
        weight_scale(),
        any::<u64>(),
        0.0f32..=3.0,
        proptest::collection::vec(0..FORWARD_T, MAX_BATCH),
    )
        .prop_map(
            |(cfg, batch, init_seed, weight_scale, input_seed, amplitude, t)| ForwardCase {
                cfg,
                batch,
                init_seed,
                weight_scale,
                input_seed,
                amplitude,
                t,
            },
        )
}

/// Bound on max |core − tch| / max |M| (see [`run_forward_case`]): √1152 · 2⁻²⁴ ≈ 2.0e-6, the
/// random-walk size of a summation-order difference over the longest sum of either network
/// (9·128 products), relative to the magnitude of its terms.
pub const SUMS_REL: f32 = 2e-6;

/// Runs one forward-pass case: the trainer's network (its own initialisation, exported through
/// a model file into the core) on the whole batch in tch, the core's reference and fast path
/// on each image; fails when an image's error exceeds its bound, else returns the largest.
///
/// An image's error is max |core − tch| / max |tch| ([`rel_err`]). Where that exceeds `bound`,
/// the case may still pass on the error relative to the sums the outputs were made of: max
/// |core − tch| / max |M|, M the same tch network run with every weight, bias and input replaced
/// by its absolute value. Each rounding error of an f32 sum is bounded by a multiple of 2⁻²⁴
/// times the sum of its terms' magnitudes, and ReLU and the linear layers carry those errors
/// forward at most through |W|, so M is the scale the two sides' summation-order differences
/// are measured against (for SimpleUNet, whose time input is non-negative, M ≥ |output|
/// everywhere; TinyUNet's sinusoidal embedding keeps its signs, so there M is a scale, not a
/// bound). It matters only where cancellation makes the output much smaller than its sums (seen:
/// SimpleUNet with one enc1 channel and weights ×10, relative error 5.3e-4, 4.9e-11 against M,
/// whose largest value was about 10⁷ times the output's). That second measure has its own,
/// fixed bound [`SUMS_REL`]. A wrong kernel or layer gives relative errors of 0.1 to 1, so on
/// the second measure it is caught wherever M is under 5·10⁴ times the output; beyond that an
/// f32 comparison cannot tell the two apart by this measure (such cases are rare: one in
/// thousands drawn).
pub fn run_forward_case<C>(c: ForwardCase<C>, bound: f32) -> Result<f64, TestCaseError>
where
    C: Into<ModelConfig> + Copy,
{
    let cfg: ModelConfig = c.cfg.into();
    let (vs, net) = trainer_model(cfg, c.init_seed as i64, c.weight_scale);
    let core = export_to_core(&vs, &cfg, &ScheduleConfig::default());
    assert_eq!(*core.config(), cfg);
    let n = cfg.image_len();
    let x: Vec<f32> = uniform(c.input_seed, c.batch * n)
        .iter()
        .map(|v| v * c.amplitude)
        .collect();
    let t_in: Vec<f32> = c.t[..c.batch]
        .iter()
        .map(|&t| t as f32 / FORWARD_T as f32)
        .collect();
    let want = tch_forward(&net, &x, &t_in);
    // M of the doc comment, computed on the first image that needs it.
    let mut magnitudes: Option<Vec<f32>> = None;
    let mut worst = 0.0f64;
    for path in [host::Path::Reference, host::Path::Fast] {
        let mut m = core.clone().with_path(path);
        let mut got = vec![0.0f32; n];
        for (i, &ti) in t_in.iter().enumerate() {
            m.forward(&x[i * n..(i + 1) * n], ti, &mut got).unwrap();
            let want_i = &want[i * n..(i + 1) * n];
            let e = rel_err(&got, want_i);
            let what = format!("{path:?}, image {i}");
            if e <= bound {
                worst = worst.max(e as f64);
                continue;
            }
            let mag = magnitudes.get_or_insert_with(|| {
                tch::no_grad(|| {
                    for (_, mut v) in vs.variables() {
                        let _ = v.abs_();
                    }
                });
                let x_abs: Vec<f32> = x.iter().map(|v| v.abs()).collect();
                tch_forward(&net, &x_abs, &t_in)
            });
            let e_sums = err_against(&got, want_i, &mag[i * n..(i + 1) * n]);
            within(
                format!(
                    "{what} (relative error {e:.3e} > {bound:.1e}; against the sums' magnitudes)"
                ),
                e_sums,
                SUMS_REL,
            )?;
            worst = worst.max(f64::from(e_sums));
        }
    }
    Ok(worst)
}

/// A model file loaded on both sides: the trainer's reader into a tch network (as `trainer
/// sample --backend torch` loads it) and the core's loader. Returns a description, the tch
/// parameters and network, and the core's model.
pub fn load_model_pair(path: &Path) -> (String, nn::VarStore, Net, HostModel) {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{what}: {e}"));
    let core = HostModel::from_bytes(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    let m = ddpm_torch::export::read_model_file(path).unwrap();
    torch_single_thread();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), m.config);
    model::load_params(&mut vs, &m.config, &m.tensors, &what).unwrap();
    (format!("model file {what}"), vs, net, core)
}

/// The model a trajectory test runs, with a description: the model file named by the
/// environment variable `env_var` when set, else the committed `default_file` (relative to the
/// repository root) when present, else `fallback` freshly initialised by the trainer (seed 0,
/// default schedule). A file must hold the same architecture as `fallback`.
pub fn trajectory_model(
    env_var: &str,
    default_file: &str,
    fallback: impl Into<ModelConfig>,
) -> (String, nn::VarStore, Net, HostModel) {
    let fallback = fallback.into();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = match std::env::var_os(env_var) {
        Some(p) => Some(PathBuf::from(p)),
        None => Some(root.join(default_file)).filter(|p| p.exists()),
    };
    match path {
        Some(path) => {
            let (what, vs, net, core) = load_model_pair(&path);
            assert_eq!(
                net.config().arch_name(),
                fallback.arch_name(),
                "{what}: not a {} model file",
                fallback.arch_name()
            );
            (what, vs, net, core)
        }
        None => {
            let (vs, net) = trainer_model(fallback, 0, 1.0);
            let core = export_to_core(&vs, &fallback, &ScheduleConfig::default());
            let what = format!(
                "{default_file} absent: a {} model freshly initialised by the trainer (seed 0)",
                fallback.arch_name()
            );
            (what, vs, net, core)
        }
    }
}

/// Runs the sampler `cfg` from the initial noise of `seeds` (one image each, the core's
/// generator) on both sides with the same z at every step, each side driven by its own network
/// (the core on `path`), and returns every image's relative error after the last step.
pub fn trajectories(
    net: &impl TchNet,
    core: &HostModel,
    path: host::Path,
    cfg: &SamplerConfig,
    seeds: &[u64],
) -> Vec<f32> {
    guided_trajectories(net, core, None, path, cfg, seeds)
}

/// A weaker network on both sides (tch, core) and its guidance weight, for
/// [`guided_trajectories`].
pub type Guide<'a> = (&'a dyn TchNet, &'a HostModel, f32);

/// [`trajectories`] with every network output guided by `guide` on both sides (the
/// trainer's `guide_output` on the tch side, the core's on the core side; the guide's core
/// forward pass on `path` too).
pub fn guided_trajectories(
    net: &impl TchNet,
    core: &HostModel,
    guide: Option<Guide<'_>>,
    path: host::Path,
    cfg: &SamplerConfig,
    seeds: &[u64],
) -> Vec<f32> {
    inpaint_trajectories(net, core, guide, path, cfg, seeds, None)
}

/// What both sides of [`inpaint_trajectories`] know: one known image and its mask (shared by
/// every seed), and RePaint's resampling.
pub type Known<'a> = (&'a [f32], &'a [f32], diffusion::Resampling);

/// [`guided_trajectories`] completing `known` by RePaint on both sides: the walk of
/// `Resampling::moves` followed step by step, each side with its own step, paste and jump-back
/// arithmetic (the core's `paste_known`/`jump_back`, the trainer's), a multistep solver's
/// history saved and restored by each side its own way, the same z everywhere. Without
/// `known`, plain sampling (every step once, the z of step k from stream `seed·1000 + k + 1`).
pub fn inpaint_trajectories(
    net: &impl TchNet,
    core: &HostModel,
    guide: Option<Guide<'_>>,
    path: host::Path,
    cfg: &SamplerConfig,
    seeds: &[u64],
    known: Option<Known<'_>>,
) -> Vec<f32> {
    let mut core = core.clone().with_path(path);
    // The guide's core network runs on `path` too.
    let mut guide = guide.map(|(tch_net, g, w)| (tch_net, g.clone().with_path(path), w));
    let sched = core.schedule().clone();
    let c = *core.config();
    let n = c.image_len();
    let big_t = sched.len() as u32;
    let shape = [
        seeds.len() as i64,
        c.channels() as i64,
        c.height() as i64,
        c.width() as i64,
    ];
    let plan = Plan::new(cfg, big_t).unwrap();
    let mut xs: Vec<Vec<f32>> = seeds.iter().map(|&s| gaussian(s, n)).collect();
    let mut xt = tensor(&xs.concat(), &shape);
    let mut eps = vec![0.0f32; n];
    let mut guide_eps = vec![0.0f32; n];
    // The multistep solvers' history, per image (core: x0, then UniPC's corrector part) and as
    // a batch (torch).
    let mut history: Vec<Vec<f32>> = vec![vec![0.0f32; cfg.history_len(n)]; seeds.len()];
    let mut x0_prev: Option<tch::Tensor> = None;
    let mut unipc: Option<ddpm_torch::sample::UniPcHistory> = None;
    let resampling = known.map_or(diffusion::Resampling::NONE, |k| k.2);
    let known_t = known.map(|(img, mask, _)| {
        let one = [1, shape[1], shape[2], shape[3]];
        (tensor(img, &one), tensor(mask, &one))
    });
    // What the Save move keeps: the core's histories, the trainer's.
    let mut saved = (history.clone(), None, None);
    // The z of move m for image `s`, stream `tag` (0: the step's, 1: the known pixels', 2:
    // the jump back's).
    let z_of = |m: usize, tag: u64| -> Vec<Vec<f32>> {
        seeds
            .iter()
            .map(|&s| {
                gaussian(
                    s.wrapping_mul(1000).wrapping_add(m as u64 + 1) ^ (tag << 40),
                    n,
                )
            })
            .collect()
    };
    for (m, mv) in resampling.moves(&plan).enumerate() {
        let k = match mv {
            diffusion::Move::Save => {
                saved = (
                    history.clone(),
                    x0_prev.as_ref().map(tch::Tensor::shallow_clone),
                    unipc.clone(),
                );
                continue;
            }
            diffusion::Move::Back { from, to } => {
                history.clone_from(&saved.0);
                x0_prev = saved.1.as_ref().map(tch::Tensor::shallow_clone);
                unipc = saved.2.clone();
                let z = z_of(m, 2);
                for (x, z) in xs.iter_mut().zip(&z) {
                    diffusion::jump_back(&sched, from, to, x, |i| z[i]).unwrap();
                }
                xt = ddpm_torch::sample::jump_back(
                    &sched,
                    from,
                    to,
                    &xt,
                    &tensor(&z.concat(), &shape),
                );
                continue;
            }
            diffusion::Move::Step(k) => k,
        };
        let (t, prev) = plan.step(k).unwrap();
        let dpm = match &plan {
            Plan::Dpm(p) => Some(p.step(&sched, k).unwrap()),
            _ => None,
        };
        let uni = match &plan {
            Plan::UniPc(p) => Some(p.step(&sched, k).unwrap()),
            _ => None,
        };
        let t_in = t as f32 / big_t as f32;
        let z = z_of(m, 0);
        let t_batch = tensor(&vec![t_in; seeds.len()], &[seeds.len() as i64]);
        let eps_t = tch::no_grad(|| {
            let out = net.forward(&xt, &t_batch);
            match &guide {
                Some((g, _, w)) => {
                    ddpm_torch::sample::guide_output(&out, &g.forward(&xt, &t_batch), *w)
                }
                None => out,
            }
        });
        let zt = tensor(&z.concat(), &shape);
        xt = match cfg {
            SamplerConfig::Ddim(d) => {
                ddpm_torch::sample::ddim_step(&sched, d, t, prev, &xt, &eps_t, &zt)
            }
            SamplerConfig::Ddpm(d) => ddpm_torch::sample::ddpm_step(&sched, d, t, &xt, &eps_t, &zt),
            SamplerConfig::DpmSolver2M(_) => {
                let st = dpm.as_ref().unwrap();
                let (v, x0) =
                    ddpm_torch::sample::dpm_step(&sched, st, &xt, &eps_t, x0_prev.as_ref());
                x0_prev = Some(x0);
                v
            }
            SamplerConfig::UniPc(_) => {
                let st = uni.as_ref().unwrap();
                let (v, h) =
                    ddpm_torch::sample::unipc_step(&sched, st, &xt, &eps_t, unipc.as_ref())
                        .unwrap();
                unipc = Some(h);
                v
            }
        };
        for ((x, z), h) in xs.iter_mut().zip(&z).zip(history.iter_mut()) {
            core.forward(x, t_in, &mut eps).unwrap();
            if let Some((_, g, w)) = guide.as_mut() {
                g.forward(x, t_in, &mut guide_eps).unwrap();
                diffusion::guide_output(&mut eps, &guide_eps, *w).unwrap();
            }
            match cfg {
                SamplerConfig::Ddim(d) => {
                    diffusion::ddim_step(&sched, d, t, prev, x, &eps, |i| z[i]).unwrap()
                }
                SamplerConfig::Ddpm(d) => {
                    diffusion::ddpm_step(&sched, d, t, x, &eps, |i| z[i]).unwrap()
                }
                SamplerConfig::DpmSolver2M(_) => diffusion::dpm_step(
                    dpm.as_ref().unwrap(),
                    sched.config().prediction,
                    x,
                    &eps,
                    h,
                )
                .unwrap(),
                SamplerConfig::UniPc(_) => {
                    let (m, c) = h.split_at_mut(n);
                    diffusion::unipc_step(
                        uni.as_ref().unwrap(),
                        sched.config().prediction,
                        x,
                        &eps,
                        m,
                        c,
                    )
                    .unwrap()
                }
            }
        }
        if let (Some((img, mask, _)), Some((kt, mt))) = (known, &known_t) {
            let zp = z_of(m, 1);
            for (x, z) in xs.iter_mut().zip(&zp) {
                diffusion::paste_known(&sched, prev, img, mask, x, |i| z[i]).unwrap();
            }
            xt = ddpm_torch::sample::paste_known(
                &sched,
                prev,
                kt,
                mt,
                &xt,
                &tensor(&zp.concat(), &shape),
            );
        }
    }
    let torch = values(&xt);
    xs.iter()
        .enumerate()
        .map(|(i, x)| rel_err(x, &torch[i * n..(i + 1) * n]))
        .collect()
}
