//! Tests of the int8 TinyUNet executors (layer-wise and planned) against each other, the
//! generic sampler and the f32 reference, over quantized random networks.

extern crate alloc;
use alloc::vec;
use alloc::vec::Vec;

use super::int8::*;
use super::planned::*;
use super::ptq::{activation_quants, quantize_tiny_unet, TinyCalibrator};
use super::{TinyUNet, TinyUNetConfig};
use crate::diffusion::{SamplerConfig, Schedule, ScheduleConfig};
use crate::error::{Error, Result};
use crate::file::{DType, ModelFile, ModelWriter};
use crate::kernels::calibrate::RangeMethod;
use crate::kernels::quant::ActQuant;
use crate::kernels::reference as layers;

/// Deterministic pseudo-random values in [−1, 1).
fn lcg(state: &mut u64) -> f32 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Random TinyUNet parameters with He-like scales (so activations neither vanish nor
/// explode through the seven convs) and time projections comparable to the conv outputs.
fn random_params(cfg: &TinyUNetConfig, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut p = Vec::with_capacity(cfg.param_count());
    for spec in cfg.tensor_specs() {
        let d = spec.dims();
        let fan_in = if d.len() > 1 {
            d[1..].iter().product::<u32>() as f32
        } else {
            1.0
        };
        let scale = if d.len() > 1 {
            (6.0 / fan_in).sqrt()
        } else {
            0.1
        };
        for _ in 0..spec.numel() {
            p.push(lcg(&mut s) * scale);
        }
    }
    p
}

pub(super) fn noisy_image(cfg: &TinyUNetConfig, s: &mut u64) -> Vec<f32> {
    (0..cfg.image_len()).map(|_| lcg(s) * 1.5).collect()
}

pub(super) struct Fixture {
    pub(super) params: Vec<f32>,
    pub(super) int8: Vec<u8>,
}

pub(super) fn fixture(cfg: TinyUNetConfig) -> Fixture {
    let params = random_params(&cfg, 7);
    let net = TinyUNet::from_flat(cfg, &params).unwrap();
    let mut cal = TinyCalibrator::new(net, 7);
    let mut s = 99u64;
    for k in 0..16u32 {
        let x = noisy_image(&cfg, &mut s);
        if cfg.is_conditional() {
            // Every label in turn, "no class" (label K) included.
            let label = k % (cfg.classes + 1);
            cal.set_class((label < cfg.classes).then_some(label))
                .unwrap();
        }
        cal.observe(&x, k as f32 / 16.0).unwrap();
    }
    let int8 = quantize_tiny_unet(
        &net,
        ScheduleConfig::default(),
        &cal.ranges(RangeMethod::MinMax),
        "test",
    )
    .unwrap();
    Fixture { params, int8 }
}

/// Time scratch sized exactly for a configuration (no ε row).
pub(super) struct TimeVecs {
    emb: Vec<f32>,
    hidden: Vec<f32>,
    temb: Vec<f32>,
    offsets: Vec<i32>,
}

impl TimeVecs {
    pub(super) fn new(cfg: &TinyUNetConfig) -> Self {
        Self {
            emb: vec![0.0; cfg.emb_dim as usize],
            hidden: vec![0.0; cfg.temb_dim as usize],
            temb: vec![0.0; cfg.temb_dim as usize],
            offsets: vec![0; widest(cfg)],
        }
    }

    pub(super) fn scratch(&mut self) -> TimeScratch<'_> {
        let Self {
            emb,
            hidden,
            temb,
            offsets,
        } = self;
        TimeScratch {
            emb,
            hidden,
            temb,
            offsets,
            row: &mut [],
        }
    }
}

