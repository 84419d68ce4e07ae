//! Inpainting by RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion
//! Probabilistic Models"): the sampler runs as usual, and after every step the pixels that are
//! known are replaced by the forward process's sample of the known image at the step's noise
//! level, `√ᾱ·x0_known + √(1−ᾱ)·z` (the clean image itself after the last step). With
//! resampling, each block of `jump` steps is walked `resample` times: at the end of a pass the
//! image is noised back to the level the block started from (the forward process over the
//! block, `√(ᾱ_to/ᾱ_from)·x + √(1 − ᾱ_to/ᾱ_from)·z`) and the block is stepped again, which lets
//! the drawn pixels agree with the known ones (the paper's U and j).
//!
//! The walk is one [`Move`] list ([`Resampling::moves`]) that every implementation follows;
//! the driver [`inpaint_batch`] runs it on any [`Network`] over caller-owned buffers (no heap:
//! the mask and the known image are the caller's), so the firmware's executor inpaints too.
//! It works with every sampler of [`SamplerConfig`]: a multistep solver's history is saved at
//! the start of a block that will be walked again and restored on the way back.

use crate::diffusion::driver::{step, Network};
use crate::diffusion::noise::GaussianNoise;
use crate::diffusion::plan::Plan;
use crate::diffusion::schedule::Schedule;
use crate::diffusion::steps::SamplerConfig;
use crate::error::{check_len, Error, Result};

/// RePaint's resampling: each block of `jump` consecutive steps of the sampler's plan is walked
/// `resample` times (U in the paper; 1: no resampling, one pass per step as in plain
/// sampling), jumping back over the block between passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resampling {
    /// Passes over each block (U ≥ 1).
    pub resample: u32,
    /// Steps per block (j ≥ 1).
    pub jump: u32,
}

impl Resampling {
    /// No resampling: the known pixels are pasted after every step, and each step runs once.
    pub const NONE: Self = Self {
        resample: 1,
        jump: 1,
    };

    /// Errors unless both counts are at least 1.
    pub fn validate(&self) -> Result<()> {
        if self.resample == 0 {
            return Err(Error::InvalidConfig(
                "RePaint: resample (passes per block) must be at least 1",
            ));
        }
        if self.jump == 0 {
            return Err(Error::InvalidConfig(
                "RePaint: jump (steps per block) must be at least 1",
            ));
        }
        Ok(())
    }

    /// The walk over `plan` (a copy of it: the walk owns what it needs, so a caller can keep
    /// it between moves).
    pub fn moves(&self, plan: &Plan) -> Moves {
        Moves {
            plan: *plan,
            r: *self,
            start: 0,
            next: 0,
            pass: 0,
            saved: false,
        }
    }

    /// Network evaluations of the walk over a plan of `steps` steps: every block of `jump`
    /// steps (the last one possibly shorter) `resample` times.
    pub fn passes(&self, steps: usize) -> usize {
        steps * self.resample.max(1) as usize
    }
}

impl Default for Resampling {
    fn default() -> Self {
        Self::NONE
    }
}

/// One move of the RePaint walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// A block that will be walked again starts here: keep the sampler's history as it is.
    Save,
    /// Step `k` of the plan, then the known pixels at that step's previous timestep.
    Step(usize),
    /// Back over the block: the image, at the noise level after the block (`from`: a
    /// timestep, `None` after the last step, where ᾱ = 1), is noised forward to the level of
    /// timestep `to`, and the history goes back to what [`Move::Save`] kept.
    Back {
        /// Timestep of the image's current noise level (`None`: clean).
        from: Option<u32>,
        /// Timestep of the level noised to.
        to: u32,
    },
}

/// The moves of [`Resampling::moves`], in order.
#[derive(Debug, Clone)]
pub struct Moves {
    plan: Plan,
    r: Resampling,
    /// First step of the current block.
    start: usize,
    /// Next step of the current pass.
    next: usize,
    /// Passes over the current block done.
    pass: u32,
    /// Whether this block's history has been saved.
    saved: bool,
}

