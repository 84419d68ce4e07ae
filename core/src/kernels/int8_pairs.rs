//! The host's int8 convolution kernels (feature `fast`): 3×3 padding-1 convs (stride 1 or 2,
//! optionally on a nearest ×2 up-sampled part of the input) computed with 16-bit pair
//! multiply-adds, the integers of the per-pixel loops bit for bit. Both networks' host int8
//! executors ([`crate::tiny_unet::fast_int8`], [`crate::simple_unet::fast_int8`]) run them.
//!
//! Each conv's weights are laid out once, at construction, as 16-bit pairs of neighbouring
//! input channels (`(w[o][2p][k], w[o][2p + 1][k])`); before a layer runs, its input map is
//! laid out as the same pairs, the zero point already taken off (`q − zp` fits 16 bits) and a
//! zero column on each side of every row (the padding), so that an output row of one channel
//! is `Σ` over kernel rows, channel pairs and taps of a pair-wise multiply-add of a shifted
//! input row with one broadcast weight pair: one AVX2 `vpmaddwd` per 8 output columns and 16
//! multiply-adds, where the CPU has AVX2 (detected at run time; with AVX-512 VNNI one `vpdpwssd`
//! per 16 columns does the multiply-add and the sum), the same loop over 8-lane arrays
//! elsewhere. Integer sums do not depend on their order (int32 arithmetic wraps, and no
//! pair's sum comes near `i32::MAX`: `|q − zp| ≤ 255` for int8 inputs, `|q| ≤ 32767` for the
//! SimpleUNet's int16 input, `|w| ≤ 128`), so every accumulator equals the per-pixel loop's
//! bit for bit; the callers requantize with their per-pixel executors' own functions.
//! Stride-2 layers keep each padded input row split into its even and odd columns, so their
//! taps read contiguous runs too.

use alloc::vec::Vec;

use crate::error::{Error, Result};

/// The loops that sum an output row
/// ([`FastInt8TinyUNet::set_kernel`](crate::tiny_unet::FastInt8TinyUNet::set_kernel)); all
/// give the same
/// integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Kernel {
    /// Plain loops over 8-lane arrays (any CPU).
    Portable,
    /// AVX2 `vpmaddwd` and `vpaddd` over 8 lanes.
    Avx2,
    /// AVX-512 VNNI `vpdpwssd` (multiply-add and sum in one instruction) over 16 lanes on rows
    /// wider than 16 columns, AVX2 on the others.
    Avx512Vnni,
}

impl Int8Kernel {
    /// Every kernel, slowest first.
    pub const ALL: [Self; 3] = [Self::Portable, Self::Avx2, Self::Avx512Vnni];

    /// Whether this CPU runs the kernel (detected at run time; x86-64 with `std` only).
    pub fn available(self) -> bool {
        match self {
            Self::Portable => true,
            Self::Avx2 => crate::kernels::simd::avx2_fma(),
            Self::Avx512Vnni => crate::kernels::simd::avx512_vnni(),
        }
    }

    /// `self`, or an error where this CPU lacks its instructions.
    pub fn checked(self) -> Result<Self> {
        if self.available() {
            Ok(self)
        } else {
            Err(Error::InvalidConfig(
                "this CPU lacks the instructions of that int8 kernel",
            ))
        }
    }

    /// Every kernel this CPU runs, slowest first (the portable loops everywhere).
    pub fn on_this_cpu() -> impl Iterator<Item = Self> {
        Self::ALL.into_iter().filter(|k| k.available())
    }

    /// The fastest kernel this CPU runs.
    pub fn best() -> Self {
        Self::on_this_cpu().last().unwrap_or(Self::Portable)
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable loops",
            Self::Avx2 => "AVX2",
            Self::Avx512Vnni => "AVX-512 VNNI",
        }
    }
}

/// Output columns per vector (eight int32 lanes).
pub(crate) const LANES: usize = 8;

/// Most vectors of one output row: output rows up to 32 columns.
pub(crate) const MAX_VECTORS: usize = 4;

/// A conv's channels and stride.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    pub(crate) in_c: usize,
    pub(crate) out_c: usize,
    pub(crate) stride: usize,
}