/// The default network, and deeper ones with an even and an odd number of mid blocks (the
/// planned pass starts its C/D ping-pong in a different region for each parity), all within
/// the default's workspace.
pub(super) fn int8_configs() -> [TinyUNetConfig; 5] {
    let d = TinyUNetConfig::DEFAULT;
    [
        d,
        TinyUNetConfig { mid_blocks: 2, ..d },
        TinyUNetConfig {
            widths: [32, 64, 56],
            mid_blocks: 3,
            ..d
        },
        SMALLER,
        // More mid blocks than the first limit of four (run Y of the README's levers).
        TinyUNetConfig {
            widths: [24, 64, 48],
            mid_blocks: 6,
            ..d
        },
    ]
}

/// The committed model's sizes, whose arena is smaller than the default one's.
const SMALLER: TinyUNetConfig = TinyUNetConfig {
    widths: [24, 64, 56],
    mid_blocks: 4,
    ..TinyUNetConfig::DEFAULT
};

/// The planned executor (arena, streamed tail, row kernels with the zero point subtracted per
/// column and up-sampled inputs read per phase) gives exactly the layerwise oracle's ε
/// (per-pixel loops over every tap).
#[test]
fn planned_equals_layerwise_bit_for_bit() {
    int8_configs()
        .into_iter()
        .for_each(planned_equals_layerwise);
}

fn planned_equals_layerwise(cfg: TinyUNetConfig) {
    let f = fixture(cfg);
    let file = ModelFile::parse(&f.int8).unwrap();
    let q = Int8TinyUNet::from_file(&file).unwrap();
    let mut acts = vec![0i8; layerwise_len(&cfg)];
    let mut ws = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
    let mut tv = TimeVecs::new(&cfg);
    let mut s = 5u64;
    for k in 0..4 {
        let x = noisy_image(&cfg, &mut s);
        let t_in = 0.1 + 0.27 * k as f32;
        let mut e_lw = vec![0.0f32; cfg.image_len()];
        let mut e_pl = vec![1.0f32; cfg.image_len()];
        let mut t = tv.scratch();
        q.forward_layerwise(&x, t_in, &mut acts, &mut t, &mut e_lw)
            .unwrap();
        // Dirty the arena: the planned pass must not depend on its previous contents.
        ws.arena
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as i8);
        q.forward_planned(&x, t_in, &mut ws, &mut e_pl).unwrap();
        assert_eq!(
            e_lw.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            e_pl.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{cfg:?} input {k}"
        );
    }
}

/// The default schedule and a 3-step DDIM (x0 clipped, ε recomputed): a short sample.
pub(super) fn three_ddim_steps() -> (Schedule, SamplerConfig) {
    let sched = Schedule::new(&ScheduleConfig::default()).unwrap();
    let scfg = SamplerConfig::Ddim(crate::diffusion::DdimConfig {
        steps: 3,
        clip_x0: true,
        recompute_eps: true,
        ..crate::diffusion::DdimConfig::default()
    });
    (sched, scfg)
}

