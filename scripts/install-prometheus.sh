#!/usr/bin/env bash
# Installs Debian's Prometheus server and promtool if they are missing (idempotent). Used by the
# test set-up (the metrics tests start a real Prometheus) and by scripts/run-prometheus.sh.
# Needs root or passwordless sudo; the package's systemd unit is not started.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
    echo "install-prometheus: Prometheus is not installed and this user cannot install" \
         "Debian packages. Run: sudo apt-get install prometheus" >&2
    exit 1
  fi
fi
echo "install-prometheus: installing Debian's prometheus package"
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1; then
  # A fresh machine has no package lists yet.
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y --no-install-recommends prometheus >/dev/null
fi
prometheus --version 2>&1 | head -1
