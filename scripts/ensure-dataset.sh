#!/usr/bin/env bash
# Make Fashion-MNIST available to patchbench; the one set-up step behind .ci/run, `make demo` and
# `make demo-tomm`.
#   1. $PATCHBENCH_FMNIST_DIR (default: Debian's /usr/share/datasets/fashion-mnist) exists: done.
#   2. apt-get on PATH: install Debian's package dataset-fashion-mnist (`sudo -n` when not root).
#   3. otherwise, or if that failed: patchbench's own loader run by $PYTHON (default python3), which
#      finds $PATCHBENCH_DATA or its cache, else downloads with torchvision into ~/.cache/patchbench
#      ($PATCHBENCH_CACHE). $PYTHON must be able to import patchbench.
# Exit 0 when one of them worked; 2, with one `error:` line on stderr, when none did.
set -euo pipefail

dir="${PATCHBENCH_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}"
PYTHON="${PYTHON:-python3}"
say() { echo "ensure-dataset: $*" >&2; }

if [ -d "$dir" ]; then
  say "Fashion-MNIST found in $dir"
  exit 0
fi

# shellcheck source=apt-install.sh
. "${BASH_SOURCE[0]%/*}/apt-install.sh"
apt=0
apt_install ensure-dataset dataset-fashion-mnist || apt=$?
if [ "$apt" -eq 0 ] && [ -d "$dir" ]; then
  exit 0
fi
[ "$apt" -eq 2 ] || say "apt-get did not provide $dir"

say "loading Fashion-MNIST with $PYTHON (patchbench; torchvision download into its cache if needed)"
code="from patchbench.data import load_split; load_split('fashion-mnist', None, 'train'); load_split('fashion-mnist', None, 'test')"
if detail=$("$PYTHON" -c "$code" 2>&1 >/dev/null); then
  exit 0
fi
detail="${detail##*$'\n'}"  # the last line: the exception, not the traceback
detail="${detail##*$'\r'}"
echo "error: Fashion-MNIST not found in $dir and loading it with $PYTHON failed${detail:+ (${detail:0:300})};" \
  "install the Debian package dataset-fashion-mnist, set PATCHBENCH_DATA to a folder with the IDX files," \
  "or allow the torchvision download" >&2
exit 2