/// The row-streamed sampler (no ε buffer, x updated as ε's rows appear) equals the
/// generic sampler driving the planned executor with a whole ε, bit for bit.
#[test]
fn sample_planned_equals_generic_sampler() {
    use crate::diffusion as sampler;
    let cfg = TinyUNetConfig::DEFAULT;
    let f = fixture(cfg);
    let file = ModelFile::parse(&f.int8).unwrap();
    let q = Int8TinyUNet::from_file(&file).unwrap();
    let (sched, scfg) = three_ddim_steps();
    let mut ws = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
    let mut x1 = vec![0.0f32; cfg.image_len()];
    sample_planned(&q, &sched, &scfg, 42, &mut x1, &mut ws).unwrap();
    let mut den = Int8TinyPlanned::new(q, &mut ws).unwrap();
    let (mut x2, mut eps) = (vec![0.0f32; cfg.image_len()], vec![0.0f32; cfg.image_len()]);
    sampler::sample(&mut den, &sched, &scfg, 42, &mut x2, &mut eps).unwrap();
    assert_eq!(
        x1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        x2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert!(x1.iter().any(|v| *v != 0.0));
}

/// DPM-Solver++(2M) and UniPC row by row through the planned executor (with their history)
/// equal the driver over the planned executor with a whole output, bit for bit.
#[test]
fn sample_planned_runs_dpm_solver_as_the_generic_driver_does() {
    use crate::diffusion::{self as sampler, GaussianNoise, SolverConfig, Spacing};
    let cfg = TinyUNetConfig::DEFAULT;
    let f = fixture(cfg);
    let file = ModelFile::parse(&f.int8).unwrap();
    let q = Int8TinyUNet::from_file(&file).unwrap();
    let (sched, _) = three_ddim_steps();
    let solver = SolverConfig {
        steps: 4,
        spacing: Spacing::Linspace,
    };
    for scfg in [
        SamplerConfig::DpmSolver2M(solver),
        SamplerConfig::UniPc(solver),
    ] {
        let len = cfg.image_len();
        let hist = scfg.history_len(len);
        let mut ws = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
        let (mut x1, mut h1) = (vec![0.0f32; len], vec![0.0f32; hist]);
        sample_planned_with_history(&q, &sched, &scfg, 42, &mut x1, &mut ws, &mut h1).unwrap();
        // Without a history, a typed error.
        let mut x0 = vec![0.0f32; len];
        assert!(matches!(
            sample_planned(&q, &sched, &scfg, 42, &mut x0, &mut ws),
            Err(Error::BufferSize { .. })
        ));
        let mut den = Int8TinyPlanned::new(q, &mut ws).unwrap();
        let (mut x2, mut eps, mut h2) = (vec![0.0f32; len], vec![0.0f32; len], vec![0.0f32; hist]);
        let mut net = sampler::WholeImages::new(&mut den, &mut eps).unwrap();
        let noise = &mut [GaussianNoise::new(42)];
        sampler::sample_batch_with_history(&mut net, &sched, &scfg, noise, &mut x2, &mut h2)
            .unwrap();
        assert_eq!(
            x1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            x2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{scfg:?}"
        );
        assert!(x1.iter().any(|v| *v != 0.0));
    }
}

/// The planned executor as a [`crate::diffusion::Denoiser`] of any configuration (each with its
/// own workspace), for comparisons with the guided denoiser.
struct PlannedDenoiser<'a, 'b> {
    net: Int8TinyUNet<'a>,
    ws: &'b mut TinyInt8Workspace,
}

impl crate::diffusion::Denoiser for PlannedDenoiser<'_, '_> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        self.net.forward_planned(x, t_in, self.ws, eps)
    }
}