/// One conv with its weights as 16-bit pairs of neighbouring input channels: the up-sampled
/// channels (the first `up_c` of an up block's concatenation) paired among themselves, then the
/// others.
pub(crate) struct PackedConv {
    /// The conv's input and output channels and stride.
    pub(crate) shape: ConvShape,
    /// Up-sampled input channels.
    up_c: usize,
    /// Pairs of up-sampled channels, `⌈up_c / 2⌉`, and of the others, `⌈(in_c − up_c) / 2⌉`.
    up_pairs: usize,
    plain_pairs: usize,
    /// The other channels: `[out_c][3 (ky)][plain_pairs][3 (kx)]`, the pair's two weights as the
    /// low and high i16 halves (the high one 0 past the last channel).
    plain: Vec<u32>,
    /// The up-sampled channels, per output row parity: `[out_c][2 (y even, odd)][2 (upper,
    /// lower row)][up_pairs][2 (left, right tap)]`, each the even output columns' weight pair
    /// (low word) and the odd columns' (high word); see [`up_weights`].
    up: Vec<u64>,
}

/// Kernel rows summed per half row: an even output row reads its upper neighbouring full-res
/// row (one half row up) with kernel row 0 and its lower one (the same half row) with rows 1
/// and 2; an odd output row reads the upper (its own half row) with rows 0 and 1, the lower
/// (the next half row) with row 2.
const HALF_ROWS: [[&[usize]; 2]; 2] = [[&[0], &[1, 2]], [&[0, 1], &[2]]];

/// The phase weights of one half row with summed kernel row `s` (taps `s0, s1, s2`): an output
/// column `x` of an up-sampled input reads `u[x − 1]`, `u[x]`, `u[x + 1]` of the full-res row,
/// and `u[x]` equals `u[x + 1]` for even `x` and `u[x − 1]` for odd `x`, so even columns take
/// `s0` on the left tap and `s1 + s2` on the right one, odd columns `s0 + s1` and `s2`:
/// `[left, right]` as (even, odd) weights.
fn up_weights([s0, s1, s2]: [i32; 3]) -> [(i32, i32); 2] {
    [(s0, s0 + s1), (s1 + s2, s2)]
}

impl PackedConv {
    /// Lays out the weights of a conv of `shape` whose tap `k` (= ky·3 + kx) from input channel
    /// `c` to output channel `o` is `tap(o, c, k)` (each fitting an i16), the first `up_c` input
    /// channels up-sampled.
    pub(crate) fn new(
        shape: ConvShape,
        up_c: usize,
        tap: impl Fn(usize, usize, usize) -> i32,
    ) -> Self {
        let (in_c, out_c) = (shape.in_c, shape.out_c);
        let (up_pairs, plain_pairs) = (up_c.div_ceil(2), (in_c - up_c).div_ceil(2));
        let mut plain = Vec::with_capacity(out_c * 9 * plain_pairs);
        let mut up = Vec::with_capacity(out_c * 8 * up_pairs);
        // Tap `k` of input channel `c`, 0 for a channel past the group.
        let tap = |o: usize, c: usize, end: usize, k: usize| {
            if c < end {
                tap(o, c, k)
            } else {
                0
            }
        };
        for o in 0..out_c {
            for ky in 0..3 {
                for q in 0..plain_pairs {
                    let c = up_c + 2 * q;
                    for kx in 0..3 {
                        let k = 3 * ky + kx;
                        plain.push(pack(tap(o, c, in_c, k), tap(o, c + 1, in_c, k)));
                    }
                }
            }
            for parity in HALF_ROWS {
                for kernel_rows in parity {
                    for u in 0..up_pairs {
                        let phases = [2 * u, 2 * u + 1].map(|c| {
                            let mut s = [0i32; 3];
                            for &ky in kernel_rows {
                                for (kx, v) in s.iter_mut().enumerate() {
                                    *v += tap(o, c, up_c, 3 * ky + kx);
                                }
                            }
                            up_weights(s)
                        });
                        for (a, b) in phases[0].into_iter().zip(phases[1]) {
                            let even = pack(a.0, b.0) as u64;
                            let odd = pack(a.1, b.1) as u64;
                            up.push(even | (odd << 32));
                        }
                    }
                }
            }
        }
        Self {
            shape,
            up_c,
            up_pairs,
            plain_pairs,
            plain,
            up,
        }
    }

