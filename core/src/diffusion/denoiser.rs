//! What the samplers drive: a [`Denoiser`] predicts the network's output for a whole image;
//! [`ReferenceDenoiser`] runs a network's reference pass, [`Guided`] combines two networks by
//! autoguidance.

use crate::diffusion::steps::{guide_output, GuidanceInterval};
use crate::error::{check_len, Error, Result};

/// Anything that predicts the noise ε in an image x at network time input `t_in` (= t/T), or
/// v for a network whose schedule says it predicts v (the steps convert, [`split_output`]).
pub trait Denoiser {
    /// Elements of one image.
    fn image_len(&self) -> usize;
    /// Writes the network's output for `x` (the predicted noise, or v) into `eps`.
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()>;
}

/// A network with a heap-free reference forward pass over a caller-owned f32 workspace
/// (SimpleUNet and TinyUNet).
pub trait ReferenceNet {
    /// Elements of one image.
    fn image_len(&self) -> usize;
    /// f32 elements of workspace the forward pass needs.
    fn workspace_len(&self) -> usize;
    /// ε for `x` at time input `t_in` into `eps`.
    fn forward_reference(
        &self,
        x: &[f32],
        t_in: f32,
        workspace: &mut [f32],
        eps: &mut [f32],
    ) -> Result<()>;
}

/// Implements [`ReferenceNet`] for a network type with `cfg` (`image_len`, `workspace_len`)
/// and an inherent `forward_reference`.
macro_rules! impl_reference_net {
    ($net:ident) => {
        impl $crate::diffusion::ReferenceNet for $net<'_> {
            fn image_len(&self) -> usize {
                self.cfg.image_len()
            }
            fn workspace_len(&self) -> usize {
                self.cfg.workspace_len()
            }
            fn forward_reference(
                &self,
                x: &[f32],
                t_in: f32,
                workspace: &mut [f32],
                eps: &mut [f32],
            ) -> $crate::error::Result<()> {
                $net::forward_reference(self, x, t_in, workspace, eps)
            }
        }
    };
}
pub(crate) use impl_reference_net;

/// A [`Denoiser`] running a network's reference forward pass over a caller-owned workspace (no
/// heap).
pub struct ReferenceDenoiser<'b, N> {
    net: N,
    workspace: &'b mut [f32],
}

impl<'b, N: ReferenceNet> ReferenceDenoiser<'b, N> {
    /// Checks the workspace size once, here.
    pub fn new(net: N, workspace: &'b mut [f32]) -> Result<Self> {
        crate::error::check_min_len("workspace", net.workspace_len(), workspace.len())?;
        Ok(Self { net, workspace })
    }
}

impl<N: ReferenceNet> Denoiser for ReferenceDenoiser<'_, N> {
    fn image_len(&self) -> usize {
        self.net.image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        self.net.forward_reference(x, t_in, self.workspace, eps)
    }
}

/// A [`Denoiser`] whose output is `good`'s guided by the weaker `guide` with weight `w`
/// ([`guide_output`]); `scratch` (one image) holds the guide's output. Both networks must
/// predict the same quantity under the same schedule, which the caller checks.
pub struct Guided<'b, G: ?Sized, B: ?Sized> {
    good: &'b mut G,
    guide: &'b mut B,
    weight: f32,
    interval: GuidanceInterval,
    scratch: &'b mut [f32],
}

impl<'b, G: Denoiser + ?Sized, B: Denoiser + ?Sized> Guided<'b, G, B> {
    /// Checks that the two networks draw images of one size and that `scratch` holds one.
    pub fn new(
        good: &'b mut G,
        guide: &'b mut B,
        weight: f32,
        scratch: &'b mut [f32],
    ) -> Result<Self> {
        check_len("guide image", good.image_len(), guide.image_len())?;
        check_len("guide scratch", good.image_len(), scratch.len())?;
        if !weight.is_finite() {
            return Err(Error::InvalidConfig("guidance weight must be finite"));
        }
        Ok(Self {
            good,
            guide,
            weight,
            interval: GuidanceInterval::ALWAYS,
            scratch,
        })
    }

    /// Guided only at the steps `interval` holds; the others give `good`'s output alone.
    pub fn with_interval(mut self, interval: GuidanceInterval) -> Self {
        self.interval = interval;
        self
    }
}

impl<G: Denoiser + ?Sized, B: Denoiser + ?Sized> Denoiser for Guided<'_, G, B> {
    fn image_len(&self) -> usize {
        self.good.image_len()
    }
    fn predict_noise(&mut self, x: &[f32], t_in: f32, eps: &mut [f32]) -> Result<()> {
        self.good.predict_noise(x, t_in, eps)?;
        if !self.interval.contains(t_in) {
            return Ok(());
        }
        self.guide.predict_noise(x, t_in, self.scratch)?;
        guide_output(eps, self.scratch, self.weight)
    }
}
