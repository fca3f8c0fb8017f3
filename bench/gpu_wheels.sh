#!/usr/bin/env bash
# Downloads, on a machine with pip and the internet, the wheels that bench/gpu_check.sh needs on a
# GPU machine that has PyTorch but no package index: the training code's own requirements that such
# images lack (pydantic and its parts, holidays). They land in .whl/ (ignored by git), which the
# device tool carries; gpu_check.sh installs them into /tmp/site.
#
#     bench/gpu_wheels.sh            # Python 3.12 on x86-64, the usual GPU image
#     PY=3.11 bench/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-3.12}
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
mkdir -p .whl
PIP=${PIP:-.venv/bin/python -m pip}
# pinned to what this project's tests run with (pip freeze in .venv), so the GPU runs the same code
# typing-extensions too: pydantic_core imports its Sentinel (4.14+), newer than some images' copy
for pkg in pydantic pydantic_core annotated-types typing-inspection typing-extensions holidays; do
  version=$($PIP show "$pkg" 2>/dev/null | sed -n 's/^Version: //p')
  $PIP download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$pkg${version:+==$version}"
done
ls .whl
