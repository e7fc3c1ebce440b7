#!/usr/bin/env bash
# Installs everything vmrig needs on a fresh Debian/Ubuntu machine (as root),
# then the npm dependencies, then builds vmrig. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runtime: QEMU, systemd-nspawn (containers), image building, networks, Python test scripts (python3,
# pyflakes), OCR (tesseract, for tests with enableOCR), ffmpeg (vmrig run --video).
# The test suite also drives the REPL through tmux, validates JUnit XML with xmllint and
# renders the HTML report in chromium.
PKGS=(qemu-system-x86 qemu-utils mmdebstrap vde2 e2fsprogs cpio xz-utils zstd util-linux openssl ca-certificates socat
  systemd-container iproute2 nftables python3 python3-pyflakes tesseract-ocr tesseract-ocr-eng ffmpeg tmux libxml2-utils chromium)
export DEBIAN_FRONTEND=noninteractive

# QEMU: the newest the host can have. Debian 12 ships 7.2; bookworm-backports has 10.0
# (Debian 13's). vmrig works with both (and Ubuntu 24.04's 8.2); VMRIG_QEMU_BACKPORTS=0 keeps 7.2.
. /etc/os-release
backports=
if [ "${VERSION_CODENAME:-}" = bookworm ] && [ "${VMRIG_QEMU_BACKPORTS:-1}" = 1 ] &&
  ! dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null | grep -q bpo12; then
  backports=1
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      >/etc/apt/sources.list.d/vmrig-bookworm-backports.sources
  fi
fi

missing=()
for p in "${PKGS[@]}"; do
  [ -n "$backports" ] && case "$p" in qemu-system-x86 | qemu-utils) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ -n "$backports" ]; then
  apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ -n "$backports" ]; then
  echo "setup: QEMU from bookworm-backports"
  apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils
fi

if [ -f package-lock.json ]; then npm ci --no-fund --no-audit; else npm install --no-fund --no-audit; fi
npm run build
node dist/cli/main.js doctor
