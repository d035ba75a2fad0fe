#!/usr/bin/env bash
# The benchmark for a machine with a GPU, in one command that finishes in under
# 8 minutes: the adapter and its features, matmul GFLOP/s for float32, float16
# and bfloat16 storage at n = 1024 to 8192 beside the adapter's float32 arithmetic
# ceiling (bench/adapter-ceiling.ts), and GPT-2 124M training tokens/s
# and peak memory for every precision policy, with the 16-bit / fp32 ratios.
#
#   bench/device.sh [--quick] [--out DIR]
#
# Writes DIR/<adapter>.md and .json (default DIR: bench/results; the name is the
# adapter's, such as nvidia-h200, with -quick appended under --quick). --quick
# runs small sizes and the default GPT for a few steps: a few minutes even on a
# software adapter (lavapipe), which is how the tests keep this script working.
#
# Installs nothing: it needs the repository with `npm ci` done (node_modules).
# Every part runs under a timeout inside BUDGET seconds (default 450, 240 with
# --quick); the files are rewritten after every case, so a run cut short keeps
# what it finished.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/bench/results
QUICK=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=(--quick) ;;
    --out) [ $# -ge 2 ] || { echo "bench/device.sh: --out needs a folder" >&2; exit 2; }; OUT=$2; shift ;;
    --out=*) OUT=${1#--out=} ;;
    *) echo "bench/device.sh: unknown option '$1' (expected --quick, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
if [ ${#QUICK[@]} -gt 0 ]; then BUDGET=${BUDGET:-240}; else BUDGET=${BUDGET:-450}; fi
[ -e "$ROOT/node_modules/tsx" ] && [ -e "$ROOT/node_modules/webgpu" ] \
  || { echo "bench/device.sh: $ROOT/node_modules lacks tsx or webgpu; run npm ci first" >&2; exit 2; }

# Mesa's and the NVIDIA driver's Vulkan need a writable runtime folder.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
mkdir -p "$XDG_RUNTIME_DIR"

cd "$ROOT"
# run.ts keeps to BUDGET itself; the outer timeout is the backstop if it hangs.
exec timeout --kill-after=10 $((BUDGET + 30)) node --import tsx bench/run.ts --device --budget "$BUDGET" --out "$OUT" "${QUICK[@]}"
