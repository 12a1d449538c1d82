"""What repositories share: the pattern for a substring search.

A repository is the one place a service's queries live (each service's on the request's asyncpg
connection: taskflow_kit.db).
"""

from __future__ import annotations


def like_pattern(term: str) -> str:
    """A pattern for `LIKE` or `ILIKE ... ESCAPE '\\'` matching `term` anywhere, its wildcards
    literal."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
