//! TinyUNet, the compact down-sampling U-Net (see [`TinyUNetConfig`] for the architecture and
//! the tensor names), composed from the reference layers. No heap: the caller provides the
//! parameters and a workspace of [`TinyUNetConfig::workspace_len`] elements.

use crate::error::{check_len, check_min_len, Result};
use crate::file::{self as format, ModelFile};
use crate::kernels::reference::{self as layers, Dims};
use crate::nets::tiny_unet::config::{TinyUNetConfig, TINY_MAX_PERIOD, TINY_TIME_SCALE};
use crate::nets::MAX_TENSORS;

/// The six blocks that end in a ReLU and take a time projection, in forward order.
pub const BLOCKS: [&str; 6] = ["enc0", "down1", "down2", "mid", "up2", "up1"];

/// Index of each block in [`TinyUNetParams::blocks`]; the mid blocks after the first (`mid1`,
/// …) follow up1, at [`block::EXTRA_MID`] onwards.
pub mod block {
    /// Full resolution, c → w1 (skip s1).
    pub const ENC0: usize = 0;
    /// Stride 2, w1 → w2 (skip s2).
    pub const DOWN1: usize = 1;
    /// Stride 2, w2 → w3.
    pub const DOWN2: usize = 2;
    /// Quarter resolution, w3 → w3.
    pub const MID: usize = 3;
    /// Up-sampled mid ‖ s2 → w2.
    pub const UP2: usize = 4;
    /// Up-sampled up2 ‖ s1 → w1.
    pub const UP1: usize = 5;
    /// `mid1`, the second w3 → w3 block (then `mid2`, …).
    pub const EXTRA_MID: usize = 6;
    /// Most blocks a TinyUNet has.
    pub const MAX: usize = 5 + crate::nets::spec::TINY_MAX_MID_BLOCKS;

    /// The block computed at forward position `f` (enc0, down1, down2, mid, mid1 …, up2, up1)
    /// of a network with `mid_blocks` mid blocks: the order of [`TinyUNetConfig::tensor_specs`](crate::TinyUNetConfig::tensor_specs).
    pub const fn at_position(f: usize, mid_blocks: usize) -> usize {
        if f <= MID {
            f
        } else if f < MID + mid_blocks {
            EXTRA_MID + f - MID - 1
        } else {
            f - mid_blocks + 1
        }
    }
}

/// Borrowed parameters of one block: its conv and its time projection.
#[derive(Debug, Clone, Copy)]
pub struct TinyBlockParams<'w> {
    /// Conv2d weight `[out, in, 3, 3]`.
    pub conv_w: &'w [f32],
    /// Conv2d bias `[out]`.
    pub conv_b: &'w [f32],
    /// Time projection Linear weight `[out, D]`.
    pub temb_w: &'w [f32],
    /// Time projection bias `[out]`.
    pub temb_b: &'w [f32],
}

/// Borrowed f32 parameters of a TinyUNet, one slice per PyTorch tensor.
#[derive(Debug, Clone, Copy)]
pub struct TinyUNetParams<'w> {
    /// `time_mlp.0.weight` `[D, E]`.
    pub time0_w: &'w [f32],
    /// `time_mlp.0.bias` `[D]`.
    pub time0_b: &'w [f32],
    /// `time_mlp.2.weight` `[D, D]`.
    pub time2_w: &'w [f32],
    /// `time_mlp.2.bias` `[D]`.
    pub time2_b: &'w [f32],
    /// enc0, down1, down2, mid, up2, up1, then mid1 … (indices in [`block`]); entries past
    /// `5 + mid_blocks` are empty.
    pub blocks: [TinyBlockParams<'w>; block::MAX],
    /// `out.weight` `[c, w1, 3, 3]`.
    pub out_w: &'w [f32],
    /// `out.bias` `[c]`.
    pub out_b: &'w [f32],
    /// `class_emb.weight` `[K + 1, D]` of a class-conditional network (empty otherwise).
    pub class_emb: &'w [f32],
}

/// A TinyUNet over borrowed f32 weights. A class-conditional one computes for the label it
/// carries ([`TinyUNet::with_class`]; "no class" until one is set).
#[derive(Debug, Clone, Copy)]
pub struct TinyUNet<'w> {
    cfg: TinyUNetConfig,
    p: TinyUNetParams<'w>,
    label: u32,
}

/// The label a network with configuration `cfg` computes for when asked for `class`: `class`
/// itself (checked to be below `cfg.classes`), or the "no class" label for `None`. Refuses a
/// class for an unconditional network.
pub fn class_label(cfg: &TinyUNetConfig, class: Option<u32>) -> Result<u32> {
    match class {
        None => Ok(cfg.null_class()),
        Some(_) if !cfg.is_conditional() => Err(crate::Error::InvalidConfig(
            "this model is unconditional: it takes no class",
        )),
        Some(k) if k >= cfg.classes => Err(crate::Error::InvalidConfig(
            "class index out of range: the model has fewer classes",
        )),
        Some(k) => Ok(k),
    }
}

