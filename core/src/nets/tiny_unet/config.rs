//! [`TinyUNetConfig`]: the sizes of the compact down-sampling U-Net, its tensor names and
//! memory figures.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nets::spec::{total_numel, TensorSpec, TensorSpecList, MAX_DIM, TINY_MAX_MID_BLOCKS};

/// Sizes of the compact down-sampling U-Net (TinyUNet).
///
/// With `w = widths`, `E = emb_dim`, `D = temb_dim`, all convolutions 3×3 with padding 1 and
/// the PyTorch `state_dict` names of [`TinyUNetConfig::tensor_specs`]:
///
/// | block | layer | output |
/// | --- | --- | --- |
/// | time | sinusoidal(E) of 1000·t_in → `time_mlp.0` Linear(E→D) → ReLU → `time_mlp.2` Linear(D→D) = temb | D |
/// | `enc0` | Conv2d(c→w1) + `enc0_temb`(temb), ReLU; skip s1 | w1 × H × W |
/// | `down1` | Conv2d(w1→w2, stride 2) + `down1_temb`(temb), ReLU; skip s2 | w2 × H/2 × W/2 |
/// | `down2` | Conv2d(w2→w3, stride 2) + `down2_temb`(temb), ReLU | w3 × H/4 × W/4 |
/// | `mid` | Conv2d(w3→w3) + `mid_temb`(temb), ReLU | w3 × H/4 × W/4 |
/// | `mid1` … | as `mid`, `mid_blocks − 1` more times (`mid1`, `mid2`, …) | w3 × H/4 × W/4 |
/// | `up2` | nearest ×2, concat [up, s2], Conv2d(w3+w2→w2) + `up2_temb`(temb), ReLU | w2 × H/2 × W/2 |
/// | `up1` | nearest ×2, concat [up, s1], Conv2d(w2+w1→w1) + `up1_temb`(temb), ReLU | w1 × H × W |
/// | `out` | Conv2d(w1→c), no ReLU | c × H × W |
///
/// Each `*_temb` is a Linear(D→block channels) whose output is added per channel before the
/// block's ReLU. A class-conditional network (`classes` = K > 0) adds row y of `class_emb`
/// (`[K + 1, D]`: one row per class, the last row for "no class") to temb, so the class
/// reaches every block through its time projection (classifier-free guidance, Ho & Salimans
/// 2022, samples with `uncond + w·(cond − uncond)` of the class and the "no class" row). No normalisation layers. H and W must be multiples of 4, so that the two
/// up-samplings land exactly on the skip tensors' sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TinyUNetConfig {
    /// Image channels `c` (1 for MNIST).
    pub channels: u32,
    /// Image height (28 for MNIST; a multiple of 4).
    pub height: u32,
    /// Image width (28 for MNIST; a multiple of 4).
    pub width: u32,
    /// Channels of the three levels `[w1, w2, w3]` (full, half and quarter resolution).
    pub widths: [u32; 3],
    /// Number of w3 → w3 blocks at quarter resolution (`mid`, `mid1`, …), 1 to
    /// [`TINY_MAX_MID_BLOCKS`]. Each adds 8 pixels to an output pixel's receptive field.
    pub mid_blocks: u32,
    /// Length E of the sinusoidal timestep embedding (even, at least 4).
    pub emb_dim: u32,
    /// Width D of the time MLP's output `temb`.
    pub temb_dim: u32,
    /// Number of classes K of a class-conditional network (10 for MNIST's digits), 0 for an
    /// unconditional one. A conditional network has the tensor `class_emb.weight` `[K + 1, D]`;
    /// label K is "no class".
    pub classes: u32,
}

/// The tensor names of TinyUNet's six main blocks (enc0, down1, down2, mid, up2, up1): conv
/// weight and bias, time projection weight and bias.
pub const TINY_BLOCK_NAMES: [[&str; 4]; 6] = [
    [
        "enc0.weight",
        "enc0.bias",
        "enc0_temb.weight",
        "enc0_temb.bias",
    ],
    [
        "down1.weight",
        "down1.bias",
        "down1_temb.weight",
        "down1_temb.bias",
    ],
    [
        "down2.weight",
        "down2.bias",
        "down2_temb.weight",
        "down2_temb.bias",
    ],
    ["mid.weight", "mid.bias", "mid_temb.weight", "mid_temb.bias"],
    ["up2.weight", "up2.bias", "up2_temb.weight", "up2_temb.bias"],
    ["up1.weight", "up1.bias", "up1_temb.weight", "up1_temb.bias"],
];

