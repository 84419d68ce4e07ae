//! The seed's SimpleUNet, composed from the reference layers.

use crate::error::{check_len, check_min_len, Result};
use crate::file::{self as format, ModelFile};
use crate::kernels::reference::{self as layers, Dims};
use crate::nets::simple_unet::SimpleUNetConfig;

/// Borrowed f32 parameters of a SimpleUNet, one slice per PyTorch tensor.
#[derive(Debug, Clone, Copy)]
pub struct SimpleUNetParams<'w> {
    /// `enc1.weight` `[h1, c, 3, 3]`.
    pub enc1_w: &'w [f32],
    /// `enc1.bias` `[h1]`.
    pub enc1_b: &'w [f32],
    /// `enc2.weight` `[h2, h1, 3, 3]`.
    pub enc2_w: &'w [f32],
    /// `enc2.bias` `[h2]`.
    pub enc2_b: &'w [f32],
    /// `dec1.weight` `[h2, h1, 3, 3]` (ConvTranspose2d layout `[in, out, kh, kw]`).
    pub dec1_w: &'w [f32],
    /// `dec1.bias` `[h1]`.
    pub dec1_b: &'w [f32],
    /// `dec2.weight` `[h1, c, 3, 3]` (ConvTranspose2d layout).
    pub dec2_w: &'w [f32],
    /// `dec2.bias` `[c]`.
    pub dec2_b: &'w [f32],
    /// `time_mlp.0.weight` `[h2, 1]`.
    pub time0_w: &'w [f32],
    /// `time_mlp.0.bias` `[h2]`.
    pub time0_b: &'w [f32],
    /// `time_mlp.2.weight` `[h2, h2]`.
    pub time2_w: &'w [f32],
    /// `time_mlp.2.bias` `[h2]`.
    pub time2_b: &'w [f32],
}

/// A SimpleUNet over borrowed f32 weights.
#[derive(Debug, Clone, Copy)]
pub struct SimpleUNet<'w> {
    cfg: SimpleUNetConfig,
    p: SimpleUNetParams<'w>,
}

/// Copies the twelve tensors of a SimpleUNet from `file` into `storage` (laid out in
/// `state_dict` order, [`SimpleUNetConfig::param_count`] elements), checking names, dtypes and
/// shapes against `cfg`.
pub fn load_params(
    file: &ModelFile<'_>,
    cfg: &SimpleUNetConfig,
    storage: &mut [f32],
) -> Result<()> {
    cfg.validate()?;
    format::copy_f32_tensors(file, &cfg.tensor_specs(), storage)
}

/// Checks, without copying anything, that `file` holds the twelve f32 tensors of a SimpleUNet
/// with `cfg`'s shapes. Callers that allocate parameter storage do this first, so a corrupt
/// configuration cannot make them allocate more than the file really holds.
pub fn check_params(file: &ModelFile<'_>, cfg: &SimpleUNetConfig) -> Result<()> {
    cfg.validate()?;
    format::check_f32_tensors(file, &cfg.tensor_specs())
}

impl<'w> SimpleUNet<'w> {
    /// Splits `params` (all tensors concatenated in `state_dict` order, as [`load_params`]
    /// writes them) into the network's tensors.
    pub fn from_flat(cfg: SimpleUNetConfig, params: &'w [f32]) -> Result<Self> {
        cfg.validate()?;
        check_len("parameters", cfg.param_count(), params.len())?;
        let mut parts: [&'w [f32]; 12] = [&[]; 12];
        format::split_f32_tensors(&cfg.tensor_specs(), params, &mut parts);
        let [enc1_w, enc1_b, enc2_w, enc2_b, dec1_w, dec1_b, dec2_w, dec2_b, time0_w, time0_b, time2_w, time2_b] =
            parts;
        Ok(Self {
            cfg,
            p: SimpleUNetParams {
                enc1_w,
                enc1_b,
                enc2_w,
                enc2_b,
                dec1_w,
                dec1_b,
                dec2_w,
                dec2_b,
                time0_w,
                time0_b,
                time2_w,
                time2_b,
            },
        })
    }

    /// The network's sizes.
    pub fn config(&self) -> &SimpleUNetConfig {
        &self.cfg
    }

    /// The parameter slices.
    pub fn params(&self) -> &SimpleUNetParams<'w> {
        &self.p
    }

    /// The time embedding `Linear(h2→h2)(ReLU(Linear(1→h2)(t_in)))` into `temb`, using `hidden`
    /// as scratch (both of length `hidden2`).
    pub fn time_embedding(&self, t_in: f32, hidden: &mut [f32], temb: &mut [f32]) -> Result<()> {
        layers::linear(&[t_in], self.p.time0_w, self.p.time0_b, hidden)?;
        layers::relu(hidden);
        layers::linear(hidden, self.p.time2_w, self.p.time2_b, temb)
    }

    /// The reference forward pass: predicted noise ε for one image `x` (`[c, h, w]`) at network
    /// time input `t_in` (the seed feeds `t / T`). `workspace` needs
    /// [`SimpleUNetConfig::workspace_len`] elements.
    pub fn forward_reference(
        &self,
        x: &[f32],
        t_in: f32,
        workspace: &mut [f32],
        out: &mut [f32],
    ) -> Result<()> {
        let c = &self.cfg;
        let (h, w) = (c.height as usize, c.width as usize);
        let (h1, h2) = (c.hidden1 as usize, c.hidden2 as usize);
        check_len("input image", c.image_len(), x.len())?;
        check_len("output image", c.image_len(), out.len())?;
        check_min_len("workspace", c.workspace_len(), workspace.len())?;
        let plane = h * w;
        let (a1, rest) = workspace.split_at_mut(h1 * plane);
        let (a2, rest) = rest.split_at_mut(h2 * plane);
        let (a3, rest) = rest.split_at_mut(h1 * plane);
        let (hidden, rest) = rest.split_at_mut(h2);
        let temb = &mut rest[..h2];

        let d0 = Dims::new(c.channels as usize, h, w);
        let d1 = layers::conv3x3(x, d0, self.p.enc1_w, self.p.enc1_b, h1, 1, a1)?;
        layers::relu(a1);
        let d2 = layers::conv3x3(a1, d1, self.p.enc2_w, self.p.enc2_b, h2, 1, a2)?;
        layers::relu(a2);
        self.time_embedding(t_in, hidden, temb)?;
        layers::add_per_channel(a2, d2, temb)?;
        let d3 = layers::conv_transpose3x3(a2, d2, self.p.dec1_w, self.p.dec1_b, h1, a3)?;
        layers::relu(a3);
        layers::conv_transpose3x3(
            a3,
            d3,
            self.p.dec2_w,
            self.p.dec2_b,
            c.channels as usize,
            out,
        )?;
        Ok(())
    }
}

crate::diffusion::denoiser::impl_reference_net!(SimpleUNet);
