"""`/docs` and `/redoc` work offline: every script and stylesheet they load is served by
the service itself."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

import payments_api.docs_pages

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_page_loads_only_local_assets(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assets = [a for a in ASSET.findall(response.text) if not a.startswith("#")]
    assert assets, "the page loads no assets at all"
    for asset in assets:
        assert asset.startswith("/docs-assets/"), f"{page} loads {asset} from elsewhere"
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 0, asset
    # The browser refuses anything a bundle would still fetch from elsewhere.
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "img-src 'self' data:" in policy
    assert "cdn." not in response.text
    assert "fonts.googleapis" not in response.text


STATIC = Path(payments_api.docs_pages.__file__).resolve().parent / "static"
MANIFEST: dict[str, Any] = json.loads((STATIC / "MANIFEST.json").read_text())


def test_the_vendored_files_are_the_npm_distributions_as_recorded() -> None:
    # scripts/vendor_docs_assets.sh wrote these digests; a hand edit or a partial
    # refresh shows up here.
    assert set(MANIFEST) == {"swagger-ui", "redoc"}
    for name, entry in MANIFEST.items():
        files = {path.name for path in (STATIC / name).iterdir()}
        assert files == set(entry["sha256"]), name
        for file, digest in entry["sha256"].items():
            assert hashlib.sha256((STATIC / name / file).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/docs-assets/swagger-ui/LICENSE", "Apache License"),
        ("/docs-assets/swagger-ui/NOTICE", "SmartBear"),
        ("/docs-assets/redoc/LICENSE", "MIT License"),
        ("/docs-assets/redoc/redoc.standalone.js.LICENSE.txt", "license"),
        ("/docs-assets/swagger-ui/swagger-ui-bundle.js.LICENSE.txt", "license"),
    ],
)
async def test_the_licences_are_served_beside_the_assets(
    client: httpx.AsyncClient, path: str, names: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert names.lower() in response.text.lower()
