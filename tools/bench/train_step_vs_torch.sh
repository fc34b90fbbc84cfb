#!/bin/sh
# aidomm's CPU training throughput against PyTorch's on the same threads (the project's standard:
# benchmarks print ratios against a baseline run in the same invocation).
#
# What is measured: optimizer steps per second (wall clock) of the tiny 3-modality LoRA model,
# tests/configs/trajectory/tiny3_lora.yaml (tiny Enformer + AIDO.RNA with LoRA + ESM2 with LoRA,
# ConcatFusion + MLPAdapter, f32, batch 3), from the trajectory fixture's start (Hugging Face
# folders of tests/golden/predict/models + tests/golden/predict/rest.safetensors) and fed its 10
# recorded batches (tests/golden/trajectory/steps.safetensors) in turn. A step is forward, MSE
# loss, backward, clip_grad_norm_ (4.0), AdamW with the cosine-with-warmup lr over the run:
#   aidomm: build/bin/aidomm-bench-train (rt_trainer_step on the plan aidommc compiles);
#   torch:  tools/bench/torch_tiny_step.py, the peer's real MMSequenceRegression (modelgenerator,
#           torch 2.5.1, golden venv) with torch.set_num_threads(T), the loop without Lightning.
# Both time STEPS (default 200) steps after 5 untimed warm-up steps, and both check that their
# first step's loss is the fixture's. Model setup and the plan compile are not timed.
# ratio = aidomm / torch (> 1: aidomm is faster). Needs `make build` and the golden venv.
#   tools/bench/train_step_vs_torch.sh            THREADS="1 2" STEPS=200 BIN=build/bin
set -eu
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
PY=${PY:-/root/.cache/aidomm/golden-venv/bin/python}
STEPS=${STEPS:-200}
THREADS=${THREADS:-"1 2"}
PLAN=${TMPDIR:-/tmp}/aidomm-bench-tiny3_lora.$$.plan
LOG=${TMPDIR:-/tmp}/aidomm-bench-torch.$$.log
trap 'rm -f "$PLAN" "$LOG"' EXIT
"$BIN/aidommc" compile tests/configs/trajectory/tiny3_lora.yaml -o "$PLAN" 2>/dev/null
rate() { sed -n 's/.*"steps_per_s": *\([0-9.eE+-]*\).*/\1/p' | tail -1; }
printf '%-8s %16s %16s %14s\n' threads aidomm_steps/s torch_steps/s aidomm/torch
for t in $THREADS; do
  a=$("$BIN/aidomm-bench-train" "$PLAN" --threads "$t" --steps "$STEPS")
  b=$("$PY" tools/bench/torch_tiny_step.py --threads "$t" --steps "$STEPS" 2>"$LOG") ||
    { cat "$LOG" >&2; exit 1; }
  a=$(echo "$a" | rate) b=$(echo "$b" | rate)
  printf '%-8s %16.2f %16.2f %14.2f\n' "$t" "$a" "$b" "$(awk "BEGIN { print $a / $b }")"
done