/// The tensor names of the mid blocks `mid`, `mid1`, …, `mid7`.
pub const TINY_MID_NAMES: [[&str; 4]; TINY_MAX_MID_BLOCKS] = [
    TINY_BLOCK_NAMES[3],
    [
        "mid1.weight",
        "mid1.bias",
        "mid1_temb.weight",
        "mid1_temb.bias",
    ],
    [
        "mid2.weight",
        "mid2.bias",
        "mid2_temb.weight",
        "mid2_temb.bias",
    ],
    [
        "mid3.weight",
        "mid3.bias",
        "mid3_temb.weight",
        "mid3_temb.bias",
    ],
    [
        "mid4.weight",
        "mid4.bias",
        "mid4_temb.weight",
        "mid4_temb.bias",
    ],
    [
        "mid5.weight",
        "mid5.bias",
        "mid5_temb.weight",
        "mid5_temb.bias",
    ],
    [
        "mid6.weight",
        "mid6.bias",
        "mid6_temb.weight",
        "mid6_temb.bias",
    ],
    [
        "mid7.weight",
        "mid7.bias",
        "mid7_temb.weight",
        "mid7_temb.bias",
    ],
];

impl Default for TinyUNetConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The network's time input `t_in = t/T` is scaled by this before the sinusoidal embedding, so
/// the embedding sees `t·1000/T`: the timestep range of T = 1000 whatever T the schedule has
/// (the `rescale_timesteps` choice of Nichol & Dhariwal 2021's improved DDPM).
pub const TINY_TIME_SCALE: f32 = 1000.0;

/// The `max_period` of the sinusoidal embedding (Vaswani et al. 2017; Ho et al. 2020).
pub const TINY_MAX_PERIOD: f64 = 10_000.0;

impl TinyUNetConfig {
    /// The default: 1×28×28 images, widths 32/64/64, E = 32, D = 64 (221,505 parameters).
    pub const DEFAULT: Self = Self {
        channels: 1,
        height: 28,
        width: 28,
        widths: [32, 64, 64],
        mid_blocks: 1,
        emb_dim: 32,
        temb_dim: 64,
        classes: 0,
    };

    /// Number of parameter tensors (30 with one mid block, one more when class-conditional).
    pub const fn tensor_count(&self) -> usize {
        26 + 4 * self.mid_blocks as usize + self.is_conditional() as usize
    }

    /// Whether the network takes a class label (`classes` > 0).
    pub const fn is_conditional(&self) -> bool {
        self.classes > 0
    }

    /// The label that means "no class" (the last row of `class_emb`): `classes`.
    pub const fn null_class(&self) -> u32 {
        self.classes
    }

    /// Checks every size: channel counts, widths, E and D in 1..=[`MAX_DIM`], E even and at
    /// least 4, image sides multiples of 4 up to [`MAX_DIM`].
    pub fn validate(&self) -> Result<()> {
        let ok = |v: u32| (1..=MAX_DIM).contains(&v);
        if !ok(self.channels) || !self.widths.iter().all(|&w| ok(w)) {
            return Err(Error::InvalidConfig("channel counts must be in 1..=4096"));
        }
        if !ok(self.emb_dim) || !ok(self.temb_dim) {
            return Err(Error::InvalidConfig("embedding widths must be in 1..=4096"));
        }
        if !(1..=TINY_MAX_MID_BLOCKS as u32).contains(&self.mid_blocks) {
            return Err(Error::InvalidConfig(
                "TinyUNet: the number of mid blocks must be in 1..=4",
            ));
        }
        if !self.emb_dim.is_multiple_of(2) || self.emb_dim < 4 {
            return Err(Error::InvalidConfig(
                "TinyUNet: the sinusoidal embedding length must be even and at least 4",
            ));
        }
        if self.classes >= MAX_DIM {
            return Err(Error::InvalidConfig(
                "TinyUNet: the number of classes must be below 4096",
            ));
        }
        if !ok(self.height) || !ok(self.width) {
            return Err(Error::InvalidConfig("image sides must be in 1..=4096"));
        }
        if !self.height.is_multiple_of(4) || !self.width.is_multiple_of(4) {
            return Err(Error::InvalidConfig(
                "TinyUNet: image sides must be multiples of 4 (two stride-2 levels)",
            ));
        }
        let plane = self.height as u64 * self.width as u64;
        let [w1, w2, _] = self.widths;
        let widest = (w1 + w2).max(self.channels) as u64;
        if plane * widest * 9 > (i32::MAX as u64) {
            return Err(Error::InvalidConfig("activation maps too large"));
        }
        Ok(())
    }

