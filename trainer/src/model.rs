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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_have_pytorch_names_shapes_and_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = SimpleUNetConfig::SEED;
        let _net = SimpleUNet::new(&vs.root(), cfg);
        let params = named_params(&vs, &cfg).unwrap();
        assert_eq!(vs.variables().len(), 12);
        for ((name, t), spec) in params.iter().zip(cfg.tensor_specs()) {
            assert_eq!(name, spec.name);
            let want: Vec<i64> = spec.dims().iter().map(|&d| d as i64).collect();
            assert_eq!(t.size(), want, "{name}");
        }
        let total: i64 = params.iter().map(|(_, t)| t.numel() as i64).sum();
        assert_eq!(total, 165_633);
    }

    #[test]
    fn initialisation_is_pytorchs_uniform_one_over_sqrt_fan_in() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = SimpleUNetConfig::SEED;
        let _net = SimpleUNet::new(&vs.root(), cfg);
        // fan_in = weight.size(1)·k·k: for the transposed convs that is the output channels.
        let fan_in = [
            ("enc1", 9.0),
            ("enc2", 64.0 * 9.0),
            ("dec1", 64.0 * 9.0),
            ("dec2", 9.0),
            ("time_mlp.0", 1.0),
            ("time_mlp.2", 128.0),
        ];
        let vars = vs.variables();
        for (layer, fan) in fan_in {
            let bound = 1.0 / f64::sqrt(fan);
            for kind in ["weight", "bias"] {
                let t = &vars[&format!("{layer}.{kind}")];
                let max = t.abs().max().double_value(&[]);
                assert!(max <= bound, "{layer}.{kind}: max {max} > bound {bound}");
                if t.numel() >= 4096 {
                    // Uniform(−b, b) has standard deviation b/√3.
                    let std = t.std(true).double_value(&[]);
                    let want = bound / 3f64.sqrt();
                    assert!(
                        (std / want - 1.0).abs() < 0.05,
                        "{layer}.{kind}: std {std} vs {want}"
                    );
                }
            }
        }
        // The biases are not all zero (tch's default for conv biases would be).
        assert!(
            vars["enc2.bias"]
                .abs()
                .sum(tch::Kind::Float)
                .double_value(&[])
                > 0.0
        );
    }

    #[test]
    fn infer_config_reads_sizes_from_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = SimpleUNetConfig {
            channels: 3,
            height: 8,
            width: 6,
            hidden1: 5,
            hidden2: 7,
        };
        let _net = SimpleUNet::new(&vs.root(), cfg);
        let params = named_params(&vs, &cfg).unwrap();
        assert_eq!(infer_config(&params, 8, 6, "x").unwrap(), cfg);
        let e = infer_config(&params[2..], 8, 6, "weights.safetensors").unwrap_err();
        assert!(e
            .to_string()
            .contains("weights.safetensors: tensor enc1.weight is missing"));
    }

    #[test]
    fn forward_shape_and_time_conditioning() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SimpleUNet::new(&vs.root(), SimpleUNetConfig::SEED);
        let x = Tensor::randn([2, 1, 28, 28], (Kind::Float, Device::Cpu));
        let a = net.forward(&x, &Tensor::from_slice(&[0.0f32, 0.0]));
        let b = net.forward(&x, &Tensor::from_slice(&[0.0f32, 0.9]));
        assert_eq!(a.size(), vec![2, 1, 28, 28]);
        assert!(a.get(0).equal(&b.get(0)));
        assert!(!a.get(1).equal(&b.get(1)), "t did not change the output");
    }
}
