//! IDX files (the MNIST format): a big-endian u32 magic `0x0000_08NN` (`08` = u8 elements,
//! `NN` = number of dimensions), one big-endian u32 per dimension, then the bytes, row-major.
//! Files may be gzip-compressed (`.gz`).
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// What is wrong with an IDX file; always carries the file's path.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The file could not be read (or decompressed).
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The first four bytes are not an IDX u8 magic.
    #[error("{path}: not an IDX u8 file: magic is {found:#010x}, expected 0x000008NN (NN = number of dimensions)")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic found.
        found: u32,
    },
    /// The file has another number of dimensions than expected.
    #[error("{path}: expected {expected} dimensions (magic {:#010x}), found {found}", 0x0800 + expected)]
    WrongRank {
        /// The file.
        path: PathBuf,
        /// Dimensions wanted.
        expected: usize,
        /// Dimensions in the file.
        found: usize,
    },
    /// The file ends before its header or data does.
    #[error("{path}: truncated: header says {expected} bytes, file has {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header implies.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Bytes follow the data.
    #[error("{path}: {extra} unexpected bytes after the data")]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes after the data.
        extra: u64,
    },
    /// The images and labels files disagree on the number of examples.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// Images in it.
        n_images: usize,
        /// The labels file.
        labels: PathBuf,
        /// Labels in it.
        n_labels: usize,
    },
    /// The images are not the size the model takes.
    #[error("{path}: images are {found_h}x{found_w}, the model takes {want_h}x{want_w}")]
    WrongImageSize {
        /// The images file.
        path: PathBuf,
        /// Height found.
        found_h: usize,
        /// Width found.
        found_w: usize,
        /// Height wanted.
        want_h: usize,
        /// Width wanted.
        want_w: usize,
    },
    /// Neither `name` nor `name.gz` exists in the data directory.
    #[error("{dir}: neither {name} nor {name}.gz found (fetch MNIST with `trainer fetch-data --data {dir}`)")]
    Missing {
        /// The data directory.
        dir: PathBuf,
        /// The file name looked for.
        name: String,
    },
}

/// A decoded IDX u8 array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<u8>,
}

/// Reads a whole file, gunzipping it when its name ends in `.gz`.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, IdxError> {
    let io = |source| IdxError::Io {
        path: path.to_owned(),
        source,
    };
    let raw = fs::read(path).map_err(io)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Decodes IDX bytes read from `path` (used in error messages only).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<IdxArray, IdxError> {
    let truncated = |expected: u64| IdxError::Truncated {
        path: path.to_owned(),
        expected,
        found: bytes.len() as u64,
    };
    if bytes.len() < 4 {
        return Err(truncated(4));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let rank = (magic & 0xff) as usize;
    if magic & 0xffff_ff00 != 0x0000_0800 || rank == 0 {
        return Err(IdxError::BadMagic {
            path: path.to_owned(),
            found: magic,
        });
    }
    let header = 4 + 4 * rank as u64;
    if (bytes.len() as u64) < header {
        return Err(truncated(header));
    }
    let dims: Vec<usize> = bytes[4..header as usize]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let body = dims.iter().map(|&d| d as u64).product::<u64>();
    let total = header + body;
    if (bytes.len() as u64) < total {
        return Err(truncated(total));
    }
    if bytes.len() as u64 > total {
        return Err(IdxError::TrailingBytes {
            path: path.to_owned(),
            extra: bytes.len() as u64 - total,
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header as usize..].to_vec(),
    })
}

/// Reads and decodes an IDX file (raw or `.gz`).
pub fn read_idx(path: &Path) -> Result<IdxArray, IdxError> {
    decode(path, &read_maybe_gz(path)?)
}

/// Reads an IDX file and checks it has `rank` dimensions.
pub fn read_idx_rank(path: &Path, rank: usize) -> Result<IdxArray, IdxError> {
    let a = read_idx(path)?;
    if a.dims.len() != rank {
        return Err(IdxError::WrongRank {
            path: path.to_owned(),
            expected: rank,
            found: a.dims.len(),
        });
    }
    Ok(a)
}

/// Encodes a u8 array as IDX bytes.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    assert!(
        !dims.is_empty() && dims.len() < 256,
        "IDX needs 1 to 255 dimensions"
    );
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "IDX dims do not match the data length"
    );
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&(0x0800u32 + dims.len() as u32).to_be_bytes());
    for &d in dims {
        let d = u32::try_from(d).expect("IDX dimension above u32::MAX");
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Writes an uncompressed IDX file atomically.
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> anyhow::Result<()> {
    ddpm_torch::atomic::write_atomic(path, &encode(dims, data))
}

/// `dir/name` if it exists, else `dir/name.gz`.
pub fn find_in_dir(dir: &Path, name: &str) -> Result<PathBuf, IdxError> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(IdxError::Missing {
        dir: dir.to_owned(),
        name: name.to_owned(),
    })
}

