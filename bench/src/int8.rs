//! `bench-int8`: the int8 TinyUNet on the host, the microcontroller's planned executor against
//! the host executor (`FastInt8TinyUNet`: 16-bit pair multiply-adds, AVX2 where the CPU has
//! it), one thread each, alternating in one process. Both draw the same sample from the same
//! seed; every round checks that they agree bit for bit before its times count.

mod machine;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use ddpm_core::diffusion::driver::sample_batch_with_history;
use ddpm_core::diffusion::{Denoiser, WholeImages};
use ddpm_core::diffusion::{Plan, SamplerConfig};
use ddpm_core::file::ModelFile;
use ddpm_core::tiny_unet::fast_int8::{FastInt8Guided, FastInt8TinyUNet, Int8Kernel};
use ddpm_core::tiny_unet::int8::{layerwise_len, Int8TinyUNet, TimeScratch};
use ddpm_core::tiny_unet::planned::{
    sample_planned_guided, sample_planned_with_history, TinyInt8Workspace,
};
use ddpm_core::{GaussianNoise, Schedule};
use indicatif::{ProgressBar, ProgressStyle};
use machine::cpu_model;

/// The default model, relative to the project root.
const DEFAULT_MODEL: &str = "models/tiny_unet_mnist_int8.ddpm";

