//! The crate's one error type.

use core::fmt;

/// Which check of a model file or a configuration failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The file does not start with [`crate::file::MAGIC`].
    BadMagic,
    /// The file's format version is not one this build reads.
    UnsupportedVersion {
        /// Version found in the file.
        found: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// The file is shorter than its own length field says.
    Truncated {
        /// Bytes the file should have.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// Bytes follow the end of the file's payload and checksum.
    TrailingBytes {
        /// Number of unexpected bytes.
        extra: usize,
    },
    /// The CRC-32 stored in the file does not match its contents.
    ChecksumMismatch {
        /// Checksum stored in the file.
        stored: u32,
        /// Checksum computed over the payload.
        computed: u32,
    },
    /// The payload passed the checksum but does not decode (written by a buggy writer).
    Malformed,
    /// A tensor the model needs is not in the file.
    MissingTensor {
        /// PyTorch name of the tensor.
        name: &'static str,
    },
    /// A tensor has other dimensions than the model configuration implies.
    ShapeMismatch {
        /// PyTorch name of the tensor.
        name: &'static str,
        /// Dimensions the configuration implies (unused trailing entries are 0).
        expected: [u32; 4],
        /// Dimensions found (unused trailing entries are 0).
        found: [u32; 4],
    },
    /// A tensor has another element type than expected.
    DtypeMismatch {
        /// PyTorch name of the tensor.
        name: &'static str,
    },
    /// A tensor's byte length does not match its dimensions and element type.
    BadTensorLength {
        /// Byte length implied by dims and dtype.
        expected: usize,
        /// Byte length found.
        found: usize,
    },
    /// A caller-provided buffer is too small (or, for inputs, of the wrong length).
    BufferSize {
        /// Which buffer.
        what: &'static str,
        /// Elements required.
        needed: usize,
        /// Elements provided.
        got: usize,
    },
    /// A configuration value is out of range; the text says which.
    InvalidConfig(&'static str),
}

/// Result alias used throughout the crate.
pub type Result<T> = core::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadMagic => write!(f, "not a ddpm-core model file (bad magic bytes)"),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "model file format version {found} is not supported (this build reads version {supported})"
            ),
            Error::Truncated { expected, found } => write!(
                f,
                "model file is truncated: {found} bytes present, {expected} expected"
            ),
            Error::TrailingBytes { extra } => {
                write!(f, "model file has {extra} unexpected bytes after its checksum")
            }
            Error::ChecksumMismatch { stored, computed } => write!(
                f,
                "model file is corrupted: stored CRC-32 {stored:#010x}, computed {computed:#010x}"
            ),
            Error::Malformed => write!(f, "model file payload does not decode"),
            Error::MissingTensor { name } => write!(f, "model file lacks tensor `{name}`"),
            Error::ShapeMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}` has shape {found:?}, the model configuration needs {expected:?}"
            ),
            Error::DtypeMismatch { name } => write!(f, "tensor `{name}` has the wrong dtype"),
            Error::BadTensorLength { expected, found } => write!(
                f,
                "tensor data is {found} bytes, its shape and dtype need {expected}"
            ),
            Error::BufferSize { what, needed, got } => write!(
                f,
                "buffer `{what}` has {got} elements, {needed} required"
            ),
            Error::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Checks that `buf` has exactly `needed` elements.
pub(crate) fn check_len(what: &'static str, needed: usize, got: usize) -> Result<()> {
    if needed == got {
        Ok(())
    } else {
        Err(Error::BufferSize { what, needed, got })
    }
}

/// Checks that `buf` has at least `needed` elements.
pub(crate) fn check_min_len(what: &'static str, needed: usize, got: usize) -> Result<()> {
    if got >= needed {
        Ok(())
    } else {
        Err(Error::BufferSize { what, needed, got })
    }
}
