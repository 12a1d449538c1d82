"""`make seed`: a small demo team on a running TaskFlow, through the gateway's public API only.

    python -m taskflow_devstack.seed [--url http://127.0.0.1:8000]

Creates five people (sign in as `demo` / `demo-password`) and a board with priorities, tags, due
dates (some overdue), assignees both ways, dependencies (some tasks blocked) and work in every
column. Running it again changes nothing once the demo user has tasks.

The public API sets `created_at` and `completed_at` itself (clients never choose timestamps), so
`make seed` then gives the board a past in the task database of the local stack (the embedded
PostgreSQL of `make run`, or TASK_SERVICE_DATABASE_URL / DATABASE_URL): tasks created over the
last four weeks, the done ones completed over them, so the 30-day chart has a shape. Without a
reachable database (or with `--no-history`) everything stays dated today.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
DEMO_PASSWORD = "demo-password"

PEOPLE = [
    ("demo", "Dana Demo"),
    ("maya", "Maya Okafor"),
    ("leo", "Leo Brandt"),
    ("priya", "Priya Raman"),
    ("sam", "Sam Whitfield"),
]


@dataclass(frozen=True)
class SeedTask:
    key: str
    title: str
    priority: str = "medium"
    status: str = "todo"
    tags: tuple[str, ...] = ()
    due_in_days: float | None = None
    assignee: str | None = None
    depends_on: tuple[str, ...] = ()
    description: str | None = None
    owner: str = "demo"


# In creation order: a task's dependencies come before it.
TASKS = [
    SeedTask(
        "brief",
        "Write the launch brief",
        "high",
        "done",
        ("launch", "writing"),
        -6,
        description="One page: audience, promise, the three things we show.",
    ),
    SeedTask("pricing", "Decide on pricing tiers", "urgent", "done", ("launch",), -3, "maya"),
    SeedTask(
        "landing",
        "Build the landing page",
        "high",
        "in_progress",
        ("launch", "web"),
        2,
        "leo",
        ("brief",),
        "Hero, feature grid, pricing table, sign-up form.",
    ),
    SeedTask(
        "copy",
        "Landing page copy review",
        "medium",
        "todo",
        ("launch", "writing"),
        3,
        "priya",
        ("landing",),
    ),
    SeedTask(
        "press",
        "Email the press list",
        "medium",
        "todo",
        ("launch", "outreach"),
        6,
        None,
        ("landing", "copy"),
    ),
    SeedTask("analytics", "Add privacy-friendly analytics", "low", "todo", ("web",), 12, "leo"),
    SeedTask(
        "onboarding",
        "Sketch the onboarding checklist",
        "medium",
        "in_progress",
        ("product", "design"),
        4,
        "demo",
        description="Three steps max. Each one teaches something useful.",
    ),
    SeedTask(
        "invoice",
        "Send the October invoice",
        "high",
        "todo",
        ("admin",),
        -1,
        description="Overdue: the client asked on Friday.",
    ),
    SeedTask("backup", "Test restoring last night's backup", "urgent", "todo", ("ops",), 1, "sam"),
    SeedTask(
        "runbook",
        "Update the on-call runbook",
        "medium",
        "todo",
        ("ops", "writing"),
        8,
        "sam",
        ("backup",),
    ),
    SeedTask("retro", "Plan the sprint retro", "low", "done", ("team",), -2),
    SeedTask(
        "hiring", "Review design candidates", "medium", "in_progress", ("team", "hiring"), 5, "maya"
    ),
    SeedTask("offsite", "Book the team offsite venue", "low", "todo", ("team",), 20),
    SeedTask("a11y", "Keyboard pass over the app", "high", "done", ("product", "web"), -4, "priya"),
    SeedTask("metrics", "Share the weekly metrics", "medium", "done", ("team",), -1),
    # Owned by teammates, assigned to the demo user: "Assigned to me" has something in it.
    SeedTask(
        "feedback",
        "Give feedback on the roadmap draft",
        "medium",
        "todo",
        ("product",),
        2,
        "demo",
        owner="maya",
    ),
    SeedTask(
        "pairing",
        "Pair on the flaky upload test",
        "high",
        "in_progress",
        ("ops",),
        1,
        "demo",
        owner="sam",
    ),
]


class ApiError(RuntimeError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('detail', body)}")
        self.status = status
        self.body = body


class Api:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/") + "/api/v1"

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                problem = json.loads(raw)
            except ValueError:
                problem = {"detail": raw.decode(errors="replace")[:200]}
            raise ApiError(error.code, problem) from None
        return json.loads(raw) if raw else None

    def account(self, username: str, full_name: str) -> tuple[int, str]:
        """Register (or find) the account and log in: (user id, access token)."""
        body = {
            "username": username,
            "email": f"{username}@example.com",
            "password": DEMO_PASSWORD,
            "full_name": full_name,
        }
        try:
            self.call("POST", "/auth/register", body)
        except ApiError as error:
            if error.status != 409:
                raise
        pair = self.call("POST", "/auth/login", {"username": username, "password": DEMO_PASSWORD})
        token = str(pair["access_token"])
        me = self.call("GET", "/users/me", token=token)
        return int(me["id"]), token


def embedded_tasks_database_url() -> str:
    """Where `make run` keeps task-service's data when nothing is configured."""
    configured = os.environ.get("TASK_SERVICE_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if configured:
        return configured
    port = os.environ.get("TASKFLOW_EMBEDDED_PG_PORT", "54329")
    return f"postgresql://postgres@127.0.0.1:{port}/taskflow_tasks"


def history(created: dict[str, int], now: datetime) -> list[tuple[int, datetime, datetime | None]]:
    """(task id, created_at, completed_at) spreading the seeded tasks over the last 27 days:
    earlier tasks first, each done task completed some days after it was created."""
    rows = []
    count = len(TASKS)
    for index, task in enumerate(TASKS):
        created_at = now - timedelta(days=27 - (26 * index) // max(1, count - 1), hours=index % 5)
        completed_at = None
        if task.status == "done":
            completed_at = min(now - timedelta(hours=1), created_at + timedelta(days=3 + index % 4))
        rows.append((created[task.key], created_at, completed_at))
    return rows


def backdate(database_url: str, rows: list[tuple[int, datetime, datetime | None]]) -> None:
    """Write the seeded tasks' past directly (a development tool: the API never does this)."""
    import asyncpg
    from taskflow_kit.db import asyncpg_dsn

    async def run() -> None:
        connection = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
        try:
            await connection.executemany(
                "UPDATE task SET created_at = $2::timestamptz,"
                " completed_at = $3::timestamptz,"
                " updated_at = GREATEST($2::timestamptz,"
                " COALESCE($3::timestamptz, $2::timestamptz))"
                " WHERE id = $1",
                rows,
            )
        finally:
            await connection.close()

    asyncio.run(run())


def seed(base_url: str, *, out: Any = sys.stdout, tasks_database_url: str | None = None) -> int:
    """Load the demo team; returns how many tasks were created (0 when already seeded)."""
    api = Api(base_url)
    ids: dict[str, int] = {}
    tokens: dict[str, str] = {}
    for username, full_name in PEOPLE:
        ids[username], tokens[username] = api.account(username, full_name)
    existing = api.call("GET", "/tasks/?scope=owned&limit=1", token=tokens["demo"])
    if existing["total"]:
        print(f"Already seeded: demo owns {existing['total']} tasks.", file=out)
        return 0

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    created: dict[str, int] = {}
    for task in TASKS:
        body: dict[str, Any] = {
            "title": task.title,
            "priority": task.priority,
            "tags": list(task.tags),
            "depends_on": [created[key] for key in task.depends_on],
        }
        if task.description:
            body["description"] = task.description
        if task.due_in_days is not None:
            body["due_date"] = (now + timedelta(days=task.due_in_days, hours=17)).isoformat()
        if task.assignee:
            body["assignee_id"] = ids[task.assignee]
        made = api.call("POST", "/tasks/", body, token=tokens[task.owner])
        created[task.key] = int(made["id"])
    # Statuses last: a task is done only after what it depends on is done.
    for task in TASKS:
        if task.status == "in_progress":
            api.call(
                "PATCH",
                f"/tasks/{created[task.key]}",
                {"status": "in_progress"},
                token=tokens[task.owner],
            )
        elif task.status == "done":
            api.call("PATCH", f"/tasks/{created[task.key]}/complete", token=tokens[task.owner])
    if tasks_database_url is not None:
        try:
            backdate(tasks_database_url, history(created, datetime.now(UTC)))
        except Exception as error:  # the board works without a past
            print(f"(history not backdated: {type(error).__name__}: {error})", file=out)
    print(
        f"Seeded {len(TASKS)} tasks for {len(PEOPLE)} people. Open {base_url}/ and sign in as "
        f"demo / {DEMO_PASSWORD} (teammates: {', '.join(u for u, _ in PEOPLE[1:])}, "
        "same password).",
        file=out,
    )
    return len(TASKS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("TASKFLOW_URL", DEFAULT_URL), help="the gateway's URL"
    )
    parser.add_argument("--no-history", action="store_true", help="leave every task dated today")
    args = parser.parse_args(argv)
    try:
        seed(
            args.url,
            tasks_database_url=None if args.no_history else embedded_tasks_database_url(),
        )
    except urllib.error.URLError as error:
        print(f"Cannot reach TaskFlow at {args.url} ({error.reason}): is `make run` running?")
        return 1
    except ApiError as error:
        print(f"The API refused the seed: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
