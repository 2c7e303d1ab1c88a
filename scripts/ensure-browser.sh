#!/usr/bin/env bash
# Make a headless browser available for the report test (tests/test_report_browser.py); the set-up
# step .ci/run calls, like scripts/ensure-dataset.sh for the data.
#   1. chromium (or chromium-browser, google-chrome) on PATH: done.
#   2. apt-get on PATH: install Debian's package chromium (`sudo -n` when not root).
# Never fails the build: without a browser that test skips and says why. Always exits 0.
set -uo pipefail

say() { echo "ensure-browser: $*" >&2; }

for b in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$b" >/dev/null 2>&1; then
    say "$b found at $(command -v "$b")"
    exit 0
  fi
done

# shellcheck source=apt-install.sh
. "${BASH_SOURCE[0]%/*}/apt-install.sh"
if apt_install ensure-browser chromium && command -v chromium >/dev/null 2>&1; then
  exit 0
fi
say "note: no headless chromium; tests/test_report_browser.py will skip (install Debian's chromium to run it)"
exit 0
