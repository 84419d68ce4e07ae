//! The page's drawing, run natively: move by move it computes what the core's samplers draw
//! with the same settings, bit for bit (the host model's batched sampling, the planned int8
//! executor, RePaint), its x0 is the network's prediction, and bad requests are errors that
//! name the problem.
mod common;

use common::{drawn, model, root, test_digit};
use ddpm_core::diffusion::{
    DdimConfig, MaskShape, Resampling, SamplerConfig, SolverConfig, Spacing,
};
use ddpm_core::file::ModelFile;
use ddpm_core::host::HostModel;
use ddpm_core::tiny_unet::int8::Int8TinyUNet;
use ddpm_core::tiny_unet::planned::{sample_planned_guided, TinyInt8Workspace};
use ddpm_core::Schedule;
use ddpm_web::session::{Known, Model, Session, Settings};

fn ddim(steps: u32, eta: f32, clip: bool) -> SamplerConfig {
    SamplerConfig::Ddim(DdimConfig {
        steps,
        eta,
        spacing: Spacing::Leading,
        clip_x0: clip,
        recompute_eps: clip,
    })
}

fn unipc(steps: u32) -> SamplerConfig {
    SamplerConfig::UniPc(SolverConfig {
        steps,
        spacing: Spacing::Linspace,
    })
}

fn settings(sampler: SamplerConfig, guidance: Option<f32>, class: Option<u32>) -> Settings {
    Settings {
        sampler,
        seed: 42,
        guidance,
        class,
        simd: true,
    }
}

