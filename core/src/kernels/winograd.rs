//! Winograd F(2×2, 3×3) convolution (Lavin & Gray 2015, "Fast Algorithms for Convolutional
//! Neural Networks"): each 2×2 output tile comes from a 4×4 input tile with 16 multiplies per
//! (input, output) channel pair instead of 36, i.e. 2.25× fewer. With
//! `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`,
//! `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]` and `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`:
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`. Summed over input channels, the element-wise products
//! become 16 independent GEMMs `M[ξ] = U[ξ] · V[ξ]` (U: transformed weights, out × in; V:
//! transformed input tiles, in × tiles).
//!
//! Activations are channels-last (`[n][h][w][c]`), so every transform runs along contiguous
//! channels. The tiles of a batch are numbered row of tiles by row of tiles across images and
//! processed in chunks of a few tile rows: the chunk's transformed inputs (`V`, in panels of
//! 6 tiles) stay in the L2 cache while a register-blocked micro-kernel multiplies them by the
//! weights of 16 output channels at a time (packed once at construction); the (m + 2)² products of
//! a block go straight through the output transform, the bias, the ReLU and a per-image
//! per-channel addition (the time embedding) into the output. Every output value depends only on
//! its own tile, so the result is the same for any batch size, chunking or thread split.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

/// Output channels per micro-kernel block: two 8-lane vectors.
pub(crate) const OB: usize = 16;
/// Tiles per micro-kernel panel (its broadcast rows): 6 × 2 accumulators + 2 weight vectors +
/// 1 broadcast fill 15 of the 16 AVX registers.
pub(crate) const TP: usize = 6;
/// Tiles per chunk (at least one tile row): with 128 input channels the chunk's transformed
/// inputs take 16·48·128·4 B = 393 KB, within a 512 KB L2.
const CHUNK_TILES: usize = 48;

/// Output tile side: F(2×2, 3×3) or F(4×4, 3×3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// F(2×2, 3×3): 4×4 input tiles, 16 products, 2.25× fewer multiplies than direct.
    F2,
    /// F(4×4, 3×3): 6×6 input tiles, 36 products, 4× fewer multiplies than direct, with larger
    /// transform coefficients (up to 8 in Aᵀ, 5 in Bᵀ, 1/24 in G), hence larger rounding errors.
    F4,
}

impl Tile {
    /// Output tile side m.
    pub fn m(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }
    /// Products per tile, (m + 2)².
    pub fn products(self) -> usize {
        (self.m() + 2) * (self.m() + 2)
    }
}

/// Sizes of a batch of maps and their m×m tiling.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    /// Images.
    pub n: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    m: usize,
    th: usize,
    tw: usize,
}

impl Geometry {
    /// `n` maps of `h×w` cut into `tile` output tiles.
    pub fn new(n: usize, h: usize, w: usize, tile: Tile) -> Self {
        let m = tile.m();
        Self {
            n,
            h,
            w,
            m,
            th: h.div_ceil(m),
            tw: w.div_ceil(m),
        }
    }

    /// Rows of tiles in the whole batch (numbered `b·⌈h/m⌉ + ty`).
    pub fn tile_rows(&self) -> usize {
        self.n * self.th
    }

    /// The output rows (numbered `b·h + y` across the batch) that the tile rows `r` cover; they
    /// are contiguous, so a slice of a channels-last map holds them.
    pub fn out_rows(&self, r: Range<usize>) -> Range<usize> {
        let first = |tr: usize| (tr / self.th) * self.h + self.m * (tr % self.th);
        if r.is_empty() {
            let s = first(r.start.min(self.tile_rows().saturating_sub(1)));
            return s..s;
        }
        let last = r.end - 1;
        let end = (last / self.th) * self.h + (self.m * (last % self.th) + self.m).min(self.h);
        first(r.start)..end
    }
}

/// What follows the convolution, per output value: `v = conv + bias`, then `max(v, 0)` when
/// `relu`, then `+ add[image][channel]`.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    /// Apply ReLU.
    pub relu: bool,
    /// Per-image per-channel values added last (`[n][out_c]`).
    pub add: Option<&'a [f32]>,
}

/// The arguments of one [`WinogradConv::run_rows`] call that its kernel instances share: the
/// input, its geometry, the tile rows to compute and the epilogue.
struct Job<'a> {
    input: &'a [f32],
    g: Geometry,
    rows: Range<usize>,
    epi: Epilogue<'a>,
}

/// A 3×3 stride-1 padding-1 convolution with weights transformed and packed once.
#[derive(Clone)]
pub struct WinogradConv {
    tile: Tile,
    in_c: usize,
    out_c: usize,
    oblocks: usize,
    /// `[oblock][ξ][in][OB]` (ξ < (m + 2)²), zero for the padding channels of the last block.
    u: Vec<f32>,
    /// `[oblocks·OB]`, zero-padded.
    bias: Vec<f32>,
}

/// Scratch of [`WinogradConv::run_rows`]: transformed inputs and products of one chunk.
#[derive(Clone, Default)]
pub struct WinogradScratch {
    v: Vec<f32>,
    m: Vec<f32>,
    zeros: Vec<f32>,
}

fn transform_weight(g: &[f32]) -> [f32; 16] {
    // G g: 4×3.
    let mut gg = [0.0f32; 12];
    for c in 0..3 {
        let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
        gg[c] = g0;
        gg[3 + c] = 0.5 * (g0 + g1 + g2);
        gg[6 + c] = 0.5 * (g0 - g1 + g2);
        gg[9 + c] = g2;
    }
    // (G g) Gᵀ: 4×4.
    let mut u = [0.0f32; 16];
    for r in 0..4 {
        let (a, b, c) = (gg[r * 3], gg[r * 3 + 1], gg[r * 3 + 2]);
        u[r * 4] = a;
        u[r * 4 + 1] = 0.5 * (a + b + c);
        u[r * 4 + 2] = 0.5 * (a - b + c);
        u[r * 4 + 3] = c;
    }
    u
}

/// F(4×4, 3×3) weight transform `G g Gᵀ` with Lavin & Gray's
/// `G = [[¼,0,0],[−⅙,−⅙,−⅙],[−⅙,⅙,−⅙],[1/24,1/12,⅙],[1/24,−1/12,⅙],[0,0,1]]`, computed in f64
/// and rounded once.
fn transform_weight4(g: &[f32]) -> [f32; 36] {
    let gm = |r: usize, a: f64, b: f64, c: f64| -> f64 {
        match r {
            0 => a / 4.0,
            1 => -(a + b + c) / 6.0,
            2 => -(a - b + c) / 6.0,
            3 => a / 24.0 + b / 12.0 + c / 6.0,
            4 => a / 24.0 - b / 12.0 + c / 6.0,
            _ => c,
        }
    };
    let mut gg = [0.0f64; 18];
    for c in 0..3 {
        for r in 0..6 {
            gg[r * 3 + c] = gm(r, g[c] as f64, g[3 + c] as f64, g[6 + c] as f64);
        }
    }
    let mut u = [0.0f32; 36];
    for r in 0..6 {
        for c in 0..6 {
            u[r * 6 + c] = gm(c, gg[r * 3], gg[r * 3 + 1], gg[r * 3 + 2]) as f32;
        }
    }
    u
}

/// One F(4×4, 3×3) `Bᵀ` stage on six values, Lavin & Gray's
/// `Bᵀ = [[4,0,−5,0,1,0],[0,−4,−4,1,1,0],[0,4,−4,−1,1,0],[0,−2,−1,2,1,0],[0,2,−1,−2,1,0],
/// [0,4,0,−5,0,1]]`.
#[inline(always)]
fn bt4(d: [f32; 6]) -> [f32; 6] {
    let [d0, d1, d2, d3, d4, d5] = d;
    let (a, b) = (d4 - 4.0 * d2, d3 - 4.0 * d1);
    let (c, e) = (d4 - d2, 2.0 * (d3 - d1));
    [
        4.0 * d0 - 5.0 * d2 + d4,
        a + b,
        a - b,
        c + e,
        c - e,
        4.0 * d1 - 5.0 * d3 + d5,
    ]
}

/// A separable F(4×4, 3×3) transform of a 6×6 tile for `L` channels: the one-dimensional
/// `stage` (six values in, `K` out) over the columns, then over the rows of the result, giving
/// `K×K` values row-major (`x[6r + c]`: the tile's value at row r, column c).
#[inline(always)]
fn separable6<const L: usize, const K: usize>(
    x: &[[f32; L]],
    y: &mut [[f32; L]],
    stage: impl Fn([f32; 6]) -> [f32; K],
) {
    let (x, y) = (&x[..36], &mut y[..K * K]);
    let mut t = [[0.0f32; L]; 36];
    for c in 0..6 {
        for l in 0..L {
            let col = stage(core::array::from_fn(|r| x[6 * r + c][l]));
            for r in 0..K {
                t[6 * r + c][l] = col[r];
            }
        }
    }
    for r in 0..K {
        for l in 0..L {
            let row = stage(core::array::from_fn(|c| t[6 * r + c][l]));
            for c in 0..K {
                y[K * r + c][l] = row[c];
            }
        }
    }
}

/// F(4×4, 3×3) `Bᵀ d B` for `L` channels (`x[6r + c]`: the pixel at row r, column c).
#[inline(always)]
fn input_transform4<const L: usize>(x: &[[f32; L]], v: &mut [[f32; L]]) {
    separable6(x, v, bt4);
}

/// One F(4×4, 3×3) `Aᵀ` stage, `Aᵀ = [[1,1,1,1,1,0],[0,1,−1,2,−2,0],[0,1,1,4,4,0],
/// [0,1,−1,8,−8,1]]`.
#[inline(always)]
fn at4(m: [f32; 6]) -> [f32; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (a, b) = (m1 + m2, m3 + m4);
    let (c, e) = (m1 - m2, m3 - m4);
    [m0 + a + b, c + 2.0 * e, a + 4.0 * b, c + 8.0 * e + m5]
}

/// F(4×4, 3×3) `Aᵀ M A` for `L` channels: the 16 outputs, row-major.
#[inline(always)]
fn output_transform4<const L: usize>(m: &[[f32; L]], y: &mut [[f32; L]]) {
    separable6(m, y, at4);
}

/// F(2×2, 3×3) `Bᵀ d B` for `L` channels at once (`x[4r + c]` is the tile's pixel at row r,
/// column c).
#[inline(always)]
fn input_transform2<const L: usize>(x: &[[f32; L]], v: &mut [[f32; L]]) {
    let (x, v) = (&x[..16], &mut v[..16]);
    let mut t = [[0.0f32; L]; 16];
    for c in 0..4 {
        for l in 0..L {
            let (d0, d1, d2, d3) = (x[c][l], x[4 + c][l], x[8 + c][l], x[12 + c][l]);
            t[c][l] = d0 - d2;
            t[4 + c][l] = d1 + d2;
            t[8 + c][l] = d2 - d1;
            t[12 + c][l] = d1 - d3;
        }
    }
    for r in 0..4 {
        for l in 0..L {
            let (t0, t1, t2, t3) = (
                t[4 * r][l],
                t[4 * r + 1][l],
                t[4 * r + 2][l],
                t[4 * r + 3][l],
            );
            v[4 * r][l] = t0 - t2;
            v[4 * r + 1][l] = t1 + t2;
            v[4 * r + 2][l] = t2 - t1;
            v[4 * r + 3][l] = t1 - t3;
        }
    }
}

/// F(2×2, 3×3) `Aᵀ M A` for `L` channels at once: the tile's outputs (0,0), (0,1), (1,0),
/// (1,1).
#[inline(always)]
fn output_transform2<const L: usize>(m: &[[f32; L]], y: &mut [[f32; L]]) {
    let (m, y) = (&m[..16], &mut y[..4]);
    let mut ta = [[0.0f32; L]; 4];
    let mut tb = [[0.0f32; L]; 4];
    for c in 0..4 {
        for l in 0..L {
            let (m0, m1, m2, m3) = (m[c][l], m[4 + c][l], m[8 + c][l], m[12 + c][l]);
            ta[c][l] = m0 + m1 + m2;
            tb[c][l] = m1 - m2 - m3;
        }
    }
    for (r, t) in [&ta, &tb].into_iter().enumerate() {
        for l in 0..L {
            y[2 * r][l] = t[0][l] + t[1][l] + t[2][l];
            y[2 * r + 1][l] = t[1][l] - t[2][l] - t[3][l];
        }
    }
}

/// The micro-kernel, portable form: `m[j][o] = Σ_k u[k][o] · v[j][k]` for the [`TP`] tiles `j`
/// of a panel and the [`OB`] channels `o` of a block.
#[inline(always)]
fn kernel_portable(k: usize, u: &[f32], v: &[f32], m: &mut [f32]) {
    let (u, v, m) = (&u[..k * OB], &v[..TP * k], &mut m[..TP * OB]);
    let mut acc = [[0.0f32; OB]; TP];
    for kk in 0..k {
        let w = &u[kk * OB..(kk + 1) * OB];
        for (j, a) in acc.iter_mut().enumerate() {
            let b = v[j * k + kk];
            for (a, &w) in a.iter_mut().zip(w) {
                *a += w * b;
            }
        }
    }
    for (dst, a) in m.chunks_exact_mut(OB).zip(&acc) {
        dst.copy_from_slice(a);
    }
}

/// The micro-kernel with AVX2 and FMA: the same sums as [`kernel_portable`] (each one FMA
/// chain over k in the same order, so every tile's result is independent of its neighbours).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(k: usize, u: &[f32], v: &[f32], m: &mut [f32]) {
    use core::arch::x86_64::*;
    assert!(u.len() >= k * OB && v.len() >= TP * k && m.len() >= TP * OB);
    let up = u.as_ptr();
    // SAFETY: j·k ≤ (TP − 1)·k, inside `v` (asserted above); these are the panel's tile rows.
    let [v0, v1, v2, v3, v4, v5]: [*const f32; TP] =
        core::array::from_fn(|j| unsafe { v.as_ptr().add(j * k) });
    let z = _mm256_setzero_ps();
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
    let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
    for kk in 0..k {
        // SAFETY: kk < k, so u[kk·OB .. kk·OB + 16] and v[j·k + kk] (j < TP) lie inside the
        // slices, whose lengths the assertion above checked.
        unsafe {
            let a0 = _mm256_loadu_ps(up.add(kk * OB));
            let a1 = _mm256_loadu_ps(up.add(kk * OB + 8));
            // One broadcast tile value times both weight vectors, for each tile row.
            macro_rules! rows {
                ($($v:ident => $lo:ident, $hi:ident);*) => {$(
                    let b = _mm256_broadcast_ss(&*$v.add(kk));
                    $lo = _mm256_fmadd_ps(a0, b, $lo);
                    $hi = _mm256_fmadd_ps(a1, b, $hi);
                )*};
            }
            rows!(v0 => c00, c01; v1 => c10, c11; v2 => c20, c21;
                  v3 => c30, c31; v4 => c40, c41; v5 => c50, c51);
        }
    }
    let mp = m.as_mut_ptr();
    // SAFETY: m holds at least TP·OB = 96 values (asserted above); the stores cover 0..96.
    unsafe {
        for (j, (lo, hi)) in [
            (c00, c01),
            (c10, c11),
            (c20, c21),
            (c30, c31),
            (c40, c41),
            (c50, c51),
        ]
        .into_iter()
        .enumerate()
        {
            _mm256_storeu_ps(mp.add(j * OB), lo);
            _mm256_storeu_ps(mp.add(j * OB + 8), hi);
        }
    }
}

