"""Supply chain: workflow actions pinned by commit, a vulnerability scan that `make audit` and
CI run (never `make test`: it needs the network), and dependency floors above known CVEs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def test_every_workflow_action_is_pinned_by_commit_sha() -> None:
    for path in (ROOT / ".github" / "workflows").glob("*.yml"):
        workflow = yaml.safe_load(path.read_text())
        for job in workflow["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), (
                        path.name,
                        step["uses"],
                    )


def test_the_vulnerability_scan_is_a_target_and_a_ci_job_but_not_part_of_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    audit = re.search(r"^audit:.*?(?=^\S)", makefile, re.S | re.M)
    assert audit is not None
    assert "pip-audit" in audit.group(0)
    test = re.search(r"^test:.*?(?=^\S)", makefile, re.S | re.M)
    assert test is not None
    assert "audit" not in test.group(0)
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["audit"]["steps"]]
    assert "make audit" in runs
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    assert any(requirement.startswith("pip-audit") for requirement in dev)


def floors(pyproject: Path) -> dict[str, tuple[int, ...]]:
    found = {}
    for requirement in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        match = re.fullmatch(r"([\w-]+)(?:\[[\w,]+\])?>=([\d.]+)", requirement)
        if match:
            found[match.group(1).lower()] = tuple(int(part) for part in match.group(2).split("."))
    return found


def test_dependency_floors_exclude_known_vulnerable_versions() -> None:
    kit = floors(ROOT / "libs" / "kit" / "pyproject.toml")
    assert kit["pyjwt"] >= (2, 10, 1)  # CVE-2024-53861
    assert kit["starlette"] >= (0, 49, 1)  # CVE-2025-62727
    assert kit["h11"] >= (0, 16, 0)  # CVE-2025-43859
    assert floors(ROOT / "user-service" / "pyproject.toml")["python-multipart"] >= (0, 0, 18)
    assert floors(ROOT / "api-gateway" / "pyproject.toml")["aiohttp"] >= (3, 12, 14)
