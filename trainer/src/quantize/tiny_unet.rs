//! `export --int8` for TinyUNet, calibrated (see the [module notes](super)) on noised training
//! images and on every state x_t of DDIM trajectories (10 steps, η = 0, x0 clipped, ε
//! recomputed: the sampler of the firmware demo) of the f32 model.

use std::path::Path;

use anyhow::{anyhow, Result};
use ddpm_core::diffusion::{DdimConfig, SamplerConfig};
use ddpm_core::file::ModelFile;
use ddpm_core::tiny_unet::int8::{
    layer_count, layerwise_len, layerwise_offsets, Int8TinyUNet, TimeScratch, EXTRA_MID_LAYER,
    LAYERS,
};
use ddpm_core::tiny_unet::ptq::{quantize_tiny_unet, reference_workspace_ranges, TinyCalibrator};
use ddpm_core::{GaussianNoise, ModelConfig, Schedule, TinyUNet, TinyUNetConfig};

use super::{bar, calibrate, load_for_calibration, noised, CalibrationOptions};
use crate::data::idx::Mnist;

/// Relative RMS errors of int8 against f32 for a TinyUNet.
#[derive(Debug, Clone)]
pub struct TinyAccuracyReport {
    /// Per stored activation, in [`ddpm_core::tiny_unet::ptq::TINY_ACTIVATIONS`] order: the
    /// quantized input x, then the outputs of enc0 (s1), down1 (s2), down2, mid, up2, up1 and
    /// of the further mid blocks (mid1, …), one entry per [`layer_count`].
    pub activations: Vec<f64>,
    /// The network output ε.
    pub eps: f64,
}

/// Steps of the calibration trajectories (the firmware demo's DDIM step count).
pub const CALIBRATION_DDIM_STEPS: u32 = 10;

/// SplitMix64: a reproducible stream of draws (image indices, timesteps).
struct Draws(u64);

impl Draws {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) % n.max(1) as u64) as usize
    }
}

/// The stored activations' names in [`TinyAccuracyReport::activations`] order, each by the
/// layer that writes it (`input`: the quantized x).
pub fn activation_names() -> impl Iterator<Item = &'static str> {
    ["input", "enc0", "down1", "down2", "mid", "up2", "up1"]
        .into_iter()
        .chain(LAYERS[EXTRA_MID_LAYER..].iter().copied())
}

/// Quantizes the parsed and checked f32 TinyUNet model `file`; returns the int8 file and its
/// accuracy.
pub fn quantize_tiny_model(
    file: &ModelFile<'_>,
    data_dir: &Path,
    opts: &CalibrationOptions,
    note: &str,
) -> Result<(Vec<u8>, TinyAccuracyReport)> {
    let inputs = load_for_calibration(file, data_dir, "tiny")?;
    let ModelConfig::TinyUNet(cfg) = inputs.model else {
        unreachable!("load_for_calibration checked the architecture");
    };
    let net = TinyUNet::from_flat(cfg, &inputs.params).map_err(|e| anyhow!("{e}"))?;
    let mut cal = TinyCalibrator::new(net, 13);
    let mut draws = Draws(opts.seed);
    let mut observed = 0usize;
    let scfg = SamplerConfig::Ddim(DdimConfig {
        steps: CALIBRATION_DDIM_STEPS,
        ..Default::default()
    });
    calibrate(
        file,
        &inputs,
        opts,
        &mut |_: &mut GaussianNoise, n| draws.below(n),
        &scfg,
        1,
        &|k| match k {
            0 => bar(opts.images as u64, "calibrating (noised images)"),
            _ => bar(opts.trajectories as u64, "calibrating (DDIM trajectories)"),
        },
        &mut |x, t_in| {
            // A class-conditional network is observed under every label in turn, "no class"
            // included (classifier-free guidance runs both).
            if cfg.is_conditional() {
                let label = (observed % (cfg.classes as usize + 1)) as u32;
                cal.set_class((label < cfg.classes).then_some(label))
                    .map_err(|e| anyhow!("{e}"))?;
                observed += 1;
            }
            cal.observe(x, t_in).map_err(|e| anyhow!("{e}"))
        },
    )?;
    let ranges = cal.ranges(opts.quant.range);
    let bytes =
        quantize_tiny_unet(&net, inputs.schedule, &ranges, note).map_err(|e| anyhow!("{e}"))?;
    let report = tiny_accuracy(&net, &bytes, &inputs.test, &inputs.sched, opts)?;
    Ok((bytes, report))
}

