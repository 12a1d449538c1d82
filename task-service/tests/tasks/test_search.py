"""Search on the stored lowered text (`search_text`, migration 0008_h16g) finds exactly what
`title ILIKE '%term%' OR description ILIKE '%term%'` finds in PostgreSQL itself, for any text
and term (case pairs outside ASCII, wildcards taken literally), and follows edits; whichever
way its count finds the matches (`ListShape.counts_by_walking`): walking the caller's tasks,
or the term's search keys (migration 0009_h16h)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from task_factories import auth, create_task, insert_tasks, plain_task
from task_service.database import Base
from task_service.tasks import listing
from taskflow_kit.repository import like_pattern
from taskflow_kit.testing import empty_tables

pytestmark = pytest.mark.usefixtures("client", "counting")


@pytest.fixture(autouse=True, params=["as sampled", "walking", "by keys"])
def counting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The count's choice as shipped, or forced one way: walking as soon as one of the newest
    tasks matches (DENSE_WHEN 0), or always by the keys (a threshold no user reaches)."""
    forced = {"walking": 0, "by keys": 10**12}.get(request.param)
    if forced is not None:
        # Read per call (the choice is a field of the shape, not a part of any cached SQL).
        monkeypatch.setattr(listing, "DENSE_WHEN", forced)


# Letters whose lower case differs in interesting ways (sharp s, dotted and dotless i, the
# three sigmas, E acute; written as escapes), the pattern characters a term must match
# literally, and a space. No line break: a term holding one could
# match across the end of a title and the start of its description (docs/api.md says so).
ALPHABET = "aAbB\u00df\u1e9e\u0130\u0131iI\u03a3\u03c3\u03c2\u00c9\u00e9%_\\ "
texts = st.text(alphabet=ALPHABET, max_size=12)
# Terms of one or two characters are checked on the rows; from three on, the caller's matches
# are found by search keys first (migration 0009_h16h), one per three characters.
terms = st.text(alphabet=ALPHABET, min_size=1, max_size=5).filter(lambda t: t.strip() == t)


async def ilike_reference(app: FastAPI, owner: int, term: str) -> list[int]:
    """What the search was before 0008_h16g, asked of PostgreSQL itself."""
    async with app.state.pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT id FROM task WHERE owner_id = $1 AND (title ILIKE $2 ESCAPE '\\' "
            "OR description ILIKE $2 ESCAPE '\\') ORDER BY id",
            owner,
            like_pattern(term),
        )
    return [row["id"] for row in rows]


async def searched(client: httpx.AsyncClient, owner: int, term: str) -> list[int]:
    response = await client.get(
        "/api/v1/tasks/", params={"search": term, "limit": 100}, headers=auth(owner)
    )
    assert response.status_code == 200, response.text
    found = response.json()
    ids = sorted(task["id"] for task in found["tasks"])
    # The count found the same tasks as the page (fewer than the cap here: exact).
    assert (found["total"], found["total_exact"]) == (len(ids), True), found
    return ids


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(st.tuples(texts.filter(bool), st.none() | texts), min_size=1, max_size=8),
    term=terms,
    data=st.data(),
)
async def test_search_finds_what_ilike_finds(
    client: httpx.AsyncClient,
    app: FastAPI,
    rows: list[tuple[str, str | None]],
    term: str,
    data: st.DataObject,
) -> None:
    if data.draw(st.booleans(), label="a piece of a title"):
        # Half the terms are cut from a title, in a case of their own: some tasks match.
        title = data.draw(st.sampled_from([title for title, _ in rows]))
        start = data.draw(st.integers(0, len(title) - 1))
        piece = title[start : start + data.draw(st.integers(1, 5))]
        term = "".join(data.draw(st.sampled_from([c.lower(), c.upper()])) for c in piece)
        assume(term.strip() == term)
    await empty_tables(app.state.engine, Base.metadata)
    await insert_tasks(app, [plain_task(title, description=text) for title, text in rows])
    assert await searched(client, 1, term) == await ilike_reference(app, 1, term)


async def test_search_follows_an_edit_of_title_or_description(
    client: httpx.AsyncClient,
) -> None:
    task = await create_task(client, title="Quarterly Report", description="numbers")
    assert await searched(client, 1, "REPORT") == [task["id"]]
    changed = await client.patch(
        f"/api/v1/tasks/{task['id']}",
        json={"title": "Quarterly summary", "description": "the Zeppelin budget"},
        headers={**auth(1), "If-Match": f'"{task["version"]}"'},
    )
    assert changed.status_code == 200, changed.text
    assert await searched(client, 1, "report") == []
    assert await searched(client, 1, "zeppelin") == [task["id"]]
    assert await searched(client, 1, "SUMMARY") == [task["id"]]
    # Not across the title's end and the description's start.
    assert await searched(client, 1, "summarythe") == []
    assert await searched(client, 1, "summary the") == []
