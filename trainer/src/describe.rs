//! Model files' configurations in the CLI's words, one line each: the network and its sizes,
//! the schedule, the precision and the sampler. The reports of `info`, `sample`, `eval` and
//! `compare-int8` and the error messages that name a configuration use these.
use ddpm_core::diffusion::{
    DdpmVariance, GuidanceInterval, Prediction, SamplerConfig, ScheduleKind, Spacing,
};
use ddpm_core::file::Precision;
use ddpm_core::{ModelConfig, ScheduleConfig};

/// The architecture and its sizes in words.
pub fn describe_model(m: &ModelConfig) -> String {
    match m {
        ModelConfig::SimpleUNet(c) => format!(
            "SimpleUNet {}×{}×{}, hidden widths {}/{}",
            c.channels, c.height, c.width, c.hidden1, c.hidden2
        ),
        ModelConfig::TinyUNet(c) => {
            let [w1, w2, w3] = c.widths;
            let mids = match c.mid_blocks {
                1 => "1 mid block".to_owned(),
                k => format!("{k} mid blocks"),
            };
            let classes = match c.classes {
                0 => String::new(),
                k => format!(", class-conditional ({k} classes)"),
            };
            format!(
                "TinyUNet {}×{}×{}, widths {w1}/{w2}/{w3}, {mids}, embedding {}, time MLP \
                 {}{classes}",
                c.channels, c.height, c.width, c.emb_dim, c.temb_dim
            )
        }
    }
}

/// The schedule in words: kind, T and what the network predicts.
pub fn describe_schedule(s: &ScheduleConfig) -> String {
    let kind = match s.kind {
        ScheduleKind::Linear {
            beta_start,
            beta_end,
        } => format!("linear β {beta_start}..{beta_end}"),
        ScheduleKind::Cosine { s, max_beta } => format!("cosine (s {s}, β ≤ {max_beta})"),
    };
    format!(
        "{kind}, T = {}, predicts {}",
        s.timesteps,
        prediction_name(s.prediction)
    )
}

fn prediction_name(p: Prediction) -> &'static str {
    match p {
        Prediction::Eps => "ε",
        Prediction::V => "v",
    }
}

/// The precision in words (with the int8 scheme).
pub fn describe_precision(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "f32",
        Precision::Int8 => {
            "int8 (weights per output channel, symmetric; activations per tensor; int32 \
             biases; Q31 requantization; time MLP in f32)"
        }
    }
}

/// The `--variance` value as eval's JSON records it.
pub(crate) fn variance_name(v: DdpmVariance) -> &'static str {
    match v {
        DdpmVariance::FixedLarge => "fixed_large",
        DdpmVariance::FixedSmall => "fixed_small",
    }
}

/// The `--spacing` value.
pub(crate) fn spacing_name(s: Spacing) -> &'static str {
    match s {
        Spacing::Leading => "leading",
        Spacing::Trailing => "trailing",
        Spacing::Linspace => "linspace",
    }
}

/// The `--sampler` name of a sampler (as `trainer info --json` and `eval --json` write it).
pub(crate) fn solver_kind(cfg: &SamplerConfig) -> &'static str {
    match cfg {
        SamplerConfig::Ddpm(_) => "ddpm",
        SamplerConfig::Ddim(_) => "ddim",
        SamplerConfig::DpmSolver2M(_) => "dpmpp-2m",
        SamplerConfig::UniPc(_) => "unipc",
    }
}

/// `", guided at t/T in [lo, hi]"`, or nothing for an interval of every step.
pub fn describe_interval(interval: GuidanceInterval) -> String {
    if interval.is_always() {
        return String::new();
    }
    let (lo, hi) = interval.bounds();
    format!(", guided at t/T in [{lo}, {hi}]")
}

/// A one-line description of sampler settings.
pub fn describe_sampler(cfg: &SamplerConfig, timesteps: u32) -> String {
    match cfg {
        SamplerConfig::Ddpm(d) => format!(
            "DDPM {timesteps} steps, {} variance, clip x0 {}",
            match d.variance {
                DdpmVariance::FixedLarge => "fixed-large",
                DdpmVariance::FixedSmall => "fixed-small",
            },
            if d.clip_x0 { "yes" } else { "no" }
        ),
        SamplerConfig::Ddim(d) => format!(
            "DDIM {} steps, η {}, {} spacing, clip x0 {}",
            d.steps,
            d.eta,
            spacing_name(d.spacing),
            match (d.clip_x0, d.recompute_eps) {
                (false, _) => "no",
                (true, false) => "yes",
                (true, true) => "yes (ε recomputed)",
            }
        ),
        SamplerConfig::DpmSolver2M(d) => format!(
            "DPM-Solver++(2M) {} steps, {} spacing",
            d.steps,
            spacing_name(d.spacing)
        ),
        SamplerConfig::UniPc(d) => format!(
            "UniPC (bh2, order 2) {} steps, {} spacing",
            d.steps,
            spacing_name(d.spacing)
        ),
    }
}
