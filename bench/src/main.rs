//! `bench-cpu`: ddpm-core's fast path against libtorch's CPU kernels, in one process.
//!
//! Both sides load the same model file: ddpm-core through `HostModel`, libtorch through the
//! trainer's tch `SimpleUNet` (weights by the trainer's model-file reader). Every timed round
//! runs both, in alternating order, so load from other processes falls on both alike; the
//! table gives medians over the rounds and the ratio libtorch / ddpm-core (above 1: ddpm-core
//! is faster).
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
                  16 images). Ratio = libtorch median / ddpm-core median."
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
    /// Timed rounds per forward-pass case (each round times both sides once).
    #[arg(long, default_value_t = 200)]
    iters: usize,
    /// Timed rounds per sampling case.
    #[arg(long, default_value_t = 3)]
    sample_iters: usize,
    /// Untimed rounds before the timed ones (forward cases; sampling cases use one).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Winograd output tile of ddpm-core's wide layers: 2 (F(2×2, 3×3), the default) or 4
    /// (F(4×4, 3×3): fewer multiplies, larger rounding errors).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=4))]
    tile: u8,
    /// Seed of the inputs (forward) and of the sampling noise.
    #[arg(long, default_value_t = 42)]
    seed: u64,
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

/// Both implementations of the model.
struct Sides {
    core: HostModel,
    net: model::Net,
    sched: Schedule,
    // Keeps the tch variables alive.
    _vs: tch::nn::VarStore,
}

fn load(path: &PathBuf) -> Result<Sides> {
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
    Ok(Sides {
        core,
        net,
        sched,
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

/// Times `core` and `torch` alternately for `rounds` rounds after `warmup` untimed ones;
/// returns the times in milliseconds.
fn alternate(
    warmup: usize,
    rounds: usize,
    bar: &ProgressBar,
    mut core: impl FnMut() -> Result<()>,
    mut torch: impl FnMut(),
) -> Result<(Vec<f64>, Vec<f64>)> {
    for _ in 0..warmup {
        core()?;
        torch();
    }
    let (mut tc, mut tt) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for i in 0..rounds {
        let mut time_core = || -> Result<()> {
            let s = Instant::now();
            core()?;
            tc.push(s.elapsed().as_secs_f64() * 1e3);
            Ok(())
        };
        if i % 2 == 0 {
            time_core()?;
            let s = Instant::now();
            torch();
            tt.push(s.elapsed().as_secs_f64() * 1e3);
        } else {
            let s = Instant::now();
            torch();
            tt.push(s.elapsed().as_secs_f64() * 1e3);
            time_core()?;
        }
        bar.inc(1);
    }
    Ok((tc, tt))
}

fn run_case(s: &mut Sides, case: Case, threads: usize, a: &Args, bar: &ProgressBar) -> Result<Row> {
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
    let (mut tc, mut tt, rel_diff) = match case {
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
            let (core, net) = (&mut s.core, &s.net);
            let (c, t) = alternate(
                a.warmup,
                a.iters,
                bar,
                || {
                    core.forward_images(&x, &t_in, &mut out)
                        .map_err(|e| anyhow::anyhow!("core forward: {e}"))
                },
                || {
                    let y = tch::no_grad(|| net.forward(&xt, &tt));
                    std::hint::black_box(y.kind());
                },
            )?;
            (c, t, rel)
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
            let (c, t) = alternate(
                1.min(a.warmup),
                a.sample_iters,
                bar,
                || {
                    last_core = core
                        .sample(n, &scfg, seed)
                        .map_err(|e| anyhow::anyhow!("core sampling: {e}"))?;
                    Ok(())
                },
                || {
                    last_torch = Some(
                        sample::sample_torch(
                            net,
                            None,
                            None,
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
                },
            )?;
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
            (c, t, f64::NAN)
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
    })
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU (no /proc/cpuinfo)".to_owned())
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
    let mut sides = load(&a.model)?;
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
    println!("load average at the start: {}", load_average());
    println!();
    println!(
        "| case | threads | ddpm-core median (min) | libtorch median (min) | ratio libtorch/core | rounds | max rel. diff |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    // Each row is printed as soon as it is measured, so a long run shows its results early.
    for &case in &a.cases {
        for &threads in &a.threads {
            bar.set_message(format!("{}, {threads} thread(s)", case.name()));
            let r = run_case(&mut sides, case, threads, &a, &bar)?;
            bar.suspend(|| print_row(&r));
        }
    }
    bar.finish_and_clear();
    println!();
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// One table row.
fn print_row(r: &Row) {
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
    println!(
        "| {} | {} | {} ({}) | {} ({}) | {:.2}× | {} | {} |",
        r.case.name(),
        r.threads,
        unit(r.core_ms),
        unit(r.core_min_ms),
        unit(r.torch_ms),
        unit(r.torch_min_ms),
        r.torch_ms / r.core_ms,
        r.rounds,
        diff
    );
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown (no /proc/loadavg)".to_owned())
}
