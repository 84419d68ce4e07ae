#!/usr/bin/env bash
# Trains the committed class-conditional TinyUNet (classifier-free guidance): the committed
# unconditional TinyUNet's sizes and schedule with a class embedding (10 digits plus "no
# class"), fine-tuned from models/tiny_unet_mnist.ddpm (`--init`; the class table starts at
# zero) for 3 epochs of batch 16 with labels dropped with probability 0.1, EMA 0.9995, cosine
# learning rate from 3e-4 with 200 warm-up steps, seed 0. About 30 minutes on 2 CPU cores
# (see docs/trainer.md). MNIST from --data DIR, else $DDPM_DATA, else data/mnist. Output:
# runs/tiny_unet_cond.ddpm unless OUT says otherwise; extra arguments go to `trainer fit`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
# shellcheck source=tools/env.sh
source tools/env.sh
cargo build --release -p ddpm-trainer
mkdir -p runs
target/release/trainer fit --arch tiny --conditional --label-drop 0.1 \
    --init models/tiny_unet_mnist.ddpm --widths 24,64,56 --mid-blocks 4 --schedule cosine \
    --prediction v --ema 0.9995 --epochs 3 --batch-size 16 --lr 3e-4 --lr-schedule cosine \
    --warmup-steps 200 --seed 0 --threads 2 \
    --out "${OUT:-runs/tiny_unet_cond.ddpm}" "$@"
