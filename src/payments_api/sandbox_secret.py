"""The secret the offline Stripe sandbox signs its webhook events with, kept in the data
folder (the product accepts it in sandbox mode: ``settings.webhook_secrets``)."""

from __future__ import annotations

import os
import secrets as secrets_module
import time
from functools import lru_cache
from pathlib import Path
from typing import Protocol

SANDBOX_SECRET_FILE = "sandbox-webhook-secret"  # noqa: S105 - a file name


class HasDataDir(Protocol):
    """The settings (settings.py imports this module, so not named here: no loop)."""

    @property
    def data_dir(self) -> Path: ...


def sandbox_webhook_secret(settings: HasDataDir) -> str:
    """The secret the sandbox signs its events with: random, made once per data folder
    (``PAYMENTS_DATA_DIR``) and kept there (mode 0600).

    It used to be a constant published in the source, so anyone who could reach the
    port could sign events the service would accept. Every process using the same data
    folder (workers of one serve, a later restart) shares it.
    """
    return _secret_in(settings.data_dir.resolve())


@lru_cache(maxsize=16)
def _secret_in(data_dir: Path) -> str:
    path = data_dir / SANDBOX_SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes starting at once, one writes and both read its value.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write("whsec_" + secrets_module.token_urlsafe(32))
    for _ in range(100):
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.01)  # the other process is between creating and writing the file
    raise RuntimeError(f"{path} is empty: delete it to make a new sandbox secret")