    /// The parameter tensors in `state_dict` order: the time MLP, then each block's conv
    /// (`[out, in, 3, 3]`, bias) and time projection (`[out, D]`, bias) in forward order (enc0,
    /// down1, down2, mid, mid1 …, up2, up1), then `out`, then for a class-conditional network
    /// `class_emb.weight` (`[K + 1, D]`).
    pub const fn tensor_specs(&self) -> TensorSpecList {
        let c = self.channels;
        let [w1, w2, w3] = self.widths;
        let (e, d) = (self.emb_dim, self.temb_dim);
        let mut l = TensorSpecList::empty()
            .push(TensorSpec::new("time_mlp.0.weight", [d, e, 0, 0], 2))
            .push(TensorSpec::new("time_mlp.0.bias", [d, 0, 0, 0], 1))
            .push(TensorSpec::new("time_mlp.2.weight", [d, d, 0, 0], 2))
            .push(TensorSpec::new("time_mlp.2.bias", [d, 0, 0, 0], 1));
        l = l.push_block(&TINY_BLOCK_NAMES[0], w1, c, d);
        l = l.push_block(&TINY_BLOCK_NAMES[1], w2, w1, d);
        l = l.push_block(&TINY_BLOCK_NAMES[2], w3, w2, d);
        let mut k = 0;
        while k < self.mid_blocks as usize && k < TINY_MAX_MID_BLOCKS {
            l = l.push_block(&TINY_MID_NAMES[k], w3, w3, d);
            k += 1;
        }
        l = l.push_block(&TINY_BLOCK_NAMES[4], w2, w3 + w2, d);
        l = l.push_block(&TINY_BLOCK_NAMES[5], w1, w2 + w1, d);
        l = l
            .push(TensorSpec::new("out.weight", [c, w1, 3, 3], 4))
            .push(TensorSpec::new("out.bias", [c, 0, 0, 0], 1));
        if self.is_conditional() {
            l = l.push(TensorSpec::new(
                "class_emb.weight",
                [self.classes + 1, d, 0, 0],
                2,
            ));
        }
        l
    }

    /// Total number of parameters (221,505 for [`TinyUNetConfig::DEFAULT`]).
    pub const fn param_count(&self) -> usize {
        let specs = self.tensor_specs();
        total_numel(specs.specs.split_at(specs.len).0)
    }

    /// Elements in one image (C·H·W).
    pub const fn image_len(&self) -> usize {
        self.channels as usize * self.height as usize * self.width as usize
    }

    /// The three widths as `usize` (usable in `const` code, unlike `widths.map`).
    pub const fn widths_usize(&self) -> [usize; 3] {
        [
            self.widths[0] as usize,
            self.widths[1] as usize,
            self.widths[2] as usize,
        ]
    }

    /// Pixels of one channel at full, half and quarter resolution.
    pub const fn planes(&self) -> [usize; 3] {
        let (h, w) = (self.height as usize, self.width as usize);
        [h * w, (h / 2) * (w / 2), (h / 4) * (w / 4)]
    }

