//! `bench-cpu`: ddpm-core's fast path against libtorch's CPU kernels in one process, and with
//! `--ort` against ONNX Runtime in the same run.
//!
//! Every side loads the same model file: ddpm-core through `HostModel`, libtorch through the
//! trainer's tch networks (weights by the trainer's model-file reader), ONNX Runtime through
//! the ONNX export of the same network and weights (`tools/ort_bench.py`, [`ort`]). Every timed
//! round runs each side once, in an order that rotates from round to round, so load from other
//! processes falls on all alike; the table gives medians over the rounds and the ratios other /
//! ddpm-core (above 1: ddpm-core is faster). Before timing, each side's output is checked
//! against the core's.
mod machine;
mod ort;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use ddpm_core::diffusion::{DdimConfig, DdpmConfig, SamplerConfig};
use ddpm_core::host::HostModel;
use ddpm_core::kernels::winograd::Tile;
use ddpm_core::{GaussianNoise, Schedule};
use ddpm_torch::{export, model, sample};
use indicatif::{ProgressBar, ProgressStyle};
use machine::{cpu_model, load_average};
use tch::{Device, Kind, Tensor};

/// The default model, relative to the project root.
const DEFAULT_MODEL: &str = "models/simple_unet_mnist.ddpm";

#[derive(Parser, Debug)]
#[command(
    name = "bench-cpu",
    about = "Times ddpm-core's fast path and libtorch (tch) side by side in one process, \
             alternating the two, and prints medians and ratios",
    after_help = "Cases: forward-b1 and forward-b16 (one forward pass of 1 or 16 images), \
                  ddim50-n16 (DDIM, 50 steps, 16 images), ddpm300-n16 (DDPM, all T steps, \
                  16 images); with --ort, ONNX Runtime on the forward cases. Ratio = other \
                  median / ddpm-core median."
)]
struct Args {
    /// Model file (f32) both sides load.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Cases to run (comma-separated): forward-b1, forward-b16, ddim50-n16, ddpm300-n16.
    #[arg(long, value_delimiter = ',', default_value = "forward-b1,forward-b16")]
    cases: Vec<Case>,
    /// Thread counts to run every case with (comma-separated); libtorch gets
    /// `tch::set_num_threads(n)`, ddpm-core `HostModel::set_threads(n)`.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    threads: Vec<usize>,
    /// Timed rounds per forward-pass case (each round times every side --burst times).
    #[arg(long, default_value_t = 16)]
    iters: usize,
    /// Timed rounds per sampling case.
    #[arg(long, default_value_t = 3)]
    sample_iters: usize,
    /// Untimed rounds before the timed ones (forward cases; sampling cases use one).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Pause before each timed run, in milliseconds, so that the thread pools of the side
    /// that ran before (libtorch's OpenMP threads, ONNX Runtime's and ddpm-core's workers all
    /// spin for a while after their work) have gone to sleep and do not take the cores from
    /// the side being timed; every side starts from the same rest. 0: no pause.
    #[arg(long, default_value_t = 20)]
    pause_ms: u64,
    /// Timed runs of a side in a row per round (forward cases): a sampler runs passes back to
    /// back, so each side's pool is asleep before the first run of a burst (see --pause-ms)
    /// and awake for the others; every run counts.
    #[arg(long, default_value_t = 25)]
    burst: usize,
    /// Winograd output tile of ddpm-core's wide layers: 2 (F(2×2, 3×3), the default) or 4
    /// (F(4×4, 3×3): fewer multiplies, larger rounding errors).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=4))]
    tile: u8,
    /// Seed of the inputs (forward) and of the sampling noise.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also time ONNX Runtime on the forward cases: the same network and weights exported to
    /// ONNX by the venv's torch and run by onnxruntime's CPU provider with every graph
    /// optimization and as many intra-op threads as the core (`tools/ort_bench.py`).
    #[arg(long)]
    ort: bool,
    /// Python that runs `tools/ort_bench.py` (the project venv's, on PATH after
    /// `source tools/env.sh`).
    #[arg(long, default_value = "python", requires = "ort")]
    python: String,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Case {
    #[value(name = "forward-b1")]
    ForwardB1,
    #[value(name = "forward-b16")]
    ForwardB16,
    #[value(name = "ddim50-n16")]
    Ddim50N16,
    #[value(name = "ddpm300-n16")]
    Ddpm300N16,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::ForwardB1 => "forward, batch 1",
            Case::ForwardB16 => "forward, batch 16",
            Case::Ddim50N16 => "DDIM 50 steps, 16 images",
            Case::Ddpm300N16 => "DDPM all T steps, 16 images",
        }
    }
}

