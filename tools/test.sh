#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian/Ubuntu machine with Rust installed:
# installs what the tests need (project-local torch venv, the thumbv7em and wasm32 targets, QEMU,
# Chromium with ChromeDriver), then formatting and lint checks, the whole workspace's tests
# (the browser page's in headless Chromium among them), and the no_std Cortex-M4 build.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
bash tools/setup-embedded.sh
bash tools/setup-web.sh
# shellcheck source=tools/env.sh
source tools/env.sh

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "layout (no source file over 800 lines, no import circle)"
python3 tools/check_layout.py core/src torch/src trainer/src

step "lint"
cargo clippy --workspace --all-targets --release -- -D warnings

step "no_std core for Cortex-M4 (thumbv7em-none-eabihf), no features"
cargo build -p ddpm-core --no-default-features --target thumbv7em-none-eabihf --release

step "lint the WebAssembly build (wasm32-unknown-unknown, SIMD128 kernels)"
RUSTFLAGS="-C target-feature=+simd128" cargo clippy -p ddpm-web --release \
    --target wasm32-unknown-unknown --target-dir target/web -- -D warnings

step "golden vectors regenerate without drift"
python tools/golden/make_golden.py --check tools/golden

step "solver golden vectors (diffusers' schedulers) regenerate without drift"
python tools/golden_solvers/make_solver_golden.py --check tools/golden_solvers

step "tests"
cargo test --workspace --release