/// Guided sampling through the planned executor (the guide's pass stored, the model's rows
/// mixed as they appear, one workspace for both) equals the generic driver over the guided
/// denoiser of two whole-ε planned passes, bit for bit, with DDIM and with UniPC; the guide
/// may be a smaller network; mismatched sizes are typed errors.
#[test]
fn guided_planned_sampling_equals_the_guided_denoiser() {
    use crate::diffusion::{self as sampler, GaussianNoise, Guided, SolverConfig, Spacing};
    let (f, g) = (fixture(TinyUNetConfig::DEFAULT), fixture(SMALLER));
    let (fm, fg) = (
        ModelFile::parse(&f.int8).unwrap(),
        ModelFile::parse(&g.int8).unwrap(),
    );
    let q = Int8TinyUNet::from_file(&fm).unwrap();
    let qg = Int8TinyUNet::from_file(&fg).unwrap();
    let (sched, ddim) = three_ddim_steps();
    let len = TinyUNetConfig::DEFAULT.image_len();
    let unipc = SamplerConfig::UniPc(SolverConfig {
        steps: 4,
        spacing: Spacing::Linspace,
    });
    for scfg in [ddim, unipc] {
        let hist = scfg.history_len(len);
        let mut ws = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
        let (mut x1, mut g1, mut h1) = (vec![0.0f32; len], vec![0.0f32; len], vec![0.0f32; hist]);
        sample_planned_guided(
            &q, &qg, 2.5, &sched, &scfg, 42, &mut x1, &mut ws, &mut g1, &mut h1,
        )
        .unwrap();
        let mut ws_a = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
        let mut ws_b = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
        let mut good = PlannedDenoiser {
            net: q,
            ws: &mut ws_a,
        };
        let mut bad = PlannedDenoiser {
            net: qg,
            ws: &mut ws_b,
        };
        let mut scratch = vec![0.0f32; len];
        let mut guided = Guided::new(&mut good, &mut bad, 2.5, &mut scratch).unwrap();
        let (mut x2, mut eps, mut h2) = (vec![0.0f32; len], vec![0.0f32; len], vec![0.0f32; hist]);
        let mut net = sampler::WholeImages::new(&mut guided, &mut eps).unwrap();
        let noise = &mut [GaussianNoise::new(42)];
        sampler::sample_batch_with_history(&mut net, &sched, &scfg, noise, &mut x2, &mut h2)
            .unwrap();
        assert_eq!(
            x1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            x2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{scfg:?}"
        );
        // Guiding changes the sample.
        let mut x3 = vec![0.0f32; len];
        let mut h3 = vec![0.0f32; hist];
        sample_planned_with_history(&q, &sched, &scfg, 42, &mut x3, &mut ws, &mut h3).unwrap();
        assert_ne!(x1, x3);
    }
    // A guide output of the wrong length, a non-finite weight: typed errors.
    let mut ws = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
    let mut short = vec![0.0f32; len - 1];
    assert!(matches!(
        PlannedGuided::new(&q, &qg, 2.5, &mut ws, &mut short),
        Err(Error::BufferSize { .. })
    ));
    let mut g1 = vec![0.0f32; len];
    assert!(matches!(
        PlannedGuided::new(&q, &qg, f32::NAN, &mut ws, &mut g1),
        Err(Error::InvalidConfig(_))
    ));
}

