//! Sample quality judged by the project's MNIST classifier ([`super::classifier`]).
//!
//! For a set of images:
//! - the Fréchet distance between Gaussians fitted to the classifier's penultimate features
//!   (128 values after the hidden layer's ReLU) of the set and of the MNIST test split,
//!   ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½) (Heusel et al. 2017's FID formula, with this
//!   classifier instead of Inception, so the figures compare only with each other);
//! - the Inception-Score analog exp(E_x KL(p(y|x) ‖ p(y))) of the classifier's probabilities
//!   (Salimans et al. 2016), between 1 and 10;
//! - the share labelled with top probability above [`CONFIDENT_PROB`] and the class histogram.
//!
//! Matrix square roots come from symmetric eigendecompositions in f64 (libtorch's `eigh`), with
//! the eigenvalues that rounding pushes below zero set to zero.

use anyhow::{anyhow, bail, Context, Result};
use ddpm_core::file::ModelFile;
use ddpm_core::host::HostModel;
use tch::{Device, Kind, Tensor};

use crate::eval::classifier::{Classifier, CLASSES, CONFIDENT_PROB, FEATURES};

/// Mean and covariance of a set of feature vectors (f64).
#[derive(Debug)]
pub struct FeatureStats {
    /// Vectors the statistics come from.
    pub n: usize,
    /// Mean, d values.
    pub mean: Tensor,
    /// Covariance (divided by n − 1), d × d.
    pub cov: Tensor,
}

impl FeatureStats {
    /// Statistics of `n` row-major vectors of length `d` (at least two vectors).
    pub fn from_rows(rows: &[f32], d: usize) -> Result<Self> {
        if d == 0 || !rows.len().is_multiple_of(d) {
            bail!("{} values are not whole vectors of {d}", rows.len());
        }
        let n = rows.len() / d;
        if n < 2 {
            bail!("a covariance needs at least 2 vectors, got {n}");
        }
        let x = Tensor::from_slice(rows)
            .view([n as i64, d as i64])
            .to_kind(Kind::Double);
        let mean = x.mean_dim([0i64].as_slice(), false, Kind::Double);
        let c = x - &mean;
        let cov = c.tr().matmul(&c) / (n as f64 - 1.0);
        Ok(Self { n, mean, cov })
    }

    /// Statistics given directly (tests, closed forms).
    pub fn new(mean: &[f64], cov: &[f64]) -> Result<Self> {
        let d = mean.len();
        if cov.len() != d * d {
            bail!("a covariance of {d} dimensions needs {} values", d * d);
        }
        Ok(Self {
            n: 0,
            mean: Tensor::from_slice(mean),
            cov: Tensor::from_slice(cov).view([d as i64, d as i64]),
        })
    }
}

/// Square root of a symmetric positive semi-definite matrix: V·diag(√max(λ, 0))·Vᵀ.
fn sqrtm_psd(m: &Tensor) -> Tensor {
    let sym = (m + m.tr()) * 0.5;
    let (lambda, v) = sym.linalg_eigh("L");
    let s = lambda.clamp_min(0.0).sqrt();
    (&v * s.unsqueeze(0)).matmul(&v.tr())
}

/// Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂):
/// ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2·Tr (Σ₁^½ Σ₂ Σ₁^½)^½.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    if a.mean.size() != b.mean.size() {
        bail!(
            "feature sizes differ: {:?} and {:?}",
            a.mean.size(),
            b.mean.size()
        );
    }
    let d = &a.mean - &b.mean;
    let mean_term = d.dot(&d).double_value(&[]);
    let s1 = sqrtm_psd(&a.cov);
    let m = s1.matmul(&b.cov).matmul(&s1);
    let sym = (&m + m.tr()) * 0.5;
    let tr_sqrt = sym
        .linalg_eigvalsh("L")
        .clamp_min(0.0)
        .sqrt()
        .sum(Kind::Double)
        .double_value(&[]);
    let fd = mean_term + a.cov.trace().double_value(&[]) + b.cov.trace().double_value(&[])
        - 2.0 * tr_sqrt;
    if !fd.is_finite() {
        bail!("the Fréchet distance is {fd} (non-finite features?)");
    }
    Ok(fd)
}

/// exp(mean_x KL(p(y|x) ‖ p(y))) with p(y) the mean of the rows; `probs` is n × `classes`.
/// Terms with p(y|x) = 0 contribute 0.
pub fn inception_score(probs: &[f32], classes: usize) -> Result<f64> {
    if classes == 0 || probs.is_empty() || !probs.len().is_multiple_of(classes) {
        bail!(
            "{} probabilities are not whole rows of {classes}",
            probs.len()
        );
    }
    let n = probs.len() / classes;
    let mut marginal = vec![0.0f64; classes];
    for row in probs.chunks_exact(classes) {
        for (m, &p) in marginal.iter_mut().zip(row) {
            *m += p as f64 / n as f64;
        }
    }
    let mut kl = 0.0f64;
    for row in probs.chunks_exact(classes) {
        for (&p, &m) in row.iter().zip(&marginal) {
            if p > 0.0 {
                let p = p as f64;
                kl += p * (p.ln() - m.ln());
            }
        }
    }
    Ok((kl / n as f64).exp())
}

