"""`/docs` and `/redoc` work offline: every script and stylesheet they load is served by
the service itself."""

from __future__ import annotations

import re

import httpx
import pytest

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
    assert "cdn." not in response.text
    assert "fonts.googleapis" not in response.text
