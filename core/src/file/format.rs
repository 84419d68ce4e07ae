//! The model file: the one contract between the trainer and the core.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | [`MAGIC`] |
//! | 2 | format version ([`FORMAT_VERSION`]; version 1, without a recipe, still reads) |
//! | 4 | payload length `n` |
//! | n | payload: postcard [`ModelHeader`], then `header.tensor_count` postcard [`TensorRecord`]s |
//! | 4 | CRC-32 (IEEE) of every preceding byte |
//!
//! Tensors are stored by their PyTorch `state_dict` names, in PyTorch's layouts, with their
//! element bytes little-endian. Decoding borrows names and tensor bytes from the input, so int8
//! tensors can be used in place (from flash on a microcontroller). The decoder never allocates
//! and never panics: every failure is an [`Error`] naming the check that failed.

use serde::{Deserialize, Serialize};

use crate::diffusion::schedule::ScheduleConfig;
use crate::error::{Error, Result};
use crate::file::crc32::crc32;
use crate::file::recipe::Recipe;
use crate::nets::{ModelConfig, NetConfig, TensorSpec};

/// First eight bytes of every model file.
pub const MAGIC: [u8; 8] = *b"DDPMCORE";
/// Format version this build writes (it reads this one and [`FORMAT_VERSION_V1`]).
pub const FORMAT_VERSION: u16 = 2;
/// The first format version: a header without the sampling recipe (decoded with
/// [`Recipe::LEGACY`]).
pub const FORMAT_VERSION_V1: u16 = 1;
/// Bytes before the payload: magic, version, payload length.
pub const PREFIX_LEN: usize = 14;
/// Bytes after the payload: the CRC-32.
pub const SUFFIX_LEN: usize = 4;
/// Most dimensions a stored tensor may have.
pub const MAX_RANK: usize = 4;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    /// IEEE 754 single precision, little-endian.
    F32,
    /// Signed 8-bit integer.
    I8,
    /// Signed 32-bit integer, little-endian.
    I32,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::I8 => 1,
        }
    }
}

/// Numeric format of a model's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// f32 weights, f32 arithmetic.
    F32,
    /// Post-training int8 quantization (TFLite Micro conventions): int8 weights per output
    /// channel, int8 activations per tensor, int32 biases, Q31 requantization; the time MLP
    /// stays f32.
    Int8,
}

/// What a model file says about itself, before its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelHeader<'a> {
    /// Architecture and sizes.
    pub model: ModelConfig,
    /// The noise schedule the model was trained with.
    pub schedule: ScheduleConfig,
    /// f32 or int8.
    pub precision: Precision,
    /// Number of tensor records that follow.
    pub tensor_count: u32,
    /// Free text: how the model was made (command line, seed, data).
    pub note: &'a str,
    /// How the model is meant to be sampled (version 2; [`Recipe::LEGACY`] for version-1
    /// files).
    #[serde(borrow)]
    pub recipe: Recipe<'a>,
}

/// The header of a version-1 file: [`ModelHeader`] without the recipe.
#[derive(Deserialize)]
struct ModelHeaderV1<'a> {
    model: ModelConfig,
    schedule: ScheduleConfig,
    precision: Precision,
    tensor_count: u32,
    note: &'a str,
}

impl<'a> From<ModelHeaderV1<'a>> for ModelHeader<'a> {
    fn from(h: ModelHeaderV1<'a>) -> Self {
        Self {
            model: h.model,
            schedule: h.schedule,
            precision: h.precision,
            tensor_count: h.tensor_count,
            note: h.note,
            recipe: Recipe::LEGACY,
        }
    }
}

/// One stored tensor as encoded: name, dtype, dimensions and raw little-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TensorRecord<'a> {
    /// PyTorch name, e.g. `enc1.weight`.
    pub name: &'a str,
    /// Element type.
    pub dtype: DType,
    /// Number of used entries of `dims`.
    pub rank: u8,
    /// Dimensions; entries past `rank` are 0.
    pub dims: [u32; MAX_RANK],
    /// Element bytes, row-major, little-endian.
    #[serde(borrow)]
    pub data: &'a [u8],
}

impl<'a> TensorRecord<'a> {
    /// The used dimensions.
    pub fn dims(&self) -> &[u32] {
        &self.dims[..(self.rank as usize).min(MAX_RANK)]
    }

    /// Number of elements, or `None` when the product overflows.
    pub fn numel(&self) -> Option<usize> {
        self.dims()
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
    }