impl Iterator for Moves {
    type Item = Move;
    fn next(&mut self) -> Option<Move> {
        let steps = self.plan.len();
        let jump = self.r.jump.max(1) as usize;
        loop {
            if self.start >= steps {
                return None;
            }
            let end = (self.start + jump).min(steps);
            if self.r.resample > 1 && !self.saved {
                self.saved = true;
                return Some(Move::Save);
            }
            if self.next < end {
                self.next += 1;
                return Some(Move::Step(self.next - 1));
            }
            if self.pass + 1 < self.r.resample {
                self.pass += 1;
                self.next = self.start;
                let (_, from) = self.plan.step(end - 1)?;
                let (to, _) = self.plan.step(self.start)?;
                return Some(Move::Back { from, to });
            }
            self.start = end;
            self.next = end;
            self.pass = 0;
            self.saved = false;
        }
    }
}

/// The known pixels at the noise level of timestep `level` (`None`: the clean image): where
/// the mask is `m ≠ 0`, `x ← m·x_known + (1 − m)·x` (`x_known` itself where m = 1) with
/// `x_known = √ᾱ·known + √(1−ᾱ)·z(i)` at a timestep and `known` after the last step; `z` is
/// called only where m ≠ 0 and the level is a timestep, in element order. Where m = 0, x is
/// left alone, so an all-zero mask leaves sampling as it was, noise draws included.
pub fn paste_known<const M: usize>(
    sched: &Schedule<M>,
    level: Option<u32>,
    known: &[f32],
    mask: &[f32],
    x: &mut [f32],
    mut z: impl FnMut(usize) -> f32,
) -> Result<()> {
    check_len("known image", x.len(), known.len())?;
    check_len("mask", x.len(), mask.len())?;
    let scale = match level {
        Some(t) if t as usize >= sched.len() => {
            return Err(Error::InvalidConfig("RePaint: timestep past the schedule"))
        }
        Some(t) => {
            let a = sched.alphas_cumprod()[t as usize];
            Some((libm::sqrtf(a), libm::sqrtf(1.0 - a)))
        }
        None => None,
    };
    for (i, ((xv, &k), &m)) in x.iter_mut().zip(known).zip(mask).enumerate() {
        if m == 0.0 {
            continue;
        }
        let xk = match scale {
            Some((sa, s1a)) => sa * k + s1a * z(i),
            None => k,
        };
        *xv = if m == 1.0 {
            xk
        } else {
            m * xk + (1.0 - m) * *xv
        };
    }
    Ok(())
}

/// Noises `x` forward from the level of timestep `from` (`None`: clean, ᾱ = 1) to the level
/// of the later timestep `to`: `x ← √(ᾱ_to/ᾱ_from)·x + √(1 − ᾱ_to/ᾱ_from)·z(i)`, one draw per
/// element in element order.
pub fn jump_back<const M: usize>(
    sched: &Schedule<M>,
    from: Option<u32>,
    to: u32,
    x: &mut [f32],
    mut z: impl FnMut(usize) -> f32,
) -> Result<()> {
    if to as usize >= sched.len() || from.is_some_and(|f| f >= to) {
        return Err(Error::InvalidConfig(
            "RePaint: a jump back must go to a later timestep within the schedule",
        ));
    }
    let a_from = sched.alpha_bar_or_one(from.map(|f| f as usize));
    let ratio = sched.alphas_cumprod()[to as usize] / a_from;
    let (keep, add) = (libm::sqrtf(ratio), libm::sqrtf((1.0 - ratio).max(0.0)));
    for (i, xv) in x.iter_mut().enumerate() {
        *xv = keep * *xv + add * z(i);
    }
    Ok(())
}

