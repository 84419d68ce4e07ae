//! `bench-int8`: an int8 model on the host, the microcontroller's executor (the TinyUNet's
//! planned executor, the SimpleUNet's row-streaming one) against the host executor
//! (`FastInt8TinyUNet` / `FastInt8SimpleUNet`: 16-bit pair multiply-adds, AVX2 where the CPU has
//! it), one thread each, alternating in one process. Both draw the same sample from the same
//! seed; every round checks that they agree bit for bit before its times count.

mod machine;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use ddpm_core::diffusion::driver::sample_batch_with_history;
use ddpm_core::diffusion::{DdimConfig, Denoiser, WholeImages};
use ddpm_core::diffusion::{Plan, SamplerConfig};
use ddpm_core::file::ModelFile;
use ddpm_core::simple_unet::fast_int8::FastInt8SimpleUNet;
use ddpm_core::simple_unet::int8::{Int8Layerwise, Int8SimpleUNet, Scratch};
use ddpm_core::simple_unet::stream::sample_streaming_with_history;
use ddpm_core::tiny_unet::fast_int8::{FastInt8Guided, FastInt8TinyUNet, Int8Kernel};
use ddpm_core::tiny_unet::int8::{layerwise_len, Int8TinyUNet, TimeScratch};
use ddpm_core::tiny_unet::planned::{
    sample_planned_guided, sample_planned_with_history, TinyInt8Workspace,
};
use ddpm_core::{GaussianNoise, ModelConfig, Schedule};
use indicatif::{ProgressBar, ProgressStyle};
use machine::cpu_model;

/// The default model, relative to the project root.
const DEFAULT_MODEL: &str = "models/tiny_unet_mnist_int8.ddpm";

#[derive(Parser, Debug)]
#[command(
    name = "bench-int8",
    about = "Times one int8 sample (TinyUNet or SimpleUNet) through the microcontroller's \
             executor and through the host executor, alternating the two on one thread, checks \
             that they draw the same bits, and prints medians and the ratio"
)]
struct Args {
    /// Int8 model file (TinyUNet or SimpleUNet); a TinyUNet is sampled with the recipe it
    /// carries, a SimpleUNet with the firmware demo's DDIM (see --ddim-steps).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Sample with DDIM in this many steps, x0 clipped and ε recomputed (the firmware demo's
    /// sampler) instead of the file's recipe; a SimpleUNet's default is 10 (its recipe is
    /// DDPM over every step).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    ddim_steps: Option<u32>,
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
    /// plain loops, what the host ran before the row kernels and the host executor; for the
    /// TinyUNet about a second per 10 passes), unguided only.
    #[arg(long, conflicts_with = "guide")]
    oracle: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// The TinyUNet's per-pixel oracle as a denoiser, with its activations and time scratch.
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

/// Draws one sample into `x` with the multistep history `h`.
type SampleFn<'s> = Box<dyn FnMut(&mut [f32], &mut [f32]) -> Result<()> + 's>;

/// The executors timed against each other.
struct Contest<'s> {
    /// The microcontroller's executor: its name in the table, and the sampler.
    micro_name: &'static str,
    micro: SampleFn<'s>,
    host: SampleFn<'s>,
    oracle: Option<SampleFn<'s>>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let bytes = read(&a.model)?;
    let file = ModelFile::parse(&bytes).map_err(|e| anyhow!("{}: {e}", a.model.display()))?;
    let header = file.header();
    let sched: Schedule = Schedule::new(&header.schedule).map_err(|e| anyhow!("{e}"))?;
    let firmware = |steps| {
        SamplerConfig::Ddim(DdimConfig {
            steps,
            clip_x0: true,
            recompute_eps: true,
            ..Default::default()
        })
    };
    match header.model {
        ModelConfig::TinyUNet(_) => {
            let scfg = a.ddim_steps.map_or(header.recipe.sampler, firmware);
            tiny(&a, &file, &sched, scfg)
        }
        ModelConfig::SimpleUNet(_) => {
            if a.guide.is_some() {
                bail!("--guide: the SimpleUNet samples unguided; guides are for int8 TinyUNets");
            }
            simple(&a, &file, &sched, firmware(a.ddim_steps.unwrap_or(10)))
        }
    }
}

