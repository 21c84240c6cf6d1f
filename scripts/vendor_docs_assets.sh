#!/usr/bin/env bash
# Refreshes the Swagger UI and ReDoc files that /docs and /redoc serve with no network
# (src/payments_api/docs_pages/static/), from their maintainers' npm distributions,
# with their licences, and records each file's SHA-256 in MANIFEST.json
# (tests/test_docs_pages.py checks the files against it).
# Usage: bash scripts/vendor_docs_assets.sh [swagger-ui-dist version] [redoc version]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
swagger="${1:-5.35.0}"
redoc="${2:-2.5.4}"
target="$repo/src/payments_api/docs_pages/static"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cd "$scratch"
npm pack --silent "swagger-ui-dist@$swagger" "redoc@$redoc" > /dev/null
mkdir swagger redoc
tar xzf "swagger-ui-dist-$swagger.tgz" -C swagger
tar xzf "redoc-$redoc.tgz" -C redoc

rm -rf "$target"
mkdir -p "$target/swagger-ui" "$target/redoc"
for file in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css \
  favicon-32x32.png LICENSE NOTICE; do
  cp "swagger/package/$file" "$target/swagger-ui/$file"
done
for file in bundles/redoc.standalone.js bundles/redoc.standalone.js.LICENSE.txt LICENSE; do
  cp "redoc/package/$file" "$target/redoc/$(basename "$file")"
done

python3 - "$target" "$swagger" "$redoc" << 'PY'
import hashlib, json, sys
from pathlib import Path

target, swagger, redoc = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
manifest = {
    "swagger-ui": {"npm": f"swagger-ui-dist@{swagger}", "license": "Apache-2.0"},
    "redoc": {"npm": f"redoc@{redoc}", "license": "MIT"},
}
for name, entry in manifest.items():
    entry["sha256"] = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((target / name).iterdir())
    }
(target / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
PY
echo "vendored swagger-ui-dist@$swagger and redoc@$redoc into $target"
