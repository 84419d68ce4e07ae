//! The int8 network: streaming equals layer-by-layer bit for bit, int8 stays close to f32, the
//! f32 streaming path equals the reference, and the working memory fits the stated budgets.

mod common;

use common::{random_input, random_params, rel_err};
use ddpm_core::diffusion::{
    self, DdimConfig, DdpmConfig, DdpmVariance, GaussianNoise, SamplerConfig, SolverConfig, Spacing,
};
use ddpm_core::file::ModelFile;
use ddpm_core::kernels::calibrate::RangeMethod;
use ddpm_core::simple_unet::fast_int8::{FastInt8SimpleUNet, Int8Kernel};
use ddpm_core::simple_unet::int8::{
    Int8Layerwise, Int8SimpleUNet, Scratch, SeedF32StreamBuffers, SeedInt8StreamBuffers,
};
use ddpm_core::simple_unet::ptq::{quantize_simple_unet, Calibrator, QuantOptions, QuantPlan};
use ddpm_core::simple_unet::stream::{
    forward_streaming, sample_streaming, sample_streaming_with_history, F32StreamNet,
};
use ddpm_core::{Schedule, ScheduleConfig, SimpleUNet, SimpleUNetConfig};

struct Owned {
    acts8: Vec<i8>,
    acts32: Vec<f32>,
    hidden: Vec<f32>,
    temb: Vec<f32>,
    offsets: Vec<i32>,
    row: Vec<f32>,
}

impl Owned {
    fn new(cfg: &SimpleUNetConfig, layerwise: bool) -> Self {
        let acts = if layerwise {
            cfg.layerwise_act_len()
        } else {
            cfg.streaming_act_len()
        };
        let h2 = cfg.hidden2 as usize;
        Self {
            acts8: vec![0; acts],
            acts32: vec![0.0; acts],
            hidden: vec![0.0; h2],
            temb: vec![0.0; h2],
            offsets: vec![0; h2],
            row: vec![0.0; cfg.row_len()],
        }
    }
    fn i8(&mut self) -> Scratch<'_, i8> {
        Scratch {
            acts: &mut self.acts8,
            hidden: &mut self.hidden,
            temb: &mut self.temb,
            offsets: &mut self.offsets,
            row: &mut self.row,
        }
    }
    fn f32(&mut self) -> Scratch<'_, f32> {
        Scratch {
            acts: &mut self.acts32,
            hidden: &mut self.hidden,
            temb: &mut self.temb,
            offsets: &mut self.offsets,
            row: &mut self.row,
        }
    }
}

/// The bits of `x`, for exact comparisons that print the differing values' bits.
fn to_bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Input precisions of the int8 files: int8 (files without `input.bits`) and int16.
const INPUT_BITS: [u32; 2] = [8, 16];

/// An int8 file for random weights, calibrated on random inputs over the whole t range, with
/// an int8 input (written by [`quantize_simple_unet`], so without `input.bits`, as older files)
/// or an int16 one (the plain recipe of [`QuantPlan`] with `input_bits` 16).
fn int8_file(
    cfg: &SimpleUNetConfig,
    seed: u64,
    method: RangeMethod,
    input_bits: u32,
) -> (Vec<f32>, Vec<u8>) {
    let params = random_params(cfg, seed, 1.0);
    let net = SimpleUNet::from_flat(*cfg, &params).unwrap();
    let mut cal = Calibrator::new(net, 7);
    for i in 0..24 {
        let x = random_input(cfg.image_len(), 1000 + i);
        cal.observe(&x, i as f32 / 24.0).unwrap();
    }
    let bytes = if input_bits == 8 {
        quantize_simple_unet(
            &net,
            ScheduleConfig::default(),
            cal.ranges(method),
            "int8 test",
        )
        .unwrap()
    } else {
        let opts = QuantOptions {
            range: method,
            input_bits,
            ..QuantOptions::PLAIN
        };
        QuantPlan::build(&net, &cal, &opts)
            .unwrap()
            .write(ScheduleConfig::default(), "int16-input test")
            .unwrap()
    };
    let file = ModelFile::parse(&bytes).unwrap();
    assert_eq!(file.tensor("input.bits").is_ok(), input_bits == 16);
    (params, bytes)
}

