"""The statements behind `GET /tasks/`, shaped so a page costs the same at any size and depth.

- Visibility is a UNION ALL of the personal tasks the caller owns, the personal tasks assigned
  to them by someone else, and the tasks of the projects they are a member of (issue 19), each
  branch ordered and limited on its own: the owned branch is a range of an index led by
  owner_id, so a page reads `skip + limit + 1` index entries however many tasks the user has,
  where an OR would read every visible row and sort them. (PostgreSQL does not merge an
  unlimited UNION ALL in index order; limited branches it does.) The projects' branch is a
  LATERAL join over the caller's memberships, each project an ordered, limited range of its
  project-led index, so a member of a 100k-task board reads a page of it, not the board.
  `?project_id=N` is one branch,
  a range of an index led by project_id, with the membership a one-time condition.
- Each sort is one key with constants only (models.*_SQL), the very expression the index on
  (owner_id, key, id) holds, compared as a row with the id: `(key, id) > (last key, last id)` is
  where a keyset page starts, an index condition.
- The page's ids are found first (from the index alone when it can), then only those rows are
  read with their dependencies: rows skipped by `skip` are never fetched.
- A tag or a term (three characters or more) is counted among the caller's own tasks through
  keys of their own (`<owner>:<tag>`, a hash of owner and three characters): one GIN posting
  list per user and key, so a big account's matches, or another user's, never cost a small
  one, and the big account reads its matches, not its whole range (`_owned_keys`).
- The total is the running counts of `task_tally` (personal tasks) plus the projects' tasks
  counted up to TOTAL_CAP when the filter is one they keep (scope and status/priority only),
  otherwise a count that stops after TOTAL_CAP matches; one project's list is always counted
  up to TOTAL_CAP.

Statements are compiled once per shape of listing (which filters, which sort, a cursor or not);
the values are parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.types import TypeEngine
from taskflow_kit.db import Statement, compile_statement
from taskflow_kit.repository import like_pattern

from task_service.aggregates.models import TaskTally
from task_service.projects.models import ProjectMember
from task_service.projects.repository import is_member, member_project_ids
from task_service.tasks.cursor import Position
from task_service.tasks.models import (
    DUE_ASC_SQL,
    DUE_DESC_SQL,
    NOT_DONE,
    PRIORITY_RANK_SQL,
    STATUS_RANK_SQL,
    TITLE_KEY_SQL,
    Task,
    TaskStatus,
)
from task_service.tasks.schemas import TaskFilter

# Counting stops here for filters the running counts do not keep (docs/api.md, "total").
TOTAL_CAP = 1_000
# A search key is this many consecutive characters of the lowered text (migration 0009_h16h):
# a shorter term has none and is checked on the rows read.
SEARCH_KEY_LENGTH = 3
# How a search's count decides between walking the caller's tasks and reading the term's keys
# (`ListShape.counts_by_walking`): the term's share among this many of the caller's newest
# tasks, and the walk's cost per row over the keys' cost per match (at a million rows).
DENSITY_SAMPLE = 256
DENSE_WHEN = 1.14

USER_ID = bindparam("user_id", type_=BigInteger)
PROJECT_ID = bindparam("project_id", type_=BigInteger)
NOW = bindparam("now", type_=Task.due_date.type)
_TIMESTAMP = Task.due_date.type


def _cap() -> ColumnElement[Any]:
    """TOTAL_CAP + 1 written into the SQL, so a cached plan sees how far a count goes."""
    return literal_column(str(TOTAL_CAP + 1))


def _contains_term(
    search_text: ColumnElement[str] | QueryableAttribute[str],
) -> ColumnElement[bool]:
    """`title ILIKE p OR description ILIKE p` on the stored lowered text (ILIKE is
    `lower(x) LIKE lower(p)`): one trigram lookup, no lowering per row checked."""
    return search_text.like(func.lower(bindparam("pattern", type_=Text)), escape="\\")


def _personal_tasks(*conditions: ColumnElement[bool]) -> ColumnElement[Any]:
    """The caller's personal tasks counted by the running counts of `task_tally`."""
    return (
        select(func.coalesce(func.sum(TaskTally.tasks), 0))
        .where(TaskTally.user_id == USER_ID, *conditions)
        .scalar_subquery()
    )