/// A workspace whose arena is sized for a smaller network samples exactly as the default
/// workspace does, and one byte less is refused with the sizes named.
#[test]
fn workspace_sized_for_its_network_samples_the_same() {
    const SIZED: usize = arena_len(&SMALLER);
    const { assert!(SIZED == 18_816 + 12_544 + 2_744 + 2_744 + 2_016 && SIZED < DEFAULT_ARENA_LEN) };
    const {
        assert!(TinyInt8Workspace::<SIZED>::fits(&SMALLER));
        assert!(!TinyInt8Workspace::<{ SIZED - 1 }>::fits(&SMALLER));
    };
    let f = fixture(SMALLER);
    let file = ModelFile::parse(&f.int8).unwrap();
    let q = Int8TinyUNet::from_file(&file).unwrap();
    let (sched, scfg) = three_ddim_steps();
    let sample = |ws: &mut dyn FnMut(&mut [f32]) -> Result<()>| {
        let mut x = vec![0.0f32; SMALLER.image_len()];
        ws(&mut x).map(|()| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
    };
    let mut big = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
    let mut sized = alloc::boxed::Box::new(TinyInt8Workspace::<SIZED>::ZEROED);
    let mut short = alloc::boxed::Box::new(TinyInt8Workspace::<{ SIZED - 1 }>::ZEROED);
    let want = sample(&mut |x| sample_planned(&q, &sched, &scfg, 7, x, &mut big)).unwrap();
    let got = sample(&mut |x| sample_planned(&q, &sched, &scfg, 7, x, &mut sized)).unwrap();
    assert_eq!(got, want);
    assert!(want.iter().any(|&b| b != 0));
    let err = sample(&mut |x| sample_planned(&q, &sched, &scfg, 7, x, &mut short));
    assert_eq!(
        err,
        Err(Error::BufferSize {
            what: "int8 arena",
            needed: SIZED,
            got: SIZED - 1
        })
    );
}

/// Relative RMS error of int8 ε against f32 ε on inputs outside the calibration set.
///
/// With 8-bit activations through seven layers, each rounding adds an error of about
/// scale/√12 per value; on these random networks the measured errors are 0.0119 (default),
/// 0.0127 (two mid blocks), 0.0184 (widths 32/64/56, three mid blocks), 0.0184 (widths
/// 24/64/56, four mid blocks) and 0.0262 (widths 24/64/48, six mid blocks: each mid block
/// adds a rounding; the arithmetic is deterministic). The bound 0.03 leaves 1.6× room on the
/// shallower networks and 1.15× on the deepest while failing on any systematic error (a
/// wrong zero point, scale or time offset gives errors of order 0.1 to 1).
const INT8_EPS_REL_RMS_MAX: f64 = 0.03;

#[test]
fn int8_tracks_f32() {
    int8_configs().into_iter().for_each(int8_tracks_f32_on);
}

fn int8_tracks_f32_on(cfg: TinyUNetConfig) {
    let f = fixture(cfg);
    let net = TinyUNet::from_flat(cfg, &f.params).unwrap();
    let file = ModelFile::parse(&f.int8).unwrap();
    let q = Int8TinyUNet::from_file(&file).unwrap();
    let mut ws = vec![0.0f32; cfg.workspace_len()];
    let mut ws8 = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
    let mut s = 1234u64;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for k in 0..4 {
        let x = noisy_image(&cfg, &mut s);
        let t_in = 0.05 + 0.3 * k as f32;
        let mut e32 = vec![0.0f32; cfg.image_len()];
        let mut e8 = vec![0.0f32; cfg.image_len()];
        net.forward_reference(&x, t_in, &mut ws, &mut e32).unwrap();
        q.forward_planned(&x, t_in, &mut ws8, &mut e8).unwrap();
        for (a, b) in e8.iter().zip(&e32) {
            num += ((a - b) as f64).powi(2);
            den += (*b as f64).powi(2);
        }
    }
    let rel = (num / den).sqrt();
    std::eprintln!("{cfg:?}: int8 vs f32 ε relative RMS error: {rel:.4}");
    assert!(
        rel < INT8_EPS_REL_RMS_MAX,
        "{cfg:?}: relative RMS error {rel}"
    );
}

/// Both halves of each concatenation share one quantization that covers both ranges.
#[test]
fn concatenation_halves_share_parameters() {
    let ranges = [
        (-3.0, 3.0),
        (0.0, 2.0), // s1
        (0.0, 9.0), // s2
        (0.0, 1.0),
        (0.0, 4.0), // m
        (0.0, 5.0), // u2
        (0.0, 7.0),
    ];
    let cfg = TinyUNetConfig::DEFAULT;
    let a = activation_quants(&cfg, &ranges).unwrap();
    assert_eq!(a[1], a[5], "s1 and u2");
    assert_eq!(a[2], a[4], "s2 and m");
    assert_eq!(a[1], ActQuant::from_range(0.0, 5.0));
    assert_eq!(a[2], ActQuant::from_range(0.0, 9.0));
    assert_eq!(a[0], ActQuant::from_range(-3.0, 3.0));
    assert!(activation_quants(&cfg, &ranges[..6]).is_err());
    // Three mid blocks: m1 (index 7) and m2 (index 8, the last mid output) follow u1; s2
    // now shares with m2, and m keeps its own range.
    let deep = TinyUNetConfig {
        mid_blocks: 3,
        ..cfg
    };
    let mut r = ranges.to_vec();
    r.extend([(0.0, 6.0), (0.0, 11.0)]);
    let a = activation_quants(&deep, &r).unwrap();
    assert_eq!(a[2], a[8], "s2 and m2");
    assert_eq!(a[2], ActQuant::from_range(0.0, 11.0));
    assert_eq!(a[4], ActQuant::from_range(0.0, 4.0));
    assert_eq!(a[7], ActQuant::from_range(0.0, 6.0));
    assert_eq!(a[1], a[5], "s1 and u2");
}

/// A file whose concatenation halves do not share parameters is refused by name.
#[test]
fn mismatched_concatenation_parameters_are_refused() {
    let cfg = TinyUNetConfig {
        height: 8,
        width: 8,
        widths: [4, 6, 8],
        emb_dim: 4,
        temb_dim: 6,
        classes: 0,
        ..TinyUNetConfig::DEFAULT
    };
    let f = fixture(cfg);
    let file = ModelFile::parse(&f.int8).unwrap();
    assert!(Int8TinyUNet::from_file(&file).is_ok());
    for bad in ["up2.output_scale", "mid.output_scale"] {
        let h = file.header();
        let mut w = ModelWriter::new(h.model, h.schedule, "bad").with_precision(h.precision);
        for t in file.tensors() {
            let dims = t.dims();
            match t.dtype {
                DType::F32 => {
                    let mut v: Vec<f32> = t
                        .data
                        .chunks(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    if t.name == bad {
                        v[0] *= 1.5;
                    }
                    w.push_f32(t.name, dims, &v).unwrap();
                }
                DType::I32 => {
                    let v: Vec<i32> = t
                        .data
                        .chunks(4)
                        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    w.push_i32(t.name, dims, &v).unwrap();
                }
                DType::I8 => {
                    let v: Vec<i8> = t.data.iter().map(|&b| b as i8).collect();
                    w.push_i8(t.name, dims, &v).unwrap();
                }
            }
        }
        let bytes = w.finish();
        let file = ModelFile::parse(&bytes).unwrap();
        let err = Int8TinyUNet::from_file(&file).unwrap_err();
        assert!(
            alloc::format!("{err}").contains("concatenation"),
            "{bad}: {err}"
        );
    }
}

/// Each block's time projection joins the accumulator as `round(proj / bias_scale)`:
/// within half an accumulator unit of the f32 projection.
#[test]
fn time_offsets_are_the_rounded_projection() {
    let cfg = TinyUNetConfig::DEFAULT;
    let f = fixture(cfg);
    let net = TinyUNet::from_flat(cfg, &f.params).unwrap();
    let file = ModelFile::parse(&f.int8).unwrap();
    let q = Int8TinyUNet::from_file(&file).unwrap();
    let mut tv = TimeVecs::new(&cfg);
    let (mut e2, mut h2, mut t2) = (tv.emb.clone(), tv.hidden.clone(), tv.temb.clone());
    let t_in = 0.37;
    net.time_embedding(t_in, &mut e2, &mut h2, &mut t2).unwrap();
    let mut t = tv.scratch();
    q.time_embedding(t_in, &mut t).unwrap();
    assert_eq!(t.temb, &t2[..], "temb is the f32 network's");
    for (k, layer) in q.layers()[..6].iter().enumerate() {
        let b = &net.params().blocks[k];
        let mut proj = vec![0.0f32; layer.out_c];
        layers::linear(&t2, b.temb_w, b.temb_b, &mut proj).unwrap();
        layer.time_offsets(t.temb, t.offsets);
        for (o, &p) in proj.iter().enumerate() {
            let unit = layer.bias_scale.get(o) as f64;
            let err = (t.offsets[o] as f64 * unit - p as f64).abs();
            // Half a unit from the rounding, plus f32 rounding of proj (a few ulps).
            assert!(
                err <= 0.5 * unit + 1e-5 * (p.abs() as f64),
                "{}: channel {o}: offset {} · {unit} vs {}",
                LAYERS[k],
                t.offsets[o],
                p
            );
        }
    }
}

/// The whole working memory of an int8 DDIM sample (arena, time scratch, x and ε) fits the
/// Cortex-M4 demo's 64 KiB of RAM with room left for the stack.
#[test]
fn sample_memory_fits_64k() {
    let cfg = TinyUNetConfig::DEFAULT;
    // Regions A to E (planned.rs): s1, s2, m, the quarter map / up2's 2-row ring, up1's ring.
    assert_eq!(arena_len(&cfg), 25_088 + 12_544 + 3_136 + 3_136 + 2_688);
    assert!(arena_len(&cfg) < cfg.int8_peak_activation_bytes());
    // emb, hidden, temb; the two blocks' offsets; one row of ε.
    let time = 4 * (32 + 64 + 64) + 2 * 4 * 64 + 4 * 28;
    assert_eq!(
        core::mem::size_of::<TinyInt8Workspace>(),
        arena_len(&cfg) + time
    );
    let total = core::mem::size_of::<TinyInt8SampleMemory>();
    assert_eq!(total, arena_len(&cfg) + time + 4 * cfg.image_len());
    assert_eq!(total, 50_992);
    // RAM of the demo board's layout, less 4 KiB kept for the stack and other statics.
    const RAM: usize = 64 * 1024;
    const STACK_AND_STATICS: usize = 4 * 1024;
    assert!(total <= RAM - STACK_AND_STATICS, "{total} bytes");
}

#[test]
fn wrong_architecture_is_refused() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/simple_unet_mnist_int8.ddpm"
    ))
    .unwrap();
    let file = ModelFile::parse(&bytes).unwrap();
    assert!(Int8TinyUNet::from_file(&file).is_err());
}