impl WinogradConv {
    /// From a Conv2d kernel `[out, in, 3, 3]` and bias `[out]`, with output tiles `tile`.
    pub fn new(weight: &[f32], bias: &[f32], in_c: usize, out_c: usize, tile: Tile) -> Self {
        let oblocks = out_c.div_ceil(OB);
        let nx = tile.products();
        let mut u = vec![0.0f32; oblocks * nx * in_c * OB];
        for o in 0..out_c {
            let (ob, l) = (o / OB, o % OB);
            for i in 0..in_c {
                let g = &weight[(o * in_c + i) * 9..][..9];
                let (t2, t4);
                let t: &[f32] = match tile {
                    Tile::F2 => {
                        t2 = transform_weight(g);
                        &t2
                    }
                    Tile::F4 => {
                        t4 = transform_weight4(g);
                        &t4
                    }
                };
                for (xi, v) in t.iter().enumerate() {
                    u[((ob * nx + xi) * in_c + i) * OB + l] = *v;
                }
            }
        }
        let mut b = vec![0.0f32; oblocks * OB];
        b[..out_c].copy_from_slice(&bias[..out_c]);
        Self {
            tile,
            in_c,
            out_c,
            oblocks,
            u,
            bias: b,
        }
    }

    /// The output tile size.
    pub fn tile(&self) -> Tile {
        self.tile
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.in_c
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.out_c
    }