    fn validate(&self) -> Result<()> {
        if self.rank as usize > MAX_RANK || self.dims[self.rank as usize..].iter().any(|&d| d != 0)
        {
            return Err(Error::Malformed);
        }
        let expected = self
            .numel()
            .and_then(|n| n.checked_mul(self.dtype.size()))
            .ok_or(Error::Malformed)?;
        if expected != self.data.len() {
            return Err(Error::BadTensorLength {
                expected,
                found: self.data.len(),
            });
        }
        Ok(())
    }

    /// Element `i` of an f32 tensor (`None` when out of range).
    pub fn f32_at(&self, i: usize) -> Option<f32> {
        let b = self.data.get(i * 4..i * 4 + 4)?;
        Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Checks that this tensor is f32 with exactly the dimensions `expected`.
    pub fn check_f32(&self, name: &'static str, expected: &[u32]) -> Result<()> {
        if self.dtype != DType::F32 {
            return Err(Error::DtypeMismatch { name });
        }
        if self.dims() != expected {
            let mut e = [0u32; MAX_RANK];
            for (d, s) in e.iter_mut().zip(expected) {
                *d = *s;
            }
            return Err(Error::ShapeMismatch {
                name,
                expected: e,
                found: self.dims,
            });
        }
        Ok(())
    }

    /// Checks that this tensor is f32 with exactly the dimensions `expected` and copies it into
    /// `out` (whose length must be the element count).
    pub fn copy_f32_checked(
        &self,
        name: &'static str,
        expected: &[u32],
        out: &mut [f32],
    ) -> Result<()> {
        self.check_f32(name, expected)?;
        crate::error::check_len(name, self.data.len() / 4, out.len())?;
        for (o, b) in out.iter_mut().zip(self.data.chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    /// The tensor's elements as f32 (for an f32 tensor).
    #[cfg(feature = "alloc")]
    pub fn to_f32_vec(&self) -> Option<alloc::vec::Vec<f32>> {
        if self.dtype != DType::F32 {
            return None;
        }
        Some(
            self.data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }
}

/// Checks, without copying anything, that `file` holds every tensor of `specs` as f32 with
/// those shapes.
pub(crate) fn check_f32_tensors(file: &ModelFile<'_>, specs: &[TensorSpec]) -> Result<()> {
    for spec in specs {
        file.tensor(spec.name)?.check_f32(spec.name, spec.dims())?;
    }
    Ok(())
}

/// Copies the tensors of `specs` from `file` into `storage`, one after the other in that
/// order (which must hold exactly their elements), checking names, dtypes and shapes.
pub(crate) fn copy_f32_tensors(
    file: &ModelFile<'_>,
    specs: &[TensorSpec],
    storage: &mut [f32],
) -> Result<()> {
    check_f32_tensors(file, specs)?;
    let total = specs.iter().map(TensorSpec::numel).sum();
    crate::error::check_len("parameter storage", total, storage.len())?;
    let mut rest = storage;
    for spec in specs {
        let (dst, tail) = rest.split_at_mut(spec.numel());
        file.tensor(spec.name)?
            .copy_f32_checked(spec.name, spec.dims(), dst)?;
        rest = tail;
    }
    Ok(())
}

/// Splits `params` (the tensors of `specs` one after the other) into one slice per tensor,
/// written to `parts` in order. `params` must hold exactly the elements of `specs`.
pub(crate) fn split_f32_tensors<'w>(
    specs: &[TensorSpec],
    params: &'w [f32],
    parts: &mut [&'w [f32]],
) {
    let mut rest = params;
    for (part, spec) in parts.iter_mut().zip(specs) {
        let (head, tail) = rest.split_at(spec.numel());
        *part = head;
        rest = tail;
    }
}

/// A decoded, checked view of a model file's bytes.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile<'a> {
    header: ModelHeader<'a>,
    records: &'a [u8],
}

impl<'a> ModelFile<'a> {
    /// Checks magic, version, length and checksum, decodes the header and every tensor record
    /// (without allocating) and returns a view over them.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(if MAGIC.starts_with(bytes) {
                Error::Truncated {
                    expected: PREFIX_LEN + SUFFIX_LEN,
                    found: bytes.len(),
                }
            } else {
                Error::BadMagic
            });
        }
        if bytes.len() < PREFIX_LEN {
            return Err(Error::Truncated {
                expected: PREFIX_LEN + SUFFIX_LEN,
                found: bytes.len(),
            });
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION && version != FORMAT_VERSION_V1 {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let payload_len = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
        let total = PREFIX_LEN
            .checked_add(payload_len)
            .and_then(|n| n.checked_add(SUFFIX_LEN))
            .ok_or(Error::Malformed)?;
        if bytes.len() < total {
            return Err(Error::Truncated {
                expected: total,
                found: bytes.len(),
            });
        }
        if bytes.len() > total {
            return Err(Error::TrailingBytes {
                extra: bytes.len() - total,
            });
        }
        let body_end = PREFIX_LEN + payload_len;
        let stored = u32::from_le_bytes([
            bytes[body_end],
            bytes[body_end + 1],
            bytes[body_end + 2],
            bytes[body_end + 3],
        ]);
        let computed = crc32(&bytes[..body_end]);
        if stored != computed {
            return Err(Error::ChecksumMismatch { stored, computed });
        }
        let payload = &bytes[PREFIX_LEN..body_end];
        let (header, records): (ModelHeader<'a>, &'a [u8]) = if version == FORMAT_VERSION_V1 {
            let (h, rest): (ModelHeaderV1<'a>, &'a [u8]) =
                postcard::take_from_bytes(payload).map_err(|_| Error::Malformed)?;
            (h.into(), rest)
        } else {
            postcard::take_from_bytes(payload).map_err(|_| Error::Malformed)?
        };
        header.recipe.check(header.schedule.timesteps)?;
        let file = Self { header, records };
        // Decode every record once, so later lookups cannot fail on a bad record.
        let mut rest = records;
        for _ in 0..header.tensor_count {
            let (rec, tail): (TensorRecord<'a>, &'a [u8]) =
                postcard::take_from_bytes(rest).map_err(|_| Error::Malformed)?;
            rec.validate()?;
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(Error::Malformed);
        }
        Ok(file)
    }

    /// The header.
    pub fn header(&self) -> &ModelHeader<'a> {
        &self.header
    }

