//! Winograd F(2×2, 3×3) convolution (Lavin & Gray 2015, "Fast Algorithms for Convolutional
//! Neural Networks"): each 2×2 output tile comes from a 4×4 input tile with 16 multiplies per
//! (input, output) channel pair instead of 36, i.e. 2.25× fewer. With
//! `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`,
//! `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]` and `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`:
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`. Summed over input channels, the element-wise products
//! become 16 independent GEMMs `M[ξ] = U[ξ] · V[ξ]` (U: transformed weights, out × in; V:
//! transformed input tiles, in × tiles), run here with `matrixmultiply`.

use alloc::vec;
use alloc::vec::Vec;

/// A 3×3 stride-1 padding-1 convolution with weights transformed once at construction.
#[derive(Clone)]
pub struct WinogradConv {
    in_c: usize,
    out_c: usize,
    /// `[16][out][in]`.
    u: Vec<f32>,
    bias: Vec<f32>,
}

/// Scratch of [`WinogradConv::run`]: transformed inputs and products.
#[derive(Clone, Default)]
pub struct WinogradScratch {
    v: Vec<f32>,
    m: Vec<f32>,
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

impl WinogradConv {
    /// From a Conv2d kernel `[out, in, 3, 3]` and bias `[out]`.
    pub fn new(weight: &[f32], bias: &[f32], in_c: usize, out_c: usize) -> Self {
        let mut u = vec![0.0f32; 16 * out_c * in_c];
        for o in 0..out_c {
            for i in 0..in_c {
                let t = transform_weight(&weight[(o * in_c + i) * 9..][..9]);
                for (xi, v) in t.iter().enumerate() {
                    u[(xi * out_c + o) * in_c + i] = *v;
                }
            }
        }
        Self {
            in_c,
            out_c,
            u,
            bias: bias.to_vec(),
        }
    }

    /// `out = bias + W ∗ input` for a batch of `n` maps of `h×w` (`input` `[n][in][h][w]`,
    /// `out` `[n][out][h][w]`).
    pub fn run(
        &self,
        input: &[f32],
        n: usize,
        h: usize,
        w: usize,
        scratch: &mut WinogradScratch,
        out: &mut [f32],
    ) {
        let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
        let tiles = n * th * tw;
        let (ci, co) = (self.in_c, self.out_c);
        scratch.v.resize(16 * ci * tiles, 0.0);
        scratch.m.resize(16 * co * tiles, 0.0);
        let plane = h * w;
        // Input transform: V[ξ][i][p] = (Bᵀ d B)[ξ]. Bᵀ is applied down whole padded rows
        // (vectorisable), then B across each tile's four columns.
        let wp = 2 * tw + 2;
        let mut rows = [
            vec![0.0f32; wp],
            vec![0.0f32; wp],
            vec![0.0f32; wp],
            vec![0.0f32; wp],
        ];
        let mut t = [
            vec![0.0f32; wp],
            vec![0.0f32; wp],
            vec![0.0f32; wp],
            vec![0.0f32; wp],
        ];
        let v = &mut scratch.v;
        for b in 0..n {
            for i in 0..ci {
                let src = &input[(b * ci + i) * plane..][..plane];
                for ty in 0..th {
                    // Padded input rows 2ty−1 … 2ty+2, column x at index x + 1.
                    for (r, row) in rows.iter_mut().enumerate() {
                        let y = (2 * ty + r) as isize - 1;
                        row.fill(0.0);
                        if y >= 0 && y < h as isize {
                            row[1..1 + w].copy_from_slice(&src[y as usize * w..][..w]);
                        }
                    }
                    let [r0, r1, r2, r3] = &rows;
                    let [t0, t1, t2, t3] = &mut t;
                    for x in 0..wp {
                        t0[x] = r0[x] - r2[x];
                        t1[x] = r1[x] + r2[x];
                        t2[x] = r2[x] - r1[x];
                        t3[x] = r1[x] - r3[x];
                    }
                    let base = (b * th + ty) * tw;
                    for (r, tr) in t.iter().enumerate() {
                        let outs: [&mut [f32]; 4] = {
                            let (v0, rest) =
                                v[((r * 4) * ci + i) * tiles..].split_at_mut(ci * tiles);
                            let (v1, rest) = rest.split_at_mut(ci * tiles);
                            let (v2, rest) = rest.split_at_mut(ci * tiles);
                            [
                                &mut v0[base..base + tw],
                                &mut v1[base..base + tw],
                                &mut v2[base..base + tw],
                                &mut rest[base..base + tw],
                            ]
                        };
                        for tx in 0..tw {
                            let c = &tr[2 * tx..2 * tx + 4];
                            outs[0][tx] = c[0] - c[2];
                            outs[1][tx] = c[1] + c[2];
                            outs[2][tx] = c[2] - c[1];
                            outs[3][tx] = c[1] - c[3];
                        }
                    }
                }
            }
        }
        // 16 GEMMs.
        for xi in 0..16 {
            let a = &self.u[xi * co * ci..][..co * ci];
            let bm = &scratch.v[xi * ci * tiles..][..ci * tiles];
            let c = &mut scratch.m[xi * co * tiles..][..co * tiles];
            crate::fast::sgemm(co, ci, tiles, a, bm, c, 0.0);
        }
        // Output transform: Y = Aᵀ M A, plus bias, then `epilogue(o, value)`. Aᵀ is applied
        // down the 16 product rows for a whole row of tiles at once (vectorisable), then A
        // across each tile.
        let m = &scratch.m;
        let mut tbuf = vec![0.0f32; 8 * tw];
        for b in 0..n {
            for o in 0..co {
                let dst = &mut out[(b * co + o) * plane..][..plane];
                let bias = self.bias[o];
                for ty in 0..th {
                    let base = (b * th + ty) * tw;
                    let row = |xi: usize| &m[(xi * co + o) * tiles + base..][..tw];
                    for c in 0..4 {
                        let (m0, m1, m2, m3) = (row(c), row(4 + c), row(8 + c), row(12 + c));
                        let (ta, tb) = tbuf.split_at_mut(4 * tw);
                        let ta = &mut ta[c * tw..(c + 1) * tw];
                        let tb = &mut tb[c * tw..(c + 1) * tw];
                        for tx in 0..tw {
                            ta[tx] = m0[tx] + m1[tx] + m2[tx];
                            tb[tx] = m1[tx] - m2[tx] - m3[tx];
                        }
                    }
                    for r in 0..2 {
                        let y = 2 * ty + r;
                        if y >= h {
                            continue;
                        }
                        let tr = &tbuf[r * 4 * tw..(r + 1) * 4 * tw];
                        let (a0, a1, a2, a3) = (
                            &tr[..tw],
                            &tr[tw..2 * tw],
                            &tr[2 * tw..3 * tw],
                            &tr[3 * tw..],
                        );
                        let drow = &mut dst[y * w..(y + 1) * w];
                        for tx in 0..tw {
                            let x = 2 * tx;
                            drow[x] = bias + (a0[tx] + a1[tx] + a2[tx]);
                            if x + 1 < w {
                                drow[x + 1] = bias + (a1[tx] - a2[tx] - a3[tx]);
                            }
                        }
                    }
                }
            }
        }
    }
}
