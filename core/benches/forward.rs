//! One 1×28×28 forward pass of the seed's SimpleUNet, batch 1, one thread (and of the default
//! TinyUNet, 43.8 M multiply-adds, in the group `tiny_unet_1x28x28`).
//!
//! Criterion's throughput line reads in GFLOP/s here: one pass is 116.5 M multiply-adds, counted
//! as 2 floating-point operations each. Compare with `tools/bench_torch_forward.py`, which times
//! PyTorch's own one-thread forward pass of the same network on the same machine.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ddpm_core::fast::{FastSimpleUNet, FastTinyUNet};
use ddpm_core::{GaussianNoise, SimpleUNet, SimpleUNetConfig, TinyUNet, TinyUNetConfig};
use std::hint::black_box;

fn forward(c: &mut Criterion) {
    let cfg = SimpleUNetConfig::SEED;
    let mut g = GaussianNoise::new(1);
    let params: Vec<f32> = (0..cfg.param_count())
        .map(|_| 0.05 * g.next_gaussian())
        .collect();
    let x: Vec<f32> = (0..cfg.image_len()).map(|_| g.next_gaussian()).collect();
    let net = SimpleUNet::from_flat(cfg, &params).unwrap();
    let mut fast = FastSimpleUNet::new(&net);
    let mut out = vec![0.0f32; cfg.image_len()];

    let mut group = c.benchmark_group("simple_unet_1x28x28");
    group.throughput(Throughput::Elements(2 * cfg.macs()));
    group.bench_function("fast_im2col_sgemm", |b| {
        b.iter(|| {
            fast.forward(black_box(&x), black_box(0.5), &mut out)
                .unwrap()
        })
    });
    let mut ws = vec![0.0f32; cfg.workspace_len()];
    group.sample_size(10);
    group.bench_function("reference_loops", |b| {
        b.iter(|| {
            net.forward_reference(black_box(&x), black_box(0.5), &mut ws, &mut out)
                .unwrap()
        })
    });
    group.finish();
}

fn tiny_forward(c: &mut Criterion) {
    let cfg = TinyUNetConfig::DEFAULT;
    let mut g = GaussianNoise::new(2);
    let params: Vec<f32> = (0..cfg.param_count())
        .map(|_| 0.05 * g.next_gaussian())
        .collect();
    let x: Vec<f32> = (0..cfg.image_len()).map(|_| g.next_gaussian()).collect();
    let net = TinyUNet::from_flat(cfg, &params).unwrap();
    let mut fast = FastTinyUNet::new(&net);
    let mut out = vec![0.0f32; cfg.image_len()];

    let mut group = c.benchmark_group("tiny_unet_1x28x28");
    group.throughput(Throughput::Elements(2 * cfg.macs()));
    group.bench_function("fast", |b| {
        b.iter(|| {
            fast.forward(black_box(&x), black_box(0.5), &mut out)
                .unwrap()
        })
    });
    let mut ws = vec![0.0f32; cfg.workspace_len()];
    group.sample_size(10);
    group.bench_function("reference_loops", |b| {
        b.iter(|| {
            net.forward_reference(black_box(&x), black_box(0.5), &mut ws, &mut out)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, forward, tiny_forward);
criterion_main!(benches);
