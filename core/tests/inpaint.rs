//! RePaint inpainting through the sampling driver, on the committed TinyUNet (f32 on the host
//! path, int8 on the microcontroller's planned executor): the kept pixels come back exactly,
//! an all-zero mask is plain sampling bit for bit, and the row-streamed executor inpaints as
//! the driver over whole images does, with a multistep solver's history saved and restored.

use ddpm_core::diffusion::{
    inpaint_batch, DdimConfig, Denoiser, GaussianNoise, Inpainting, Resampling, SamplerConfig,
    SolverConfig, Spacing, WholeImages,
};
use ddpm_core::file::ModelFile;
use ddpm_core::host::HostModel;
use ddpm_core::tiny_unet::int8::Int8TinyUNet;
use ddpm_core::tiny_unet::planned::{Planned, TinyInt8Workspace};
use ddpm_core::Schedule;

const SIDE: usize = 28;
const LEN: usize = SIDE * SIDE;

fn model_bytes(name: &str) -> Vec<u8> {
    let path = format!("{}/../models/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn host() -> HostModel {
    HostModel::from_bytes(&model_bytes("tiny_unet_mnist.ddpm")).unwrap()
}

/// A ring of radius 8 around the centre, in [−1, 1] (background −1), as a stand-in digit.
fn ring() -> Vec<f32> {
    (0..LEN)
        .map(|i| {
            let (y, x) = ((i / SIDE) as f32 - 13.5, (i % SIDE) as f32 - 13.5);
            let r = (x * x + y * y).sqrt();
            if (r - 8.0).abs() < 2.0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
}

/// 1 (kept) in the bottom half, 0 (drawn) in the top half.
fn top_hidden() -> Vec<f32> {
    (0..LEN)
        .map(|i| if i / SIDE < SIDE / 2 { 0.0 } else { 1.0 })
        .collect()
}

fn ddim(steps: u32, eta: f32) -> SamplerConfig {
    SamplerConfig::Ddim(DdimConfig {
        steps,
        eta,
        clip_x0: true,
        recompute_eps: true,
        ..DdimConfig::default()
    })
}

fn unipc(steps: u32) -> SamplerConfig {
    SamplerConfig::UniPc(SolverConfig {
        steps,
        spacing: Spacing::Linspace,
    })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn an_all_zero_mask_without_resampling_is_plain_sampling() {
    let mut net = host();
    let known = ring();
    let zeros = vec![0.0f32; LEN];
    let inp = Inpainting::new(&known, &zeros, Resampling::NONE).unwrap();
    for cfg in [ddim(10, 1.0), unipc(6)] {
        let plain = net.sample(2, &cfg, 5).unwrap();
        let painted = net.inpaint(None, &inp, 2, &cfg, 5).unwrap();
        assert_eq!(bits(&plain), bits(&painted), "{cfg:?}");
    }
}

#[test]
fn an_all_one_mask_gives_back_the_known_image() {
    let mut net = host();
    let known = ring();
    let ones = vec![1.0f32; LEN];
    let r = Resampling {
        resample: 2,
        jump: 3,
    };
    let inp = Inpainting::new(&known, &ones, r).unwrap();
    for cfg in [ddim(10, 1.0), unipc(6)] {
        let out = net.inpaint(None, &inp, 1, &cfg, 1).unwrap();
        assert_eq!(bits(&out), bits(&known), "{cfg:?}");
    }
}

#[test]
fn kept_pixels_are_exact_per_image_and_the_hidden_ones_are_drawn() {
    let mut net = host();
    let mut guide = HostModel::from_bytes(&model_bytes("tiny_unet_mnist_guide.ddpm")).unwrap();
    let ring = ring();
    let inverse: Vec<f32> = ring.iter().map(|v| -v).collect();
    let known = [ring.clone(), inverse.clone()].concat();
    let mask = [top_hidden(), top_hidden()].concat();
    let r = Resampling {
        resample: 2,
        jump: 2,
    };
    let inp = Inpainting::new(&known, &mask, r).unwrap();
    let out = net
        .inpaint(Some((&mut guide, 2.5)), &inp, 2, &ddim(10, 1.0), 3)
        .unwrap();
    for (i, own) in [&ring, &inverse].into_iter().enumerate() {
        let img = &out[i * LEN..][..LEN];
        assert_eq!(bits(&img[LEN / 2..]), bits(&own[LEN / 2..]), "image {i}");
        let changed = img[..LEN / 2]
            .iter()
            .zip(&own[..LEN / 2])
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            changed > LEN / 8,
            "image {i}: only {changed} hidden pixels drawn"
        );
    }
    // The same run again is the same bits; the shared-mask form equals the per-image one.
    let again = net
        .inpaint(Some((&mut guide, 2.5)), &inp, 2, &ddim(10, 1.0), 3)
        .unwrap();
    assert_eq!(bits(&out), bits(&again));
    let shared_mask = top_hidden();
    let first = Inpainting::new(&ring, &shared_mask, r).unwrap();
    let one = net
        .inpaint(Some((&mut guide, 2.5)), &first, 1, &ddim(10, 1.0), 3)
        .unwrap();
    assert_eq!(bits(&one), bits(&out[..LEN]));
}

/// The planned executor handing over its whole output at once (`forward_planned`).
struct WholePlanned<'n, 'a, 'w> {
    net: &'n Int8TinyUNet<'a>,
    ws: &'w mut TinyInt8Workspace,
}

impl Denoiser for WholePlanned<'_, '_, '_> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> ddpm_core::Result<()> {
        self.net.forward_planned(x, t_in, self.ws, eps)
    }
}