/// Adds row `label` of the class embedding `class_emb` (`[K + 1, D]`) to `temb` (length D);
/// nothing when `class_emb` is empty (an unconditional network).
pub(crate) fn add_class_row(class_emb: &[f32], label: u32, temb: &mut [f32]) {
    if class_emb.is_empty() {
        return;
    }
    let d = temb.len();
    let row = &class_emb[label as usize * d..][..d];
    for (t, &c) in temb.iter_mut().zip(row) {
        *t += c;
    }
}

/// Checks, without copying anything, that `file` holds the f32 tensors of a TinyUNet with
/// `cfg`'s shapes.
pub fn check_params(file: &ModelFile<'_>, cfg: &TinyUNetConfig) -> Result<()> {
    cfg.validate()?;
    format::check_f32_tensors(file, &cfg.tensor_specs())
}

/// Copies the tensors of a TinyUNet from `file` into `storage` (in `state_dict` order,
/// [`TinyUNetConfig::param_count`] elements), checking names, dtypes and shapes.
pub fn load_params(file: &ModelFile<'_>, cfg: &TinyUNetConfig, storage: &mut [f32]) -> Result<()> {
    cfg.validate()?;
    format::copy_f32_tensors(file, &cfg.tensor_specs(), storage)
}

impl<'w> TinyUNet<'w> {
    /// Splits `params` (all tensors concatenated in `state_dict` order) into the network's
    /// tensors.
    pub fn from_flat(cfg: TinyUNetConfig, params: &'w [f32]) -> Result<Self> {
        cfg.validate()?;
        check_len("parameters", cfg.param_count(), params.len())?;
        let mut parts: [&'w [f32]; MAX_TENSORS] = [&[]; MAX_TENSORS];
        format::split_f32_tensors(&cfg.tensor_specs(), params, &mut parts);
        // tensor_specs: 4 time-MLP tensors, 4 per block in forward order, then out.weight and
        // out.bias.
        let empty = TinyBlockParams {
            conv_w: &[],
            conv_b: &[],
            temb_w: &[],
            temb_b: &[],
        };
        let mids = cfg.mid_blocks as usize;
        let mut blocks = [empty; block::MAX];
        for f in 0..5 + mids {
            blocks[block::at_position(f, mids)] = TinyBlockParams {
                conv_w: parts[4 + 4 * f],
                conv_b: parts[5 + 4 * f],
                temb_w: parts[6 + 4 * f],
                temb_b: parts[7 + 4 * f],
            };
        }
        let out = 4 + 4 * (5 + mids);
        Ok(Self {
            cfg,
            p: TinyUNetParams {
                time0_w: parts[0],
                time0_b: parts[1],
                time2_w: parts[2],
                time2_b: parts[3],
                blocks,
                out_w: parts[out],
                out_b: parts[out + 1],
                // Empty for an unconditional network (no tensor after out.bias).
                class_emb: parts[out + 2],
            },
            label: cfg.null_class(),
        })
    }

    /// The same network computing for `class` (`None`: "no class", the unconditional output
    /// of classifier-free guidance). Errors for a class on an unconditional network and for
    /// a class index of `classes` or more.
    pub fn with_class(mut self, class: Option<u32>) -> Result<Self> {
        self.label = class_label(&self.cfg, class)?;
        Ok(self)
    }

    /// The label the network computes for (`classes`, "no class", unless set).
    pub fn label(&self) -> u32 {
        self.label
    }

    /// The network's sizes.
    pub fn config(&self) -> &TinyUNetConfig {
        &self.cfg
    }

    /// The parameter slices.
    pub fn params(&self) -> &TinyUNetParams<'w> {
        &self.p
    }

    /// The time embedding `temb = Linear(D→D)(ReLU(Linear(E→D)(sinusoidal(1000·t_in))))`
    /// (plus the class embedding's row of the label, for a class-conditional network) into
    /// `temb` (length D), with `emb` (E) and `hidden` (D) as scratch.
    pub fn time_embedding(
        &self,
        t_in: f32,
        emb: &mut [f32],
        hidden: &mut [f32],
        temb: &mut [f32],
    ) -> Result<()> {
        check_len("sinusoidal embedding", self.cfg.emb_dim as usize, emb.len())?;
        layers::sinusoidal_embedding(t_in * TINY_TIME_SCALE, TINY_MAX_PERIOD, emb)?;
        layers::linear(emb, self.p.time0_w, self.p.time0_b, hidden)?;
        layers::relu(hidden);
        layers::linear(hidden, self.p.time2_w, self.p.time2_b, temb)?;
        add_class_row(self.p.class_emb, self.label, temb);
        Ok(())
    }

