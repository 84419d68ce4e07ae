#!/usr/bin/env bash
# Builds the browser page in web/www: ddpm-web for wasm32-unknown-unknown with SIMD128 into
# web/www/pkg/ddpm_web.wasm, and the committed model files and test digits the page loads into
# web/www/models/ (both folders are build outputs, not committed). Adds the Rust target when
# it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "build-web: adding Rust target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi
# Its own target folder: the SIMD128 flag must not invalidate the host build's cache.
RUSTFLAGS="-C target-feature=+simd128" cargo build --release -p ddpm-web \
    --target wasm32-unknown-unknown --target-dir target/web
mkdir -p web/www/pkg web/www/models
cp target/web/wasm32-unknown-unknown/release/ddpm_web.wasm web/www/pkg/
for f in tiny_unet_mnist.ddpm tiny_unet_mnist_guide.ddpm tiny_unet_mnist_int8.ddpm \
    tiny_unet_mnist_guide_int8.ddpm tiny_unet_mnist_cond.ddpm tiny_unet_mnist_cond_int8.ddpm \
    mnist_test_digits.idx; do
    cp "models/$f" web/www/models/
done
echo "build-web: web/www ready ($(wc -c < web/www/pkg/ddpm_web.wasm) bytes of WebAssembly)"
