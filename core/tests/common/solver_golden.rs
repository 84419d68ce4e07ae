//! The golden files of `tools/golden_solvers/make_solver_golden.py` (diffusers' multistep
//! schedulers): a minimal JSON reader and the cases' fixed schedule and "network".

use ddpm_core::diffusion::{Prediction, Schedule, ScheduleConfig, Spacing};

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
