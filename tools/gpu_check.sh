#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one command, with one summary line per step, the figures
# first (so a call cut short still brings them back). For a machine with a GPU and PyTorch but
# without the course's development packages: first, where pip reaches PyPI, `bash tools/gpu_wheels.sh`
# puts the missing wheels in .whl/; carry that folder beside the checkout. For the figures on the
# full MNIST (the issue's 55,000 training images): `bash tools/gpu_data.sh` copies its four
# compressed files (12 MB) into .mnist/; carry that too. Without it the bundled subset is used.
#   bash tools/gpu_check.sh [WHEELS]        (default: .whl)
# Steps: the CUDA unit tests; the GPU benchmark (benchmarks/gpu.py: the recorded graph, step by step,
# torch.compile, the whole run as a process); the pipeline on CUDA; the whole unit suite with the GPU
# present; every notebook executed on CUDA (device="auto" picks it, as on a Colab GPU runtime), its
# Checks included. The benchmark's JSON and every step's log go to $OUT when set (the device tool's
# output folder). Exit status: the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
wheels="${1:-.whl}"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg TWOSTAGE_CHECKPOINTS="${TMPDIR:-/tmp}/twostage-gpu-checkpoints"
if [ -z "${TWOSTAGE_DATA:-}" ] && [ -d .mnist/MNIST/raw ]; then export TWOSTAGE_DATA="$PWD/.mnist"; fi
logs="${OUT:-/tmp}"
summary=()
failed=0
step() {  # step NAME COMMAND...: run it, keep its log, add one summary line
  local name="$1" start=$SECONDS
  shift
  if "$@" >"${logs}/gpu_check_${name}.log" 2>&1; then local verdict=PASS; else local verdict=FAIL; failed=$((failed + 1)); fi
  local last
  last="$(grep -v '^\s*$' "${logs}/gpu_check_${name}.log" | tail -1 | cut -c1-150)"
  summary+=("gpu_check ${name}: ${verdict} in $((SECONDS - start)) s: ${last}")
  echo "${summary[-1]}"
  [ "$verdict" = PASS ] || tail -40 "${logs}/gpu_check_${name}.log"
}
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
if [ -d "$wheels" ]; then
  step install python3 -m pip install --quiet --no-index --find-links "$wheels" nbclient nbformat nbconvert nbval \
    ipykernel ipywidgets jupyterlab_widgets
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step cuda_tests python3 -m pytest tests -q -p no:cacheprovider -k cuda
# the GPU figures (benchmarks/README.md, "The GPU"): per-stage epochs, the launch floor, graph or
# compiler, the whole run as a process
step gpu_bench python3 -m benchmarks.gpu --json "${OUT:-.}/gpu.json"
step run python3 -m twostage_lib run --device cuda --no-progress
# left out: what builds environments from PyPI or resolves against it (a GPU machine may have no
# network: the Colab and floor environments, the wheel build, the pin resolution) and the browser
step unit_suite python3 -m pytest tests -q -p no:cacheprovider --ignore=tests/test_colab.py \
  --ignore=tests/test_floors.py --ignore=tests/test_browser.py --ignore=tests/test_packaging.py -k "not resolve"
step notebooks python3 tools/execute_notebooks.py --check-only
printf '%s\n' "${summary[@]}"
exit "$failed"
