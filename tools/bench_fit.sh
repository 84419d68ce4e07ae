#!/usr/bin/env bash
# Training throughput (images/s, batch 128, CPU, two threads) of `trainer fit` next to the seed's
# PyTorch recipe (tools/seed_recipe_fit.py) on the same data, alternating the two ROUNDS times
# so both see the same machine load. Usage: tools/bench_fit.sh [IMAGES] [ROUNDS]; MNIST from
# $DDPM_DATA, else data/mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
images="${1:-12800}"
rounds="${2:-2}"

bash tools/setup.sh >/dev/null
# shellcheck source=tools/env.sh
source tools/env.sh
cargo build --release -p ddpm-trainer
data="${DDPM_DATA:-data/mnist}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

for r in $(seq "$rounds"); do
    rust=$(target/release/trainer fit --device cpu --threads 2 --limit "$images" --epochs 1 \
        --data "$data" --out "$out/m.ddpm" --no-progress 2>&1 |
        sed -n 's/^done: .* \([0-9.]*\) images\/s.*/\1/p')
    py=$(python tools/seed_recipe_fit.py "$data/train-images-idx3-ubyte.gz" \
        --limit "$images" --epochs 1 --threads 2 2>/dev/null | sed -n 's/^images\/s //p')
    echo "round $r: trainer fit ${rust} images/s, PyTorch seed recipe ${py} images/s," \
        "ratio $(python -c "print(f'{$rust / $py:.2f}')")"
done