def _key(sql: str) -> ColumnElement[Any]:
    return literal_column(f"({sql.format(t='task.')})")


@dataclass(frozen=True, slots=True)
class SortKey:
    """A sort's key as SQL, and the type of a cursor's key value compared with it."""

    expression: ColumnElement[Any]
    key_type: TypeEngine[Any]
    # For a due date: what stands in for "no due date" in this direction (the cursor keeps
    # the date itself, NULL for none).
    infinity: str | None = None

    def bound(self) -> ColumnElement[Any]:
        value = bindparam("cursor_key", type_=self.key_type)
        if self.infinity is None:
            return value
        return func.coalesce(
            cast(value, _TIMESTAMP), literal_column(f"CAST('{self.infinity}' AS timestamptz)")
        )


_SORT_KEYS: dict[tuple[str, str], SortKey] = {
    **{
        (field, order): SortKey(getattr(Task, field).expression, _TIMESTAMP)
        for field in ("created_at", "updated_at")
        for order in ("asc", "desc")
    },
    # Tasks without a due date last in both directions: NULL reads as +infinity ascending and
    # as -infinity descending (the indexes ix_task_owner_due_asc and ix_task_owner_due_desc).
    ("due_date", "asc"): SortKey(_key(DUE_ASC_SQL), _TIMESTAMP, "infinity"),
    ("due_date", "desc"): SortKey(_key(DUE_DESC_SQL), _TIMESTAMP, "-infinity"),
    **{
        (field, order): SortKey(_key(sql), key_type)
        for field, sql, key_type in (
            ("priority", PRIORITY_RANK_SQL, Integer()),
            ("status", STATUS_RANK_SQL, Integer()),
            ("title", TITLE_KEY_SQL, Text()),
        )
        for order in ("asc", "desc")
    },
}