/// The hidden parts a caller can name: a half of the image or its centre. [`MaskShape::fill`]
/// writes the mask (1 kept, 0 hidden), one definition for the trainer and the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskShape {
    /// Rows `0..h/2` hidden.
    Top,
    /// Rows `h/2..h` hidden.
    Bottom,
    /// Columns `0..w/2` hidden.
    Left,
    /// Columns `w/2..w` hidden.
    Right,
    /// The middle square, rows `h/4..h/4 + h/2` and columns `w/4..w/4 + w/2`, hidden.
    Center,
}

impl MaskShape {
    /// Every shape, in the order of their names.
    pub const ALL: [MaskShape; 5] = [
        MaskShape::Top,
        MaskShape::Bottom,
        MaskShape::Left,
        MaskShape::Right,
        MaskShape::Center,
    ];

    /// `top`, `bottom`, `left`, `right` or `center`.
    pub const fn name(self) -> &'static str {
        match self {
            MaskShape::Top => "top",
            MaskShape::Bottom => "bottom",
            MaskShape::Left => "left",
            MaskShape::Right => "right",
            MaskShape::Center => "center",
        }
    }

    /// The shape called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether pixel (`y`, `x`) of an `h`×`w` image is hidden.
    pub const fn hides(self, y: usize, x: usize, h: usize, w: usize) -> bool {
        match self {
            MaskShape::Top => y < h / 2,
            MaskShape::Bottom => y >= h / 2,
            MaskShape::Left => x < w / 2,
            MaskShape::Right => x >= w / 2,
            MaskShape::Center => y >= h / 4 && y < h / 4 + h / 2 && x >= w / 4 && x < w / 4 + w / 2,
        }
    }

    /// Writes the mask of every channel of a `[c][h][w]` image into `keep` (1.0 kept, 0.0
    /// hidden); `keep.len()` must be a multiple of `h·w`.
    pub fn fill(self, h: usize, w: usize, keep: &mut [f32]) -> Result<()> {
        if h == 0 || w == 0 || !keep.len().is_multiple_of(h * w) {
            return Err(Error::InvalidConfig(
                "a mask shape fills whole h×w channels",
            ));
        }
        for (i, k) in keep.iter_mut().enumerate() {
            let p = i % (h * w);
            *k = if self.hides(p / w, p % w, h, w) {
                0.0
            } else {
                1.0
            };
        }
        Ok(())
    }
}

/// What an inpainting run knows: the known image (in the model's range, nominally [−1, 1]) and
/// the mask (1 where the known image is kept, 0 where the model draws; values in between blend)
/// each as one image shared by the whole batch or one per image, and the resampling.
#[derive(Debug, Clone, Copy)]
pub struct Inpainting<'a> {
    known: &'a [f32],
    mask: &'a [f32],
    resampling: Resampling,
}

impl<'a> Inpainting<'a> {
    /// Checks that the mask's values lie in [0, 1], the known image's are finite, the two have
    /// one length and the resampling counts are at least 1.
    pub fn new(known: &'a [f32], mask: &'a [f32], resampling: Resampling) -> Result<Self> {
        resampling.validate()?;
        check_len("mask", known.len(), mask.len())?;
        if mask.iter().any(|m| !(0.0..=1.0).contains(m)) {
            return Err(Error::InvalidConfig(
                "inpainting mask values must lie in [0, 1] (1: keep, 0: draw)",
            ));
        }
        if known.iter().any(|k| !k.is_finite()) {
            return Err(Error::InvalidConfig(
                "the known image holds a value that is not finite",
            ));
        }
        Ok(Self {
            known,
            mask,
            resampling,
        })
    }

    /// The resampling.
    pub fn resampling(&self) -> Resampling {
        self.resampling
    }

    /// The sampler history [`inpaint_batch`] needs for a batch of `batch_len` elements: the
    /// sampler's own ([`SamplerConfig::history_len`]), twice over when blocks are walked
    /// again (the second half keeps the saved copy).
    pub fn history_len(&self, cfg: &SamplerConfig, batch_len: usize) -> usize {
        let h = cfg.history_len(batch_len);
        if self.resampling.resample > 1 {
            2 * h
        } else {
            h
        }
    }

