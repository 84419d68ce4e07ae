//! The seed's SimpleUNet in tch, with PyTorch's `state_dict` names (`enc1.weight`, …,
//! `time_mlp.2.bias`) as the `VarStore` names, so weights map name for name onto a PyTorch
//! checkpoint and onto the model file.
use anyhow::{bail, Context, Result};
use ddpm_core::SimpleUNetConfig;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// SimpleUNet(c): enc1 Conv2d(c→h1), enc2 Conv2d(h1→h2), dec1 ConvTranspose2d(h2→h1),
/// dec2 ConvTranspose2d(h1→c), all 3×3 with padding 1; ReLU after enc1, enc2 and dec1; the time
/// MLP Linear(1→h2), ReLU, Linear(h2→h2) of t/T is added per channel after enc2's ReLU.
#[derive(Debug)]
pub struct SimpleUNet {
    cfg: SimpleUNetConfig,
    enc1: nn::Conv2D,
    enc2: nn::Conv2D,
    dec1: nn::ConvTranspose2D,
    dec2: nn::ConvTranspose2D,
    time0: nn::Linear,
    time2: nn::Linear,
}

impl SimpleUNet {
    /// Creates the layers under `path` with PyTorch's default initialisation.
    ///
    /// PyTorch draws weights with kaiming-uniform (a = √5), i.e. uniform in ±1/√fan_in, and
    /// biases uniform in ±1/√fan_in, where fan_in = `weight.size(1)`·k·k; for a transposed
    /// convolution (weight `[in, out, k, k]`) that is out·k·k. tch's own defaults differ
    /// (ReLU gain √2, zero conv biases), so the bounds are set here explicitly.
    pub fn new(path: &nn::Path, cfg: SimpleUNetConfig) -> Self {
        let (c, h1, h2) = (cfg.channels as i64, cfg.hidden1 as i64, cfg.hidden2 as i64);
        let conv = |fan_in: i64| nn::ConvConfig {
            padding: 1,
            ws_init: torch_uniform(fan_in),
            bs_init: torch_uniform(fan_in),
            ..Default::default()
        };
        let tconv = |fan_in: i64| nn::ConvTransposeConfig {
            padding: 1,
            ws_init: torch_uniform(fan_in),
            bs_init: torch_uniform(fan_in),
            ..Default::default()
        };
        let linear = |fan_in: i64| nn::LinearConfig {
            ws_init: torch_uniform(fan_in),
            bs_init: Some(torch_uniform(fan_in)),
            bias: true,
        };
        let time = path / "time_mlp";
        Self {
            cfg,
            enc1: nn::conv2d(path / "enc1", c, h1, 3, conv(c * 9)),
            enc2: nn::conv2d(path / "enc2", h1, h2, 3, conv(h1 * 9)),
            dec1: nn::conv_transpose2d(path / "dec1", h2, h1, 3, tconv(h1 * 9)),
            dec2: nn::conv_transpose2d(path / "dec2", h1, c, 3, tconv(c * 9)),
            time0: nn::linear(&time / "0", 1, h2, linear(1)),
            time2: nn::linear(&time / "2", h2, h2, linear(h2)),
        }
    }

    /// The sizes.
    pub fn config(&self) -> &SimpleUNetConfig {
        &self.cfg
    }

    /// Predicted noise for `x` (N×C×H×W) at network time inputs `t_in` (N values of t/T).
    pub fn forward(&self, x: &Tensor, t_in: &Tensor) -> Tensor {
        let h = self.enc1.forward(x).relu();
        let h = self.enc2.forward(&h).relu();
        let temb = self
            .time2
            .forward(&self.time0.forward(&t_in.unsqueeze(-1)).relu());
        let h = h + temb.view([-1, self.cfg.hidden2 as i64, 1, 1]);
        let h = self.dec1.forward(&h).relu();
        self.dec2.forward(&h)
    }
}

/// Uniform in ±1/√fan_in: PyTorch's default for Conv2d, ConvTranspose2d and Linear weights
/// (kaiming-uniform with a = √5) and biases.
fn torch_uniform(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// The model's parameters in `state_dict` order, as (name, tensor) pairs taken from `vs`.
pub fn named_params(vs: &nn::VarStore, cfg: &SimpleUNetConfig) -> Result<Vec<(String, Tensor)>> {
    let vars = vs.variables();
    cfg.tensor_specs()
        .iter()
        .map(|spec| {
            let t = vars
                .get(spec.name)
                .with_context(|| format!("the model has no parameter {}", spec.name))?;
            Ok((spec.name.to_owned(), t.shallow_clone()))
        })
        .collect()
}

/// Copies `tensors` (by name, any device, f32) into the variables of `vs`, checking that every
/// parameter of `cfg` is present with its expected shape. `what` names the source in errors.
pub fn load_params(
    vs: &mut nn::VarStore,
    cfg: &SimpleUNetConfig,
    tensors: &[(String, Tensor)],
    what: &str,
) -> Result<()> {
    let vars = vs.variables();
    for spec in cfg.tensor_specs() {
        let src = tensors
            .iter()
            .find(|(n, _)| n == spec.name)
            .map(|(_, t)| t)
            .with_context(|| format!("{what}: tensor {} is missing", spec.name))?;
        let want: Vec<i64> = spec.dims().iter().map(|&d| d as i64).collect();
        if src.size() != want {
            bail!(
                "{what}: tensor {} has shape {:?}, the model needs {:?}",
                spec.name,
                src.size(),
                want
            );
        }
        let mut dst = vars[spec.name].shallow_clone();
        tch::no_grad(|| dst.copy_(&src.to_kind(Kind::Float)));
    }
    Ok(())
}

/// The flat f32 values of a tensor (moved to the CPU).
pub fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    let t = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view([-1]);
    Vec::<f32>::try_from(&t).context("reading tensor values")
}

/// The SimpleUNet sizes implied by the tensors' shapes (image height and width are not stored
/// in the weights, so the caller gives them).
pub fn infer_config(
    tensors: &[(String, Tensor)],
    height: u32,
    width: u32,
    what: &str,
) -> Result<SimpleUNetConfig> {
    let get = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.size())
            .with_context(|| format!("{what}: tensor {name} is missing"))
    };
    let enc1 = get("enc1.weight")?;
    let enc2 = get("enc2.weight")?;
    if enc1.len() != 4 || enc2.len() != 4 {
        bail!("{what}: enc1.weight and enc2.weight must be 4-D, found {enc1:?} and {enc2:?}");
    }
    let cfg = SimpleUNetConfig {
        channels: enc1[1] as u32,
        height,
        width,
        hidden1: enc1[0] as u32,
        hidden2: enc2[0] as u32,
    };
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("{what}: sizes {cfg:?} not usable: {e}"))?;
    Ok(cfg)
}
