//! The training state ([`Trainer`]): the network, its Adam moments and EMA, the step counter,
//! and the seeding that makes a resumed run continue exactly; one optimizer step, the EMA
//! update, and the checkpoint write and resume.
use std::path::Path;

use super::checkpoint::*;
use super::objective::*;
use super::{FitOptions, ADAM_BETAS, ADAM_EPS};

use anyhow::{bail, Result};
use ddpm_core::{ModelConfig, Prediction, ScheduleConfig};
use tch::{nn, Device, Kind, Tensor};

use ddpm_torch::model::{self, Net};
use ddpm_torch::schedule::DeviceSchedule;

/// Adam's moment estimates for one parameter.
pub(super) struct AdamState {
    pub(super) exp_avg: Tensor,
    pub(super) exp_avg_sq: Tensor,
}

/// The training state that a checkpoint holds.
pub struct Trainer {
    /// The parameters.
    pub vs: nn::VarStore,
    /// The network over `vs`.
    pub net: Net,
    pub(super) params: Vec<(String, Tensor)>,
    pub(super) adam: Vec<AdamState>,
    pub(super) ema: Option<Vec<Tensor>>,
    pub(super) step: u64,
    pub(super) epochs_done: usize,
    pub(super) step_losses: Vec<f32>,
    pub(super) epoch_losses: Vec<f64>,
    pub(super) schedule: ScheduleConfig,
}

/// A 64-bit mix (splitmix64 finaliser) of the seed with a stream tag and a counter, folded into
/// the non-negative i64 range `tch::manual_seed` takes.
pub fn derive_seed(seed: u64, tag: u64, counter: u64) -> i64 {
    let mut z = seed
        ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ counter.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 1) as i64
}

/// Copies the weights of the model file `path` into `params` (the new network's, by name): the
/// file must hold the same network, or its unconditional twin when the new one is
/// class-conditional, whose class embedding then starts at zero (so training starts from the
/// unconditional network's outputs for every class). The schedule must match too.
fn init_from(path: &Path, opts: &FitOptions, params: &[(String, Tensor)]) -> Result<()> {
    let what = format!("--init {}", path.display());
    let m = ddpm_torch::export::read_model_file(path)?;
    let same = match (m.config, opts.model) {
        (ModelConfig::TinyUNet(a), ModelConfig::TinyUNet(b)) => {
            a == b || (a.classes == 0 && ddpm_core::TinyUNetConfig { classes: 0, ..b } == a)
        }
        (a, b) => a == b,
    };
    if !same {
        bail!(
            "{what}: holds {}, but this run trains {}",
            crate::describe::describe_model(&m.config),
            crate::describe::describe_model(&opts.model)
        );
    }
    if m.schedule != opts.schedule {
        bail!("{what}: was trained with another schedule or prediction than this run's");
    }
    tch::no_grad(|| {
        for (name, p) in params {
            let mut p = p.shallow_clone();
            match m.tensors.iter().find(|(n, _)| n == name) {
                Some((_, src)) => p.copy_(&src.to_device(p.device())),
                None => {
                    let _ = p.zero_();
                }
            }
        }
    });
    Ok(())
}

pub(super) const TAG_INIT: u64 = 1;
pub(super) const TAG_EPOCH: u64 = 2;
pub(super) const TAG_STEP: u64 = 3;

impl Trainer {
    /// Fresh weights (PyTorch's default initialisation, seeded), zero Adam state, EMA = weights.
    pub fn new(opts: &FitOptions) -> Result<Self> {
        tch::manual_seed(derive_seed(opts.seed, TAG_INIT, 0));
        let vs = nn::VarStore::new(opts.device);
        let net = Net::new(&vs.root(), opts.model);
        let params = model::named_params(&vs, &opts.model)?;
        if let Some(path) = &opts.init {
            init_from(path, opts, &params)?;
        }
        let adam = params
            .iter()
            .map(|(_, p)| AdamState {
                exp_avg: p.zeros_like(),
                exp_avg_sq: p.zeros_like(),
            })
            .collect();
        let ema = opts
            .ema
            .map(|_| params.iter().map(|(_, p)| p.detach().copy()).collect());
        Ok(Self {
            vs,
            net,
            params,
            adam,
            ema,
            step: 0,
            epochs_done: 0,
            step_losses: Vec::new(),
            epoch_losses: Vec::new(),
            schedule: opts.schedule,
        })
    }

