#!/usr/bin/env bash
# Installs every system dependency of aidomm from Debian packages. Idempotent: a fast no-op
# when everything is present. The CUDA toolkit is not a Debian package here; it is detected
# (tools/detect-cuda.sh), never required.
set -euo pipefail

PKGS=(gcc make cmake pkg-config libyaml-dev check libsubunit-dev llvm-19-dev libjansson-dev zlib1g-dev libssl-dev)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