/// Which half of MNIST (or Fashion-MNIST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// 60,000 training examples.
    Train,
    /// 10,000 test examples.
    Test,
}

impl Split {
    /// The base names of the (images, labels) files.
    pub fn file_names(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        }
    }
}

/// Images (N×H×W u8) and their labels.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// Number of images.
    pub len: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Pixels, N·H·W, row-major.
    pub images: Vec<u8>,
    /// Labels, N.
    pub labels: Vec<u8>,
    /// The images file read.
    pub images_path: PathBuf,
}

impl Mnist {
    /// Loads a split from `dir` and checks that images and labels agree and that the images
    /// are `height`×`width`.
    pub fn load(dir: &Path, split: Split, height: usize, width: usize) -> Result<Self, IdxError> {
        let (img_name, lbl_name) = split.file_names();
        let images_path = find_in_dir(dir, img_name)?;
        let labels_path = find_in_dir(dir, lbl_name)?;
        Self::load_files(&images_path, &labels_path, height, width)
    }

    /// Loads an images file and a labels file with the same checks as [`Mnist::load`].
    pub fn load_files(
        images_path: &Path,
        labels_path: &Path,
        height: usize,
        width: usize,
    ) -> Result<Self, IdxError> {
        let images = read_idx_rank(images_path, 3)?;
        let labels = read_idx_rank(labels_path, 1)?;
        let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
        if n != labels.dims[0] {
            return Err(IdxError::CountMismatch {
                images: images_path.to_owned(),
                n_images: n,
                labels: labels_path.to_owned(),
                n_labels: labels.dims[0],
            });
        }
        if (h, w) != (height, width) {
            return Err(IdxError::WrongImageSize {
                path: images_path.to_owned(),
                found_h: h,
                found_w: w,
                want_h: height,
                want_w: width,
            });
        }
        Ok(Self {
            len: n,
            height: h,
            width: w,
            images: images.data,
            labels: labels.data,
            images_path: images_path.to_owned(),
        })
    }

    /// Keeps only the first `n` examples.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len {
            self.len = n;
            self.images.truncate(n * self.height * self.width);
            self.labels.truncate(n);
        }
    }
}

/// The environment variable naming the MNIST directory when no `--data` is given.
pub const DATA_ENV: &str = "DDPM_DATA";

/// The MNIST directory when none is given: `$DDPM_DATA` when set (and not empty), else
/// `data/mnist` (where `trainer fetch-data` writes by default).
pub fn default_data_dir() -> PathBuf {
    resolve_data_dir(None, std::env::var_os(DATA_ENV))
}

