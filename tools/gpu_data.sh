#!/usr/bin/env bash
# Copy the full MNIST's four compressed raw files (12 MB) into .mnist/MNIST/raw/ (ignored by git), for
# tools/gpu_check.sh on a machine that has no copy: carry .mnist beside the checkout.
#   bash tools/gpu_data.sh [FOLDER]     (default: $TWOSTAGE_DATA, else ../shared/data; torchvision's layout)
set -euo pipefail
cd "$(dirname "$0")/.."
source="${1:-${TWOSTAGE_DATA:-../shared/data}}/MNIST/raw"
mkdir -p .mnist/MNIST/raw
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ -f "$source/$name.gz" ]; then install -m 0644 "$source/$name.gz" .mnist/MNIST/raw/; else gzip -c "$source/$name" >".mnist/MNIST/raw/$name.gz"; fi
done
du -sh .mnist