    /// Optimizer steps taken.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The weights to export: the EMA when kept, else the raw weights.
    pub fn export_params(&self) -> Vec<(String, Tensor)> {
        match &self.ema {
            Some(ema) => self
                .params
                .iter()
                .zip(ema)
                .map(|((n, _), e)| (n.clone(), e.shallow_clone()))
                .collect(),
            None => self
                .params
                .iter()
                .map(|(n, p)| (n.clone(), p.shallow_clone()))
                .collect(),
        }
    }

    /// PyTorch's Adam update (`torch.optim.Adam`, single-tensor path, no weight decay).
    pub(super) fn adam_step(&mut self, lr: f64) {
        self.step += 1;
        let (b1, b2) = ADAM_BETAS;
        let n = self.step as i32;
        let bias1 = 1.0 - b1.powi(n);
        let bias2_sqrt = (1.0 - b2.powi(n)).sqrt();
        let step_size = lr / bias1;
        tch::no_grad(|| {
            for ((_, p), st) in self.params.iter_mut().zip(&mut self.adam) {
                let g = p.grad();
                let _ = st.exp_avg.lerp_(&g, 1.0 - b1);
                let _ = st.exp_avg_sq.g_mul_scalar_(b2);
                let _ = st.exp_avg_sq.addcmul_(&(&g * (1.0 - b2)), &g);
                let denom = st.exp_avg_sq.sqrt() / bias2_sqrt + ADAM_EPS;
                let _ = p.addcdiv_(&(&st.exp_avg * -step_size), &denom);
            }
        });
    }

    /// EMA update after step n (1-based): decay min(DECAY, (1 + n)/(10 + n)) with n counted
    /// from 0 at the first update, so early averages do not keep the random initial weights.
    pub(super) fn ema_update(&mut self, decay: f64) {
        let n = (self.step - 1) as f64;
        let d = decay.min((1.0 + n) / (10.0 + n));
        if let Some(ema) = &mut self.ema {
            tch::no_grad(|| {
                for (e, (_, p)) in ema.iter_mut().zip(&self.params) {
                    let _ = e.lerp_(p, 1.0 - d);
                }
            });
        }
    }

    pub(super) fn zero_grad(&mut self) {
        for (_, p) in self.params.iter_mut() {
            p.zero_grad();
        }
    }

    /// One optimizer step on the images `x0` (N×C×H×W in [−1, 1]) with their labels `y` (N
    /// class indices, read by a class-conditional network only); returns the loss tensor.
    ///
    /// A class-conditional network's labels are replaced by "no class" with probability
    /// `opts.label_drop`, drawn after t and ε (so an unconditional run's draws are unchanged).
    pub fn train_step(
        &mut self,
        x0: &Tensor,
        y: &Tensor,
        sched: &DeviceSchedule,
        opts: &FitOptions,
        lr: f64,
    ) -> Tensor {
        tch::manual_seed(derive_seed(opts.seed, TAG_STEP, self.step));
        let b = x0.size()[0];
        let t = Tensor::randint(sched.timesteps, [b], (Kind::Int64, x0.device()));
        let noise = x0.randn_like();
        let a = sched
            .sqrt_alphas_cumprod
            .index_select(0, &t)
            .view([-1, 1, 1, 1]);
        let s = sched
            .sqrt_one_minus_alphas_cumprod
            .index_select(0, &t)
            .view([-1, 1, 1, 1]);
        let x_t = &a * x0 + &s * &noise;
        let t_in = t.to_kind(Kind::Float) / sched.timesteps as f64;
        let labels = match self.net.config() {
            ModelConfig::TinyUNet(c) if c.is_conditional() => {
                let drop = Tensor::rand([b], (Kind::Float, x0.device())).lt(opts.label_drop);
                let null = Tensor::full([b], i64::from(c.null_class()), (Kind::Int64, x0.device()));
                Some(null.where_self(&drop, y))
            }
            _ => None,
        };
        let pred = self.net.forward_labelled(&x_t, &t_in, labels.as_ref());
        let target = match opts.schedule.prediction {
            Prediction::Eps => noise,
            Prediction::V => a * &noise - s * x0,
        };
        let loss = eps_loss(
            &pred,
            &target,
            &t,
            sched,
            opts.loss_weight,
            opts.schedule.prediction,
        );
        self.zero_grad();
        loss.backward();
        self.adam_step(lr);
        if let Some(decay) = opts.ema {
            self.ema_update(decay);
        }
        loss.detach()
    }