    /// The checked sizes of the network an executor for `precision` files of architecture `C`
    /// reads: an error unless the file has that precision and architecture (`wrong_model`
    /// otherwise) and valid sizes.
    pub(crate) fn config_for<C: NetConfig>(
        &self,
        precision: Precision,
        wrong_model: &'static str,
    ) -> Result<C> {
        if self.header.precision != precision {
            return Err(Error::InvalidConfig(match precision {
                Precision::F32 => "not an f32 model file",
                Precision::Int8 => "not an int8 model file",
            }));
        }
        let cfg = C::pick(self.header.model).ok_or(Error::InvalidConfig(wrong_model))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// The tensor records in file order.
    pub fn tensors(&self) -> TensorIter<'a> {
        TensorIter {
            rest: self.records,
            left: self.header.tensor_count,
        }
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &'static str) -> Result<TensorRecord<'a>> {
        self.tensors()
            .find(|t| t.name == name)
            .ok_or(Error::MissingTensor { name })
    }
}

/// Iterator over the tensor records of a [`ModelFile`].
#[derive(Debug, Clone)]
pub struct TensorIter<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for TensorIter<'a> {
    type Item = TensorRecord<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // Every record decoded once in `parse`, so this cannot fail; stop quietly if it did.
        let (rec, tail) = postcard::take_from_bytes::<TensorRecord<'a>>(self.rest).ok()?;
        self.rest = tail;
        self.left -= 1;
        Some(rec)
    }
}

#[cfg(feature = "alloc")]
pub use writer::ModelWriter;

#[cfg(feature = "alloc")]
mod writer {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    struct Owned {
        name: String,
        dtype: DType,
        rank: u8,
        dims: [u32; MAX_RANK],
        data: Vec<u8>,
    }

    /// Builds a model file in memory.
    ///
    /// ```
    /// use ddpm_core::{file::{ModelFile, ModelWriter}, ModelConfig, ScheduleConfig, SimpleUNetConfig};
    /// let mut w = ModelWriter::new(
    ///     ModelConfig::SimpleUNet(SimpleUNetConfig::SEED),
    ///     ScheduleConfig::default(),
    ///     "example",
    /// );
    /// w.push_f32("enc1.bias", &[2], &[0.5, -1.0]).unwrap();
    /// let bytes = w.finish();
    /// let file = ModelFile::parse(&bytes).unwrap();
    /// assert_eq!(file.tensor("enc1.bias").unwrap().f32_at(1), Some(-1.0));
    /// ```
    pub struct ModelWriter {
        model: ModelConfig,
        schedule: ScheduleConfig,
        precision: Precision,
        note: String,
        recipe: crate::file::recipe::OwnedRecipe,
        tensors: Vec<Owned>,
    }

