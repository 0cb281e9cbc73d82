#!/usr/bin/env bash
# The device check of the engine: precision, then the capacity sweep, on one NVIDIA GPU.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine (CUDA build of torch in python3)
#   bash benchmarks/gpu_check.sh --cpu      # the same steps on this CPU, smaller (tested here)
#
# Steps, each printing its own figures:
#   1. float16 tokens against float32 on the shared clips (benchmarks.precision; bar >= 99 %);
#      on the CPU bfloat16 (a lower bar: bfloat16 keeps 8 bits of mantissa, float16 10).
#   2. the capacity sweep (benchmarks.capacity) for tiny.en, then base when its weights are there.
#
# Environment: PYTHON (default: .venv/bin/python here, python3 on the GPU machine);
# WHISPER_STREAMER_DATA for the shared clips when ../shared/data is not beside the checkout;
# DEVICE_WHEELS, a folder of wheels to install first with --no-index (the GPU machine reaches no
# registry: websockets, webrtcvad-wheels, soxr, jiwer, whisper-normalizer and the weight packages
# travel as wheels; see docs/performance.md for the sizes, which exceed one carry of 64 MiB).
# Budget: under 8 minutes on an H200; the sweep sizes below are what fits.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=gpu
[[ "${1:-}" == "--cpu" ]] && mode=cpu
if [[ -x .venv/bin/python ]]; then PYTHON=${PYTHON:-.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
if [[ -n "${DEVICE_WHEELS:-}" ]]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --find-links "$DEVICE_WHEELS" "$DEVICE_WHEELS"/*.whl
fi
has_model() { "$PYTHON" -c "from model.weights import resolve; resolve('$1')" >/dev/null 2>&1; }

if [[ $mode == gpu ]]; then
  "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), torch.__version__)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  timeout 150 "$PYTHON" -m benchmarks.precision --device cuda --dtype float16 --kinds short,long || echo "precision: bar NOT met (or timed out)"
  timeout 150 "$PYTHON" -m benchmarks.capacity --model tiny.en --seconds 30 --stagger 0.05 --streams 100,300,600,1000,1500 --bar 1000 \
    --png "${OUT:-/tmp}/capacity-tiny.en.png" --json "${OUT:-/tmp}/capacity-tiny.en.json" -- --device cuda --max-batch 256 || true
  if has_model base; then
    timeout 150 "$PYTHON" -m benchmarks.capacity --model base --seconds 30 --stagger 0.05 --streams 100,300,500,800 --bar 500 \
      --png "${OUT:-/tmp}/capacity-base.png" --json "${OUT:-/tmp}/capacity-base.json" -- --device cuda --max-batch 256 || true
  else
    echo "base: weights not installed; its sweep is skipped"
  fi
else
  timeout 900 "$PYTHON" -m benchmarks.precision --device cpu --kinds short --bar 0.6 || echo "precision: bar NOT met"
  timeout 1800 "$PYTHON" -m benchmarks.capacity --model tiny.en --seconds 45 --streams 2,4 --png /tmp/capacity-cpu.png || true
fi
