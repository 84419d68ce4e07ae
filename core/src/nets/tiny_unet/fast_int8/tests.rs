//! The host int8 executor against the per-pixel oracle and the planned executor: every ε and
//! every sample bit for bit, with AVX2 and with the portable loops.

use alloc::vec;
use alloc::vec::Vec;

use super::{FastInt8Guided, FastInt8TinyUNet, Int8Kernel};
use crate::diffusion::driver::sample_batch_with_history;
use crate::diffusion::{GaussianNoise, GuidanceInterval, SamplerConfig, SolverConfig, Spacing};
use crate::file::ModelFile;
use crate::nets::tiny_unet::int8::{layerwise_len, Int8TinyUNet};
use crate::nets::tiny_unet::planned::{
    sample_planned_guided, sample_planned_with_history, PlannedGuided, TinyInt8Workspace,
};
use crate::nets::tiny_unet::tests::{
    bits, fixture, int8_configs, noisy_image, three_ddim_steps, TimeVecs, CONDITIONAL,
};
use crate::nets::tiny_unet::TinyUNetConfig;

/// Odd widths (a last channel pair with one channel), one mid block and 16×16 images.
const ODD: TinyUNetConfig = TinyUNetConfig {
    height: 16,
    width: 16,
    widths: [7, 13, 9],
    mid_blocks: 1,
    ..TinyUNetConfig::DEFAULT
};

#[test]
fn host_int8_equals_the_per_pixel_oracle_bit_for_bit() {
    for cfg in int8_configs().into_iter().chain([ODD, CONDITIONAL]) {
        let f = fixture(cfg);
        let file = ModelFile::parse(&f.int8).unwrap();
        let q = Int8TinyUNet::from_file(&file).unwrap();
        let mut fast = FastInt8TinyUNet::new(q).unwrap();
        let mut acts = vec![0i8; layerwise_len(&cfg)];
        let mut tv = TimeVecs::new(&cfg);
        let mut s = 11u64;
        for kernel in Int8Kernel::on_this_cpu() {
            fast.set_kernel(kernel).unwrap();
            for k in 0..3 {
                let x = noisy_image(&cfg, &mut s);
                let t_in = 0.05 + 0.31 * k as f32;
                let (mut want, mut got) = (vec![0.0f32; x.len()], vec![1.0f32; x.len()]);
                q.forward_layerwise(&x, t_in, &mut acts, &mut tv.scratch(), &mut want)
                    .unwrap();
                fast.forward(&x, t_in, &mut got).unwrap();
                assert_eq!(bits(&want), bits(&got), "{cfg:?} {kernel:?} input {k}");
            }
        }
    }
}

/// A UniPC sample, an autoguided one and a class-conditional one through the host executor
/// equal the planned executor's (the microcontroller's computation) bit for bit.
#[test]
fn host_int8_samples_equal_the_planned_executors() {
    let (sched, ddim) = three_ddim_steps();
    let unipc = SamplerConfig::UniPc(SolverConfig {
        steps: 4,
        spacing: Spacing::Linspace,
    });
    let cfg = TinyUNetConfig::DEFAULT;
    let (fm, fg) = (
        fixture(cfg),
        fixture(TinyUNetConfig {
            mid_blocks: 2,
            ..cfg
        }),
    );
    let (file, gfile) = (
        ModelFile::parse(&fm.int8).unwrap(),
        ModelFile::parse(&fg.int8).unwrap(),
    );
    let (q, qg) = (
        Int8TinyUNet::from_file(&file).unwrap(),
        Int8TinyUNet::from_file(&gfile).unwrap(),
    );
    let mut ws = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
    let len = cfg.image_len();
    for scfg in [ddim, unipc] {
        for kernel in Int8Kernel::on_this_cpu() {
            let mut fast = FastInt8TinyUNet::new(q).unwrap();
            let mut guide = FastInt8TinyUNet::new(qg).unwrap();
            fast.set_kernel(kernel).unwrap();
            guide.set_kernel(kernel).unwrap();
            let (mut want, mut got) = (vec![0.0f32; len], vec![0.0f32; len]);
            let mut h = vec![0.0f32; scfg.history_len(len)];
            sample_planned_with_history(&q, &sched, &scfg, 3, &mut want, &mut ws, &mut h).unwrap();
            let noise = &mut [GaussianNoise::new(3)];
            sample_batch_with_history(&mut fast, &sched, &scfg, noise, &mut got, &mut h).unwrap();
            assert_eq!(bits(&want), bits(&got), "{scfg:?} {kernel:?}");

            let mut g_out = vec![0.0f32; len];
            sample_planned_guided(
                &q, &qg, 2.5, &sched, &scfg, 4, &mut want, &mut ws, &mut g_out, &mut h,
            )
            .unwrap();
            let mut guided = FastInt8Guided::new(&mut fast, &mut guide, 2.5).unwrap();
            let noise = &mut [GaussianNoise::new(4)];
            sample_batch_with_history(&mut guided, &sched, &scfg, noise, &mut got, &mut h).unwrap();
            assert_eq!(bits(&want), bits(&got), "guided {scfg:?} {kernel:?}");
        }
    }
    let fc = fixture(CONDITIONAL);
    let cfile = ModelFile::parse(&fc.int8).unwrap();
    let qc = Int8TinyUNet::from_file(&cfile).unwrap();
    let q7 = qc.with_class(Some(7)).unwrap();
    let (mut want, mut got) = (vec![0.0f32; len], vec![0.0f32; len]);
    let mut g_out = vec![0.0f32; len];
    sample_planned_guided(
        &q7,
        &qc,
        1.3,
        &sched,
        &ddim,
        5,
        &mut want,
        &mut ws,
        &mut g_out,
        &mut [],
    )
    .unwrap();
    let (mut model, mut free) = (
        FastInt8TinyUNet::new(qc).unwrap(),
        FastInt8TinyUNet::new(qc).unwrap(),
    );
    model.set_class(Some(7)).unwrap();
    assert!(model.set_class(Some(10)).is_err());
    let mut guided = FastInt8Guided::new(&mut model, &mut free, 1.3).unwrap();
    let noise = &mut [GaussianNoise::new(5)];
    sample_batch_with_history(&mut guided, &sched, &ddim, noise, &mut got, &mut []).unwrap();
    assert_eq!(bits(&want), bits(&got), "class 7");
}