fn configs() -> [SimpleUNetConfig; 3] {
    [
        SimpleUNetConfig::SEED,
        SimpleUNetConfig {
            channels: 3,
            height: 7,
            width: 9,
            hidden1: 5,
            hidden2: 6,
        },
        SimpleUNetConfig {
            channels: 1,
            height: 2,
            width: 1,
            hidden1: 2,
            hidden2: 3,
        },
    ]
}

#[test]
fn streaming_equals_layerwise_bit_for_bit() {
    for (ci, cfg) in configs().into_iter().enumerate() {
        for bits in INPUT_BITS {
            streaming_equals_layerwise(ci, cfg, bits);
        }
    }
}

fn streaming_equals_layerwise(ci: usize, cfg: SimpleUNetConfig, bits: u32) {
    {
        let (_, bytes) = int8_file(&cfg, 20 + ci as u64, RangeMethod::MinMax, bits);
        let file = ModelFile::parse(&bytes).unwrap();
        let net = Int8SimpleUNet::from_file(&file).unwrap();
        assert_eq!(net.input_quant().bits, bits);
        let mut lw = Owned::new(&cfg, true);
        let mut st = Owned::new(&cfg, false);
        for k in 0..4u64 {
            let x = random_input(cfg.image_len(), 50 + k);
            let t_in = k as f32 / 4.0;
            let mut a = vec![0.0; cfg.image_len()];
            let mut b = vec![0.0; cfg.image_len()];
            let mut copy = vec![0.0; cfg.image_len()];
            net.forward_layerwise(&x, t_in, &mut lw.i8(), &mut a)
                .unwrap();
            forward_streaming(&net, &x, t_in, &mut st.i8(), &mut copy, &mut b).unwrap();
            assert_eq!(
                to_bits(&a),
                to_bits(&b),
                "cfg {cfg:?} input bits {bits} input {k}"
            );
        }
    }
}

#[test]
fn streaming_sampler_equals_layerwise_sampler_bit_for_bit() {
    for bits in INPUT_BITS {
        streaming_sampler_equals_layerwise_sampler(bits);
    }
}

/// Five linspace steps of a multistep solver.
const SOLVER_5: SolverConfig = SolverConfig {
    steps: 5,
    spacing: Spacing::Linspace,
};