    /// What this run knows of image `i` of a batch of `n` images of `len` elements alone (its
    /// known image and mask, the same resampling), to draw that image by itself.
    pub fn of_image(&self, i: usize, n: usize, len: usize) -> Result<Inpainting<'a>> {
        let (known, mask) = self.image(i, n, len)?;
        Ok(Self {
            known,
            mask,
            resampling: self.resampling,
        })
    }

    /// The known image and mask of image `i` of a batch of `n` images of `len` elements.
    fn image(&self, i: usize, n: usize, len: usize) -> Result<(&'a [f32], &'a [f32])> {
        let count = if self.known.len() == len {
            1
        } else if self.known.len() == n * len {
            n
        } else {
            return Err(Error::BufferSize {
                what: "known image (one image, or one per image of the batch)",
                needed: len,
                got: self.known.len(),
            });
        };
        let at = (i % count) * len;
        Ok((&self.known[at..][..len], &self.mask[at..][..len]))
    }
}

/// Inpaints `noise.len()` images into `x` (`[n][image]`) with `net`: fills image `i` with
/// N(0, 1) noise from `noise[i]`, then follows `inp`'s RePaint walk over the sampler's plan
/// ([`Resampling::moves`]): every step as [`crate::diffusion::step`] does it, then the known
/// pixels ([`paste_known`]), and the jumps back ([`jump_back`]), each image drawing its noise
/// from its own generator (the step's, then the known pixels', in element order). After the
/// last step the kept pixels (mask 1) equal the known image exactly. `history` is
/// `inp.history_len(cfg, x.len())` long ([`Inpainting::history_len`]). With an all-zero mask
/// and no resampling the result equals [`crate::diffusion::sample_batch_with_history`]'s bit
/// for bit.
pub fn inpaint_batch<N: Network + ?Sized, const M: usize>(
    net: &mut N,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    inp: &Inpainting<'_>,
    noise: &mut [GaussianNoise],
    x: &mut [f32],
    history: &mut [f32],
) -> Result<()> {
    let len = net.image_len();
    let n = noise.len();
    check_len("image", n * len, x.len())?;
    let plan = Plan::new(cfg, sched.len() as u32)?;
    check_len(
        "inpainting history (the sampler's, twice over when resampling)",
        inp.history_len(cfg, x.len()),
        history.len(),
    )?;
    for i in 0..n {
        inp.image(i, n, len)?;
    }
    for (img, g) in x.chunks_exact_mut(len).zip(noise.iter_mut()) {
        g.fill(img);
    }
    for mv in inp.resampling.moves(&plan) {
        apply_move(net, sched, cfg, &plan, mv, Some(inp), noise, x, history)?;
    }
    Ok(())
}

