"""Every hot query's plan at a realistic size: a big user (150,000 tasks) and a small one (3,000)
in one database, loaded by PostgreSQL itself and ANALYZEd.

Each listing and aggregate query runs under `EXPLAIN (ANALYZE, FORMAT JSON)` for both users; the
plan must read `task` through indexes only (never a sequential scan) and touch a bounded number
of its rows, far fewer than the big user holds: a query's cost must not grow with the user's
(or another user's) task count. The bounds are loose multiples of what a page needs, tight
enough that a plan which reads the big user's rows wholesale (a sort of everything, an OR of
owner and assignee, a GIN scan over every user) fails.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

# bulk_tasks sits in tests/, which the suite's conftest puts on the path.
from bulk_tasks import (
    BULK_INSERT,
    COMMON_TAG,
    COMMON_TERM,
    CROWDED_TAG,
    RARE_TAG,
    RARE_TERM,
    bulk_insert_parameters,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from task_service.aggregates.repository import AggregateRepository, Scope
from task_service.tasks import listing
from task_service.tasks.cursor import encode_cursor
from task_service.tasks.graph_repository import _DEPENDENCIES, _DEPENDENTS
from task_service.tasks.repository import _GET_VISIBLE, READ_COLUMNS, listing_shape, visible_to
from task_service.tasks.schemas import TaskFilter
from taskflow_kit.db import Statement, async_database_url, asyncpg_dsn
from taskflow_kit.testing import Recording, explain_as_run, migrated_database, plans_of

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
BIG, SMALL = 1, 2
SIZES = {BIG: 150_000, SMALL: 3_000}
# A project board (issue 19) of BOARD tasks owned by BOARD_OWNER, with MEMBER (who owns nothing)
# a member: the project's page must be as cheap as a personal one, whatever the plan.
BOARD, BOARD_OWNER, MEMBER = 20_000, 5, 4
# Rows of `task` a listing may touch: a page of 20 and its lookups, a skip of 1,000, the rare
# tag's and term's matches; a count stops at listing.TOTAL_CAP + 1 matches, which takes
# reading the cap divided by how dense the matches are (1/16 for the common term).
PAGE_BUDGET = 3_000
# CROWDED_TAG is on a third of the big user's tasks and three of the small user's: the small
# user's page and count must not go through the big user's matches.
CROWDED_EVERY = {BIG: 3, SMALL: 1000}
COUNT_BUDGET = 20 * (listing.TOTAL_CAP + 1)

LISTINGS: dict[str, dict[str, Any]] = {
    "first page": {},
    "skip 1000": {"skip": 1000},
    "status": {"statuses": ["done"]},
    "priority": {"priorities": ["urgent", "high"]},
    "overdue": {"overdue": True},
    "not overdue": {"overdue": False},
    "due before": {"due_before": datetime.now(UTC) - timedelta(days=300)},
    "due after": {"due_after": datetime.now(UTC) + timedelta(days=300)},
    "common tag": {"tags": [COMMON_TAG]},
    "rare tag": {"tags": [RARE_TAG]},
    "tag crowded by another user": {"tags": [CROWDED_TAG]},
    "common term": {"search": COMMON_TERM},
    "rare term": {"search": RARE_TERM},
    "owned": {"scope": "owned"},
    "assigned": {"scope": "assigned"},
    "assignee filter": {"assignee_id": 105},
    **{
        f"sort {field} {order}": {"sort_by": field, "sort_order": order}
        for field in ("created_at", "updated_at", "due_date", "priority", "title", "status")
        for order in ("asc", "desc")
    },
}


RARE = {"rare tag", "rare term"}


@dataclass
class Plan:
    """What a plan read: its nodes' types and the rows of `task` its scans returned."""

    nodes: list[dict[str, Any]]
    jit: bool  # whether PostgreSQL compiled the plan's expressions before running it

    @classmethod
    def of(cls, explained: Any) -> Plan:
        nodes: list[dict[str, Any]] = []

        def walk(node: dict[str, Any]) -> None:
            nodes.append(node)
            for child in node.get("Plans", ()):
                walk(child)

        top = json.loads(explained)[0]
        walk(top["Plan"])
        return cls(nodes, jit="JIT" in top)

    def scans_of_task(self) -> list[dict[str, Any]]:
        return [node for node in self.nodes if node.get("Relation Name") == "task"]

    @property
    def sequential(self) -> bool:
        return any(node["Node Type"] == "Seq Scan" for node in self.scans_of_task())

    @property
    def task_rows(self) -> int:
        """Rows of `task` the scans returned, and those their filters threw away."""
        return sum(
            int(node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
            for node in self.scans_of_task()
        )


@pytest.fixture(scope="module")
async def plans_database_url() -> AsyncIterator[str]:
    async with migrated_database("tf_plans", ALEMBIC_INI) as url:
        engine = create_async_engine(async_database_url(url))
        async with engine.begin() as connection:
            for owner, count in SIZES.items():
                parameters = bulk_insert_parameters(
                    owner=owner, count=count, assignee_base=100, crowded_every=CROWDED_EVERY[owner]
                )
                await connection.execute(text(BULK_INSERT), parameters)
            # A few of the big user's tasks are assigned to the small one: both branches
            # of visibility have rows.
            await connection.execute(
                text("UPDATE task SET assignee_id = :small WHERE owner_id = :big AND id % 997 = 0"),
                {"small": SMALL, "big": BIG},
            )
            parameters = bulk_insert_parameters(owner=BOARD_OWNER, count=BOARD, assignee_base=100)
            await connection.execute(text(BULK_INSERT), parameters)
            board = await connection.scalar(
                text(
                    "INSERT INTO project (name, owner_id, created_at, updated_at, version) "
                    "VALUES ('board', :owner, now(), now(), 1) RETURNING id"
                ),
                {"owner": BOARD_OWNER},
            )
            await connection.execute(
                text(
                    "INSERT INTO project_member (project_id, user_id, role, added_at) "
                    "VALUES (:board, :owner, 'owner', now()), (:board, :member, 'member', now())"
                ),
                {"board": board, "owner": BOARD_OWNER, "member": MEMBER},
            )
            await connection.execute(
                text("UPDATE task SET project_id = :board WHERE owner_id = :owner"),
                {"board": board, "owner": BOARD_OWNER},
            )
            # Dependencies: every 10th of the big user's tasks depends on the next five.
            await connection.execute(
                text(
                    "INSERT INTO task_dependency (task_id, depends_on_id, created_at) "
                    "SELECT t.id, t.id + k, now() FROM task t, generate_series(1, 5) k "
                    "WHERE t.owner_id = :big AND t.id % 10 = 0 AND t.id + k <= "
                    "(SELECT max(id) FROM task WHERE owner_id = :big)"
                ),
                {"big": BIG},
            )
        async with engine.connect() as connection:
            await connection.execute(text("COMMIT"))
            await connection.execute(text("VACUUM ANALYZE"))
        await engine.dispose()
        yield url


@pytest.fixture(scope="module")
async def connection(plans_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    # The database's own settings, as the service has them (migration 0006_h16d: cached
    # generic plans, no JIT).
    connection = await asyncpg.connect(asyncpg_dsn(plans_database_url))
    try:
        yield connection
    finally:
        await connection.close()


async def explain(
    connection: asyncpg.Connection, sql: str, args: list[Any], *, per_call: bool
) -> Plan:
    """The plan a statement runs with in production, executed with `args`: planned for them
    when it is planned per call (`Statement.plan_per_call`); otherwise the generic plan, the
    one PostgreSQL caches and then uses for every user's values."""
    return Plan.of(await explain_as_run(connection, sql, args, per_call=per_call))


USERS = [pytest.param(BIG, id="big user"), pytest.param(SMALL, id="small user")]


async def shape_as_run(
    connection: asyncpg.Connection, task_filter: TaskFilter, user: int
) -> listing.ListShape:
    """The listing's shape as the repository runs it (`listing_shape`); for a search, the
    density probe's plan checked too."""
    values = listing.list_values(task_filter, user, datetime.now(UTC))
    if listing.ListShape.of(task_filter).counts_by_density:
        probe = listing.DENSITY_PROBE
        plan = await explain(connection, probe.sql, probe.args(values), per_call=False)
        # The newest tasks from the index alone, and the running counts: never the user's tasks.
        assert plan.task_rows <= listing.DENSITY_SAMPLE, plan.task_rows
        assert "Index Only Scan" in {node["Node Type"] for node in plan.scans_of_task()}
    return await listing_shape(connection, task_filter, values)


async def counted(
    connection: asyncpg.Connection, task_filter: TaskFilter, user: int, statement: str
) -> tuple[listing.ListShape, Plan, Statement, dict[str, Any]]:
    """The shape as run, and the plan of the statement that counts its matches: the total
    (`statement="total"`) or the matches its page is found among (`"matches"`); with that
    statement and its values."""
    shape = await shape_as_run(connection, task_filter, user)
    if statement == "total":
        _, total = listing.list_statements(shape, READ_COLUMNS)
    else:
        total, _ = listing.match_statements(shape, READ_COLUMNS, visible_to)
    values = listing.list_values(task_filter, user, datetime.now(UTC))
    plan = await explain(connection, total.sql, total.args(values), per_call=total.plan_per_call)
    return shape, plan, total, values


def statements(task_filter: TaskFilter) -> tuple[Statement, Statement]:
    """(page, total) of a listing as the repository runs them: a first page or a page after a
    cursor of a shape the running counts keep on a cached plan, with its size in the SQL."""
    shape = listing.ListShape.of(task_filter)
    return listing.list_statements(shape, READ_COLUMNS, listing.cached_rows(shape, task_filter))


def check(plan: Plan, user: int, budget: int, what: str) -> None:
    """Within the row budget; and for the small user, never a sequential scan (it would read
    the big user's rows). The big user's may be one that stops early (a count up to the cap
    of a filter most rows match): the budget bounds it."""
    assert plan.task_rows <= budget, (what, plan.task_rows)
    # A generic plan costs `LIMIT $n` as a tenth of the table: with JIT on, a 0.3 ms page paid
    # 30-40 ms of compilation at a million rows.
    assert not plan.jit, what
    if user == SMALL:
        assert not plan.sequential, what


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("name", list(LISTINGS))
async def test_listing_reads_an_index_range_not_the_users_tasks(
    connection: asyncpg.Connection, user: int, name: str
) -> None:
    task_filter = TaskFilter(**LISTINGS[name])
    shape = listing.ListShape.of(task_filter)
    page, total = statements(task_filter)
    values = listing.list_values(task_filter, user, datetime.now(UTC))

    page_plan = await explain(connection, page.sql, page.args(values), per_call=page.plan_per_call)
    budget = PAGE_BUDGET + task_filter.skip
    if name in RARE:
        # The planner may walk the sort index instead of the GIN one (its estimate of a rare
        # substring comes from a random sample): a page then reads rows until 21 match, a cost
        # set by the rarity (1 in 1,000), not by how many tasks the user has.
        budget = 25 * 1_000
    check(page_plan, user, budget, f"{name}: page")
    total_plan = await explain(
        connection, total.sql, total.args(values), per_call=total.plan_per_call
    )
    check(total_plan, user, COUNT_BUDGET, f"{name}: total")
    if shape.tallied:
        return
    # A filter the running counts do not keep: its page is first looked for among its matches
    # (up to the cap), then those rows are read by id on a cached plan.
    matches, by_ids = listing.match_statements(shape, READ_COLUMNS, visible_to)
    matches_plan = await explain(
        connection, matches.sql, matches.args(values), per_call=matches.plan_per_call
    )
    check(matches_plan, user, COUNT_BUDGET, f"{name}: matches")
    rows = await matches.fetch(connection, **values)
    ids = [row["id"] for row in rows if row["id"] is not None]  # none beyond the cap
    assert not by_ids.plan_per_call
    rows_plan = await explain(
        connection, by_ids.sql, by_ids.args({**values, "task_ids": ids}), per_call=False
    )
    check(rows_plan, user, 2 * len(ids) + 10, f"{name}: rows by id")


@pytest.mark.parametrize("project", [True, False], ids=["the board", "their whole list"])
@pytest.mark.parametrize(
    "sort", ["created_at", "updated_at", "due_date", "priority", "title", "status"]
)
async def test_a_members_page_of_a_board_reads_a_page_not_the_board(
    connection: asyncpg.Connection, project: bool, sort: str
) -> None:
    """A member of a 20,000-task board: its page (`?project_id=`) and their whole list, in
    every order, read a page's worth of rows, with the plan the service runs them with (a
    cached plan for every member and project, or one planned per call)."""
    board = await connection.fetchval(
        "SELECT project_id FROM project_member WHERE user_id = $1", MEMBER
    )
    for order in ("asc", "desc"):
        task_filter = TaskFilter(
            sort_by=sort, sort_order=order, project_id=board if project else None
        )
        page, total = statements(task_filter)
        values = listing.list_values(task_filter, MEMBER, datetime.now(UTC))
        for statement, budget in ((page, 200), (total, COUNT_BUDGET)):
            plan = await explain(
                connection,
                statement.sql,
                statement.args(values),
                per_call=statement.plan_per_call,
            )
            check(plan, SMALL, budget, f"member, {sort} {order}, project={project}")


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("sort", ["created_at", "due_date", "priority", "title"])
async def test_a_page_deep_by_cursor_costs_what_the_first_does(
    connection: asyncpg.Connection, user: int, sort: str
) -> None:
    now = datetime.now(UTC)
    deep = TaskFilter(sort_by=sort, sort_order="asc", skip=2_000)
    page, _ = listing.list_statements(listing.ListShape.of(deep), READ_COLUMNS)
    rows = await connection.fetch(page.sql, *page.args(listing.list_values(deep, user, now)))
    last = rows[deep.limit - 1]
    position = listing.next_position(deep, last["due_date"], last["sort_key"], last["id"])
    after = TaskFilter(sort_by=sort, sort_order="asc", cursor=encode_cursor(position))
    page, _ = statements(after)
    values = listing.list_values(after, user, now)
    plan = await explain(connection, page.sql, page.args(values), per_call=page.plan_per_call)
    check(plan, user, 200, f"cursor after 2,000 by {sort}")


@pytest.mark.parametrize("direction", ["dependencies", "dependents"])
async def test_a_tasks_dependency_page_reads_its_edges_only(
    connection: asyncpg.Connection, direction: str
) -> None:
    """`/tasks/{id}/dependencies`: a page of one task's neighbours and their count, on the
    cached plans the service runs them with (their `LIMIT $n` unseen), read the task's own
    edges and rows, never the table."""
    task_id = await connection.fetchval(
        "SELECT min(task_id) FROM task_dependency WHERE task_id > 50000"
    )
    neighbour = task_id + 1
    page, count = _DEPENDENCIES if direction == "dependencies" else _DEPENDENTS
    anchor = task_id if direction == "dependencies" else neighbour
    values = {"task_id": anchor, "user_id": BIG, "limit": 50}
    for statement in (page, count):
        assert not statement.plan_per_call
        plan = await explain(connection, statement.sql, statement.args(values), per_call=False)
        check(plan, SMALL, 50, f"{direction}: {statement.sql[:60]}")
    rows = await page.fetch(connection, **values)
    assert len(rows) == (5 if direction == "dependencies" else 1)


@pytest.mark.parametrize("user", USERS)
async def test_aggregates_read_counts_and_index_ranges(
    connection: asyncpg.Connection, user: int
) -> None:
    recording = Recording(connection)
    repository = AggregateRepository(recording)
    now = datetime.now(UTC)
    counts = await repository.counts("user", now, user_id=user)
    since = now.date() - timedelta(days=29)
    await repository.created_per_day("user", since, user_id=user)
    await repository.completed_per_day("user", since, user_id=user)
    assert counts["total"] == SIZES[user] + (SIZES[BIG] // 997 if user == SMALL else 0)

    assert len(recording.statements) >= 5
    for sql, args in recording.statements:
        # The aggregates are ranges of indexes whatever the values: cached, generic plans.
        plan = await explain(connection, sql, list(args), per_call=False)
        # The windows hold a few thousand of the big user's rows; the overdue count is the
        # one that grows with the user (an index-only range of their open, dated tasks).
        check(plan, user, SIZES[BIG] // 4, sql)


@pytest.mark.parametrize("scope", ["user", "project"])
async def test_a_members_statistics_read_the_board_not_the_table(
    connection: asyncpg.Connection, scope: Scope
) -> None:
    """The board member's statistics (their own, which hold the board's tasks, and the
    board's) read the board's rows through its index, never the other 150,000-odd tasks."""
    board = await connection.fetchval(
        "SELECT project_id FROM project_member WHERE user_id = $1", MEMBER
    )
    recording = Recording(connection)
    repository = AggregateRepository(recording)
    now = datetime.now(UTC)
    project_id = board if scope == "project" else None
    counts = await repository.counts(scope, now, user_id=MEMBER, project_id=project_id)
    since = now.date() - timedelta(days=29)
    await repository.created_per_day(scope, since, user_id=MEMBER, project_id=project_id)
    await repository.completed_per_day(scope, since, user_id=MEMBER, project_id=project_id)
    assert counts["total"] == BOARD

    assert len(recording.statements) >= 4
    for sql, args in recording.statements:
        plan = await explain(connection, sql, list(args), per_call=False)
        # The windows read the board's rows once for due dates and once for completions.
        check(plan, SMALL, 2 * BOARD + 1_000, sql)


async def test_filtered_listings_are_planned_per_call_and_the_rest_are_not(
    connection: asyncpg.Connection,
) -> None:
    """A prepared statement's cached generic plan (PostgreSQL's choice after five runs) may
    serve one user's tag with the plan of another, 20x slower, and does not see a page's
    `LIMIT $n`: a listing whose filter's values decide how to find its page (a tag, a term,
    dates, an assignee) and a page by `skip` are planned for their values on every call.
    Every other statement keeps one cached plan (planning a statement over `task`'s indexes
    costs more than running it), a plain list's page with its size in the SQL, and the
    generic plans those get are the ones the tests above check. The setting a per-call
    statement makes outside a transaction does not outlive it."""
    assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    assert await connection.fetchval("SHOW jit") == "off"
    now = datetime.now(UTC)
    task_id = await connection.fetchval("SELECT min(id) FROM task WHERE owner_id = $1", SMALL)
    for task_filter, per_call in (
        (TaskFilter(tags=[RARE_TAG]), True),
        (TaskFilter(skip=20), True),
        (TaskFilter(), False),
        (TaskFilter(statuses=["done"], sort_by="priority"), False),
        (TaskFilter(scope="assigned", sort_by="due_date"), False),
    ):
        page, total = statements(task_filter)
        assert (page.plan_per_call, total.plan_per_call) == (per_call, task_filter.tags != [])
        values = listing.list_values(task_filter, SMALL, now)
        for _ in range(8):
            await page.fetch(connection, **values)
        assert await plans_of(connection, page.sql) == ((0, 8) if per_call else (8, 0))
        assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    assert not _GET_VISIBLE.plan_per_call
    for _ in range(8):
        await _GET_VISIBLE.fetchrow(connection, task_id=task_id, user_id=SMALL)
    assert await plans_of(connection, _GET_VISIBLE.sql) == (8, 0)


KEYED_FILTERS = [
    pytest.param({"tags": [RARE_TAG]}, "ix_task_owner_tag_keys", id="rare tag"),
    pytest.param({"search": RARE_TERM}, "ix_task_owner_search_keys", id="rare term"),
]


@pytest.mark.parametrize("statement", ["total", "matches"])
@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize(("given", "keys_index"), KEYED_FILTERS)
async def test_a_rare_filters_count_reads_the_users_own_matches_by_owner_keys(
    connection: asyncpg.Connection,
    user: int,
    statement: str,
    given: dict[str, Any],
    keys_index: str,
) -> None:
    """The count behind a tag filter's or a search's `total`, and the matches its page is found
    among, find the caller's matches from their own keys: owner-and-tag (migration 0005_h16c),
    owner-and-trigram (0009_h16h). Not by intersecting the caller's whole range of a GIN led by
    owner_id with the tag's or the term's (a million entries decoded for a big account), nor
    by walking the caller's tasks in order until a page matches, nor by reading other users'
    candidates; and no other task is read."""
    shape, plan, total, values = await counted(connection, TaskFilter(**given), user, statement)
    assert not shape.walks
    used = {node.get("Index Name") for node in plan.nodes}
    assert keys_index in used
    matches = SIZES[user] // 1_000
    # Each match once (plus the assigned branch's few rows), whatever the user holds.
    assert plan.task_rows <= matches + 200, plan.task_rows
    assert await connection.fetchval(total.sql, *total.args(values)) is not None


@pytest.mark.parametrize("term", ["ab", "a%", "é_"])
async def test_a_term_too_short_for_search_keys_never_asks_the_index_for_no_keys(
    connection: asyncpg.Connection, term: str
) -> None:
    """A term under three characters has no search key: the statement must not ask the keys'
    GIN for an empty set of keys (which every row contains: a scan of the whole index)."""
    task_filter = TaskFilter(search=term)
    shape = listing.ListShape.of(task_filter)
    assert not shape.search_keys
    total, _ = listing.match_statements(shape, READ_COLUMNS, visible_to)
    assert "task_search_keys" not in total.sql
    values = listing.list_values(task_filter, SMALL, datetime.now(UTC))
    plan = await explain(connection, total.sql, total.args(values), per_call=total.plan_per_call)
    assert "ix_task_owner_search_keys" not in {node.get("Index Name") for node in plan.nodes}


@pytest.mark.parametrize("statement", ["total", "matches"])
@pytest.mark.parametrize("user", USERS)
async def test_a_dense_terms_count_walks_the_users_newest_tasks_from_the_index_alone(
    connection: asyncpg.Connection, user: int, statement: str
) -> None:
    """A term on three tasks in four ("notes", in every description but every fourth task's):
    its count stops at the cap after ≈ 1,335 of the caller's newest tasks, read from
    ix_task_owner_created alone (it holds the text, migration 0010_h16i), where the term's
    keys would have built a bitmap of every match (`ListShape.counts_by_walking`)."""
    shape, plan, _, _ = await counted(connection, TaskFilter(search="notes"), user, statement)
    assert shape.walks
    ran = [node for node in plan.nodes if node.get("Actual Loops")]
    walks = [
        node
        for node in ran
        if node.get("Index Name") == "ix_task_owner_created"
        and node["Node Type"] == "Index Only Scan"
        and node["Actual Rows"] == listing.TOTAL_CAP + 1
    ]
    assert walks, [(node["Node Type"], node.get("Index Name")) for node in ran]
    assert all(node.get("Heap Fetches", 0) <= 10 for node in walks)
    assert "ix_task_owner_search_keys" not in {node.get("Index Name") for node in ran}
    # The walk to the cap, whatever the user holds.
    assert plan.task_rows <= 2_000, plan.task_rows
