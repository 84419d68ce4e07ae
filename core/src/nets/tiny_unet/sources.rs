//! Where the int8 TinyUNet's convs read their input ([`Source`]: a whole map, the
//! concatenation of an up-sampled map with a skip map, a ring of three rows) and which loops
//! compute them ([`Kernel`]).

/// Where a conv reads its int8 input.
pub(crate) trait Source {
    /// The int8 value at channel `i`, row `y`, column `x` (in bounds): read through
    /// [`Source::row`], at `(y/2, x/2)` of the half-resolution map for an up-sampled channel.
    #[inline(always)]
    fn at(&self, i: usize, y: usize, x: usize) -> i32 {
        if i < self.up_channels() {
            self.row(i, y / 2)[x / 2] as i32
        } else {
            self.row(i, y)[x] as i32
        }
    }
    /// Input channels (the first ones) that are a nearest ×2 up-sampling of a half-resolution
    /// map, read by [`Source::row`] at half resolution.
    fn up_channels(&self) -> usize {
        0
    }
    /// Row `y` of channel `i` as stored: the full row, or for an up-sampled channel row `y`
    /// of the half-resolution map.
    fn row(&self, i: usize, y: usize) -> &[i8];
    /// Row `y` of channel `i` as stored (for an up-sampled channel, row `y` of the
    /// half-resolution map) to the end of its map, and the distance from one channel's row to
    /// the next one's: what the register tiles (`kernels::int8_tiles`) read for channels `i`
    /// onwards (up to the last up-sampled one when `i` is up-sampled).
    fn plane(&self, i: usize, y: usize) -> (&[i8], usize);
}

/// Which loops compute a layer: the per-pixel loop over every tap (the integer oracle) or the
/// row kernels (`kernels::int8_rows`); both give the same integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// [`TinyQConv::accumulate`](crate::nets::tiny_unet::int8::TinyQConv::accumulate) per
    /// output pixel.
    Oracle,
    /// [`TinyQConv::accumulate_row`](crate::nets::tiny_unet::int8::TinyQConv::accumulate_row)
    /// per run of an output row.
    Rows,
}

/// A whole `[C, H, W]` map.
pub(crate) struct Plain<'s> {
    pub(crate) data: &'s [i8],
    pub(crate) h: usize,
    pub(crate) w: usize,
}

impl Source for Plain<'_> {
    #[inline(always)]
    fn row(&self, i: usize, y: usize) -> &[i8] {
        let start = (i * self.h + y) * self.w;
        &self.data[start..start + self.w]
    }
    #[inline(always)]
    fn plane(&self, i: usize, y: usize) -> (&[i8], usize) {
        (&self.data[(i * self.h + y) * self.w..], self.h * self.w)
    }
}

/// `cat([upsample_nearest2x(up), skip], dim=0)` without storing either: channel `i < up_c`
/// reads `up` at `(y/2, x/2)`, the rest read `skip` at `(y, x)`.
pub(crate) struct UpCat<'s> {
    pub(crate) up: &'s [i8],
    pub(crate) up_c: usize,
    pub(crate) skip: &'s [i8],
    pub(crate) h: usize,
    pub(crate) w: usize,
}

impl Source for UpCat<'_> {
    #[inline(always)]
    fn up_channels(&self) -> usize {
        self.up_c
    }
    #[inline(always)]
    fn row(&self, i: usize, y: usize) -> &[i8] {
        if i < self.up_c {
            let (hh, hw) = (self.h / 2, self.w / 2);
            let start = (i * hh + y) * hw;
            &self.up[start..start + hw]
        } else {
            let start = ((i - self.up_c) * self.h + y) * self.w;
            &self.skip[start..start + self.w]
        }
    }
    #[inline(always)]
    fn plane(&self, i: usize, y: usize) -> (&[i8], usize) {
        if i < self.up_c {
            let (hh, hw) = (self.h / 2, self.w / 2);
            (&self.up[(i * hh + y) * hw..], hh * hw)
        } else {
            let start = ((i - self.up_c) * self.h + y) * self.w;
            (&self.skip[start..], self.h * self.w)
        }
    }
}

/// A ring of 3 rows of a `[C, H, W]` map: row `y` lives in slot `y % 3` (`[3, C, W]`).
pub(crate) struct Ring<'s> {
    pub(crate) rows: &'s [i8],
    pub(crate) c: usize,
    pub(crate) w: usize,
}

impl Source for Ring<'_> {
    #[inline(always)]
    fn row(&self, i: usize, y: usize) -> &[i8] {
        let start = ((y % 3) * self.c + i) * self.w;
        &self.rows[start..start + self.w]
    }
    #[inline(always)]
    fn plane(&self, i: usize, y: usize) -> (&[i8], usize) {
        (&self.rows[((y % 3) * self.c + i) * self.w..], self.w)
    }
}

/// [`UpCat`] whose up-sampled half comes from a ring of two rows of the half-resolution map
/// (`[2, up_c, W/2]`, half row n in slot n % 2): what the planned pass keeps of up2's output
/// while up1 streams. Only the half rows a full row y reads, (y − 1)/2 to (y + 1)/2, must be
/// there.
pub(crate) struct UpRingCat<'s> {
    pub(crate) ring: &'s [i8],
    pub(crate) up_c: usize,
    pub(crate) skip: &'s [i8],
    pub(crate) h: usize,
    pub(crate) w: usize,
}

impl Source for UpRingCat<'_> {
    #[inline(always)]
    fn up_channels(&self) -> usize {
        self.up_c
    }
    #[inline(always)]
    fn row(&self, i: usize, y: usize) -> &[i8] {
        if i < self.up_c {
            let hw = self.w / 2;
            let start = ((y % 2) * self.up_c + i) * hw;
            &self.ring[start..start + hw]
        } else {
            let start = ((i - self.up_c) * self.h + y) * self.w;
            &self.skip[start..start + self.w]
        }
    }
    #[inline(always)]
    fn plane(&self, i: usize, y: usize) -> (&[i8], usize) {
        if i < self.up_c {
            let hw = self.w / 2;
            (&self.ring[((y % 2) * self.up_c + i) * hw..], hw)
        } else {
            let start = ((i - self.up_c) * self.h + y) * self.w;
            (&self.skip[start..], self.h * self.w)
        }
    }
}
