"""`make run` signs tokens with a secret of its own, made once per data folder."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from taskflow_devstack.__main__ import Stack
from taskflow_kit.settings import EXAMPLE_JWT_SECRET, ServiceSettings


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Stack:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("TASKFLOW_DATA_DIR", str(tmp_path / "data"))
    return Stack(tmp_path)


def test_a_random_secret_is_generated_once_and_kept(stack: Stack, tmp_path: Path) -> None:
    stack.jwt_secret()
    secret = stack.env["JWT_SECRET"]
    path = tmp_path / "data" / "jwt_secret"
    assert path.read_text() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret != EXAMPLE_JWT_SECRET
    # The services accept it in development, where the example secret is refused.
    assert ServiceSettings(environment="development", jwt_secret=secret).token_config().secret  # type: ignore[arg-type]

    again = Stack(tmp_path)
    again.jwt_secret()
    assert again.env["JWT_SECRET"] == secret

    other = Stack(tmp_path / "elsewhere")
    other.data = tmp_path / "other-data"
    other.jwt_secret()
    assert other.env["JWT_SECRET"] != secret


def test_a_configured_secret_wins(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JWT_SECRET", "s" * 40)
    configured = Stack(tmp_path)
    configured.jwt_secret()
    assert configured.env["JWT_SECRET"] == "s" * 40
    assert not (tmp_path / "data" / "jwt_secret").exists()


def test_a_secret_in_dot_env_is_left_to_the_services(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# mine\nexport JWT_SECRET='" + "e" * 40 + "'\n")
    stack.jwt_secret()
    assert "JWT_SECRET" not in stack.env
    assert not (tmp_path / "data" / "jwt_secret").exists()