    /// Writes the checkpoint atomically.
    pub fn save_checkpoint(&self, path: &Path, identity: &str) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for ((name, p), st) in self.params.iter().zip(&self.adam) {
            named.push((format!("model.{name}"), p.detach()));
            named.push((format!("adam.exp_avg.{name}"), st.exp_avg.shallow_clone()));
            named.push((
                format!("adam.exp_avg_sq.{name}"),
                st.exp_avg_sq.shallow_clone(),
            ));
        }
        if let Some(ema) = &self.ema {
            for ((name, _), e) in self.params.iter().zip(ema) {
                named.push((format!("ema.{name}"), e.shallow_clone()));
            }
        }
        named.push(("state.step".into(), Tensor::from_slice(&[self.step as i64])));
        named.push((
            "state.epochs".into(),
            Tensor::from_slice(&[self.epochs_done as i64]),
        ));
        named.push((
            "state.identity".into(),
            Tensor::from_slice(identity.as_bytes()),
        ));
        let model = self.net.config();
        named.push((
            "state.model".into(),
            Tensor::from_slice(&model_to_ints(&model)),
        ));
        if let ModelConfig::TinyUNet(_) = model {
            named.push(("state.arch".into(), Tensor::from_slice(b"tiny")));
        }
        named.push((
            "state.schedule".into(),
            Tensor::from_slice(&schedule_to_floats(&self.schedule)),
        ));
        named.push((
            "state.step_losses".into(),
            Tensor::from_slice(&self.step_losses),
        ));
        named.push((
            "state.epoch_losses".into(),
            Tensor::from_slice(&self.epoch_losses),
        ));
        let cpu: Vec<(String, Tensor)> = named
            .into_iter()
            .map(|(n, t)| (n, t.to_device(Device::Cpu)))
            .collect();
        ddpm_torch::atomic::write_atomic_with(path, |tmp| {
            Tensor::write_safetensors(&cpu, tmp)?;
            Ok(())
        })
    }

    /// Restores the state from a checkpoint written with the same identity.
    pub fn load_checkpoint(&mut self, path: &Path, identity: &str) -> Result<()> {
        let ckpt = CheckpointTensors::read(path)?;
        let what = &ckpt.what;
        let saved = Vec::<u8>::try_from(ckpt.get("state.identity")?)?;
        let saved = String::from_utf8_lossy(&saved);
        if saved != identity {
            bail!(
                "{what}: checkpoint was written with other settings; resume needs the same \
                 model, schedule, batch size, seed, EMA and data size.\n checkpoint:\n{saved} \
                 this run:\n{identity}"
            );
        }
        let device = self.vs.device();
        let copy_into = |dst: &mut Tensor, name: &str| -> Result<()> {
            let src = ckpt.get(name)?;
            if src.size() != dst.size() {
                bail!(
                    "{what}: {name} has shape {:?}, expected {:?}",
                    src.size(),
                    dst.size()
                );
            }
            tch::no_grad(|| dst.copy_(&src.to_device(device)));
            Ok(())
        };
        for i in 0..self.params.len() {
            let name = self.params[i].0.clone();
            copy_into(&mut self.params[i].1, &format!("model.{name}"))?;
            copy_into(&mut self.adam[i].exp_avg, &format!("adam.exp_avg.{name}"))?;
            copy_into(
                &mut self.adam[i].exp_avg_sq,
                &format!("adam.exp_avg_sq.{name}"),
            )?;
            if let Some(ema) = &mut self.ema {
                copy_into(&mut ema[i], &format!("ema.{name}"))?;
            }
        }
        self.step = ckpt.get("state.step")?.int64_value(&[0]) as u64;
        self.epochs_done = ckpt.get("state.epochs")?.int64_value(&[0]) as usize;
        self.step_losses = Vec::<f32>::try_from(ckpt.get("state.step_losses")?)?;
        self.epoch_losses = Vec::<f64>::try_from(ckpt.get("state.epoch_losses")?)?;
        Ok(())
    }

    /// The loss curve as CSV: `step,epoch,loss`.
    pub(super) fn loss_csv(&self, steps_per_epoch: usize) -> String {
        let mut s = String::from("step,epoch,loss\n");
        for (i, l) in self.step_losses.iter().enumerate() {
            s.push_str(&format!("{},{},{l}\n", i + 1, i / steps_per_epoch + 1));
        }
        s
    }
}
