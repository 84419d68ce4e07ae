//! `trainer eval`: the variational bound against the exact likelihood of a tiny diffusion
//! (one pixel, two steps, computed by numerical integration), its independence of the batch
//! size, sampling independent of the thread count, and the command end to end on a tiny model.

mod common;

use common::{lock, shared_mnist};
use std::path::{Path, PathBuf};
use std::process::Command;

use ddpm_core::diffusion::{DdimConfig, DdpmVariance, SamplerConfig};
use ddpm_core::host::HostModel;
use ddpm_core::{ScheduleConfig, SimpleUNetConfig};
use ddpm_torch::{export, model};
use ddpm_trainer::eval::classifier::Classifier;
use ddpm_trainer::eval::nll::{self, BoundOptions, Diffusion};
use ddpm_trainer::eval::{quality, Draws};
use tch::{nn, Device, Tensor};

/// The fixed "network" of the one-pixel tests: ε(x, s) = 0.8·tanh(1.5x) + 0.3·s − 0.1.
fn toy_eps(x: f64, s: f64) -> f64 {
    0.8 * (1.5 * x).tanh() + 0.3 * s - 0.1
}

fn toy_eps_tensor(x: &Tensor, t_in: &Tensor) -> anyhow::Result<Tensor> {
    let s = t_in.view([-1, 1, 1, 1]);
    Ok((x * 1.5).tanh() * 0.8 + s * 0.3 - 0.1)
}

fn normal_logpdf(x: f64, mean: f64, var: f64) -> f64 {
    -0.5 * ((x - mean).powi(2) / var + var.ln() + (2.0 * std::f64::consts::PI).ln())
}

