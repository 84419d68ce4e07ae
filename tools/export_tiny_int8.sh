#!/usr/bin/env bash
# Exports the int8 TinyUNet used by the firmware's `tiny` build, its int8 guide and the int8
# class-conditional TinyUNet (`DDPM_DEMO_CLASS` builds):
#   models/tiny_unet_mnist.ddpm (f32)       -> models/tiny_unet_mnist_int8.ddpm
#   models/tiny_unet_mnist_guide.ddpm (f32) -> models/tiny_unet_mnist_guide_int8.ddpm
#   models/tiny_unet_mnist_cond.ddpm (f32)  -> models/tiny_unet_mnist_cond_int8.ddpm
# with the settings the pinned results were made with (min/max ranges, 512 noised training
# images, 4 DDIM-10 trajectories, seed 0; accuracy on 64 noised test images).
# Usage: tools/export_tiny_int8.sh                     (all three files)
#        tools/export_tiny_int8.sh F32_MODEL INT8_OUT  (one file)
# Afterwards run `cargo test -p firmware-check --release tiny_host_checksum_is_pinned`: it prints
# the new checksum to pin in firmware-check/tests/qemu.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
if [[ $# -eq 0 ]]; then
    pairs=(models/tiny_unet_mnist.ddpm models/tiny_unet_mnist_int8.ddpm
        models/tiny_unet_mnist_guide.ddpm models/tiny_unet_mnist_guide_int8.ddpm
        models/tiny_unet_mnist_cond.ddpm models/tiny_unet_mnist_cond_int8.ddpm)
elif [[ $# -eq 2 ]]; then
    pairs=("$1" "$2")
else
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
cargo build -p ddpm-trainer --release
for ((i = 0; i < ${#pairs[@]}; i += 2)); do
    in=${pairs[i]}
    out=${pairs[i + 1]}
    if [[ ! -f "$in" ]]; then
        echo "error: $in: no such f32 TinyUNet model file" >&2
        exit 1
    fi
    # The int8 file's recipe: the f32 model's sampler at 10 DDIM steps and η 0 (what the
    # firmware draws and docs/int8.md measures), unguided.
    ./target/release/trainer export --model "$in" --int8 --range minmax \
        --calib-images 512 --calib-trajectories 4 --eval-images 64 --seed 0 \
        --steps 10 --eta 0 --out "$out"
done