/// The committed model's sizes as a 10-class conditional network.
pub(super) const CONDITIONAL: TinyUNetConfig = TinyUNetConfig {
    classes: 10,
    ..SMALLER
};

pub(super) fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A conditional network whose class embedding is zero computes exactly what its unconditional
/// twin (the same other tensors) computes, for every label: the table is the last tensor and
/// joins temb only. With a non-zero table the labels give different outputs, and "no class" is
/// the default label.
#[test]
fn class_embedding_joins_temb_and_nothing_else() {
    let plain = TinyUNetConfig {
        classes: 0,
        ..CONDITIONAL
    };
    let p0 = random_params(&plain, 3);
    let mut zeroed = p0.clone();
    zeroed.resize(CONDITIONAL.param_count(), 0.0);
    let random = random_params(&CONDITIONAL, 3);
    let (u, z, r) = (
        TinyUNet::from_flat(plain, &p0).unwrap(),
        TinyUNet::from_flat(CONDITIONAL, &zeroed).unwrap(),
        TinyUNet::from_flat(CONDITIONAL, &random).unwrap(),
    );
    let mut ws = vec![0.0f32; CONDITIONAL.workspace_len()];
    let mut s = 11u64;
    let x = noisy_image(&CONDITIONAL, &mut s);
    let run = |n: &TinyUNet<'_>, ws: &mut [f32]| {
        let mut e = vec![0.0f32; CONDITIONAL.image_len()];
        n.forward_reference(&x, 0.4, ws, &mut e).unwrap();
        e
    };
    let want = run(&u, &mut ws);
    for k in [Some(0), Some(9), None] {
        assert_eq!(bits(&run(&z.with_class(k).unwrap(), &mut ws)), bits(&want));
    }
    let outs: Vec<Vec<f32>> = [Some(0), Some(1), None]
        .iter()
        .map(|&k| run(&r.with_class(k).unwrap(), &mut ws))
        .collect();
    assert_ne!(outs[0], outs[1]);
    assert_ne!(outs[0], outs[2]);
    assert_eq!(
        bits(&run(&r, &mut ws)),
        bits(&outs[2]),
        "default is no class"
    );
    assert_eq!(r.label(), 10);
}

