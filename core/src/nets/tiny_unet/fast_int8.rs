//! The host's int8 TinyUNet executor (feature `fast`): the integers of the planned executor,
//! and so of the microcontroller, at a workstation's speed, for sampling and evaluating int8
//! models on the host.
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
//! pair's sum comes near `i32::MAX`: `|q − zp| ≤ 255`, `|w| ≤ 128`), so every accumulator equals
//! the per-pixel loop's bit for bit; requantization and the time offsets are the planned
//! executor's own functions. Stride-2 layers keep each padded input row split into its even
//! and odd columns, so their taps read contiguous runs too.

use alloc::vec;
use alloc::vec::Vec;

use crate::diffusion::driver::{self, Network, OutputSink};
use crate::diffusion::GuidanceInterval;
use crate::error::{check_len, Error, Result};
use crate::nets::tiny_unet::int8::{widest, Int8TinyUNet, TimeScratch, TinyQConv};

/// The loops that sum an output row ([`FastInt8TinyUNet::set_kernel`]); all give the same
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

    /// The fastest kernel this CPU runs.
    pub fn best() -> Self {
        Self::ALL
            .into_iter()
            .rev()
            .find(|k| k.available())
            .unwrap_or(Self::Portable)
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
const LANES: usize = 8;

/// Most vectors of one output row: output rows up to 32 columns.
const MAX_VECTORS: usize = 4;

/// One conv with its weights as 16-bit pairs of neighbouring input channels: the up-sampled
/// channels (the first `up_c` of an up block's concatenation) paired among themselves, then the
/// others.
struct PackedConv<'a> {
    conv: TinyQConv<'a>,
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

impl<'a> PackedConv<'a> {
    fn new(conv: TinyQConv<'a>, up_c: usize) -> Self {
        let (in_c, out_c) = (conv.in_c, conv.out_c);
        let (up_pairs, plain_pairs) = (up_c.div_ceil(2), (in_c - up_c).div_ceil(2));
        let mut plain = Vec::with_capacity(out_c * 9 * plain_pairs);
        let mut up = Vec::with_capacity(out_c * 8 * up_pairs);
        // Tap `k` of input channel `c`, 0 for a channel past the group.
        let tap = |o: usize, c: usize, end: usize, k: usize| {
            if c < end {
                conv.tap(o, c, k)
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
            conv,
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
            Some(self.up_c + 2 * (p - self.up_pairs) + h).filter(|&c| c < self.conv.in_c)
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
enum Input<'s> {
    /// A whole map.
    Plain(&'s [i8]),
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
            Input::Up { up_c, skip, .. } => {
                let row = &skip[((c - up_c) * h + y) * w..][..w];
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = v as i32 - zp;
                }
            }
            Input::Plain(d) => {
                let row = &d[(c * h + y) * w..][..w];
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = v as i32 - zp;
                }
            }
        }
    }
}

/// How a layer's input rows are laid out in the pair buffer.
#[derive(Clone, Copy)]
struct Layout {
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
    fn new(pc: &PackedConv<'_>, in_h: usize, in_w: usize) -> Self {
        let (conv, pairs) = (&pc.conv, pc.pairs());
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
    fn len(&self) -> usize {
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
fn lay_out(input: Input<'_>, pc: &PackedConv<'_>, zp: i32, l: &Layout, rows: &mut [u32]) {
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
struct RowPlan<'w> {
    plain: &'w [u32],
    plain_rows: &'w [(usize, usize)],
    up: &'w [u64],
    up_rows: &'w [(usize, usize)],
}

/// `Σ w·(q − zp)` of output row `y` of channel `o` into `acc[..out_w]` (the rest of `acc` is
/// overwritten with sums the caller does not read).
fn row_sums(
    pc: &PackedConv<'_>,
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

/// The host's int8 TinyUNet executor over an [`Int8TinyUNet`] (the file's tensors borrowed):
/// the planned executor's integers, computed with the weights laid out once as 16-bit pairs
/// and AVX2 multiply-adds where the CPU has them (see the module's notes). Owns its scratch
/// (every activation map and the laid-out input of the widest layer), so one per thread.
pub struct FastInt8TinyUNet<'a> {
    net: Int8TinyUNet<'a>,
    /// The convs in forward order: enc0, down1, down2, mid, mid1 …, up2, up1, out.
    convs: Vec<PackedConv<'a>>,
    kernel: Int8Kernel,
    /// Activation maps: x, s1, s2, two quarter-resolution maps, u2, u1.
    maps: [Vec<i8>; 7],
    rows: Vec<u32>,
    emb: Vec<f32>,
    hidden: Vec<f32>,
    temb: Vec<f32>,
    offsets: Vec<i32>,
    eps: Vec<f32>,
}

impl<'a> FastInt8TinyUNet<'a> {
    /// Lays out `net`'s weights; runs the fastest kernel the CPU has ([`Int8Kernel::best`]).
    /// Errors for images wider than
    /// 32 columns (an output row is at most four vectors).
    pub fn new(net: Int8TinyUNet<'a>) -> Result<Self> {
        let cfg = *net.config();
        if cfg.width as usize > LANES * MAX_VECTORS {
            return Err(Error::InvalidConfig(
                "the host int8 executor takes images up to 32 columns wide",
            ));
        }
        let [enc0, down1, down2, mid, up2, up1, out] = net.layers;
        let [w1, w2, w3] = cfg.widths.map(|v| v as usize);
        let mut convs: Vec<PackedConv<'a>> = [enc0, down1, down2, mid]
            .into_iter()
            .chain(net.extra_mid().copied())
            .map(|l| PackedConv::new(l, 0))
            .collect();
        convs.extend([(up2, w3), (up1, w2), (out, 0)].map(|(l, up_c)| PackedConv::new(l, up_c)));
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let maps = [
            cfg.image_len(),
            w1 * h * w,
            w2 * (h / 2) * (w / 2),
            w3 * (h / 4) * (w / 4),
            w3 * (h / 4) * (w / 4),
            w2 * (h / 2) * (w / 2),
            w1 * h * w,
        ]
        .map(|n| vec![0i8; n]);
        let sizes = [(h, w), (h, w), (h / 2, w / 2)];
        let mut longest = 0;
        for (k, pc) in convs.iter().enumerate() {
            let (in_h, in_w) = match k {
                0..=2 => sizes[k],
                _ if k == convs.len() - 3 => (h / 2, w / 2),
                _ if k >= convs.len() - 2 => (h, w),
                _ => (h / 4, w / 4),
            };
            longest = longest.max(Layout::new(pc, in_h, in_w).len());
        }
        Ok(Self {
            net,
            convs,
            kernel: Int8Kernel::best(),
            maps,
            rows: vec![0; longest],
            emb: vec![0.0; cfg.emb_dim as usize],
            hidden: vec![0.0; cfg.temb_dim as usize],
            temb: vec![0.0; cfg.temb_dim as usize],
            offsets: vec![0; widest(&cfg)],
            eps: vec![0.0; cfg.image_len()],
        })
    }

    /// The network.
    pub fn net(&self) -> &Int8TinyUNet<'a> {
        &self.net
    }

    /// Computes for `class` from now on (`None`: "no class"); errors as
    /// [`Int8TinyUNet::with_class`] does.
    pub fn set_class(&mut self, class: Option<u32>) -> Result<()> {
        self.net = self.net.with_class(class)?;
        Ok(())
    }

    /// The kernel that runs.
    pub fn kernel(&self) -> Int8Kernel {
        self.kernel
    }

    /// Runs `kernel` from now on (the integers are the same); errors where the CPU lacks its
    /// instructions.
    pub fn set_kernel(&mut self, kernel: Int8Kernel) -> Result<()> {
        if !kernel.available() {
            return Err(Error::InvalidConfig(
                "this CPU lacks the instructions of that int8 kernel",
            ));
        }
        self.kernel = kernel;
        Ok(())
    }

    /// ε (or v) for `x` at time input `t_in` into `eps`: the integers of
    /// [`Int8TinyUNet::forward_planned`], bit for bit.
    pub fn forward(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        let cfg = *self.net.config();
        check_len("input image", cfg.image_len(), x.len())?;
        check_len("output image", cfg.image_len(), eps.len())?;
        self.net.time_embedding(
            t_in,
            &mut TimeScratch {
                emb: &mut self.emb,
                hidden: &mut self.hidden,
                temb: &mut self.temb,
                offsets: &mut self.offsets,
                row: &mut [],
            },
        )?;
        let (h, w) = (cfg.height as usize, cfg.width as usize);
        let [_, w2, w3] = cfg.widths.map(|v| v as usize);
        let [xq, s1, s2, qa, qb, u2, u1] = &mut self.maps;
        self.net.quantize_input(x, xq);
        let n = self.convs.len();
        let (convs, temb, kernel) = (&self.convs, &self.temb, self.kernel);
        let (rows, offs) = (&mut self.rows, &mut self.offsets);
        let mut run = |k: usize, input: Input<'_>, size, dst: Dst<'_>| {
            conv_layer(&convs[k], temb, offs, input, size, dst, rows, kernel)
        };
        run(0, Input::Plain(xq), (h, w), Dst::Int8(s1));
        run(1, Input::Plain(s1), (h, w), Dst::Int8(s2));
        run(2, Input::Plain(s2), (h / 2, w / 2), Dst::Int8(qa));
        let (mut cur, mut spare) = (qa, qb);
        for k in 3..n - 3 {
            run(k, Input::Plain(cur), (h / 4, w / 4), Dst::Int8(spare));
            core::mem::swap(&mut cur, &mut spare);
        }
        let up = Input::Up {
            up: cur,
            up_c: w3,
            skip: s2,
        };
        run(n - 3, up, (h / 2, w / 2), Dst::Int8(u2));
        let up = Input::Up {
            up: u2,
            up_c: w2,
            skip: s1,
        };
        run(n - 2, up, (h, w), Dst::Int8(u1));
        run(n - 1, Input::Plain(u1), (h, w), Dst::F32(eps));
        Ok(())
    }
}

/// Where a layer writes: a ReLU block's int8 map, or `out`'s dequantized f32.
enum Dst<'d> {
    Int8(&'d mut [i8]),
    F32(&'d mut [f32]),
}

/// One conv layer from `input` (`in_h × in_w`) into `dst` (`[out_c, out_h, out_w]`).
#[allow(clippy::too_many_arguments)]
fn conv_layer(
    pc: &PackedConv<'_>,
    temb: &[f32],
    offsets: &mut [i32],
    input: Input<'_>,
    (in_h, in_w): (usize, usize),
    dst: Dst<'_>,
    rows: &mut [u32],
    kernel: Int8Kernel,
) {
    let conv = &pc.conv;
    let l = Layout::new(pc, in_h, in_w);
    lay_out(input, pc, conv.input.zero_point, &l, rows);
    let out_h = in_h / conv.stride;
    let plane = out_h * l.out_w;
    // Output rows outermost: the three input rows a row reads stay in the cache for every
    // output channel.
    match dst {
        Dst::Int8(dst) => {
            conv.time_offsets(temb, offsets);
            let out_q = conv.out.unwrap_or(conv.input);
            for y in 0..out_h {
                for o in 0..conv.out_c {
                    let start = conv.bias.get(o).saturating_add(offsets[o]);
                    let r = conv.requantizer(o, out_q);
                    let acc = row_sums(pc, &l, rows, o, y, kernel);
                    let row = &mut dst[o * plane + y * l.out_w..][..l.out_w];
                    for (d, &a) in row.iter_mut().zip(&acc) {
                        *d = r.apply(start.wrapping_add(a));
                    }
                }
            }
        }
        Dst::F32(dst) => {
            for y in 0..out_h {
                for o in 0..conv.out_c {
                    let (start, unit) = (conv.bias.get(o), conv.bias_scale.get(o));
                    let acc = row_sums(pc, &l, rows, o, y, kernel);
                    let row = &mut dst[o * plane + y * l.out_w..][..l.out_w];
                    for (d, &a) in row.iter_mut().zip(&acc) {
                        *d = start.wrapping_add(a) as f32 * unit;
                    }
                }
            }
        }
    }
}

impl Network for FastInt8TinyUNet<'_> {
    fn image_len(&self) -> usize {
        self.net.config().image_len()
    }

    /// ε of each row handed over as the planned executor hands it (`[c][W]` rows in order),
    /// so guided sampling and the samplers see the same calls.
    fn output(&mut self, x: &mut [f32], t_in: f32, sink: &mut dyn OutputSink) -> Result<()> {
        let mut eps = core::mem::take(&mut self.eps);
        let result = self.forward(x, t_in, &mut eps).and_then(|()| {
            let cfg = self.net.config();
            let (c, h, w) = (
                cfg.channels as usize,
                cfg.height as usize,
                cfg.width as usize,
            );
            let mut row = vec![0.0f32; c * w];
            for y in 0..h {
                for ch in 0..c {
                    row[ch * w..(ch + 1) * w].copy_from_slice(&eps[(ch * h + y) * w..][..w]);
                }
                sink.row(x, y, w, &row)?;
            }
            Ok(())
        });
        self.eps = eps;
        result
    }
}

/// Autoguided sampling with two host executors (`guide + w·(model − guide)`), as
/// [`crate::tiny_unet::planned::PlannedGuided`] computes it on the device.
pub struct FastInt8Guided<'n, 'a> {
    model: &'n mut FastInt8TinyUNet<'a>,
    guide: &'n mut FastInt8TinyUNet<'a>,
    weight: f32,
    interval: GuidanceInterval,
    guide_out: Vec<f32>,
}

impl<'n, 'a> FastInt8Guided<'n, 'a> {
    /// `model` guided by `guide` with weight `weight`: errors when they draw images of another
    /// size, or the weight is not finite.
    pub fn new(
        model: &'n mut FastInt8TinyUNet<'a>,
        guide: &'n mut FastInt8TinyUNet<'a>,
        weight: f32,
    ) -> Result<Self> {
        let (c, g) = (model.net.config(), guide.net.config());
        if (c.channels, c.height, c.width) != (g.channels, g.height, g.width) {
            return Err(Error::InvalidConfig(
                "the guide draws images of another size than the model",
            ));
        }
        if !weight.is_finite() {
            return Err(Error::InvalidConfig("guidance weight must be finite"));
        }
        let guide_out = vec![0.0; c.image_len()];
        Ok(Self {
            model,
            guide,
            weight,
            interval: GuidanceInterval::ALWAYS,
            guide_out,
        })
    }

    /// Guided only at the steps `interval` holds, as
    /// [`PlannedGuided::with_interval`](crate::tiny_unet::planned::PlannedGuided::with_interval).
    pub fn with_interval(mut self, interval: GuidanceInterval) -> Self {
        self.interval = interval;
        self
    }
}

impl Network for FastInt8Guided<'_, '_> {
    fn image_len(&self) -> usize {
        self.model.image_len()
    }

    fn output(&mut self, x: &mut [f32], t_in: f32, sink: &mut dyn OutputSink) -> Result<()> {
        let (model, guide) = (&mut *self.model, &mut *self.guide);
        if !self.interval.contains(t_in) {
            return model.output(x, t_in, sink);
        }
        driver::guided_output(
            &mut (),
            x,
            &mut self.guide_out,
            self.weight,
            sink,
            |_, x, s| guide.output(x, t_in, s),
            |_, x, s| model.output(x, t_in, s),
        )
    }
}

#[cfg(test)]
mod tests;
