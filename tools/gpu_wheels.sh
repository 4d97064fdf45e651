#!/usr/bin/env bash
# Fetch, here, the wheels tools/gpu_check.sh installs on a GPU machine that has PyTorch but no
# Jupyter (Python 3.12 on Linux x86_64 by default): the notebook runner and the panels' packages,
# with what they need. PyTorch, NumPy and the rest of the scientific stack are left to the machine.
#   bash tools/gpu_wheels.sh [PYTHON_VERSION] [FOLDER]     (default: 3.12 .whl)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-3.12}"
folder="${2:-.whl}"
mkdir -p "$folder"
platforms=()
for n in 17 24 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download --quiet --only-binary=:all: --python-version "$version" --implementation cp \
  "${platforms[@]}" --platform manylinux2014_x86_64 -d "$folder" \
  nbclient nbformat nbconvert nbval ipykernel ipywidgets jupyterlab_widgets widgetsnbextension
rm -f "$folder"/numpy-* "$folder"/torch-* "$folder"/pytest-*  # the machine's own stay
du -sh "$folder"
