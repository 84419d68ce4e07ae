//! The seed's SimpleUNet forward pass on 1×28×28 images, one thread: the fast path with
//! Winograd F(2×2, 3×3) and F(4×4, 3×3) tiles, batch 1 and 16, SIMD and portable kernels, and
//! the reference loops; and the default TinyUNet (43.8 M multiply-adds, group
//! `tiny_unet_1x28x28`).
//!
//! Criterion's throughput line reads in GFLOP/s here: one pass is 116.5 M multiply-adds per
//! image, counted as 2 floating-point operations each. `bench-cpu` (package `ddpm-bench`)
//! times the fast path side by side with libtorch in one process.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ddpm_core::kernels::winograd::Tile;
use ddpm_core::simple_unet::FastSimpleUNet;
use ddpm_core::tiny_unet::FastTinyUNet;
use ddpm_core::{GaussianNoise, SimpleUNet, SimpleUNetConfig, TinyUNet, TinyUNetConfig};
use std::hint::black_box;

fn forward(c: &mut Criterion) {
    let cfg = SimpleUNetConfig::SEED;
    let mut g = GaussianNoise::new(1);
    let params: Vec<f32> = (0..cfg.param_count())
        .map(|_| 0.05 * g.next_gaussian())
        .collect();
    let x: Vec<f32> = (0..16 * cfg.image_len())
        .map(|_| g.next_gaussian())
        .collect();
    let net = SimpleUNet::from_flat(cfg, &params).unwrap();
    let mut out = vec![0.0f32; 16 * cfg.image_len()];

    let mut group = c.benchmark_group("simple_unet_28x28");
    for n in [1usize, 16] {
        group.throughput(Throughput::Elements(2 * cfg.macs() * n as u64));
        let t_in = vec![0.5f32; n];
        let len = n * cfg.image_len();
        for (tile, simd) in [(Tile::F2, true), (Tile::F4, true), (Tile::F2, false)] {
            let mut fast = if simd {
                FastSimpleUNet::with_tile(&net, tile)
            } else {
                FastSimpleUNet::portable_winograd(&net, tile)
            };
            let name = format!(
                "fast_{tile:?}_{}_batch{n}",
                if simd { "simd" } else { "portable" }
            );
            group.bench_function(name, |b| {
                b.iter(|| {
                    fast.forward_batch(black_box(&x[..len]), black_box(&t_in), &mut out[..len])
                        .unwrap()
                })
            });
        }
    }
    group.throughput(Throughput::Elements(2 * cfg.macs()));
    let mut ws = vec![0.0f32; cfg.workspace_len()];
    group.sample_size(10);
    group.bench_function("reference_loops_batch1", |b| {
        b.iter(|| {
            net.forward_reference(
                black_box(&x[..cfg.image_len()]),
                black_box(0.5),
                &mut ws,
                &mut out[..cfg.image_len()],
            )
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
