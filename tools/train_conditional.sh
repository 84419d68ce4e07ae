#!/usr/bin/env bash
# Trains the committed class-conditional TinyUNet (classifier-free guidance): the unconditional
# TinyUNet's recipe (sizes, cosine schedule, v-prediction, 11 epochs of batch 16, EMA 0.9995,
# cosine learning rate from 1e-3 with 500 warm-up steps, seed 0) with a class embedding (10
# digits plus "no class"), labels dropped with probability 0.1. About 30 minutes on 2 CPU
# cores (29 min 44 s measured, see docs/trainer.md). MNIST from --data DIR, else $DDPM_DATA,
# else data/mnist. Output: runs/tiny_unet_cond.ddpm unless OUT says otherwise; extra arguments
# go to `trainer fit`. The committed file is then `trainer export --model OUT --out
# models/tiny_unet_mnist_cond.ddpm` (add `--no-guide` when `--guide-out` was passed).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
# shellcheck source=tools/env.sh
source tools/env.sh
cargo build --release -p ddpm-trainer
mkdir -p runs
target/release/trainer fit --arch tiny --conditional --label-drop 0.1 --widths 24,64,56 \
    --mid-blocks 4 --schedule cosine --prediction v --ema 0.9995 --epochs 11 --batch-size 16 \
    --lr 1e-3 --lr-schedule cosine --warmup-steps 500 --seed 0 --threads 2 \
    --out "${OUT:-runs/tiny_unet_cond.ddpm}" "$@"
