#!/usr/bin/env bash
# The GPU benchmark in one prepared call: `mlp-jax bench` on the accelerator JAX sees, in two stages,
# each written as soon as it ends:
#   1. the standard configs (small, medium, large, xor; float32) with matmul peaks, peers, memory,
#      digits and the curvature stage (each curvature quantity against a gradient, autodiff and BackPACK,
#      on small, medium and large) -> benchmarks/results/<device>.md and .json;
#   2. the grid in float32 and bfloat16 with the peaks of both dtypes (no peers, memory or digits)
#      -> benchmarks/results/<device>-grid.md and .json.
# It runs from the source tree (PYTHONPATH=src) and installs nothing, for a machine with JAX (CUDA),
# optax, equinox, flax, torch, backpack-for-pytorch, scikit-learn, matplotlib and tqdm already there and no network.
#
#   bash benchmarks/gpu_run.sh [COPY_TO]    # COPY_TO: a folder that also gets the four files and both logs
#
# The bench's own log goes to benchmarks/results/<name>/bench.log.
# Environment: PYTHON (default python3); REPEATS (default 5) and MIN_SAMPLE (default 0.05 s) per
# measurement; QUICK=1 for `--quick` in both stages; ALLOW_CPU=1 to try the script on a CPU (it then
# writes benchmarks/results/cpu-trial*, untracked, and leaves the committed cpu.md and cpu.json alone).
# A failed stage does not stop the other one; the exit status is 1 if either failed.
set -uo pipefail
absolute() { if [[ "$1" == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }  # links kept: a venv's python is one
copy_to=${1:+$(absolute "$1")}  # both made absolute before the cd below
py=${PYTHON:-python3}
if [[ "$py" == */* ]]; then py=$(absolute "$py"); fi
cd "$(dirname "$0")/.." || exit
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
results=benchmarks/results

device=$("$py" - <<'EOF'
import os, re, sys
import jax
if jax.default_backend() == "cpu" and os.environ.get("ALLOW_CPU") != "1":
    sys.exit(f"JAX sees no accelerator (devices: {jax.devices()}); ALLOW_CPU=1 to run on the CPU anyway")
name = re.sub(r"[^a-z0-9]+", "-", jax.devices()[0].device_kind.lower()).strip("-")
print("cpu-trial" if jax.default_backend() == "cpu" else name)  # never over the committed CPU run
EOF
) || exit
grid=$("$py" -c "
from mlp_jax.bench.configs import GRID
print(','.join(f'{d}x{w}x{b}:{t}' for t in ('float32', 'bfloat16') for d in GRID['depth']
               for w in GRID['width'] for b in GRID['batch']))") || exit
flags=(--repeats "${REPEATS:-5}" --min-sample "${MIN_SAMPLE:-0.05}")
[[ "${QUICK:-0}" == 1 ]] && flags+=(--quick)
echo "device: $device; grid: $grid"

stage() {  # stage NAME BENCH-FLAGS...: run the bench into $results/NAME/, keep its md and json beside it
  local name=$1 log=$results/$1/bench.log status=0
  shift
  mkdir -p "$results/$name"
  "$py" -m mlp_jax.cli bench --out "$results/$name" "${flags[@]}" "$@" >"$log" 2>&1 || status=$?
  if [[ -n "$copy_to" ]]; then  # the log, whatever happened
    mkdir -p "$copy_to" && cp "$log" "$copy_to/$name.log"
  fi
  if ((status)); then
    echo "stage $name failed (exit $status); the end of its log:"
    tail -20 "$log"
    return "$status"
  fi
  cp "$results/$name/results.md" "$results/$name.md"
  cp "$results/$name/results.json" "$results/$name.json"
  if [[ -n "$copy_to" ]]; then
    cp "$results/$name.md" "$results/$name.json" "$copy_to/"
  fi
  sed -n '/^## Targets/,$p' "$results/$name.md"
}

failed=0  # a failed stage does not stop the next one
time stage "$device" --configs small,medium,large,xor --curvature-configs small,medium,large || failed=1
time stage "$device-grid" --configs "$grid" --no-memory --no-digits --no-plots --peers none --curvature-configs none ||
  failed=1
exit "$failed"
