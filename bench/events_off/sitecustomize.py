"""Imported by every Python process started with this folder on PYTHONPATH (site's
``sitecustomize`` hook): with ``PAYMENTS_BENCH_EVENTS_OFF=1`` it applies
``bench.events.off_patches`` (no outgoing events, no balance-alert checks), so that
``payments-api serve`` and each of its uvicorn workers run the ``off`` variant of
``python -m bench.events``'s HTTP measurement. Nothing else uses it."""

import os

if os.environ.get("PAYMENTS_BENCH_EVENTS_OFF") == "1":
    from bench.events import off_patches

    for _patch in off_patches():
        _patch.start()
