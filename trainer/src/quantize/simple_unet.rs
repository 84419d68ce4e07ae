//! `export --int8` for SimpleUNet, calibrated (see the [module notes](super)) on noised training
//! images and on states x_t along DDPM trajectories (fixed_large, the seed's sampler) of the f32
//! model, every `trajectory_every`-th step.
//!
//! With `ablation`, the same inputs also run through the int8 network simulated in real
//! numbers with one part at a time quantized (and with one part at a time kept in f32), which
//! attributes ε's error to the layers.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use ddpm_core::diffusion::{DdpmConfig, SamplerConfig};
use ddpm_core::file::ModelFile;
use ddpm_core::simple_unet::int8::{Int8SimpleUNet, Scratch};
use ddpm_core::simple_unet::ptq::{Calibrator, QuantMask, QuantPlan, ACTIVATIONS};
use ddpm_core::{GaussianNoise, ModelConfig, Schedule, SimpleUNet};

use indicatif::ProgressBar;

use super::{calibrate, load_for_calibration, noised, parse_f32, CalibrationOptions};
use crate::data::idx::Mnist;

/// Relative RMS errors of int8 against f32.
#[derive(Debug, Clone)]
pub struct AccuracyReport {
    /// Per stored activation: input (quantized x), enc1, enc2 (+ time embedding), dec1.
    pub activations: [f64; 4],
    /// The network output ε.
    pub eps: f64,
    /// ε's error of the int8 network simulated in real numbers (checks the simulation the
    /// ablation uses against the integer executor).
    pub sim_eps: f64,
    /// With `ablation`: (what is quantized, ε's relative RMS error) rows.
    pub ablation: Vec<(String, f64)>,
}

/// Uniform integer in [0, n) from the noise stream's bits (a Gaussian's CDF is not needed:
/// this is only a reproducible choice).
fn pick(noise: &mut GaussianNoise, n: usize) -> usize {
    let u = (noise.next_gaussian().to_bits() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u >> 32) as usize) % n.max(1)
}

/// Quantizes the f32 model file `model_bytes`; returns the int8 file and its accuracy.
pub fn quantize_model(
    model_bytes: &[u8],
    data_dir: &Path,
    opts: &CalibrationOptions,
    note: &str,
) -> Result<(Vec<u8>, AccuracyReport)> {
    quantize_file(&parse_f32(model_bytes)?, data_dir, opts, note)
}

/// [`quantize_model`] of an already parsed and checked f32 model file.
pub fn quantize_file(
    file: &ModelFile<'_>,
    data_dir: &Path,
    opts: &CalibrationOptions,
    note: &str,
) -> Result<(Vec<u8>, AccuracyReport)> {
    let inputs = load_for_calibration(file, data_dir, "simple")?;
    let ModelConfig::SimpleUNet(cfg) = inputs.model else {
        unreachable!("load_for_calibration checked the architecture");
    };
    let net = SimpleUNet::from_flat(cfg, &inputs.params).map_err(|e| anyhow!("{e}"))?;
    let mut cal = Calibrator::new(net, 13);
    // Trajectories of the f32 model with the seed's sampler.
    calibrate(
        file,
        &inputs,
        opts,
        &mut |noise: &mut GaussianNoise, n| pick(noise, n),
        &SamplerConfig::Ddpm(DdpmConfig::default()),
        opts.trajectory_every,
        &|_| ProgressBar::hidden(),
        &mut |x, t_in| cal.observe(x, t_in).map_err(|e| anyhow!("{e}")),
    )?;
    let plan = QuantPlan::build(&net, &cal, &opts.quant).map_err(|e| anyhow!("{e}"))?;
    let bytes = plan
        .write(inputs.schedule, note)
        .map_err(|e| anyhow!("{e}"))?;
    let (test, sched) = (&inputs.test, &inputs.sched);
    // Against the equalized f32 network (the same function as `net`, with activation
    // channels rescaled as the int8 file stores them).
    let f32_net = plan.f32_net().map_err(|e| anyhow!("{e}"))?;
    let mut report = accuracy(&f32_net, &bytes, test, sched, opts)?;
    let (sim_eps, ablation) = simulated_errors(&net, &plan, test, sched, opts)?;
    report.sim_eps = sim_eps;
    report.ablation = ablation;
    Ok((bytes, report))
}

