#!/usr/bin/env bash
# Installs Debian packages for the commands the tests and tools run, if those commands are
# missing (idempotent):
#   prometheus, promtool   the metrics tests and scripts/run-prometheus.sh start a real Prometheus
#   redis-server           the integration stack counts per-key rate limits in a real Redis
#   chromium               the chat page's browser tests drive a real headless Chromium
#   fonts-noto-cjk         so that Chromium draws the page's Chinese (screenshots included)
# Needs root or passwordless sudo. The packages' systemd units are not started: the tests start
# their own servers on loopback ports.
#   scripts/install-debian-tools.sh             everything above
#   scripts/install-debian-tools.sh prometheus  only that package
set -euo pipefail
declare -A COMMANDS=([prometheus]="prometheus promtool" [redis-server]="redis-server"
                     [chromium]="chromium")
# Packages without a command are checked by a file they install.
declare -A FILES=([fonts-noto-cjk]="/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
packages=("$@")
[[ ${#packages[@]} -gt 0 ]] || packages=(prometheus redis-server chromium fonts-noto-cjk)

missing=()
for package in "${packages[@]}"; do
  if [[ -n "${FILES[$package]:-}" ]]; then
    [[ -e "${FILES[$package]}" ]] || missing+=("$package")
    continue
  fi
  for command in ${COMMANDS[$package]}; do
    if ! command -v "$command" >/dev/null; then missing+=("$package"); break; fi
  done
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
    echo "install-debian-tools: ${missing[*]} not installed and this user cannot install" \
         "Debian packages. Run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "install-debian-tools: installing Debian's ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian starts a package's service on install where it can; redis-server's would take port
# 6379, Ray's GCS port. policy-rc.d answering 101 ("action forbidden") stops that.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
  trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
fi
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  # A fresh machine has no package lists yet.
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
for package in "${missing[@]}"; do
  if [[ -n "${FILES[$package]:-}" ]]; then
    [[ -e "${FILES[$package]}" ]] || { echo "install-debian-tools: ${FILES[$package]} missing" >&2; exit 1; }
    continue
  fi
  for command in ${COMMANDS[$package]}; do
    command -v "$command" >/dev/null || { echo "install-debian-tools: $command missing" >&2; exit 1; }
  done
done
