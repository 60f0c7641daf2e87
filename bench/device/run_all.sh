#!/usr/bin/env bash
# The GPU measurements, in one command on a GPU machine (see bench/device/README.md; offline, with
# .device/ from pack.sh):
#   bash bench/device/on_device.sh bash bench/device/run_all.sh [probe|report|steps|tests]...
# Each part has its own timeout and writes under $OUT (or bench/results/device/ when $OUT is unset).
set -uo pipefail
out=${OUT:-bench/results/device}
mkdir -p "$out"
parts=("$@"); [ $# -eq 0 ] && parts=(report steps)
for part in "${parts[@]}"; do
  case $part in
    probe)
      ls /usr/local/nvidia/share/vulkan/icd.d/ /etc/vulkan/icd.d/ /usr/share/vulkan/icd.d/ 2>&1 | head
      cat /usr/local/nvidia/share/vulkan/icd.d/*.json 2>/dev/null | head -20
      ldconfig -p | grep -i -E 'vulkan|GLX_nvidia|GLdispatch' | head
      VK_LOADER_DEBUG=error,warn,driver deno eval --cached-only \
        'const a = await navigator.gpu.requestAdapter(); console.log("probe adapter:", a?.info?.description ?? "none")' \
        2>&1 | tail -25;;
    report)
      timeout 240 deno run -A --cached-only bench/gpu_report.ts --json > "$out/gpu_report.jsonl" 2> "$out/gpu_report.err"
      echo "gpu_report rc=$?"; cat "$out/gpu_report.jsonl";;
    steps)
      for c in 1b_full_f32 1b_full_f16 7b_stage1_f16 7b_lora_f16; do
        # The 7B stage-1 step again with the kernel choices measured first (attention implementations and
        # each product's matmul kernel, recorded as "tuned"), and with packed f16 products.
        if [ "$c" = 7b_stage1_f16 ]; then
          for variant in "--tune" "--packed-f16"; do
            timeout 180 deno run -A --cached-only bench/gpu_step.ts "$c" --steps 1 --profile $variant --json >> "$out/gpu_step.jsonl" 2>> "$out/gpu_step.err"
            echo "gpu_step $c $variant rc=$?"
          done
        fi
        steps=3; case $c in 7b_*) steps=1;; esac
        timeout 200 deno run -A --cached-only bench/gpu_step.ts "$c" --steps $steps --profile --json >> "$out/gpu_step.jsonl" 2>> "$out/gpu_step.err"
        echo "gpu_step $c rc=$?"
        [ -n "${NO_REF:-}" ] || timeout 90 python3 bench/gpu_step_ref.py "$c" >> "$out/gpu_step.jsonl" 2>> "$out/gpu_step.err"
        echo "gpu_step_ref $c rc=$?"
      done
      cat "$out/gpu_step.jsonl"; tail -5 "$out/gpu_step.err";;
    tests)
      timeout 250 deno test -A --cached-only --parallel --ignore=tokenizers/onnx_tokenizer_test.ts,encoders/onnx_encoder_test.ts,encoders/onnx_runner_test.ts \
        > "$out/tests.log" 2>&1
      echo "tests rc=$?"; grep -E '^(ok|FAILED)|passed|failed|=> ' "$out/tests.log" | tail -30;;
    *) echo "unknown part $part (probe, report, steps, tests)"; exit 2;;
  esac
done
