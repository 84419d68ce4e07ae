//! Parses what `firmware-demo` prints over semihosting.

use std::fmt;

/// The numbers the firmware reports.
#[derive(Debug, Clone, PartialEq)]
pub struct FirmwareReport {
    /// Bits of the first values of `GaussianNoise::new(42)`.
    pub noise_bits: Vec<u32>,
    /// Seed the firmware was built with.
    pub seed: u64,
    /// Steps the firmware was built with.
    pub steps: u32,
    /// The sampler the firmware was built with (`DDPM_DEMO_SAMPLER`'s name: `ddim`, ...).
    pub sampler: String,
    /// The guidance weight it was built with (`DDPM_DEMO_GUIDANCE`), `None` for unguided.
    pub guidance: Option<f32>,
    /// The steps its guidance applies at (`DDPM_DEMO_GUIDE_INTERVAL`; the `guide interval:`
    /// line, absent when every step is guided), as (lo, hi).
    pub guide_interval: Option<(f32, f32)>,
    /// The digit a class-conditional build draws (`DDPM_DEMO_CLASS`; the `class:` line, absent
    /// in other builds).
    pub class: Option<u32>,
    /// What an inpainting build completes (`DDPM_DEMO_INPAINT`; the `inpaint:` line, absent in
    /// other builds), as printed: `top hidden, digit 0, resample 2, jump 5`.
    pub inpaint: Option<String>,
    /// Bits of the sampled image's f32 values, before rounding to u8.
    pub x_bits: Vec<u32>,
    /// The sampled image, u8 pixels.
    pub pixels: Vec<u8>,
    /// The printed CRC-32 of the pixels.
    pub checksum: u32,
    /// Stack high-water mark, bytes.
    pub stack_high_water: usize,
    /// What the board timer measured.
    pub clock: ClockReport,
}

/// The board timer's figures (`clock calibration:`, `sample clock:` and, in profiling builds,
/// `profile …` lines). Under QEMU with `-icount` the timer counts executed instructions, and
/// the calibration says how many per tick.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockReport {
    /// Ticks of the short and the long calibration loop.
    pub calibration_ticks: [u64; 2],
    /// Iterations of the short and the long calibration loop.
    pub calibration_iterations: [u64; 2],
    /// Instructions of one calibration iteration.
    pub instructions_per_iteration: u64,
    /// Ticks of the whole sample (parsing the model files, every step).
    pub sample_ticks: u64,
    /// Network passes of the sample.
    pub passes: u32,
    /// The layer profile of one pass (profiling builds only).
    pub profile: Option<Profile>,
}

/// Ticks of one profiled network pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The time MLP and quantizing the input.
    pub begin_ticks: u64,
    /// Name, ticks and multiply-adds of each layer in forward order.
    pub layers: Vec<(String, u64, u64)>,
    /// The output sink's work.
    pub sink_ticks: u64,
}

impl ClockReport {
    /// Instructions per tick, from the difference of the two calibration loops (which
    /// cancels the cost of reading the timer).
    pub fn instructions_per_tick(&self) -> f64 {
        let [n0, n1] = self.calibration_iterations;
        let [t0, t1] = self.calibration_ticks;
        ((n1 - n0) * self.instructions_per_iteration) as f64 / (t1 as f64 - t0 as f64)
    }

    /// Instructions of the whole sample.
    pub fn sample_instructions(&self) -> f64 {
        self.sample_ticks as f64 * self.instructions_per_tick()
    }
}

/// A line the report needs is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line's key (`checksum`, `seed`, ...).
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "firmware output: line `{}:` {}", self.key, self.problem)
    }
}

impl std::error::Error for ParseError {}

/// The text after `key` and its colon on the first line that starts with `key`.
fn value<'a>(text: &'a str, key: &'static str) -> Result<&'a str, ParseError> {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?;
            // `noise bits (seed 42, first 8): ...` carries details before its colon.
            let (head, tail) = rest.split_once(':')?;
            (head.is_empty() || head.starts_with(' ')).then_some(tail.trim())
        })
        .ok_or_else(|| ParseError {
            key,
            problem: "is missing".into(),
        })
}

fn parse_hex_u32(key: &'static str, s: &str) -> Result<u32, ParseError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    u32::from_str_radix(digits, 16).map_err(|e| ParseError {
        key,
        problem: format!("has `{s}`, not a hex u32: {e}"),
    })
}

