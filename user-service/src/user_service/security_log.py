"""Structured security events (`taskflow.security` logger), one JSON line each.

Every event names the user (when known) and the client address, so a log search can answer
"who tried what from where": login failures and throttling, refresh-token reuse, password,
email, username and administrator changes, account deletion. Never a password or a token.
"""

from __future__ import annotations

from typing import Any

import structlog

LOGGER = "taskflow.security"
# Events that suggest an attack are warnings; the rest record account changes.
_WARNINGS = frozenset(
    {"login_failed", "login_throttled", "refresh_token_reused", "reauthentication_failed"}
)


def security_event(event: str, *, user_id: int | None, address: str | None, **details: Any) -> None:
    # Looked up per event (rare next to the bcrypt run most of them follow), so the logging
    # configuration in force at the time applies.
    logger = structlog.get_logger(LOGGER)
    log = logger.warning if event in _WARNINGS else logger.info
    log(event, security=True, user_id=user_id, address=address, **details)