#[test]
fn the_planned_int8_executor_inpaints_as_the_driver_over_whole_images() {
    let bytes = model_bytes("tiny_unet_mnist_int8.ddpm");
    let file = ModelFile::parse(&bytes).unwrap();
    let q = Int8TinyUNet::from_file(&file).unwrap();
    let sched: Schedule = Schedule::new(&file.header().schedule).unwrap();
    let known = ring();
    let mask = top_hidden();
    let mut ws = Box::new(<TinyInt8Workspace>::ZEROED);
    let mut ws2 = Box::new(<TinyInt8Workspace>::ZEROED);
    for (cfg, r) in [
        (ddim(8, 1.0), Resampling::NONE),
        (
            unipc(6),
            Resampling {
                resample: 2,
                jump: 2,
            },
        ),
    ] {
        let inp = Inpainting::new(&known, &mask, r).unwrap();
        let hlen = inp.history_len(&cfg, LEN);
        let (mut rows, mut h1) = (vec![0.0f32; LEN], vec![0.0f32; hlen]);
        let noise = &mut [GaussianNoise::new(9)];
        let mut planned = Planned::new(&q, &mut ws);
        inpaint_batch(&mut planned, &sched, &cfg, &inp, noise, &mut rows, &mut h1).unwrap();
        let mut den = WholePlanned {
            net: &q,
            ws: &mut ws2,
        };
        let mut eps = vec![0.0f32; LEN];
        let mut whole_net = WholeImages::new(&mut den, &mut eps).unwrap();
        let (mut whole, mut h2) = (vec![0.0f32; LEN], vec![0.0f32; hlen]);
        let noise = &mut [GaussianNoise::new(9)];
        inpaint_batch(
            &mut whole_net,
            &sched,
            &cfg,
            &inp,
            noise,
            &mut whole,
            &mut h2,
        )
        .unwrap();
        assert_eq!(bits(&rows), bits(&whole), "{cfg:?}");
        assert_eq!(bits(&rows[LEN / 2..]), bits(&known[LEN / 2..]), "{cfg:?}");
    }
}

#[test]
fn wrong_buffers_are_errors() {
    let mut net = host();
    let known = ring();
    let mask = top_hidden();
    let inp = Inpainting::new(&known, &mask, Resampling::NONE).unwrap();
    let cfg = unipc(4);
    let sched = net.schedule().clone();
    let mut eps = vec![0.0f32; LEN];
    let mut whole = WholeImages::new(&mut net, &mut eps).unwrap();
    let mut x = vec![0.0f32; 2 * LEN];
    let noise = &mut [GaussianNoise::new(0), GaussianNoise::new(1)];
    // UniPC needs two images of history per image.
    let mut short = vec![0.0f32; LEN];
    assert!(inpaint_batch(&mut whole, &sched, &cfg, &inp, noise, &mut x, &mut short).is_err());
    // Known images for three when the batch holds two.
    let three = [known.clone(), known.clone(), known.clone()].concat();
    let mask3 = [mask.clone(), mask.clone(), mask.clone()].concat();
    let inp3 = Inpainting::new(&three, &mask3, Resampling::NONE).unwrap();
    let mut history = vec![0.0f32; inp3.history_len(&cfg, 2 * LEN)];
    assert!(inpaint_batch(&mut whole, &sched, &cfg, &inp3, noise, &mut x, &mut history).is_err());
}
