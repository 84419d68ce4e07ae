#!/usr/bin/env bash
# Trains the committed TinyUNet from scratch with its recipe (widths 24/64/56, four mid blocks,
# cosine schedule, v-prediction, EMA 0.9995, 11 epochs of batch 16, cosine learning rate with
# 500 warm-up steps, seed 0) and writes its guide (the same run's EMA weights after epoch 2).
# About 23–35 minutes on 2 CPU cores (29 min 48 s measured on a rerun that reproduced the
# committed weights bit for bit). MNIST from --data DIR, else $DDPM_DATA, else data/mnist
# (`trainer fetch-data` downloads it there). Outputs: runs/tiny_unet.ddpm and
# runs/tiny_unet_guide.ddpm unless OUT and GUIDE_OUT say otherwise; extra arguments go to
# `trainer fit`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
# shellcheck source=tools/env.sh
source tools/env.sh
cargo build --release -p ddpm-trainer
mkdir -p runs
target/release/trainer fit --arch tiny --widths 24,64,56 --mid-blocks 4 --schedule cosine \
    --prediction v --ema 0.9995 --epochs 11 --batch-size 16 --lr 1e-3 --lr-schedule cosine \
    --warmup-steps 500 --seed 0 --threads 2 \
    --out "${OUT:-runs/tiny_unet.ddpm}" --guide-out "${GUIDE_OUT:-runs/tiny_unet_guide.ddpm}" "$@"
