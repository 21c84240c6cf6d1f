#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/browser), from Debian's packages:
# Playwright's own browser download cannot be used (only package registries are
# reachable), so Playwright drives /usr/bin/chromium instead. Idempotent: does nothing
# when Chromium and a font are already installed. Needs root (CI and the dev machines
# run as root) or sudo.
set -euo pipefail

font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
if [ -x /usr/bin/chromium ] && [ -f "$font" ]; then
  echo "install_browser: chromium already installed"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
$sudo apt-get update -qq
# Recommends skipped (desktop integration the headless tests never use); a font is
# named explicitly so screenshots show text on a minimal image.
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version 2> /dev/null
