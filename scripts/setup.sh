#!/usr/bin/env bash
# Installs everything vmrig needs on a fresh Debian/Ubuntu machine (as root),
# then the npm dependencies, then builds vmrig. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runtime: QEMU, image building, networks, OCR (tesseract, for tests with enableOCR).
# The test suite also drives the REPL through tmux, validates JUnit XML with xmllint and
# renders the HTML report in chromium.
PKGS=(qemu-system-x86 qemu-utils mmdebstrap vde2 e2fsprogs cpio xz-utils zstd util-linux openssl ca-certificates socat
  tesseract-ocr tesseract-ocr-eng tmux libxml2-utils chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ -f package-lock.json ]; then npm ci --no-fund --no-audit; else npm install --no-fund --no-audit; fi
npm run build
node dist/cli/main.js doctor