    impl ModelWriter {
        /// A file for `model` trained with `schedule`; `note` records how it was made. Its
        /// recipe is the architecture's default ([`Recipe::for_model`]) until
        /// [`with_recipe`](Self::with_recipe).
        pub fn new(model: ModelConfig, schedule: ScheduleConfig, note: &str) -> Self {
            Self {
                model,
                schedule,
                precision: Precision::F32,
                note: note.into(),
                recipe: (&Recipe::for_model(&model, &schedule)).into(),
                tensors: Vec::new(),
            }
        }

        /// Records how the model is meant to be sampled (checked when the file is parsed:
        /// see [`Recipe::check`]).
        pub fn with_recipe(mut self, recipe: &Recipe<'_>) -> Self {
            self.recipe = recipe.into();
            self
        }

        /// A writer holding everything `file` holds (sizes, schedule, precision, note,
        /// recipe, every tensor record as stored), to write it again with another note or
        /// recipe.
        pub fn copy_of(file: &ModelFile<'_>) -> Result<Self> {
            let h = file.header();
            let mut w = Self::new(h.model, h.schedule, h.note)
                .with_precision(h.precision)
                .with_recipe(&h.recipe);
            for t in file.tensors() {
                w.push_raw(t.name, t.dtype, t.dims(), t.data.to_vec())?;
            }
            Ok(w)
        }

        /// Replaces the note.
        pub fn with_note(mut self, note: &str) -> Self {
            self.note = note.into();
            self
        }

        /// Marks the file as holding a model of the given precision (default: f32).
        pub fn with_precision(mut self, precision: Precision) -> Self {
            self.precision = precision;
            self
        }

        fn push_raw(
            &mut self,
            name: &str,
            dtype: DType,
            dims: &[u32],
            data: Vec<u8>,
        ) -> Result<()> {
            if dims.len() > MAX_RANK {
                return Err(Error::InvalidConfig("tensor rank above 4"));
            }
            let mut d = [0u32; MAX_RANK];
            d[..dims.len()].copy_from_slice(dims);
            let rec = Owned {
                name: name.into(),
                dtype,
                rank: dims.len() as u8,
                dims: d,
                data,
            };
            TensorRecord {
                name: &rec.name,
                dtype,
                rank: rec.rank,
                dims: rec.dims,
                data: &rec.data,
            }
            .validate()?;
            self.tensors.push(rec);
            Ok(())
        }

        /// Adds an f32 tensor.
        pub fn push_f32(&mut self, name: &str, dims: &[u32], data: &[f32]) -> Result<()> {
            let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.push_raw(name, DType::F32, dims, bytes)
        }

        /// Adds an int8 tensor.
        pub fn push_i8(&mut self, name: &str, dims: &[u32], data: &[i8]) -> Result<()> {
            let bytes = data.iter().map(|&v| v as u8).collect();
            self.push_raw(name, DType::I8, dims, bytes)
        }

        /// Adds an int32 tensor.
        pub fn push_i32(&mut self, name: &str, dims: &[u32], data: &[i32]) -> Result<()> {
            let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.push_raw(name, DType::I32, dims, bytes)
        }

        /// Encodes the file: prefix, payload, checksum.
        pub fn finish(&self) -> Vec<u8> {
            let header = ModelHeader {
                model: self.model,
                schedule: self.schedule,
                precision: self.precision,
                tensor_count: self.tensors.len() as u32,
                note: &self.note,
                recipe: self.recipe.as_recipe(),
            };
            let mut out = Vec::with_capacity(
                PREFIX_LEN
                    + 256
                    + self
                        .tensors
                        .iter()
                        .map(|t| t.data.len() + 64)
                        .sum::<usize>(),
            );
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            // Serializing plain data into a Vec cannot fail.
            out = postcard::to_extend(&header, out).expect("postcard into Vec");
            for t in &self.tensors {
                let rec = TensorRecord {
                    name: &t.name,
                    dtype: t.dtype,
                    rank: t.rank,
                    dims: t.dims,
                    data: &t.data,
                };
                out = postcard::to_extend(&rec, out).expect("postcard into Vec");
            }
            let payload_len = (out.len() - PREFIX_LEN) as u32;
            out[10..14].copy_from_slice(&payload_len.to_le_bytes());
            let crc = crc32(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            out
        }
    }
}
