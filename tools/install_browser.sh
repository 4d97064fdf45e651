#!/usr/bin/env bash
# Install Debian's Chromium for the browser test (tests/test_browser.py). Playwright, which drives
# it, comes from requirements.txt; no test tool downloads a browser of its own.
# Exits non-zero with the reason when it cannot install.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is not installed and this is not a root Debian/Ubuntu machine (apt-get as root needed)" >&2
    exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
command -v chromium