/// Carries out one move of a RePaint walk over `plan` on the batch `x` (`[n][image]`, image
/// `i` drawing its noise from `noise[i]`), as [`inpaint_batch`] does move by move, for callers
/// that look at the images between steps: [`Move::Step`] is the sampler's step
/// ([`crate::diffusion::step`]) followed, when `inp` is given, by the known pixels at the
/// step's previous level ([`paste_known`]); [`Move::Save`] and [`Move::Back`] keep and restore
/// the sampler's history and noise the images back ([`jump_back`]). `history` is
/// [`Inpainting::history_len`] long (the sampler's history, then the saved copy); without
/// `inp` the walk is plain sampling ([`Resampling::NONE`]'s moves are the plan's steps) and
/// `history` the sampler's own.
#[allow(clippy::too_many_arguments)]
pub fn apply_move<N: Network + ?Sized, const M: usize>(
    net: &mut N,
    sched: &Schedule<M>,
    cfg: &SamplerConfig,
    plan: &Plan,
    mv: Move,
    inp: Option<&Inpainting<'_>>,
    noise: &mut [GaussianNoise],
    x: &mut [f32],
    history: &mut [f32],
) -> Result<()> {
    let (len, n) = (net.image_len(), noise.len());
    check_len("image", n * len, x.len())?;
    let own = cfg.history_len(x.len());
    let (hist, saved) = history.split_at_mut(own.min(history.len()));
    match mv {
        Move::Save => saved
            .get_mut(..own)
            .ok_or(SHORT_SAVED)?
            .copy_from_slice(hist),
        Move::Step(k) => {
            step(net, sched, cfg, plan, k, noise, x, hist)?;
            if let Some(inp) = inp {
                let (_, prev) = plan
                    .step(k)
                    .ok_or(Error::InvalidConfig("step index past the plan"))?;
                for (i, (img, g)) in x.chunks_exact_mut(len).zip(noise.iter_mut()).enumerate() {
                    let (known, mask) = inp.image(i, n, len)?;
                    paste_known(sched, prev, known, mask, img, |_| g.next_gaussian())?;
                }
            }
        }
        Move::Back { from, to } => {
            hist.copy_from_slice(saved.get(..own).ok_or(SHORT_SAVED)?);
            for (img, g) in x.chunks_exact_mut(len).zip(noise.iter_mut()) {
                jump_back(sched, from, to, img, |_| g.next_gaussian())?;
            }
        }
    }
    Ok(())
}

