"""A TaskFlow web-frontend user: the routes it calls, and how often (a real session's weights).

Each virtual user holds an account's token and the ids it can read; it deletes only tasks it
created itself, so users sharing an account never read a task another one just deleted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from loadgen.core import Action, Client

# Share of each route in a frontend session (percent). Listing dominates: every page view lists.
MIX_WEIGHTS = {
    "list": 53.0,
    "filtered": 13.0,
    "create": 12.0,
    "read": 9.0,
    "stats": 6.0,
    "me": 4.0,
    "update": 1.5,
    "complete": 1.0,
    "delete": 0.5,
}
FILTERS = [
    "status=todo&limit=20",
    "priority=high&priority=urgent&limit=20",
    "tags=work&limit=20",
    "search=report&limit=20",
    "overdue=true&sort_by=due_date&sort_order=asc&limit=20",
    "status=in_progress&sort_by=priority&sort_order=desc&limit=20",
]
TAGS = ["work", "home", "urgent", "report", "errand", "review", "q3", "backend"]
WORDS = ["report", "invoice", "meeting", "review", "deploy", "call", "draft", "plan", "fix"]


@dataclass
class Account:
    username: str
    password: str
    user_id: int = 0
    token: str = ""
    task_ids: list[int] = field(default_factory=list)  # seeded, never deleted by the mix

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Targets:
    """Where each service's routes are sent: all the gateway, or each service directly."""

    users: str
    tasks: str
    stats: str

    @classmethod
    def gateway(cls, url: str) -> Targets:
        return cls(url, url, url)


def task_body(rng: random.Random, index: int) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "title": f"{rng.choice(WORDS)} {rng.choice(WORDS)} #{index}",
        "description": f"{rng.choice(WORDS)} for the {rng.choice(WORDS)}" if index % 3 else None,
        "priority": rng.choice(["low", "medium", "medium", "high", "urgent"]),
        "status": rng.choice(["todo", "todo", "in_progress", "done"]),
        "tags": rng.sample(TAGS, rng.randint(0, 3)),
        "due_date": (now + timedelta(days=rng.randint(-10, 30))).isoformat() if index % 2 else None,
    }


class FrontendUser:
    """One virtual user of one account; `action(name)` gives the coroutine for one request."""

    def __init__(
        self, client: Client, targets: Targets, account: Account, rng: random.Random
    ) -> None:
        self.client = client
        self.targets = targets
        self.account = account
        self.rng = rng
        self.created: list[int] = []
        self.counter = 0

    def _some_id(self) -> int:
        pool = self.account.task_ids
        if self.created and (not pool or self.rng.random() < 0.3):
            return self.rng.choice(self.created)
        return self.rng.choice(pool)

    async def list(self, started: float | None) -> None:
        await self.client.request(
            "list",
            "GET",
            f"{self.targets.tasks}/api/v1/tasks/?limit=20",
            headers=self.account.headers,
            started=started,
        )

    async def filtered(self, started: float | None) -> None:
        query = self.rng.choice(FILTERS)
        await self.client.request(
            "filtered",
            "GET",
            f"{self.targets.tasks}/api/v1/tasks/?{query}",
            headers=self.account.headers,
            started=started,
        )

    async def read(self, started: float | None) -> None:
        await self.client.request(
            "read",
            "GET",
            f"{self.targets.tasks}/api/v1/tasks/{self._some_id()}",
            headers=self.account.headers,
            started=started,
        )

    async def create(self, started: float | None) -> None:
        self.counter += 1
        status, body = await self.client.request(
            "create",
            "POST",
            f"{self.targets.tasks}/api/v1/tasks/",
            json=task_body(self.rng, self.counter),
            headers=self.account.headers,
            expect=(201,),
            started=started,
        )
        if status == 201:
            self.created.append(int(json.loads(body)["id"]))

    async def update(self, started: float | None) -> None:
        await self.client.request(
            "update",
            "PATCH",
            f"{self.targets.tasks}/api/v1/tasks/{self._some_id()}",
            json={"title": f"{self.rng.choice(WORDS)} (edited)"},
            headers=self.account.headers,
            started=started,
        )

    async def complete(self, started: float | None) -> None:
        # 409: the task depends on one not done yet; a correct answer the frontend shows.
        await self.client.request(
            "complete",
            "PATCH",
            f"{self.targets.tasks}/api/v1/tasks/{self._some_id()}/complete",
            headers=self.account.headers,
            expect=(200, 409),
            started=started,
        )

    async def delete(self, started: float | None) -> None:
        if not self.created:
            await self.list(started)
            return
        task_id = self.created.pop(self.rng.randrange(len(self.created)))
        await self.client.request(
            "delete",
            "DELETE",
            f"{self.targets.tasks}/api/v1/tasks/{task_id}",
            headers=self.account.headers,
            expect=(204,),
            started=started,
        )

    async def churn(self, started: float | None) -> None:
        """Create a task, then delete it (two requests): delete's cost without a seeded pool
        of tasks to delete."""
        await self.create(started)
        if self.created:
            await self.delete(None)

    async def stats(self, started: float | None) -> None:
        await self.client.request(
            "stats",
            "GET",
            f"{self.targets.stats}/api/v1/stats/",
            headers=self.account.headers,
            started=started,
        )

    async def me(self, started: float | None) -> None:
        await self.client.request(
            "me",
            "GET",
            f"{self.targets.users}/api/v1/auth/me",
            headers=self.account.headers,
            started=started,
        )

    async def login(self, started: float | None) -> None:
        await self.client.request(
            "login",
            "POST",
            f"{self.targets.users}/api/v1/auth/login",
            json={"username": self.account.username, "password": self.account.password},
            started=started,
        )

    def action(self, name: str) -> Action:
        action: Action = getattr(self, name)
        return action

    def mix(self) -> Action:
        names = list(MIX_WEIGHTS)
        weights = list(MIX_WEIGHTS.values())

        async def one(started: float | None) -> None:
            await self.action(self.rng.choices(names, weights)[0])(started)

        return one


def users_of(
    client: Client,
    targets: Targets,
    accounts: list[Account],
    count: int,
    rng: random.Random,
    pick: Callable[[FrontendUser], Action],
) -> list[Callable[[], Action]]:
    """`count` virtual-user factories over the accounts (round robin), each its own rng."""
    factories: list[Callable[[], Action]] = []
    for index in range(count):
        account = accounts[index % len(accounts)]
        seed = rng.randrange(2**32)

        def factory(account: Account = account, seed: int = seed) -> Action:
            return pick(FrontendUser(client, targets, account, random.Random(seed)))

        factories.append(factory)
    return factories