fn host(name: &str) -> HostModel {
    let path = root().join("models").join(name);
    HostModel::from_bytes(&std::fs::read(&path).unwrap()).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn guided_f32_drawing_is_the_host_models() {
    let s = drawn(
        &model("tiny_unet_mnist.ddpm"),
        Some(&model("tiny_unet_mnist_guide.ddpm")),
        &settings(ddim(20, 1.0, true), Some(2.5), None),
        None,
    );
    let cfg = ddim(20, 1.0, true);
    let want = host("tiny_unet_mnist.ddpm")
        .sample_guided(&mut host("tiny_unet_mnist_guide.ddpm"), 2.5, 1, &cfg, 42)
        .unwrap();
    assert_eq!(bits(s.x()), bits(&want));
    assert_eq!((s.steps_done(), s.steps_total()), (20, 20));
    assert!(s.finished());
}

#[test]
fn classifier_free_guidance_is_the_host_models() {
    let cfg = ddim(20, 1.0, true);
    let s = drawn(
        &model("tiny_unet_mnist_cond.ddpm"),
        None,
        &settings(cfg, Some(2.0), Some(3)),
        None,
    );
    let mut m = host("tiny_unet_mnist_cond.ddpm");
    let mut uncond = m.clone();
    m.set_class(Some(3)).unwrap();
    uncond.set_class(None).unwrap();
    let want = m.sample_guided(&mut uncond, 2.0, 1, &cfg, 42).unwrap();
    assert_eq!(bits(s.x()), bits(&want));
}

#[test]
fn int8_drawing_is_the_firmwares() {
    let name = "tiny_unet_mnist_int8.ddpm";
    let s = drawn(
        &model(name),
        Some(&model("tiny_unet_mnist_guide_int8.ddpm")),
        &settings(unipc(10), Some(2.5), None),
        None,
    );
    let bytes = std::fs::read(root().join("models").join(name)).unwrap();
    let gbytes = std::fs::read(root().join("models/tiny_unet_mnist_guide_int8.ddpm")).unwrap();
    let (file, gfile) = (
        ModelFile::parse(&bytes).unwrap(),
        ModelFile::parse(&gbytes).unwrap(),
    );
    let net = Int8TinyUNet::from_file(&file).unwrap();
    let guide = Int8TinyUNet::from_file(&gfile).unwrap();
    let schedule: Box<Schedule> = Box::new(Schedule::new(&file.header().schedule).unwrap());
    let mut ws = Box::new(<TinyInt8Workspace>::ZEROED);
    let (mut x, mut guide_out) = (vec![0.0f32; 784], vec![0.0f32; 784]);
    let cfg = unipc(10);
    let mut history = vec![0.0f32; cfg.history_len(784)];
    sample_planned_guided(
        &net,
        &guide,
        2.5,
        &schedule,
        &cfg,
        42,
        &mut x,
        &mut ws,
        &mut guide_out,
        &mut history,
    )
    .unwrap();
    assert_eq!(bits(s.x()), bits(&x));
}

#[test]
fn inpainting_is_the_host_models_and_keeps_the_known_pixels() {
    let digit = test_digit(0);
    let image: Vec<f32> = digit.iter().map(|&p| f32::from(p) / 127.5 - 1.0).collect();
    let mut mask = vec![0.0f32; 784];
    MaskShape::Left.fill(28, 28, &mut mask).unwrap();
    let resampling = Resampling {
        resample: 2,
        jump: 3,
    };
    for cfg in [ddim(12, 1.0, true), unipc(8)] {
        let known = Known {
            image: image.clone(),
            mask: mask.clone(),
            resampling,
        };
        let s = drawn(
            &model("tiny_unet_mnist.ddpm"),
            Some(&model("tiny_unet_mnist_guide.ddpm")),
            &settings(cfg, Some(2.5), None),
            Some(known),
        );
        let inp = ddpm_core::diffusion::Inpainting::new(&image, &mask, resampling).unwrap();
        let want = host("tiny_unet_mnist.ddpm")
            .inpaint(
                Some((&mut host("tiny_unet_mnist_guide.ddpm"), 2.5)),
                &inp,
                1,
                &cfg,
                42,
            )
            .unwrap();
        assert_eq!(bits(s.x()), bits(&want), "{cfg:?}");
        assert_eq!(s.steps_total(), 2 * cfg_steps(&cfg));
        let pixels = s.pixels();
        for (i, (&p, &m)) in pixels.iter().zip(&mask).enumerate() {
            if m == 1.0 {
                assert_eq!(p, digit[i], "kept pixel {i} changed");
            }
        }
    }
}

fn cfg_steps(cfg: &SamplerConfig) -> usize {
    match cfg {
        SamplerConfig::Ddim(d) => d.steps as usize,
        SamplerConfig::UniPc(d) | SamplerConfig::DpmSolver2M(d) => d.steps as usize,
        SamplerConfig::Ddpm(_) => 300,
    }
}

#[test]
fn x0_is_the_networks_prediction_at_each_step() {
    // DDIM with η = 0 and no clipping ends on the last step's x0 itself (ᾱ after the last
    // step is 1), and the first step's x0 is not the noise it started from.
    let m = model("tiny_unet_mnist.ddpm");
    let mut s = Session::new(&m, None, &settings(ddim(10, 0.0, false), None, None), None).unwrap();
    let noise = s.x().to_vec();
    assert!(s.advance().unwrap());
    assert_eq!(s.timestep(), Some(270));
    assert_ne!(bits(s.x0()), bits(&noise));
    assert!(s.x0().iter().all(|v| v.is_finite()));
    let mut x0_before_last = Vec::new();
    while !s.finished() {
        x0_before_last = s.x0().to_vec();
        s.advance().unwrap();
    }
    // The last advance returned false; the x0 shown last is the last step's.
    assert_eq!(s.x0(), &x0_before_last[..]);
    for (a, b) in s.x().iter().zip(s.x0()) {
        assert_eq!(a, b, "after the last DDIM step (η 0, no clip) x = x0");
    }
}

#[test]
fn bad_requests_are_errors_that_say_why() {
    let err = |r: Result<Session, ddpm_core::Error>| match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let simple = std::fs::read(root().join("models/simple_unet_mnist.ddpm")).unwrap();
    let e = Model::load(simple).err().unwrap().to_string();
    assert!(e.contains("SimpleUNet"), "{e}");
    let mut damaged = std::fs::read(root().join("models/tiny_unet_mnist.ddpm")).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    let e = Model::load(damaged).err().unwrap().to_string();
    assert!(e.contains("CRC"), "{e}");
    let m = model("tiny_unet_mnist.ddpm");
    let e = err(Session::new(
        &m,
        None,
        &settings(ddim(10, 0.0, true), Some(2.0), None),
        None,
    ));
    assert!(e.contains("guidance needs a guide"), "{e}");
    let e = err(Session::new(
        &m,
        None,
        &settings(ddim(10, 0.0, true), None, Some(3)),
        None,
    ));
    assert!(e.contains("unconditional") || e.contains("class"), "{e}");
    let int8_guide = model("tiny_unet_mnist_guide_int8.ddpm");
    let e = err(Session::new(
        &m,
        Some(&int8_guide),
        &settings(ddim(10, 0.0, true), Some(2.0), None),
        None,
    ));
    assert!(e.contains("precision"), "{e}");
    let cond = model("tiny_unet_mnist_cond.ddpm");
    let e = err(Session::new(
        &cond,
        None,
        &settings(ddim(10, 0.0, true), None, Some(10)),
        None,
    ));
    assert!(e.contains("class"), "{e}");
    let short = Known {
        image: vec![0.0; 100],
        mask: vec![1.0; 100],
        resampling: Resampling::NONE,
    };
    let e = err(Session::new(
        &m,
        None,
        &settings(ddim(10, 0.0, true), None, None),
        Some(short),
    ));
    assert!(e.contains("known image"), "{e}");
    let e = err(Session::new(
        &m,
        None,
        &settings(ddim(0, 0.0, true), None, None),
        None,
    ));
    assert!(e.contains("steps"), "{e}");
}
