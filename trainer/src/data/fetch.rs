//! `trainer fetch-data`: downloads the four MNIST files from public mirrors and keeps them only
//! when their decompressed contents match the published checksums.
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// The usual public MNIST mirrors (base URLs; a file's URL is base + name + `.gz`).
pub const DEFAULT_MIRRORS: [&str; 3] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// One MNIST file: its name (without `.gz`) and the SHA-256 of its decompressed contents, as
/// listed in `../shared/data/README.md`.
#[derive(Debug, Clone, Copy)]
pub struct MnistFile {
    /// Decompressed file name.
    pub name: &'static str,
    /// SHA-256 of the decompressed file, lowercase hex.
    pub sha256: &'static str,
}

/// The four MNIST files.
pub const MNIST_FILES: [MnistFile; 4] = [
    MnistFile {
        name: "train-images-idx3-ubyte",
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    MnistFile {
        name: "train-labels-idx1-ubyte",
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    MnistFile {
        name: "t10k-images-idx3-ubyte",
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    MnistFile {
        name: "t10k-labels-idx1-ubyte",
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

/// Largest download accepted (the biggest MNIST file is under 10 MB compressed).
const MAX_DOWNLOAD: u64 = 256 << 20;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already present with the right checksum.
    AlreadyPresent,
    /// Downloaded and verified from this URL.
    Downloaded(String),
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host == "127.0.0.1" || host == "localhost" || rest.starts_with("[::1]")
}

fn agent_for(url: &str) -> ureq::Agent {
    let mut cfg = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_global(Some(Duration::from_secs(600)));
    if is_loopback(url) {
        // A proxy from the environment must not intercept a local server.
        cfg = cfg.proxy(None);
    }
    cfg.build().into()
}

/// Downloads `url` into `dest`, with a progress bar when `progress` is set.
fn download(url: &str, dest: &Path, progress: bool) -> Result<()> {
    let mut resp = agent_for(url)
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let body = resp.body_mut();
    let bar = if progress {
        let bar = match body.content_length() {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid progress template"),
        );
        bar.set_message(url.to_owned());
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut reader = bar.wrap_read(body.with_config().limit(MAX_DOWNLOAD).reader());
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the body of {url}"))?;
    bar.finish_and_clear();
    fs::write(dest, &bytes).with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

/// Decompresses a downloaded file (or takes it as is when it is not gzip) and checks its SHA-256.
fn verify(download: &Path, file: &MnistFile) -> Result<Vec<u8>> {
    let raw = fs::read(download).with_context(|| format!("reading {}", download.display()))?;
    let data = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: not a valid gzip stream", download.display()))?;
        out
    } else {
        raw
    };
    let found = sha256_hex(&data);
    if found != file.sha256 {
        bail!(
            "checksum mismatch for {}: SHA-256 of the decompressed data is {found}, expected {}",
            file.name,
            file.sha256
        );
    }
    Ok(data)
}

/// Makes sure `dir/<name>` exists with the published checksum, downloading it from the first
/// mirror that serves a correct copy. A download that fails verification is deleted and the
/// next mirror tried; the messages say so.
pub fn fetch_file(
    dir: &Path,
    file: &MnistFile,
    mirrors: &[String],
    progress: bool,
    log: &mut dyn FnMut(&str),
) -> Result<Outcome> {
    let target = dir.join(file.name);
    if let Ok(existing) = fs::read(&target) {
        if sha256_hex(&existing) == file.sha256 {
            return Ok(Outcome::AlreadyPresent);
        }
        fs::remove_file(&target).with_context(|| format!("removing {}", target.display()))?;
        log(&format!(
            "{}: present but its checksum does not match; deleted it, downloading again",
            target.display()
        ));
    }
    let partial: PathBuf = dir.join(format!("{}.gz.download", file.name));
    let mut failures = Vec::new();
    for base in mirrors {
        let url = format!("{}{}.gz", with_slash(base), file.name);
        if let Err(e) = download(&url, &partial, progress) {
            let _ = fs::remove_file(&partial);
            log(&format!("{url}: download failed: {e:#}"));
            failures.push(format!("{url}: {e:#}"));
            continue;
        }
        match verify(&partial, file) {
            Ok(data) => {
                ddpm_torch::atomic::write_atomic(&target, &data)?;
                fs::remove_file(&partial)
                    .with_context(|| format!("removing {}", partial.display()))?;
                return Ok(Outcome::Downloaded(url));
            }
            Err(e) => {
                fs::remove_file(&partial)
                    .with_context(|| format!("removing {}", partial.display()))?;
                log(&format!(
                    "{url}: {e:#}; deleted the download {}",
                    partial.display()
                ));
                failures.push(format!("{url}: {e:#} (download deleted)"));
            }
        }
    }
    bail!(
        "could not get a verified {} from any mirror:\n  {}",
        file.name,
        failures.join("\n  ")
    )
}

fn with_slash(base: &str) -> String {
    if base.ends_with('/') {
        base.to_owned()
    } else {
        format!("{base}/")
    }
}

/// Fetches all four MNIST files into `dir`; stops at the first file no mirror serves correctly.
pub fn fetch_mnist(
    dir: &Path,
    mirrors: &[String],
    progress: bool,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<(MnistFile, Outcome)>> {
    if mirrors.is_empty() {
        bail!("no mirrors given");
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut done = Vec::new();
    for file in &MNIST_FILES {
        let outcome = fetch_file(dir, file, mirrors, progress, log)?;
        match &outcome {
            Outcome::AlreadyPresent => log(&format!("{}: already present, verified", file.name)),
            Outcome::Downloaded(url) => {
                log(&format!("{}: downloaded from {url}, verified", file.name))
            }
        }
        done.push((*file, outcome));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("http://127.0.0.1:8080/mnist/"));
        assert!(is_loopback("http://localhost/x"));
        assert!(!is_loopback(
            "https://storage.googleapis.com/cvdf-datasets/mnist/"
        ));
    }
}