/// The MNIST directory: `flag` (`--data DIR`) first, then `env` (the value of
/// [`DATA_ENV`]), then `data/mnist`.
pub fn resolve_data_dir(flag: Option<PathBuf>, env: Option<std::ffi::OsString>) -> PathBuf {
    flag.or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data/mnist"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Writes a small consistent images/labels pair (n images of h×w) into `dir`.
    fn write_pair(dir: &Path, n: usize, h: usize, w: usize, gzip: bool) -> (PathBuf, PathBuf) {
        let pixels: Vec<u8> = (0..n * h * w).map(|i| (i * 7 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let (mut ib, mut lb) = (encode(&[n, h, w], &pixels), encode(&[n], &labels));
        let suffix = if gzip { ".gz" } else { "" };
        let ip = dir.join(format!("train-images-idx3-ubyte{suffix}"));
        let lp = dir.join(format!("train-labels-idx1-ubyte{suffix}"));
        if gzip {
            (ib, lb) = (gz(&ib), gz(&lb));
        }
        fs::write(&ip, ib).unwrap();
        fs::write(&lp, lb).unwrap();
        (ip, lp)
    }

    #[test]
    fn reads_raw_and_gzip_pairs() {
        for gzip in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write_pair(dir.path(), 5, 4, 3, gzip);
            let m = Mnist::load(dir.path(), Split::Train, 4, 3).unwrap();
            assert_eq!((m.len, m.height, m.width), (5, 4, 3));
            assert_eq!(m.images[13], 91); // 13 · 7
            assert_eq!(m.labels, vec![0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn data_directory_is_the_flag_then_the_environment_then_data_mnist() {
        let flag = Some(PathBuf::from("given"));
        let env = Some(std::ffi::OsString::from("from-env"));
        assert_eq!(
            resolve_data_dir(flag.clone(), env.clone()),
            PathBuf::from("given")
        );
        assert_eq!(resolve_data_dir(flag, None), PathBuf::from("given"));
        assert_eq!(resolve_data_dir(None, env), PathBuf::from("from-env"));
        assert_eq!(
            resolve_data_dir(None, Some(std::ffi::OsString::new())),
            PathBuf::from("data/mnist")
        );
        assert_eq!(resolve_data_dir(None, None), PathBuf::from("data/mnist"));
    }

    #[test]
    fn reads_the_shared_mnist_test_split() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist");
        assert!(
            dir.is_dir(),
            "{} missing: the tests read the shared MNIST files",
            dir.display()
        );
        let m = Mnist::load(&dir, Split::Test, 28, 28).unwrap();
        assert_eq!(m.len, 10_000);
        // The first test digit of MNIST is a 7.
        assert_eq!(m.labels[0], 7);
    }

    #[test]
    fn encode_decode_round_trip() {
        let data: Vec<u8> = (0..24).collect();
        let bytes = encode(&[2, 3, 4], &data);
        assert_eq!(&bytes[..4], &[0, 0, 8, 3]);
        let a = decode(Path::new("x"), &bytes).unwrap();
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, data);
    }

    fn msg(e: IdxError) -> String {
        e.to_string()
    }

    #[test]
    fn wrong_magic_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, lp) = write_pair(dir.path(), 2, 2, 2, false);
        let mut b = fs::read(&ip).unwrap();
        b[2] = 0x09;
        fs::write(&ip, b).unwrap();
        let e = Mnist::load_files(&ip, &lp, 2, 2).unwrap_err();
        assert!(
            matches!(e, IdxError::BadMagic { found: 0x0903, .. }),
            "{e:?}"
        );
        assert!(msg(e).contains(&ip.display().to_string()));
    }

    #[test]
    fn truncated_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, lp) = write_pair(dir.path(), 3, 2, 2, false);
        let full = fs::read(&ip).unwrap();
        // Cut inside the data, inside the header and inside the magic.
        for cut in [full.len() - 1, 9, 2] {
            fs::write(&ip, &full[..cut]).unwrap();
            let e = Mnist::load_files(&ip, &lp, 2, 2).unwrap_err();
            assert!(matches!(e, IdxError::Truncated { .. }), "cut {cut}: {e:?}");
            assert!(msg(e).contains(&ip.display().to_string()));
        }
        // A truncated gzip stream is an I/O error naming the file.
        let gzp = dir.path().join("cut.gz");
        let z = gz(&full);
        fs::write(&gzp, &z[..z.len() / 2]).unwrap();
        let e = read_idx(&gzp).unwrap_err();
        assert!(matches!(e, IdxError::Io { .. }), "{e:?}");
        assert!(msg(e).contains("cut.gz"));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut b = encode(&[2], &[1, 2]);
        b.push(0);
        let e = decode(Path::new("labels.idx"), &b).unwrap_err();
        assert!(
            matches!(e, IdxError::TrailingBytes { extra: 1, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, lp) = write_pair(dir.path(), 3, 2, 2, false);
        fs::write(&lp, encode(&[2], &[0, 1])).unwrap();
        let e = Mnist::load_files(&ip, &lp, 2, 2).unwrap_err();
        assert!(
            matches!(
                e,
                IdxError::CountMismatch {
                    n_images: 3,
                    n_labels: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        let m = msg(e);
        assert!(
            m.contains("train-images") && m.contains("train-labels"),
            "{m}"
        );
    }

    #[test]
    fn wrong_image_size_and_rank_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, lp) = write_pair(dir.path(), 2, 4, 4, true);
        let e = Mnist::load_files(&ip, &lp, 28, 28).unwrap_err();
        assert!(
            matches!(e, IdxError::WrongImageSize { found_h: 4, .. }),
            "{e:?}"
        );
        assert!(msg(e).contains("train-images-idx3-ubyte.gz"));
        // Labels given where images are expected.
        let e = Mnist::load_files(&lp, &lp, 4, 4).unwrap_err();
        assert!(
            matches!(
                e,
                IdxError::WrongRank {
                    expected: 3,
                    found: 1,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn missing_files_say_where_they_were_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let e = Mnist::load(dir.path(), Split::Test, 28, 28).unwrap_err();
        let m = msg(e);
        assert!(
            m.contains("t10k-images-idx3-ubyte") && m.contains("fetch-data"),
            "{m}"
        );
    }

    #[test]
    fn truncate_keeps_the_first_examples() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), 5, 2, 2, false);
        let mut m = Mnist::load(dir.path(), Split::Train, 2, 2).unwrap();
        m.truncate(2);
        assert_eq!((m.len, m.images.len(), m.labels.len()), (2, 8, 2));
    }
}