/// Relative RMS errors of the int8 file against the f32 network on noised test images.
pub fn tiny_accuracy(
    net: &TinyUNet<'_>,
    int8_bytes: &[u8],
    test: &Mnist,
    sched: &Schedule,
    opts: &CalibrationOptions,
) -> Result<TinyAccuracyReport> {
    let cfg: TinyUNetConfig = *net.config();
    let file = ModelFile::parse(int8_bytes).map_err(|e| anyhow!("int8 file: {e}"))?;
    let q = Int8TinyUNet::from_file(&file).map_err(|e| anyhow!("int8 file: {e}"))?;
    let quants = q.activation_quants();
    let mut acts = vec![0i8; layerwise_len(&cfg)];
    let offs = layerwise_offsets(&cfg);
    let wide = cfg
        .widths
        .iter()
        .max()
        .copied()
        .unwrap_or(1)
        .max(cfg.channels) as usize;
    let (mut emb, mut hidden, mut temb, mut offsets) = (
        vec![0.0f32; cfg.emb_dim as usize],
        vec![0.0f32; cfg.temb_dim as usize],
        vec![0.0f32; cfg.temb_dim as usize],
        vec![0i32; wide],
    );
    let mut ws = vec![0.0f32; cfg.workspace_len()];
    let (mut e8, mut e32) = (vec![0.0f32; cfg.image_len()], vec![0.0f32; cfg.image_len()]);
    let n = layer_count(&cfg);
    let (mut num, mut den) = (vec![0.0f64; n + 1], vec![0.0f64; n + 1]);
    let mut draws = Draws(opts.seed ^ 0x5EED_7E57);
    let mut noise = GaussianNoise::new(opts.seed ^ 0x7E57_5EED);
    let big_t = sched.len();
    let ranges = reference_workspace_ranges(&cfg);
    let b = bar(opts.eval_images as u64, "accuracy on noised test images");
    for _ in 0..opts.eval_images {
        let i = draws.below(test.len);
        let t = draws.below(big_t);
        let x = noised(test, i, t, sched, &mut noise);
        let t_in = t as f32 / big_t as f32;
        let mut ts = TimeScratch {
            emb: &mut emb,
            hidden: &mut hidden,
            temb: &mut temb,
            offsets: &mut offsets,
            row: &mut [],
        };
        q.forward_layerwise(&x, t_in, &mut acts, &mut ts, &mut e8)
            .map_err(|e| anyhow!("{e}"))?;
        net.forward_reference(&x, t_in, &mut ws, &mut e32)
            .map_err(|e| anyhow!("{e}"))?;
        for k in 0..n {
            let f: &[f32] = if k == 0 {
                &x
            } else {
                &ws[ranges[k - 1].clone()]
            };
            let a = &acts[offs[k]..offs[k + 1]];
            for (&qv, &r) in a.iter().zip(f) {
                let d = quants[k].dequantize(qv) as f64 - r as f64;
                num[k] += d * d;
                den[k] += (r as f64) * (r as f64);
            }
        }
        for (a, b) in e8.iter().zip(&e32) {
            num[n] += ((a - b) as f64).powi(2);
            den[n] += (*b as f64).powi(2);
        }
        b.inc(1);
    }
    b.finish_and_clear();
    let rel = |k: usize| (num[k] / den[k].max(f64::MIN_POSITIVE)).sqrt();
    Ok(TinyAccuracyReport {
        activations: (0..n).map(rel).collect(),
        eps: rel(n),
    })
}