fn parse_dec<T: std::str::FromStr>(key: &'static str, s: &str) -> Result<T, ParseError>
where
    T::Err: fmt::Display,
{
    s.parse().map_err(|e| ParseError {
        key,
        problem: format!("has `{s}`, not a number: {e}"),
    })
}

impl FirmwareReport {
    /// Reads the report out of the firmware's whole output.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let noise_bits = value(text, "noise bits")?
            .split_whitespace()
            .map(|w| parse_hex_u32("noise bits", w))
            .collect::<Result<Vec<_>, _>>()?;
        let x_bits = value(text, "x bits")?
            .split_whitespace()
            .map(|w| parse_hex_u32("x bits", w))
            .collect::<Result<Vec<_>, _>>()?;
        let pixels = value(text, "pixels")?
            .split_whitespace()
            .map(|w| {
                u8::from_str_radix(w, 16).map_err(|e| ParseError {
                    key: "pixels",
                    problem: format!("has `{w}`, not a hex byte: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let clock = ClockReport::parse(text)?;
        let stack = value(text, "stack high-water")?;
        let stack_bytes = stack.split_whitespace().next().unwrap_or("");
        Ok(Self {
            noise_bits,
            seed: parse_dec("seed", value(text, "seed")?)?,
            steps: parse_dec("steps", value(text, "steps")?)?,
            sampler: value(text, "sampler")?.to_owned(),
            guidance: match value(text, "guidance")? {
                "none" => None,
                w => Some(parse_dec("guidance", w)?),
            },
            guide_interval: match value(text, "guide interval") {
                Ok(v) => {
                    let ends = v
                        .split_whitespace()
                        .map(|w| parse_dec("guide interval", w))
                        .collect::<Result<Vec<f32>, _>>()?;
                    match ends[..] {
                        [lo, hi] => Some((lo, hi)),
                        _ => {
                            return Err(ParseError {
                                key: "guide interval",
                                problem: format!("has {} numbers, not 2", ends.len()),
                            })
                        }
                    }
                }
                Err(_) => None,
            },
            class: match value(text, "class") {
                Ok(k) => Some(parse_dec("class", k)?),
                Err(_) => None,
            },
            inpaint: value(text, "inpaint").ok().map(str::to_owned),
            x_bits,
            pixels,
            checksum: parse_hex_u32("checksum", value(text, "checksum")?)?,
            stack_high_water: parse_dec("stack high-water", stack_bytes)?,
            clock,
        })
    }
}

/// The decimal numbers of `s`'s words, in order (words that are not numbers are skipped).
fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// The numbers of line `key`, which must be `count` of them.
fn numbers_of(text: &str, key: &'static str, count: usize) -> Result<Vec<u64>, ParseError> {
    let n = numbers(value(text, key)?);
    if n.len() != count {
        return Err(ParseError {
            key,
            problem: format!("has {} numbers, not {count}", n.len()),
        });
    }
    Ok(n)
}

impl ClockReport {
    fn parse(text: &str) -> Result<Self, ParseError> {
        // "5000 ticks for 100000 iterations, 55001 ticks for 1100000 (2 instructions each)"
        let c = numbers_of(text, "clock calibration", 5)?;
        let s = numbers_of(text, "sample clock", 2)?;
        let profile = if text.lines().any(|l| l.starts_with("profile ")) {
            let mut layers = Vec::new();
            for l in text.lines() {
                let Some(rest) = l.strip_prefix("profile layer ") else {
                    continue;
                };
                let (name, figures) = rest.split_once(':').ok_or_else(|| ParseError {
                    key: "profile layer",
                    problem: format!("`{l}` has no colon"),
                })?;
                let n = numbers(figures);
                if n.len() != 2 {
                    return Err(ParseError {
                        key: "profile layer",
                        problem: format!("`{l}` does not give ticks and multiply-adds"),
                    });
                }
                layers.push((name.to_owned(), n[0], n[1]));
            }
            Some(Profile {
                begin_ticks: numbers_of(text, "profile begin", 1)?[0],
                layers,
                sink_ticks: numbers_of(text, "profile sink", 1)?[0],
            })
        } else {
            None
        };
        Ok(Self {
            calibration_ticks: [c[0], c[2]],
            calibration_iterations: [c[1], c[3]],
            instructions_per_iteration: c[4],
            sample_ticks: s[0],
            passes: s[1] as u32,
            profile,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "noise bits (seed 42, first 2): 0xbe8986ed 0x3f14fc0c\n\
        seed: 42\n\
        steps: 10\n\
        sampler: unipc\n\
        guidance: 2.5\n\
        model: SimpleUNet 1x2x2\n\
        image:\n\
        @@  \n\
        ..##\n\
        x bits: 0x3f800000 0xbf800000 0xbd800000 0x3f600000\n\
        clock calibration: 5000 ticks for 100000 iterations, 55001 ticks for 1100000 (2 instructions each)\n\
        sample clock: 454708938 ticks, 10 network passes\n\
        pixels: ff 00 10 ee\n\
        checksum: 0x0000abcd\n\
        stack high-water: 1024 bytes (stack region 4096 bytes, 4000 painted)\n";

    #[test]
    fn parses_every_field() {
        let r = FirmwareReport::parse(SAMPLE).unwrap();
        assert_eq!(
            r,
            FirmwareReport {
                noise_bits: vec![0xbe89_86ed, 0x3f14_fc0c],
                seed: 42,
                steps: 10,
                sampler: "unipc".into(),
                guidance: Some(2.5),
                guide_interval: None,
                class: None,
                inpaint: None,
                x_bits: vec![0x3f80_0000, 0xbf80_0000, 0xbd80_0000, 0x3f60_0000],
                pixels: vec![0xff, 0, 0x10, 0xee],
                checksum: 0xabcd,
                stack_high_water: 1024,
                clock: ClockReport {
                    calibration_ticks: [5000, 55001],
                    calibration_iterations: [100_000, 1_100_000],
                    instructions_per_iteration: 2,
                    sample_ticks: 454_708_938,
                    passes: 10,
                    profile: None,
                },
            }
        );
        let per_tick = r.clock.instructions_per_tick();
        assert!((per_tick - 2e6 / 50_001.0).abs() < 1e-12, "{per_tick}");
    }

    #[test]
    fn parses_the_guide_interval() {
        let text = SAMPLE.replace(
            "guidance: 2.5\n",
            "guidance: 2.5\nguide interval: 0.35 0.95\n",
        );
        let r = FirmwareReport::parse(&text).unwrap();
        assert_eq!(r.guide_interval, Some((0.35, 0.95)));
        let bad = SAMPLE.replace("guidance: 2.5\n", "guidance: 2.5\nguide interval: 0.35\n");
        let e = FirmwareReport::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("guide interval") && e.contains("not 2"), "{e}");
    }

    #[test]
    fn parses_the_layer_profile() {
        let text = format!(
            "{SAMPLE}profile begin: 5063 ticks\n\
             profile layer enc0: 67230 ticks, 169344 macs\n\
             profile layer mid1: 430384 ticks, 1382976 macs\n\
             profile sink: 7 ticks\n"
        );
        let p = FirmwareReport::parse(&text).unwrap().clock.profile.unwrap();
        assert_eq!(
            p,
            Profile {
                begin_ticks: 5063,
                layers: vec![
                    ("enc0".into(), 67_230, 169_344),
                    ("mid1".into(), 430_384, 1_382_976)
                ],
                sink_ticks: 7,
            }
        );
        let no_macs = text.replace(", 169344 macs", "");
        let e = FirmwareReport::parse(&no_macs).unwrap_err();
        assert_eq!(e.key, "profile layer");
    }

    #[test]
    fn names_the_missing_or_bad_line() {
        let no_checksum = SAMPLE.replace("checksum: 0x0000abcd\n", "");
        let e = FirmwareReport::parse(&no_checksum).unwrap_err();
        assert_eq!(e.key, "checksum");
        let bad_seed = SAMPLE.replace("seed: 42", "seed: x");
        assert_eq!(FirmwareReport::parse(&bad_seed).unwrap_err().key, "seed");
        let no_sampler = SAMPLE.replace("sampler: unipc\n", "");
        assert_eq!(
            FirmwareReport::parse(&no_sampler).unwrap_err().key,
            "sampler"
        );
        // `seed` must not match the noise line's "(seed 42, ...)" or a longer key.
        assert!(FirmwareReport::parse("seedless: 1\n").is_err());
    }
}
