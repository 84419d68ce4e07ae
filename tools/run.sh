#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine with Rust and Python 3: set-up (project-local
# torch venv), a short fit on MNIST, then a PNG grid of samples from the fitted model.
# Override the fit with FIT_ARGS, e.g. FIT_ARGS="--epochs 5 --ema 0.999" for the seed's recipe.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
# shellcheck source=tools/env.sh
source tools/env.sh

cargo build --release -p ddpm-trainer
bin=target/release/trainer

# A short run: the first 6,400 training images, one epoch, EMA of the weights.
# shellcheck disable=SC2086
"$bin" fit --limit 6400 --epochs 1 --ema 0.999 --seed 0 --out runs/quick.ddpm ${FIT_ARGS:-}
"$bin" sample --model runs/quick.ddpm --sampler ddim --steps 50 --seed 42 \
    --out runs/quick_samples.png --idx runs/quick_samples.idx
echo "run: samples in runs/quick_samples.png (loss curve: runs/quick.loss.csv)"
