#!/usr/bin/env bash
# GPU checks of the CUDA build (scripts/build-cuda.sh), as run on an H200 for docs/train.md:
#   1. NCCL: a one-rank communicator all-reduces 400 MB and the sum is checked; the fused
#      optimiser kernels (AdamW, gradient norm) at the 3B shape, checked against tensor ops and
#      a float64 reduction, and timed;
#   2. DIFT of the demo's tiny model on the GPU in f32, then bf16 with f32 master weights and
#      gradient checkpointing (compare train_log.jsonl with the same command on the CPU);
#   3. GRPO from the demo's DIFT model, f32, then bf16 with gradient checkpointing;
#   4. a small random model's greedy tokens against transformers on the same GPU;
#   5. Qwen2.5-VL-3B's shape (random weights): a DIFT step, prefill and decode, latent-imagery
#      decoding at batch 1 and 8, each side by side with PyTorch + transformers.
# Needs: a CUDA GPU, python3 with torch and transformers (for 4 and 5), and a finished
# `fourd demo` folder. Run from the repository root:
#   FOURD=target-cuda/release/fourd DEMO=demo-out scripts/gpu-check.sh
# The CUDA libraries must be on LD_LIBRARY_PATH (see scripts/build-cuda.sh). Each step has its
# own time limit; the script goes on after a failure. Logs: $OUT (default gpu-check-out).
set -u
FOURD=${FOURD:-target-cuda/release/fourd}
DEMO=${DEMO:-demo-out}
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log") 2>&1
for need in "$FOURD" "$DEMO/model-init/config.json" "$DEMO/model/config.json" "$DEMO/data/train/dift.jsonl" "$DEMO/data/grpo_prompts.jsonl"; do
  [ -e "$need" ] || { echo "gpu-check: $need not found (set FOURD and DEMO)"; exit 1; }
done
head -n 64 "$DEMO/data/train/dift.jsonl" > "$OUT/dift.jsonl"
head -n 16 "$DEMO/data/grpo_prompts.jsonl" > "$OUT/grpo.jsonl"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 200 > "$OUT/mem.csv" &
trap 'kill %1 2>/dev/null' EXIT
step() { local name=$1 t=$2; shift 2; echo; echo "=== $name (start $(date +%T))"; timeout "$t" "$@"; echo "=== $name rc=$? (end $(date +%T))"; }

step allreduce 60 "$FOURD" bench allreduce --device cuda --elements 100000000 --repeats 5
step optimizer 150 "$FOURD" bench optimizer --device cuda --dtype bf16 --repeats 5

DIFT=(train dift --model "$DEMO/model-init" --data "$OUT/dift.jsonl" --lr 5e-3 --weight-decay 0 --warmup-ratio 0.05
  --ce-weight 1 --sim-weight 0.1 --answer-weight 1 --grad-accum 8 --train-vision --seed 0 --logging-steps 1 --no-progress --device cuda)
step dift-f32 120 "$FOURD" "${DIFT[@]}" --dtype f32 --out "$OUT/dift-f32"
step dift-bf16-ckpt 120 "$FOURD" "${DIFT[@]}" --dtype bf16 --gradient-checkpointing --out "$OUT/dift-bf16"

GRPO=(train grpo --model "$DEMO/model" --data "$OUT/grpo.jsonl" --num-generations 8 --max-new-tokens 320 --lr 5e-5
  --temperature 0.7 --seed 0 --logging-steps 1 --max-steps 8 --no-progress --device cuda)
step grpo-f32 120 "$FOURD" "${GRPO[@]}" --dtype f32 --out "$OUT/grpo-f32"
step grpo-bf16-ckpt 120 "$FOURD" "${GRPO[@]}" --dtype bf16 --gradient-checkpointing --out "$OUT/grpo-bf16"

step parity-small-f32 180 "$FOURD" bench model --size small --device cuda --dtype f32 --python --model /tmp/fourd-gpu-small --decode-tokens 32 --repeats 2
step train-3b 300 "$FOURD" bench train --size 3b --device cuda --dtype bf16 --gradient-checkpointing --python --model /tmp/fourd-gpu-b3 --steps 3
step model-3b 300 "$FOURD" bench model --size 3b --device cuda --dtype bf16 --python --model /tmp/fourd-gpu-m3 --decode-tokens 32 --repeats 2
step generate-3b 300 "$FOURD" bench generate --size 3b --device cuda --dtype bf16 --python --model /tmp/fourd-gpu-g3 --batches 1,8 --tokens 48
echo "=== done $(date +%T)"
