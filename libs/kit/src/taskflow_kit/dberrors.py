"""What a database error means, read once: the chain of causes (SQLAlchemy's `orig`, then
`__cause__`), its SQLSTATE, the constraint it names, and whether it says the database cannot
be reached. Imports no driver, so the error boundary works in a service without a database."""

from __future__ import annotations

from collections.abc import Iterator

# PostgreSQL aborted the transaction because it lost a race that running it again resolves:
# deadlock_detected (the victim) and serialization_failure (`taskflow_kit.db.rerun_on_conflict`).
RERUNNABLE_SQLSTATES = frozenset({"40P01", "40001"})
# Connection exceptions are class 08. admin_shutdown, crash_shutdown, cannot_connect_now
# (starting or stopping), the session ended for idling in its transaction (its process stalled:
# `create_pool`'s idle_in_transaction_timeout), and the transient conflicts a rerun resolves
# (when the last run lost too): answered 503 + Retry-After rather than 500.
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "25P03"}) | RERUNNABLE_SQLSTATES
# foreign_key_violation and unique_violation: under concurrency, a row the request refers to
# was deleted, or one it creates was created first, between its checks and its write.
CONFLICT_SQLSTATES = frozenset({"23503", "23505"})

_MAX_DEPTH = 16


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it wraps: SQLAlchemy's DBAPI error (`orig`), else `__cause__`
    (bounded, and each exception once)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < _MAX_DEPTH:
        yield current
        seen.add(id(current))
        wrapped = getattr(current, "orig", None)
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__


def sqlstate(error: BaseException) -> str | None:
    """The first SQLSTATE in `error`'s chain (asyncpg's errors carry one), if any."""
    for cause in causes(error):
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
    return None


def constraint_name(error: BaseException) -> str | None:
    """The constraint (or unique index) a violation in `error`'s chain names, if any."""
    for cause in causes(error):
        name = getattr(cause, "constraint_name", None)
        if isinstance(name, str) and name:
            return name
    return None


def rerunnable(error: BaseException) -> bool:
    """Whether `error` is PostgreSQL aborting a transaction that a new run can complete."""
    return sqlstate(error) in RERUNNABLE_SQLSTATES


def is_integrity_conflict(error: BaseException) -> bool:
    """Whether `error` is a foreign-key or unique violation (a concurrent change won)."""
    return sqlstate(error) in CONFLICT_SQLSTATES


def is_unavailable_database(error: BaseException) -> bool:
    """Whether `error` means the database (or another backing store) cannot be reached now:
    refused, reset or timed out, a connection SQLAlchemy invalidated, or a SQLSTATE saying so."""
    for cause in causes(error):
        if isinstance(cause, ConnectionError | TimeoutError):
            return True
        if getattr(cause, "connection_invalidated", False) is True:
            return True
        if _sqlalchemy_disconnect(cause):
            return True
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and (state.startswith("08") or state in UNAVAILABLE_SQLSTATES):
            return True
    return False


def _sqlalchemy_disconnect(error: BaseException) -> bool:
    try:
        from sqlalchemy.exc import InterfaceError, OperationalError
    except ImportError:  # no [db] extra: no SQLAlchemy error can be raised either
        return False
    return isinstance(error, OperationalError | InterfaceError)
