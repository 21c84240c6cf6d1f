#!/usr/bin/env bash
# `promtool check rules` on deploy/prometheus/alerts.yml. promtool comes with Debian's
# prometheus package; with CI=true it is installed when missing (like the browser).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool > /dev/null; then
  if [ "${CI:-}" != "true" ]; then
    echo "check_alert_rules: promtool missing (apt-get install prometheus); skipped" >&2
    exit 0
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends prometheus > /dev/null
fi
promtool check rules deploy/prometheus/alerts.yml
