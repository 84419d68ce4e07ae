use super::*;

/// Plain 3×3 padding-1 convolution over channels-last maps, accumulated in f64.
fn direct(input: &[f32], g: Geometry, w: &[f32], bias: &[f32], ci: usize, co: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; g.n * g.h * g.w * co];
    for b in 0..g.n {
        for y in 0..g.h {
            for x in 0..g.w {
                for o in 0..co {
                    let mut acc = bias[o] as f64;
                    for i in 0..ci {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (yy, xx) = (y as isize + ky - 1, x as isize + kx - 1);
                                if yy < 0 || xx < 0 || yy >= g.h as isize || xx >= g.w as isize {
                                    continue;
                                }
                                let p = ((b * g.h + yy as usize) * g.w + xx as usize) * ci + i;
                                acc += input[p] as f64
                                    * w[(o * ci + i) * 9 + (ky * 3 + kx) as usize] as f64;
                            }
                        }
                    }
                    out[((b * g.h + y) * g.w + x) * co + o] = acc as f32;
                }
            }
        }
    }
    out
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut g = crate::GaussianNoise::new(seed);
    (0..n).map(|_| g.next_gaussian()).collect()
}

/// max |a − b| / max |b|.
fn rel(a: &[f32], b: &[f32]) -> f32 {
    let s = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / s
}

/// Winograd against an f64 direct convolution: odd and even sizes (partial tiles and
/// panels), channel counts that are not multiples of 8 or 16, batches; both tile sizes,
/// both the SIMD and the portable kernels. The sums have up to 9·in = 405 terms; measured
/// errors: F2 ≤ 2.8e-7 and F4 ≤ 3.3e-6 of the largest output (F4's transform coefficients,
/// up to 8 and 1/24, cost it about ten times more rounding); the bounds are about 3× that.
/// A wrong tap or channel gives errors of order 1.
/// Every tile size, each with the SIMD and the portable kernels.
const FLAVOURS: [(Tile, bool); 4] = [
    (Tile::F2, true),
    (Tile::F2, false),
    (Tile::F4, true),
    (Tile::F4, false),
];

#[test]
fn matches_direct_convolution() {
    let tol = |tile| if tile == Tile::F2 { 1e-6 } else { 1e-5 };
    for (n, h, w, ci, co, seed) in [
        (1, 28, 28, 16, 16, 1),
        (2, 7, 5, 17, 19, 2),
        (3, 1, 1, 45, 33, 3),
        (1, 9, 14, 8, 40, 4),
        (2, 2, 3, 24, 16, 5),
    ] {
        for (tile, simd) in FLAVOURS {
            let g = Geometry::new(n, h, w, tile);
            let input = values(n * h * w * ci, seed);
            let wt = values(co * ci * 9, seed + 100);
            let bias = values(co, seed + 200);
            let want = direct(&input, g, &wt, &bias, ci, co);
            let conv = WinogradConv::new(&wt, &bias, ci, co, tile);
            let mut out = vec![f32::NAN; want.len()];
            let epi = Epilogue {
                relu: false,
                add: None,
            };
            conv.run(
                &input,
                g,
                epi,
                &mut WinogradScratch::default(),
                &mut out,
                simd,
            );
            let e = rel(&out, &want);
            #[cfg(feature = "std")]
            std::println!("{tile:?} {n}×{h}×{w}, {ci}→{co}, simd {simd}: {e:.2e}");
            assert!(
                e <= tol(tile),
                "{tile:?} {n}×{h}×{w}, {ci}→{co}, simd {simd}: {e}"
            );
        }
    }
}

/// The SIMD and portable kernels, any split of the tile rows and the epilogue: the split
/// runs equal the whole run bit for bit, and ReLU + addition match their definition.
#[test]
fn row_splits_and_epilogue() {
    let (n, h, w, ci, co) = (2, 11, 10, 20, 24);
    let input = values(n * h * w * ci, 7);
    let wt = values(co * ci * 9, 8);
    let bias = values(co, 9);
    let add = values(n * co, 10);
    for (tile, simd) in FLAVOURS {
        let g = Geometry::new(n, h, w, tile);
        let conv = WinogradConv::new(&wt, &bias, ci, co, tile);
        let mut plain = vec![0.0f32; n * h * w * co];
        let none = Epilogue {
            relu: false,
            add: None,
        };
        conv.run(&input, g, none, &mut Default::default(), &mut plain, simd);
        let epi = Epilogue {
            relu: true,
            add: Some(&add),
        };
        let mut whole = vec![0.0f32; plain.len()];
        conv.run(&input, g, epi, &mut Default::default(), &mut whole, simd);
        for (i, (&got, &p)) in whole.iter().zip(&plain).enumerate() {
            let b = i / (h * w * co);
            let want = p.max(0.0) + add[b * co + i % co];
            assert_eq!(got, want, "index {i}");
        }
        for cut in (1..g.tile_rows()).step_by(2) {
            let mut split = vec![0.0f32; plain.len()];
            let (r0, r1) = (0..cut, cut..g.tile_rows());
            let o0 = g.out_rows(r0.clone());
            let (a, b) = split.split_at_mut(o0.len() * w * co);
            conv.run_rows(&input, g, r0, epi, &mut Default::default(), a, simd);
            conv.run_rows(&input, g, r1, epi, &mut Default::default(), b, simd);
            assert_eq!(split, whole, "{tile:?}, cut {cut}, simd {simd}");
        }
    }
}