/// The implementations of the model.
struct Sides {
    core: HostModel,
    net: model::Net,
    sched: Schedule,
    /// ONNX Runtime (`--ort`).
    ort: Option<ort::Ort>,
    // Keeps the tch variables alive.
    _vs: tch::nn::VarStore,
}

/// Largest max |ONNX Runtime − core| / max |core| of a forward pass accepted as the same
/// computation: both are f32 networks over the same weights, summing in different orders
/// (the core's fast path is within 5e-6 of its reference loops, docs/testing.md); 1e-4 leaves
/// room for the 30–40 rounded sums of a pass and still fails a wrong layer or weight by
/// orders of magnitude.
const ORT_REL_BOUND: f64 = 1e-4;

fn load(path: &PathBuf, ort: Option<(&str, &std::path::Path)>) -> Result<Sides> {
    if !path.is_file() {
        bail!(
            "{}: no such model file (run from the project root for the default {DEFAULT_MODEL}, \
             or pass --model FILE)",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let core = HostModel::from_bytes(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a usable model file: {e}", path.display()))?;
    let m = export::read_model_file(path)?;
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let net = model::Net::new(&vs.root(), m.config);
    model::load_params(&mut vs, &m.config, &m.tensors, &path.display().to_string())?;
    let sched = Schedule::new(&m.schedule)
        .map_err(|e| anyhow::anyhow!("{}: schedule: {e}", path.display()))?;
    let ort = match ort {
        Some((python, dir)) => {
            let weights = dir.join("weights.safetensors");
            export::write_safetensors(&weights, &m.tensors, Some((&m.config, &m.schedule)))?;
            let size = (m.config.height(), m.config.width());
            Some(ort::Ort::start(python, &weights, dir, size)?)
        }
        None => None,
    };
    Ok(Sides {
        core,
        net,
        sched,
        ort,
        _vs: vs,
    })
}

/// Median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// One row of the results.
struct Row {
    case: Case,
    threads: usize,
    core_ms: f64,
    torch_ms: f64,
    core_min_ms: f64,
    torch_min_ms: f64,
    rounds: usize,
    /// max |core − libtorch| / max |libtorch| of the outputs.
    rel_diff: f64,
    /// ONNX Runtime's median and min (ms) and max |ORT − core| / max |core| (`--ort`, forward
    /// cases).
    ort: Option<(f64, f64, f64)>,
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    if a.len() != b.len() || scale == 0.0 {
        f64::INFINITY
    } else {
        diff / scale
    }
}

/// One side of a round: runs once and returns its time in milliseconds.
type Side<'a> = &'a mut dyn FnMut() -> Result<f64>;

/// Milliseconds `f` takes.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let s = Instant::now();
    f()?;
    Ok(s.elapsed().as_secs_f64() * 1e3)
}

/// Runs every side `burst` times in a row per round for `rounds` rounds after `warmup`
/// untimed ones, the order rotating by one side each round, each burst after a pause of
/// `pause`; returns each side's times in milliseconds.
fn alternate(
    (warmup, rounds, burst, pause): (usize, usize, usize, std::time::Duration),
    bar: &ProgressBar,
    sides: &mut [Side<'_>],
) -> Result<Vec<Vec<f64>>> {
    for _ in 0..warmup {
        for side in sides.iter_mut() {
            side()?;
        }
    }
    let n = sides.len();
    let mut times = vec![Vec::with_capacity(rounds); n];
    for i in 0..rounds {
        for k in 0..n {
            let j = (i + k) % n;
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
            for _ in 0..burst.max(1) {
                times[j].push(sides[j]()?);
            }
        }
        bar.inc(1);
    }
    Ok(times)
}

fn run_case(s: &mut Sides, case: Case, threads: usize, a: &Args, bar: &ProgressBar) -> Result<Row> {
    let pause = std::time::Duration::from_millis(a.pause_ms);
    tch::set_num_threads(threads as i32);
    s.core.set_threads(threads);
    let cfg = *s.core.config();
    let len = cfg.image_len();
    let shape = |n: usize| {
        [
            n as i64,
            cfg.channels() as i64,
            cfg.height() as i64,
            cfg.width() as i64,
        ]
    };
    let (mut tc, mut tt, rel_diff, ort) = match case {
        Case::ForwardB1 | Case::ForwardB16 => {
            let n = if case == Case::ForwardB1 { 1 } else { 16 };
            let mut g = GaussianNoise::new(a.seed);
            let x: Vec<f32> = (0..n * len).map(|_| g.next_gaussian()).collect();
            // Timesteps spread over the schedule, as during sampling.
            let t_in: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect();
            let xt = Tensor::from_slice(&x).view(shape(n));
            let tt = Tensor::from_slice(&t_in);
            let mut out = vec![0.0f32; n * len];
            s.core
                .forward_images(&x, &t_in, &mut out)
                .map_err(|e| anyhow::anyhow!("core forward: {e}"))?;
            let want = tch::no_grad(|| s.net.forward(&xt, &tt));
            let rel = max_rel_diff(&out, &model::to_f32_vec(&want)?);
            let ort_rel = match &mut s.ort {
                Some(o) => {
                    o.session(threads)?;
                    o.input(&x, &t_in)?;
                    o.run(1)?;
                    let r = max_rel_diff(&o.output()?, &out);
                    if r > ORT_REL_BOUND {
                        bail!(
                            "{}: ONNX Runtime's output differs from the core's by {r:.1e} \
                             (max |difference| / max |core|), past the bound {ORT_REL_BOUND:.0e}: \
                             not the same computation",
                            case.name()
                        );
                    }
                    Some(r)
                }
                None => None,
            };
            let (core, net) = (&mut s.core, &s.net);
            let mut core_side = || {
                timed(|| {
                    core.forward_images(&x, &t_in, &mut out)
                        .map_err(|e| anyhow::anyhow!("core forward: {e}"))
                })
            };
            let mut torch_side = || {
                timed(|| {
                    let y = tch::no_grad(|| net.forward(&xt, &tt));
                    std::hint::black_box(y.kind());
                    Ok(())
                })
            };
            let mut times = match &mut s.ort {
                Some(o) => {
                    let mut ort_side = || Ok(o.run(1)?[0]);
                    alternate(
                        (a.warmup, a.iters, a.burst, pause),
                        bar,
                        &mut [&mut core_side, &mut torch_side, &mut ort_side],
                    )?
                }
                None => alternate(
                    (a.warmup, a.iters, a.burst, pause),
                    bar,
                    &mut [&mut core_side, &mut torch_side],
                )?,
            };
            let ort = match (times.len(), ort_rel) {
                (3, Some(r)) => {
                    let mut to = times.pop().expect("three sides");
                    let min = to.iter().copied().fold(f64::INFINITY, f64::min);
                    Some((median(&mut to), min, r))
                }
                _ => None,
            };
            let tt = times.pop().expect("libtorch's times");
            let tc = times.pop().expect("the core's times");
            (tc, tt, rel, ort)
        }
        Case::Ddim50N16 | Case::Ddpm300N16 => {
            let scfg = if case == Case::Ddim50N16 {
                SamplerConfig::Ddim(DdimConfig {
                    steps: 50,
                    ..Default::default()
                })
            } else {
                SamplerConfig::Ddpm(DdpmConfig::default())
            };
            let n = 16;
            let (core, net, sched, seed) = (&mut s.core, &s.net, &s.sched, a.seed);
            let mut last_core = Vec::new();
            let mut last_torch = None;
            let mut core_side = || {
                timed(|| {
                    last_core = core
                        .sample(n, &scfg, seed)
                        .map_err(|e| anyhow::anyhow!("core sampling: {e}"))?;
                    Ok(())
                })
            };
            let mut torch_side = || {
                timed(|| {
                    last_torch = Some(
                        sample::sample_torch(
                            net,
                            None,
                            None,
                            ddpm_core::diffusion::GuidanceInterval::ALWAYS,
                            None,
                            sched,
                            &scfg,
                            n,
                            seed,
                            Device::Cpu,
                            |_, _| {},
                        )
                        .map(|x| x.to_kind(Kind::Float)),
                    );
                    Ok(())
                })
            };
            let mut times = alternate(
                (1.min(a.warmup), a.sample_iters, 1, pause),
                bar,
                &mut [&mut core_side, &mut torch_side],
            )?;
            let (t, c) = (
                times.pop().expect("two sides"),
                times.pop().expect("two sides"),
            );
            // The two sides draw different noise (the core's generator vs libtorch's), so the
            // samples differ; this only checks that both produced finite images of the right size.
            let torch = model::to_f32_vec(&last_torch.context("no libtorch sample")??)?;
            if torch.len() != last_core.len() || !last_core.iter().all(|v| v.is_finite()) {
                bail!(
                    "sampling produced {} vs {} values",
                    last_core.len(),
                    torch.len()
                );
            }
            (c, t, f64::NAN, None)
        }
    };
    let rounds = tc.len();
    let core_min_ms = tc.iter().copied().fold(f64::INFINITY, f64::min);
    let torch_min_ms = tt.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(Row {
        case,
        threads,
        core_ms: median(&mut tc),
        torch_ms: median(&mut tt),
        core_min_ms,
        torch_min_ms,
        rounds,
        rel_diff,
        ort,
    })
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.threads.contains(&0) {
        bail!("--threads: every thread count must be at least 1");
    }
    if a.iters == 0 || a.sample_iters == 0 {
        bail!("--iters and --sample-iters must be at least 1");
    }
    let tile = match a.tile {
        2 => Tile::F2,
        4 => Tile::F4,
        other => bail!("--tile {other}: use 2 or 4"),
    };
    let ort_dir = std::env::temp_dir().join(format!("bench-cpu-ort-{}", std::process::id()));
    if a.ort {
        std::fs::create_dir_all(&ort_dir)
            .with_context(|| format!("{}: cannot create", ort_dir.display()))?;
    }
    let result = bench(
        &a,
        tile,
        a.ort.then_some((a.python.as_str(), ort_dir.as_path())),
    );
    if a.ort {
        let _ = std::fs::remove_dir_all(&ort_dir);
    }
    result
}

/// Loads the sides and prints the table.
fn bench(a: &Args, tile: Tile, ort: Option<(&str, &std::path::Path)>) -> Result<()> {
    let mut sides = load(&a.model, ort)?;
    sides.core = sides
        .core
        .with_winograd_tile(tile)
        .map_err(|e| anyhow::anyhow!("packing the fast path: {e}"))?;
    let total: usize = a
        .cases
        .iter()
        .map(|c| match c {
            Case::ForwardB1 | Case::ForwardB16 => a.iters,
            _ => a.sample_iters,
        })
        .sum::<usize>()
        * a.threads.len();
    let bar = if a.no_progress || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} rounds [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("valid progress template"),
        );
        b
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("CPU: {} ({cpus} logical CPUs)", cpu_model());
    println!(
        "model: {}; ddpm-core Winograd tile: {tile:?}; AVX2+FMA kernels: {}",
        a.model.display(),
        if ddpm_core::kernels::simd::simd_available() {
            "yes"
        } else {
            "no (portable)"
        }
    );
    if let Some(o) = &sides.ort {
        println!(
            "ONNX Runtime: {} (CPU provider, all graph optimizations)",
            o.versions
        );
    }
    println!("load average at the start: {}", load_average());
    println!();
    if sides.ort.is_some() {
        println!(
            "| case | threads | ddpm-core median (min) | libtorch median (min) | ratio libtorch/core | ONNX Runtime median (min) | ratio ORT/core | timed runs | max rel. diff libtorch, ORT |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    } else {
        println!(
            "| case | threads | ddpm-core median (min) | libtorch median (min) | ratio libtorch/core | timed runs | max rel. diff |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
    }
    // Each row is printed as soon as it is measured, so a long run shows its results early.
    let mut rows = Vec::new();
    for &case in &a.cases {
        for &threads in &a.threads {
            bar.set_message(format!("{}, {threads} thread(s)", case.name()));
            let r = run_case(&mut sides, case, threads, a, &bar)?;
            bar.suspend(|| print_row(&r, sides.ort.is_some()));
            rows.push(r);
        }
    }
    bar.finish_and_clear();
    print_limits(sides.core.config(), &rows);
    println!();
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// One table row (with ONNX Runtime's columns when `ort`).
fn print_row(r: &Row, ort: bool) {
    let unit = |ms: f64| {
        if ms >= 1000.0 {
            format!("{:.2} s", ms / 1e3)
        } else {
            format!("{ms:.3} ms")
        }
    };
    let diff = if r.rel_diff.is_nan() {
        "n/a (different noise)".to_owned()
    } else {
        format!("{:.1e}", r.rel_diff)
    };
    let head = format!(
        "| {} | {} | {} ({}) | {} ({}) | {:.2}× |",
        r.case.name(),
        r.threads,
        unit(r.core_ms),
        unit(r.core_min_ms),
        unit(r.torch_ms),
        unit(r.torch_min_ms),
        r.torch_ms / r.core_ms,
    );
    match (ort, r.ort) {
        (false, _) => println!("{head} {} | {diff} |", r.rounds),
        (true, Some((med, min, rel))) => println!(
            "{head} {} ({}) | {:.2}× | {} | {diff}, {rel:.1e} |",
            unit(med),
            unit(min),
            med / r.core_ms,
            r.rounds
        ),
        (true, None) => println!("{head} n/a | n/a | {} | {diff}, n/a |", r.rounds),
    }
}

/// Multiply-adds of one forward pass as the fast path computes it: a TinyUNet's up-sampled
/// channels through four taps per output phase instead of nine (the nominal count is
/// `ModelConfig::macs`); a SimpleUNet's nominal count (its Winograd layers multiply fewer
/// times, so its share of the peak can pass 100%).
fn fast_path_macs(cfg: &ddpm_core::ModelConfig) -> u64 {
    match cfg {
        ddpm_core::ModelConfig::TinyUNet(c) => {
            let [w1, w2, w3] = c.widths.map(u64::from);
            let (h, w) = (u64::from(c.height), u64::from(c.width));
            let (p1, p2) = (h * w, h * w / 4);
            c.macs() - 5 * (p2 * w3 * w2 + p1 * w2 * w1)
        }
        other => other.macs(),
    }
}

/// Multiply-adds per second one core reaches with the kernels' widest FMA (12 independent
/// chains of 8-lane AVX2 FMAs, and of 16-lane AVX-512 ones where the CPU has them: the larger),
/// measured, and the instruction set; `None` without AVX2 and FMA.
fn peak_macs_per_second() -> Option<(f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    if ddpm_core::kernels::simd::simd_available() {
        const ITERS: u64 = 20_000_000;
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        let avx2 = (ITERS * 12 * 8) as f64 / unsafe { fma_loop(ITERS) };
        if ddpm_core::kernels::simd::avx512f() {
            // SAFETY: the CPU has AVX-512F (checked just above).
            let avx512 = (ITERS * 12 * 16) as f64 / unsafe { fma_loop_512(ITERS) };
            if avx512 > avx2 {
                return Some((avx512, "AVX-512, 12 chains of 16-lane FMAs"));
            }
        }
        return Some((avx2, "AVX2, 12 chains of 8-lane FMAs"));
    }
    None
}

/// Seconds of `iters` rounds of 12 independent 16-lane FMAs.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_512(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); 12];
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let s = Instant::now();
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let secs = s.elapsed().as_secs_f64();
    let mut sum = 0.0f32;
    for v in acc {
        sum += _mm512_reduce_add_ps(v);
    }
    std::hint::black_box(sum);
    secs
}

/// Seconds of `iters` rounds of 12 independent 8-lane FMAs.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 12];
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let s = Instant::now();
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let secs = s.elapsed().as_secs_f64();
    let mut sum = [0.0f32; 8];
    for v in acc {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds 8 f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        for (s, l) in sum.iter_mut().zip(lanes) {
            *s += l;
        }
    }
    std::hint::black_box(sum);
    secs
}

/// The physical limit beside the figures: the multiply-adds of the network, the measured FMA
/// peak of one core, and the share of it the core's medians reach.
fn print_limits(cfg: &ddpm_core::ModelConfig, rows: &[Row]) {
    let macs = fast_path_macs(cfg);
    println!();
    match cfg {
        ddpm_core::ModelConfig::TinyUNet(_) => println!(
            "multiply-adds per forward pass: {:.1} M nominal, {:.1} M as the fast path computes \
             them (up-sampled inputs through 4 taps per phase)",
            cfg.macs() as f64 / 1e6,
            macs as f64 / 1e6
        ),
        ddpm_core::ModelConfig::SimpleUNet(_) => println!(
            "multiply-adds per forward pass: {:.1} M nominal (the fast path's Winograd layers \
             multiply fewer times, so the share of the peak below can pass 100%)",
            cfg.macs() as f64 / 1e6
        ),
    }
    let Some((peak, how)) = peak_macs_per_second() else {
        println!("FMA peak: not measured (no AVX2 + FMA)");
        return;
    };
    println!(
        "FMA peak of one core, measured ({how}): {:.1} G multiply-adds/s",
        peak / 1e9
    );
    for r in rows {
        let n = match r.case {
            Case::ForwardB1 => 1,
            Case::ForwardB16 => 16,
            _ => continue,
        };
        let rate = (n * macs) as f64 / (r.core_ms / 1e3);
        println!(
            "{}, {} thread(s): {:.1} G multiply-adds/s, {:.0}% of {} core(s)' peak",
            r.case.name(),
            r.threads,
            rate / 1e9,
            100.0 * rate / (peak * r.threads as f64),
            r.threads
        );
    }
}
