//! Little-endian views of tensor bytes borrowed from a model file, and typed look-ups of the
//! tensors and quantization scalars the int8 executors read in place.

use crate::error::{Error, Result};
use crate::file::format::{DType, ModelFile, TensorRecord};
use crate::kernels::quant::ActQuant;

/// Declares a view of little-endian 4-byte values of type `$t` borrowed from file bytes.
macro_rules! le_view {
    ($(#[$doc:meta])* $name:ident, $t:ty, $zero:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a>(pub(crate) &'a [u8]);

        impl<'a> $name<'a> {
            /// A view of `bytes` (4 per value).
            pub fn new(bytes: &'a [u8]) -> Self {
                Self(bytes)
            }
            /// Element `i` (0 past the end; lengths are checked at construction).
            #[inline]
            pub fn get(&self, i: usize) -> $t {
                match self.0.get(i * 4..i * 4 + 4) {
                    Some(b) => <$t>::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    None => $zero,
                }
            }
            /// Number of elements.
            pub fn len(&self) -> usize {
                self.0.len() / 4
            }
            /// True when empty.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }
    };
}

le_view!(
    /// Little-endian i32 values borrowed from file bytes.
    I32Le,
    i32,
    0
);
le_view!(
    /// Little-endian f32 values borrowed from file bytes.
    F32Le,
    f32,
    0.0
);

/// The f32 time MLP `Linear(e → d)`, ReLU, `Linear(d → d)` over borrowed file bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeMlp<'a> {
    pub(crate) w0: F32Le<'a>,
    pub(crate) b0: F32Le<'a>,
    pub(crate) w2: F32Le<'a>,
    pub(crate) b2: F32Le<'a>,
}

impl<'a> TimeMlp<'a> {
    /// Borrows `time_mlp.{0,2}.{weight,bias}` from `file`, checking dtypes and shapes.
    pub(crate) fn load(file: &ModelFile<'a>, e: u32, d: u32) -> Result<Self> {
        let f = |name, dims: &[u32]| -> Result<F32Le<'a>> {
            Ok(F32Le(tensor(file, name, DType::F32, dims)?.data))
        };
        Ok(Self {
            w0: f("time_mlp.0.weight", &[d, e])?,
            b0: f("time_mlp.0.bias", &[d])?,
            w2: f("time_mlp.2.weight", &[d, d])?,
            b2: f("time_mlp.2.bias", &[d])?,
        })
    }
}

pub(crate) fn tensor<'a>(
    file: &ModelFile<'a>,
    name: &'static str,
    dtype: DType,
    dims: &[u32],
) -> Result<TensorRecord<'a>> {
    let t = file.tensor(name)?;
    if t.dtype != dtype {
        return Err(Error::DtypeMismatch { name });
    }
    if t.dims() != dims {
        let mut e = [0u32; 4];
        e[..dims.len()].copy_from_slice(dims);
        return Err(Error::ShapeMismatch {
            name,
            expected: e,
            found: t.dims,
        });
    }
    Ok(t)
}

pub(crate) fn scalar_f32(file: &ModelFile<'_>, name: &'static str) -> Result<f32> {
    Ok(F32Le(tensor(file, name, DType::F32, &[1])?.data).get(0))
}

pub(crate) fn scalar_i32(file: &ModelFile<'_>, name: &'static str) -> Result<i32> {
    let v = I32Le(tensor(file, name, DType::I32, &[1])?.data).get(0);
    if !(-128..=127).contains(&v) {
        return Err(Error::InvalidConfig("int8 zero point outside [-128, 127]"));
    }
    Ok(v)
}

pub(crate) fn act_quant(
    file: &ModelFile<'_>,
    scale: &'static str,
    zp: &'static str,
) -> Result<ActQuant> {
    let s = scalar_f32(file, scale)?;
    if !(s > 0.0 && s.is_finite()) {
        return Err(Error::InvalidConfig(
            "int8 activation scale must be positive",
        ));
    }
    Ok(ActQuant {
        scale: s,
        zero_point: scalar_i32(file, zp)?,
    })
}