    /// Pairs in all.
    fn pairs(&self) -> usize {
        self.up_pairs + self.plain_pairs
    }

    /// The input channel of half `h` of pair `p` (up-sampled pairs first), if any.
    fn channel(&self, p: usize, h: usize) -> Option<usize> {
        if p < self.up_pairs {
            Some(2 * p + h).filter(|&c| c < self.up_c)
        } else {
            Some(self.up_c + 2 * (p - self.up_pairs) + h).filter(|&c| c < self.shape.in_c)
        }
    }
}

/// `lo` and `hi` (each fitting an i16) as the halves of a word.
#[inline(always)]
fn pack(lo: i32, hi: i32) -> u32 {
    (lo as u16 as u32) | ((hi as u16 as u32) << 16)
}

/// Where a layer reads its int8 input (`[C, H, W]` at the layer's input size).
#[derive(Clone, Copy)]
pub(crate) enum Input<'s> {
    /// A whole map.
    Plain(&'s [i8]),
    /// A whole map of 16-bit values (the SimpleUNet's int16 input).
    Wide(&'s [i16]),
    /// `cat([upsample_nearest2x(up), skip])`, `up` with `up_c` channels at half resolution.
    Up {
        up: &'s [i8],
        up_c: usize,
        skip: &'s [i8],
    },
}

impl Input<'_> {
    /// Row `y` of channel `c` of an `h × w` input, less `zp`, at full resolution into `out`
    /// (`w` values; an up-sampled channel's half row repeated column by column).
    #[inline(always)]
    fn row(&self, c: usize, y: usize, (h, w): (usize, usize), zp: i32, out: &mut [i32]) {
        let out = &mut out[..w];
        match *self {
            Input::Up { up, up_c, .. } if c < up_c => {
                let hw = w / 2;
                let half = &up[(c * (h / 2) + y / 2) * hw..][..hw];
                for (pair, &v) in out.chunks_exact_mut(2).zip(half) {
                    pair.fill(v as i32 - zp);
                }
            }
            Input::Up { up_c, skip, .. } => less_zp(&skip[((c - up_c) * h + y) * w..], zp, out),
            Input::Plain(d) => less_zp(&d[(c * h + y) * w..], zp, out),
            Input::Wide(d) => less_zp(&d[(c * h + y) * w..], zp, out),
        }
    }
}

/// `out[x] = row[x] − zp` for every `x` of `out`.
#[inline(always)]
fn less_zp<T: Copy + Into<i32>>(row: &[T], zp: i32, out: &mut [i32]) {
    let row = &row[..out.len()];
    for (o, &v) in out.iter_mut().zip(row) {
        *o = v.into() - zp;
    }
}

/// How a layer's input rows are laid out in the pair buffer.
#[derive(Clone, Copy)]
pub(crate) struct Layout {
    /// Input rows, columns.
    in_h: usize,
    in_w: usize,
    /// Output columns and the vectors that cover them.
    out_w: usize,
    vectors: usize,
    stride: usize,
    pairs: usize,
    /// Words per (input row, channel pair): the padded row (stride 1), or its even padded
    /// columns then its odd ones, `half` words each (stride 2).
    block: usize,
    half: usize,
}

impl Layout {
    pub(crate) fn new(pc: &PackedConv, in_h: usize, in_w: usize) -> Self {
        let (conv, pairs) = (&pc.shape, pc.pairs());
        let out_w = in_w / conv.stride;
        let vectors = out_w.div_ceil(LANES);
        // Every load reads `LANES · vectors` words (16-lane kernels: up to 8 more) from a
        // tap's offset (at most 2, or 1 into a half): two more vectors of room cover it.
        let half = LANES * (vectors + 2);
        let block = if conv.stride == 1 { half } else { 2 * half };
        Self {
            in_h,
            in_w,
            out_w,
            vectors,
            stride: conv.stride,
            pairs,
            block,
            half,
        }
    }

    /// Words of the whole laid-out input.
    pub(crate) fn len(&self) -> usize {
        self.in_h * self.pairs * self.block
    }

