#!/usr/bin/env bash
# Issue 16, item 6: on a machine with a CUDA GPU, in one go, from the repository root:
#   1. a smoke case on torch-cuda, which stops the script, saying why, where torch-cuda is unavailable;
#   2. the whole conformance suite on torch-cuda and torch-cpu (JSON and Markdown reports);
#   3. the CPU-against-CUDA matrix (the run and the accuracy atlas of both, side by side);
#   4. the exhaustive float32 sweep of both ops on torch-cuda (every finite logit and probability,
#      y in {0, 1}), over a Dask LocalCluster of one worker per core where Dask is installed.
# Everything goes under $OUT (default reports/gpu): machine.txt, log.txt, steps.txt (each step's exit status
# and seconds), run.json and its results (run.results.jsonl), run.md, matrix/, matrix-run.json and
# exhaustive.json. A step that finds failures (exit status 1) is reported and the script goes on; any other
# status stops it.
# Needs the package's dependencies and a CUDA build of torch; Dask (the 'distributed' extra) for the sweep's
# workers. docs/performance.md, "On a GPU", says how to run it and what it has measured.
set -uo pipefail
OUT="${OUT:-reports/gpu}"
WORKERS="${WORKERS:-$(nproc)}"
PYTHON="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
: >"$OUT/log.txt"
: >"$OUT/steps.txt"

step() {  # NAME COMMAND...: run it, its output to the log too; record its exit status and seconds
    local name=$1 start=$SECONDS status
    shift
    echo "== $name: $*" | tee -a "$OUT/log.txt"
    "$@" 2>&1 | tee -a "$OUT/log.txt"
    status=${PIPESTATUS[0]}
    echo "$name: exit $status, $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
    return "$status"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
    "$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
    echo "cores: $(nproc)"
} >"$OUT/machine.txt" 2>&1

step smoke "$PYTHON" -m conformance run --backend torch-cuda --require torch-cuda -k '^document-bce-mean$' \
    --dtype float32 --no-progress || exit
step run "$PYTHON" -m conformance run --backend torch-cuda --backend torch-cpu --no-progress --format json \
    --output "$OUT/run.json"
[ $? -le 1 ] || exit
step report "$PYTHON" -m conformance report "$OUT/run.results.jsonl" --format markdown --output "$OUT/run.md"
[ $? -le 1 ] || exit
step matrix "$PYTHON" -m conformance matrix --backend torch-cpu --backend torch-cuda --no-progress \
    --report "$OUT/matrix-run.json" --output-dir "$OUT/matrix"
[ $? -le 1 ] || exit
spread=()
if "$PYTHON" -c 'import dask.distributed' 2>/dev/null; then
    spread=(--workers "$WORKERS")
fi
step exhaustive "$PYTHON" -m conformance accuracy --exhaustive -k '^(logits|probs)-all-' --dtype float32 \
    --backend torch-cuda --no-progress "${spread[@]}" --format json --output "$OUT/exhaustive.json"
[ $? -le 1 ] || exit