fn streaming_sampler_equals_layerwise_sampler(bits: u32) {
    let cfg = SimpleUNetConfig::SEED;
    let (_, bytes) = int8_file(&cfg, 3, RangeMethod::MinMax, bits);
    let file = ModelFile::parse(&bytes).unwrap();
    let net = Int8SimpleUNet::from_file(&file).unwrap();
    let sched: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    let samplers = [
        SamplerConfig::Ddim(DdimConfig {
            steps: 6,
            eta: 0.5,
            ..Default::default()
        }),
        SamplerConfig::Ddpm(DdpmConfig {
            variance: DdpmVariance::FixedSmall,
            clip_x0: true,
        }),
        SamplerConfig::DpmSolver2M(SOLVER_5),
        SamplerConfig::UniPc(SOLVER_5),
    ];
    for (si, scfg) in samplers.into_iter().enumerate() {
        if scfg.history_len(1) > 0 {
            // The multistep solvers: the same with their history.
            let len = cfg.image_len();
            let mut lw = Owned::new(&cfg, true);
            let mut den = Int8Layerwise::new(net, lw.i8()).unwrap();
            let (mut a, mut eps) = (vec![0.0; len], vec![0.0; len]);
            let mut ha = vec![0.0; scfg.history_len(len)];
            let noise = &mut [GaussianNoise::new(11)];
            let mut whole = diffusion::WholeImages::new(&mut den, &mut eps).unwrap();
            diffusion::sample_batch_with_history(&mut whole, &sched, &scfg, noise, &mut a, &mut ha)
                .unwrap();
            let mut st = Owned::new(&cfg, false);
            let (mut b, mut hb) = (vec![0.0; len], vec![0.0; scfg.history_len(len)]);
            sample_streaming_with_history(&net, &sched, &scfg, 11, &mut b, &mut st.i8(), &mut hb)
                .unwrap();
            assert_eq!(to_bits(&a), to_bits(&b), "input bits {bits}: {scfg:?}");
            assert_eq!(ha, hb, "input bits {bits}: {scfg:?} history");
            continue;
        }
        // DDPM over all 300 steps is slow in a debug build; a short schedule does the same.
        let sched_small: Schedule = Schedule::new(&ScheduleConfig::linear(8, 1e-3, 0.2)).unwrap();
        let sched = if si == 0 { &sched } else { &sched_small };
        let mut lw = Owned::new(&cfg, true);
        let mut den = Int8Layerwise::new(net, lw.i8()).unwrap();
        let mut a = vec![0.0; cfg.image_len()];
        let mut eps = vec![0.0; cfg.image_len()];
        diffusion::sample(&mut den, sched, &scfg, 11, &mut a, &mut eps).unwrap();
        let mut st = Owned::new(&cfg, false);
        let mut b = vec![0.0; cfg.image_len()];
        sample_streaming(&net, sched, &scfg, 11, &mut b, &mut st.i8()).unwrap();
        assert_eq!(to_bits(&a), to_bits(&b), "input bits {bits}: {scfg:?}");
    }
}

/// int8 against f32 on random (untrained) weights and inputs not used for calibration. Trained
/// weights are measured by the trainer; this bound only catches a broken quantizer.
const RANDOM_NET_INT8_REL_RMS: f64 = 0.08;

#[test]
fn int8_is_close_to_f32() {
    let cfg = SimpleUNetConfig::SEED;
    for (method, bits) in [
        (RangeMethod::MinMax, 8),
        (RangeMethod::Percentile(99.99), 8),
        (RangeMethod::MinMax, 16),
        (RangeMethod::Percentile(99.99), 16),
    ] {
        let (params, bytes) = int8_file(&cfg, 5, method, bits);
        let file = ModelFile::parse(&bytes).unwrap();
        let net = Int8SimpleUNet::from_file(&file).unwrap();
        let f32net = SimpleUNet::from_flat(cfg, &params).unwrap();
        let mut ws = vec![0.0; cfg.workspace_len()];
        let mut lw = Owned::new(&cfg, true);
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for k in 0..6u64 {
            let x = random_input(cfg.image_len(), 9000 + k);
            let t_in = (k as f32 + 0.5) / 6.0;
            let mut a = vec![0.0; cfg.image_len()];
            let mut b = vec![0.0; cfg.image_len()];
            net.forward_layerwise(&x, t_in, &mut lw.i8(), &mut a)
                .unwrap();
            f32net.forward_reference(&x, t_in, &mut ws, &mut b).unwrap();
            for (p, q) in a.iter().zip(&b) {
                num += ((p - q) as f64).powi(2);
                den += (*q as f64).powi(2);
            }
        }
        let rel = (num / den).sqrt();
        println!("{method:?}, int{bits} input: int8 vs f32 relative RMS error of ε = {rel:.4}");
        assert!(
            rel < RANDOM_NET_INT8_REL_RMS,
            "{method:?}, int{bits}: {rel}"
        );
    }
}