    /// Where tap `kx` of the block at `base` starts: padded column `kx` (stride 1); padded
    /// column `2x + kx` is even column `x` (kx 0), odd column `x` (kx 1) or even column
    /// `x + 1` (kx 2) of the split row (stride 2).
    #[inline(always)]
    fn tap(&self, base: usize, kx: usize) -> usize {
        if self.stride == 1 {
            base + kx
        } else {
            base + [0, self.half, 1][kx]
        }
    }
}

/// Lays out `input` (zero point `zp`) as the channel pairs of `pc` in `rows`.
fn lay_out(input: Input<'_>, pc: &PackedConv, zp: i32, l: &Layout, rows: &mut [u32]) {
    let rows = &mut rows[..l.len()];
    // The padding columns and the room after each row stay zero.
    rows.fill(0);
    let size = (l.in_h, l.in_w);
    let (mut ra, mut rb) = ([0i32; LANES * MAX_VECTORS], [0i32; LANES * MAX_VECTORS]);
    for iy in 0..l.in_h {
        for p in 0..l.pairs {
            for (h, r) in [&mut ra, &mut rb].into_iter().enumerate() {
                match pc.channel(p, h) {
                    Some(c) => input.row(c, iy, size, zp, r),
                    None => r.fill(0),
                }
            }
            let block = &mut rows[(iy * l.pairs + p) * l.block..][..l.block];
            let pairs = ra[..l.in_w]
                .iter()
                .zip(&rb[..l.in_w])
                .map(|(&a, &b)| pack(a, b));
            if l.stride == 1 {
                // Column `col` at padded column `col + 1`.
                for (d, v) in block[1..].iter_mut().zip(pairs) {
                    *d = v;
                }
            } else {
                // Padded column `col + 1`: odd columns at even padded ones (the first half,
                // from word 1), even columns at odd ones (the second half, from word 0).
                let (even, odd) = block.split_at_mut(l.half);
                for (col, v) in pairs.enumerate() {
                    if col % 2 == 1 {
                        even[col.div_ceil(2)] = v;
                    } else {
                        odd[col / 2] = v;
                    }
                }
            }
        }
    }
}

/// What the sums of one output row of one channel read: each valid kernel row `(ky, iy)` of
/// the channels that are not up-sampled with their `[3][plain_pairs][3]` weights, and each
/// valid half row `(slot, iy)` of the up-sampled ones (`iy` the full-res row `y ∓ 1` that holds
/// it) with their `[2][up_pairs][2]` phase weights.
pub(crate) struct RowPlan<'w> {
    plain: &'w [u32],
    plain_rows: &'w [(usize, usize)],
    up: &'w [u64],
    up_rows: &'w [(usize, usize)],
}

/// `Σ w·(q − zp)` of output row `y` of channel `o` into `acc[..out_w]` (the rest of `acc` is
/// overwritten with sums the caller does not read).
fn row_sums(
    pc: &PackedConv,
    l: &Layout,
    rows: &[u32],
    o: usize,
    y: usize,
    kernel: Int8Kernel,
) -> [i32; LANES * MAX_VECTORS] {
    let (mut plain_rows, mut up_rows) = ([(0usize, 0usize); 3], [(0usize, 0usize); 2]);
    let (mut n_plain, mut n_up) = (0, 0);
    for ky in 0..3 {
        if let Some(iy) = (l.stride * y + ky).checked_sub(1).filter(|&iy| iy < l.in_h) {
            plain_rows[n_plain] = (ky, iy);
            n_plain += 1;
            // Up-sampled channels (stride 1): rows y − 1 and y + 1 hold the two half rows.
            if ky != 1 && pc.up_pairs > 0 {
                up_rows[n_up] = (ky / 2, iy);
                n_up += 1;
            }
        }
    }
    let up_len = 4 * pc.up_pairs;
    let plan = RowPlan {
        plain: &pc.plain[o * 9 * pc.plain_pairs..(o + 1) * 9 * pc.plain_pairs],
        plain_rows: &plain_rows[..n_plain],
        up: &pc.up[(2 * o + y % 2) * up_len..][..up_len],
        up_rows: &up_rows[..n_up],
    };
    let rows = &rows[..l.len()];
    match kernel {
        // SAFETY (both): the kernel is set only where the CPU has its instructions
        // (`FastInt8TinyUNet::set_kernel`); they read the weights and `rows` through
        // bounds-checked slices.
        // Rows of 16 columns or fewer would leave most of a 16-lane vector idle: AVX2 takes
        // them (a CPU with AVX-512 has it).
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx512Vnni if l.vectors > 2 => unsafe {
            x86::row_sums_vnni::<2>(&plan, l, rows)
        },
        #[cfg(target_arch = "x86_64")]
        Int8Kernel::Avx2 | Int8Kernel::Avx512Vnni => unsafe {
            match l.vectors {
                1 => x86::row_sums_avx2::<1>(&plan, l, rows),
                2 => x86::row_sums_avx2::<2>(&plan, l, rows),
                3 => x86::row_sums_avx2::<3>(&plan, l, rows),
                _ => x86::row_sums_avx2::<4>(&plan, l, rows),
            }
        },
        _ => portable_row_sums(&plan, l, rows),
    }
}