    /// Block `k`'s time projection `Linear(D→out_c)(temb)` into `proj[..out_c]`.
    fn projection<'p>(
        &self,
        k: usize,
        temb: &[f32],
        out_c: usize,
        proj: &'p mut [f32],
    ) -> Result<&'p [f32]> {
        let b = &self.p.blocks[k];
        check_min_len("time projection", out_c, proj.len())?;
        let proj = &mut proj[..out_c];
        layers::linear(temb, b.temb_w, b.temb_b, proj)?;
        Ok(proj)
    }

    /// Block `k`: `out = ReLU(conv(input) + proj)` with the block's stride, where `proj` is
    /// its time projection (one value per output channel).
    fn block(
        &self,
        k: usize,
        input: &[f32],
        in_dims: Dims,
        stride: usize,
        proj: &[f32],
        out: &mut [f32],
    ) -> Result<Dims> {
        let b = &self.p.blocks[k];
        let od = layers::conv3x3(input, in_dims, b.conv_w, b.conv_b, proj.len(), stride, out)?;
        layers::add_per_channel(out, od, proj)?;
        layers::relu(out);
        Ok(od)
    }

    /// The reference forward pass: predicted noise ε for one image `x` (`[c, h, w]`) at network
    /// time input `t_in` (t/T). `workspace` needs [`TinyUNetConfig::workspace_len`] elements.
    ///
    /// Channel concatenation costs no copy: in the `[C, H, W]` layout, `cat([a, b], dim=0)` is
    /// `a`'s channels followed by `b`'s, so each skip tensor is written straight into the back
    /// part of the buffer it is later concatenated into, and the up-sampled map into the front.
    pub fn forward_reference(
        &self,
        x: &[f32],
        t_in: f32,
        workspace: &mut [f32],
        out: &mut [f32],
    ) -> Result<()> {
        let c = &self.cfg;
        let (h, w) = (c.height as usize, c.width as usize);
        let [w1, w2, w3] = c.widths.map(|v| v as usize);
        let [p1, p2, p3] = c.planes();
        let (e, d) = (c.emb_dim as usize, c.temb_dim as usize);
        check_len("input image", c.image_len(), x.len())?;
        check_len("output image", c.image_len(), out.len())?;
        check_min_len("workspace", c.workspace_len(), workspace.len())?;
        let (cat1, rest) = workspace.split_at_mut((w2 + w1) * p1);
        let (u1, rest) = rest.split_at_mut(w1 * p1);
        let (cat2, rest) = rest.split_at_mut((w3 + w2) * p2);
        let (u2, rest) = rest.split_at_mut(w2 * p2);
        let (d2, rest) = rest.split_at_mut(w3 * p3);
        let (m, rest) = rest.split_at_mut(w3 * p3);
        let (mut extra_m, rest) = rest.split_at_mut((c.mid_blocks as usize - 1) * w3 * p3);
        let (emb, rest) = rest.split_at_mut(e);
        let (hidden, rest) = rest.split_at_mut(d);
        let (temb, proj) = rest.split_at_mut(d);

        self.time_embedding(t_in, emb, hidden, temb)?;
        let (up1_front, s1) = cat1.split_at_mut(w2 * p1);
        let (up2_front, s2) = cat2.split_at_mut(w3 * p2);

        let temb: &[f32] = temb;
        let d0 = Dims::new(c.channels as usize, h, w);
        let pr = self.projection(block::ENC0, temb, w1, proj)?;
        let ds1 = self.block(block::ENC0, x, d0, 1, pr, s1)?;
        let pr = self.projection(block::DOWN1, temb, w2, proj)?;
        let ds2 = self.block(block::DOWN1, s1, ds1, 2, pr, s2)?;
        let pr = self.projection(block::DOWN2, temb, w3, proj)?;
        let dd2 = self.block(block::DOWN2, s2, ds2, 2, pr, d2)?;
        let pr = self.projection(block::MID, temb, w3, proj)?;
        let dm = self.block(block::MID, d2, dd2, 1, pr, m)?;
        // Further mid blocks write m1, m2, … (kept for calibration); `m` names the latest.
        let mut m: &[f32] = m;
        for k in 0..c.mid_blocks as usize - 1 {
            let (next, tail) = core::mem::take(&mut extra_m).split_at_mut(w3 * p3);
            let pr = self.projection(block::EXTRA_MID + k, temb, w3, proj)?;
            self.block(block::EXTRA_MID + k, m, dm, 1, pr, next)?;
            (m, extra_m) = (next, tail);
        }
        layers::upsample_nearest2x(m, dm, up2_front)?;
        let cat2_dims = Dims::new(w3 + w2, ds2.h, ds2.w);
        let pr = self.projection(block::UP2, temb, w2, proj)?;
        let du2 = self.block(block::UP2, cat2, cat2_dims, 1, pr, u2)?;
        layers::upsample_nearest2x(u2, du2, up1_front)?;
        let cat1_dims = Dims::new(w2 + w1, h, w);
        let pr = self.projection(block::UP1, temb, w1, proj)?;
        let du1 = self.block(block::UP1, cat1, cat1_dims, 1, pr, u1)?;
        layers::conv3x3(
            u1,
            du1,
            self.p.out_w,
            self.p.out_b,
            c.channels as usize,
            1,
            out,
        )?;
        Ok(())
    }
}

