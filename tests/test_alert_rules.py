"""deploy/prometheus/alerts.yml alerts on metrics the service really exports.

The syntax is checked by ``promtool check rules`` in CI (scripts/check_alert_rules.sh);
here every metric an expression names must be on ``/metrics``, and every rule says how
bad it is and what to do.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import yaml  # type: ignore[import-untyped]

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"
# prometheus_client's text format names counters with their _total on the TYPE line.
SUFFIXES = {"counter": ("",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported(metrics_text: str) -> set[str]:
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.update(name + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


async def test_every_alert_uses_exported_metrics(client: httpx.AsyncClient) -> None:
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    available = exported(metrics.text)
    rules = [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
    assert len(rules) == 9
    unknown = {
        rule["alert"]: sorted(set(re.findall(r"\bpayments_[a-z_]+\b", rule["expr"])) - available)
        for rule in rules
    }
    assert {alert: names for alert, names in unknown.items() if names} == {}
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_exported_reads_prometheus_type_lines() -> None:
    text = "# TYPE a_total counter\n# TYPE b gauge\n# TYPE c histogram\n"
    assert exported(text) == {"a_total", "b", "c_bucket", "c_sum", "c_count"}
