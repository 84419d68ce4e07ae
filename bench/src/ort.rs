//! ONNX Runtime beside the core: `tools/ort_bench.py` in the project's Python (the venv's
//! torch exports the same network from the same weights to ONNX; onnxruntime runs it), driven
//! over its standard input and output one command at a time, so its rounds alternate with the
//! core's in one run.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context, Result};

/// The companion script, relative to the project root.
const SCRIPT: &str = "tools/ort_bench.py";

/// A running `tools/ort_bench.py`.
pub struct Ort {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    dir: PathBuf,
    /// `onnxruntime X torch Y`, as the script reports them.
    pub versions: String,
}

impl Ort {
    /// Exports the network of `safetensors` (`height`×`width` images) to ONNX in `dir` and
    /// starts the script's command loop, with `python` (the venv's, on PATH after
    /// `tools/env.sh`).
    pub fn start(
        python: &str,
        safetensors: &Path,
        dir: &Path,
        (h, w): (usize, usize),
    ) -> Result<Self> {
        if !Path::new(SCRIPT).is_file() {
            bail!("{SCRIPT}: not found (run bench-cpu from the project root for --ort)");
        }
        let onnx = dir.join("model.onnx");
        let mut child = Command::new(python)
            .arg(SCRIPT)
            .arg("--safetensors")
            .arg(safetensors)
            .arg("--onnx")
            .arg(&onnx)
            .args(["--height", &h.to_string(), "--width", &w.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {python} {SCRIPT} (source tools/env.sh after tools/setup.sh, \
                     which installs onnxruntime into .venv)"
                )
            })?;
        let stdin = child.stdin.take().context("the script's stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("the script's stdout")?);
        let mut ort = Self {
            child,
            stdin,
            stdout,
            dir: dir.to_path_buf(),
            versions: String::new(),
        };
        let ready = ort.line().context(
            "tools/ort_bench.py stopped before it was ready (its error is printed above; is \
             onnxruntime installed in the venv? tools/setup.sh installs it)",
        )?;
        ort.versions = ready
            .strip_prefix("ready ")
            .with_context(|| format!("tools/ort_bench.py: unexpected first line {ready:?}"))?
            .to_owned();
        Ok(ort)
    }

    fn line(&mut self) -> Result<String> {
        let mut s = String::new();
        if self.stdout.read_line(&mut s)? == 0 {
            bail!("tools/ort_bench.py exited");
        }
        Ok(s.trim_end().to_owned())
    }

    /// Sends one command and returns its answer (an `error …` answer is an error).
    fn ask(&mut self, cmd: &str) -> Result<String> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        let answer = self.line()?;
        if let Some(e) = answer.strip_prefix("error ") {
            bail!("onnxruntime, {cmd:?}: {e}");
        }
        Ok(answer)
    }

    /// A new session with `threads` intra-op threads.
    pub fn session(&mut self, threads: usize) -> Result<()> {
        self.ask(&format!("session {threads}")).map(drop)
    }

    /// The inputs of the following runs: `x` (`t_in.len()` images) at time inputs `t_in`.
    pub fn input(&mut self, x: &[f32], t_in: &[f32]) -> Result<()> {
        let path = self.dir.join("input.raw");
        let bytes: Vec<u8> = x.iter().chain(t_in).flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, bytes).with_context(|| format!("{}", path.display()))?;
        self.ask(&format!("input {} {}", path.display(), t_in.len()))
            .map(drop)
    }

    /// `k` timed runs; milliseconds each (`session.run` alone, timed by the script).
    pub fn run(&mut self, k: usize) -> Result<Vec<f64>> {
        let answer = self.ask(&format!("run {k}"))?;
        let times: Vec<f64> = answer
            .strip_prefix("times ")
            .with_context(|| format!("unexpected answer {answer:?}"))?
            .split_whitespace()
            .map(|t| t.parse().context("a time in milliseconds"))
            .collect::<Result<_>>()?;
        if times.len() != k {
            bail!("asked for {k} runs, got {} times", times.len());
        }
        Ok(times)
    }

    /// The last run's output.
    pub fn output(&mut self) -> Result<Vec<f32>> {
        let path = self.dir.join("output.raw");
        self.ask(&format!("output {}", path.display()))?;
        let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

impl Drop for Ort {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}