/// Composite Simpson weights for `n` (odd) equally spaced points with spacing h.
fn simpson_weights(n: usize, h: f64) -> Vec<f64> {
    assert!(n % 2 == 1 && n >= 3);
    (0..n)
        .map(|i| {
            let w = if i == 0 || i == n - 1 {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            w * h / 3.0
        })
        .collect()
}

fn grid(lo: f64, hi: f64, h: f64) -> (Vec<f64>, Vec<f64>) {
    let n = ((((hi - lo) / h).ceil() as usize) / 2) * 2 + 1;
    let step = (hi - lo) / (n - 1) as f64;
    let xs = (0..n).map(|i| lo + i as f64 * step).collect();
    (xs, simpson_weights(n, step))
}

/// The tiny diffusion written out independently of `eval::nll`: two steps (T = 2), β = (b0, b1).
struct Tiny {
    b: [f64; 2],
    acp: [f64; 2],
    variance: DdpmVariance,
    clip: bool,
}

impl Tiny {
    fn new(b: [f64; 2], variance: DdpmVariance, clip: bool) -> Self {
        Self {
            b,
            acp: [1.0 - b[0], (1.0 - b[0]) * (1.0 - b[1])],
            variance,
            clip,
        }
    }
    /// β̃ of the second step: (1 − ᾱ₀)/(1 − ᾱ₁)·β₁.
    fn post_var1(&self) -> f64 {
        (1.0 - self.acp[0]) / (1.0 - self.acp[1]) * self.b[1]
    }
    /// Variance of p(x₀|x₁) (k = 0) and p(x₁|x₂) (k = 1).
    fn var(&self, k: usize) -> f64 {
        match self.variance {
            DdpmVariance::FixedLarge => self.b[k],
            DdpmVariance::FixedSmall => self.post_var1(),
        }
    }
    /// μ_θ(x, k).
    fn mean(&self, x: f64, k: usize) -> f64 {
        let eps = toy_eps(x, k as f64 / 2.0);
        let (b, a) = (self.b[k], self.acp[k]);
        if self.clip {
            let x0 = ((x - (1.0 - a).sqrt() * eps) / a.sqrt()).clamp(-1.0, 1.0);
            let prev = if k == 0 { 1.0 } else { self.acp[0] };
            prev.sqrt() * b / (1.0 - a) * x0 + (1.0 - b).sqrt() * (1.0 - prev) / (1.0 - a) * x
        } else {
            (x - b / (1.0 - a).sqrt() * eps) / (1.0 - b).sqrt()
        }
    }
    /// log P(x₀ | x₁) for many x₁, through the decoder under test (checked on its own against
    /// closed forms in the unit tests).
    fn log_decoder(&self, x0: f64, x1: &[f64]) -> Vec<f64> {
        let means: Vec<f64> = x1.iter().map(|&x| self.mean(x, 0)).collect();
        let m = Tensor::from_slice(&means);
        let x = m.full_like(x0);
        let ll = nll::discretized_gaussian_log_likelihood(&x, &m, 0.5 * self.var(0).ln());
        Vec::<f64>::try_from(ll).unwrap()
    }

    /// −log P(x₀) = −log ∫∫ N(x₂; 0, 1)·p(x₁|x₂)·P(x₀|x₁) dx₂ dx₁, by Simpson's rule.
    fn exact_nll(&self, x0: f64) -> f64 {
        // P(x₀|x₁) lives within 1.5 of x₀ (10 decoder σ at most, plus the offset of the mean),
        // except that the edge bins take the tails; beyond ±9 the marginal of x₁ is below 1e-17.
        let lo = if x0 < -0.999 { -9.0 } else { x0 - 1.5 };
        let hi = if x0 > 0.999 { 9.0 } else { x0 + 1.5 };
        let (x1s, w1) = grid(lo, hi, 1e-3);
        let (x2s, w2) = grid(-9.0, 9.0, 2e-3);
        let mu2: Vec<f64> = x2s.iter().map(|&x| self.mean(x, 1)).collect();
        let prior: Vec<f64> = x2s
            .iter()
            .zip(&w2)
            .map(|(&x, &w)| w * normal_logpdf(x, 0.0, 1.0).exp())
            .collect();
        let v1 = self.var(1);
        let dec = self.log_decoder(x0, &x1s);
        let mut p = 0.0f64;
        for ((&x1, &w), &ld) in x1s.iter().zip(&w1).zip(&dec) {
            if ld < -60.0 {
                continue; // below 1e-26, while P(x₀) here is above 1e-3
            }
            let m: f64 = mu2
                .iter()
                .zip(&prior)
                .map(|(&mu, &pw)| pw * normal_logpdf(x1, mu, v1).exp())
                .sum();
            p += w * m * ld.exp();
        }
        -p.ln()
    }

    /// The negative ELBO from its definition, E_q[log q(x₁, x₂|x₀) − log p(x₀, x₁, x₂)], by
    /// Simpson's rule over x₁ = √ᾱ₀x₀ + √(1−ᾱ₀)u, x₂ = √α₁x₁ + √β₁v (no KL decomposition).
    fn exact_elbo(&self, x0: f64) -> f64 {
        let (us, wu) = grid(-9.0, 9.0, 0.01);
        let s1 = (1.0 - self.acp[0]).sqrt();
        let x1s: Vec<f64> = us
            .iter()
            .map(|&u| self.acp[0].sqrt() * x0 + s1 * u)
            .collect();
        let dec = self.log_decoder(x0, &x1s);
        let (a1, b1, v1) = ((1.0 - self.b[1]).sqrt(), self.b[1], self.var(1));
        let mut total = 0.0f64;
        for (((&u, &wi), &x1), &ld) in us.iter().zip(&wu).zip(&x1s).zip(&dec) {
            let log_q1 = normal_logpdf(u, 0.0, 1.0) - 0.5 * (1.0 - self.acp[0]).ln();
            let mut inner = 0.0;
            for (&v, &wj) in us.iter().zip(&wu) {
                let x2 = a1 * x1 + b1.sqrt() * v;
                let log_q2 = normal_logpdf(v, 0.0, 1.0) - 0.5 * b1.ln();
                let log_p = normal_logpdf(x2, 0.0, 1.0) + normal_logpdf(x1, self.mean(x2, 1), v1);
                inner += wj * normal_logpdf(v, 0.0, 1.0).exp() * (log_q1 + log_q2 - log_p);
            }
            total += wi * normal_logpdf(u, 0.0, 1.0).exp() * (inner - ld);
        }
        total
    }
}

#[test]
fn bound_is_not_below_the_exact_nll_of_a_one_pixel_two_step_diffusion() {
    let _g = lock();
    // Estimates from this many draws per pixel value; the standard error comes out below 1% of
    // the bound, so 4 standard errors (a 6e-5 two-sided chance of a false alarm for a correct
    // estimator) still expose a wrong term.
    const DRAWS: usize = 40_000;
    const Z: f64 = 4.0;
    // β₀ = 0.002 gives a decoder σ of about 5.7 pixel bins; β₁ = 0.5 leaves half the signal.
    // fixed_small takes β₀ = 0.02 (β̃₁ ≈ 0.0196, σ ≈ 18 bins): with β₀ = 0.002 its β̃₁ is so
    // small that the toy network's misfit costs ~150 nats with a heavy-tailed estimate.
    for (variance, clip, betas) in [
        (DdpmVariance::FixedLarge, false, [0.002, 0.5]),
        (DdpmVariance::FixedSmall, false, [0.02, 0.5]),
        (DdpmVariance::FixedLarge, true, [0.002, 0.5]),
    ] {
        let diff = Diffusion::from_betas(&betas).unwrap();
        let tiny = Tiny::new(betas, variance, clip);
        for pixel in [0u8, 128, 255] {
            let x0 = pixel as f64 / 127.5 - 1.0;
            let images = vec![pixel; DRAWS];
            let opts = BoundOptions {
                variance,
                clip_x0: clip,
                seed: 5 + pixel as u64,
            };
            let mut model = |x: &Tensor, t: &Tensor| toy_eps_tensor(x, t);
            // Bits/dim with D = 1 back to nats.
            let r = nll::variational_bound(
                &mut model,
                &diff,
                &images,
                (1, 1, 1),
                &opts,
                DRAWS,
                Device::Cpu,
                &mut |_| {},
            )
            .unwrap();
            let nats = std::f64::consts::LN_2;
            let (mc, se) = (r.total * nats, r.total_std_error * nats);
            let elbo = tiny.exact_elbo(x0);
            let nll_exact = tiny.exact_nll(x0);
            eprintln!(
                "{variance:?} clip {clip} pixel {pixel}: exact NLL {nll_exact:.4}, exact bound \
                 {elbo:.4}, estimate {mc:.4} ± {se:.4} nats"
            );
            assert!(se < 0.01 * elbo, "standard error {se} of {elbo}");
            assert!(
                (mc - elbo).abs() < Z * se,
                "estimate {mc} vs the bound from its definition {elbo} (se {se})"
            );
            // The quadratures are accurate to ~1e-6 nats; the bound must not be below.
            assert!(
                elbo >= nll_exact - 1e-6,
                "bound {elbo} below the exact NLL {nll_exact}"
            );
            assert!(
                mc + Z * se >= nll_exact,
                "estimate {mc} below the NLL {nll_exact}"
            );
            // L_T: KL(N(√ᾱ₁x₀, 1 − ᾱ₁) ‖ N(0, 1)) has no randomness.
            let a = tiny.acp[1];
            let prior = 0.5 * (a * x0 * x0 + (1.0 - a) - 1.0 - (1.0 - a).ln());
            assert!((r.prior * nats - prior).abs() < 1e-12);
        }
    }
}

#[test]
fn bound_does_not_depend_on_the_batch_size() {
    let _g = lock();
    let diff = Diffusion::from_schedule(&ScheduleConfig::linear(12, 1e-3, 0.3)).unwrap();
    let images: Vec<u8> = (0..7 * 6).map(|i| (i * 37 % 256) as u8).collect();
    let opts = BoundOptions {
        variance: DdpmVariance::FixedSmall,
        clip_x0: false,
        seed: 9,
    };
    let run = |batch: usize, seed: u64| {
        let mut model = |x: &Tensor, t: &Tensor| toy_eps_tensor(x, t);
        nll::variational_bound(
            &mut model,
            &diff,
            &images,
            (1, 2, 3),
            &BoundOptions { seed, ..opts },
            batch,
            Device::Cpu,
            &mut |_| {},
        )
        .unwrap()
    };
    let whole = run(7, 9);
    // The noise of image i at step k is its own stream; only libtorch's elementwise kernels
    // may round differently for other tensor lengths (vector body vs scalar tail): 1e-12.
    for batch in [1, 3] {
        let r = run(batch, 9);
        for (a, b) in whole.curve.iter().zip(&r.curve) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{a} vs {b}");
        }
        assert!((whole.total - r.total).abs() <= 1e-12 * whole.total.abs());
    }
    assert_eq!(whole.curve.len(), 12);
    assert_eq!(whole.n, 7);
    let other = run(7, 10);
    assert_ne!(
        other.total, whole.total,
        "the seed does not reach the draws"
    );
}

