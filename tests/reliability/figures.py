"""Counts the reliability and security suites produce, written to a JSON file at the end of the
run (docs/reliability.md quotes it). Path: $TASKFLOW_RELIABILITY_FIGURES, else
.data/reliability/figures.json (ignored by git)."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
_lock = threading.Lock()
_counts: defaultdict[str, Counter[str]] = defaultdict(Counter)


def count(category: str, key: str, amount: int = 1) -> None:
    """Add `amount` to `key` within `category` (thread-safe)."""
    with _lock:
        _counts[category][key] += amount


def record(category: str, response: httpx.Response | None, *, error: str | None = None) -> None:
    """Count one request of `category`: its status class (2xx, 4xx, 5xx, ...) and exact status,
    or the transport error that replaced it."""
    if response is None:
        count(category, "requests")
        count(category, f"transport_error:{error or 'unknown'}")
        return
    count(category, "requests")
    count(category, f"{response.status_code // 100}xx")
    count(category, f"status:{response.status_code}")


def path() -> Path:
    configured = os.environ.get("TASKFLOW_RELIABILITY_FIGURES")
    return Path(configured) if configured else ROOT / ".data" / "reliability" / "figures.json"


def snapshot() -> dict[str, Any]:
    with _lock:
        categories = {name: dict(sorted(counter.items())) for name, counter in _counts.items()}
    totals: Counter[str] = Counter()
    for counter in categories.values():
        for key in ("requests", "faults_injected", "5xx"):
            totals[key] += counter.get(key, 0)
    return {"totals": dict(totals), "categories": dict(sorted(categories.items()))}


def write() -> Path:
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(snapshot(), indent=2) + "\n")
    return target