/// The SimpleUNet: its row-streaming executor against the host executor.
fn simple(a: &Args, file: &ModelFile<'_>, sched: &Schedule, scfg: SamplerConfig) -> Result<()> {
    let net = Int8SimpleUNet::from_file(file).map_err(|e| anyhow!("{}: {e}", a.model.display()))?;
    let mut fast = FastInt8SimpleUNet::new(net).map_err(|e| anyhow!("{e}"))?;
    if let Some(k) = a.kernel {
        fast.set_kernel(k)
            .map_err(|e| anyhow!("--kernel {}: {e}", k.name()))?;
    }
    let kernel = fast.kernel();
    let cfg = *net.config();
    let h2 = cfg.hidden2 as usize;
    // Scratch of the streaming executor (`stream`) and of the per-pixel oracle.
    let scratch = |acts: usize| {
        (
            vec![0i8; acts],
            vec![0.0f32; h2],
            vec![0.0f32; h2],
            vec![0i32; h2],
            vec![0.0f32; cfg.row_len()],
        )
    };
    let (mut s_acts, mut s_hidden, mut s_temb, mut s_offsets, mut s_row) =
        scratch(cfg.streaming_act_len());
    let (mut o_acts, mut o_hidden, mut o_temb, mut o_offsets, mut o_row) =
        scratch(cfg.layerwise_act_len());
    let mut oracle_eps = vec![0.0f32; cfg.image_len()];
    let seed = a.seed;
    let contest = Contest {
        micro_name: "row-streaming (the microcontroller's)",
        micro: Box::new(|x, h| {
            let mut s = Scratch {
                acts: &mut s_acts,
                hidden: &mut s_hidden,
                temb: &mut s_temb,
                offsets: &mut s_offsets,
                row: &mut s_row,
            };
            sample_streaming_with_history(&net, sched, &scfg, seed, x, &mut s, h)
                .map_err(|e| anyhow!("row-streaming executor: {e}"))
        }),
        host: Box::new(|x, h| {
            let noise = &mut [GaussianNoise::new(seed)];
            sample_batch_with_history(&mut fast, sched, &scfg, noise, x, h)
                .map_err(|e| anyhow!("host executor: {e}"))
        }),
        oracle: a.oracle.then(|| -> SampleFn<'_> {
            Box::new(|x, h| {
                let s = Scratch {
                    acts: &mut o_acts,
                    hidden: &mut o_hidden,
                    temb: &mut o_temb,
                    offsets: &mut o_offsets,
                    row: &mut o_row,
                };
                let mut den = Int8Layerwise::new(net, s)?;
                let mut whole = WholeImages::new(&mut den, &mut oracle_eps)?;
                let noise = &mut [GaussianNoise::new(seed)];
                sample_batch_with_history(&mut whole, sched, &scfg, noise, x, h)
                    .map_err(|e| anyhow!("per-pixel oracle: {e}"))
            })
        }),
    };
    run(a, cfg.image_len(), sched, &scfg, kernel, contest)
}