/// Lays out `input` (`in_h × in_w`, zero point `zp`) as the pairs of `pc` in `rows` (at least
/// [`Layout::len`] words) and calls `row(o, y, sums)` with `Σ w·(q − zp)` of each output row
/// `y` of each channel `o` (`in_w / stride` columns). Output rows outermost: the three input
/// rows a row reads stay in the cache for every output channel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_rows(
    pc: &PackedConv,
    input: Input<'_>,
    zp: i32,
    (in_h, in_w): (usize, usize),
    rows: &mut [u32],
    kernel: Int8Kernel,
    mut row: impl FnMut(usize, usize, &[i32]),
) {
    let l = Layout::new(pc, in_h, in_w);
    lay_out(input, pc, zp, &l, rows);
    for y in 0..in_h / pc.shape.stride {
        for o in 0..pc.shape.out_c {
            let acc = row_sums(pc, &l, rows, o, y, kernel);
            row(o, y, &acc[..l.out_w]);
        }
    }
}

/// [`row_sums`] in plain loops over 8-lane arrays: the same products and sums.
fn portable_row_sums(plan: &RowPlan<'_>, l: &Layout, rows: &[u32]) -> [i32; LANES * MAX_VECTORS] {
    let mut acc = [0i32; LANES * MAX_VECTORS];
    let n = LANES * l.vectors;
    let up_pairs = plan.up.len() / 4;
    for &(slot, iy) in plan.up_rows {
        for u in 0..up_pairs {
            let base = (iy * l.pairs + u) * l.block;
            for t in 0..2 {
                let w = plan.up[(slot * up_pairs + u) * 2 + t];
                let src = &rows[base + 2 * t..][..n];
                for (x, (a, &v)) in acc[..n].iter_mut().zip(src).enumerate() {
                    // Even columns take the low word, odd ones the high word.
                    *a = a.wrapping_add(madd(v, (w >> (32 * (x % 2))) as u32));
                }
            }
        }
    }
    let (up, plain_pairs) = (up_pairs, plan.plain.len() / 9);
    for &(ky, iy) in plan.plain_rows {
        for q in 0..plain_pairs {
            let base = (iy * l.pairs + up + q) * l.block;
            for kx in 0..3 {
                let wp = plan.plain[(ky * plain_pairs + q) * 3 + kx];
                let src = &rows[l.tap(base, kx)..][..n];
                for (a, &x) in acc[..n].iter_mut().zip(src) {
                    *a = a.wrapping_add(madd(x, wp));
                }
            }
        }
    }
    acc
}

/// `lo(a)·lo(b) + hi(a)·hi(b)` of two pairs of i16 halves (what `vpmaddwd` computes per lane).
#[inline(always)]
fn madd(a: u32, b: u32) -> i32 {
    let (al, ah) = (a as u16 as i16 as i32, (a >> 16) as u16 as i16 as i32);
    let (bl, bh) = (b as u16 as i16 as i32, (b >> 16) as u16 as i16 as i32);
    (al * bl).wrapping_add(ah * bh)
}

#[cfg(target_arch = "x86_64")]
mod x86;
