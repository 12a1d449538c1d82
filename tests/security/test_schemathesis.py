"""Schemathesis (`--checks all`, coverage + fuzzing + stateful phases, bounded examples) against
the merged OpenAPI through the gateway and against each service's own, each with a real user's
token. No server error and no response that breaks the documented schema, status codes,
content types or headers.

Every finding fails the run. Where an answer depends on state no schema can state (a stale
If-Match is 412, an assignee who is not an active user is 422, a wrong current password is
400), the route documents it in its `responses=` and schemathesis.toml lists it as expected for
schema-valid requests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import (
    ALL_SERVICES,
    ROOT,
    ServiceProcess,
    Suite,
    register_and_login,
    require_services,
)
from tests.reliability import figures

require_services(*ALL_SERVICES)
pytestmark = pytest.mark.suite

CONFIG = Path(__file__).with_name("schemathesis.toml")


def run_schemathesis(
    name: str,
    schema_url: str,
    base_url: str,
    token: str,
    tmp: Path,
    *,
    examples: int,
    extra: list[str],
) -> dict[str, Any]:
    report = tmp / f"{name}.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        schema_url,
        "--url",
        base_url,
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        "20261201",
        "--generation-deterministic",
        "--no-shrink",
        "--suppress-health-check",
        "all",
        # One worker: with two threads, Hypothesis changing the recursion limit in one while
        # the other parses a lambda's source crashed the run ("AST constructor recursion
        # depth mismatch", CPython 3.11) — a tool error that would fail CI at random.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--max-time",
        str(MAX_SECONDS),
        "-H",
        f"Authorization: Bearer {token}",
        "--report-json-path",
        str(report),
        *extra,
    ]
    completed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60 + MAX_SECONDS, check=False
    )
    assert report.exists(), completed.stdout[-3000:] + completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(report.read_text())
    result["output"] = completed.stdout
    return result


# Per target: four runs of this stay within the suite's time budget on a 2-core machine.
# A deeper run (more examples, more time) for a hunt: SCHEMATHESIS_DEPTH=10.
DEPTH = int(os.environ.get("SCHEMATHESIS_DEPTH", "1"))
MAX_SECONDS = 10 * DEPTH
TARGETS = ["gateway", "user-service", "task-service", "stats-service"]
# Deleting or renaming the account, or ending the run's own session (logout with only the
# access token), mid-run would turn the rest into 401s; their unit tests cover them.
# (schemathesis keeps only the last `--exclude-path-regex`: one regex says it all.)
KEEP_THE_SESSION = "^/api/v1/users/me$|^/api/v1/auth/logout$"


@pytest.mark.parametrize("target", TARGETS)
def test_schemathesis_finds_no_server_error_or_schema_violation(
    suite: Suite, gateway: ServiceProcess, client: httpx.Client, tmp_path: Path, target: str
) -> None:
    user = register_and_login(client, "schemathesis")
    if target == "gateway":
        base = gateway.url
        # Login fuzzing through the gateway would spend the suite's own address budget in the
        # failed-login throttle; the service-level run below covers login with its own address.
        extra = ["--exclude-path-regex", f"{KEEP_THE_SESSION}|/login$"]
        examples = 4 * DEPTH
    else:
        process = {
            "user-service": suite.user,
            "task-service": suite.task_replicas[0],
            "stats-service": suite.stats,
        }[target]
        assert process is not None
        base = process.url
        extra = [
            "-H",
            "X-Forwarded-For: 198.51.100.77",
            "--exclude-path-regex",
            KEEP_THE_SESSION,
        ]
        examples = 3 * DEPTH
    result = run_schemathesis(
        target, f"{base}/openapi.json", base, user.token, tmp_path, examples=examples, extra=extra
    )
    generated = int(result["test_cases"]["generated"])
    figures.count("schemathesis", "requests", generated)
    figures.count("schemathesis", f"requests:{target}", generated)
    for failure in result["failures"]:
        figures.count(
            "schemathesis", f"finding:{failure['code']}:{failure['type']}", failure["count"]
        )
    assert result["operations"]["tested"] > 0
    assert not result["errors"], json.dumps(result["errors"]) + "\n" + result["output"][-8000:]
    findings = result["failures"]
    assert not findings, json.dumps(findings, indent=1) + "\n" + result["output"][-6000:]


@pytest.fixture(scope="module", autouse=True)
def _write_figures() -> Any:
    yield
    figures.write()
