//! `fetch-data` against HTTP servers on 127.0.0.1 (no internet here): one serving the shared
//! MNIST files, one serving a corrupted copy, one answering 404.

mod common;

use common::shared_mnist;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;

use ddpm_trainer::data::fetch::{self, Outcome, MNIST_FILES};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// What a local mirror serves for `/<name>.gz`.
#[derive(Clone, Copy)]
enum Mirror {
    /// The shared files as they are.
    Good,
    /// Valid gzip whose decompressed content has one byte changed.
    Corrupted,
    /// 404 for everything.
    Missing,
}

fn corrupted_gz(original_gz: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    GzDecoder::new(original_gz).read_to_end(&mut raw).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x5a;
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&raw).unwrap();
    e.finish().unwrap()
}

fn respond(mut stream: TcpStream, kind: Mirror, files: &[(String, Vec<u8>)]) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let name = path.trim_start_matches('/');
    let body = match kind {
        Mirror::Missing => None,
        _ => files.iter().find(|(n, _)| n == name).map(|(_, b)| b),
    };
    let _ = match body {
        Some(b) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            );
            stream
                .write_all(head.as_bytes())
                .and_then(|_| stream.write_all(b))
        }
        None => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}

/// Starts a mirror on 127.0.0.1 (loopback only) and returns its base URL.
fn start_mirror(kind: Mirror) -> String {
    let dir = shared_mnist();
    let files: Vec<(String, Vec<u8>)> = MNIST_FILES
        .iter()
        .map(|f| {
            let name = format!("{}.gz", f.name);
            let gz = std::fs::read(dir.join(&name)).unwrap();
            let body = match kind {
                Mirror::Corrupted => corrupted_gz(&gz),
                _ => gz,
            };
            (name, body)
        })
        .collect();
    let files = Arc::new(files);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = Arc::clone(&files);
            std::thread::spawn(move || respond(stream, kind, &files));
        }
    });
    format!("http://127.0.0.1:{port}/")
}

#[test]
fn corrupted_downloads_are_deleted_and_the_next_mirror_is_used() {
    let missing = start_mirror(Mirror::Missing);
    let bad = start_mirror(Mirror::Corrupted);
    let good = start_mirror(Mirror::Good);
    let dir = tempfile::tempdir().unwrap();
    let mut log = Vec::new();
    let done = fetch::fetch_mnist(
        dir.path(),
        &[missing.clone(), bad.clone(), good.clone()],
        false,
        &mut |m| log.push(m.to_owned()),
    )
    .unwrap();
    let log = log.join("\n");
    for (file, outcome) in &done {
        assert_eq!(
            outcome,
            &Outcome::Downloaded(format!("{good}{}.gz", file.name)),
            "{log}"
        );
        let bytes = std::fs::read(dir.path().join(file.name)).unwrap();
        assert_eq!(fetch::sha256_hex(&bytes), file.sha256);
        // The 404 and the corrupted copy were both reported, and the bad copy deleted.
        assert!(
            log.contains(&format!("{missing}{}.gz: download failed", file.name)),
            "{log}"
        );
        assert!(
            log.contains(&format!("{bad}{}.gz: checksum mismatch", file.name)),
            "{log}"
        );
    }
    assert!(log.contains("deleted the download"), "{log}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".download") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The files load as MNIST, and a second run finds them present.
    let m = ddpm_trainer::data::idx::Mnist::load(
        dir.path(),
        ddpm_trainer::data::idx::Split::Train,
        28,
        28,
    )
    .unwrap();
    assert_eq!(m.len, 60_000);
    let again = fetch::fetch_mnist(dir.path(), &[bad], false, &mut |_| {}).unwrap();
    assert!(again.iter().all(|(_, o)| *o == Outcome::AlreadyPresent));
}

#[test]
fn cli_reports_a_corrupted_mirror_and_keeps_nothing() {
    let bad = start_mirror(Mirror::Corrupted);
    let dir = tempfile::tempdir().unwrap();
    // A file already there with wrong contents is deleted, not trusted.
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), b"stale").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["fetch-data", "--no-progress", "--data"])
        .arg(dir.path())
        .args(["--mirror", &bad])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(stderr.contains("deleted the download"), "{stderr}");
    assert!(stderr.contains("train-images-idx3-ubyte"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn cli_fetches_into_ddpm_data_without_a_data_flag() {
    let bad = start_mirror(Mirror::Corrupted);
    let dir = tempfile::tempdir().unwrap();
    // The stale file in $DDPM_DATA is what the command checks and deletes: it looked there.
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), b"stale").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["fetch-data", "--no-progress", "--mirror", &bad])
        .env("DDPM_DATA", dir.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(
        !dir.path().join("train-images-idx3-ubyte").exists(),
        "{stderr}"
    );
    assert!(!dir.path().join("data/mnist").exists(), "{stderr}");
}