@dataclass(frozen=True, slots=True)
class ListShape:
    """What decides the SQL of a task listing (the values are parameters)."""

    scope: str
    project: bool
    statuses: bool
    priorities: bool
    tags: bool
    search: bool
    # A term of three characters or more: the caller's own matches are found by search keys.
    search_keys: bool
    assignee: bool
    due_before: bool
    due_after: bool
    overdue: bool | None
    sort_by: str
    sort_order: str
    cursor: bool
    # A search's count walks the caller's own tasks instead of reading the term's keys: the
    # term is dense among them (`counts_by_walking`, decided per call by DENSITY_PROBE).
    walks: bool = False

    @classmethod
    def of(cls, task_filter: TaskFilter) -> ListShape:
        return cls(
            scope=task_filter.scope,
            project=task_filter.project_id is not None,
            statuses=bool(task_filter.statuses),
            priorities=bool(task_filter.priorities),
            tags=bool(task_filter.tags),
            search=bool(task_filter.search),
            search_keys=len(task_filter.search or "") >= SEARCH_KEY_LENGTH,
            assignee=task_filter.assignee_id is not None,
            due_before=task_filter.due_before is not None,
            due_after=task_filter.due_after is not None,
            overdue=task_filter.overdue,
            sort_by=task_filter.sort_by,
            sort_order=task_filter.sort_order,
            cursor=task_filter.cursor is not None,
        )

    @property
    def descending(self) -> bool:
        return self.sort_order == "desc"

    @property
    def sort_key(self) -> SortKey:
        return _SORT_KEYS[(self.sort_by, self.sort_order)]

    @property
    def tallied(self) -> bool:
        """Whether the running counts keep the personal part of this filter's total (scope and
        status/priority; the projects' part is counted)."""
        return self.scope != "assigned" and not (self.project or self.selective)

    @property
    def selective(self) -> bool:
        """Whether the filter's values decide how to find a page: how many rows a tag, a term,
        a date range or an assignee matches is known only from the values (three of a million,
        or half). Other shapes (scope, project, status and priority) are an ordered walk of an
        index range whatever the values."""
        return (
            self.tags
            or self.search
            or self.assignee
            or self.due_before
            or self.due_after
            or self.overdue is not None
        )

    def branches(self) -> list[list[ColumnElement[bool]]]:
        """The conditions of each branch whose union is what the caller may list: personal
        tasks by owner or assignee, then those of the caller's projects (the last branch)."""
        scoped = self.scoped()
        if self.project:
            # A non-member gets an empty page (and the service a 404 for the project).
            return [[Task.project_id == PROJECT_ID, is_member(PROJECT_ID, USER_ID), *scoped]]
        personal = Task.project_id.is_(None)
        projects = [Task.project_id == any_(member_project_ids(USER_ID)), *scoped]
        if self.scope != "all":
            return [[personal, *scoped], projects]
        return [
            [Task.owner_id == USER_ID, personal],
            [Task.assignee_id == USER_ID, Task.owner_id != USER_ID, personal],
            projects,
        ]

    def scoped(self) -> list[ColumnElement[bool]]:
        """`scope=owned|assigned` on a project's tasks."""
        if self.scope == "owned":
            return [Task.owner_id == USER_ID]
        if self.scope == "assigned":
            return [Task.assignee_id == USER_ID]
        return []

    def conditions(self) -> list[ColumnElement[bool]]:
        """The filters, written so the owner-led indexes serve them."""
        conditions: list[ColumnElement[bool]] = []
        if self.statuses:
            conditions.append(Task.status == any_(bindparam("statuses", type_=ARRAY(String))))
        if self.priorities:
            conditions.append(Task.priority == any_(bindparam("priorities", type_=ARRAY(String))))
        if self.tags:
            conditions.append(Task.tags.contains(bindparam("tags", type_=ARRAY(Text))))
        if self.search:
            conditions.append(_contains_term(Task.search_text))
        if self.assignee:
            conditions.append(Task.assignee_id == bindparam("assignee_id", type_=BigInteger))
        # `due_date < t` is `due key ascending < t` (no due date sorts at +infinity) and
        # `due_date >= t` is `due key descending >= t`: the same rows, as ranges of the
        # due-date indexes.
        if self.due_before:
            conditions.append(_key(DUE_ASC_SQL) < bindparam("due_before", type_=_TIMESTAMP))
        if self.due_after:
            conditions.append(_key(DUE_DESC_SQL) >= bindparam("due_after", type_=_TIMESTAMP))
        if self.overdue is True:
            conditions.append(and_(NOT_DONE, Task.due_date < NOW))
        elif self.overdue is False:
            conditions.append(
                or_(Task.status == TaskStatus.DONE, Task.due_date.is_(None), Task.due_date >= NOW)
            )
        return conditions

    def after_cursor(self) -> ColumnElement[bool]:
        return self._after(self.sort_key.expression, Task.id)

    def _after(self, key: ColumnElement[Any], task_id: Any) -> ColumnElement[bool]:
        """`(key, id)` past the cursor's position, in the listing's direction."""
        row = tuple_(key, task_id)
        last = tuple_(self.sort_key.bound(), bindparam("cursor_id", type_=BigInteger))
        return row < last if self.descending else row > last

    def page_ids(self, rows: int | None = None) -> Select[Any]:
        """Ids and sort keys of the page: `skip` rows passed over, `limit` rows (one more than
        the page, to know whether another follows). With `rows`, the first page (or the page
        after a cursor) of that many rows, written into the SQL: see `list_statements`."""
        key = self.sort_key.expression
        conditions = self.conditions()
        if self.cursor:
            conditions.append(self.after_cursor())
        skip: Any = bindparam("skip", type_=BigInteger)
        limit: Any = bindparam("limit", type_=BigInteger)
        branch_limit: Any = bindparam("branch_limit", type_=BigInteger)
        if rows is not None:
            skip = None
            limit = branch_limit = literal_column(str(int(rows)))
        branches = [
            select(Task.id.label("id"), key.label("sort_key"))
            .where(*branch, *conditions)
            .order_by(*self._ordered((key, Task.id)))
            for branch in self.branches()
        ]
        if len(branches) == 1:
            return branches[0].offset(skip).limit(limit)
        # The projects' branch (the last) is read project by project, each an ordered, limited
        # range of its project-led index: `project_id = ANY(...)` over several projects comes
        # out of the index unordered, and a member of a 100k-task board would sort it all.
        union = union_all(
            *(branch.limit(branch_limit) for branch in branches[:-1]),
            self._per_project(key, conditions, branch_limit),
        ).subquery("visible")
        return (
            select(union.c.id, union.c.sort_key)
            .order_by(*self._ordered((union.c.sort_key, union.c.id)))
            .offset(skip)
            .limit(limit)
        )

    def _per_project(
        self, key: ColumnElement[Any], conditions: list[ColumnElement[bool]], limit: Any
    ) -> Select[Any]:
        """The first `limit` matching tasks of each of the caller's projects, in order."""
        mine = (
            select(ProjectMember.project_id)
            .where(ProjectMember.user_id == USER_ID)
            .subquery("mine")
        )
        in_project = (
            select(Task.id.label("id"), key.label("sort_key"))
            .where(Task.project_id == mine.c.project_id, *self.scoped(), *conditions)
            .order_by(*self._ordered((key, Task.id)))
            .limit(limit)
            .lateral("in_project")
        )
        return (
            select(in_project.c.id, in_project.c.sort_key)
            .select_from(mine)
            .join(in_project, true())
        )

    def capped_count(
        self, branches: list[list[ColumnElement[bool]]], *, projects: bool
    ) -> ColumnElement[Any]:
        """How many tasks of `branches` (and with `projects`, of the caller's projects) match,
        counting no further than TOTAL_CAP + 1 each."""
        counted = self._capped(branches, (literal(1).label("one"),), projects=projects)
        rows = (union_all(*counted) if len(counted) > 1 else counted[0]).subquery("matching")
        return select(func.count()).select_from(rows).scalar_subquery()

    def _capped(
        self,
        branches: list[list[ColumnElement[bool]]],
        columns: tuple[ColumnElement[Any], ...],
        *,
        projects: bool,
    ) -> list[Select[Any]]:
        """`columns` of the matching tasks of each branch (and with `projects`, of the
        caller's projects), no more than TOTAL_CAP + 1 of each, in no particular order."""
        conditions = self.conditions()
        capped: list[Select[Any]] = []
        for index, branch in enumerate(branches):
            if not (self.walks and index == 0):
                keys = self._owned_keys(index)
                capped.append(select(*columns).where(*branch, *conditions, *keys).limit(_cap()))
                continue
            # A term dense among the caller's own tasks: walk them newest first (from the
            # index alone, migration 0010_h16i) until the cap, instead of a bitmap of every match.
            walk = (
                select(*columns)
                .where(*branch, *conditions)
                .order_by(Task.created_at.desc(), Task.id.desc())
                .limit(_cap())
            )
            capped.append(walk)
        if projects:
            capped.append(self._per_project_capped(conditions, columns))
        return capped

    def _per_project_capped(
        self, conditions: list[ColumnElement[bool]], columns: tuple[ColumnElement[Any], ...]
    ) -> Select[Any]:
        """The caller's projects' matching tasks, up to TOTAL_CAP + 1, read project by project
        as the page reads them. `project_id = ANY(the caller's projects)` left the planner to
        guess how many rows an array it cannot see matches: once one project held 100,000
        tasks it chose a sequential scan of every task, for every caller, members or not
        (≈ 300 ms beside a million rows, docs/performance.md)."""
        mine = (
            select(ProjectMember.project_id)
            .where(ProjectMember.user_id == USER_ID)
            .subquery("mine_counted")
        )
        # Ordered like a page (any project-led index would do): without an order, the
        # planner takes a project for a tenth of the table (its estimate of one project_id
        # among few) and expects a sequential scan to meet the cap soon; with it, it walks
        # the project's range of an index.
        in_project = (
            select(*columns)
            .where(Task.project_id == mine.c.project_id, *self.scoped(), *conditions)
            .order_by(Task.created_at, Task.id)
            .limit(_cap())
            .lateral("in_project_counted")
        )
        return select(*in_project.c).select_from(mine).join(in_project, true()).limit(_cap())

    def matches(self) -> Select[Any]:
        """For a `selective` shape: how many tasks match as `capped_count` finds them
        (`matches`, at most TOTAL_CAP + 1 per branch) and, when that is no more than TOTAL_CAP,
        the page among them (`id`, `sort_key`: `skip`, `limit`, the cursor); one row with a
        NULL id when there is no such page (past the last match, or more than TOTAL_CAP).

        No more than TOTAL_CAP found means every match was found, so the page is exact and so
        is the total, from one read of the matches: a filter that matches few of many tasks (a
        rare tag or term) is found through its own index and sorted, never by walking the sort
        index until a page matches, which is what a page alone is planned as when the planner's
        sampled estimate of the matches is high (14 ms instead of 3 for the big user's rare
        tag). More than that, the page statement reads the page; the matches are not sorted."""
        key = self.sort_key.expression
        # The ids and sort keys only: an index holds both, as it holds what the count reads.
        columns = (Task.id.label("id"), key.label("sort_key"))
        if self.project:
            capped = self._capped(self.branches(), columns, projects=False)
        else:
            capped = self._capped(self.branches()[:-1], columns, projects=True)
        found = (union_all(*capped) if len(capped) > 1 else capped[0]).cte("found")
        counted = select(func.count().label("matches")).select_from(found).subquery("counted")
        conditions = [counted.c.matches <= literal_column(str(TOTAL_CAP))]
        if self.cursor:
            conditions.append(self._after(found.c.sort_key, found.c.id))
        page = (
            select(found.c.id, found.c.sort_key)
            .where(*conditions)
            .order_by(*self._ordered((found.c.sort_key, found.c.id)))
            .offset(bindparam("skip", type_=BigInteger))
            .limit(bindparam("limit", type_=BigInteger))
            .lateral("page")
        )
        return select(page.c.id, page.c.sort_key, counted.c.matches).select_from(
            counted.outerjoin(page, true())
        )

    def still_matching(self) -> list[ColumnElement[bool]]:
        """What a task read again by id (the page `matches` found) must still meet, besides
        being visible to the caller: the project, the scope and the filters."""
        project = [Task.project_id == PROJECT_ID] if self.project else []
        return [*project, *self.scoped(), *self.conditions()]

    @property
    def counts_own_tasks(self) -> bool:
        """Whether the count's first branch is the caller's own personal tasks (the branch
        that owner keys serve and a dense term's walk reads)."""
        return not self.project and self.scope != "assigned"

    @property
    def counts_by_density(self) -> bool:
        """Whether the count of this shape searches the caller's own tasks by keys, which a
        term dense among them would better walk (`counts_by_walking`)."""
        return self.search_keys and self.counts_own_tasks

    def counts_by_walking(self, matched: int, owned: int) -> ListShape:
        """This shape, counting by walking the caller's own tasks when the term is dense enough
        among them that the walk reaches the count's cap sooner than the term's keys would find
        every match.

        The keys' bitmap costs about the same per match as the walk (from the index alone)
        costs per row it checks: 0.11 and 0.125 µs at a million rows (docs/performance.md).
        With `d` the term's share of the caller's `n` tasks, the walk checks (TOTAL_CAP + 1) / d
        rows and the keys find d·n matches, so the walk is cheaper when d²·n > TOTAL_CAP + 1
        (times the ratio of the two costs, DENSE_WHEN). `d` is `matched` of the caller's newest
        DENSITY_SAMPLE tasks, `n` their `owned` tasks, both from DENSITY_PROBE. The planner
        cannot make this choice: it prices the keys as if the term's trigrams were independent
        (29 rows for a term on 62,500 tasks). Either way the same tasks match; only the cost
        differs."""
        threshold = DENSE_WHEN * DENSITY_SAMPLE * DENSITY_SAMPLE * (TOTAL_CAP + 1)
        return replace(self, walks=matched * matched * owned > threshold)

    def _owned_keys(self, branch: int) -> list[ColumnElement[bool]]:
        """For the matches among the caller's own personal tasks (the first branch): the tags
        as owner-and-tag keys (ix_task_owner_tag_keys, migration 0005_h16c) and the term as
        owner-and-trigram keys (ix_task_owner_search_keys, 0009_h16h), which those GIN indexes
        find from this user's own posting lists, so the count reads this user's matches only,
        not the intersection of their whole range with the tag's or the term's. Redundant
        with the conditions they join: they change which rows are read, not which match."""
        if branch != 0 or not self.counts_own_tasks:
            return []
        keys: list[ColumnElement[bool]] = []
        if self.tags:
            tags = bindparam("tags", type_=ARRAY(Text))
            tag_keys = func.task_tag_keys(Task.owner_id, Task.tags, type_=ARRAY(Text))
            keys.append(tag_keys.contains(func.task_tag_keys(USER_ID, tags, type_=ARRAY(Text))))
        if self.search_keys:
            term = func.lower(bindparam("term", type_=Text))
            search_keys = func.task_search_keys(
                Task.owner_id, Task.search_text, type_=ARRAY(BigInteger)
            )
            keys.append(
                search_keys.contains(func.task_search_keys(USER_ID, term, type_=ARRAY(BigInteger)))
            )
        return keys

    def total(self) -> Select[Any]:
        """`tallied`: the personal tasks' exact total from the running counts (0 when the shape
        is not `tallied`); `counted`: the rest, counted no further than TOTAL_CAP + 1."""
        if self.project:
            # One project: its branch, with the membership check.
            counted = self.capped_count(self.branches(), projects=False)
            return select(literal(0).label("tallied"), counted.label("counted"))
        if not self.tallied:
            # The personal branches; the projects' (the last) is counted project by project.
            counted = self.capped_count(self.branches()[:-1], projects=True)
            return select(literal(0).label("tallied"), counted.label("counted"))
        return select(
            self.tallied_count().label("tallied"),
            self.capped_count([], projects=True).label("counted"),
        )

    def tallied_count(self) -> ColumnElement[Any]:
        """The personal tasks' exact total from the running counts (for a `tallied` shape)."""
        conditions: list[ColumnElement[bool]] = []
        if self.scope == "owned":
            conditions.append(TaskTally.owned.is_(True))
        if self.statuses:
            conditions.append(TaskTally.status == any_(bindparam("statuses", type_=ARRAY(String))))
        if self.priorities:
            conditions.append(
                TaskTally.priority == any_(bindparam("priorities", type_=ARRAY(String)))
            )
        return _personal_tasks(*conditions)

    def _ordered(self, columns: tuple[Any, ...]) -> list[Any]:
        return [column.desc() if self.descending else column.asc() for column in columns]