/// 1×28×28 (so the classifier applies), tiny hidden widths, a 20-step schedule.
const TINY_NET: SimpleUNetConfig = SimpleUNetConfig {
    channels: 1,
    height: 28,
    width: 28,
    hidden1: 4,
    hidden2: 8,
};

fn tiny_model(dir: &Path, seed: i64) -> PathBuf {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = model::SimpleUNet::new(&vs.root(), TINY_NET);
    let tensors = model::named_params(&vs, &TINY_NET).unwrap();
    let sched = ScheduleConfig::linear(20, 1e-3, 0.2);
    let bytes =
        export::model_file_bytes(&TINY_NET, &sched, &tensors, "tiny test model", None).unwrap();
    let p = dir.join("tiny.ddpm");
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn samples_do_not_depend_on_the_thread_count() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(tiny_model(dir.path(), 3)).unwrap();
    let cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 4,
        eta: 1.0,
        ..Default::default()
    });
    let n = 5;
    let one = quality::draw_samples(&bytes, None, Draws::new(n, &cfg, 100, 1), &|| {}).unwrap();
    // Image i is HostModel's sample with seed + i.
    let mut host = HostModel::from_bytes(&bytes).unwrap();
    assert_eq!(one, host.sample(n, &cfg, 100).unwrap());
    for workers in [2, 3, 8] {
        let count = std::sync::atomic::AtomicUsize::new(0);
        let v = quality::draw_samples(&bytes, None, Draws::new(n, &cfg, 100, workers), &|| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(v, one, "{workers} workers");
        assert_eq!(count.into_inner(), n, "one progress tick per image");
    }
    assert_ne!(
        quality::draw_samples(&bytes, None, Draws::new(n, &cfg, 101, 2), &|| {}).unwrap(),
        one
    );
}