crate::diffusion::denoiser::impl_reference_net!(TinyUNet);

/// TinyUNet's reference forward pass as a [`Denoiser`](crate::diffusion::Denoiser) over a
/// caller-owned workspace (no heap).
pub type TinyReferenceDenoiser<'w, 'b> = crate::diffusion::ReferenceDenoiser<'b, TinyUNet<'w>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1×4×4 TinyUNet with widths 1/1/1 and hand-chosen weights whose output can be followed
    /// by hand: every conv has only its centre tap (an identity for stride 1, a pick of pixel
    /// (2y, 2x) for stride 2), the time MLP and projections are zero except their biases.
    #[test]
    fn hand_computed_tiny_pass() {
        let cfg = TinyUNetConfig {
            channels: 1,
            height: 4,
            width: 4,
            widths: [1, 1, 1],
            mid_blocks: 1,
            emb_dim: 4,
            temb_dim: 2,
            classes: 0,
        };
        let mut params = [0.0f32; 512];
        let params = &mut params[..cfg.param_count()];
        let specs = cfg.tensor_specs();
        let mut offsets = [0usize; MAX_TENSORS];
        let mut at = 0;
        for (o, s) in offsets.iter_mut().zip(specs.iter()) {
            *o = at;
            at += s.numel();
        }
        let idx = |name: &str| specs.iter().position(|s| s.name == name).unwrap();
        let mut set = |name: &str, i: usize, v: f32| params[offsets[idx(name)] + i] = v;
        // Centre taps: enc0 ×1, down1 ×1, down2 ×1, mid ×1.
        for name in ["enc0.weight", "down1.weight", "down2.weight", "mid.weight"] {
            set(name, 4, 1.0);
        }
        // up2 and up1 have two input channels [up, skip]: centre taps 1 (up) and 10 (skip).
        for name in ["up2.weight", "up1.weight"] {
            set(name, 4, 1.0);
            set(name, 9 + 4, 10.0);
        }
        set("out.weight", 4, 1.0);
        // Time projection bias of mid: +100 (added before mid's ReLU); out bias −0.5.
        set("mid_temb.bias", 0, 100.0);
        set("out.bias", 0, -0.5);
        let net = TinyUNet::from_flat(cfg, params).unwrap();
        let x: [f32; 16] = core::array::from_fn(|i| i as f32 - 3.0);
        let mut ws = [0.0f32; 256];
        let mut out = [0.0f32; 16];
        net.forward_reference(&x, 0.5, &mut ws[..cfg.workspace_len()], &mut out)
            .unwrap();
        // s1 = ReLU(x); s2 = s1 at (0,0),(0,2),(2,0),(2,2) = [0, 0, 5, 7];
        // d2 = s2[0,0] = 0; m = ReLU(0 + 100) = 100; up2 = ReLU(100 + 10·s2) = [100, 100, 150, 170];
        // up1[y, x] = ReLU(up2[y/2, x/2] + 10·s1[y, x]); out = up1 − 0.5.
        let s1: [f32; 16] = core::array::from_fn(|i| (i as f32 - 3.0).max(0.0));
        let up2 = [100.0f32, 100.0, 150.0, 170.0];
        let expected: [f32; 16] = core::array::from_fn(|i| {
            let (y, xx) = (i / 4, i % 4);
            up2[(y / 2) * 2 + xx / 2] + 10.0 * s1[i] - 0.5
        });
        assert_eq!(out, expected);
    }

    #[test]
    fn sizes_are_checked() {
        let cfg = TinyUNetConfig::DEFAULT;
        assert!(TinyUNet::from_flat(cfg, &[0.0; 10]).is_err());
        let bad = TinyUNetConfig { height: 6, ..cfg };
        assert!(TinyUNet::from_flat(bad, &[]).is_err());
    }
}
