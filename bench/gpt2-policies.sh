#!/usr/bin/env bash
# GPT-2 124M on WebGPU under every precision policy, from the command line:
#
#   bench/gpt2-policies.sh [POLICY...]      (default: fp32 fp16 fp16-master bf16 bf16-master)
#
# runs `mixprec train --model gpt2 --tokenizer gpt2 --backend webgpu --max-steps 3
# --batch-size 1 --block-size 128` once per policy, one after the other, each in
# its own process, and rewrites bench/results/gpt2-policies.md after each policy:
# the loss of every step, the time of every step (the first includes compiling
# the kernels) and the run's wall time. A policy that fails or runs out of time
# is recorded as such. The loss is logged every step and the final evaluation
# reads a single batch, so the run is the three steps plus loading and saving.
#
# Environment: INIT_FROM=DIR starts every run from that Hugging Face GPT-2
# directory (--init-from DIR instead of --model gpt2) and writes
# bench/results/gpt2-policies-init-from.md; MIXPREC_WEBGPU_MAX_BINDING (lower the binding limit),
# MIXPREC_WEBGPU_MAX_BUFFER=BYTES (hold tensors larger than BYTES in several buffers; writes
# bench/results/gpt2-policies-buffers-BYTES.md),
# POLICY_TIMEOUT (seconds per policy, default 1800), WORK_DIR (run directories,
# default ${TMPDIR:-/tmp}/mixprec-gpt2-policies, removed after each policy:
# a GPT-2 checkpoint with its AdamW moments is about 1.5 GB).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK_DIR:-${TMPDIR:-/tmp}/mixprec-gpt2-policies}
OUT="$ROOT/bench/results/gpt2-policies${INIT_FROM:+-init-from}${MIXPREC_WEBGPU_MAX_BUFFER:+-buffers-$MIXPREC_WEBGPU_MAX_BUFFER}.md"
MODEL_ARGS=(--model gpt2)
[ -z "${INIT_FROM:-}" ] || MODEL_ARGS=(--init-from "$(cd "$INIT_FROM" && pwd)")
POLICIES=("$@")
[ ${#POLICIES[@]} -gt 0 ] || POLICIES=(fp32 fp16 fp16-master bf16 bf16-master)
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
mkdir -p "$WORK" "$ROOT/bench/results"
ROWS="$WORK/rows.md"
: > "$ROWS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')

write_table() { # write_table: the results so far, with the load average now
  {
    echo "# GPT-2 124M on WebGPU, every precision policy${INIT_FROM:+, from a GPT-2 directory}"
    echo
    echo "\`bench/gpt2-policies.sh\`, started $STARTED on $(nproc) CPU cores; adapter: $ADAPTER."
    echo "Command: \`mixprec train ${MODEL_ARGS[*]} --tokenizer gpt2 --backend webgpu --max-steps 3"
    echo "--batch-size 1 --block-size 128 --precision POLICY --log-interval 1 --eval-steps 1\`."
    echo "Step times are wall-clock seconds of one optimizer step (128 tokens); step 1 counts from"
    echo "the trainer's creation (initialising the model, tokenizing the data, compiling the kernels)."
    echo "Run s: the whole command, loading and the final checkpoint included."
    echo "Load average (1, 5, 15 min) at start: $LOAD_START;"
    echo "at the last update: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| policy | loss step 1 | loss step 2 | loss step 3 | step 1 s | step 2 s | step 3 s | run s | status |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    cat "$ROWS"
  } > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
}

# One table row from a run directory's metrics.jsonl: losses and step times (128 tokens / tokens per second).
row_of() { # row_of POLICY RUN_DIR SECONDS STATUS
  node -e '
    const fs = require("fs");
    const [policy, dir, seconds, status] = process.argv.slice(1);
    let recs = [];
    try { recs = fs.readFileSync(dir + "/metrics.jsonl", "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((r) => r.type === "train"); } catch {}
    const cell = (i, f) => (recs[i] ? f(recs[i]) : "-");
    const loss = [0, 1, 2].map((i) => cell(i, (r) => r.loss.toFixed(4)));
    // elapsedSec counts from the start of training, so step i took the difference from step i - 1.
    const time = [0, 1, 2].map((i) => cell(i, (r) => (r.elapsedSec - (i > 0 ? recs[i - 1].elapsedSec : 0)).toFixed(1)));
    console.log(`| ${policy} | ${loss.join(" | ")} | ${time.join(" | ")} | ${seconds} | ${status} |`);
  ' "$@"
}

ADAPTER=$(cd "$ROOT" && timeout 120 node --import tsx -e '
  const { createWebGPUBackend } = await import("./src/backend/webgpu/backend.ts");
  const b = await createWebGPUBackend({ register: false });
  console.log(b.description + ", maxStorageBufferBindingSize " + b.rt.maxBindingBytes + (process.env.MIXPREC_WEBGPU_MAX_BUFFER ? ", buffers of at most " + b.rt.maxBufferBytes + " bytes (MIXPREC_WEBGPU_MAX_BUFFER)" : ""));
  b.destroy();
  process.exit(0);
' 2>/dev/null || echo "unknown")
write_table

for policy in "${POLICIES[@]}"; do
  dir="$WORK/$policy"
  rm -rf "$dir"
  t0=$(date +%s)
  (cd "$ROOT" && timeout "${POLICY_TIMEOUT:-1800}" node --import tsx src/cli/main.ts train \
    "${MODEL_ARGS[@]}" --tokenizer gpt2 --backend webgpu --max-steps 3 --batch-size 1 --block-size 128 \
    --precision "$policy" --log-interval 1 --eval-steps 1 --out "$dir") > "$WORK/$policy.log" 2>&1
  rc=$?
  seconds=$(( $(date +%s) - t0 ))
  case $rc in
    0) status=ok ;;
    124) status="timed out after ${POLICY_TIMEOUT:-1800} s" ;;
    *) status="failed (exit $rc): $(grep -m1 -i 'error' "$WORK/$policy.log" | cut -c1-120 | tr '|' '/')" ;;
  esac
  row_of "$policy" "$dir" "$seconds" "$status" >> "$ROWS"
  write_table
  rm -rf "$dir/checkpoint"
done
echo "wrote $OUT"