#[test]
fn f32_streaming_equals_reference() {
    for (ci, cfg) in configs().into_iter().enumerate() {
        let params = random_params(&cfg, 70 + ci as u64, 1.0);
        let bytes = common::model_bytes(&cfg, ScheduleConfig::default(), &params);
        let file = ModelFile::parse(&bytes).unwrap();
        let net = F32StreamNet::from_file(&file).unwrap();
        let reference = SimpleUNet::from_flat(cfg, &params).unwrap();
        let mut ws = vec![0.0; cfg.workspace_len()];
        let mut st = Owned::new(&cfg, false);
        let x = random_input(cfg.image_len(), 77);
        let mut a = vec![0.0; cfg.image_len()];
        let mut b = vec![0.0; cfg.image_len()];
        let mut copy = vec![0.0; cfg.image_len()];
        reference
            .forward_reference(&x, 0.3, &mut ws, &mut a)
            .unwrap();
        forward_streaming(&net, &x, 0.3, &mut st.f32(), &mut copy, &mut b).unwrap();
        // Same products, summed in another order in the transposed layers (gather vs scatter).
        let e = rel_err(&b, &a);
        assert!(e <= 5e-6, "cfg {cfg:?}: {e}");
    }
}

/// Working memory of a whole 1×28×28 sample: executor scratch, the image x (ε never exists as
/// a whole in the streaming sampler) and the schedule tables for T = 300.
#[test]
fn memory_budgets() {
    use core::mem::size_of;
    let x = size_of::<[f32; 784]>();
    let sched = size_of::<Schedule<300>>();
    let int8_stream = size_of::<SeedInt8StreamBuffers>() + x + sched;
    let f32_stream = size_of::<SeedF32StreamBuffers>() + x + sched;
    let cfg = SimpleUNetConfig::SEED;
    // Layer by layer, the sampler also needs a whole ε.
    let int8_layerwise = cfg.layerwise_act_len() + 3 * 128 * 4 + 2 * x + sched;
    let f32_layerwise = cfg.workspace_len() * 4 + 2 * x + sched;
    println!("working memory for one 1x28x28 sample (bytes):");
    println!("  f32 layer by layer:  {f32_layerwise}");
    println!("  int8 layer by layer: {int8_layerwise}");
    println!("  int8 streaming:      {int8_stream}");
    println!("  f32 streaming:       {f32_stream}");
    assert!(
        int8_stream <= 32 * 1024,
        "int8 streaming needs {int8_stream} bytes"
    );
    assert!(
        f32_stream <= 128 * 1024,
        "f32 streaming needs {f32_stream} bytes"
    );
}

/// CRC-32 of the u8 image the committed int8 default model draws with seed 42 and 10 DDIM steps
/// (x0 clipped, ε recomputed) through the streaming executor. Integer arithmetic is the same
/// on every platform, so this value is too; `firmware-check/tests/qemu.rs` expects the
/// Cortex-M4 build to print it.
const PINNED_INT8_CHECKSUM_SEED42: u32 = 0x251c_dce9;

#[test]
fn pinned_int8_sample_of_the_default_model() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/simple_unet_mnist_int8.ddpm"
    );
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let file = ModelFile::parse(&bytes).unwrap();
    let net = Int8SimpleUNet::from_file(&file).unwrap();
    let sched: Schedule<300> = Schedule::new(&file.header().schedule).unwrap();
    let cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 10,
        clip_x0: true,
        recompute_eps: true,
        ..Default::default()
    });
    let mut bufs = Box::new(SeedInt8StreamBuffers::ZEROED);
    let mut x = vec![0.0f32; 784];
    sample_streaming(&net, &sched, &cfg, 42, &mut x, &mut bufs.scratch()).unwrap();
    let pixels: Vec<u8> = x.iter().map(|&v| ddpm_core::pixel_to_u8(v)).collect();
    let crc = ddpm_core::crc32(&pixels);
    println!("int8 default model, seed 42, DDIM 10: checksum {crc:#010x}");
    assert_eq!(crc, PINNED_INT8_CHECKSUM_SEED42, "{crc:#010x}");
}

/// CRC-32 of the u8 image that an int8-input file (no `input.bits` tensor; random weights,
/// [`int8_file`] with seed 3) draws with seed 42 and 6 DDIM steps through the streaming
/// executor, as computed by the executor before int16 inputs existed: such files must keep
/// giving the same results.
const PINNED_INT8_INPUT_CHECKSUM: u32 = 0x96d7_a7ff;