/// The TinyUNet: its planned executor (guided with --guide) against the host executor.
fn tiny(a: &Args, file: &ModelFile<'_>, sched: &Schedule, scfg: SamplerConfig) -> Result<()> {
    let net = Int8TinyUNet::from_file(file).map_err(|e| anyhow!("{}: {e}", a.model.display()))?;
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
    let kernel = fast.kernel();
    let mut guide_out = vec![0.0f32; len];
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
    let (seed, weight) = (a.seed, a.guidance);
    let contest = Contest {
        micro_name: "planned (the microcontroller's)",
        micro: Box::new(|x, h| {
            match guide.as_ref() {
                Some(g) => sample_planned_guided(
                    &net,
                    g,
                    weight,
                    sched,
                    &scfg,
                    seed,
                    x,
                    &mut ws,
                    &mut guide_out,
                    h,
                ),
                None => sample_planned_with_history(&net, sched, &scfg, seed, x, &mut ws, h),
            }
            .map_err(|e| anyhow!("planned executor: {e}"))
        }),
        host: Box::new(|x, h| {
            let noise = &mut [GaussianNoise::new(seed)];
            match fast_guide.as_mut() {
                Some(g) => {
                    let mut guided = FastInt8Guided::new(&mut fast, g, weight)?;
                    sample_batch_with_history(&mut guided, sched, &scfg, noise, x, h)
                }
                None => sample_batch_with_history(&mut fast, sched, &scfg, noise, x, h),
            }
            .map_err(|e| anyhow!("host executor: {e}"))
        }),
        oracle: a.oracle.then(|| -> SampleFn<'_> {
            Box::new(|x, h| {
                let mut whole = WholeImages::new(&mut oracle, &mut oracle_eps)?;
                let noise = &mut [GaussianNoise::new(seed)];
                sample_batch_with_history(&mut whole, sched, &scfg, noise, x, h)
                    .map_err(|e| anyhow!("per-pixel oracle: {e}"))
            })
        }),
    };
    run(a, len, sched, &scfg, kernel, contest)
}

/// Times `c`'s executors over `a.rounds` rounds (after one untimed), checking their bits every
/// round, and prints the table and the ratios.
fn run(
    a: &Args,
    len: usize,
    sched: &Schedule,
    scfg: &SamplerConfig,
    kernel: Int8Kernel,
    mut c: Contest<'_>,
) -> Result<()> {
    let steps = Plan::new(scfg, sched.len() as u32)
        .map_err(|e| anyhow!("the sampler: {e}"))?
        .len();
    let passes = steps * if a.guide.is_some() { 2 } else { 1 };
    println!(
        "CPU: {} ({} logical CPUs); host executor: {}",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.name()
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
    let (mut micro_ms, mut host_ms, mut oracle_ms) = (Vec::new(), Vec::new(), Vec::new());
    let timed = |f: &mut SampleFn<'_>, x: &mut [f32], h: &mut [f32]| -> Result<f64> {
        let t0 = Instant::now();
        f(x, h)?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    // Round 0 warms both up and is not timed.
    for round in 0..=a.rounds {
        let (mut x_micro, mut x_host) = (vec![0.0f32; len], vec![0.0f32; len]);
        // The order alternates from round to round.
        let (m, h) = if round % 2 == 0 {
            let m = timed(&mut c.micro, &mut x_micro, &mut history)?;
            (m, timed(&mut c.host, &mut x_host, &mut history)?)
        } else {
            let h = timed(&mut c.host, &mut x_host, &mut history)?;
            (timed(&mut c.micro, &mut x_micro, &mut history)?, h)
        };
        let same = |x: &[f32]| {
            x.iter()
                .zip(&x_host)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        };
        if !same(&x_micro) {
            bail!(
                "round {round}: the host executor's sample differs from the {} executor's",
                c.micro_name
            );
        }
        if let Some(oracle) = c.oracle.as_mut() {
            let mut x_oracle = vec![0.0f32; len];
            let o = timed(oracle, &mut x_oracle, &mut history)?;
            if !same(&x_oracle) {
                bail!(
                    "round {round}: the per-pixel oracle's sample differs from the host executor's"
                );
            }
            if round > 0 {
                oracle_ms.push(o);
            }
        }
        if round > 0 {
            micro_ms.push(m);
            host_ms.push(h);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (m, h) = (median(&mut micro_ms), median(&mut host_ms));
    println!();
    println!("| executor | median per sample | min | per pass |");
    println!("| --- | ---: | ---: | ---: |");
    let mut sides = vec![(c.micro_name, m, &micro_ms), ("host int8", h, &host_ms)];
    let o = if c.oracle.is_some() {
        median(&mut oracle_ms)
    } else {
        0.0
    };
    if c.oracle.is_some() {
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
        "ratio {} / host: {:.1}× ({} timed rounds, the same bits every round)",
        c.micro_name.split(' ').next().unwrap_or("microcontroller"),
        m / h,
        a.rounds
    );
    if c.oracle.is_some() {
        println!("ratio per-pixel oracle / host: {:.1}×", o / h);
    }
    Ok(())
}
