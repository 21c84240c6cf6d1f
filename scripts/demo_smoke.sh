#!/usr/bin/env bash
# The README's demonstration, as a fresh machine runs it: `payments-api serve` with no
# configuration (embedded PostgreSQL in a new data folder, sandbox Stripe), then
# `payments-api demo` against it over HTTP. Fails when any balance is not what the
# spec says.
set -euo pipefail
cd "$(dirname "$0")/.."

# A free port picked now (not a fixed one): two runs on one machine never collide.
port="${DEMO_PORT:-$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
data="$(mktemp -d)"
log="$(mktemp)"
# Only this script's own settings: nothing from the caller's environment leaks in.
for name in $(env | grep -o '^PAYMENTS_[A-Z0-9_]*' || true); do unset "$name"; done
export PAYMENTS_DATA_DIR="$data/postgres"
export PAYMENTS_PORT="$port"

.venv/bin/payments-api serve > "$log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2> /dev/null || true
  wait "$server" 2> /dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 1 180); do
  if curl -fsS "http://127.0.0.1:$port/readyz" > /dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$server" 2> /dev/null; then
    echo "demo_smoke: the service did not start:" >&2
    tail -50 "$log" >&2
    exit 1
  fi
  sleep 1
done
curl -fsS "http://127.0.0.1:$port/readyz"
echo
grep -q "SANDBOX" "$log" || { echo "demo_smoke: no sandbox warning at start-up" >&2; exit 1; }
.venv/bin/payments-api demo --base-url "http://127.0.0.1:$port"
