//! The networks in tch: the seed's SimpleUNet and the compact TinyUNet, with PyTorch's
//! `state_dict` names (`enc1.weight`, …, `time_mlp.2.bias`; `enc0.weight`, `enc0_temb.weight`,
//! …, `out.bias`) as the `VarStore` names, so weights map name for name onto a PyTorch
//! checkpoint and onto the model file. [`Net`] holds either.
use anyhow::{bail, Context, Result};
use ddpm_core::tiny_unet::{TINY_MAX_PERIOD, TINY_MID_NAMES, TINY_TIME_SCALE};
use ddpm_core::{AsModelConfig, ModelConfig, SimpleUNetConfig, TensorSpec, TinyUNetConfig};
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

/// TinyUNet (see `ddpm_core::TinyUNetConfig` for the table of layers): the sinusoidal
/// embedding of 1000·t_in → `time_mlp.0` Linear(E→D) → ReLU → `time_mlp.2` Linear(D→D) = temb;
/// blocks `ReLU(conv(x) + <block>_temb(temb))` enc0 (c→w1), down1 (stride 2, w1→w2), down2
/// (stride 2, w2→w3), mid (w3→w3), up2 (nearest ×2 of mid, concatenated with down1's output,
/// w3+w2→w2), up1 (nearest ×2 of up2, concatenated with enc0's output, w2+w1→w1); `out`
/// Conv2d(w1→c) without ReLU.
#[derive(Debug)]
pub struct TinyUNet {
    cfg: TinyUNetConfig,
    /// The embedding's f32 frequencies, the table `ddpm_core::kernels::reference::sinusoidal_frequency`
    /// gives, so both sides multiply by the same numbers.
    freqs: Tensor,
    time0: nn::Linear,
    time2: nn::Linear,
    /// Conv and time projection of enc0, down1, down2, mid, mid1 …, up2, up1 (forward order).
    blocks: Vec<(nn::Conv2D, nn::Linear)>,
    out: nn::Conv2D,
    /// `class_emb.weight` `[K + 1, D]` of a class-conditional network (row K: "no class").
    class_emb: Option<Tensor>,
}

impl TinyUNet {
    /// Creates the layers under `path` with PyTorch's default initialisation (uniform in
    /// ±1/√fan_in for weights and biases, as for SimpleUNet).
    pub fn new(path: &nn::Path, cfg: TinyUNetConfig) -> Self {
        let c = cfg.channels as i64;
        let [w1, w2, w3] = cfg.widths.map(i64::from);
        let (e, d) = (cfg.emb_dim as i64, cfg.temb_dim as i64);
        let conv = |in_c: i64, stride: i64| nn::ConvConfig {
            padding: 1,
            stride,
            ws_init: torch_uniform(in_c * 9),
            bs_init: torch_uniform(in_c * 9),
            ..Default::default()
        };
        let linear = |fan_in: i64| nn::LinearConfig {
            ws_init: torch_uniform(fan_in),
            bs_init: Some(torch_uniform(fan_in)),
            bias: true,
        };
        let time = path / "time_mlp";
        let time0 = nn::linear(&time / "0", e, d, linear(e));
        let time2 = nn::linear(&time / "2", d, d, linear(d));
        // (name, in, out, stride) in forward order (the order of TinyUNetConfig::tensor_specs).
        let mids = (0..cfg.mid_blocks as usize).map(|k| {
            let name = TINY_MID_NAMES[k][0].trim_end_matches(".weight");
            (name, w3, w3, 1)
        });
        let layout: Vec<(&str, i64, i64, i64)> = [
            ("enc0", c, w1, 1),
            ("down1", w1, w2, 2),
            ("down2", w2, w3, 2),
        ]
        .into_iter()
        .chain(mids)
        .chain([("up2", w3 + w2, w2, 1), ("up1", w2 + w1, w1, 1)])
        .collect();
        let blocks = layout
            .iter()
            .map(|&(name, i, o, stride)| {
                (
                    nn::conv2d(path / name, i, o, 3, conv(i, stride)),
                    nn::linear(path / format!("{name}_temb"), d, o, linear(d)),
                )
            })
            .collect();
        let out = nn::conv2d(path / "out", w1, c, 3, conv(w1, 1));
        // nn.Embedding's default initialisation: N(0, 1).
        let class_emb = cfg.is_conditional().then(|| {
            (path / "class_emb").var(
                "weight",
                &[i64::from(cfg.classes) + 1, d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )
        });
        let half = cfg.emb_dim as usize / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|k| ddpm_core::kernels::reference::sinusoidal_frequency(k, half, TINY_MAX_PERIOD))
            .collect();
        Self {
            cfg,
            freqs: Tensor::from_slice(&freqs).to_device(path.device()),
            time0,
            time2,
            blocks,
            out,
            class_emb,
        }
    }

