from __future__ import annotations

from pathlib import Path

from payments_api.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_env_example_documents_every_variable() -> None:
    text = (REPO / ".env.example").read_text()
    missing = [n for n in Settings.model_fields if f"PAYMENTS_{n.upper()}=" not in text]
    assert not missing, f"regenerate: python scripts/gen_env_example.py > .env.example {missing}"
