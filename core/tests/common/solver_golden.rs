//! The golden files of `tools/golden_solvers/make_solver_golden.py` (diffusers' multistep
//! schedulers): a minimal JSON reader and the cases' fixed schedule and "network".

use ddpm_core::diffusion::{Prediction, Schedule, ScheduleConfig, Spacing};
use proptest::prelude::*;

// ---- a minimal JSON reader: objects, arrays, numbers and escape-free strings, all the golden
// files hold ----

#[derive(Debug, Clone)]
pub enum Json {
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(kv) => {
                &kv.iter()
                    .find(|(k, _)| k == key)
                    .unwrap_or_else(|| panic!("no key {key}"))
                    .1
            }
            _ => panic!("not an object"),
        }
    }
    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => panic!("not an array"),
        }
    }
    pub fn num(&self) -> f64 {
        match self {
            Json::Num(v) => *v,
            _ => panic!("not a number"),
        }
    }
    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string"),
        }
    }
    pub fn u32s(&self) -> Vec<u32> {
        self.arr().iter().map(|v| v.num() as u32).collect()
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.s[self.i], c, "at byte {}", self.i);
        self.i += 1;
    }
    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(kv);
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value() else {
                        panic!("object key is not a string")
                    };
                    self.eat(b':');
                    kv.push((k, self.value()));
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b'}' {
                        return Json::Obj(kv);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(a);
                }
                loop {
                    a.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b']' {
                        return Json::Arr(a);
                    }
                }
            }
            b'"' => {
                // The golden file's strings carry no escapes.
                let start = self.i + 1;
                let len = self.s[start..].iter().position(|&c| c == b'"').unwrap();
                self.i = start + len + 1;
                Json::Str(String::from_utf8(self.s[start..start + len].to_vec()).unwrap())
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                Json::Num(text.parse().unwrap_or_else(|_| panic!("bad number {text}")))
            }
        }
    }
}

pub fn spacing(name: &str) -> Spacing {
    match name {
        "linspace" => Spacing::Linspace,
        "leading" => Spacing::Leading,
        "trailing" => Spacing::Trailing,
        _ => panic!("unknown spacing {name}"),
    }
}

pub fn schedule(kind: &str, prediction: &str, big_t: u32) -> Schedule {
    let cfg = match kind {
        "linear" => ScheduleConfig::linear(big_t, 1e-4, 0.02),
        "cosine" => ScheduleConfig::cosine(big_t),
        _ => panic!("unknown schedule {kind}"),
    };
    let pred = match prediction {
        "epsilon" => Prediction::Eps,
        "v_prediction" => Prediction::V,
        _ => panic!("unknown prediction {prediction}"),
    };
    Schedule::new(&cfg.predicting(pred)).unwrap()
}

/// The golden file's fixed "network": 0.5·x + 0.1·sin(x + t/T), here in f32.
pub fn model_output(x: f32, t: u32, big_t: u32) -> f32 {
    0.5 * x + 0.1 * (x + t as f32 / big_t as f32).sin()
}

/// Parses a golden file.
pub fn parse(text: &str) -> Json {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.value()
}

/// One step of FNV-1a 64 over a u32's little-endian bytes (the generator's timestep
/// fingerprints).
pub fn fnv1a64(h: &mut u64, word: u32) {
    for b in word.to_le_bytes() {
        *h = (*h ^ b as u64).wrapping_mul(0x100000001B3);
    }
}

/// Any of the three spacings.
pub fn any_spacing() -> impl Strategy<Value = Spacing> {
    prop_oneof![
        Just(Spacing::Linspace),
        Just(Spacing::Leading),
        Just(Spacing::Trailing)
    ]
}

/// Runs every case of the golden file `g`: `run(name, schedule, steps, spacing, rows, x)` steps
/// `x` (starting at the file's x_T) and returns, per row, the image after that step; each is
/// compared with the row, and the largest relative deviation (max |x − golden| / max |golden|
/// over the values, after any step) of each case must be within `tol`. Returns the largest.
pub fn check_trajectories(
    g: &Json,
    tol: f64,
    mut run: impl FnMut(&str, &Schedule, u32, Spacing, usize, &mut Vec<f32>) -> Vec<Vec<f32>>,
) -> f64 {
    let big_t = g.get("T").num() as u32;
    let x_t: Vec<f32> = g.get("x_T").arr().iter().map(|v| v.num() as f32).collect();
    let mut worst_all = 0.0f64;
    for case in g.get("cases").arr() {
        let name = format!(
            "{}/{}/{}/{}",
            case.get("schedule").str(),
            case.get("prediction").str(),
            case.get("spacing").str(),
            case.get("steps").num()
        );
        let sched = schedule(
            case.get("schedule").str(),
            case.get("prediction").str(),
            big_t,
        );
        let n = case.get("steps").num() as u32;
        let rows = case.get("x").arr();
        let mut x = x_t.clone();
        let got = run(
            &name,
            &sched,
            n,
            spacing(case.get("spacing").str()),
            rows.len(),
            &mut x,
        );
        assert_eq!(got.len(), rows.len(), "{name}");
        let mut worst = 0.0f64;
        for (xs, row) in got.iter().zip(rows) {
            let want: Vec<f64> = row.arr().iter().map(Json::num).collect();
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = xs
                .iter()
                .zip(&want)
                .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
            worst = worst.max(err / scale);
        }
        assert!(
            worst <= tol,
            "{name}: relative deviation {worst:.3e} > {tol:.0e}"
        );
        worst_all = worst_all.max(worst);
    }
    println!("largest relative deviation from diffusers: {worst_all:.3e}");
    worst_all
}