    /// The sizes.
    pub fn config(&self) -> &TinyUNetConfig {
        &self.cfg
    }

    /// The sinusoidal embedding `[sin(s·f), cos(s·f)]` of s = 1000·t_in, N×E.
    pub fn embedding(&self, t_in: &Tensor) -> Tensor {
        let s = t_in * f64::from(TINY_TIME_SCALE);
        let arg = s.unsqueeze(-1) * self.freqs.unsqueeze(0);
        Tensor::cat(&[arg.sin(), arg.cos()], -1)
    }

    /// Predicted noise for `x` (N×C×H×W) at network time inputs `t_in` (N values of t/T);
    /// a class-conditional network computes for "no class".
    pub fn forward(&self, x: &Tensor, t_in: &Tensor) -> Tensor {
        self.forward_labelled(x, t_in, None)
    }

    /// [`Self::forward`] for class labels `y` (N int64 indices in 0..=K, K meaning "no
    /// class"; `None`: all "no class"), whose embedding rows are added to temb. An
    /// unconditional network ignores `y`.
    pub fn forward_labelled(&self, x: &Tensor, t_in: &Tensor, y: Option<&Tensor>) -> Tensor {
        let temb = self
            .time2
            .forward(&self.time0.forward(&self.embedding(t_in)).relu());
        let temb = if let Some(table) = &self.class_emb {
            let null;
            let y = match y {
                Some(y) => y,
                None => {
                    let n = t_in.size()[0];
                    null = Tensor::full(
                        [n],
                        i64::from(self.cfg.null_class()),
                        (Kind::Int64, t_in.device()),
                    );
                    &null
                }
            };
            temb + table.index_select(0, y)
        } else {
            temb
        };
        let block = |k: usize, x: &Tensor| {
            let (conv, proj) = &self.blocks[k];
            let p = proj.forward(&temb);
            let o = p.size()[1];
            (conv.forward(x) + p.view([-1, o, 1, 1])).relu()
        };
        let up = |x: &Tensor| {
            let s = x.size();
            x.upsample_nearest2d([2 * s[2], 2 * s[3]], None, None)
        };
        let mids = self.cfg.mid_blocks as usize;
        let s1 = block(0, x);
        let s2 = block(1, &s1);
        let mut m = block(2, &s2);
        for k in 3..3 + mids {
            m = block(k, &m);
        }
        let u2 = block(3 + mids, &Tensor::cat(&[up(&m), s2], 1));
        let u1 = block(4 + mids, &Tensor::cat(&[up(&u2), s1], 1));
        self.out.forward(&u1)
    }
}

/// Either network, chosen by its configuration.
#[derive(Debug)]
pub enum Net {
    /// The seed's SimpleUNet.
    Simple(Box<SimpleUNet>),
    /// The compact down-sampling U-Net.
    Tiny(Box<TinyUNet>),
}

impl Net {
    /// Creates the network `cfg` describes under `path` (PyTorch's default initialisation).
    pub fn new(path: &nn::Path, cfg: impl Into<ModelConfig>) -> Self {
        match cfg.into() {
            ModelConfig::SimpleUNet(c) => Net::Simple(Box::new(SimpleUNet::new(path, c))),
            ModelConfig::TinyUNet(c) => Net::Tiny(Box::new(TinyUNet::new(path, c))),
        }
    }

    /// The architecture and sizes.
    pub fn config(&self) -> ModelConfig {
        match self {
            Net::Simple(n) => ModelConfig::SimpleUNet(*n.config()),
            Net::Tiny(n) => ModelConfig::TinyUNet(*n.config()),
        }
    }

    /// Predicted noise for `x` (N×C×H×W) at network time inputs `t_in` (N values of t/T).
    pub fn forward(&self, x: &Tensor, t_in: &Tensor) -> Tensor {
        self.forward_labelled(x, t_in, None)
    }