    /// The whole batch: `out = epilogue(bias + W ∗ input)` for channels-last `input`
    /// (`[n][h][w][in]`) and `out` (`[n][h][w][out]`).
    pub fn run(
        &self,
        input: &[f32],
        g: Geometry,
        epi: Epilogue<'_>,
        scratch: &mut WinogradScratch,
        out: &mut [f32],
        simd: bool,
    ) {
        self.run_rows(input, g, 0..g.tile_rows(), epi, scratch, out, simd);
    }

    /// The tile rows `rows` of the batch only; `out` holds exactly the output rows
    /// [`Geometry::out_rows`] of them (channels-last). `simd` allows the AVX2 + FMA kernels
    /// when the CPU has them.
    #[allow(clippy::too_many_arguments)]
    pub fn run_rows(
        &self,
        input: &[f32],
        g: Geometry,
        rows: Range<usize>,
        epi: Epilogue<'_>,
        scratch: &mut WinogradScratch,
        out: &mut [f32],
        simd: bool,
    ) {
        assert!(input.len() >= g.n * g.h * g.w * self.in_c);
        assert!(out.len() >= g.out_rows(rows.clone()).len() * g.w * self.out_c);
        assert!(rows.end <= g.tile_rows() && g.m == self.tile.m());
        if let Some(a) = epi.add {
            assert!(a.len() >= g.n * self.out_c);
        }
        let job = Job {
            input,
            g,
            rows,
            epi,
        };
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if simd && crate::kernels::simd::avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { self.run_rows_avx2(job, scratch, out) };
        }
        let _ = simd;
        match self.tile {
            Tile::F2 => self.run_rows_impl::<false, 2, 4, 16>(job, scratch, out),
            Tile::F4 => self.run_rows_impl::<false, 4, 6, 36>(job, scratch, out),
        }
    }

    /// [`Self::run_rows_impl`] compiled for AVX2 + FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_rows_avx2(&self, job: Job<'_>, scratch: &mut WinogradScratch, out: &mut [f32]) {
        match self.tile {
            Tile::F2 => self.run_rows_impl::<true, 2, 4, 16>(job, scratch, out),
            Tile::F4 => self.run_rows_impl::<true, 4, 6, 36>(job, scratch, out),
        }
    }

    /// One instance per kernel flavour and tile: output tile side `M`, input tile side `A`,
    /// `NX` = A² products.
    #[inline(always)]
    fn run_rows_impl<const AVX: bool, const M: usize, const A: usize, const NX: usize>(
        &self,
        job: Job<'_>,
        s: &mut WinogradScratch,
        out: &mut [f32],
    ) {
        let Job {
            input,
            g,
            rows,
            epi,
        } = job;
        let ci = self.in_c;
        let chunk_rows = (CHUNK_TILES / g.tw).max(1);
        let out_row0 = g.out_rows(rows.clone()).start;
        if s.zeros.len() < ci {
            s.zeros.resize(ci, 0.0);
        }
        let mut r = rows.start;
        while r < rows.end {
            let re = (r + chunk_rows).min(rows.end);
            let tiles = (re - r) * g.tw;
            let panels = tiles.div_ceil(TP);
            let padded = panels * TP;
            if s.v.len() < NX * padded * ci {
                s.v.resize(NX * padded * ci, 0.0);
            }
            if s.m.len() < NX * padded * OB {
                s.m.resize(NX * padded * OB, 0.0);
            }
            self.transform_inputs::<M, A, NX>(input, g, r..re, &mut s.v, &s.zeros);
            // Padding tiles of the last panel: zeros, so the kernel reads defined values (their
            // products are never stored).
            for t in tiles..padded {
                let (p, j) = (t / TP, t % TP);
                for xi in 0..NX {
                    s.v[((p * NX + xi) * TP + j) * ci..][..ci].fill(0.0);
                }
            }
            for ob in 0..self.oblocks {
                let u_ob = &self.u[ob * NX * ci * OB..][..NX * ci * OB];
                for xi in 0..NX {
                    let u = &u_ob[xi * ci * OB..][..ci * OB];
                    for p in 0..panels {
                        let v = &s.v[(p * NX + xi) * TP * ci..][..TP * ci];
                        let m = &mut s.m[(xi * padded + p * TP) * OB..][..TP * OB];
                        if AVX {
                            #[cfg(all(feature = "std", target_arch = "x86_64"))]
                            // SAFETY: AVX is true only in the instance called from
                            // `run_rows_avx2`, which runs only on CPUs with AVX2 and FMA.
                            unsafe {
                                kernel_avx2(ci, u, v, m)
                            };
                        } else {
                            kernel_portable(ci, u, v, m);
                        }
                    }
                }
                self.finish_block::<M, NX>(ob, g, r..re, &s.m, padded, epi, out, out_row0);
            }
            r = re;
        }
    }

    /// Writes `V[panel][ξ][j][channel]` for the tiles of the tile rows `rows`.
    #[inline(always)]
    fn transform_inputs<const M: usize, const A: usize, const NX: usize>(
        &self,
        input: &[f32],
        g: Geometry,
        rows: Range<usize>,
        v: &mut [f32],
        zeros: &[f32],
    ) {
        let ci = self.in_c;
        let (h, w) = (g.h as isize, g.w as isize);
        for (t, (tr, tx)) in rows
            .flat_map(|tr| (0..g.tw).map(move |tx| (tr, tx)))
            .enumerate()
        {
            let (b, ty) = (tr / g.th, tr % g.th);
            let image = &input[b * g.h * g.w * ci..][..g.h * g.w * ci];
            let mut d: [&[f32]; NX] = [&zeros[..ci]; NX];
            for (q, dq) in d.iter_mut().enumerate() {
                let y = (M * ty + q / A) as isize - 1;
                let x = (M * tx + q % A) as isize - 1;
                if y >= 0 && y < h && x >= 0 && x < w {
                    *dq = &image[(y as usize * g.w + x as usize) * ci..][..ci];
                }
            }
            let (p, j) = (t / TP, t % TP);
            let dst = &mut v[p * NX * TP * ci..][..NX * TP * ci];
            let mut k = 0;
            while k + 8 <= ci {
                let mut x = [[0.0f32; 8]; NX];
                for (xq, dq) in x.iter_mut().zip(&d) {
                    xq.copy_from_slice(&dq[k..k + 8]);
                }
                let mut y = [[0.0f32; 8]; NX];
                if M == 2 {
                    input_transform2(&x, &mut y);
                } else {
                    input_transform4(&x, &mut y);
                }
                for (xi, yv) in y.iter().enumerate() {
                    dst[(xi * TP + j) * ci + k..][..8].copy_from_slice(yv);
                }
                k += 8;
            }
            for k in k..ci {
                let mut x = [[0.0f32; 1]; NX];
                for (xq, dq) in x.iter_mut().zip(&d) {
                    xq[0] = dq[k];
                }
                let mut y = [[0.0f32; 1]; NX];
                if M == 2 {
                    input_transform2(&x, &mut y);
                } else {
                    input_transform4(&x, &mut y);
                }
                for (xi, yv) in y.iter().enumerate() {
                    dst[(xi * TP + j) * ci + k] = yv[0];
                }
            }
        }
    }

    /// Output transform, bias and epilogue of output-channel block `ob` for the tile rows
    /// `rows`, whose products lie in `m` (`[ξ][padded tiles][OB]`).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn finish_block<const M: usize, const NX: usize>(
        &self,
        ob: usize,
        g: Geometry,
        rows: Range<usize>,
        m: &[f32],
        padded: usize,
        epi: Epilogue<'_>,
        out: &mut [f32],
        out_row0: usize,
    ) {
        let co = self.out_c;
        let o0 = ob * OB;
        let width = OB.min(co - o0);
        let mut bias = [0.0f32; OB];
        bias.copy_from_slice(&self.bias[o0..o0 + OB]);
        for (t, (tr, tx)) in rows
            .flat_map(|tr| (0..g.tw).map(move |tx| (tr, tx)))
            .enumerate()
        {
            let (b, ty) = (tr / g.th, tr % g.th);
            let mut mm = [[0.0f32; OB]; NX];
            for (xi, a) in mm.iter_mut().enumerate() {
                a.copy_from_slice(&m[(xi * padded + t) * OB..][..OB]);
            }
            let mut y = [[0.0f32; OB]; 16];
            if M == 2 {
                output_transform2(&mm, &mut y);
            } else {
                output_transform4(&mm, &mut y);
            }
            let mut add = [0.0f32; OB];
            if let Some(a) = epi.add {
                add[..width].copy_from_slice(&a[b * co + o0..][..width]);
            }
            for (q, yv) in y.iter().enumerate().take(M * M) {
                let (yy, xx) = (M * ty + q / M, M * tx + q % M);
                if yy >= g.h || xx >= g.w {
                    continue;
                }
                let mut val = [0.0f32; OB];
                for l in 0..OB {
                    let mut v = bias[l] + yv[l];
                    if epi.relu && v < 0.0 {
                        v = 0.0;
                    }
                    val[l] = v + add[l];
                }
                let row = b * g.h + yy - out_row0;
                let dst = &mut out[(row * g.w + xx) * co + o0..][..width];
                if width == OB {
                    // A fixed-size copy: stays two vector stores instead of a memcpy call.
                    let dst: &mut [f32; OB] = dst.try_into().expect("width is OB");
                    *dst = val;
                } else {
                    dst.copy_from_slice(&val[..width]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