#[test]
fn refusals_name_the_problem() {
    let f = fixture(TinyUNetConfig::DEFAULT);
    let file = ModelFile::parse(&f.int8).unwrap();
    let q = Int8TinyUNet::from_file(&file).unwrap();
    let (mut a, mut b) = (
        FastInt8TinyUNet::new(q).unwrap(),
        FastInt8TinyUNet::new(q).unwrap(),
    );
    assert!(FastInt8Guided::new(&mut a, &mut b, f32::INFINITY).is_err());
    let mut short: Vec<f32> = vec![0.0; 5];
    assert!(a.forward(&[0.0; 784], 0.5, &mut short).is_err());
}

/// A guidance interval in both int8 executors: the planned executor guided at some steps
/// equals the host executor with the same interval bit for bit; an interval holding no step
/// gives the unguided sample exactly.
#[test]
fn guidance_intervals_agree_between_the_executors() {
    let (sched, _) = three_ddim_steps();
    let scfg = SamplerConfig::UniPc(SolverConfig {
        steps: 6,
        spacing: Spacing::Linspace,
    });
    let cfg = TinyUNetConfig::DEFAULT;
    let (fm, fg) = (
        fixture(cfg),
        fixture(TinyUNetConfig {
            mid_blocks: 2,
            ..cfg
        }),
    );
    let (file, gfile) = (
        ModelFile::parse(&fm.int8).unwrap(),
        ModelFile::parse(&fg.int8).unwrap(),
    );
    let (q, qg) = (
        Int8TinyUNet::from_file(&file).unwrap(),
        Int8TinyUNet::from_file(&gfile).unwrap(),
    );
    let mut ws = alloc::boxed::Box::new(<TinyInt8Workspace>::ZEROED);
    let len = cfg.image_len();
    let mut h = vec![0.0f32; scfg.history_len(len)];
    let mut g_out = vec![0.0f32; len];
    let planned = |interval, ws: &mut TinyInt8Workspace, h: &mut [f32], g_out: &mut [f32]| {
        let mut x = vec![0.0f32; len];
        let mut net = PlannedGuided::new(&q, &qg, 2.5, ws, g_out)
            .unwrap()
            .with_interval(interval);
        let noise = &mut [GaussianNoise::new(8)];
        sample_batch_with_history(&mut net, &sched, &scfg, noise, &mut x, h).unwrap();
        x
    };
    let some = GuidanceInterval::new(0.3, 0.8).unwrap();
    let partly = planned(some, &mut ws, &mut h, &mut g_out);
    for kernel in Int8Kernel::on_this_cpu() {
        let (mut fast, mut guide) = (
            FastInt8TinyUNet::new(q).unwrap(),
            FastInt8TinyUNet::new(qg).unwrap(),
        );
        fast.set_kernel(kernel).unwrap();
        guide.set_kernel(kernel).unwrap();
        let mut net = FastInt8Guided::new(&mut fast, &mut guide, 2.5)
            .unwrap()
            .with_interval(some);
        let mut x = vec![0.0f32; len];
        let noise = &mut [GaussianNoise::new(8)];
        sample_batch_with_history(&mut net, &sched, &scfg, noise, &mut x, &mut h).unwrap();
        assert_eq!(bits(&partly), bits(&x), "{kernel:?}");
    }
    let never = planned(
        GuidanceInterval::new(1.0, 1.0).unwrap(),
        &mut ws,
        &mut h,
        &mut g_out,
    );
    let mut unguided = vec![0.0f32; len];
    sample_planned_with_history(&q, &sched, &scfg, 8, &mut unguided, &mut ws, &mut h).unwrap();
    assert_eq!(bits(&never), bits(&unguided));
    let always = planned(GuidanceInterval::ALWAYS, &mut ws, &mut h, &mut g_out);
    assert_ne!(bits(&partly), bits(&always));
    assert_ne!(bits(&partly), bits(&never));
}
