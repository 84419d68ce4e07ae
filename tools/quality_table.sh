#!/usr/bin/env bash
# Sample-quality table of a model file: `trainer eval --fid` for DDPM (T steps, fixed_large and
# fixed_small) and DDIM (10/20/50/100 steps at η = 0 and η = 1), or any rows named in ROWS
# (DDIM, DPM-Solver++(2M) and UniPC at any step count), then a markdown table of the network
# passes per sample, classifier FID, confident share, IS analog and the wall time of drawing the
# samples through ddpm-core (on all cores).
#
# Usage: tools/quality_table.sh MODEL [extra eval flags, e.g. --clip-x0, --guide G --guidance W]
#        tools/quality_table.sh --table JSON...   (only the table, from `eval --json-out` files)
# Environment:
#   SAMPLES=N     samples per row (default 1000)
#   ROWS="..."    rows to run: ddpm-large, ddpm-small, ddimS-E (S steps, η = E: ddim10-0),
#                 dpmS (DPM-Solver++(2M), S steps: dpm10), unipcS (UniPC, S steps: unipc10);
#                 default: ddpm-large ddpm-small and DDIM at 10/20/50/100 steps, η 0 and 1.
#                 The solver rows leave out --clip-x0 and --recompute-eps (they step with
#                 the unclipped x0).
#   OUT=DIR       where the per-row JSON files go (default runs/quality/<model name>)
#   REUSE=1       keep rows whose JSON file already exists (to finish an interrupted table)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/env.sh
source tools/env.sh

if [[ $# -lt 1 ]]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

# Prints the markdown table of the `eval --json` files given (rows in that order).
table() {
    python3 - "$@" <<'PY'
import json
import sys

docs = [json.load(open(f)) for f in sys.argv[1:]]
models = sorted({d["model"] for d in docs})
q0 = docs[0]["quality"]
clips = {(d["quality"]["sampler"]["clip_x0"], d["quality"]["sampler"]["recompute_eps"]) for d in docs}
clip = ", ".join(
    ("x0 clipped" + (" and ε recomputed" if r else "")) if c else "x0 not clipped"
    for c, r in sorted(clips)
)
guides = sorted(
    {f"`{g['model']}` with w = {g['weight']:g}" if g else "none"
     for g in (d["quality"].get("guide") for d in docs)}
)
counts = sorted({d["quality"]["samples"] for d in docs})
per_row = len(counts) > 1
print(
    ", ".join(f"`{m}`" for m in models)
    + ("" if per_row else f", {counts[0]} samples per row")
    + ("" if guides == ["none"] else f", guided by {' / '.join(guides)}")
    + f", seeds from {q0['seed']}, {clip}; classifier test accuracy "
    f"{100 * q0['classifier_test_accuracy']:.2f}%; sampling on {q0['workers']} threads."
)
print()
head = "| sampler | steps | η | network passes |" + (" samples |" if per_row else "")
head += f" classifier FID | confident (p > {q0['confident_threshold']:.6g}) | IS analog |"
head += " wall time |" if per_row else f" wall time for {counts[0]} samples |"
head += " labels 0…9 |"
print(head)
print("| --- | ---: | ---: | ---: |" + (" ---: |" if per_row else "") + " ---: | ---: | ---: | ---: | --- |")
floors = {}
for d in docs:
    q, s = d["quality"], d["quality"]["sampler"]
    g = q["generated"]
    floors.setdefault(q["samples"], q["real_train"])
    passes = s["steps"] * (2 if q.get("guide") else 1)
    if s["kind"] == "ddpm":
        name, eta = f"DDPM {s['variance']}", "–"
    elif s["kind"] == "ddim":
        name, eta = f"DDIM ({s['spacing']})", f"{s['eta']:g}"
    else:
        solver = {"dpmpp-2m": "DPM-Solver++(2M)", "unipc": "UniPC"}[s["kind"]]
        name, eta = f"{solver} ({s['spacing']})", "–"
    n = f" {q['samples']} |" if per_row else ""
    print(
        f"| {name} | {s['steps']} | {eta} | {passes} |{n} {g['fid']:.2f} | {100 * g['confident']:.1f}% "
        f"| {g['inception_score']:.2f} | {q['sampling_seconds']:.1f} s "
        f"| {' '.join(str(c) for c in g['histogram'])} |"
    )
for n, r in sorted(floors.items(), reverse=True):
    cnt = f" {n} |" if per_row else ""
    print(
        f"| real training images (floor) | – | – | – |{cnt} {r['fid']:.2f} "
        f"| {100 * r['confident']:.1f}% | {r['inception_score']:.2f} | – "
        f"| {' '.join(str(c) for c in r['histogram'])} |"
    )
PY
}

if [[ $1 == --table ]]; then
    shift
    table "$@"
    exit 0
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
# Guided rows go to their own directory, so that REUSE never mixes them with unguided ones.
for flag in "$@"; do
    [[ $flag == --guide ]] && name+=_guided
done
out=${OUT:-runs/quality/$name}
mkdir -p "$out"

cargo build --release -q -p ddpm-trainer
trainer=target/release/trainer

# The rows are the flags given and nothing else: a model file's recipe (its clipping, its
# guide) applies only where the flags name it, so a table reads the same for any model.
has() {
    local f
    for f in "${@:2}"; do [[ $f == "$1" ]] && return 0; done
    return 1
}
neutral=()
has --clip-x0 "$@" || neutral+=(--no-clip-x0)
has --guide "$@" || has --no-guide "$@" || neutral+=(--no-guide)

files=()
for row in $rows; do
    extra=("$@")
    case $row in
        ddpm-large | ddpm-small)
            flags=(--sampler ddpm --variance "fixed-${row#ddpm-}")
            # DDPM steps through the clipped x0's posterior mean: no ε to recompute.
            extra=()
            for f in "$@"; do [[ $f == --recompute-eps ]] || extra+=("$f"); done
            ;;
        ddim*-*)
            steps=${row#ddim}
            steps=${steps%-*}
            eta=${row##*-}
            flags=(--sampler ddim --steps "$steps" --eta "$eta")
            ;;
        dpm* | unipc*)
            case $row in
                dpm*) flags=(--sampler dpmpp-2m --steps "${row#dpm}") ;;
                *) flags=(--sampler unipc --steps "${row#unipc}") ;;
            esac
            # The solvers step with the unclipped x0: no clipping flags.
            extra=()
            for f in "$@"; do
                case $f in --clip-x0 | --recompute-eps) ;; *) extra+=("$f") ;; esac
            done
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
    row_neutral=("${neutral[@]}")
    if [[ $row == dpm* || $row == unipc* ]]; then
        row_neutral=()
        for f in "${neutral[@]}"; do [[ $f == --no-clip-x0 ]] || row_neutral+=("$f"); done
    fi
    all=("${flags[@]}" "${row_neutral[@]}" "${extra[@]}")
    echo "$row: $trainer eval --fid --model $model --n $samples ${all[*]}" >&2
    "$trainer" eval --fid --model "$model" --n "$samples" --no-progress \
        --json-out "$json" "${all[@]}" >&2
done

table "${files[@]}"