/// A walk that goes back over a block needs room for the saved history.
const SHORT_SAVED: Error = Error::InvalidConfig(
    "RePaint: resampling needs the sampler history twice over (the second copy is the saved one)",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::steps::{DdimConfig, Spacing};
    use crate::diffusion::ScheduleConfig;
    use std::vec::Vec;

    fn ddim(steps: u32) -> SamplerConfig {
        SamplerConfig::Ddim(DdimConfig {
            steps,
            spacing: Spacing::Leading,
            ..DdimConfig::default()
        })
    }

    #[test]
    fn the_walk_without_resampling_is_the_plan() {
        let plan = Plan::new(&ddim(5), 300).unwrap();
        let moves: Vec<Move> = Resampling::NONE.moves(&plan).collect();
        assert_eq!(moves, (0..5).map(Move::Step).collect::<Vec<_>>());
    }

    #[test]
    fn resampling_walks_each_block_again_after_jumping_back() {
        // 5 steps of DDIM (leading, T = 300): t = 240, 180, 120, 60, 0.
        let plan = Plan::new(&ddim(5), 300).unwrap();
        let r = Resampling {
            resample: 2,
            jump: 2,
        };
        let moves: Vec<Move> = r.moves(&plan).collect();
        use Move::*;
        let want = [
            Save,
            Step(0),
            Step(1),
            Back {
                from: Some(120),
                to: 240,
            },
            Step(0),
            Step(1),
            Save,
            Step(2),
            Step(3),
            Back {
                from: Some(0),
                to: 120,
            },
            Step(2),
            Step(3),
            Save,
            Step(4),
            Back { from: None, to: 0 },
            Step(4),
        ];
        assert_eq!(moves, want);
        assert_eq!(
            moves.iter().filter(|m| matches!(m, Step(_))).count(),
            r.passes(plan.len())
        );
    }

    #[test]
    fn known_pixels_follow_the_forward_process_and_are_exact_at_the_end() {
        let sched: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
        let known = [0.5f32, -0.25, 1.0, -1.0];
        let mask = [1.0f32, 0.0, 0.5, 1.0];
        let mut x = [9.0f32; 4];
        let mut drawn = 0;
        paste_known(&sched, None, &known, &mask, &mut x, |_| {
            drawn += 1;
            0.0
        })
        .unwrap();
        assert_eq!(drawn, 0, "the clean image needs no noise");
        assert_eq!(x, [0.5, 9.0, 0.5 * 1.0 + 0.5 * 9.0, -1.0]);
        let a = sched.alphas_cumprod()[100];
        let mut x = [9.0f32; 4];
        let mut calls = [false; 4];
        paste_known(&sched, Some(100), &known, &mask, &mut x, |i| {
            calls[i] = true;
            2.0
        })
        .unwrap();
        assert_eq!(
            calls,
            [true, false, true, true],
            "noise only where the mask keeps"
        );
        let xk = |k: f32| libm::sqrtf(a) * k + libm::sqrtf(1.0 - a) * 2.0;
        assert_eq!(x[0], xk(0.5));
        assert_eq!(x[1], 9.0);
        assert_eq!(x[3], xk(-1.0));
        assert!(paste_known(&sched, Some(300), &known, &mask, &mut x, |_| 0.0).is_err());
        assert!(paste_known(&sched, None, &known[..3], &mask, &mut x, |_| 0.0).is_err());
    }

    #[test]
    fn jumping_back_is_the_forward_process_over_the_block() {
        let sched: Schedule = Schedule::new(&ScheduleConfig::default()).unwrap();
        let acp = sched.alphas_cumprod();
        let mut x = [0.5f32, -1.0];
        jump_back(&sched, Some(10), 50, &mut x, |i| [1.0, -2.0][i]).unwrap();
        let r = acp[50] / acp[10];
        assert_eq!(x[0], libm::sqrtf(r) * 0.5 + libm::sqrtf(1.0 - r));
        assert_eq!(x[1], -libm::sqrtf(r) - 2.0 * libm::sqrtf(1.0 - r));
        let mut y = [0.5f32];
        jump_back(&sched, None, 0, &mut y, |_| 1.0).unwrap();
        assert_eq!(y[0], libm::sqrtf(acp[0]) * 0.5 + libm::sqrtf(1.0 - acp[0]));
        for (from, to) in [(Some(50), 50), (Some(60), 50), (None, 300)] {
            assert!(jump_back(&sched, from, to, &mut y, |_| 0.0).is_err());
        }
    }

    #[test]
    fn mask_shapes_hide_what_they_name() {
        let mut keep = [0.0f32; 16];
        let hidden = |m: MaskShape, keep: &mut [f32; 16]| -> Vec<usize> {
            m.fill(4, 4, keep).unwrap();
            (0..16).filter(|&i| keep[i] == 0.0).collect()
        };
        assert_eq!(
            hidden(MaskShape::Top, &mut keep),
            (0..8).collect::<Vec<_>>()
        );
        assert_eq!(
            hidden(MaskShape::Bottom, &mut keep),
            (8..16).collect::<Vec<_>>()
        );
        assert_eq!(
            hidden(MaskShape::Left, &mut keep),
            [0, 1, 4, 5, 8, 9, 12, 13]
        );
        assert_eq!(
            hidden(MaskShape::Right, &mut keep),
            [2, 3, 6, 7, 10, 11, 14, 15]
        );
        assert_eq!(hidden(MaskShape::Center, &mut keep), [5, 6, 9, 10]);
        for m in MaskShape::ALL {
            assert_eq!(MaskShape::from_name(m.name()), Some(m));
        }
        assert!(MaskShape::Top.fill(4, 4, &mut [0.0; 15]).is_err());
    }

    #[test]
    fn bad_inpainting_inputs_are_refused() {
        let ok = [0.0f32; 4];
        assert!(Inpainting::new(&ok, &ok, Resampling::NONE).is_ok());
        assert!(Inpainting::new(&ok, &ok[..3], Resampling::NONE).is_err());
        assert!(Inpainting::new(&ok, &[0.0, 1.5, 0.0, 0.0], Resampling::NONE).is_err());
        assert!(Inpainting::new(&ok, &[0.0, f32::NAN, 0.0, 0.0], Resampling::NONE).is_err());
        assert!(Inpainting::new(&[f32::INFINITY, 0.0, 0.0, 0.0], &ok, Resampling::NONE).is_err());
        for (resample, jump) in [(0, 1), (1, 0)] {
            assert!(Inpainting::new(&ok, &ok, Resampling { resample, jump }).is_err());
        }
    }
}
