#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one command of a bounded length, one summary line per step,
# the figures first (so a call cut short still brings them back). For a machine with a GPU and
# PyTorch but without the course's development packages: first, where pip reaches PyPI,
# `bash tools/gpu_wheels.sh` puts the missing wheels in .whl/; carry that folder beside the checkout.
# For the figures on the full MNIST (the issue's 55,000 training images): `bash tools/gpu_data.sh`
# copies its four compressed files (12 MB) into .mnist/; carry that too. Without it the bundled subset is used.
#   bash tools/gpu_check.sh [STEP...]       (default: every step, in this order)
# Steps: cuda_tests (the CUDA unit tests); gpu_bench (benchmarks/gpu.py: the recorded graph, step by
# step, torch.compile, the whole run as a process); run (the pipeline on CUDA); study (the label study,
# 3 seeds, every default method: at its limit it reports the runs it finished);
# unit_suite (the whole unit suite with the GPU present); notebooks (every notebook executed on CUDA,
# device="auto" picks it as on a Colab GPU runtime, its Checks included).
# Time: the whole check stops within GPU_CHECK_SECONDS (default 540: a device call runs at most 600 s);
# each step has its own limit too (LIMITS below), and a step with under 20 s left is skipped. At its
# limit, a step is interrupted as by Ctrl-C (the library's commands: they report what they finished)
# or ended (the tests and notebooks: their log names each one as it ends).
# What comes back: $OUT/gpu.json, $OUT/study.json and one log of every step, $OUT/gpu_check.log (the
# device tool brings back at most 8 files). PYTHON: the interpreter (default python3). GPU_CHECK_DEVICE=cpu
# runs the same steps on the CPU (to try the script itself). Exit status: the number of steps that did
# not pass (failed, timed out or skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
device="${GPU_CHECK_DEVICE:-cuda}"
budget="${GPU_CHECK_SECONDS:-540}"
wheels="${GPU_CHECK_WHEELS:-.whl}"
out="${OUT:-/tmp}"
log="${out}/gpu_check.log"
declare -A LIMITS=([install]=90 [cuda_tests]=150 [gpu_bench]=240 [run]=60 [study]=200 [unit_suite]=400 [notebooks]=400)
# how a step is stopped at its limit: the library's commands take an interrupt as a Ctrl-C and report what they
# finished; the tests and the notebooks are ended (TERM), for the code under test keeps a Ctrl-C's work and
# goes on, and an interrupted test would read as a failure: their logs list each test or notebook as it ends
declare -A STOP=([gpu_bench]=INT [run]=INT [study]=INT)
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg TWOSTAGE_CHECKPOINTS="${TMPDIR:-/tmp}/twostage-gpu-checkpoints"
if [ -z "${TWOSTAGE_DATA:-}" ] && [ -d .mnist/MNIST/raw ]; then export TWOSTAGE_DATA="$PWD/.mnist"; fi
summary=()
missed=0
step() {  # step NAME COMMAND...: run it within its limit and what is left of the budget, log it, one summary line
  local name="$1" start=$SECONDS verdict
  shift
  local limit=$((budget - SECONDS))
  [ "$limit" -le "${LIMITS[$name]}" ] || limit="${LIMITS[$name]}"
  if [ "$limit" -lt 20 ]; then
    summary+=("gpu_check ${name}: SKIPPED: ${limit} s left of ${budget} s")
    missed=$((missed + 1))
    echo "${summary[-1]}"
    return
  fi
  echo "===== ${name} (limit ${limit} s): $*" >>"$log"
  local first=$(($(wc -l <"$log") + 1))
  # at the limit, the step's signal (STOP); killed 20 s later if still running
  timeout -s "${STOP[$name]:-TERM}" -k 20 "$limit" "$@" >>"$log" 2>&1
  case $? in
    0) verdict=PASS ;;
    124 | 137) verdict="TIMEOUT (${limit} s)" ;;
    *) verdict=FAIL ;;
  esac
  [ "$verdict" = PASS ] || missed=$((missed + 1))
  local last  # pytest's count of passed and failed if the step printed one (pytest may print more after it), else its last line
  last="$(tail -n "+${first}" "$log" | grep -E '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' | tail -1)"
  [ -n "$last" ] || last="$(tail -n "+${first}" "$log" | grep -v '^\s*$' | tail -1)"
  last="$(echo "$last" | sed -E 's/^=+ //; s/ =+$//' | cut -c1-150)"
  summary+=("gpu_check ${name}: ${verdict} in $((SECONDS - start)) s: ${last}")
  echo "${summary[-1]}"
  [ "$verdict" = PASS ] || tail -n "+${first}" "$log" | tail -30
}
mkdir -p "$out"
: >"$log"
if [ "$device" = cuda ]; then
  "$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
  nvidia-smi >>"$log" 2>&1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(cuda_tests gpu_bench run study unit_suite notebooks)
for name in "${steps[@]}"; do
  [ -n "${LIMITS[$name]:-}" ] && [ "$name" != install ] || { echo "unknown step: $name (${!LIMITS[*]})"; exit 1; }
done
if [ -d "$wheels" ] && ! "$python" -c "import nbclient, nbval, ipykernel, ipywidgets" 2>/dev/null; then
  step install "$python" -m pip install --quiet --no-index --find-links "$wheels" nbclient nbformat nbconvert nbval \
    ipykernel ipywidgets jupyterlab_widgets
fi
for name in "${steps[@]}"; do
  case $name in
    cuda_tests) step cuda_tests "$python" -m pytest tests -v -p no:cacheprovider -k cuda ;;
    # the GPU figures (benchmarks/README.md, "The GPU"): the whole run as a process, per-stage epochs,
    # the launch floor, graph or compiler
    gpu_bench) step gpu_bench "$python" -m benchmarks.gpu --device "$device" --json "${out}/gpu.json" ;;
    run) step run "$python" -m twostage_lib run --device "$device" --no-progress ;;
    study) step study "$python" -m twostage_lib compare --device "$device" --seeds 0 1 2 --json "${out}/study.json" ;;
    # left out: what builds environments from PyPI or resolves against it (a GPU machine may have no
    # network: the Colab and floor environments, the wheel build, the pin resolution) and the browser
    unit_suite) step unit_suite "$python" -m pytest tests -v -p no:cacheprovider --ignore=tests/test_colab.py \
      --ignore=tests/test_floors.py --ignore=tests/test_browser.py --ignore=tests/test_packaging.py -k "not resolve" ;;
    notebooks) step notebooks "$python" tools/execute_notebooks.py --check-only ;;
  esac
done
printf '%s\n' "${summary[@]}" | tee -a "$log"
exit "$missed"