/// The classifier's figures for one set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct SetFigures {
    /// Images.
    pub n: usize,
    /// Fréchet distance of the features to the reference set's.
    pub fid: f64,
    /// Inception-Score analog.
    pub inception_score: f64,
    /// Share labelled with top probability > [`CONFIDENT_PROB`].
    pub confident: f64,
    /// Labels per class.
    pub histogram: [usize; CLASSES],
}

/// Share with top probability above [`CONFIDENT_PROB`] and the histogram of the top labels of
/// n × [`CLASSES`] probabilities.
pub fn labels_summary(probs: &[f32]) -> (f64, [usize; CLASSES]) {
    let mut hist = [0usize; CLASSES];
    let mut confident = 0usize;
    let rows = probs.chunks_exact(CLASSES);
    let n = rows.len();
    for row in rows {
        let (k, &p) = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("CLASSES > 0");
        hist[k] += 1;
        if p > CONFIDENT_PROB {
            confident += 1;
        }
    }
    (confident as f64 / n.max(1) as f64, hist)
}

/// All figures of `images` (u8, n×28×28) against the reference feature statistics.
pub fn set_figures(
    clf: &Classifier,
    images: &[u8],
    reference: &FeatureStats,
) -> Result<SetFigures> {
    let feats = clf.features(images);
    let stats = FeatureStats::from_rows(&feats, FEATURES)?;
    let probs = clf.probabilities(images);
    let (confident, histogram) = labels_summary(&probs);
    Ok(SetFigures {
        n: stats.n,
        fid: frechet_distance(&stats, reference)?,
        inception_score: inception_score(&probs, CLASSES)?,
        confident,
        histogram,
    })
}

/// Draws the samples `draws` asks for from the f32 model file `bytes` ([`crate::draw::draw_host`] after
/// one parse of each file). With `guide` = (model file, w) every network output is guided by
/// that weaker model.
pub fn draw_samples(
    bytes: &[u8],
    guide: Option<(&[u8], f32)>,
    draws: super::Draws<'_>,
    done: &(dyn Fn() + Sync),
) -> Result<Vec<f32>> {
    let file = ModelFile::parse(bytes).map_err(|e| anyhow!("{e}"))?;
    let host = HostModel::from_file(&file).map_err(|e| anyhow!("{e}"))?;
    let guide = match guide {
        Some((g, w)) => Some((
            HostModel::from_bytes(g).map_err(|e| anyhow!("guide: {e}"))?,
            w,
        )),
        None => None,
    };
    crate::draw::draw_host(&host, guide.as_ref().map(|(g, w)| (g, *w)), draws, done)
}

/// Feature statistics of u8 images (n×28×28) under the classifier.
pub fn image_stats(clf: &Classifier, images: &[u8]) -> Result<FeatureStats> {
    FeatureStats::from_rows(&clf.features(images), FEATURES)
        .context("classifier features of the reference images")
}

