//! Run-time CPU feature detection for the host fast path's SIMD kernels.

/// Whether the CPU supports AVX2 and FMA (x86-64 with `std` only; the standard library caches
/// the answer). Without `std` the fast path always runs its portable kernels.
#[inline]
pub fn avx2_fma() -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        false
    }
}

/// Whether the CPU supports AVX-512F (x86-64 with `std`): the shifted-run kernel then takes two
/// pixel blocks per call in 16-lane vectors (the same FMA chains as its AVX2 form).
#[inline]
pub fn avx512f() -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        false
    }
}

/// Whether the CPU supports AVX-512F with the VNNI dot products (x86-64 with `std`): the host
/// int8 executor then sums 16-bit pairs with `vpdpwssd` in 16-lane vectors.
#[inline]
pub fn avx512_vnni() -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        false
    }
}

/// Whether this CPU runs the fast path's AVX2 + FMA kernels (x86-64 with `std`).
pub fn simd_available() -> bool {
    avx2_fma()
}
