#!/usr/bin/env bash
# The Swift client, generated from the committed openapi.json with openapi-generator's
# `swift6` generator (the openapi-generator-cli wheel from PyPI bundles its jar; it needs
# a Java runtime: Debian's default-jre-headless is installed when none is found). Fails
# on any generator error or warning except the generator's own notes listed below.
# Compiling Swift needs a toolchain this machine lacks, so the output is generated into
# a temporary folder, checked for the operations clients/swift/Usage.swift calls, and
# removed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

if ! command -v java > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    apt-get install -y -qq default-jre-headless > /dev/null
  else
    echo "generate_swift: a Java runtime is required (Debian: apt-get install default-jre-headless)" >&2
    exit 1
  fi
fi

out="$(mktemp -d)"
log="$(mktemp)"
trap 'rm -rf "$out" "$log"' EXIT
.venv/bin/openapi-generator-cli generate -g swift6 -i openapi.json -o "$out" \
  --additional-properties=projectName=PaymentsAPI,responseAs=AsyncAwait > "$log" 2>&1 || {
  cat "$log" >&2
  exit 1
}
# Notes the generator prints for every 3.1 document, not about this one's content:
# 3.1 support "in beta"; a schema-name lookup of a nameless (inline) schema; and the
# reserved-word check it runs on the JSON keyword `type` (no model named Type exists).
allowed='OpenAPI 3.1 support is still in beta|Failed to get the schema name: null|Type \(reserved word\) cannot be used as model name'
if grep -E '\b(WARN|ERROR)\b' "$log" | grep -Ev "$allowed"; then
  echo "generate_swift: the generator warned about openapi.json (above)" >&2
  exit 1
fi
# What the usage file calls must exist in the generated client.
for symbol in 'func createTopup(' 'func getBalance(' 'func createEscrow(' 'func listEscrows(' \
  'struct Problem' 'enum Currency' 'enum ErrorResponse' 'class PaymentsAPIAPIConfiguration'; do
  if ! grep -rqF "$symbol" "$out/Sources/PaymentsAPI"; then
    echo "generate_swift: the generated client has no '$symbol' (clients/swift/Usage.swift uses it)" >&2
    exit 1
  fi
done
count="$(find "$out/Sources" -name '*.swift' | wc -l)"
echo "generate_swift: $count Swift files generated from openapi.json without warnings"