/// Moves statistics to the CPU (they are small; keeps later arithmetic on one device).
pub fn to_cpu(s: FeatureStats) -> FeatureStats {
    FeatureStats {
        n: s.n,
        mean: s.mean.to_device(Device::Cpu),
        cov: s.cov.to_device(Device::Cpu),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inception_score_hand_cases() {
        // Two certain, different labels: p(y) = (½, ½), each KL = ln 2, score 2.
        let two = [1.0f32, 0.0, 0.0, 1.0];
        assert!((inception_score(&two, 2).unwrap() - 2.0).abs() < 1e-12);
        // Identical rows: p(y|x) = p(y), score 1.
        let same = [0.3f32, 0.7, 0.3, 0.7];
        assert!((inception_score(&same, 2).unwrap() - 1.0).abs() < 1e-12);
        // (½, ½) and (1, 0): p(y) = (¾, ¼); KL₁ = ½ln(⅔) + ½ln 2 = ½ln(4/3), KL₂ = ln(4/3);
        // mean ¾·ln(4/3), score (4/3)^¾. f32 inputs are exact here; f64 arithmetic: 1e-12.
        let mixed = [0.5f32, 0.5, 1.0, 0.0];
        let want = (4.0f64 / 3.0).powf(0.75);
        assert!((inception_score(&mixed, 2).unwrap() - want).abs() < 1e-12);
        assert!(inception_score(&[0.5, 0.5, 1.0], 2).is_err());
    }

    #[test]
    fn confident_share_and_histogram() {
        let mut p = vec![0.0f32; 3 * CLASSES];
        p[3] = 0.95; // image 0: label 3, confident
        p[6] = 0.05;
        p[CLASSES + 7] = 0.9; // image 1: label 7, exactly 0.9 is not above the threshold
        p[CLASSES + 1] = 0.1;
        p[2 * CLASSES + 7] = 0.6; // image 2: label 7
        p[2 * CLASSES] = 0.4;
        let (share, hist) = labels_summary(&p);
        assert!((share - 1.0 / 3.0).abs() < 1e-15);
        let mut want = [0usize; CLASSES];
        want[3] = 1;
        want[7] = 2;
        assert_eq!(hist, want);
    }

    /// Random features with a spread of variances and a few constant (dead) dimensions, as the
    /// classifier's ReLU features have.
    fn features(n: usize, d: usize, seed: i64) -> Vec<f32> {
        tch::manual_seed(seed);
        let scale = Tensor::linspace(0.01, 3.0, d as i64, (Kind::Float, Device::Cpu));
        let x = (Tensor::randn([n as i64, d as i64], (Kind::Float, Device::Cpu)) * scale)
            .relu()
            .matmul(&Tensor::randn(
                [d as i64, d as i64],
                (Kind::Float, Device::Cpu),
            ));
        let mut v = Vec::<f32>::try_from(x.contiguous().view([-1])).unwrap();
        for row in v.chunks_exact_mut(d) {
            row[0] = 0.0;
            row[d - 1] = 1.5;
        }
        v
    }

    #[test]
    fn frechet_distance_of_a_set_with_itself_is_zero() {
        // The mean term is exactly 0. The trace term subtracts Tr(Σ^½ Σ Σ^½)^½ = Tr Σ computed
        // through two eigendecompositions: each eigenvalue λ of a d×d symmetric matrix comes
        // out within about d·ε·λ_max, and a square root turns an error δ on a tiny eigenvalue
        // into at most √δ. Summed over d eigenvalues and doubled: |FD| ≤ 2·d·√(d·ε)·λ_max.
        // The rank-deficient case (50 vectors in 128 dimensions, 78 zero eigenvalues) is the
        // one that approaches it: measured 1% of the bound; full rank: below 1e-5 of it.
        for (n, d) in [(500usize, 16usize), (50, 128), (2000, 128)] {
            let s = FeatureStats::from_rows(&features(n, d, n as i64), d).unwrap();
            let fd = frechet_distance(&s, &s).unwrap();
            let lambda_max = s.cov.linalg_eigvalsh("L").max().double_value(&[]);
            let bound = 2.0 * d as f64 * (d as f64 * f64::EPSILON).sqrt() * lambda_max;
            eprintln!("n {n} d {d}: FD(X, X) = {fd:.3e}, bound {bound:.3e}");
            assert!(fd.abs() <= bound, "n {n} d {d}: {fd} > {bound}");
        }
    }

    #[test]
    fn frechet_distance_of_diagonal_gaussians_is_the_closed_form() {
        // Diagonal covariances commute: FD = Σ(μ₁ − μ₂)² + Σ(σ₁ − σ₂)².
        let mu1 = [0.0f64, 1.0, -2.0, 0.5];
        let mu2 = [1.0f64, 1.0, 0.0, 0.25];
        let var1 = [1.0f64, 4.0, 0.25, 9.0];
        let var2 = [4.0f64, 1.0, 0.25, 0.01];
        let diag = |v: &[f64]| {
            let mut m = vec![0.0; v.len() * v.len()];
            for (i, x) in v.iter().enumerate() {
                m[i * v.len() + i] = *x;
            }
            m
        };
        let want: f64 = mu1
            .iter()
            .zip(&mu2)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            + var1
                .iter()
                .zip(&var2)
                .map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2))
                .sum::<f64>();
        let a = FeatureStats::new(&mu1, &diag(&var1)).unwrap();
        let b = FeatureStats::new(&mu2, &diag(&var2)).unwrap();
        let fd = frechet_distance(&a, &b).unwrap();
        // Eigendecompositions of well-conditioned 4×4 matrices: a few ulp of the traces (~14).
        const CLOSED_FORM_TOL: f64 = 1e-12;
        assert!((fd - want).abs() < CLOSED_FORM_TOL, "{fd} vs {want}");
        // The distance is invariant under a common rotation of both Gaussians, which makes the
        // covariances non-diagonal.
        tch::manual_seed(11);
        let q = Tensor::linalg_qr(
            &Tensor::randn([4, 4], (Kind::Double, Device::Cpu)),
            "reduced",
        )
        .0;
        let rot = |s: &FeatureStats| FeatureStats {
            n: 0,
            mean: q.matmul(&s.mean),
            cov: q.matmul(&s.cov).matmul(&q.tr()),
        };
        let fd_rot = frechet_distance(&rot(&a), &rot(&b)).unwrap();
        // The rotation adds a few ulp to every entry; the smallest eigenvalue of Σ₁^½Σ₂Σ₁^½ is
        // 0.0625, so its square root moves by at most δ/(2·0.25): 1e-11 is still far tighter
        // than any real error (a wrong formula is off by O(1)).
        const ROTATED_TOL: f64 = 1e-11;
        assert!((fd_rot - want).abs() < ROTATED_TOL, "{fd_rot} vs {want}");
    }
}
