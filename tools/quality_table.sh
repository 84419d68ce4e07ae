#!/usr/bin/env bash
# Sample-quality table of a model file: `trainer eval --fid` for DDPM (T steps, fixed_large and
# fixed_small) and DDIM (10/20/50/100 steps at η = 0 and η = 1), then a markdown table of the
# classifier FID, confident share, IS analog and the wall time of drawing the samples through
# ddpm-core (on all cores).
#
# Usage: tools/quality_table.sh MODEL [extra eval flags, e.g. --clip-x0]
# Environment:
#   SAMPLES=N     samples per row (default 1000)
#   ROWS="..."    rows to run, from: ddpm-large ddpm-small ddim10-0 ddim10-1 ddim20-0 ddim20-1
#                 ddim50-0 ddim50-1 ddim100-0 ddim100-1 (default: all)
#   OUT=DIR       where the per-row JSON files go (default runs/quality/<model name>)
#   REUSE=1       keep rows whose JSON file already exists (to finish an interrupted table)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/env.sh
source tools/env.sh

if [[ $# -lt 1 ]]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
model=$1
shift
if [[ ! -f $model ]]; then
    echo "$model: no such model file" >&2
    exit 1
fi
samples=${SAMPLES:-1000}
rows=${ROWS:-"ddpm-large ddpm-small ddim10-0 ddim10-1 ddim20-0 ddim20-1 ddim50-0 ddim50-1 ddim100-0 ddim100-1"}
name=$(basename "$model" .ddpm)
out=${OUT:-runs/quality/$name}
mkdir -p "$out"

cargo build --release -q -p ddpm-trainer
trainer=target/release/trainer

files=()
for row in $rows; do
    case $row in
        ddpm-large) flags=(--sampler ddpm --variance fixed-large) ;;
        ddpm-small) flags=(--sampler ddpm --variance fixed-small) ;;
        ddim*-*)
            steps=${row#ddim}
            steps=${steps%-*}
            eta=${row##*-}
            flags=(--sampler ddim --steps "$steps" --eta "$eta")
            ;;
        *)
            echo "unknown row $row" >&2
            exit 2
            ;;
    esac
    json=$out/$row.json
    files+=("$json")
    if [[ ${REUSE:-0} == 1 && -f $json ]]; then
        echo "$row: kept $json" >&2
        continue
    fi
    echo "$row: $trainer eval --fid --model $model --samples $samples ${flags[*]} $*" >&2
    "$trainer" eval --fid --model "$model" --samples "$samples" --no-progress \
        --json "$json" "${flags[@]}" "$@" >&2
done

python3 - "$model" "${files[@]}" <<'EOF'
import json
import sys

model, files = sys.argv[1], sys.argv[2:]
docs = [json.load(open(f)) for f in files]
q0 = docs[0]["quality"]
clips = {(d["quality"]["sampler"]["clip_x0"], d["quality"]["sampler"]["recompute_eps"]) for d in docs}
clip = ", ".join(
    "x0 clipped" + (" and ε recomputed" if r else "") if c else "x0 not clipped" for c, r in sorted(clips)
)
print(
    f"`{model}`, {q0['samples']} samples per row (seeds {q0['seed']}…), {clip}; classifier "
    f"test accuracy {100 * q0['classifier_test_accuracy']:.2f}%; "
    f"sampling on {q0['workers']} threads."
)
print()
print(
    f"| sampler | steps | η | classifier FID | confident (p > {q0['confident_threshold']}) "
    f"| IS analog | wall time for {q0['samples']} samples |"
)
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for d in docs:
    q, s = d["quality"], d["quality"]["sampler"]
    g = q["generated"]
    if s["kind"] == "ddpm":
        name, eta = f"DDPM {s['variance']}", "–"
    else:
        name, eta = f"DDIM ({s['spacing']})", f"{s['eta']:g}"
    print(
        f"| {name} | {s['steps']} | {eta} | {g['fid']:.2f} | {100 * g['confident']:.1f}% "
        f"| {g['inception_score']:.2f} | {q['sampling_seconds']:.0f} s |"
    )
r = q0["real_train"]
print(
    f"| real training images (floor) | – | – | {r['fid']:.2f} | {100 * r['confident']:.1f}% "
    f"| {r['inception_score']:.2f} | – |"
)
EOF
