//! Splitting a layer's rows over threads (feature `threads`: the network's persistent
//! [`Workers`], [`crate::kernels::pool`]), and row kernels written once in portable Rust and
//! compiled twice (plain, and with AVX2 + FMA enabled).

use core::ops::Range;

use crate::kernels::winograd::Geometry;

/// The threads a layer's parts run on: the network's worker pool (feature `threads`).
#[cfg(feature = "threads")]
pub(crate) type Workers = crate::kernels::pool::Pool;

/// The threads a layer's parts run on: none besides the caller's without feature `threads`.
#[cfg(not(feature = "threads"))]
#[derive(Clone, Debug)]
pub(crate) struct Workers;

#[cfg(not(feature = "threads"))]
impl Workers {
    /// No pool: every part runs on the caller's thread.
    pub(crate) fn new(_threads: usize) -> Self {
        Workers
    }
}

/// `0..total` cut into `parts` contiguous near-equal ranges.
#[cfg(feature = "threads")]
pub(crate) fn split_range(total: usize, parts: usize, p: usize) -> Range<usize> {
    p * total / parts..(p + 1) * total / parts
}

/// Computes the rows `r` of a layer into `out` (those rows only), with `scratch`.
pub(crate) type RowsFn<'a, S> = dyn Fn(Range<usize>, &mut S, &mut [f32]) + Sync + 'a;

/// Runs `f(rows, scratch, out_part)` over `rows` rows cut into at most `scratch.len()`
/// contiguous ranges ([`split_range`]), one per thread (feature `threads`; one range
/// otherwise). `len_of(r)` is how many values of `out` the rows `r` own; the ranges own
/// consecutive parts of `out` (callers that write into their scratch instead pass an empty
/// `out` and `len_of` = 0).
pub(crate) fn run_split<S: Send>(
    workers: &Workers,
    rows: usize,
    out: &mut [f32],
    scratch: &mut [S],
    len_of: &(dyn Fn(Range<usize>) -> usize + Sync),
    f: &RowsFn<'_, S>,
) {
    #[cfg(feature = "threads")]
    let parts = scratch.len().min(rows).max(1);
    #[cfg(feature = "threads")]
    if parts > 1 {
        let mut rest = out;
        let mut bodies = alloc::vec::Vec::with_capacity(parts);
        for (p, sc) in scratch.iter_mut().enumerate().take(parts) {
            let r = split_range(rows, parts, p);
            let (mine, tail) = core::mem::take(&mut rest).split_at_mut(len_of(r.clone()));
            rest = tail;
            bodies.push(move || f(r.clone(), sc, mine));
        }
        let mut jobs: alloc::vec::Vec<crate::kernels::pool::Job<'_>> = bodies
            .iter_mut()
            .map(|b| b as crate::kernels::pool::Job<'_>)
            .collect();
        workers.run(&mut jobs);
        return;
    }
    let _ = (len_of, workers);
    f(0..rows, &mut scratch[0], out);
}

/// One image of a batch through a network: `f(i, activations, scratch, out_i)`, free to split
/// its layers over `scratch.len()` threads.
pub(crate) type ImageFn<'a, A, S> = dyn Fn(usize, &mut A, &mut [S], &mut [f32]) + Sync + 'a;

/// Runs `one` over `n` images whose outputs are the consecutive `len`-value parts of `out`.
/// With several threads (feature `threads`: `acts` and `scratch` hold one set per thread) and
/// several images, the images are shared out in contiguous runs, one thread per run with its
/// own activations and scratch; otherwise they run one after the other on this thread, each
/// with all the scratch (so a single image's layers can be split).
pub(crate) fn run_images<A: Send, S: Send>(
    workers: &Workers,
    n: usize,
    len: usize,
    acts: &mut [A],
    scratch: &mut [S],
    out: &mut [f32],
    one: &ImageFn<'_, A, S>,
) {
    #[cfg(feature = "threads")]
    {
        let parts = scratch.len().min(acts.len()).min(n);
        if parts > 1 {
            let mut rest = out;
            let mut bodies = alloc::vec::Vec::with_capacity(parts);
            for (p, (a, sc)) in acts
                .iter_mut()
                .zip(scratch.iter_mut())
                .enumerate()
                .take(parts)
            {
                let r = split_range(n, parts, p);
                let (mine, tail) = core::mem::take(&mut rest).split_at_mut(r.len() * len);
                rest = tail;
                bodies.push(move || {
                    for (i, o) in r.clone().zip(mine.chunks_exact_mut(len)) {
                        one(i, a, core::slice::from_mut(sc), o);
                    }
                });
            }
            let mut jobs: alloc::vec::Vec<crate::kernels::pool::Job<'_>> = bodies
                .iter_mut()
                .map(|b| b as crate::kernels::pool::Job<'_>)
                .collect();
            workers.run(&mut jobs);
            return;
        }
    }
    let _ = workers;
    for (i, o) in out.chunks_exact_mut(len).enumerate().take(n) {
        one(i, &mut acts[0], scratch, o);
    }
}

/// A layer whose output rows are computed independently: `rows_impl` is written once, in
/// portable Rust, and compiled twice by [`dispatch_rows`] (plain, and with AVX2 + FMA enabled).
pub(crate) trait RowKernel: Sized {
    /// Input and output channels (of `g.n · g.h · g.w` pixels each).
    fn channels(&self) -> (usize, usize);

    /// Output rows `rows` of the `g`-shaped input `x` into `out` (those rows only).
    fn rows_impl(&self, x: &[f32], g: Geometry, rows: Range<usize>, out: &mut [f32]);

    /// Output rows `rows` (numbered `b·h + y`) into `out` (those rows only), after checking
    /// the lengths; `simd` allows the AVX2 + FMA build ([`dispatch_rows`]).
    fn run_rows(&self, x: &[f32], g: Geometry, rows: Range<usize>, out: &mut [f32], simd: bool) {
        let (in_c, out_c) = self.channels();
        assert!(x.len() >= g.n * g.h * g.w * in_c);
        assert!(out.len() >= rows.len() * g.w * out_c && rows.end <= g.n * g.h);
        dispatch_rows(self, x, g, rows, out, simd);
    }
}

/// Runs `k.rows_impl` compiled for AVX2 + FMA when `simd` asks for it and the CPU has both,
/// otherwise the portable build.
pub(crate) fn dispatch_rows<K: RowKernel>(
    k: &K,
    x: &[f32],
    g: Geometry,
    rows: Range<usize>,
    out: &mut [f32],
    simd: bool,
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if simd && crate::kernels::simd::avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { rows_avx2(k, x, g, rows, out) };
    }
    let _ = simd;
    k.rows_impl(x, g, rows, out);
}

/// [`RowKernel::rows_impl`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<K: RowKernel>(
    k: &K,
    x: &[f32],
    g: Geometry,
    rows: Range<usize>,
    out: &mut [f32],
) {
    k.rows_impl(x, g, rows, out);
}