def _density_probe() -> Statement:
    """How many of the caller's newest DENSITY_SAMPLE personal tasks contain the term
    (`matched`, from ix_task_owner_created alone) and how many personal tasks they own
    (`owned`, the running counts): what `ListShape.counts_by_walking` decides on. One cached
    plan: it reads the same index range whatever the values."""
    newest = (
        select(Task.search_text)
        .where(Task.owner_id == USER_ID, Task.project_id.is_(None))
        .order_by(Task.created_at.desc(), Task.id.desc())
        .limit(literal_column(str(DENSITY_SAMPLE)))
        .subquery("newest")
    )
    matched = (
        select(func.count())
        .select_from(newest)
        .where(_contains_term(newest.c.search_text))
        .scalar_subquery()
    )
    owned = _personal_tasks(TaskTally.owned.is_(True))
    return compile_statement(select(matched.label("matched"), owned.label("owned")))


DENSITY_PROBE = _density_probe()


@lru_cache(maxsize=2048)
def list_statements(
    shape: ListShape, read_columns: tuple[Any, ...], rows: int | None = None
) -> tuple[Statement, Statement]:
    """(page, total) of a listing shape, compiled once per shape (and per page size when
    `rows` is given: `cached_rows`). The page is `read_columns` of each row, then its sort
    key; its rows come in the listing's order."""
    page = shape.page_ids(rows).subquery("page")
    statement = (
        select(*read_columns, page.c.sort_key)
        .join_from(Task, page, page.c.id == Task.id)
        .order_by(*shape._ordered((page.c.sort_key, page.c.id)))
    )
    # Planned per call unless the page's size is in the SQL and the shape is one whose best
    # plan no value changes: the best plan of a filter depends on how many rows its values
    # match (a tag on half the big user's tasks is an ordered index walk, on three of them a
    # GIN lookup), and a cached plan, which cannot see `LIMIT $n`, takes a page for a tenth of
    # what it reads: it hash-joined a project's page against the whole table (390 ms on a
    # 100,000-task board) and hashed every user's dependencies to answer each row's `blocked`
    # (173,000 rows read for a page of 21). tests/plans checks both at size.
    return (
        compile_statement(statement, plan_per_call=rows is None),
        compile_statement(shape.total(), plan_per_call=shape.selective),
    )


