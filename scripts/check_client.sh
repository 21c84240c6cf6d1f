#!/usr/bin/env bash
# The API as a web app sees it: generate TypeScript types from the committed
# openapi.json (openapi-typescript), type-check the client package (src/usage.ts and its
# test), then run the usage test with node's test runner against a live service in
# sandbox mode on a free port (embedded PostgreSQL in a temporary folder, removed after).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo/clients/typescript"

if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  echo "check_client: node and npm are required (Node.js >= 18)" >&2
  exit 1
fi
# Exactly the versions in package-lock.json; nothing is resolved anew.
npm ci --no-audit --no-fund --loglevel=error
npm run --silent generate
npm run --silent typecheck
npm run --silent build

port="$("$repo/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
scratch="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2> /dev/null || true
    wait "$server" 2> /dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
# Only this script's settings: nothing from the caller's environment leaks in.
for name in $(env | grep -o '^PAYMENTS_[A-Z0-9_]*' || true); do unset "$name"; done
export PAYMENTS_DATA_DIR="$scratch/postgres"
(cd "$scratch" && exec "$repo/.venv/bin/payments-api" serve --port "$port") > "$scratch/serve.log" 2>&1 &
server=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 600); do
  if curl -fsS "$base/readyz" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2> /dev/null; then
    echo "check_client: the service did not start:" >&2
    tail -50 "$scratch/serve.log" >&2
    exit 1
  fi
  sleep 0.2
done

token() { (cd "$scratch" && "$repo/.venv/bin/payments-api" token --sub "$1" --role "$2"); }
payee="ts-payee-$port"
PAYMENTS_BASE_URL="$base" \
  CUSTOMER_TOKEN="$(token "ts-customer-$port" customer)" \
  PAYEE_TOKEN="$(token "$payee" payee)" \
  PAYEE_ID="$payee" \
  npm test --silent
echo "check_client: TypeScript client types check out, and the usage test passed against $base"