/// A class on an unconditional network and a class index ≥ K are typed errors; "no class" is
/// always accepted.
#[test]
fn bad_classes_are_refused() {
    let p = random_params(&CONDITIONAL, 1);
    let net = TinyUNet::from_flat(CONDITIONAL, &p).unwrap();
    assert!(matches!(
        net.with_class(Some(10)),
        Err(Error::InvalidConfig(_))
    ));
    assert!(net.with_class(Some(9)).is_ok());
    let plain = TinyUNetConfig::DEFAULT;
    let p = random_params(&plain, 1);
    let net = TinyUNet::from_flat(plain, &p).unwrap();
    assert!(matches!(
        net.with_class(Some(0)),
        Err(Error::InvalidConfig(_))
    ));
    assert!(net.with_class(None).is_ok());
    let f = fixture(CONDITIONAL);
    let file = ModelFile::parse(&f.int8).unwrap();
    let q = Int8TinyUNet::from_file(&file).unwrap();
    assert!(matches!(
        q.with_class(Some(11)),
        Err(Error::InvalidConfig(_))
    ));
}

/// The int8 export of a conditional network carries the class table (f32, `[K + 1, D]`) and the
/// file says the model is conditional; the planned executor equals the layer-wise oracle bit
/// for bit under every label tried, tracks the f32 network labelled the same, and classifier-free
/// guidance (`sample_planned_guided` of the labelled network guided by itself without its
/// class) changes the sample.
#[test]
fn int8_conditional_executors_agree_and_follow_the_class() {
    let cfg = CONDITIONAL;
    let f = fixture(cfg);
    let file = ModelFile::parse(&f.int8).unwrap();
    assert_eq!(
        file.header().model,
        crate::ModelConfig::TinyUNet(cfg),
        "the file's header is conditional"
    );
    let t = file.tensor("class_emb.weight").unwrap();
    assert_eq!((t.dtype, t.dims()), (DType::F32, &[11u32, 64][..]));
    let q = Int8TinyUNet::from_file(&file).unwrap();
    let net = TinyUNet::from_flat(cfg, &f.params).unwrap();
    let mut acts = vec![0i8; layerwise_len(&cfg)];
    let mut ws = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
    let mut ws32 = vec![0.0f32; cfg.workspace_len()];
    let mut tv = TimeVecs::new(&cfg);
    let mut s = 21u64;
    let x = noisy_image(&cfg, &mut s);
    let mut outs = Vec::new();
    for k in [Some(2), Some(7), None] {
        let qk = q.with_class(k).unwrap();
        let len = cfg.image_len();
        let (mut lw, mut pl, mut e32) = (vec![0.0f32; len], vec![0.0f32; len], vec![0.0f32; len]);
        qk.forward_layerwise(&x, 0.3, &mut acts, &mut tv.scratch(), &mut lw)
            .unwrap();
        qk.forward_planned(&x, 0.3, &mut ws, &mut pl).unwrap();
        assert_eq!(bits(&lw), bits(&pl), "label {k:?}");
        net.with_class(k)
            .unwrap()
            .forward_reference(&x, 0.3, &mut ws32, &mut e32)
            .unwrap();
        let num: f64 = pl
            .iter()
            .zip(&e32)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let den: f64 = e32.iter().map(|b| (*b as f64).powi(2)).sum();
        let rel = (num / den).sqrt();
        assert!(rel < INT8_EPS_REL_RMS_MAX, "label {k:?}: {rel}");
        outs.push(pl);
    }
    assert_ne!(outs[0], outs[1]);
    let (sched, scfg) = three_ddim_steps();
    let len = cfg.image_len();
    let q7 = q.with_class(Some(7)).unwrap();
    let (mut a, mut b, mut g) = (vec![0.0f32; len], vec![0.0f32; len], vec![0.0f32; len]);
    sample_planned_guided(
        &q7,
        &q,
        2.0,
        &sched,
        &scfg,
        5,
        &mut a,
        &mut ws,
        &mut g,
        &mut [],
    )
    .unwrap();
    sample_planned_with_history(&q7, &sched, &scfg, 5, &mut b, &mut ws, &mut []).unwrap();
    assert_ne!(a, b, "guidance changes the sample");
}
