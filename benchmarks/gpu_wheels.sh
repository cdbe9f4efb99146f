#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels a lent GPU machine lacks: it has its own torch,
# NumPy, SciPy, pandas, matplotlib and TensorBoard, but not Hydra, OmegaConf, the design and
# statistics libraries or airbench. Its Python is 3.12 on x86-64 Linux; set PY to change that.
# On the machine: python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PY:-3.12}"
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
  hydra-core==1.3.2 omegaconf==2.3.0 pydoe3 statsmodels patsy torchinfo
# antlr4's runtime (Hydra's parser) and airbench are source archives of pure Python: build their
# wheels here.
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3 airbench==0.1.8
du -sh .whl; ls .whl