    /// [`Self::forward`] with class labels `y` for a class-conditional TinyUNet
    /// ([`TinyUNet::forward_labelled`]); other networks ignore them.
    pub fn forward_labelled(&self, x: &Tensor, t_in: &Tensor, y: Option<&Tensor>) -> Tensor {
        match self {
            Net::Simple(n) => n.forward(x, t_in),
            Net::Tiny(n) => n.forward_labelled(x, t_in, y),
        }
    }
}

/// The model's parameters in `state_dict` order, as (name, tensor) pairs taken from `vs`;
/// `cfg` is a `ModelConfig` or either architecture's configuration.
pub fn named_params(vs: &nn::VarStore, cfg: &impl AsModelConfig) -> Result<Vec<(String, Tensor)>> {
    let vars = vs.variables();
    cfg.as_model_config()
        .tensor_specs()
        .iter()
        .map(|spec| {
            let t = vars
                .get(spec.name)
                .with_context(|| format!("the model has no parameter {}", spec.name))?;
            Ok((spec.name.to_owned(), t.shallow_clone()))
        })
        .collect()
}

/// The dimensions of `spec` as tch sizes.
pub fn dims_i64(spec: &TensorSpec) -> Vec<i64> {
    spec.dims().iter().map(|&d| d as i64).collect()
}

/// The tensor named `spec.name` in `tensors`, checked to have `spec`'s shape. Errors:
/// `missing()` when there is none, `wrong_shape(has, wants)` when its shape differs.
pub fn named_tensor<'a>(
    tensors: &'a [(String, Tensor)],
    spec: &TensorSpec,
    missing: impl FnOnce() -> String,
    wrong_shape: impl FnOnce(&[i64], &[i64]) -> String,
) -> Result<&'a Tensor> {
    let t = tensors
        .iter()
        .find(|(n, _)| n == spec.name)
        .map(|(_, t)| t)
        .with_context(missing)?;
    let want = dims_i64(spec);
    if t.size() != want {
        bail!(wrong_shape(&t.size(), &want));
    }
    Ok(t)
}

/// Copies `tensors` (by name, any device, f32) into the variables of `vs`, checking that every
/// parameter of `cfg` is present with its expected shape. `what` names the source in errors.
pub fn load_params(
    vs: &mut nn::VarStore,
    cfg: &impl AsModelConfig,
    tensors: &[(String, Tensor)],
    what: &str,
) -> Result<()> {
    let vars = vs.variables();
    for spec in &cfg.as_model_config().tensor_specs() {
        let src = named_tensor(
            tensors,
            spec,
            || format!("{what}: tensor {} is missing", spec.name),
            |has, want| {
                format!(
                    "{what}: tensor {} has shape {has:?}, the model needs {want:?}",
                    spec.name
                )
            },
        )?;
        let mut dst = vars[spec.name].shallow_clone();
        tch::no_grad(|| dst.copy_(&src.to_kind(Kind::Float)));
    }
    Ok(())
}

/// The network `cfg` describes on `device`, its parameters copied from `tensors` (see
/// [`load_params`]; `what` names the source in errors), with the var store that holds them
/// (keep it alive while the network is used).
pub fn load_net(
    cfg: ModelConfig,
    tensors: &[(String, Tensor)],
    device: Device,
    what: &str,
) -> Result<(nn::VarStore, Net)> {
    let mut vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), cfg);
    load_params(&mut vs, &cfg, tensors, what)?;
    Ok((vs, net))
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