#[test]
fn guided_samples_equal_the_core_guided_sampler_and_do_not_depend_on_the_thread_count() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(tiny_model(dir.path(), 3)).unwrap();
    let guide_dir = tempfile::tempdir().unwrap();
    let guide = std::fs::read(tiny_model(guide_dir.path(), 4)).unwrap();
    let cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 4,
        eta: 1.0,
        ..Default::default()
    });
    let n = 4;
    let guided = quality::draw_samples(
        &bytes,
        Some((&guide, 2.0)),
        Draws::new(n, &cfg, 100, 1),
        &|| {},
    )
    .unwrap();
    let mut host = HostModel::from_bytes(&bytes).unwrap();
    let mut guide_host = HostModel::from_bytes(&guide).unwrap();
    assert_eq!(
        guided,
        host.sample_guided(&mut guide_host, 2.0, n, &cfg, 100)
            .unwrap()
    );
    assert_eq!(
        quality::draw_samples(
            &bytes,
            Some((&guide, 2.0)),
            Draws::new(n, &cfg, 100, 3),
            &|| {}
        )
        .unwrap(),
        guided
    );
    assert_ne!(guided, host.sample(n, &cfg, 100).unwrap());
    // A model guided by itself is the model alone, exactly (g + w·(o − g) = g when o = g).
    assert_eq!(
        quality::draw_samples(
            &bytes,
            Some((&bytes, 2.0)),
            Draws::new(n, &cfg, 100, 2),
            &|| {}
        )
        .unwrap(),
        host.sample(n, &cfg, 100).unwrap()
    );
}

