//! The parameter tensors an architecture has: names and shapes in PyTorch's layout.

/// Most w3 → w3 blocks a TinyUNet may have at quarter resolution.
pub const TINY_MAX_MID_BLOCKS: usize = 8;

/// Most parameter tensors any architecture has (TinyUNet: 26 plus 4 per mid block, plus the
/// class embedding of a class-conditional one).
pub const MAX_TENSORS: usize = 27 + 4 * TINY_MAX_MID_BLOCKS;

/// The parameter tensors of one architecture, in `state_dict` order, without a heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpecList {
    pub(crate) specs: [TensorSpec; MAX_TENSORS],
    pub(crate) len: usize,
}

impl TensorSpecList {
    pub(crate) fn from_slice(s: &[TensorSpec]) -> Self {
        let mut specs = [TensorSpec::new("", [0; 4], 0); MAX_TENSORS];
        specs[..s.len()].copy_from_slice(s);
        Self {
            specs,
            len: s.len(),
        }
    }
    pub(crate) const fn empty() -> Self {
        Self {
            specs: [TensorSpec::new("", [0; 4], 0); MAX_TENSORS],
            len: 0,
        }
    }
    pub(crate) const fn push(mut self, spec: TensorSpec) -> Self {
        self.specs[self.len] = spec;
        self.len += 1;
        self
    }
    /// A block's four tensors: 3×3 conv `names[0]` `[o, i, 3, 3]` and bias, time projection
    /// `names[2]` `[o, d]` and bias.
    pub(crate) const fn push_block(
        self,
        names: &[&'static str; 4],
        o: u32,
        i: u32,
        d: u32,
    ) -> Self {
        self.push(TensorSpec::new(names[0], [o, i, 3, 3], 4))
            .push(TensorSpec::new(names[1], [o, 0, 0, 0], 1))
            .push(TensorSpec::new(names[2], [o, d, 0, 0], 2))
            .push(TensorSpec::new(names[3], [o, 0, 0, 0], 1))
    }
    /// Number of specs.
    pub const fn len(&self) -> usize {
        self.len
    }
    /// Whether the list is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The specs as a slice.
    pub fn as_slice(&self) -> &[TensorSpec] {
        &self.specs[..self.len]
    }
}

impl core::ops::Deref for TensorSpecList {
    type Target = [TensorSpec];
    fn deref(&self) -> &[TensorSpec] {
        self.as_slice()
    }
}

impl IntoIterator for TensorSpecList {
    type Item = TensorSpec;
    type IntoIter = core::iter::Take<core::array::IntoIter<TensorSpec, MAX_TENSORS>>;
    fn into_iter(self) -> Self::IntoIter {
        self.specs.into_iter().take(self.len)
    }
}

impl<'a> IntoIterator for &'a TensorSpecList {
    type Item = &'a TensorSpec;
    type IntoIter = core::slice::Iter<'a, TensorSpec>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// Name and dimensions of one parameter tensor, in PyTorch's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpec {
    /// PyTorch state_dict name, e.g. `enc1.weight`.
    pub name: &'static str,
    /// Dimensions; only the first `rank` entries are used, the rest are 0.
    pub dims: [u32; 4],
    /// Number of dimensions.
    pub rank: usize,
}

impl TensorSpec {
    pub(crate) const fn new(name: &'static str, dims: [u32; 4], rank: usize) -> Self {
        Self { name, dims, rank }
    }
    /// The used dimensions.
    pub fn dims(&self) -> &[u32] {
        &self.dims[..self.rank]
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims().iter().map(|&d| d as usize).product()
    }
}

/// Total elements of `specs` (a `const` sum of [`TensorSpec::numel`]).
pub(crate) const fn total_numel(specs: &[TensorSpec]) -> usize {
    let mut total = 0;
    let mut i = 0;
    while i < specs.len() {
        let d = specs[i].dims;
        let mut n = 1usize;
        let mut k = 0;
        while k < specs[i].rank {
            n *= d[k] as usize;
            k += 1;
        }
        total += n;
        i += 1;
    }
    total
}

/// Largest image side and channel count accepted, so every index fits comfortably in `usize`
/// on 32-bit targets and no product of sizes can overflow.
pub const MAX_DIM: u32 = 4096;