/// Relative RMS errors of the int8 file against the f32 network on noised test images.
pub fn accuracy(
    net: &SimpleUNet<'_>,
    int8_bytes: &[u8],
    test: &Mnist,
    sched: &Schedule,
    opts: &CalibrationOptions,
) -> Result<AccuracyReport> {
    let cfg = *net.config();
    let file = ModelFile::parse(int8_bytes).map_err(|e| anyhow!("int8 file: {e}"))?;
    let q = Int8SimpleUNet::from_file(&file).map_err(|e| anyhow!("int8 file: {e}"))?;
    let plane = (cfg.height * cfg.width) as usize;
    let (c, h1, h2) = (
        cfg.channels as usize,
        cfg.hidden1 as usize,
        cfg.hidden2 as usize,
    );
    let mut acts = vec![0i8; cfg.layerwise_act_len()];
    let (mut hidden, mut temb, mut offsets, mut row) = (
        vec![0.0; h2],
        vec![0.0; h2],
        vec![0; h2],
        vec![0.0; cfg.row_len()],
    );
    let mut ws = vec![0.0f32; cfg.workspace_len()];
    let (mut e8, mut e32) = (vec![0.0f32; cfg.image_len()], vec![0.0f32; cfg.image_len()]);
    let mut num = [0.0f64; 5];
    let mut den = [0.0f64; 5];
    let mut noise = GaussianNoise::new(opts.seed ^ 0x5EED_7E57);
    let big_t = sched.len();
    let input_q = q.input_quant();
    let quants = [
        Some(input_q.q),
        q.layers()[0].out,
        q.layers()[1].out,
        q.layers()[2].out,
    ];
    for _ in 0..opts.eval_images {
        let i = pick(&mut noise, test.len);
        let t = pick(&mut noise, big_t);
        let x = noised(test, i, t, sched, &mut noise);
        let t_in = t as f32 / big_t as f32;
        let mut s = Scratch {
            acts: &mut acts,
            hidden: &mut hidden,
            temb: &mut temb,
            offsets: &mut offsets,
            row: &mut row,
        };
        q.forward_layerwise(&x, t_in, &mut s, &mut e8)
            .map_err(|e| anyhow!("{e}"))?;
        net.forward_reference(&x, t_in, &mut ws, &mut e32)
            .map_err(|e| anyhow!("{e}"))?;
        // f32 maps: input, then the workspace's enc1 | enc2 | dec1.
        let f32_maps: [&[f32]; 4] = [
            &x,
            &ws[..h1 * plane],
            &ws[h1 * plane..(h1 + h2) * plane],
            &ws[(h1 + h2) * plane..(2 * h1 + h2) * plane],
        ];
        let ib = ddpm_core::simple_unet::int8::INPUT_BYTES * c * plane;
        let offs = [0, ib, ib + h1 * plane, ib + (h1 + h2) * plane];
        for k in 0..4 {
            let qk = quants[k].context("activation quantization")?;
            let m = f32_maps[k];
            for (j, &r) in m.iter().enumerate() {
                let v = if k == 0 {
                    input_q.dequantize(ddpm_core::simple_unet::int8::load_input(&acts, j))
                } else {
                    qk.dequantize(acts[offs[k] + j])
                };
                let d = v as f64 - r as f64;
                num[k] += d * d;
                den[k] += (r as f64) * (r as f64);
            }
        }
        for (a, b) in e8.iter().zip(&e32) {
            num[4] += ((a - b) as f64).powi(2);
            den[4] += (*b as f64).powi(2);
        }
    }
    let rel = |k: usize| (num[k] / den[k].max(f64::MIN_POSITIVE)).sqrt();
    Ok(AccuracyReport {
        activations: [rel(0), rel(1), rel(2), rel(3)],
        eps: rel(4),
        sim_eps: f64::NAN,
        ablation: Vec::new(),
    })
}

