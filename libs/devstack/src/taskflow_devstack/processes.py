"""The command line that runs an ASGI app under uvicorn, shared by `make run`, the whole-suite
tests (tests/harness) and the benchmarks (bench/), so all three run a service the way its
Dockerfile does."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

WS_MAX_SIZE = 65536  # bytes; the Dockerfile's command line says the same


def uvicorn_command(
    app: str,
    *,
    port: int,
    host: str = "127.0.0.1",
    factory: bool = False,
    access_log: bool = True,
    log_level: str | None = None,
    app_dir: Path | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """`python -m uvicorn <app>` on `host:port`, with this interpreter.

    `app` is `module:attribute`; `factory` calls the attribute to build the app (our services'
    `create_app`). Proxy headers are always off: the gateway is the edge and the services apply
    their own X-Forwarded-For rules, so uvicorn must not rewrite the client address from
    headers a client on this host can forge (it trusts them from 127.0.0.1 by default).
    WebSocket messages are bounded at `WS_MAX_SIZE` by uvicorn itself (its default is 16 MiB),
    before the gateway's own smaller per-message cap reads them.
    """
    command = [sys.executable, "-m", "uvicorn", app]
    if app_dir is not None:
        command += ["--app-dir", str(app_dir)]
    if factory:
        command.append("--factory")
    command += ["--host", host, "--port", str(port)]
    if not access_log:
        command.append("--no-access-log")
    command.append("--no-proxy-headers")
    command += ["--ws-max-size", str(WS_MAX_SIZE)]
    if log_level is not None:
        command += ["--log-level", log_level]
    command += extra
    return command
