//! What the page's tests share: the committed models, the host's drawing with the page's
//! settings, a static file server for `web/www` on 127.0.0.1, and a WebDriver session with
//! headless Chromium.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ddpm_web::session::{Model, Session, Settings};
use serde_json::{json, Value};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Committed model `name` (under `models/`), loaded as the page loads it.
pub fn model(name: &str) -> Model {
    let path = root().join("models").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Model::load(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The committed MNIST test digit `i` (`models/mnist_test_digits.idx`), u8 pixels.
pub fn test_digit(i: usize) -> Vec<u8> {
    let path = root().join("models/mnist_test_digits.idx");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes[16 + i * 784..][..784].to_vec()
}

/// The finished drawing of `model` (guided by `guide`) with `settings`, completing `known`.
pub fn drawn(
    model: &Model,
    guide: Option<&Model>,
    settings: &Settings,
    known: Option<ddpm_web::session::Known>,
) -> Session {
    let mut s = Session::new(model, guide, settings, known).unwrap();
    s.finish().unwrap();
    s
}

/// Serves the files under `dir` on 127.0.0.1 (a port of its own) until the test ends, and
/// `extra` (path, bytes) pairs at those paths; anything else is 404.
pub struct StaticServer {
    pub port: u16,
}

impl StaticServer {
    pub fn start(dir: PathBuf, extra: Vec<(String, Vec<u8>)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (dir, extra) = (dir.clone(), extra.clone());
                thread::spawn(move || serve(stream, &dir, &extra));
            }
        });
        Self { port }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}/{path_and_query}", self.port)
    }
}

fn serve(mut stream: TcpStream, dir: &Path, extra: &[(String, Vec<u8>)]) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Drain the headers.
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let path = path
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let body = match extra.iter().find(|(p, _)| p == path) {
        Some((_, b)) => Some(b.clone()),
        None if !path.split('/').any(|c| c == "..") => std::fs::read(dir.join(path)).ok(),
        None => None,
    };
    let kind = match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    };
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// A free port on 127.0.0.1 (bound and released: another program may take it first, which
/// only makes the caller fail to start).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// ChromeDriver with a headless Chromium session, both stopped when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile_dir::Dir,
}

/// An empty folder for Chromium's profile, removed afterwards.
mod tempfile_dir {
    use std::path::PathBuf;
    pub struct Dir(pub PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!(
                "ddpm-web-chromium-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Chromium and ChromeDriver, from Debian's `chromium` and `chromium-driver` packages unless
/// `CHROMIUM` and `CHROMEDRIVER` say otherwise.
fn programs() -> (String, String) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    for p in [&chromium, &driver] {
        assert!(
            Path::new(p).exists(),
            "{p} is missing: the page's tests drive a real Chromium; install Debian's chromium and \
             chromium-driver (tools/setup-web.sh) or point CHROMIUM / CHROMEDRIVER at them"
        );
    }
    (chromium, driver)
}

impl Browser {
    pub fn start() -> Self {
        let (chromium, driver_path) = programs();
        let port = free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e}"));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        loop {
            let ready = agent
                .get(&format!("{base}/status"))
                .call()
                .ok()
                .and_then(|r| r.into_body().read_to_string().ok())
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{driver_path} did not answer on port {port} within 30 s"
            );
            thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile_dir::Dir::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            },
        }}});
        let mut b = Self {
            driver,
            base,
            session: String::new(),
            agent,
            _profile: profile,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_owned();
        b
    }

    /// A WebDriver command; returns its `value`, panicking on an error answer.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        }
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let ok = resp.status().is_success();
        let text = resp.into_body().read_to_string().unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}: {text}"));
        assert!(ok, "WebDriver {method} {path} failed: {text}");
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        );
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Waits until the page has finished `runs` drawings (its status `done`) or failed (status
    /// `error`), at most `limit`, and returns the page's figures: status, checksum, error
    /// text, kept-pixel deviation, compute times (ms) of every drawing.
    pub fn wait_result(&self, runs: usize, limit: Duration) -> PageResult {
        let t0 = Instant::now();
        loop {
            let v = self.eval(
                "const g = (id) => document.getElementById(id);\
                 return [g('status').dataset.state, g('checksum').textContent, g('error').textContent,\
                 g('kept').dataset.worst || null, g('sampletime').dataset.allMs || '',\
                 g('steptime').textContent, g('sampletime').dataset.wallMs || null];",
            );
            let state = v[0].as_str().unwrap_or("").to_owned();
            let compute_ms: Vec<f64> = v[4]
                .as_str()
                .unwrap_or("")
                .split(',')
                .filter_map(|t| t.parse().ok())
                .collect();
            if (state == "done" && compute_ms.len() >= runs) || state == "error" {
                return PageResult {
                    state,
                    checksum: v[1].as_str().unwrap_or("").to_owned(),
                    error: v[2].as_str().unwrap_or("").to_owned(),
                    kept_worst: v[3].as_str().and_then(|s| s.parse().ok()),
                    compute_ms,
                    step_time: v[5].as_str().unwrap_or("").to_owned(),
                    wall_ms: v[6].as_str().and_then(|t| t.parse().ok()),
                };
            }
            assert!(
                t0.elapsed() < limit,
                "the page did not finish within {limit:?} (status {state})"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the page as it is shown.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.call("GET", &self.session_path("/screenshot"), None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a base64 screenshot"))
            .expect("valid base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.agent.delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// What the page showed at the end of a drawing.
#[derive(Debug)]
pub struct PageResult {
    pub state: String,
    pub checksum: String,
    pub error: String,
    pub kept_worst: Option<u32>,
    /// Milliseconds of computing of each drawing, in order.
    pub compute_ms: Vec<f64>,
    pub step_time: String,
    /// Milliseconds from the first step to the last of the last drawing, a frame drawn after
    /// each step.
    pub wall_ms: Option<f64>,
}
