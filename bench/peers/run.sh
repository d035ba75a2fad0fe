#!/usr/bin/env bash
# mixprec side by side with the peer frameworks (PyTorch, TensorFlow.js, jax-js)
# on the peer harness's workloads, in one run.
#
#   bench/peers/run.sh PEERS_DIR [WORK_DIR]
#
# PEERS_DIR holds the harness (WORKLOAD.md, run-all.sh, lib/common.mjs); it is
# only read. It is copied to WORK_DIR (default ${TMPDIR:-/tmp}/mixprec-peers,
# kept between runs so that its node_modules and vendored OpenBLAS are set up
# once), mixprec's runs are added to the copy of run-all.sh as `run NAME TIMEOUT
# cmd` lines next to the peers' (1024^3 matmul, gpt-mini in every repeat,
# gpt-small outside quick mode), a gpt2 section (GPT-2 124M's shape at context
# 256, batch 4, 1 warm-up + 3 timed steps: PyTorch fp32 with OpenBLAS and bf16,
# then mixprec on WebGPU in fp32, fp16 and bf16; run-all.sh has no gpt2 runs of
# its own) goes before the summary, and the whole script runs: the key
# configurations run back to back, so that their ratios are fair on a shared
# machine. PyTorch's OpenBLAS environment also names the OpenBLAS kernels that
# match the CPU (bench/openblas-core.sh). The summary goes to
# bench/results/peers-<date>.{md,json}.
#
# Environment: MODE (default quick: 1 repeat, no gpt-small, ~12 min; MODE=full:
# 3 repeats of the cheap configurations and gpt-small, ~40 min), REPS,
# REPS_SLOW, SMALL_SLOW as in run-all.sh; GPT2=0 leaves the gpt2 section out
# (PyTorch about 1 min per run; mixprec several minutes per step on lavapipe,
# up to 30 min per run). DRY_RUN=1 prepares the copy and prints its
# run-all.sh without running it. Needs the npm registry (npm ci in the copy) and
# apt-get download (Debian's OpenBLAS) on the first run.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 PEERS_DIR [WORK_DIR]" >&2; exit 2; }
PEERS=$(cd "$1" && pwd)
MIXPREC=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${2:-${TMPDIR:-/tmp}/mixprec-peers}
export MODE=${MODE:-quick}
[ -f "$PEERS/run-all.sh" ] && [ -f "$PEERS/lib/common.mjs" ] || { echo "$PEERS: not the peer harness (no run-all.sh or lib/common.mjs)" >&2; exit 2; }