/// The noised test inputs of [`accuracy`] (same draws), concatenated, with their time inputs.
fn eval_inputs(test: &Mnist, sched: &Schedule, opts: &CalibrationOptions) -> (Vec<f32>, Vec<f32>) {
    let mut noise = GaussianNoise::new(opts.seed ^ 0x5EED_7E57);
    let big_t = sched.len();
    let (mut xs, mut ts) = (Vec::new(), Vec::new());
    for _ in 0..opts.eval_images {
        let i = pick(&mut noise, test.len);
        let t = pick(&mut noise, big_t);
        xs.extend(noised(test, i, t, sched, &mut noise));
        ts.push(t as f32 / big_t as f32);
    }
    (xs, ts)
}

/// ε's relative RMS error of the simulated int8 network on the evaluation inputs: everything
/// quantized, and with `opts.ablation` each part alone and each part kept in f32.
fn simulated_errors(
    net: &SimpleUNet<'_>,
    plan: &QuantPlan,
    test: &Mnist,
    sched: &Schedule,
    opts: &CalibrationOptions,
) -> Result<(f64, Vec<(String, f64)>)> {
    let cfg = *net.config();
    let (xs, ts) = eval_inputs(test, sched, opts);
    let mut reference = vec![0.0f32; xs.len()];
    let mut ws = vec![0.0f32; cfg.workspace_len()];
    let img = cfg.image_len();
    for ((x, t), out) in xs.chunks(img).zip(&ts).zip(reference.chunks_mut(img)) {
        net.forward_reference(x, *t, &mut ws, out)
            .map_err(|e| anyhow!("{e}"))?;
    }
    let err = |mask: QuantMask| -> Result<f64> {
        let eps = plan.simulate(&xs, &ts, mask).map_err(|e| anyhow!("{e}"))?;
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for (a, b) in eps.iter().zip(&reference) {
            num += ((a - b) as f64).powi(2);
            den += (*b as f64).powi(2);
        }
        Ok((num / den.max(f64::MIN_POSITIVE)).sqrt())
    };
    let all = err(QuantMask::ALL)?;
    let mut rows = Vec::new();
    if opts.ablation {
        const WEIGHTS: [&str; 4] = ["enc1", "enc2", "dec1", "dec2"];
        rows.push(("f32 (nothing quantized)".to_string(), err(QuantMask::NONE)?));
        // One part at a time (every activation, then every layer's weights): quantized alone,
        // and kept in f32 alone.
        let parts = ACTIVATIONS
            .iter()
            .enumerate()
            .map(|(k, name)| (format!("activation {name}"), Some(k), None))
            .chain(
                WEIGHTS
                    .iter()
                    .enumerate()
                    .map(|(l, name)| (format!("weights {name}"), None, Some(l))),
            );
        for (what, act, weight) in parts {
            let set = |mut m: QuantMask, on: bool| {
                if let Some(k) = act {
                    m.acts[k] = on;
                }
                if let Some(l) = weight {
                    m.weights[l] = on;
                }
                m
            };
            rows.push((format!("only {what}"), err(set(QuantMask::NONE, true))?));
            rows.push((format!("all but {what}"), err(set(QuantMask::ALL, false))?));
        }
        let acts_only = QuantMask {
            acts: [true; 4],
            weights: [false; 4],
        };
        let weights_only = QuantMask {
            acts: [false; 4],
            weights: [true; 4],
        };
        rows.push(("all activations, f32 weights".to_string(), err(acts_only)?));
        rows.push((
            "all weights, f32 activations".to_string(),
            err(weights_only)?,
        ));
    }
    Ok((all, rows))
}
