#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine with Rust and Python 3: set-up (project-local
# torch venv) and build, then 64 digits from the committed TinyUNet with the recipe its file
# carries (guided by its own early weights; `trainer sample` needs no flag for it, see
# tools/main_job.args) into runs/samples.png, one of them printed as ASCII art; then, when the embedded set-up is present (tools/setup-embedded.sh), the same model's int8
# export sampled by the Cortex-M4 firmware under QEMU. Needs no MNIST. Training is
# tools/train.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

phase() { printf '\n== %s (%s s so far)\n' "$*" "$SECONDS"; }

phase "set-up"
bash tools/setup.sh
# shellcheck source=tools/env.sh
source tools/env.sh

phase "build"
cargo build --release -p ddpm-trainer
bin=target/release/trainer

phase "sample"
mkdir -p runs
read -r -a args <<<"$(grep -v '^#' tools/main_job.args | tr '\n' ' ')"
"$bin" sample "${args[@]}" --out runs/samples.png --ascii

if command -v qemu-system-arm >/dev/null 2>&1 &&
    rustup target list --installed 2>/dev/null | grep -qx thumbv7em-none-eabihf; then
    phase "microcontroller: int8 TinyUNet on a Cortex-M4 (QEMU mps2-an386, 64 KB of RAM)"
    (cd firmware-demo && cargo run --release --features tiny)
else
    echo "run: skipping the microcontroller build (run tools/setup-embedded.sh for the" \
        "thumbv7em-none-eabihf target and qemu-system-arm)"
fi
phase "done"
echo "run: 64 samples in runs/samples.png"