/// The architecture and sizes implied by the tensors' names and shapes: TinyUNet when there is
/// an `enc0.weight`, else SimpleUNet (image height and width are not stored in the weights, so
/// the caller gives them).
pub fn infer_config(
    tensors: &[(String, Tensor)],
    height: u32,
    width: u32,
    what: &str,
) -> Result<ModelConfig> {
    let get = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.size())
            .with_context(|| format!("{what}: tensor {name} is missing"))
    };
    if tensors.iter().any(|(n, _)| n == "enc0.weight") {
        let enc0 = get("enc0.weight")?;
        let down1 = get("down1.weight")?;
        let down2 = get("down2.weight")?;
        let time0 = get("time_mlp.0.weight")?;
        if enc0.len() != 4 || down1.len() != 4 || down2.len() != 4 || time0.len() != 2 {
            bail!(
                "{what}: enc0/down1/down2 weights must be 4-D and time_mlp.0.weight 2-D, found \
                 {enc0:?}, {down1:?}, {down2:?} and {time0:?}"
            );
        }
        let cfg = TinyUNetConfig {
            channels: enc0[1] as u32,
            height,
            width,
            widths: [enc0[0] as u32, down1[0] as u32, down2[0] as u32],
            mid_blocks: 1 + TINY_MID_NAMES[1..]
                .iter()
                .take_while(|names| tensors.iter().any(|(n, _)| n == names[0]))
                .count() as u32,
            emb_dim: time0[1] as u32,
            temb_dim: time0[0] as u32,
            // class_emb.weight is [K + 1, D].
            classes: match tensors.iter().find(|(n, _)| n == "class_emb.weight") {
                Some((_, t)) => (t.size()[0] - 1).max(0) as u32,
                None => 0,
            },
        };
        cfg.validate().map_err(|e| {
            anyhow::anyhow!(
                "{what}: TinyUNet widths {}/{}/{}, {} mid blocks, embedding {}, time MLP {} \
                     not usable: {e}",
                cfg.widths[0],
                cfg.widths[1],
                cfg.widths[2],
                cfg.mid_blocks,
                cfg.emb_dim,
                cfg.temb_dim
            )
        })?;
        return Ok(ModelConfig::TinyUNet(cfg));
    }
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
    cfg.validate().map_err(|e| {
        anyhow::anyhow!(
            "{what}: SimpleUNet {}×{}×{}, hidden widths {}/{} not usable: {e}",
            cfg.channels,
            cfg.height,
            cfg.width,
            cfg.hidden1,
            cfg.hidden2
        )
    })?;
    Ok(ModelConfig::SimpleUNet(cfg))
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
        assert_eq!(
            infer_config(&params, 8, 6, "x").unwrap(),
            ModelConfig::SimpleUNet(cfg)
        );
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

    #[test]
    fn tiny_unet_names_shapes_count_and_init() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = TinyUNetConfig::DEFAULT;
        let net = Net::new(&vs.root(), cfg);
        assert_eq!(net.config(), ModelConfig::TinyUNet(cfg));
        let params = named_params(&vs, &cfg).unwrap();
        assert_eq!(vs.variables().len(), cfg.tensor_count());
        for ((name, t), spec) in params.iter().zip(cfg.tensor_specs()) {
            assert_eq!(name, spec.name);
            let want: Vec<i64> = spec.dims().iter().map(|&d| d as i64).collect();
            assert_eq!(t.size(), want, "{name}");
            // fan_in = weight.size(1)·k·k for convs, weight.size(1) for linears.
            let w = &vs.variables()[&format!("{}.weight", name.rsplit_once('.').unwrap().0)];
            let s = w.size();
            let fan_in = s[1] * if s.len() == 4 { 9 } else { 1 };
            let max = t.abs().max().double_value(&[]);
            assert!(max <= 1.0 / (fan_in as f64).sqrt(), "{name}: {max}");
        }
        let total: i64 = params.iter().map(|(_, t)| t.numel() as i64).sum();
        assert_eq!(total, 221_505);
        assert_eq!(
            infer_config(&params, 28, 28, "x").unwrap(),
            ModelConfig::TinyUNet(cfg)
        );
    }

    #[test]
    fn tiny_unet_forward_shape_and_time_conditioning() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = TinyUNet::new(&vs.root(), TinyUNetConfig::DEFAULT);
        let x = Tensor::randn([2, 1, 28, 28], (Kind::Float, Device::Cpu));
        let a = net.forward(&x, &Tensor::from_slice(&[0.5f32, 0.5]));
        let b = net.forward(&x, &Tensor::from_slice(&[0.5f32, 0.51]));
        assert_eq!(a.size(), vec![2, 1, 28, 28]);
        assert!(a.get(0).equal(&b.get(0)));
        assert!(!a.get(1).equal(&b.get(1)), "t did not change the output");
        // The embedding is [sin, cos] of 1000·t_in times the core's frequencies: at t_in = 0
        // the sines are 0 and the cosines 1.
        let e = net.embedding(&Tensor::from_slice(&[0.0f32]));
        let v = to_f32_vec(&e).unwrap();
        assert_eq!(v[..16], [0.0; 16]);
        assert_eq!(v[16..], [1.0; 16]);
    }
}
