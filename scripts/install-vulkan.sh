#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe) 25 or newer on Debian 12,
# so that WebGPU (Dawn, through the npm package `webgpu`) has an adapter on a
# machine without a GPU. Debian 12 has it in bookworm-backports: this enables
# that suite on the mirror already configured, then installs the driver.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

lavapipe_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; }
if lavapipe_version | grep -qE '^(2[5-9]|[3-9][0-9])\.'; then
  echo "mesa-vulkan-drivers $(lavapipe_version) is installed"
  exit 0
fi
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  uri=$(grep -hs -m1 '^URIs:' /etc/apt/sources.list.d/*.sources | head -n1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hs -m1 '^deb ' /etc/apt/sources.list | awk '{print $2}')
  [ -n "$uri" ] || { echo "no Debian mirror configured in /etc/apt" >&2; exit 1; }
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
    | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources > /dev/null
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers libvulkan1