# A writable copy of the harness, without its results; node_modules and vendor/ stay from earlier runs.
mkdir -p "$WORK"
for entry in "$PEERS"/* "$PEERS"/.gitignore; do
  name=$(basename "$entry")
  case $name in results|node_modules|vendor) continue ;; esac
  rm -rf "${WORK:?}/$name"
  cp -r "$entry" "$WORK/$name"
done
chmod -R u+w "$WORK"

# mixprec's lines, inserted after an anchor line of run-all.sh each; a missing anchor stops here.
MP='env -C "$MIXPREC" node --import tsx "$MIXPREC/bench/peers'
insert_at() { # insert_at after|before ANCHOR_REGEX TEXT: TEXT goes after (before) the first line matching ANCHOR_REGEX
  grep -qE "$2" "$WORK/run-all.sh" || { echo "run-all.sh has changed: no line matches '$2'; update bench/peers/run.sh" >&2; exit 1; }
  WHERE=$1 ANCHOR=$2 TEXT=$3 awk '!done && $0 ~ ENVIRON["ANCHOR"] { if (ENVIRON["WHERE"] == "before") print ENVIRON["TEXT"]; print; if (ENVIRON["WHERE"] == "after") print ENVIRON["TEXT"]; done = 1; next } { print }' \
    "$WORK/run-all.sh" > "$WORK/run-all.sh.new"
  mv "$WORK/run-all.sh.new" "$WORK/run-all.sh"
}
insert_after() { insert_at after "$@"; }
# PyTorch's OpenBLAS runs get the kernels that match this CPU's vector units (see bench/openblas-core.sh).
CORE=$(bash "$MIXPREC/bench/openblas-core.sh")
if [ -n "$CORE" ]; then
  grep -q '^OPENBLAS_ENV=(env ' "$WORK/run-all.sh" || { echo "run-all.sh has changed: no OPENBLAS_ENV=(env ...) line; update bench/peers/run.sh" >&2; exit 1; }
  sed -i "s/^OPENBLAS_ENV=(env /OPENBLAS_ENV=(env OPENBLAS_CORETYPE=$CORE /" "$WORK/run-all.sh"
fi
insert_after '^OPENBLAS_ENV=' "MIXPREC='$MIXPREC'   # mixprec's checkout: its runs start there (tsx, src/)"
insert_after '^run mm-jaxjs-cpu-n256 ' "run mm-mixprec-webgpu 300 $MP/matmul-mixprec.ts\" --backend=webgpu
run mm-mixprec-cpu 300 $MP/matmul-mixprec.ts\" --backend=cpu --reps=3"
insert_after '^  run mini-tfjs-wasm-r\$r ' "  for p in fp32 fp16 bf16; do run mini-mixprec-webgpu-\$p-r\$r 600 $MP/gpt-mixprec.ts\" --peers=\"\$HERE\" \$M --backend=webgpu --precision=\$p; done
  run mini-mixprec-cpu-fp32-r\$r 600 $MP/gpt-mixprec.ts\" --peers=\"\$HERE\" \$M --backend=cpu --precision=fp32"
insert_after '^  run small-jaxjs-webgpu-fp16 ' "  for p in fp32 fp16 bf16; do run small-mixprec-webgpu-\$p 900 $MP/gpt-mixprec.ts\" --peers=\"\$HERE\" \$S --backend=webgpu --precision=\$p; done"
if [ "${GPT2:-1}" != 0 ]; then
  insert_at before '^node lib/aggregate.mjs' "# ---- gpt2 (GPT-2 124M's shape, context 256, batch 4): 1 warm-up + 3 timed steps, PyTorch then mixprec ----
G=\"--workload=gpt2 --warmup=1 --steps=3\"
run gpt2-torch-fp32-openblas 900 \"\${OPENBLAS_ENV[@]}\" \$PY torch/gpt_torch.py \$G --precision=fp32
run gpt2-torch-bf16 900 \$PY torch/gpt_torch.py \$G --precision=bf16
for p in fp32 fp16 bf16; do run gpt2-mixprec-webgpu-\$p 1800 $MP/gpt-mixprec.ts\" --peers=\"\$HERE\" \$G --backend=webgpu --precision=\$p; done
"
fi
chmod +x "$WORK/run-all.sh"
if [ -n "${DRY_RUN:-}" ]; then
  echo "peer harness copy: $WORK (MODE=$MODE); its run-all.sh with mixprec's runs:"
  cat "$WORK/run-all.sh"
  exit 0
fi

echo "peer harness copy: $WORK (MODE=$MODE); mixprec: $MIXPREC"
LOG=$(mktemp)
(cd "$WORK" && ./run-all.sh) 2>&1 | tee "$LOG"
RUN_DIR=$WORK/$(grep -m1 -o 'results/run-[0-9-]*' "$LOG")
rm -f "$LOG"
[ -f "$RUN_DIR/summary.md" ] || { echo "no summary in $RUN_DIR" >&2; exit 1; }

mkdir -p "$MIXPREC/bench/results"
OUT=$MIXPREC/bench/results/peers-$(date +%Y-%m-%d)
(cd "$MIXPREC" && node --import tsx bench/peers/summarize.ts "$RUN_DIR" "$OUT" "$MODE")
echo "wrote $OUT.md and $OUT.json (raw logs: $RUN_DIR)"