    /// f32 elements of scratch the reference forward pass needs: the two concatenation buffers
    /// `[up(u2), s1]` and `[up(mid), s2]` (each skip tensor is written straight into the back of
    /// the buffer it is concatenated into), up1's and up2's outputs, down2's and every mid
    /// block's outputs, and the time vectors (embedding E, hidden D, temb D, one block
    /// projection).
    pub const fn workspace_len(&self) -> usize {
        let [p1, p2, p3] = self.planes();
        let [w1, w2, w3] = self.widths_usize();
        let widest = if w1 > w2 { w1 } else { w2 };
        let widest = if widest > w3 { widest } else { w3 };
        (w2 + w1) * p1
            + w1 * p1
            + (w3 + w2) * p2
            + w2 * p2
            + (1 + self.mid_blocks as usize) * w3 * p3
            + self.emb_dim as usize
            + 2 * self.temb_dim as usize
            + widest
    }

    /// Multiply-adds of one forward pass (convolutions, time MLP and projections).
    pub const fn macs(&self) -> u64 {
        let [p1, p2, p3] = self.planes();
        let (p1, p2, p3) = (p1 as u64, p2 as u64, p3 as u64);
        let c = self.channels as u64;
        let [w1, w2, w3] = [
            self.widths[0] as u64,
            self.widths[1] as u64,
            self.widths[2] as u64,
        ];
        let (e, d) = (self.emb_dim as u64, self.temb_dim as u64);
        let mids = self.mid_blocks as u64;
        9 * (p1 * c * w1
            + p2 * w1 * w2
            + p3 * w2 * w3
            + mids * p3 * w3 * w3
            + p2 * (w3 + w2) * w2
            + p1 * (w2 + w1) * w1
            + p1 * w1 * c)
            + e * d
            + d * d
            + d * (2 * w1 + 2 * w2 + (1 + mids) * w3)
    }

    /// Bytes of int8 activations alive while each layer of a layer-by-layer int8 pass runs
    /// (enc0, down1, down2, mid, up2, up1, out), one byte per element, each skip tensor kept
    /// only until the layer that consumes it has run:
    ///
    /// - enc0 reads the int8 image x and writes s1;
    /// - down1 reads s1 (kept for up1) and writes s2 (kept for up2);
    /// - down2 reads s2 and writes d2; mid reads d2 and writes m (further mid blocks pass the
    ///   map back and forth between these two buffers, with the same bytes alive);
    /// - up2 reads m (nearest up-sampling done while reading: input pixel (y/2, x/2)) and s2 as
    ///   one conv over two inputs, so neither the up-sampled map nor the concatenation is
    ///   stored, and writes u2; d2 is gone;
    /// - up1 reads u2 (up-sampled while reading) and s1 and writes u1; s2 and m are gone;
    /// - out reads u1 and dequantizes its int32 accumulators straight into the caller's f32 ε
    ///   (as the SimpleUNet int8 executor does), so only u1 is counted.
    ///
    /// The time embedding (f32 vectors of E, D and per-block projections) is not included.
    pub const fn int8_live_bytes(&self) -> [usize; 7] {
        let [p1, p2, p3] = self.planes();
        let c = self.channels as usize;
        let [w1, w2, w3] = self.widths_usize();
        let (x, s1, s2, d2, m, u2, u1) =
            (c * p1, w1 * p1, w2 * p2, w3 * p3, w3 * p3, w2 * p2, w1 * p1);
        [
            x + s1,
            s1 + s2,
            s1 + s2 + d2,
            s1 + s2 + d2 + m,
            s1 + s2 + m + u2,
            s1 + u2 + u1,
            u1,
        ]
    }

    /// The peak of [`TinyUNetConfig::int8_live_bytes`]: the int8 activation memory a
    /// layer-by-layer int8 pass needs (62,720 bytes for [`TinyUNetConfig::DEFAULT`], at up1).
    pub const fn int8_peak_activation_bytes(&self) -> usize {
        let live = self.int8_live_bytes();
        let mut peak = 0;
        let mut i = 0;
        while i < live.len() {
            if live[i] > peak {
                peak = live[i];
            }
            i += 1;
        }
        peak
    }
}