#[test]
fn int8_input_files_give_the_same_results_as_before() {
    let cfg = SimpleUNetConfig::SEED;
    let (_, bytes) = int8_file(&cfg, 3, RangeMethod::MinMax, 8);
    let file = ModelFile::parse(&bytes).unwrap();
    let net = Int8SimpleUNet::from_file(&file).unwrap();
    assert_eq!(net.input_quant().bits, 8);
    let sched: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    let scfg = SamplerConfig::Ddim(DdimConfig {
        steps: 6,
        ..Default::default()
    });
    let mut bufs = Box::new(SeedInt8StreamBuffers::ZEROED);
    let mut x = vec![0.0f32; cfg.image_len()];
    sample_streaming(&net, &sched, &scfg, 42, &mut x, &mut bufs.scratch()).unwrap();
    let pixels: Vec<u8> = x.iter().map(|&v| ddpm_core::pixel_to_u8(v)).collect();
    let crc = ddpm_core::crc32(&pixels);
    println!("int8-input file, seed 42, DDIM 6: checksum {crc:#010x}");
    assert_eq!(crc, PINNED_INT8_INPUT_CHECKSUM, "{crc:#010x}");
}

/// enc1's int32 accumulator with an int16 input: 9 taps per input channel of |q| ≤ 32767 times
/// |w| ≤ 127 stays far below 2³¹ for the seed's single channel (with room for the bias), and
/// the bound grows past int32 only beyond 57 input channels.
#[test]
fn int16_input_accumulator_bound() {
    use ddpm_core::simple_unet::int8::int16_enc1_worst_case;
    assert_eq!(int16_enc1_worst_case(1), 9 * 32767 * 127);
    assert!(int16_enc1_worst_case(1) < (1i64 << 31) / 57);
    assert!(int16_enc1_worst_case(57) < 1i64 << 31);
    assert!(int16_enc1_worst_case(58) >= 1i64 << 31);
    let cfg = SimpleUNetConfig::SEED;
    let params = random_params(&cfg, 5, 1.0);
    let net = SimpleUNet::from_flat(cfg, &params).unwrap();
    let mut cal = Calibrator::new(net, 7);
    cal.observe(&random_input(cfg.image_len(), 1), 0.5).unwrap();
    let bad = QuantOptions {
        input_bits: 12,
        ..QuantOptions::PLAIN
    };
    assert!(QuantPlan::build(&net, &cal, &bad).is_err());
}

/// The host executor's ε equals the layer-by-layer oracle's bit for bit, with every kernel, on
/// every test configuration (three input channels: a pair with one channel; one column) and
/// both input precisions (enc1 multiplying int16 inputs).
#[test]
fn host_int8_equals_layerwise_bit_for_bit() {
    for (ci, cfg) in configs().into_iter().enumerate() {
        for bits in INPUT_BITS {
            let (_, bytes) = int8_file(&cfg, 30 + ci as u64, RangeMethod::MinMax, bits);
            let file = ModelFile::parse(&bytes).unwrap();
            let net = Int8SimpleUNet::from_file(&file).unwrap();
            let mut fast = FastInt8SimpleUNet::new(net).unwrap();
            let mut lw = Owned::new(&cfg, true);
            for kernel in Int8Kernel::on_this_cpu() {
                fast.set_kernel(kernel).unwrap();
                for k in 0..3u64 {
                    let x = random_input(cfg.image_len(), 60 + k);
                    let t_in = 0.1 + 0.4 * k as f32;
                    let (mut want, mut got) =
                        (vec![0.0; cfg.image_len()], vec![1.0; cfg.image_len()]);
                    net.forward_layerwise(&x, t_in, &mut lw.i8(), &mut want)
                        .unwrap();
                    fast.forward(&x, t_in, &mut got).unwrap();
                    assert_eq!(
                        to_bits(&want),
                        to_bits(&got),
                        "cfg {cfg:?} input bits {bits} {kernel:?} input {k}"
                    );
                }
            }
        }
    }
}