#[derive(Parser, Debug)]
#[command(
    name = "bench-int8",
    about = "Times one int8 TinyUNet sample through the microcontroller's planned executor and \
             through the host executor, alternating the two on one thread, checks that they \
             draw the same bits, and prints medians and the ratio"
)]
struct Args {
    /// Int8 TinyUNet model file; it is sampled with the recipe it carries.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// An int8 TinyUNet guide (autoguidance: every step costs two passes).
    #[arg(long)]
    guide: Option<PathBuf>,
    /// Guidance weight with --guide.
    #[arg(long, default_value_t = 2.5, requires = "guide")]
    guidance: f32,
    /// Timed rounds (each draws one sample with either executor).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Seed of the sample's noise.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The host executor's kernel: portable, avx2 or avx512-vnni (default: the fastest this
    /// CPU runs).
    #[arg(long, value_parser = parse_kernel)]
    kernel: Option<Int8Kernel>,
    /// Also time the per-pixel integer oracle (`forward_layerwise`: every tap of every pixel in
    /// plain loops, what the host ran before the row kernels and the host executor; about a
    /// second per 10 passes), unguided only.
    #[arg(long, conflicts_with = "guide")]
    oracle: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// The per-pixel oracle as a denoiser, with its activations and time scratch.
struct Oracle<'n, 'a> {
    net: &'n Int8TinyUNet<'a>,
    acts: Vec<i8>,
    emb: Vec<f32>,
    hidden: Vec<f32>,
    temb: Vec<f32>,
    offsets: Vec<i32>,
}

impl Denoiser for Oracle<'_, '_> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> ddpm_core::Result<()> {
        let mut time = TimeScratch {
            emb: &mut self.emb,
            hidden: &mut self.hidden,
            temb: &mut self.temb,
            offsets: &mut self.offsets,
            row: &mut [],
        };
        self.net
            .forward_layerwise(x, t_in, &mut self.acts, &mut time, eps)
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    if !path.is_file() {
        bail!(
            "{}: no such model file (run from the project root for the default {DEFAULT_MODEL}, \
             or pass --model FILE)",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

fn parse_kernel(s: &str) -> std::result::Result<Int8Kernel, String> {
    match s {
        "portable" => Ok(Int8Kernel::Portable),
        "avx2" => Ok(Int8Kernel::Avx2),
        "avx512-vnni" => Ok(Int8Kernel::Avx512Vnni),
        _ => Err(format!(
            "'{s}' is not a kernel: portable, avx2 or avx512-vnni"
        )),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let bytes = read(&a.model)?;
    let file = ModelFile::parse(&bytes).map_err(|e| anyhow!("{}: {e}", a.model.display()))?;
    let net = Int8TinyUNet::from_file(&file).map_err(|e| anyhow!("{}: {e}", a.model.display()))?;
    let guide_bytes = a.guide.as_ref().map(read).transpose()?;
    let guide_file = guide_bytes
        .as_deref()
        .map(ModelFile::parse)
        .transpose()
        .map_err(|e| anyhow!("the guide: {e}"))?;
    let guide = guide_file
        .as_ref()
        .map(Int8TinyUNet::from_file)
        .transpose()
        .map_err(|e| anyhow!("the guide: {e}"))?;
    let header = file.header();
    let sched: Schedule = Schedule::new(&header.schedule).map_err(|e| anyhow!("{e}"))?;
    let scfg: SamplerConfig = header.recipe.sampler;
    let len = net.config().image_len();
    let mut ws = Box::new(<TinyInt8Workspace>::ZEROED);
    let mut fast = FastInt8TinyUNet::new(net).map_err(|e| anyhow!("{e}"))?;
    let mut fast_guide = guide
        .map(FastInt8TinyUNet::new)
        .transpose()
        .map_err(|e| anyhow!("{e}"))?;
    if let Some(k) = a.kernel {
        fast.set_kernel(k)
            .map_err(|e| anyhow!("--kernel {}: {e}", k.name()))?;
        if let Some(g) = fast_guide.as_mut() {
            g.set_kernel(k)
                .map_err(|e| anyhow!("--kernel {}: {e}", k.name()))?;
        }
    }
    let steps = Plan::new(&scfg, sched.len() as u32)
        .map_err(|e| anyhow!("the model's recipe: {e}"))?
        .len();
    let passes = steps * if guide.is_some() { 2 } else { 1 };
    println!(
        "CPU: {} ({} logical CPUs); host executor: {}",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        fast.kernel().name()
    );
    println!(
        "model: {}{}; sampler: {scfg:?}; {passes} network passes per sample; one thread",
        a.model.display(),
        a.guide
            .as_ref()
            .map(|g| format!(", guided by {} at weight {}", g.display(), a.guidance))
            .unwrap_or_default()
    );
    let bar = if a.no_progress || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(a.rounds as u64 + 1);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} rounds [{elapsed_precise}] {msg}")
                .expect("valid progress template"),
        );
        b
    };
    let mut history = vec![0.0f32; scfg.history_len(len)];
    let mut guide_out = vec![0.0f32; len];
    let (mut planned_ms, mut host_ms, mut oracle_ms) = (Vec::new(), Vec::new(), Vec::new());
    let cfg = *net.config();
    let mut oracle = Oracle {
        net: &net,
        acts: vec![0; layerwise_len(&cfg)],
        emb: vec![0.0; cfg.emb_dim as usize],
        hidden: vec![0.0; cfg.temb_dim as usize],
        temb: vec![0.0; cfg.temb_dim as usize],
        offsets: vec![
            0;
            [cfg.channels, cfg.widths[0], cfg.widths[1], cfg.widths[2]]
                .into_iter()
                .max()
                .unwrap_or(0) as usize
        ],
    };
    let mut oracle_eps = vec![0.0f32; len];
    // Round 0 warms both up and is not timed.
    for round in 0..=a.rounds {
        let (mut x_planned, mut x_host) = (vec![0.0f32; len], vec![0.0f32; len]);
        let mut planned = |x: &mut [f32], h: &mut [f32]| -> Result<f64> {
            let t0 = Instant::now();
            match guide.as_ref() {
                Some(g) => sample_planned_guided(
                    &net,
                    g,
                    a.guidance,
                    &sched,
                    &scfg,
                    a.seed,
                    x,
                    &mut ws,
                    &mut guide_out,
                    h,
                ),
                None => sample_planned_with_history(&net, &sched, &scfg, a.seed, x, &mut ws, h),
            }
            .map_err(|e| anyhow!("planned executor: {e}"))?;
            Ok(t0.elapsed().as_secs_f64() * 1e3)
        };
        let mut host = |x: &mut [f32], h: &mut [f32]| -> Result<f64> {
            let t0 = Instant::now();
            let noise = &mut [GaussianNoise::new(a.seed)];
            match fast_guide.as_mut() {
                Some(g) => {
                    let mut guided = FastInt8Guided::new(&mut fast, g, a.guidance)?;
                    sample_batch_with_history(&mut guided, &sched, &scfg, noise, x, h)
                }
                None => sample_batch_with_history(&mut fast, &sched, &scfg, noise, x, h),
            }
            .map_err(|e| anyhow!("host executor: {e}"))?;
            Ok(t0.elapsed().as_secs_f64() * 1e3)
        };
        // The order alternates from round to round.
        let (p, h) = if round % 2 == 0 {
            let p = planned(&mut x_planned, &mut history)?;
            (p, host(&mut x_host, &mut history)?)
        } else {
            let h = host(&mut x_host, &mut history)?;
            (planned(&mut x_planned, &mut history)?, h)
        };
        let same = x_planned
            .iter()
            .zip(&x_host)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            bail!("round {round}: the host executor's sample differs from the planned executor's");
        }
        if a.oracle {
            let mut x_oracle = vec![0.0f32; len];
            let t0 = Instant::now();
            let mut whole = WholeImages::new(&mut oracle, &mut oracle_eps)?;
            let noise = &mut [GaussianNoise::new(a.seed)];
            sample_batch_with_history(
                &mut whole,
                &sched,
                &scfg,
                noise,
                &mut x_oracle,
                &mut history,
            )
            .map_err(|e| anyhow!("per-pixel oracle: {e}"))?;
            let o = t0.elapsed().as_secs_f64() * 1e3;
            if x_oracle
                .iter()
                .zip(&x_host)
                .any(|(a, b)| a.to_bits() != b.to_bits())
            {
                bail!(
                    "round {round}: the per-pixel oracle's sample differs from the host executor's"
                );
            }
            if round > 0 {
                oracle_ms.push(o);
            }
        }
        if round > 0 {
            planned_ms.push(p);
            host_ms.push(h);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (p, h) = (median(&mut planned_ms), median(&mut host_ms));
    println!();
    println!("| executor | median per sample | min | per pass |");
    println!("| --- | ---: | ---: | ---: |");
    let mut sides = vec![
        ("planned (the microcontroller's)", p, &planned_ms),
        ("host int8", h, &host_ms),
    ];
    let o = if a.oracle {
        median(&mut oracle_ms)
    } else {
        0.0
    };
    if a.oracle {
        sides.insert(0, ("per-pixel oracle", o, &oracle_ms));
    }
    for (name, med, all) in sides {
        let min = all.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "| {name} | {med:.1} ms | {min:.1} ms | {:.2} ms |",
            med / passes as f64
        );
    }
    println!();
    println!(
        "ratio planned / host: {:.1}× ({} timed rounds, the same bits every round)",
        p / h,
        a.rounds
    );
    if a.oracle {
        println!("ratio per-pixel oracle / host: {:.1}×", o / h);
    }
    Ok(())
}