/// The number after `"key": ` in a JSON text.
fn json_number(doc: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\": ");
    let at = doc
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {doc}"))
        + pat.len();
    let end = doc[at..]
        .find([',', '}', ']'])
        .map(|e| at + e)
        .unwrap_or(doc.len());
    doc[at..end]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{key}: {e} in {doc}"))
}

#[test]
fn cli_reports_bound_and_quality_and_writes_json_and_curve() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let model_path = tiny_model(dir.path(), 4);
    let clf = dir.path().join("clf.safetensors");
    Classifier::new(Device::Cpu, 1).save(&clf).unwrap();
    let (json, csv) = (
        dir.path().join("out/eval.json"),
        dir.path().join("curve.csv"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["eval", "--nll", "--fid", "--model"])
        .arg(&model_path)
        .arg("--classifier")
        .arg(&clf)
        .arg("--data")
        .arg(shared_mnist())
        .args([
            "--limit",
            "3",
            "--batch-size",
            "2",
            "--n",
            "6",
            "--workers",
            "2",
        ])
        .args([
            "--sampler",
            "ddim",
            "--steps",
            "3",
            "--device",
            "cpu",
            "--threads",
            "1",
        ])
        .arg("--json-out")
        .arg(&json)
        .arg("--curve")
        .arg(&csv)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for needle in [
        "variational bound, 3 test images, D = 784, T = 20",
        "L_0 (decoder",
        "L_T (prior KL)",
        "classifier test accuracy",
        "classifier FID",
        "IS analog",
        "confident (top p > 0.9)",
        "DDIM 3 steps",
        "sampling wall time",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    let doc = std::fs::read_to_string(&json).unwrap();
    let parts = ["decoder_bpd", "diffusion_bpd", "prior_bpd"].map(|k| json_number(&doc, k));
    let total = json_number(&doc, "total_bpd");
    assert!(parts.iter().all(|v| v.is_finite() && *v >= 0.0), "{doc}");
    // The JSON keeps every digit of the sum's parts, so only addition rounding separates them.
    assert!(
        (parts.iter().sum::<f64>() - total).abs() < 1e-9 * total,
        "{doc}"
    );
    assert_eq!(json_number(&doc, "images"), 3.0);
    assert_eq!(json_number(&doc, "samples"), 6.0);
    assert!(json_number(&doc, "fid") >= 0.0);
    let is = json_number(&doc, "inception_score");
    assert!((1.0..=10.0).contains(&is), "{is}");
    let curve = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = curve.lines().collect();
    assert_eq!(lines[0], "t,term,bits_per_dim");
    assert_eq!(lines.len(), 1 + 20 + 1, "{curve}");
    assert!(lines[1].starts_with("1,L_0,") && lines[21].starts_with("21,L_T,"));

    // Errors name the problem.
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .arg("eval")
            .args(args)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let m = model_path.to_str().unwrap();
    assert!(run(&["--model", m]).contains("pass --nll, --fid or both"));
    let e = run(&["--fid", "--model", "/nonexistent/x.ddpm"]);
    assert!(
        e.contains("/nonexistent/x.ddpm") && e.contains("no such model file"),
        "{e}"
    );
    let e = run(&["--fid", "--model", m, "--n", "1"]);
    assert!(e.contains("--n must be at least 2"), "{e}");
    let e = run(&["--nll", "--model", m, "--guide", m]);
    assert!(e.contains("a guided sampler has no such bound"), "{e}");
    let e = run(&["--fid", "--model", m, "--guidance", "3"]);
    assert!(e.contains("--guide"), "{e}");
}

#[test]
fn cli_guided_quality_names_the_guide_in_text_and_json() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let model_path = tiny_model(dir.path(), 4);
    let guide_dir = tempfile::tempdir().unwrap();
    let guide_path = tiny_model(guide_dir.path(), 5);
    let clf = dir.path().join("clf.safetensors");
    Classifier::new(Device::Cpu, 1).save(&clf).unwrap();
    let json = dir.path().join("eval.json");
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["eval", "--fid", "--model"])
        .arg(&model_path)
        .arg("--guide")
        .arg(&guide_path)
        .args(["--guidance", "1.5", "--classifier"])
        .arg(&clf)
        .arg("--data")
        .arg(shared_mnist())
        .args(["--n", "4", "--sampler", "ddim", "--steps", "3"])
        .args(["--device", "cpu", "--threads", "1", "--json-out"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let named = format!("guided by {} with w = 1.5", guide_path.display());
    assert!(stdout.contains(&named), "missing {named:?} in\n{stdout}");
    let doc = std::fs::read_to_string(&json).unwrap();
    assert_eq!(json_number(&doc, "weight"), 1.5);
    assert!(
        doc.contains(&format!(
            "\"guide\": {{\"model\": \"{}\"",
            guide_path.display()
        )),
        "{doc}"
    );
}

#[test]
fn bound_on_a_tiny_network_is_finite_and_positive() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path(), 5);
    let net = ddpm_trainer::eval::TorchNet::load(&path, Device::Cpu).unwrap();
    let diff = Diffusion::from_schedule(&net.schedule).unwrap();
    let images: Vec<u8> = (0..2 * 784).map(|i| (i * 7 % 256) as u8).collect();
    let r = nll::variational_bound(
        &mut |x, t| Ok(net.eps(x, t)),
        &diff,
        &images,
        net.chw,
        &BoundOptions {
            variance: DdpmVariance::FixedLarge,
            clip_x0: true,
            seed: 0,
        },
        2,
        Device::Cpu,
        &mut |_| {},
    )
    .unwrap();
    assert!(r.total.is_finite() && r.decoder > 0.0 && r.diffusion > 0.0 && r.prior > 0.0);
    let sum = r.decoder + r.diffusion + r.prior;
    assert!((sum - r.total).abs() < 1e-12 * r.total);
}

#[test]
fn fid_of_an_int8_file_samples_through_the_int8_executor_and_refuses_an_f32_guide() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let int8 = root.join("models/tiny_unet_mnist_int8.ddpm");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trainer"))
            .current_dir(&root)
            .args(["eval", "--fid", "--model"])
            .arg(&int8)
            .arg("--data")
            .arg(shared_mnist())
            .args(["--n", "4", "--workers", "2", "--sampler", "ddim"])
            .args([
                "--steps",
                "2",
                "--clip-x0",
                "--recompute-eps",
                "--no-progress",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("classifier FID") && stdout.contains("DDIM 2 steps"),
        "{stdout}\n{stderr}"
    );
    // An int8 model takes an int8 guide (trainer/tests/recipe.rs), not the f32 one.
    let out = run(&["--guide", "models/tiny_unet_mnist_guide.ddpm"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("models/tiny_unet_mnist_guide.ddpm")
            && stderr.contains("an int8 model is guided by an int8 guide"),
        "{stderr}"
    );
}