/// DDIM and UniPC samples through the host executor equal the streaming executor's (the
/// microcontroller's computation) bit for bit, history included.
#[test]
fn host_int8_samples_equal_the_streaming_executors() {
    let cfg = SimpleUNetConfig::SEED;
    let sched: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
    let len = cfg.image_len();
    let ddim = SamplerConfig::Ddim(DdimConfig {
        steps: 4,
        eta: 0.5,
        clip_x0: true,
        ..Default::default()
    });
    for bits in INPUT_BITS {
        let (_, bytes) = int8_file(&cfg, 3, RangeMethod::MinMax, bits);
        let file = ModelFile::parse(&bytes).unwrap();
        let net = Int8SimpleUNet::from_file(&file).unwrap();
        let mut fast = FastInt8SimpleUNet::new(net).unwrap();
        let mut st = Owned::new(&cfg, false);
        for scfg in [ddim, SamplerConfig::UniPc(SOLVER_5)] {
            let (mut want, mut hw) = (vec![0.0; len], vec![0.0; scfg.history_len(len)]);
            sample_streaming_with_history(&net, &sched, &scfg, 9, &mut want, &mut st.i8(), &mut hw)
                .unwrap();
            for kernel in Int8Kernel::on_this_cpu() {
                fast.set_kernel(kernel).unwrap();
                let (mut got, mut hg) = (vec![0.0; len], vec![0.0; scfg.history_len(len)]);
                let noise = &mut [GaussianNoise::new(9)];
                diffusion::sample_batch_with_history(
                    &mut fast, &sched, &scfg, noise, &mut got, &mut hg,
                )
                .unwrap();
                assert_eq!(
                    to_bits(&want),
                    to_bits(&got),
                    "input bits {bits}: {scfg:?} {kernel:?}"
                );
                assert_eq!(hw, hg, "input bits {bits}: {scfg:?} {kernel:?} history");
            }
        }
    }
}

/// The committed int8 SimpleUNet through the host executor draws the pinned image of the
/// firmware (seed 42, DDIM 10), and the executor refuses what it cannot run.
#[test]
fn host_int8_draws_the_pinned_sample_and_refuses_what_it_cannot_run() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/simple_unet_mnist_int8.ddpm"
    );
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let file = ModelFile::parse(&bytes).unwrap();
    let net = Int8SimpleUNet::from_file(&file).unwrap();
    let sched: Schedule<300> = Schedule::new(&file.header().schedule).unwrap();
    let cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 10,
        clip_x0: true,
        recompute_eps: true,
        ..Default::default()
    });
    let mut fast = FastInt8SimpleUNet::new(net).unwrap();
    for kernel in Int8Kernel::on_this_cpu() {
        fast.set_kernel(kernel).unwrap();
        let mut x = vec![0.0f32; 784];
        let noise = &mut [GaussianNoise::new(42)];
        diffusion::sample_batch_with_history(&mut fast, &sched, &cfg, noise, &mut x, &mut [])
            .unwrap();
        let pixels: Vec<u8> = x.iter().map(|&v| ddpm_core::pixel_to_u8(v)).collect();
        let crc = ddpm_core::crc32(&pixels);
        assert_eq!(crc, PINNED_INT8_CHECKSUM_SEED42, "{kernel:?}: {crc:#010x}");
    }
    let mut short = vec![0.0f32; 5];
    let err = fast.forward(&[0.0; 784], 0.5, &mut short).unwrap_err();
    assert!(err.to_string().contains("output image"), "{err}");
    let wide = SimpleUNetConfig {
        width: 33,
        ..SimpleUNetConfig::SEED
    };
    let (_, bytes) = int8_file(&wide, 4, RangeMethod::MinMax, 16);
    let file = ModelFile::parse(&bytes).unwrap();
    let err = FastInt8SimpleUNet::new(Int8SimpleUNet::from_file(&file).unwrap())
        .err()
        .expect("33 columns are refused");
    assert!(err.to_string().contains("32 columns"), "{err}");
}