def cached_rows(shape: ListShape, task_filter: TaskFilter) -> int | None:
    """The rows a page reads, to be written into its SQL, when the page runs on a cached plan
    (None: planned per call). A shape that is not `selective` (no filter, a project, a scope,
    status and priority) is an ordered walk of an index range whatever the values, once the
    plan sees how many rows it needs: its first page, and the page after a cursor, keep one
    plan per page size. Planning one cost 1.3-2.5 ms at a million rows, running it 0.3-0.5 ms.
    Pages by `skip` are planned per call (the skip would be part of the SQL)."""
    if shape.selective or task_filter.skip:
        return None
    return task_filter.limit + 1


@lru_cache(maxsize=2048)
def match_statements(
    shape: ListShape,
    read_columns: tuple[Any, ...],
    visible: Callable[[ColumnElement[int]], ColumnElement[bool]],
) -> tuple[Statement, Statement]:
    """(matches, rows by id) of a `selective` shape, compiled once per shape: the
    page found among the capped matches (`ListShape.matches`), then `read_columns` of those
    tasks by id, if still `visible` to the caller and still matching."""
    rows = select(*read_columns).where(
        Task.id == any_(bindparam("task_ids", type_=ARRAY(BigInteger))),
        visible(USER_ID),
        *shape.still_matching(),
    )
    return compile_statement(shape.matches(), plan_per_call=True), compile_statement(rows)


