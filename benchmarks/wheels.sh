#!/usr/bin/env bash
# The drawings' packages as wheels in .wheels/ (git-ignored) for a machine with no registry:
# the GPU machine (Python 3.12, x86-64), which device_check.sh installs them on when carried.
#   bash benchmarks/wheels.sh && (device tool) run(carry=[".wheels"], ...)
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .wheels && mkdir -p .wheels
pip download -q --no-deps -d .wheels --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  "shapely>=2.0" "Hershey-Fonts>=2.1" "kanjivg>=20250422" "pytablericons>=1.0"
# pytablericons without its pygame and Pillow (--no-deps): rectbert reads its SVG files only
ls -la .wheels
