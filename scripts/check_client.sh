#!/usr/bin/env bash
# The API as a web app sees it: generate TypeScript types from the committed
# openapi.json (openapi-typescript) and type-check a hand-written usage file that calls
# top-up, balance, escrow, payout account and payouts through openapi-fetch
# (tsc --noEmit). A renamed field, a lost schema or a dropped route fails here.
set -euo pipefail
cd "$(dirname "$0")/../clients/typescript"

if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  echo "check_client: node and npm are required (Node.js >= 18)" >&2
  exit 1
fi
# Exactly the versions in package-lock.json; nothing is resolved anew.
npm ci --no-audit --no-fund --loglevel=error
npm run --silent generate
npm run --silent typecheck
echo "check_client: TypeScript client types and usage check out"
