#!/usr/bin/env bash
# The wheels bench/gpu_proof.py needs on the lent GPU machine beyond what its image holds
# (PyTorch, nvidia-ml-py, numpy, onnx, onnxruntime, prometheus-client, PyYAML, pytest,
# pytest-timeout, typing-extensions are there; see /work/.library/device/KINDS.md). The
# runtime imports PyAV (resize, video) and the OpenTelemetry SDK (traces); nothing else
# on the proof's path is missing there. Python there is 3.12 on x86-64.
#
# Usage (repo root): bench/gpu_wheels.sh   → .whl/ (git-ignored; name it in the device carry)
# Then, on the GPU machine, with .whl carried:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#     && PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 -m bench.gpu_proof --out "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
# Versions as in this repo's environment (pyproject lower bounds hold for them).
WHEELS=(
  "av==18.1.0"
  "opentelemetry-api==1.45.2"
  "opentelemetry-sdk==1.45.2"
  "opentelemetry-semantic-conventions==0.66b2"
)
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
du -sh .whl