def list_values(task_filter: TaskFilter, user_id: int, now: datetime) -> dict[str, Any]:
    """The parameters of a listing's statements."""
    position = task_filter.position()
    return {
        "user_id": user_id,
        "project_id": task_filter.project_id,
        "statuses": [str(status) for status in task_filter.statuses],
        "priorities": [str(priority) for priority in task_filter.priorities],
        "tags": task_filter.tags,
        "pattern": like_pattern(task_filter.search) if task_filter.search else None,
        "term": task_filter.search,
        "assignee_id": task_filter.assignee_id,
        "due_before": task_filter.due_before,
        "due_after": task_filter.due_after,
        "now": now,
        "skip": task_filter.skip,
        "limit": task_filter.limit + 1,
        "branch_limit": task_filter.skip + task_filter.limit + 1,
        "cursor_key": position.key if position else None,
        "cursor_id": position.id if position else None,
    }


def next_position(
    task_filter: TaskFilter, due_date: datetime | None, key: Any, task_id: int
) -> Position:
    """The cursor position after a page whose last row is `task_id` with sort key `key`."""
    # A due-date key is ±infinity for a task without one: the cursor keeps the date itself.
    if task_filter.sort_by == "due_date":
        key = due_date
    return Position(task_filter.sort_by, task_filter.sort_order, key, task_id)
