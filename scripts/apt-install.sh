# Sourced by scripts/ensure-dataset.sh and scripts/ensure-browser.sh (bash).
# apt_install TAG PACKAGE: install a Debian package with apt-get, as root or through `sudo -n` (never
# prompting for a password). Returns 0 when apt-get installed it, 1 when apt-get failed, 2 when it
# could not try (no apt-get; not root and no sudo). Says what it does on stderr as "TAG: ...".
apt_install() {
  local tag="$1" package="$2" sudo=""
  command -v apt-get >/dev/null 2>&1 || return 2
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "$tag: not root and no sudo: skipping apt-get" >&2
      return 2
    fi
    sudo="sudo -n"  # -n: fail instead of prompting for a password
  fi
  echo "$tag: installing Debian's $package with ${sudo:+$sudo }apt-get" >&2
  # env: sudo drops DEBIAN_FRONTEND from the environment
  $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" || return 1
}
