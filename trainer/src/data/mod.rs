//! The training data: MNIST IDX files read from disk ([`idx`]) and downloaded and verified
//! ([`fetch`]).
pub mod fetch;
pub mod idx;
