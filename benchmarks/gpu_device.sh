#!/usr/bin/env bash
# On a GPU machine: unpack .gpu-pack/ (made by benchmarks/pack_data.sh), run the GPU kit, and leave
# its markdown and a few run files in $OUT (or ./gpu-kit-out). Arguments go to benchmarks/gpu.py
# (`--parts workers`: only the launcher's best K). Python packages the machine lacks must already
# be importable (benchmarks/gpu_wheels.sh downloads them; RESULTS.md has the command).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-kit-out}"
mkdir -p data "$out"
for f in .gpu-pack/*.tar.xz; do tar -xJf "$f" -C data; done
export CNNEXP_DATA="$PWD/data" CNNEXP_CACHE=/tmp/cnnexp-cache PYTHONUNBUFFERED=1
nvidia-smi -L
status=0
python3 benchmarks/gpu.py --out "$out/gpu.md" --workdir /tmp/gpu-kit "$@" || status=$?
for f in fast-0/metrics.json fast-0/system.csv fast-0/nvidia-smi.txt torchrun/metrics.json; do
  [ -f "/tmp/gpu-kit/$f" ] && cp "/tmp/gpu-kit/$f" "$out/${f//\//-}"
done
exit $status
